"""What a run learns to do, and what follows from it: the default loss, the metrics by name, and the check of the
model's output before a run starts.

| task | target per sample | model output | default loss | metrics (default first) |
| --- | --- | --- | --- | --- |
| classification | a class index | (N, classes) | cross-entropy | accuracy; f1, precision, recall, auroc, top5 |
| multilabel | a 0/1 vector | (N, labels) | BCEWithLogitsLoss | f1, accuracy (exact match); precision, recall |
| regression | floats of any shape | the target's shape | MSELoss | mse, mae, r2 |
| sequence | a class index per position | (N, L, classes) | cross-entropy over the last dimension | perplexity, accuracy (per token) |

`infer_task` tells them apart from a batch's target and the model's output on it; a run may also name its task.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from deep_learning.core.batches import is_integral
from deep_learning.core.config import AUTO, CLASSIFICATION, MULTILABEL, REGRESSION, SEQUENCE, TASK_NAMES
from deep_learning.core.errors import ConfigError
from deep_learning.core.metrics import METRIC_NAMES, build_metrics
from deep_learning.core.task_metrics import (
    IGNORE_INDEX,
    ExactMatch,
    MeanAbsoluteError,
    MeanSquaredError,
    MultilabelScore,
    Perplexity,
    R2Score,
    TokenAccuracy,
)


class SequenceCrossEntropy(nn.Module):
    """Cross-entropy over the last dimension: logits (N, L, V) against class indices (N, L), positions equal to
    `ignore_index` (-100) left out; the mean over the counted positions."""

    def __init__(self, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=self.ignore_index)


class MultilabelLoss(nn.BCEWithLogitsLoss):
    """BCEWithLogitsLoss taking 0/1 targets of any dtype (integer or boolean ones are cast to the logits')."""

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return super().forward(logits, target.to(logits.dtype))


class RegressionLoss(nn.MSELoss):
    """MSELoss taking targets of any numeric dtype (cast to the output's)."""

    def forward(self, output: Tensor, target: Tensor) -> Tensor:
        return super().forward(output, target.to(output.dtype))


@dataclass(frozen=True)
class Task:
    """A task's defaults and checks; `width` is the model's output size per sample (classes, labels, outputs)."""

    name: str
    default_metrics: tuple[str, ...]
    metrics: dict[str, Callable[[int], Metric]]
    default_loss: Callable[[], nn.Module]
    has_classes: bool  # whether outputs are class scores: confusion matrix, per-class accuracy, class names

    def build_metrics(self, names: Sequence[str], width: int) -> dict[str, Metric]:
        """Fresh metric objects by name, in the order given; an unknown name, or one given twice, is one line."""
        check_metric_names(self, names)
        return {name: self.metrics[name](width) for name in names}


def _classification_metrics() -> dict[str, Callable[[int], Metric]]:
    return {name: (lambda width, name=name: build_metrics([name], width)[name]) for name in METRIC_NAMES}


TASKS = {
    CLASSIFICATION: Task(CLASSIFICATION, ("accuracy",), _classification_metrics(), nn.CrossEntropyLoss, True),
    MULTILABEL: Task(
        MULTILABEL,
        ("f1", "accuracy"),
        {
            "f1": lambda width: MultilabelScore(width, "f1"),
            "accuracy": lambda width: ExactMatch(),
            "precision": lambda width: MultilabelScore(width, "precision"),
            "recall": lambda width: MultilabelScore(width, "recall"),
        },
        MultilabelLoss,
        False,
    ),
    REGRESSION: Task(
        REGRESSION,
        ("mse", "mae", "r2"),
        {"mse": lambda width: MeanSquaredError(), "mae": lambda width: MeanAbsoluteError(), "r2": R2Score},
        RegressionLoss,
        False,
    ),
    SEQUENCE: Task(
        SEQUENCE,
        ("perplexity", "accuracy"),
        {"perplexity": lambda width: Perplexity(), "accuracy": lambda width: TokenAccuracy()},
        SequenceCrossEntropy,
        False,
    ),
}


def task_named(name: str) -> Task:
    if name not in TASKS:
        raise ConfigError(f"task must be one of {AUTO}, {', '.join(TASK_NAMES)}, not {name!r}")
    return TASKS[name]


def check_metric_names(task: Task, names: Sequence[str]) -> None:
    """Refuse an empty list, a name the task has no metric for, or a name given twice."""
    choices = ", ".join(task.metrics)
    if not names:
        raise ConfigError(f"no metric named: a {task.name} run logs any of {choices}")
    for index, name in enumerate(names):
        if name not in task.metrics:
            raise ConfigError(f"unknown metric {name!r} for a {task.name} run: use any of {choices}")
        if name in names[:index]:
            raise ConfigError(f"metric {name!r} is named twice: name each once, from {choices}")


def _zeros_and_ones(tensor: Tensor) -> bool:
    # The example batch's few values, read once before the run starts (not on the training path).
    return bool(((tensor == 0) | (tensor == 1)).all())


def infer_task(target: Tensor, output: Tensor) -> str:
    """The task a batch's target and the model's output on it describe (see the module's table), or a one-line refusal."""
    if target.ndim == 1 and is_integral(target):
        return CLASSIFICATION
    if target.ndim >= 2 and is_integral(target) and output.ndim == target.ndim + 1 and output.shape[:-1] == target.shape:
        return SEQUENCE
    if target.ndim >= 2 and output.shape == target.shape and (target.dtype == torch.bool or _zeros_and_ones(target)):
        return MULTILABEL
    if target.is_floating_point():
        return REGRESSION
    raise ConfigError(
        f"Cannot tell the task from targets of shape {tuple(target.shape)} and dtype {str(target.dtype).removeprefix('torch.')} "
        f"with model outputs of shape {tuple(output.shape)}: name it with task= (or --task) {', '.join(TASK_NAMES)}."
    )


def output_width(task: Task, output: Tensor) -> int:
    """The model's output size per sample: classes (or the vocabulary, per position), labels or regression outputs."""
    if task.name == SEQUENCE:
        return output.shape[-1]
    return math.prod(output.shape[1:]) or 1


def check_output(task: Task, output: Tensor, target: Tensor, num_classes: int, model_name: str) -> None:
    """Refuse, in one line, a model whose output on a batch does not fit the task (`num_classes` 0: not known)."""
    shape, wanted = tuple(output.shape), _expected_shape(task, target, num_classes, output)
    if shape == wanted:
        return
    why = {
        CLASSIFICATION: f"a classifier needs one logit per class ({num_classes} classes)"
        if num_classes
        else "a classifier needs (N, classes) logits",
        MULTILABEL: "a multi-label model needs one logit per label, the target's shape",
        REGRESSION: "a regression's output must have the target's shape",
        SEQUENCE: "a sequence model needs one logit per class at every position of the target",
    }[task.name]
    raise ConfigError(
        f"The model {model_name} outputs {shape} for a batch of {target.shape[0]}, not {wanted}: {why} (targets of shape {tuple(target.shape)})."
    )


def _expected_shape(task: Task, target: Tensor, num_classes: int, output: Tensor) -> tuple[int, ...]:
    if task.name == CLASSIFICATION:
        classes = num_classes or (output.shape[1] if output.ndim == 2 else 0)
        return (target.shape[0], classes)
    if task.name == SEQUENCE:
        return (*target.shape, num_classes or output.shape[-1])
    return tuple(target.shape)
