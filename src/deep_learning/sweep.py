"""Many runs under one parent: one config on every device of this machine (compared), and a study's sweep of a
grid, seeds and devices (rolled up: each group's spread over seeds, and each device against the CPU)."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from deep_learning import tracking
from deep_learning.comparison import Comparison, compare_runs, histories_to_read, plot_curves, render, write_table
from deep_learning.config import ALL_DEVICES, TrainConfig
from deep_learning.data import DataSplits, load_splits
from deep_learning.devices import available_devices
from deep_learning.errors import CheckpointError, InputError, Interrupted
from deep_learning.experiment import ExperimentResult, resume_experiment, run_experiment
from deep_learning.grid import Point, Study
from deep_learning.recipe import Recipe, recipe_from_config, short_name
from deep_learning.records import DEVICE_SWEEP, GROUP_TAG, KIND_TAG, POINT_TAG, STUDY_TAG, SWEEP, SWEPT_DEVICES_TAG, RunRecord
from deep_learning.rollup import DeviceVerdict, GroupRollup, device_verdicts, parent_metrics, roll_up
from deep_learning.rollup import to_csv as rollup_csv
from deep_learning.rollup import to_json as rollup_json
from deep_learning.rollup import to_markdown as rollup_markdown


@dataclass(frozen=True)
class SweepResult:
    """The parent run, the devices it trained on, the training run on each, and how they compare."""

    run_id: str
    devices: list[str]
    runs: list[ExperimentResult]
    comparison: Comparison
    where_to_look: str

    def summary(self) -> str:
        """The line that ends a sweep's output: where to browse it."""
        return (
            f"Device sweep {self.run_id} finished: one run per device ({', '.join(self.devices)}), "
            f"compared in its artifacts; to browse it: {self.where_to_look}"
        )


def run_on_every_device(config: TrainConfig, data_root: str | Path | None = None, *, progress: bool = False) -> SweepResult:
    """Train `config` on each available device in turn, as child runs of a run tagged deep_learning.kind=device-sweep,
    print their comparison and log it to that parent run (comparison.md, comparison.csv, comparison.png)."""
    devices = available_devices()
    tags = {KIND_TAG: DEVICE_SWEEP, SWEPT_DEVICES_TAG: ",".join(devices)}
    params = dataclasses.replace(config, device=ALL_DEVICES).to_params()
    with tracking.tracked_run(f"{short_name(config.model)}-{short_name(config.dataset)}-all-devices", params, tags) as parent:
        runs = [
            run_experiment(dataclasses.replace(config, device=device), data_root, parent_run_id=parent.run_id, progress=progress)
            for device in devices
        ]
        comparison = compare_runs([tracking.get_run(run.run_id, histories=histories_to_read) for run in runs])
        print(render(comparison, "table"), end="", flush=True)
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            parent.log_files([
                write_table(comparison, "markdown", folder),
                write_table(comparison, "csv", folder),
                plot_curves(comparison.runs, folder / "comparison.png"),
            ])
    return SweepResult(parent.run_id, devices, runs, comparison, parent.where_to_look())


@dataclass(frozen=True)
class StudyResult:
    """A sweep's parent run, its children by point label, and their roll-up."""

    run_id: str
    children: dict[str, str]  # point label -> child run id
    rollups: list[GroupRollup]
    verdicts: list[DeviceVerdict]
    markdown: str  # the roll-up's tables, as rollup.md holds them
    where_to_look: str

    def summary(self) -> str:
        return f"Sweep {self.run_id} finished: {len(self.children)} runs in {len(self.rollups)} groups, rolled up in its artifacts; to browse it: {self.where_to_look}"


def run_study(study: Study, data_root: str | Path | None = None, *, resume: str | None = None, progress: bool = False) -> StudyResult:
    """Train every point of `study` as a child of one parent run (kind sweep), then roll the children up on the parent.

    With `resume` (the parent's id), finished children are kept, unfinished ones resumed from their checkpoints
    (or, without one, replaced), and missing ones run.
    """
    points = study.points()  # every point checked before any run starts
    tags = {KIND_TAG: SWEEP, STUDY_TAG: study.to_json()}
    params = {**study.base.to_params(), "grid": json.dumps(study.grid), "seeds": ",".join(map(str, study.seeds)), "devices": ",".join(study.devices)}
    name = f"{short_name(study.base.model)}-{short_name(study.base.dataset)}-sweep"
    with tracking.tracked_run(name, params, tags, resume_run_id=resume) as parent:
        existing = {child.tags.get(POINT_TAG): child for child in tracking.child_runs(parent.run_id)}
        data = SharedData(data_root)
        try:
            children = {point.label: _train_point(point, existing.get(point.label), parent.run_id, data, progress) for point in points}
        except Interrupted as interrupted:
            interrupted.sweep_run_id = parent.run_id  # what to resume: the sweep, not its child
            raise
        rollups, verdicts, markdown = _roll_up(points, children, parent)
    return StudyResult(parent.run_id, children, rollups, verdicts, markdown, parent.where_to_look())


def resumed_study(parent_run_id: str) -> Study:
    """The study a sweep's parent run holds, to continue it."""
    parent = tracking.get_run(parent_run_id)
    if parent.tags.get(KIND_TAG) != SWEEP or STUDY_TAG not in parent.tags:
        raise InputError(f"Run {parent_run_id} is not a sweep's parent run: `deep-learning runs` lists training runs, their parents are in the UI.")
    return Study.from_json(parent.tags[STUDY_TAG])


class SharedData:
    """The splits of each distinct data setting, loaded once for all the points that train on them."""

    FIELDS = ("dataset", "val_fraction", "split_seed", "image_size", "train_subset")

    def __init__(self, data_root: str | Path | None) -> None:
        self.root = data_root
        self._loaded: dict[tuple, DataSplits] = {}

    def recipe(self, config: TrainConfig) -> Recipe:
        key = tuple(getattr(config, name) for name in self.FIELDS)
        if key not in self._loaded:
            self._loaded[key] = load_splits(config, self.root)
        return recipe_from_config(config, data=self._loaded[key])


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
        point.config, recipe=data.recipe(point.config), parent_run_id=parent_run_id, progress=progress, run_name=point.label, tags=tags,
    ).run_id


def _roll_up(points: list[Point], children: dict[str, str], parent) -> tuple[list[GroupRollup], list[DeviceVerdict], str]:
    """Roll the children up, and log the statistics and rollup.csv/.md/.json/.png on the parent."""
    records = {label: tracking.get_run(run_id, histories=histories_to_read) for label, run_id in children.items()}
    keys = sorted({key for record in records.values() for key in histories_to_read(record)} | {key for record in records.values() for key in record.metrics if key.startswith("test_")})
    members = [(point.group, point.configuration, point.config.device, records[point.label]) for point in points]
    rollups = roll_up(members, keys)
    verdicts = device_verdicts(rollups, [key for key in keys if key.startswith(("val_", "test_"))])
    markdown = rollup_markdown(rollups, verdicts)
    parent.log_metric_rows(parent_metrics(rollups))
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        files = {"rollup.csv": rollup_csv(rollups), "rollup.md": markdown, "rollup.json": rollup_json(rollups, verdicts)}
        for file_name, text in files.items():
            (folder / file_name).write_text(text)
        from deep_learning.figures import plot_rollup

        parent.log_files([folder / file_name for file_name in files] + [plot_rollup(rollups, folder / "rollup.png")])
    return rollups, verdicts, markdown
