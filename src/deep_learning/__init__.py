"""deep_learning: the PyTorch training template of chapter 2.7, reproducible and tracked in MLflow.

The chapter's API is importable from here, and `fit` for a user's own model, data, task and metrics
(`ModelLoss` for a model that computes its own loss). Submodules load on first use, so that the CLI
answers `--help` without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.3.0"

_EXPORTS = {
    "set_seed": "deep_learning.reproducibility",
    "get_default_device": "deep_learning.devices",
    "get_data_root": "deep_learning.data",
    "train": "deep_learning.training",
    "evaluate": "deep_learning.training",
    "train_and_evaluate": "deep_learning.training",
    "EpochResult": "deep_learning.training",
    "TrainConfig": "deep_learning.config",
    "run_experiment": "deep_learning.experiment",
    "fit": "deep_learning.fitting",
    "Recipe": "deep_learning.recipe",
    "ModelLoss": "deep_learning.batches",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'deep_learning' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
