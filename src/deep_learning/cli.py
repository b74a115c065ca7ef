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
from deep_learning.errors import DeepLearningError, Interrupted, first_line

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
        except Interrupted as interrupted:
            click.echo(_interrupted_message(interrupted), err=True)
            sys.exit(128 + interrupted.signal_number)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
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


def _interrupted_message(interrupted: Interrupted) -> str:
    if interrupted.run_id is None:
        return "Interrupted before a run was created: nothing to resume."
    kept = f"checkpoint of epoch {interrupted.epoch} at {interrupted.checkpoint}" if interrupted.checkpoint else "no checkpoint (no epoch had ended)"
    return (
        f"Interrupted: run {interrupted.run_id} is KILLED in MLflow, {kept}. "
        f"Resume with: deep-learning train --resume {interrupted.run_id}"
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="deep-learning")
def cli() -> None:
    """Train PyTorch models reproducibly and track every run in MLflow."""


@cli.command()
@config_options
@click.option("--resume", metavar="RUN_ID", default="", help="Continue this run from its last checkpoint (options given must match it).")
@click.pass_context
@user_errors
def train(context: click.Context, resume: str, **options: Any) -> None:
    """Train and evaluate the chapter's model as one MLflow run.

    The run goes to MLFLOW_TRACKING_URI (default: sqlite:///mlflow.db here) and to the
    experiment MLFLOW_EXPERIMENT_NAME; under `mlflow run` it adopts that run. Every epoch
    is checkpointed; Ctrl-C or SIGTERM ends the run KILLED and --resume continues it.
    """
    from deep_learning.interruption import signals_interrupt_runs

    with signals_interrupt_runs():
        if not resume:
            config = TrainConfig(**options)
            from deep_learning.experiment import run_experiment

            run_experiment(config)
            return
        from deep_learning.experiment import resume_config, run_experiment

        given = {name: value for name, value in options.items() if context.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT}
        config, checkpoint = resume_config(resume, given)
        run_experiment(config, resume=(resume, checkpoint))


@cli.command()
@click.argument("unsent", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@user_errors
def sync(unsent: Path) -> None:
    """Send metrics that a tracking server missed (the file a run names when it could not reach it)."""
    from deep_learning.tracking import send_unsent

    run_id, count = send_unsent(unsent)
    click.echo(f"Sent {count} metric values to run {run_id}.")


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
