"""`runs`, `compare` and `devices`: what the store holds, side by side, and what this machine can train on."""

from __future__ import annotations

import json
from pathlib import Path

import click

from deep_learning.analysis.comparison import FORMATS
from deep_learning.cli.options import experiment_option, user_errors


@click.command()
@experiment_option
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Show at most this many runs.")
@user_errors
def runs(experiment: str | None, limit: int) -> None:
    """List an experiment's training runs, newest first: device, key params, accuracy, epoch time, duration.

    A sweep's runs are listed together, where its newest run falls, each named "PARENT/ name" (the parent run's
    id, first 8 characters). Comparison and evaluation runs, and the parents of sweeps, are left out.
    """
    from deep_learning.toolkit.reading import runs as list_runs

    listed = list_runs(experiment, limit)
    if not listed.runs:
        click.echo(f"No training runs in {listed.source} yet: start one with `deep-learning train`.", err=True)
        return
    click.echo(str(listed), nl=False)


@click.command()
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
    from deep_learning.analysis.rollup import RollupReport
    from deep_learning.toolkit.reading import compare as compared

    result = compared(*run_ids, experiment=experiment, rollup=output_format in ("table", "markdown") and not (output or log))
    if isinstance(result, RollupReport):
        click.echo(str(result), nl=False)
        return
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


@click.command()
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
