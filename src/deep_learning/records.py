"""Tracked runs as plain data, as `tracking` reads them back: no mlflow here, so anything can use them."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field

KIND_TAG = "deep_learning.kind"
SOURCE_RUN_TAG = "deep_learning.source_run_id"
COMPARED_RUNS_TAG = "deep_learning.compared_run_ids"
SWEPT_DEVICES_TAG = "deep_learning.devices"
TRAINING = "training"
COMPARISON = "comparison"
EVALUATION = "evaluation"
DEVICE_SWEEP = "device-sweep"


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
        """training, comparison, evaluation or device-sweep (the parent of one training run per device): what made the run."""
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

    def mean(self, metric: str) -> float | None:
        """The mean of a metric's history over its steps, or None when it was not read or not logged."""
        values = list(self.histories.get(metric, {}).values())
        return statistics.fmean(values) if values else None
