"""deep_learning: the PyTorch training template of chapter 2.7, reproducible and tracked in MLflow.

The chapter's API is importable from here, and `fit` for a user's own model, data, task and metrics
(`ModelLoss` for a model that computes its own loss), `Callback` to hook into the loop, and the toolkit
from Python: `runs`, `compare`, `sweep` and `load_model`. Submodules load on first use, so that the CLI
answers `--help` without importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.3.0"

_EXPORTS = {
    "set_seed": "deep_learning.core.reproducibility",
    "get_default_device": "deep_learning.core.devices",
    "get_data_root": "deep_learning.core.data.files",
    "train": "deep_learning.core.training",
    "evaluate": "deep_learning.core.training",
    "train_and_evaluate": "deep_learning.core.training",
    "EpochResult": "deep_learning.core.results",
    "Callback": "deep_learning.core.callbacks",
    "TrainConfig": "deep_learning.core.config",
    "run_experiment": "deep_learning.experiment.runner",
    "fit": "deep_learning.experiment.fitting",
    "Recipe": "deep_learning.experiment.recipe",
    "ModelLoss": "deep_learning.core.batches",
    "runs": "deep_learning.toolkit.reading",
    "compare": "deep_learning.toolkit.reading",
    "load_model": "deep_learning.toolkit.models",
    "sweep": "deep_learning.toolkit.studies",
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
