"""What a run reports to, as one interface: this base records nothing, and `tracking.TrackedRun` sends it to MLflow.

Ranks other than 0 of a torchrun job report to the base itself, so the runner never asks whether
it is tracked (as torchtitan's logger that does nothing on non-logging ranks).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from deep_learning.core.batches import ExampleInputs
from deep_learning.core.results import EpochResult


class Tracker:
    """A run's tracker. Every method here does nothing; `tracking.TrackedRun` overrides them all."""

    run_id = run_name = tracking_uri = ""

    def log_epoch(self, result: EpochResult, extra: dict[str, float] | None = None) -> None:
        """Record one epoch's losses and metrics (and `extra` ones) at step = epoch."""

    def log_metrics(self, metrics: dict[str, float], step: int, model_id: str | None = None) -> None:
        """Record metrics at a step (describing LoggedModel `model_id`, when given)."""

    def set_tags(self, tags: dict[str, str]) -> None:
        """Tag the run."""

    def log_datasets(self, name: str, source_url: str, digests: dict[str, str]) -> None:
        """Record each split the run used (its name, where it comes from, a digest of its content)."""

    def log_checkpoint(self, path: Path, stale: list[Path]) -> None:
        """Keep an epoch's checkpoint with the run, and drop those no longer kept."""

    def log_files(self, paths: Sequence[Path], folder: str | None = None) -> None:
        """Keep files with the run, at its root or in its `folder`."""

    def log_trained_model(
        self, model: torch.nn.Module, example: ExampleInputs, records: dict[str, dict[str, Any]], folder: Path, registered_name: str = ""
    ) -> str:
        """Keep the trained model with the run, loadable on any device, and the run's records (file name to content);
        return the model's id."""
        return ""

    def log_checkpoint_models(
        self, model: torch.nn.Module, example: ExampleInputs, kept: dict[int, dict[str, torch.Tensor]], best: tuple[int, str] | None
    ) -> None:
        """Keep the kept checkpoints (epoch to weights) as models of the run; mark `best` (its epoch, the monitored metric)."""

    def logged_epochs(self) -> set[int]:
        """The epochs the run already holds (a resumed run's)."""
        return set()

    def flush(self, wait_seconds: float) -> bool:
        """Send whatever is queued; True when nothing is left."""
        return True

    def save_pending(self, folder: Path) -> Path:
        """Write what could not be sent into `folder`; return the file."""
        return folder

    def where_to_look(self) -> str:
        """Where a person finds the run."""
        return ""
