"""TrainConfig: every hyperparameter and choice of a training run, with its default and its check.

The CLI options, the MLproject parameters and the MLflow params all use these field names.
This module imports neither torch nor mlflow, so the CLI can build its options instantly.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from deep_learning.errors import ConfigError

DATASETS = ("mnist", "fashion-mnist")
MODELS = ("mlp",)
LOADERS = ("tensor", "dataloader")
AMP_MODES = ("off", "bf16", "fp16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")  # torch.compile's modes
ALL_DEVICES = "all"  # `train --device all`: one run per available device, under one parent run


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class TrainConfig:
    """One training run: the chapter's defaults (MNIST, MLP 784-128-10, SGD lr 0.1, 5 epochs)."""

    dataset: str = field(default="mnist", metadata=_help("Dataset to train on."))
    model: str = field(default="mlp", metadata=_help("Model architecture."))
    epochs: int = field(default=5, metadata=_help("Number of training epochs."))
    lr: float = field(default=0.1, metadata=_help("SGD learning rate."))
    batch_size: int = field(default=64, metadata=_help("Training batch size."))
    val_batch_size: int = field(default=128, metadata=_help("Validation and test batch size."))
    seed: int = field(default=42, metadata=_help("Seed for Python, NumPy and torch (model init, shuffling)."))
    split_seed: int = field(default=42, metadata=_help("Seed of the generator that splits train/validation."))
    deterministic: bool = field(default=True, metadata=_help("Use deterministic algorithms where possible."))
    device: str = field(default="auto", metadata=_help("auto, cpu, cuda, cuda:N, mps, xpu, ... (auto: the default accelerator, else cpu); all: one run per available device, compared."))
    train_subset: int = field(default=0, metadata=_help("Train on the first N samples of the training split (0: all 50,000)."))
    loader: str = field(default="tensor", metadata=_help("tensor: splits decoded once onto the device; dataloader: the chapter's DataLoader. Same batches."))
    compile: bool = field(default=False, metadata=_help("Compile the model with torch.compile."))
    compile_mode: str = field(default="default", metadata=_help("torch.compile's mode with --compile: default, reduce-overhead (CUDA graphs on CUDA) or max-autotune."))
    amp: str = field(default="off", metadata=_help("Mixed precision: off, bf16 or fp16 (autocast; fp16 adds a GradScaler)."))
    checkpoint_dir: str = field(default="checkpoints", metadata=_help("Local folder for per-epoch checkpoints (one subfolder per run)."))
    keep_checkpoints: int = field(default=1, metadata=_help("How many of the latest epoch checkpoints to keep, locally and in the run."))
    register_model: str = field(default="", metadata=_help("Register the logged model under this name in the model registry (empty: don't)."))

    def __post_init__(self) -> None:
        problems = list(_problems(self))
        if problems:
            raise ConfigError("; ".join(problems))

    def to_params(self) -> dict[str, Any]:
        """The config as MLflow params: field name to value."""
        return dataclasses.asdict(self)


def _problems(config: TrainConfig):
    if config.dataset not in DATASETS:
        yield f"dataset must be one of {', '.join(DATASETS)}, not {config.dataset!r}"
    if config.model not in MODELS:
        yield f"model must be one of {', '.join(MODELS)}, not {config.model!r}"
    for name in ("epochs", "batch_size", "val_batch_size", "keep_checkpoints"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            yield f"{name} must be a positive integer, not {value!r}"
    if not isinstance(config.lr, (int, float)) or not math.isfinite(config.lr) or config.lr <= 0:
        yield f"lr must be a finite number above 0, not {config.lr!r}"
    if isinstance(config.train_subset, bool) or not isinstance(config.train_subset, int) or config.train_subset < 0:
        yield f"train_subset must be 0 (all) or a positive integer, not {config.train_subset!r}"
    if config.loader not in LOADERS:
        yield f"loader must be one of {', '.join(LOADERS)}, not {config.loader!r}"
    if config.compile_mode not in COMPILE_MODES:
        yield f"compile_mode must be one of {', '.join(COMPILE_MODES)}, not {config.compile_mode!r}"
    elif config.compile_mode != "default" and not config.compile:
        yield f"compile_mode {config.compile_mode!r} needs compile true"
    if config.amp not in AMP_MODES:
        yield f"amp must be one of {', '.join(AMP_MODES)}, not {config.amp!r}"
    if not config.device.strip():
        yield "device must not be empty"
