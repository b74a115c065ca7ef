"""`runs` and `compare` from Python, the code the CLI's commands of those names run: what the store holds, and runs
side by side (a sweep's parent: its roll-up)."""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deep_learning import tracking
from deep_learning.analysis import comparison
from deep_learning.analysis.display import html_table
from deep_learning.analysis.listing import RunList, grouped_by_parent
from deep_learning.analysis.records import KIND_TAG, SWEEP
from deep_learning.core.errors import InputError

if TYPE_CHECKING:
    import pandas

ROLLUP_FILES = ("rollup.md", "rollup.csv")


def runs(experiment: str | None = None, limit: int = 20) -> RunList:
    """The experiment's training runs (by default the one `train` logs to), newest first, a sweep's children together
    under their parent; comparison and evaluation runs and the parents of sweeps are left out."""
    experiment_id, name = tracking.find_experiment(experiment)
    records = tracking.list_runs(experiment_id, limit=limit, histories=("epoch_seconds",))
    return RunList(f"experiment {name!r}", tuple(grouped_by_parent(records)))


@dataclass(frozen=True)
class SweepRollup:
    """A sweep's roll-up as its parent run logged it: each group's final metrics over its seeds, and the verdicts."""

    run_id: str
    markdown: str
    table: str  # rollup.csv: one row per group and final metric

    def __str__(self) -> str:
        return self.markdown

    def _repr_html_(self) -> str:
        frame = self.to_pandas()
        lines = [[str(value) for value in row] for row in frame.itertuples(index=False)]
        return f"<p>Roll-up of sweep {self.run_id}</p>" + html_table(list(frame.columns), lines)

    def to_pandas(self) -> pandas.DataFrame:
        """One row per group and final metric: group, configuration, device, metric, mean, std, min, max, n."""
        import pandas

        return pandas.read_csv(io.StringIO(self.table))


def compare(*run_ids: str, experiment: str | None = None, rollup: bool = True) -> comparison.Comparison | SweepRollup:
    """Runs side by side, one column per run (ids may also be comma-separated); without ids, the latest finished run of
    each device type and config in `experiment`. A sweep's parent alone gives its roll-up (with `rollup`)."""
    ids = [run_id for argument in run_ids for run_id in argument.replace(",", " ").split()]
    if ids and experiment:
        raise InputError("Name run ids or an experiment, not both: run ids select the runs themselves.")
    if not ids:
        experiment_id, _ = tracking.find_experiment(experiment)
        latest = comparison.select_latest_per_device_and_config(tracking.list_runs(experiment_id, finished_only=True))
        ids = [run.run_id for run in latest]
    if len(ids) == 1 and rollup:
        parent = tracking.get_run(ids[0])
        if parent.tags.get(KIND_TAG) == SWEEP:
            return _rollup_of(parent)
    return comparison.compare_runs([tracking.get_run(run_id, histories=comparison.histories_to_read) for run_id in ids])


def _rollup_of(parent) -> SweepRollup:
    with tempfile.TemporaryDirectory() as folder:
        markdown, table = (Path(tracking.download_artifact(parent, name, folder)).read_text() for name in ROLLUP_FILES)
    return SweepRollup(parent.run_id, markdown, table)
