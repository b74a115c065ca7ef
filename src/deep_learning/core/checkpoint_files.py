"""Checkpoint files: their names, their format and reading them without running pickled code."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from deep_learning import __version__
from deep_learning.core.errors import CheckpointError, first_line

FORMAT = 1
CHECKPOINT_PATTERN = re.compile(r"^epoch-(\d+)\.pt$")


def checkpoint_name(epoch: int) -> str:
    return f"epoch-{epoch:04d}.pt"


def library_versions() -> dict[str, str]:
    return {"deep_learning": __version__, "torch": str(torch.__version__)}


def checkpoints_in(folder: Path) -> list[Path]:
    """The epoch checkpoints in `folder`, oldest epoch first."""
    if not folder.is_dir():
        return []
    found = [path for path in folder.iterdir() if CHECKPOINT_PATTERN.match(path.name)]
    return sorted(found, key=lambda path: int(CHECKPOINT_PATTERN.match(path.name).group(1)))


def epoch_of(path: Path) -> int:
    """The epoch of a checkpoint file named as `checkpoint_name` names it."""
    return int(CHECKPOINT_PATTERN.match(path.name).group(1))


def latest_checkpoint(folder: Path) -> Path | None:
    """The checkpoint of the highest epoch in `folder`, if any."""
    found = checkpoints_in(folder)
    return found[-1] if found else None


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint with `weights_only=True`, so that no pickled code runs."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path} is not a readable checkpoint ({first_line(error)}).") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a checkpoint of this version of deep_learning (format {FORMAT}).")
    return checkpoint
