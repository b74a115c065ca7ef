"""`train` and `sweep`: one run, or a study of runs under a parent."""

from __future__ import annotations

import sys
from typing import Any

import click

from deep_learning.cli.options import config_options, resolved_config, silenced_stdout, user_errors
from deep_learning.core.config import ALL_DEVICES, TrainConfig
from deep_learning.core.errors import InputError


@click.command()
@config_options
@click.option(
    "--config",
    default="",
    metavar="FILE",
    help="YAML or TOML file of these options by field name (a run's config.yaml); options given here override it.",
)
@click.option("--resume", metavar="RUN_ID", default="", help="Continue this run from its last checkpoint (options given must match it).")
@click.option("--quiet", "-q", is_flag=True, default=False, help="Print only errors and the final line: no progress, no epoch lines.")
@click.pass_context
@user_errors
def train(context: click.Context, config: str, resume: str, quiet: bool, **options: Any) -> None:
    """Train and evaluate a model (the chapter's MLP on MNIST by default) as one MLflow run.

    The run goes to MLFLOW_TRACKING_URI (default: sqlite:///mlflow.db here) and to the
    experiment MLFLOW_EXPERIMENT_NAME; under `mlflow run` it adopts that run. Every epoch
    is checkpointed; Ctrl-C or SIGTERM ends the run KILLED and --resume continues it.
    On a terminal a progress line shows each epoch's training pass. With --device all,
    the config is trained on every available device, as `sweep --devices all` would: child
    runs of one parent run that holds their comparison and their roll-up.
    """
    from deep_learning.core.interruption import signals_interrupt_runs

    settings = resolved_config(context, config, options)
    sweep = str(settings.get("device", TrainConfig.device)).strip().lower() == ALL_DEVICES
    if sweep and resume:
        raise InputError(
            "--device all starts new runs: to continue one of its runs, give --resume RUN_ID without --device all; all of them: deep-learning sweep --resume PARENT_ID."
        )
    progress = not quiet and sys.stdout.isatty()
    with signals_interrupt_runs(), silenced_stdout(quiet):
        if sweep:
            from deep_learning.core.devices import available_devices
            from deep_learning.studies.grid import Study
            from deep_learning.studies.sweep import run_study

            base = TrainConfig(**{**settings, "device": ALL_DEVICES})
            result = run_study(Study(base, grid={}, seeds=[base.seed], devices=available_devices()), progress=progress)
        elif resume:
            from deep_learning.experiment.runner import resume_experiment

            result = resume_experiment(resume, settings, progress=progress)
        else:
            from deep_learning.experiment.runner import run_experiment

            result = run_experiment(TrainConfig(**settings), progress=progress)
    if sweep and not quiet:
        click.echo(result.markdown, nl=False)
    if result.run_id:  # under torchrun, rank 0's
        click.echo(result.summary())


@click.command()
@config_options
@click.option(
    "--grid", "grid", multiple=True, metavar="NAME=V1,V2", help="Values of one setting to sweep (repeatable; the cross product of all)."
)
@click.option("--seeds", type=click.INT, default=None, help="Train each point with N seeds: --seed, --seed + 1, ... [default: 1]")
@click.option("--seed-list", default="", metavar="S1,S2", help="The seeds to train each point with, instead of --seeds.")
@click.option(
    "--devices", default="", metavar="all|cpu,cuda,...", help="Devices to train each point on (all: every device here) [default: --device]"
)
@click.option(
    "--vectorize",
    type=click.BOOL,
    is_flag=False,
    flag_value=True,
    default=False,
    metavar="[true|false]",
    help="Train each group's seeds together as one batched model (torch.func.vmap); each is still its own run.",
)
@click.option("--search", type=click.Choice(["optuna"]), default=None, help="Search --param settings with Optuna instead of a grid.")
@click.option(
    "--trials", type=click.IntRange(min=1), default=None, help="How many trials a search runs (with --resume: raise it). [default: 20]"
)
@click.option(
    "--param",
    "space",
    multiple=True,
    metavar="NAME=KIND:...",
    help="A searched setting: lr=loguniform:1e-3:1, batch_size=choice:32,64 (also uniform:, int:).",
)
@click.option(
    "--study-storage",
    default="",
    metavar="URL",
    help="Optuna's storage for a search [default: optuna.db beside a sqlite tracking store, else ./optuna.db]",
)
@click.option(
    "--config",
    default="",
    metavar="FILE",
    help="YAML or TOML file of the base settings (a run's config.yaml); options given here override it.",
)
@click.option(
    "--resume", metavar="PARENT_ID", default="", help="Continue this sweep or search: keep its finished runs, resume (or add) the others."
)
@click.option("--quiet", "-q", is_flag=True, default=False, help="Print only errors, the roll-up and the final line.")
@click.pass_context
@user_errors
def sweep(context: click.Context, config: str, resume: str, quiet: bool, **options: Any) -> None:
    """Train the cross product of --grid values, seeds and devices as child runs of one parent run, and roll them up.

    Runs that differ only in seed form a group; the parent holds each group's mean, standard deviation, min, max and
    n of every metric (per epoch and final), rollup.csv/.md/.json and rollup.png, and for each configuration each
    device against the CPU: the difference of means with a 95% interval (Welch), "within seed noise" or "differs".
    With --vectorize, the seeds of each group train at once as one batched model, each from its own initialisation,
    shuffle and optimizer state, and each still logs its own run, checkpoints and model.
    With --search optuna, each of --trials trials of the --param space is a child run, pruned by its per-epoch
    --monitor (a median pruner), and the parent holds the best params and value.
    """
    from deep_learning.core.interruption import signals_interrupt_runs
    from deep_learning.studies.plan import new_sweep, resumed_sweep

    study = {
        name: options.pop(name)
        for name in ("grid", "seeds", "seed_list", "devices", "vectorize", "search", "trials", "space", "study_storage")
    }
    given = resolved_config(context, config, options)
    start = (
        resumed_sweep(resume, study, bool(config or resolved_config(context, "", options)))
        if resume
        else new_sweep(TrainConfig(**given), study)
    )
    progress = not quiet and sys.stdout.isatty()
    with signals_interrupt_runs(), silenced_stdout(quiet):
        result = start(progress)
    click.echo(getattr(result, "markdown", ""), nl=False)
    click.echo(result.summary())
