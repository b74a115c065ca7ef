"""A user's script as a separate process, as a user runs it: to its end, or stopped by SIGTERM once its first epoch ends."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from conftest import subprocess_env


def run_script(script: Path, *args: str, cwd: Path) -> str:
    """Run the script to its end; return the run id it prints last."""
    result = subprocess.run(
        [sys.executable, str(script), *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=subprocess_env()
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1].split()[-1]


def terminate_after_first_epoch(script: Path, cwd: Path) -> None:
    """Start the script and send it SIGTERM once it prints its first epoch's line; it must exit with an error."""
    process = subprocess.Popen(
        [sys.executable, str(script)], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env()
    )
    for line in process.stdout:
        if line.startswith("Epoch [1/"):
            process.send_signal(signal.SIGTERM)
            break
    process.communicate(timeout=300)
    assert process.returncode != 0
