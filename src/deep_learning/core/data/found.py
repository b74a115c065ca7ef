"""What each kind of dataset gives the splits: its splits, class names, source and task; held-out parts drawn as the chapter draws its split."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.utils.data as utils

from deep_learning.core.errors import DataError

DEFAULT_VAL_FRACTION = 0.1  # held out for validation (and again for test) where a dataset has no split of its own


@dataclass(frozen=True)
class Found:
    """What each kind of dataset gives load_splits: the splits, the class names (None: the dataset's own), where they
    come from, and what the kind says of the task (empty: the run infers it) and of a csv file's columns."""

    train: utils.Dataset
    val: utils.Dataset
    test: utils.Dataset | None
    class_names: tuple[str, ...] | None
    source: str
    task: str = ""
    features: dict[str, Any] | None = None


def held_out_size(count: int, fraction: float) -> int:
    """How many of `count` samples a fraction holds out: at least one where there are two or more."""
    return max(round(count * fraction), 1 if count > 1 else 0)


def split_off(dataset: utils.Dataset, sizes: Sequence[int], split_seed: int) -> list[utils.Subset]:
    """The rest of `dataset` and held-out parts of `sizes`, seeded as the chapter's split."""
    rest = len(dataset) - sum(sizes)
    if rest < 1:
        raise DataError(f"the training data has {len(dataset)} samples: too few to hold out {' and '.join(map(str, sizes))} of them")
    return utils.random_split(dataset, [rest, *sizes], generator=torch.Generator().manual_seed(split_seed))
