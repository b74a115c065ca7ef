"""The CLI: help for every command, a start-up that imports neither torch nor mlflow, data import."""

from __future__ import annotations

import subprocess
import sys

import click
import pytest
from click.testing import CliRunner
from conftest import SOURCE_DATA, subprocess_env

from deep_learning import __version__
from deep_learning.cli import cli


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            paths += _command_paths(command, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


@pytest.mark.parametrize("path", _command_paths(cli), ids=lambda path: " ".join(path) or "deep-learning")
def test_every_command_has_help(path):
    result = CliRunner().invoke(cli, [*path, "--help"], catch_exceptions=False)
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_help_and_version_import_neither_torch_nor_mlflow():
    probe = (
        "import sys\n"
        "from deep_learning.cli import cli\n"
        "try:\n    cli(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = sorted({name.split('.')[0] for name in sys.modules} & {'torch', 'mlflow', 'torchvision', 'torchmetrics', 'numpy'})\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=subprocess_env())
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr


def test_version_and_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "deep_learning", "--version"], capture_output=True, text=True, env=subprocess_env())
    assert result.returncode == 0 and result.stdout.strip() == f"deep-learning, version {__version__}"


def test_data_import_places_checked_files(tmp_path, monkeypatch):
    monkeypatch.setenv("DEEP_LEARNING_DATA_ROOT", str(tmp_path))
    result = CliRunner().invoke(cli, ["data", "import", str(SOURCE_DATA / "FashionMNIST" / "raw"), "--dataset", "fashion-mnist"])
    assert result.exit_code == 0, result.output
    assert str(tmp_path / "FashionMNIST" / "raw") in result.output
    assert (tmp_path / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte").is_file()


def test_data_import_of_the_wrong_folder_is_one_line(tmp_path):
    result = CliRunner().invoke(cli, ["data", "import", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "train-images-idx3-ubyte.gz is missing" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_reader_that_closes_the_pipe_gets_no_error():
    process = subprocess.Popen(
        [sys.executable, "-m", "deep_learning", "devices"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env()
    )
    process.stdout.close()  # like `| head` exiting before the command writes
    _, stderr = process.communicate(timeout=120)
    assert stderr.decode() == ""
    assert process.returncode == 141
