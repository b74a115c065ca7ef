"""Finding what a run is resumed from: its config (with the overrides a resume may change) and its latest checkpoint, local or downloaded from the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from deep_learning import tracking
from deep_learning.core.checkpoint_files import latest_checkpoint, load_checkpoint
from deep_learning.core.config import TrainConfig
from deep_learning.core.errors import CheckpointError

Resumed = tuple[str, dict[str, Any]]  # the run id and its checkpoint


def checkpoint_path(run_id: str, checkpoint_dir: str) -> Path:
    folder = Path(checkpoint_dir) / run_id
    path = latest_checkpoint(folder) or tracking.download_latest_checkpoint(run_id, folder)
    if path is None:
        raise CheckpointError(f"Run {run_id} has no checkpoint to resume from (none in {folder} nor in the run).")
    return path


def resume_config(run_id: str, overrides: dict[str, Any]) -> tuple[TrainConfig, dict[str, Any]]:
    """The config of the run to resume (its checkpoint's, with `overrides`) and its latest checkpoint."""
    params = tracking.get_run(run_id).params
    checkpoint = load_checkpoint(
        checkpoint_path(run_id, overrides.get("checkpoint_dir", params.get("checkpoint_dir", TrainConfig.checkpoint_dir)))
    )
    saved = checkpoint["config"]
    unknown = sorted(set(saved) - set(TrainConfig.__dataclass_fields__))
    if unknown:
        raise CheckpointError(f"Cannot resume: the checkpoint holds settings this version does not know ({', '.join(unknown)}).")
    return TrainConfig(**{**saved, **overrides}), checkpoint


def checkpoint_to_resume(run_id: str, checkpoint_dir: str) -> dict[str, Any]:
    """The latest checkpoint of run `run_id`: local, else downloaded from the run (whether it fits is checked when it is restored)."""
    tracking.get_run(run_id)  # an unknown run is named as such
    return load_checkpoint(checkpoint_path(run_id, checkpoint_dir))
