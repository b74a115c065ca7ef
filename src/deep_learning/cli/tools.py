"""`sync`, `bench` and `data import`: unsent metrics, the benchmark, and datasets placed by hand."""

from __future__ import annotations

from pathlib import Path

import click

from deep_learning.cli.options import user_errors
from deep_learning.core.config import DATASETS, TrainConfig


@click.command()
@click.argument("unsent", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@user_errors
def sync(unsent: Path) -> None:
    """Send metrics that a tracking server missed (the file a run names when it could not reach it)."""
    from deep_learning.tracking import send_unsent

    run_id, count = send_unsent(unsent)
    click.echo(f"Sent {count} metric values to run {run_id}.")


@click.command()
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


@click.group()
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
