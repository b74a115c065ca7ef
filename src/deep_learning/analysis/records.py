"""Tracked runs as plain data, as `tracking` reads them back: no mlflow here, so anything can use them."""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

KIND_TAG = "deep_learning.kind"
PARENT_RUN_TAG = "mlflow.parentRunId"  # MLflow's own, on a nested run
SOURCE_RUN_TAG = "deep_learning.source_run_id"
COMPARED_RUNS_TAG = "deep_learning.compared_run_ids"
MODEL_FORMAT_TAG = "deep_learning.model_format"  # pt2 (torch.export) or pickle
MODEL_INPUTS_TAG = "deep_learning.model_inputs"  # tensor, or "positional: NAME, ..." for a model of several inputs
STOP_REASON_TAG = "deep_learning.stop_reason"  # why a run ended before its last epoch: early stopping, a search's pruner
TRAINING = "training"
COMPARISON = "comparison"
EVALUATION = "evaluation"
SWEEP = "sweep"
SEARCH = "search"
SEARCH_TAG = "deep_learning.search"  # on a search's parent: its base config, space, storage and trials as JSON
STUDY_TAG = "deep_learning.study"  # on a sweep's parent: the study (base config, grid, seeds, devices) as JSON
POINT_TAG = "deep_learning.point"  # on a sweep's child: its point's label, such as "lr=0.05 seed=3 cuda"
GROUP_TAG = "deep_learning.group"  # on a sweep's child: the label without the seed
VECTORIZED_TAG = "deep_learning.vectorized"  # on a sweep's child trained with --vectorize: how many seeds trained together
SPLITS = ("train", "val", "test")
# Logged under a split's prefix but not a metric a user chose: the loss, the speed, and evaluation's per-class scores.
NOT_METRICS = ("loss", "samples_per_second")
PER_CLASS = re.compile(r"_class_\d+$")


def metric_names(keys: Iterable[str], splits: Sequence[str] = SPLITS) -> list[str]:
    """The learning metrics named by logged keys such as val_f1 (f1): accuracy first, then the others alphabetically.

    MLflow does not keep the order metrics were logged in, so the order is one every store and run agrees on.
    """
    parts = (key.partition("_") for key in keys)
    return sort_metric_names(
        name for split, _, name in parts if split in splits and name and name not in NOT_METRICS and not PER_CLASS.search(name)
    )


def sort_metric_names(names: Iterable[str]) -> list[str]:
    """Metric names without repeats, accuracy first (the chapter's metric), then the others alphabetically."""
    return sorted(set(names), key=lambda name: (name != "accuracy", name))


def learning_metric_keys(names: Sequence[str], splits: Sequence[str] = SPLITS) -> list[str]:
    """The logged keys of the loss and of the named metrics, split by split: train_loss, train_<name>..., val_loss, ..."""
    return [f"{split}_{name}" for split in splits for name in ("loss", *names)]


@dataclass(frozen=True)
class RunRecord:
    """One MLflow run: its info, params, latest metrics, tags and, when asked for, metric histories by step."""

    run_id: str
    run_name: str
    experiment_id: str
    status: str
    start_time_ms: int
    end_time_ms: int | None
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]
    histories: dict[str, dict[int, float]] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """training, comparison, evaluation, sweep or search (the parents of many training runs): what made the run."""
        return self.tags.get(KIND_TAG, TRAINING)

    @property
    def device_type(self) -> str:
        return self.tags.get("device.type", "unknown")

    @property
    def device(self) -> str:
        """The device type and name the run logged, e.g. `cuda: NVIDIA H200`."""
        return f"{self.device_type}: {self.tags.get('device.name', 'unknown')}"

    @property
    def duration_seconds(self) -> float:
        """Wall-clock time from start to end (to now while the run is still going)."""
        end = self.end_time_ms if self.end_time_ms is not None else time.time() * 1000
        return (end - self.start_time_ms) / 1000

    def metric_names(self) -> list[str]:
        """The names of the learning metrics the run logged (accuracy, f1, iou, ...), accuracy first, then alphabetical."""
        return metric_names(self.metrics)

    def mean(self, metric: str) -> float | None:
        """The mean of a metric's history over its steps, or None when it was not read or not logged."""
        values = list(self.histories.get(metric, {}).values())
        return statistics.fmean(values) if values else None


def largest_difference(history: dict[int, float], reference: dict[int, float]) -> float | None:
    """The largest absolute difference of two per-epoch series over the epochs both hold (None when they share none)."""
    steps = history.keys() & reference.keys()
    return max((abs(history[step] - reference[step]) for step in steps), default=None)
