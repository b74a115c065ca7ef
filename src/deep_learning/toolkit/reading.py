"""`runs` and `compare` from Python, the code the CLI's commands of those names run: what the store holds, and runs
side by side (a sweep's parent: its roll-up)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from deep_learning import tracking
from deep_learning.analysis import comparison
from deep_learning.analysis.listing import RunList, grouped_by_parent
from deep_learning.analysis.records import KIND_TAG, SWEEP, RunRecord
from deep_learning.analysis.rollup import RollupReport
from deep_learning.core.errors import InputError

ROLLUP_FILES = ("rollup.md", "rollup.csv")


def runs(experiment: str | None = None, limit: int = 20) -> RunList:
    """The experiment's training runs (by default the one `train` logs to), newest first, a sweep's children together
    under their parent; comparison and evaluation runs and the parents of sweeps are left out."""
    experiment_id, name = tracking.find_experiment(experiment)
    records = tracking.list_runs(experiment_id, limit=limit, histories=("epoch_seconds",))
    return RunList(f"experiment {name!r}", tuple(grouped_by_parent(records)))


def compare(*run_ids: str, experiment: str | None = None, rollup: bool = True) -> comparison.Comparison | RollupReport:
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


def _rollup_of(parent: RunRecord) -> RollupReport:
    """The roll-up a sweep's parent logged, read back."""
    with tempfile.TemporaryDirectory() as folder:
        markdown, table = (Path(tracking.download_artifact(parent, name, folder)).read_text() for name in ROLLUP_FILES)
    return RollupReport(parent.run_id, markdown, table)
