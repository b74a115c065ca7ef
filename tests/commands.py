"""Running `deep-learning` commands in-process, and checking what a user sees."""

from __future__ import annotations

import re

from click.testing import CliRunner, Result

from deep_learning.cli import cli

# On the CPU, whatever the machine has: the tests expect its exact, repeatable numbers.
SMALL = ("--epochs", "2", "--train-subset", "1000", "--device", "cpu")


def invoke(*args: str) -> Result:
    """Run one command in-process; stdout and stderr stay apart in the result."""
    return CliRunner().invoke(cli, list(args))


def train_run(*args: str) -> str:
    """Train one run with the given options and return its id."""
    result = invoke("train", *args)
    assert result.exit_code == 0, result.output
    return re.search(r"MLflow run ([0-9a-f]{32})", result.stdout).group(1)


def assert_one_line_error(result: Result, message: str) -> None:
    """Exit status 1, and on stderr one line, `Error: ...` with `message`, no traceback."""
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert message in lines[0], lines[0]
    assert "Traceback" not in result.output
