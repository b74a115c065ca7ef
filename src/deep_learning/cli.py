"""The `deep-learning` command: a thin layer over the modules; torch and mlflow load only inside commands."""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from deep_learning import __version__
from deep_learning.config import AMP_MODES, DATASETS, LOADERS, MODELS, TrainConfig
from deep_learning.errors import DeepLearningError, first_line

_CHOICES = {"dataset": DATASETS, "model": MODELS, "loader": LOADERS, "amp": AMP_MODES}
_TYPES = {bool: click.BOOL, int: click.INT, float: click.FLOAT, str: click.STRING}


def option_name(field_name: str) -> str:
    """The CLI spelling of a config field: batch_size -> --batch-size."""
    return "--" + field_name.replace("_", "-")


def config_options(command: Callable) -> Callable:
    """Add one option per TrainConfig field, with the field's default and help."""
    for field in reversed(dataclasses.fields(TrainConfig)):
        choices = _CHOICES.get(field.name)
        command = click.option(
            option_name(field.name),
            field.name,
            type=click.Choice(choices) if choices else _TYPES[type(field.default)],
            default=field.default,
            show_default=True,
            help=field.metadata["help"],
        )(command)
    return command


def user_errors(command: Callable) -> Callable:
    """Turn errors into one line and an exit code: 1 for errors, 130 for Ctrl-C."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except DeepLearningError as error:
            raise click.ClickException(str(error)) from None
        except KeyboardInterrupt:
            click.echo("Interrupted: the run was marked KILLED in MLflow.", err=True)
            sys.exit(130)
        except click.exceptions.Exit:
            raise
        except Exception as error:
            if os.environ.get("DEEP_LEARNING_TRACEBACK"):
                traceback.print_exc()
            raise click.ClickException(
                f"{type(error).__name__}: {first_line(error)} (set DEEP_LEARNING_TRACEBACK=1 for the traceback)"
            ) from None

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="deep-learning")
def cli() -> None:
    """Train PyTorch models reproducibly and track every run in MLflow."""


@cli.command()
@config_options
@user_errors
def train(**options: Any) -> None:
    """Train and evaluate the chapter's model as one MLflow run.

    The run goes to MLFLOW_TRACKING_URI (default: sqlite:///mlflow.db here) and to the
    experiment MLFLOW_EXPERIMENT_NAME; under `mlflow run` it adopts that run.
    """
    config = TrainConfig(**options)
    from deep_learning.experiment import run_experiment

    run_experiment(config)


@cli.command()
@click.option("--quick", is_flag=True, help="5,000 training samples and 1 repeat, no `mlflow run`: a check in about a minute, not a measurement.")
@click.option("--output", type=click.Path(file_okay=False, path_type=Path), default=Path("benchmark-results"), show_default=True, help="Folder for benchmark.json and benchmark.md.")
@click.option("--device", "devices", multiple=True, show_default="cpu and the default accelerator", help="Device to benchmark; repeat for several.")
@click.option("--repeats", type=click.IntRange(min=1), default=None, show_default="5; 1 with --quick", help="Timed repeats of each measurement (median).")
@click.option("--threads", type=click.IntRange(min=1), default=None, show_default="torch's default here", help="torch threads for the loops.")
@user_errors
def bench(quick: bool, output: Path, devices: tuple[str, ...], repeats: int | None, threads: int | None) -> None:
    """Time the chapter's loop against ours, untracked and tracked, and what MLflow and start-up cost.

    Runs every loop in this process, epochs interleaved, and judges the speed targets; writes
    benchmark.json and benchmark.md to --output. See docs/benchmarks.md.
    """
    from deep_learning.benchmarks.report import targets_table, write_reports
    from deep_learning.benchmarks.suite import BenchmarkOptions, run_benchmark

    options = BenchmarkOptions(quick=quick, repeats=repeats, devices=devices, threads=threads)
    results = run_benchmark(options, progress=lambda message: click.echo(message, err=True))
    json_path, markdown_path = write_reports(results, output.resolve())
    click.echo(targets_table(results))
    click.echo(f"Results: {json_path} and {markdown_path}")


@cli.group()
def data() -> None:
    """Place and check the datasets' raw files."""


@data.command("import")
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--dataset", type=click.Choice(DATASETS), default=TrainConfig.dataset, show_default=True)
@user_errors
def import_data(source: Path, dataset: str) -> None:
    """Copy a dataset's four raw .gz files from SOURCE into the data root, checking their md5.

    The data root is $DEEP_LEARNING_DATA_ROOT, else ~/.cache/deep_learning/data.
    """
    from deep_learning.data import import_raw_files

    click.echo(f"{dataset}: files checked and placed in {import_raw_files(dataset, source)}")
