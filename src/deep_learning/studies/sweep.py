"""Many runs under one parent: a study's sweep of a grid, seeds and devices, rolled up (each group's spread over
seeds, each device against the CPU), and a sweep over devices alone (`train --device all`) also compared side by side."""

from __future__ import annotations

import html
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from deep_learning import tracking
from deep_learning.analysis.comparison import compare_runs, histories_to_read, learning_metrics, plot_curves, render, write_table
from deep_learning.analysis.records import GROUP_TAG, KIND_TAG, POINT_TAG, STUDY_TAG, SWEEP, RunRecord
from deep_learning.analysis.rollup import (
    DeviceVerdict,
    GroupRollup,
    RollupReport,
    SeedDifference,
    device_verdicts,
    parent_metrics,
    roll_up,
    seed_differences,
)
from deep_learning.analysis.rollup import to_csv as rollup_csv
from deep_learning.analysis.rollup import to_json as rollup_json
from deep_learning.analysis.rollup import to_markdown as rollup_markdown
from deep_learning.core.config import ALL_DEVICES, TrainConfig
from deep_learning.core.data.splits import DataSplits, load_splits
from deep_learning.core.errors import CheckpointError, InputError
from deep_learning.experiment.recipe import Recipe, recipe_from_config, run_name_for
from deep_learning.experiment.runner import resume_experiment, run_experiment
from deep_learning.studies.grid import Point, Study
from deep_learning.studies.parent import parent_run

if TYPE_CHECKING:
    import pandas


@dataclass(frozen=True)
class StudyResult:
    """A sweep's parent run, its children by point label, and their roll-up."""

    run_id: str
    children: dict[str, str]  # point label -> child run id
    rollups: list[GroupRollup]
    verdicts: list[DeviceVerdict]
    differences: list[SeedDifference]
    markdown: str  # the roll-up's tables, as rollup.md holds them
    where_to_look: str

    def summary(self) -> str:
        return f"Sweep {self.run_id} finished: {len(self.children)} runs in {len(self.rollups)} groups, rolled up in its artifacts; to browse it: {self.where_to_look}"

    def __repr__(self) -> str:
        return f"{self.summary()}\n{self.markdown}"

    def report(self) -> RollupReport:
        """The roll-up as the parent logged it (rollup.md and rollup.csv)."""
        return RollupReport(self.run_id, self.markdown, rollup_csv(self.rollups))

    def _repr_html_(self) -> str:
        return f"<p>{html.escape(self.summary())}</p>" + self.report()._repr_html_()

    def to_pandas(self) -> pandas.DataFrame:
        """The roll-up as rollup.csv holds it: one row per group and final metric, with mean, std, min, max and n."""
        return self.report().to_pandas()


def run_study(study: Study, data_root: str | Path | None = None, *, resume: str | None = None, progress: bool = False) -> StudyResult:
    """Train every point of `study` as a child of one parent run (kind sweep), then roll the children up on the parent.

    With `resume` (the parent's id), finished children are kept, unfinished ones resumed from their checkpoints
    (or, without one, replaced), and missing ones run.
    """
    points = study.points()  # every point checked before any run starts
    tags = {KIND_TAG: SWEEP, STUDY_TAG: study.to_json()}
    params = {
        **study.base.to_params(),
        "grid": json.dumps(study.grid),
        "seeds": ",".join(map(str, study.seeds)),
        "devices": ",".join(study.devices),
    }
    with parent_run(_parent_name(study), params, tags, resume) as parent:
        existing = {child.tags.get(POINT_TAG): child for child in tracking.child_runs(parent.run_id)}
        children = _train_points(points, existing, parent.run_id, SharedData(data_root), progress, study.vectorize)
        rollups, verdicts, differences, markdown = _roll_up(points, children, parent)
    return StudyResult(parent.run_id, children, rollups, verdicts, differences, markdown, parent.where_to_look())


def _parent_name(study: Study) -> str:
    """The parent run's name: like `mlp-mnist-all-devices` for a base config on every device (`train --device all`), else `mlp-mnist-sweep`."""
    return run_name_for(study.base.model, study.base.dataset, "all-devices" if study.base.device == ALL_DEVICES else "sweep")


def resumed_study(parent_run_id: str) -> Study:
    """The study a sweep's parent run holds, to continue it."""
    parent = tracking.get_run(parent_run_id)
    if parent.tags.get(KIND_TAG) != SWEEP or STUDY_TAG not in parent.tags:
        raise InputError(
            f"Run {parent_run_id} is not a sweep's parent run: `deep-learning runs` lists training runs, their parents are in the UI."
        )
    return Study.from_json(parent.tags[STUDY_TAG])


class SharedData:
    """The splits of each distinct data setting, loaded once for all the points that train on them."""

    FIELDS = ("dataset", "task", "target", "block_size", "val_fraction", "split_seed", "image_size", "train_subset")

    def __init__(self, data_root: str | Path | None) -> None:
        self.root = data_root
        self._loaded: dict[tuple, DataSplits] = {}

    def recipe(self, config: TrainConfig) -> Recipe:
        key = tuple(getattr(config, name) for name in self.FIELDS)
        if key not in self._loaded:
            self._loaded[key] = load_splits(config, self.root)
        return recipe_from_config(config, data=self._loaded[key])


def _train_points(
    points: list[Point], existing: dict[str, RunRecord], parent_run_id: str, data: SharedData, progress: bool, vectorize: bool
) -> dict[str, str]:
    """Each point's finished child run id, by label. With `vectorize`, the points of a group that have no run yet train
    together; a run already there is kept or resumed on its own."""
    together = {}
    if vectorize:
        from deep_learning.studies.vectorized import train_seeds_together

        for group in dict.fromkeys(point.group for point in points):
            new = [point for point in points if point.group == group and point.label not in existing]
            if len(new) > 1:
                results = train_seeds_together(new, data.recipe(new[0].config), parent_run_id=parent_run_id, progress=progress)
                together.update({point.label: result.run_id for point, result in zip(new, results)})
    return {
        point.label: together.get(point.label) or _train_point(point, existing.get(point.label), parent_run_id, data, progress)
        for point in points
    }


def _train_point(point: Point, existing: RunRecord | None, parent_run_id: str, data: SharedData, progress: bool) -> str:
    """The point's finished child: the one there is, else that one resumed, else a new one; return its id."""
    if existing is not None and existing.status == "FINISHED":
        return existing.run_id
    print(f"Sweep point {point.label}", flush=True)
    if existing is not None:
        try:
            return resume_experiment(existing.run_id, {}, data.root, progress=progress, parent_run_id=parent_run_id).run_id
        except CheckpointError:  # stopped before its first checkpoint: nothing to keep
            tracking.delete_run(existing.run_id)
    tags = {POINT_TAG: point.label, GROUP_TAG: point.group}
    return run_experiment(
        point.config, recipe=data.recipe(point.config), parent_run_id=parent_run_id, progress=progress, run_name=point.label, tags=tags
    ).run_id


def _roll_up(
    points: list[Point], children: dict[str, str], parent
) -> tuple[list[GroupRollup], list[DeviceVerdict], list[SeedDifference], str]:
    """Roll the children up, and log the statistics and rollup.csv/.md/.json/.png on the parent; when the points
    differ only in device, also print the children's comparison and log it as comparison.md/.csv/.png."""
    records = {label: tracking.get_run(run_id, histories=histories_to_read) for label, run_id in children.items()}
    keys = sorted(
        {key for record in records.values() for key in histories_to_read(record)}
        | {key for record in records.values() for key in record.metrics if key.startswith("test_")}
    )
    members = [(point.group, point.configuration, point.config.device, records[point.label]) for point in points]
    rollups = roll_up(members, keys)
    verdicts = device_verdicts(rollups, [key for key in keys if key.startswith(("val_", "test_"))])
    same_seeds = [(point.configuration, point.config.device, point.config.seed, records[point.label]) for point in points]
    differences = seed_differences(same_seeds, learning_metrics(list(records.values())))
    markdown = rollup_markdown(rollups, verdicts, differences)
    parent.log_metric_rows(parent_metrics(rollups))
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        files = {"rollup.csv": rollup_csv(rollups), "rollup.md": markdown, "rollup.json": rollup_json(rollups, verdicts, differences)}
        for file_name, text in files.items():
            (folder / file_name).write_text(text)
        from deep_learning.analysis.figures import plot_rollup

        paths = [folder / file_name for file_name in files] + [plot_rollup(rollups, folder / "rollup.png")]
        if len({(point.configuration, point.config.seed) for point in points}) == 1:  # a sweep over devices alone
            paths += _side_by_side([records[point.label] for point in points], folder)
        parent.log_files(paths)
    return rollups, verdicts, differences, markdown


def _side_by_side(runs: list[RunRecord], folder: Path) -> list[Path]:
    """Print the runs' comparison as a table, and write it into `folder` as comparison.md, comparison.csv and comparison.png."""
    comparison = compare_runs(runs)
    print(render(comparison, "table"), flush=True)  # a blank line before the roll-up
    return [
        write_table(comparison, "markdown", folder),
        write_table(comparison, "csv", folder),
        plot_curves(comparison.runs, folder / "comparison.png"),
    ]
