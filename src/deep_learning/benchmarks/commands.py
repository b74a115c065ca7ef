"""Costs paid outside the training loop, timed as commands: CLI start-up, and `mlflow run` against the command itself."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import deep_learning
from deep_learning.core.config import option_name
from deep_learning.core.errors import BenchmarkError

MLFLOW_RUN_TRAIN_SUBSET = 1000


def command_env() -> dict[str, str]:
    """This environment, with this interpreter's folder first on PATH (`mlflow run` calls `python`)."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def run_command(command: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a command in the current folder and environment; a failure is a BenchmarkError with its last words."""
    completed = subprocess.run(command, capture_output=True, text=True, env=command_env())
    if completed.returncode != 0:
        said = (completed.stderr.strip() or completed.stdout.strip()).splitlines()
        raise BenchmarkError(f"`{' '.join(command)}` failed with exit code {completed.returncode}: {said[-1] if said else 'no output'}")
    return completed


def time_command(command: list[str]) -> float:
    """Wall-clock seconds of one successful run of the command."""
    started = time.perf_counter()
    run_command(command)
    return time.perf_counter() - started


def help_command() -> list[str]:
    """`deep-learning --help` from this interpreter's environment (`python -m deep_learning` when no script is installed)."""
    script = shutil.which("deep-learning", path=str(Path(sys.executable).parent))
    return [script, "--help"] if script else [sys.executable, "-m", "deep_learning", "--help"]


def measure_help(repeats: int) -> dict[str, Any]:
    """Start-up of `deep-learning --help` in a new process: one untimed run to warm the file cache, then the median of `repeats`."""
    command = help_command()
    time_command(command)
    seconds = [time_command(command) for _ in range(repeats)]
    return {"command": command, "seconds": seconds, "median_seconds": statistics.median(seconds)}


def project_folder() -> Path | None:
    """The checkout holding the MLproject this package came from; None for an installed package."""
    folder = Path(deep_learning.__file__).resolve().parents[2]
    return folder if (folder / "MLproject").is_file() else None


def measure_mlflow_run(repeats: int, device: str = "cpu") -> dict[str, Any]:
    """`mlflow run . --env-manager local` against the same training command run directly, in turns; the median of each."""
    project = project_folder()
    if project is None:
        return {"skipped": f"no MLproject beside {Path(deep_learning.__file__).parent}: run from a checkout"}
    options = {"epochs": 1, "train_subset": MLFLOW_RUN_TRAIN_SUBSET, "device": device}
    through_mlflow = [sys.executable, "-m", "mlflow", "run", str(project), "--env-manager", "local"]
    through_mlflow += [argument for name, value in options.items() for argument in ("-P", f"{name}={value}")]
    direct = [sys.executable, "-m", "deep_learning", "train"]
    direct += [argument for name, value in options.items() for argument in (option_name(name), str(value))]
    mlflow_seconds, direct_seconds = [], []
    for _ in range(repeats):
        mlflow_seconds.append(time_command(through_mlflow))
        direct_seconds.append(time_command(direct))
    return {
        "mlflow_run_command": through_mlflow,
        "direct_command": direct,
        "mlflow_run_seconds": mlflow_seconds,
        "direct_seconds": direct_seconds,
        "overhead_seconds": statistics.median(mlflow_seconds) - statistics.median(direct_seconds),
    }
