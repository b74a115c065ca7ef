"""The list of an experiment's training runs: a sweep's children together under their parent, as a terminal's table,
a notebook's table or a pandas DataFrame."""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from deep_learning.analysis.display import html_table
from deep_learning.analysis.records import PARENT_RUN_TAG, RunRecord, sort_metric_names
from deep_learning.analysis.tables import formatted, text_table

if TYPE_CHECKING:
    import pandas

LISTED_PARAMS = ("dataset", "epochs", "lr", "batch_size", "seed")


@dataclass(frozen=True)
class RunList:
    """Training runs, newest first, a sweep's children together where its newest falls."""

    source: str  # where they are from: "experiment 'Default'", "search <parent run id>"
    runs: tuple[RunRecord, ...]

    def __str__(self) -> str:
        return runs_table(self.runs)

    def __repr__(self) -> str:
        return f"{len(self.runs)} training runs of {self.source}\n{self}"

    def _repr_html_(self) -> str:
        heading = html.escape(f"{len(self.runs)} training runs of {self.source}")
        return f"<p>{heading}</p>" + html_table(*runs_rows(self.runs))

    def to_pandas(self) -> pandas.DataFrame:
        """One row per run, as MLflow's search_runs gives them: run_id, run_name, status, device, start_time and
        duration_seconds, then params.<name> and metrics.<name> (each metric's last value)."""
        import pandas

        rows = [
            {
                "run_id": run.run_id,
                "run_name": run.run_name,
                "status": run.status,
                "device": run.device,
                "start_time": pandas.Timestamp(run.start_time_ms, unit="ms", tz="UTC"),
                "duration_seconds": run.duration_seconds,
                **{f"params.{name}": value for name, value in sorted(run.params.items())},
                **{f"metrics.{name}": value for name, value in sorted(run.metrics.items())},
            }
            for run in self.runs
        ]
        return pandas.DataFrame(rows)


def grouped_by_parent(runs: Sequence[RunRecord]) -> list[RunRecord]:
    """The runs in their order, but a sweep's children together where its first one falls, named under their parent."""
    children: dict[str, list[RunRecord]] = {}
    for run in runs:
        children.setdefault(run.tags.get(PARENT_RUN_TAG, run.run_id), []).append(run)
    grouped = []
    for parent, members in children.items():
        if parent in (member.run_id for member in members):
            grouped += members
        else:
            grouped += [dataclasses.replace(member, run_name=f"{parent[:8]}/ {member.run_name}") for member in members]
    return grouped


def runs_rows(runs: Sequence[RunRecord]) -> tuple[list[str], list[list[str]]]:
    """The runs as a table's header and lines: id, name, status, device, key params, final scores, speed and duration.

    The scores are val_<m> and test_<m> for each metric that is some run's first (accuracy when logged), so runs
    of one metric set get one pair of columns; "-" where a run did not log one.
    """
    headline = sort_metric_names(name for run in runs for name in run.metric_names()[:1])
    scores = [f"{split}_{name}" for name in headline for split in ("val", "test")]
    header = ["run_id", "run_name", "status", "device", *LISTED_PARAMS, *scores, "epoch_seconds", "duration"]
    lines = [
        [
            run.run_id,
            run.run_name,
            run.status,
            run.device,
            *(run.params.get(name, "-") for name in LISTED_PARAMS),
            *(formatted(run.metrics.get(score), "metric") for score in scores),
            formatted(run.mean("epoch_seconds"), "seconds"),
            format_duration(run.duration_seconds),
        ]
        for run in runs
    ]
    return header, lines


def runs_table(runs: Sequence[RunRecord]) -> str:
    """The runs as a text table (see runs_rows)."""
    return text_table(*runs_rows(runs))


def format_duration(seconds: float) -> str:
    """12.3s, 4m05s or 2h03m."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
