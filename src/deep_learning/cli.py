"""The `deep-learning` command: a thin layer over the modules; torch and mlflow load only inside commands."""

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
from pathlib import Path
from typing import Any

import click

from deep_learning import __version__
from deep_learning.analysis.comparison import FORMATS
from deep_learning.core.config import (
    ALL_DEVICES,
    AMP_MODES,
    AUTO,
    DATASETS,
    LOADERS,
    LR_SCHEDULES,
    MONITOR_MODES,
    OPTIMIZERS,
    TASK_NAMES,
    TrainConfig,
    option_name,
    read_config_file,
)
from deep_learning.core.errors import ConfigError, DeepLearningError, InputError, Interrupted, first_line
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
    sweep = getattr(interrupted, "sweep_run_id", None)
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


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="deep-learning")
def cli() -> None:
    """Train PyTorch models reproducibly and track every run in MLflow."""


@cli.command()
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


@cli.command()
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


def silenced_stdout(quiet: bool) -> contextlib.AbstractContextManager:
    """When quiet, swallow what a run prints on stdout (its epoch lines, MLflow's notes); errors go to stderr anyway."""
    return contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext()


@cli.command()
@click.argument("unsent", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@user_errors
def sync(unsent: Path) -> None:
    """Send metrics that a tracking server missed (the file a run names when it could not reach it)."""
    from deep_learning.tracking import send_unsent

    run_id, count = send_unsent(unsent)
    click.echo(f"Sent {count} metric values to run {run_id}.")


@cli.command()
@click.option(
    "--quick", is_flag=True, help="5,000 training samples and 1 repeat, no `mlflow run`: a check in about a minute, not a measurement."
)
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("benchmark-results"),
    show_default=True,
    help="Folder for benchmark.json and benchmark.md.",
)
@click.option(
    "--device", "devices", multiple=True, show_default="cpu and the default accelerator", help="Device to benchmark; repeat for several."
)
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=None,
    show_default="5; 1 with --quick",
    help="Timed repeats of each measurement (median).",
)
@click.option(
    "--threads", type=click.IntRange(min=1), default=None, show_default="torch's default here", help="torch threads for the loops."
)
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
    from deep_learning.core.data.files import import_raw_files

    click.echo(f"{dataset}: files checked and placed in {import_raw_files(dataset, source)}")


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


@cli.command()
@experiment_option
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Show at most this many runs.")
@user_errors
def runs(experiment: str | None, limit: int) -> None:
    """List an experiment's training runs, newest first: device, key params, accuracy, epoch time, duration.

    A sweep's runs are listed together, where its newest run falls, each named "PARENT/ name" (the parent run's
    id, first 8 characters). Comparison and evaluation runs, and the parents of sweeps, are left out.
    """
    from deep_learning import tracking
    from deep_learning.analysis import comparison

    experiment_id, name = tracking.find_experiment(experiment)
    records = tracking.list_runs(experiment_id, limit=limit, histories=("epoch_seconds",))
    if not records:
        click.echo(f"No training runs in experiment {name!r} yet: start one with `deep-learning train`.", err=True)
        return
    click.echo(comparison.runs_table(comparison.grouped_by_parent(records)), nl=False)


@cli.command()
@click.argument("run_ids", nargs=-1, metavar="[RUN_ID]...")
@experiment_option
@click.option("--format", "output_format", type=click.Choice(FORMATS), default="table", show_default=True, help="How to print the table.")
@click.option(
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="Also write the table (in --format) and comparison.png, the runs' loss and accuracy curves, into this folder.",
)
@click.option("--log", is_flag=True, help="Log the table and the figure to a new MLflow run tagged deep_learning.kind=comparison.")
@user_errors
def compare(run_ids: tuple[str, ...], experiment: str | None, output_format: str, output: Path | None, log: bool) -> None:
    """Compare runs side by side, one column per run.

    Without RUN_IDs: the latest FINISHED run of each device type and config in the experiment.
    Rows: device and versions, every param that differs, final losses and accuracies, mean epoch
    seconds and samples/s, the speed-up over the CPU run (else the first), and, for runs of the same
    config and seed, the largest per-epoch absolute difference of each metric from the group's
    first CPU run: how far devices agree. RUN_IDs may also be given comma-separated.
    """
    import tempfile

    from deep_learning import tracking
    from deep_learning.analysis import comparison

    ids = [run_id for argument in run_ids for run_id in argument.replace(",", " ").split()]
    if ids and experiment:
        raise InputError("Name RUN_IDs or --experiment, not both: run ids select the runs themselves.")
    if not ids:
        experiment_id, _ = tracking.find_experiment(experiment)
        ids = [run.run_id for run in comparison.select_latest_per_device_and_config(tracking.list_runs(experiment_id, finished_only=True))]
    if len(ids) == 1 and output_format in ("table", "markdown") and not (output or log) and _show_rollup(ids[0]):
        return
    result = comparison.compare_runs([tracking.get_run(run_id, histories=comparison.histories_to_read) for run_id in ids])
    click.echo(comparison.render(result, output_format), nl=False)
    if output is None and not log:
        return
    with tempfile.TemporaryDirectory() as scratch:
        files = comparison.write_files(result, output_format, output or Path(scratch))
        if output is not None:
            click.echo(f"Wrote {files[0]} and {files[1]}", err=True)
        if log:
            device_types = dict.fromkeys(run.device_type for run in result.runs)
            logged = tracking.log_comparison(result.run_ids, files, f"compare-{'-'.join(device_types)}", result.runs[0].experiment_id)
            click.echo(f"Logged comparison run {logged.run_id}; to browse it: {logged.where_to_look()}", err=True)


def _show_rollup(run_id: str) -> bool:
    """Print a sweep's roll-up (its parent's rollup.md) when `run_id` is a sweep's parent; say whether it was."""
    import tempfile

    from deep_learning import tracking
    from deep_learning.analysis.records import KIND_TAG, SWEEP

    parent = tracking.get_run(run_id)
    if parent.tags.get(KIND_TAG) != SWEEP:
        return False
    with tempfile.TemporaryDirectory() as folder:
        click.echo(tracking.download_artifact(parent, "rollup.md", folder).read_text(), nl=False)
    return True


@cli.command()
@click.argument("model")
@device_option
@click.option(
    "--dataset",
    help="Whose test split to score on: mnist, fashion-mnist, imagefolder:DIR, csv:FILE, text:FILE, package.module:factory (default: the dataset the model was trained on, else mnist).",
)
@click.option("--log", is_flag=True, help="Record the evaluation in a new MLflow run tagged with the run that trained the model.")
@click.option("--best", is_flag=True, help="Score the best checkpoint the run MODEL kept (by its --monitor), not its final model.")
@user_errors
def evaluate(model: str, device: str, dataset: str | None, log: bool, best: bool) -> None:
    """Score MODEL on a test split: the loss and the run's metrics; a classifier's per-class accuracy and confusion matrix.

    MODEL is a run id (its state_dict.pt, read with torch.load(weights_only=True), so no pickled
    code runs), runs:/RUN_ID/model, models:/NAME/VERSION, models:/MODEL_ID, or the path of a state_dict.pt.
    Weights are mapped onto --device: a model trained on a GPU runs on a CPU-only machine.
    """
    from deep_learning import tracking
    from deep_learning.analysis.records import SOURCE_RUN_TAG
    from deep_learning.core.devices import describe_device, device_tags, resolve_device
    from deep_learning.experiment.inference import evaluate_model, load_model
    from deep_learning.experiment.recipe import short_name

    target = resolve_device(device)
    if best:
        model = tracking.best_checkpoint_uri(model)
    loaded = load_model(model, target)
    dataset = dataset or loaded.trained_with("dataset")
    click.echo(f"Model: {loaded.origin}, on {target}")
    evaluation = evaluate_model(loaded, dataset, target)
    click.echo(evaluation.report(), nl=False)
    if log:
        source = loaded.source_run
        logged = tracking.log_evaluation(
            f"evaluate-{short_name(loaded.trained_with('model'))}-{short_name(dataset)}-{target.type}",
            params={"model": model, "dataset": dataset, "device": device},
            metrics=evaluation.metrics(),
            report=evaluation.to_report(),
            tags={**device_tags(describe_device(target)), **({SOURCE_RUN_TAG: source.run_id} if source else {})},
            experiment_id=source.experiment_id if source else None,
        )
        click.echo(f"Logged evaluation run {logged.run_id}; to browse it: {logged.where_to_look()}", err=True)


@cli.command()
@click.argument("model")
@click.argument("files", nargs=-1, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@device_option
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="One line per input, or a JSON list.",
)
@click.option("--prompt", default=None, help="A text run's model: the text to continue.")
@click.option(
    "--tokens",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="A text run's model: how many characters to add to --prompt.",
)
@click.option(
    "--temperature",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="A text run's model: divides the logits before sampling (lower: surer).",
)
@click.option(
    "--seed",
    type=click.INT,
    default=TrainConfig.seed,
    show_default=True,
    help="A text run's model: seeds the sampling (the same seed, the same text).",
)
@user_errors
def predict(
    model: str, files: tuple[Path, ...], device: str, output_format: str, prompt: str | None, tokens: int, temperature: float, seed: int
) -> None:
    """Predict with MODEL: the class of each image, a csv run's rows, or the continuation of a text run's --prompt.

    FILES are images for an image model: PNG or JPEG files (anything Pillow reads) or IDX files, gzip'd
    or not (an IDX file of many images gives one line per image, named FILE[INDEX]), converted to the
    model's input as its run recorded it (data_spec.json): grayscale or RGB, resized to its height and
    width (bilinear, antialiased); nothing is inverted or centred (MNIST digits: light on dark). For a
    csv run's model, FILES are csv files with its feature columns by name (other columns are ignored):
    each row's class and probability, or its predicted values. A text run's model takes no files but
    --prompt TEXT, and prints it continued by --tokens characters (seeded sampling, --temperature).

    MODEL is given as for `evaluate`: a run id, runs:/RUN_ID/model, models:/NAME/VERSION or a
    state_dict.pt path.
    """
    from deep_learning.core.config import REGRESSION, SEQUENCE
    from deep_learning.core.devices import resolve_device
    from deep_learning.experiment.inference import load_model
    from deep_learning.experiment.prediction import continue_prompt, estimate, read_csv_rows, read_images
    from deep_learning.experiment.prediction import predict as predict_classes

    target = resolve_device(device)
    loaded = load_model(model, target)
    spec = loaded.spec
    if spec.task == SEQUENCE:
        if files or prompt is None:
            raise InputError("A text run's model continues a prompt: give --prompt TEXT (and --tokens N), not files.")
        text = continue_prompt(loaded.model, spec, prompt, tokens, temperature, seed, target)
        click.echo(json.dumps({"prompt": prompt, "text": text}) if output_format == "json" else text)
        return
    if prompt is not None:
        raise InputError("--prompt is for a text run's model; this model predicts files.")
    if not files:
        raise InputError("Give the files to predict: images, or csv rows for a csv run's model.")
    names, inputs = read_csv_rows(files, spec) if spec.features else read_images(files, spec)
    if spec.task == REGRESSION:
        results = estimate(loaded.model, names, inputs, target, spec.features["target_names"] if spec.features else ())
        lines = [f"{result.row}: " + ", ".join(f"{name}={value:.6g}" for name, value in result.values.items()) for result in results]
    else:
        results = predict_classes(loaded.model, names, inputs, target, spec.class_names)
        lines = [f"{result.image}: {result.class_name} ({result.probability:.4f})" for result in results]
    click.echo(json.dumps([dataclasses.asdict(result) for result in results], indent=2) if output_format == "json" else "\n".join(lines))


@cli.command()
@click.option(
    "--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True, help="Indented fields, or JSON."
)
@user_errors
def devices(output_format: str) -> None:
    """List every device this machine can train on, described as runs record it in device.json."""
    import torch

    from deep_learning.core.devices import available_devices, describe_device

    descriptions = {name: describe_device(torch.device(name)) for name in available_devices()}
    if output_format == "json":
        click.echo(json.dumps(descriptions, indent=2))
        return
    for name, description in descriptions.items():
        click.echo(f"{name}: {description['name']}")
        for key, value in description.items():
            click.echo(f"  {key}: {value}")
