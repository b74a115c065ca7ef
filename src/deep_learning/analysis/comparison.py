"""Comparing runs: the list of runs, a side-by-side comparison in four formats, and their learning curves.

Works on `RunRecord`s that `tracking` reads; this module never touches MLflow.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deep_learning.analysis.display import figure_html, html_table
from deep_learning.analysis.records import TRAINING, RunRecord, largest_difference, learning_metric_keys, metric_names
from deep_learning.analysis.tables import formatted, markdown_table, text_table
from deep_learning.core.errors import InputError

if TYPE_CHECKING:
    import pandas

SPEED_METRICS = ("epoch_seconds", "train_samples_per_second")
DEVICE_TAGS = ("device.type", "device.name", "torch.version", "torch.cuda_version")
FORMATS = ("table", "markdown", "csv", "json")
FILE_SUFFIXES = {"table": ".txt", "markdown": ".md", "csv": ".csv", "json": ".json"}
# Params that say where a run ran, not what it learned: runs differing only here should agree.
PLACEMENT_PARAMS = ("device",)

Value = float | int | str | None


@dataclass(frozen=True)
class Row:
    """One line of a comparison: a name and one value per run, shown in a style (text, metric, seconds, ...)."""

    name: str
    values: tuple[Value, ...]
    style: str = "text"


@dataclass(frozen=True)
class Comparison:
    """Runs side by side: one column per run, one row per quantity."""

    runs: tuple[RunRecord, ...]
    rows: tuple[Row, ...]

    @property
    def run_ids(self) -> list[str]:
        return [run.run_id for run in self.runs]

    def __str__(self) -> str:
        return render(self, "table")

    def _repr_html_(self) -> str:
        from deep_learning.analysis.figures import learning_curves_figure

        header, lines = table_rows(self)
        curves = learning_curves_figure([(curve_label(run), run.histories) for run in self.runs])
        return html_table(header, lines) + "\n" + figure_html(curves, "learning curves")

    def to_pandas(self) -> pandas.DataFrame:
        """One row per quantity, one column per run (by id), values at full precision."""
        import pandas

        return pandas.DataFrame([row.values for row in self.rows], index=[row.name for row in self.rows], columns=self.run_ids)


def histories_to_read(run: RunRecord) -> tuple[str, ...]:
    """The metric histories `compare_runs` needs of a run: the learning metrics it logged, and its speed."""
    logged = [key for key in learning_metric_keys(run.metric_names()) if key in run.metrics]
    return (*logged, *SPEED_METRICS)


def learning_metrics(runs: Sequence[RunRecord]) -> list[str]:
    """The keys of the losses and of every metric any of the runs logged: train_loss, train_accuracy, train_f1, val_loss, ..."""
    return learning_metric_keys(metric_names(key for run in runs for key in run.metrics))


def select_latest_per_device_and_config(runs: Sequence[RunRecord]) -> list[RunRecord]:
    """The latest FINISHED training run of each device type and config, oldest first."""
    latest: dict[tuple, RunRecord] = {}
    for run in runs:
        if run.status != "FINISHED" or run.kind != TRAINING:
            continue
        key = (run.device_type, config_key(run))
        if key not in latest or run.start_time_ms > latest[key].start_time_ms:
            latest[key] = run
    return sorted(latest.values(), key=lambda run: run.start_time_ms)


def config_key(run: RunRecord) -> tuple:
    """What a run learned from: its params, without those that only place it on a device."""
    return tuple(sorted((name, _comparable(value)) for name, value in run.params.items() if name not in PLACEMENT_PARAMS))


def _comparable(value: str | None) -> float | str | None:
    # `mlflow run` logs its own spelling of a value (1e-1, true) beside the CLI's (0.1, True), and its
    # parameters that are not settings (resume, config) as '', which the CLI does not log at all.
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        return value.lower()


def compare_runs(runs: Sequence[RunRecord]) -> Comparison:
    """Devices, differing params, final metrics, speed, speed-up and, for runs of one config, how far they agree."""
    if not runs:
        raise InputError("No runs to compare: train some with `deep-learning train` or name their ids.")
    for run in runs:
        if run.kind != TRAINING:
            raise InputError(f"Run {run.run_id} is a {run.kind} run, not a training run: `deep-learning runs` lists the training runs.")
    rows = [Row("run_name", tuple(run.run_name for run in runs)), Row("status", tuple(run.status for run in runs))]
    rows += [Row(tag, tuple(run.tags.get(tag) for run in runs)) for tag in DEVICE_TAGS]
    rows += [Row(f"params.{name}", tuple(run.params.get(name) for run in runs)) for name in differing_params(runs)]
    rows += [Row(metric, tuple(run.metrics.get(metric) for run in runs), "metric") for metric in learning_metrics(runs)]
    epoch_seconds = [run.mean("epoch_seconds") for run in runs]
    rows.append(Row("mean_epoch_seconds", tuple(epoch_seconds), "seconds"))
    rows.append(Row("mean_train_samples_per_second", tuple(run.mean("train_samples_per_second") for run in runs), "rate"))
    baseline = epoch_seconds[_baseline_index(runs)]
    rows.append(Row("speedup", tuple(baseline / seconds if baseline and seconds else None for seconds in epoch_seconds), "ratio"))
    rows += agreement_rows(runs)
    return Comparison(tuple(runs), tuple(rows))


def differing_params(runs: Sequence[RunRecord]) -> list[str]:
    """The params whose values are not the same in every run, in alphabetical order."""
    names = sorted({name for run in runs for name in run.params})
    return [name for name in names if len({_comparable(run.params.get(name)) for run in runs}) > 1]


def _baseline_index(runs: Sequence[RunRecord]) -> int:
    return next((index for index, run in enumerate(runs) if run.device_type == "cpu"), 0)


def agreement_rows(runs: Sequence[RunRecord]) -> list[Row]:
    """For each metric, the largest per-epoch absolute difference from the reference run of the same config and seed.

    The reference is the group's first CPU run, else its first run; runs alone in their config get no value,
    and there are no rows when every run is alone.
    """
    groups: dict[tuple, list[int]] = {}
    for index, run in enumerate(runs):
        groups.setdefault(config_key(run), []).append(index)
    references = {}
    for members in groups.values():
        if len(members) > 1:
            reference = next((index for index in members if runs[index].device_type == "cpu"), members[0])
            references.update({index: reference for index in members})
    if not references:
        return []
    return [
        Row(
            f"max_abs_diff.{metric}",
            tuple(
                largest_difference(run.histories.get(metric, {}), runs[references[index]].histories.get(metric, {}))
                if index in references
                else None
                for index, run in enumerate(runs)
            ),
            "difference",
        )
        for metric in learning_metrics(runs)
    ]


def render(comparison: Comparison, output_format: str) -> str:
    """The comparison as an aligned text table, Markdown, CSV (full precision) or JSON (full precision)."""
    if output_format == "json":
        rows = {row.name: [_json_value(value) for value in row.values] for row in comparison.rows}
        return json.dumps({"run_ids": comparison.run_ids, "rows": rows}, indent=2) + "\n"
    if output_format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["name", *comparison.run_ids])
        writer.writerows([row.name, *("" if value is None else value for value in row.values)] for row in comparison.rows)
        return buffer.getvalue()
    header, lines = table_rows(comparison)
    if output_format == "markdown":
        return markdown_table(header, lines)
    return text_table(header, lines)


def table_rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """The comparison's header (name, then the run ids) and its lines, each value shown in its row's style."""
    header = ["name", *comparison.run_ids]
    return header, [[row.name, *(formatted(value, row.style) for value in row.values)] for row in comparison.rows]


def _json_value(value: Value) -> Value:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_files(comparison: Comparison, output_format: str, folder: Path) -> list[Path]:
    """Write the table (comparison.txt, .md, .csv or .json) and comparison.png into `folder`; return both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    return [write_table(comparison, output_format, folder), plot_curves(comparison.runs, folder / "comparison.png")]


def write_table(comparison: Comparison, output_format: str, folder: Path) -> Path:
    """Write the table as comparison.txt, .md, .csv or .json into `folder`; return its path."""
    table = folder / f"comparison{FILE_SUFFIXES[output_format]}"
    table.write_text(render(comparison, output_format), encoding="utf-8")
    return table


def curve_label(run: RunRecord) -> str:
    """How a run is named in the figure: its device, then its short id."""
    return f"{run.device} [{run.run_id[:8]}]"


def plot_curves(runs: Sequence[RunRecord], path: Path) -> Path:
    """A PNG of every run's per-epoch loss and metrics, train solid and validation dashed, labelled by device."""
    from deep_learning.analysis.figures import plot_learning_curves

    return plot_learning_curves([(curve_label(run), run.histories) for run in runs], path)
