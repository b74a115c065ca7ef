"""TrainConfig: every hyperparameter and choice of a training run, with its default and its check.

The CLI options, the MLproject parameters and the MLflow params all use these field names.
This module imports neither torch nor mlflow, so the CLI can build its options instantly.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from deep_learning.core.errors import ConfigError
from deep_learning.core.factories import is_import_path, is_python_reference
from deep_learning.core.monitoring import could_monitor, monitorable

DATASETS = ("mnist", "fashion-mnist")  # built in; also imagefolder:DIR, csv:FILE, text:FILE and package.module:factory
IMAGE_FOLDER = "imagefolder:"
FILE_DATASETS = (IMAGE_FOLDER, "csv:", "text:")  # a prefix and a folder or file
AUTO = "auto"
CLASSIFICATION, MULTILABEL, REGRESSION, SEQUENCE = "classification", "multilabel", "regression", "sequence"
TASK_NAMES = (CLASSIFICATION, MULTILABEL, REGRESSION, SEQUENCE)
MODELS = ("mlp", "cnn", "transformer")  # built in; also package.module:factory
LOADERS = ("tensor", "dataloader")
AMP_MODES = ("off", "bf16", "fp16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")  # torch.compile's modes
OPTIMIZERS = ("sgd", "adamw", "adam", "rmsprop")
LR_SCHEDULES = ("constant", "step", "cosine", "onecycle")
MONITOR_MODES = ("auto", "min", "max")
ALL_DEVICES = "all"  # `train --device all`: one run per available device, under one parent run


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class TrainConfig:
    """One training run: the chapter's defaults (MNIST, MLP 784-128-10, SGD lr 0.1, 5 epochs)."""

    dataset: str = field(
        default="mnist",
        metadata=_help(
            "mnist, fashion-mnist, imagefolder:DIR (DIR/train/<class>/*.png), csv:FILE (with --target), text:FILE (characters), or package.module:factory returning the splits."
        ),
    )
    task: str = field(
        default=AUTO,
        metadata=_help(
            "auto (from the data and the model's output), classification, multilabel, regression or sequence: the default loss, metrics and checks."
        ),
    )
    target: str = field(
        default="", metadata=_help("csv:FILE: the column to predict (several, comma-separated, for a regression with several outputs).")
    )
    block_size: int = field(default=64, metadata=_help("text:FILE: characters per sample, each predicting the next at every position."))
    model: str = field(
        default="mlp", metadata=_help("mlp (the chapter's), cnn, transformer, or package.module:factory building an nn.Module.")
    )
    model_args: str = field(
        default="", metadata=_help("Arguments of the model's factory: key=value (repeatable; JSON values) or a JSON object.")
    )
    metrics: str = field(
        default=AUTO,
        metadata=_help(
            "Metrics to log, comma-separated (auto: the task's): accuracy, f1, precision, recall, auroc, top5; mse, mae, r2; perplexity."
        ),
    )
    epochs: int = field(default=5, metadata=_help("Number of training epochs."))
    lr: float = field(default=0.1, metadata=_help("Learning rate (the peak one, with a schedule)."))
    optimizer: str = field(default="sgd", metadata=_help("sgd (the chapter's), adamw, adam or rmsprop."))
    momentum: float = field(default=0.0, metadata=_help("Momentum of sgd and rmsprop."))
    weight_decay: float = field(default=0.0, metadata=_help("Weight decay (L2 for sgd, adam and rmsprop; decoupled for adamw)."))
    adam_beta1: float = field(default=0.9, metadata=_help("Adam and AdamW's beta1."))
    adam_beta2: float = field(default=0.999, metadata=_help("Adam and AdamW's beta2."))
    lr_schedule: str = field(
        default="constant", metadata=_help("constant, step (per epoch), cosine or onecycle (per step); after --warmup-epochs.")
    )
    warmup_epochs: float = field(
        default=0.0,
        metadata=_help("Epochs of linear warm-up from lr/steps to lr, stepped per optimizer step (onecycle: its rising phase)."),
    )
    lr_step_size: int = field(default=1, metadata=_help("The step schedule multiplies the lr by --lr-gamma every N epochs."))
    lr_gamma: float = field(default=0.1, metadata=_help("The step schedule's factor."))
    grad_clip_norm: float = field(
        default=0.0, metadata=_help("Clip the gradients' total 2-norm to X (0: off); logs grad_norm_mean and grad_norm_max.")
    )
    accumulate_batches: int = field(default=1, metadata=_help("Step the optimizer once every N batches, on their mean loss."))
    batch_size: int = field(default=64, metadata=_help("Training batch size."))
    val_batch_size: int = field(default=128, metadata=_help("Validation and test batch size."))
    seed: int = field(default=42, metadata=_help("Seed for Python, NumPy and torch (model init, shuffling)."))
    split_seed: int = field(default=42, metadata=_help("Seed of the generator that splits train/validation."))
    deterministic: bool = field(default=True, metadata=_help("Use deterministic algorithms where possible."))
    device: str = field(
        default="auto",
        metadata=_help(
            "auto, cpu, cuda, cuda:N, mps, xpu, ... (auto: the default accelerator, else cpu); all: one run per available device, compared."
        ),
    )
    train_subset: int = field(default=0, metadata=_help("Train on the first N samples of the training split (0: all 50,000)."))
    steps_per_epoch: int = field(
        default=0, metadata=_help("Batches per training epoch (0: one pass of the training data; a stream's: read on across epochs).")
    )
    val_fraction: float = field(
        default=0.0,
        metadata=_help(
            "Share of the training data held out for validation (and test) where the dataset has no such split (0: MNIST's 10,000 of 60,000, else 0.1)."
        ),
    )
    image_size: int = field(default=0, metadata=_help("Resize images of an image folder to N x N (0: keep their size)."))
    loader: str = field(
        default="tensor", metadata=_help("tensor: splits decoded once onto the device; dataloader: the chapter's DataLoader. Same batches.")
    )
    compile: bool = field(default=False, metadata=_help("Compile the model with torch.compile."))
    compile_mode: str = field(
        default="default",
        metadata=_help("torch.compile's mode with --compile: default, reduce-overhead (CUDA graphs on CUDA) or max-autotune."),
    )
    amp: str = field(default="off", metadata=_help("Mixed precision: off, bf16 or fp16 (autocast; fp16 adds a GradScaler)."))
    checkpoint_dir: str = field(default="checkpoints", metadata=_help("Local folder for per-epoch checkpoints (one subfolder per run)."))
    keep_checkpoints: int = field(default=1, metadata=_help("How many of the latest epoch checkpoints to keep, locally and in the run."))
    keep_best: int = field(
        default=0, metadata=_help("Also keep the N best checkpoints by --monitor, locally and as LoggedModels of the run.")
    )
    early_stopping_patience: int = field(default=0, metadata=_help("Stop after N epochs without improvement of --monitor (0: off)."))
    monitor: str = field(
        default="val_loss",
        metadata=_help("The epoch metric early stopping and the best checkpoints follow: val_loss, val_accuracy, train_loss, ..."),
    )
    monitor_mode: str = field(
        default="auto", metadata=_help("min or max: which way --monitor improves (auto: min for a loss or error, else max).")
    )
    restore_best: bool = field(
        default=False, metadata=_help("Score the test split and log the model of the best epoch by --monitor, not the last.")
    )
    log_every_n_steps: int = field(default=0, metadata=_help("Also log train_loss_step and lr_step every N optimizer steps (0: off)."))
    profile: bool = field(
        default=False, metadata=_help("Record a torch.profiler trace of a few steps of the first epoch (artifacts profile/).")
    )
    register_model: str = field(
        default="", metadata=_help("Register the logged model under this name in the model registry (empty: don't).")
    )

    def __post_init__(self) -> None:
        if not isinstance(self.model_args, str):  # a mapping, from a config file or fit()
            object.__setattr__(self, "model_args", json.dumps(dict(self.model_args), sort_keys=True) if self.model_args else "")
        problems = list(_problems(self))
        if problems:
            raise ConfigError("; ".join(problems))

    def to_params(self) -> dict[str, Any]:
        """The config as MLflow params: field name to value."""
        return dataclasses.asdict(self)

    @property
    def model_arguments(self) -> dict[str, Any]:
        """`model_args` as keyword arguments for the model's factory."""
        return json.loads(self.model_args) if self.model_args else {}

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The metrics to log, in order (none named: `auto`, the task's own)."""
        if self.metrics.strip() == AUTO:
            return ()
        return tuple(name.strip() for name in self.metrics.split(",") if name.strip())


# The settings a run's name shows when they differ from the defaults: what a person tells runs apart by.
NAMED_SETTINGS = (
    "lr",
    "batch_size",
    "optimizer",
    "weight_decay",
    "momentum",
    "lr_schedule",
    "grad_clip_norm",
    "accumulate_batches",
    "amp",
    "seed",
)


def settings_apart(config: TrainConfig) -> str:
    """The named settings where `config` differs from the defaults, as a run's name shows them: `lr=0.05 seed=3`."""
    defaults = TrainConfig()
    return " ".join(f"{name}={getattr(config, name)}" for name in NAMED_SETTINGS if getattr(config, name) != getattr(defaults, name))


TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes"), ("false", "0", "no")


def field_value(name: str, text: str) -> Any:
    """A config field's value from its text (a grid's, a search's choice, a logged param), of the field's type.

    Booleans are true/false, 1/0 or yes/no; integers may be written as 3 or 3.0. ValueError when the text is none of these.
    """
    kind = type(next(field for field in dataclasses.fields(TrainConfig) if field.name == name).default)
    if kind is bool:
        if text.lower() not in TRUE_WORDS + FALSE_WORDS:
            raise ValueError(text)
        return text.lower() in TRUE_WORDS
    if kind is int:
        number = float(text)
        if not number.is_integer():
            raise ValueError(text)
        return int(number)
    return kind(text)


def option_name(field_name: str) -> str:
    """The CLI spelling of a config field: batch_size -> --batch-size."""
    return "--" + field_name.replace("_", "-")


def _problems(config: TrainConfig):
    # The names' form only: whether an import path imports is for the recipe to find out.
    if not (config.dataset in DATASETS or config.dataset.startswith(FILE_DATASETS) or is_import_path(config.dataset)):
        yield f"dataset must be one of {', '.join(DATASETS)}, {IMAGE_FOLDER}DIR, csv:FILE, text:FILE or an import path package.module:factory, not {config.dataset!r}"
    if not (config.model in MODELS or is_import_path(config.model) or is_python_reference(config.model)):
        yield f"model must be one of {', '.join(MODELS)} or an import path package.module:factory, not {config.model!r}"
    if config.task not in (AUTO, *TASK_NAMES):
        yield f"task must be one of {AUTO}, {', '.join(TASK_NAMES)}, not {config.task!r}"
    try:
        arguments = config.model_arguments
    except ValueError:
        yield f"model_args must be a JSON object, not {config.model_args!r}"
    else:
        if not isinstance(arguments, dict):
            yield f"model_args must be a JSON object, not {config.model_args!r}"
    if not config.metric_names and config.metrics.strip() != AUTO:
        yield "metrics must name at least one metric, or be auto"
    for name in ("epochs", "batch_size", "val_batch_size", "keep_checkpoints", "lr_step_size", "accumulate_batches", "block_size"):
        value = getattr(config, name)
        if not _is_int(value) or value < 1:
            yield f"{name} must be a positive integer, not {value!r}"
    for name in ("train_subset", "steps_per_epoch", "image_size", "keep_best", "early_stopping_patience", "log_every_n_steps"):
        value = getattr(config, name)
        if not _is_int(value) or value < 0:
            yield f"{name} must be 0 or a positive integer, not {value!r}"
    yield from _optimization_problems(config)
    yield from _monitor_problems(config)
    if not isinstance(config.val_fraction, (int, float)) or not 0 <= config.val_fraction < 1:
        yield f"val_fraction must be 0 (the dataset's own) or a number between 0 and 1, not {config.val_fraction!r}"
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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _optimization_problems(config: TrainConfig):
    if config.optimizer not in OPTIMIZERS:
        yield f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {config.optimizer!r}"
    if not _is_number(config.lr) or config.lr <= 0:
        yield f"lr must be a finite number above 0, not {config.lr!r}"
    for name in ("momentum", "weight_decay", "grad_clip_norm"):
        value = getattr(config, name)
        if not _is_number(value) or value < 0:
            yield f"{name} must be a finite number, 0 or above, not {value!r}"
    if config.optimizer in ("adam", "adamw") and config.momentum:
        yield f"momentum is for sgd and rmsprop; {config.optimizer}'s momentum is --adam-beta1"
    for name in ("adam_beta1", "adam_beta2"):
        value = getattr(config, name)
        if not _is_number(value) or not 0 <= value < 1:
            yield f"{name} must be a number from 0 to below 1, not {value!r}"
    if config.lr_schedule not in LR_SCHEDULES:
        yield f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, not {config.lr_schedule!r}"
    if not _is_number(config.warmup_epochs) or config.warmup_epochs < 0:
        yield f"warmup_epochs must be a finite number, 0 or above, not {config.warmup_epochs!r}"
    elif _is_int(config.epochs) and config.warmup_epochs >= max(config.epochs, 1):
        yield f"warmup_epochs ({config.warmup_epochs}) must be fewer than the epochs ({config.epochs})"
    if not _is_number(config.lr_gamma) or config.lr_gamma <= 0:
        yield f"lr_gamma must be a finite number above 0, not {config.lr_gamma!r}"


def _monitor_problems(config: TrainConfig):
    if config.monitor_mode not in MONITOR_MODES:
        yield f"monitor_mode must be one of {', '.join(MONITOR_MODES)}, not {config.monitor_mode!r}"
    if not could_monitor(config.monitor, config.metric_names):
        monitored = monitorable(config.metric_names or ("<metric>",))
        yield f"monitor must be one of the epoch metrics {', '.join(monitored)}, not {config.monitor!r}"
