"""What the commands share: the config options, the error handling that makes every error one line, and common options."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

import click

from deep_learning.core.config import (
    AMP_MODES,
    AUTO,
    LOADERS,
    LR_SCHEDULES,
    MONITOR_MODES,
    OPTIMIZERS,
    TASK_NAMES,
    TrainConfig,
    option_name,
)
from deep_learning.core.config_files import read_config_file
from deep_learning.core.errors import ConfigError, DeepLearningError, Interrupted, first_line
from deep_learning.core.factories import parse_assignments

_CHOICES = {
    "loader": LOADERS,
    "amp": AMP_MODES,
    "optimizer": OPTIMIZERS,
    "lr_schedule": LR_SCHEDULES,
    "monitor_mode": MONITOR_MODES,
    "task": (AUTO, *TASK_NAMES),
}
_TYPES = {bool: click.BOOL, int: click.INT, float: click.FLOAT, str: click.STRING}
# Given once per argument (--model-arg dim=64 --model-arg depth=2); the field holds them as one JSON object.
_REPEATED = {"model_args": "--model-arg"}


def config_options(command: Callable) -> Callable:
    """Add one option per TrainConfig field, with the field's default and help."""
    for field in reversed(dataclasses.fields(TrainConfig)):
        choices = _CHOICES.get(field.name)
        names = [_REPEATED[field.name], option_name(field.name)] if field.name in _REPEATED else [option_name(field.name)]
        command = click.option(
            *names,
            field.name,
            type=click.Choice(choices) if choices else _TYPES[type(field.default)],
            default=() if field.name in _REPEATED else field.default,
            multiple=field.name in _REPEATED,
            show_default=field.name not in _REPEATED,
            help=field.metadata["help"],
        )(command)
    return command


def resolved_config(context: click.Context, config_file: str, options: dict[str, Any]) -> dict[str, Any]:
    """The settings of a run: the config file's, overridden by the options given on the command line."""
    settings = read_config_file(config_file) if config_file else {}
    given = {name: value for name, value in options.items() if context.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT}
    model_args = given.pop("model_args", ())
    settings.update(given)
    if model_args:
        settings["model_args"] = {**_as_mapping(settings.get("model_args")), **_model_arguments(model_args)}
    return settings


def _as_mapping(model_args: Any) -> dict[str, Any]:
    if not model_args:
        return {}
    try:
        mapping = json.loads(model_args) if isinstance(model_args, str) else model_args
    except ValueError:
        mapping = None
    if not isinstance(mapping, dict):
        raise ConfigError(f"model_args must be a JSON object or key=value pairs, not {model_args!r}")
    return dict(mapping)


def _model_arguments(given: tuple[str, ...]) -> dict[str, Any]:
    """--model-arg values: key=value each, or a JSON object (as the MLproject passes them)."""
    arguments: dict[str, Any] = {}
    for value in given:
        if value.strip().startswith("{"):
            arguments.update(_as_mapping(value))
        elif value.strip():
            arguments.update(parse_assignments([value], "--model-arg"))
    return arguments


def user_errors(command: Callable) -> Callable:
    """Turn errors into one line and an exit code: 1 for errors, 130 for Ctrl-C, 141 for a closed pipe."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = command(*args, **kwargs)
            sys.stdout.flush()  # a reader that went away shows here, not at interpreter exit
            return result
        except BrokenPipeError:
            # The reader closed the pipe (`deep-learning runs | head -1`): stop quietly, as Unix tools do.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)
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
    sweep = interrupted.sweep_run_id
    if sweep:
        return (
            f"Interrupted: sweep {sweep} is KILLED in MLflow; its finished runs are kept. Resume with: deep-learning sweep --resume {sweep}"
        )
    if interrupted.run_id is None:
        return "Interrupted before a run was created: nothing to resume."
    kept = (
        f"checkpoint of epoch {interrupted.epoch} at {interrupted.checkpoint}"
        if interrupted.checkpoint
        else "no checkpoint (no epoch had ended)"
    )
    return (
        f"Interrupted: run {interrupted.run_id} is KILLED in MLflow, {kept}. Resume with: deep-learning train --resume {interrupted.run_id}"
    )


def silenced_stdout(quiet: bool) -> contextlib.AbstractContextManager:
    """When quiet, swallow what a run prints on stdout (its epoch lines, MLflow's notes); errors go to stderr anyway."""
    return contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext()


def device_option(command: Callable) -> Callable:
    """The --device option of commands that run a model."""
    return click.option(
        "--device",
        default=TrainConfig.device,
        show_default=True,
        help="auto, cpu, cuda, cuda:N, mps, ... (`deep-learning devices` lists this machine's).",
    )(command)


def experiment_option(command: Callable) -> Callable:
    """The --experiment option of commands that read runs."""
    return click.option(
        "--experiment",
        help="Experiment name (default: the one `train` logs to: $MLFLOW_EXPERIMENT_ID, $MLFLOW_EXPERIMENT_NAME, else Default).",
    )(command)
