"""The metrics of the tasks beyond single-label classification: multi-label, regression and sequences (language
models, tagging). Each is a torchmetrics `Metric` equal to torchmetrics' own (tested) whose update never reads the
device: no argument checks, no operation whose output size depends on the data.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from deep_learning.core.metrics import Fraction

IGNORE_INDEX = -100  # positions of a sequence target that no loss or metric counts (torch's cross_entropy default)


class ExactMatch(Fraction):
    """Multi-label exact match: the fraction of samples whose every label is right (`MultilabelExactMatch`'s value).

    Takes logits (N, labels) against 0/1 targets; a label is predicted where its sigmoid is above 0.5.
    """

    def update(self, logits: Tensor, target: Tensor) -> None:
        right = (logits.sigmoid() > 0.5) == target.bool()
        self.correct += right.flatten(1).all(dim=1).sum()
        self.total += target.shape[0]


class MultilabelScore(Metric):
    """Macro-averaged multi-label F1, precision or recall over the labels (`MultilabelF1Score(average="macro")` and kin):
    each label's score from its true and false positives and negatives, a label with none of them scoring 0."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    true_positives: Tensor
    false_positives: Tensor
    false_negatives: Tensor

    def __init__(self, num_labels: int, score: str) -> None:
        super().__init__()
        self.score = score
        for name in ("true_positives", "false_positives", "false_negatives"):
            self.add_state(name, torch.zeros(num_labels, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: Tensor, target: Tensor) -> None:
        predicted, actual = (logits.sigmoid() > 0.5).flatten(1), target.bool().flatten(1)
        self.true_positives += (predicted & actual).sum(dim=0)
        self.false_positives += (predicted & ~actual).sum(dim=0)
        self.false_negatives += (~predicted & actual).sum(dim=0)

    def compute(self) -> Tensor:
        tp, fp, fn = (counts.double() for counts in (self.true_positives, self.false_positives, self.false_negatives))
        numerator, denominator = {"precision": (tp, tp + fp), "recall": (tp, tp + fn), "f1": (2 * tp, 2 * tp + fp + fn)}[self.score]
        return (numerator / denominator.clamp(min=1)).mean().float()


class _Sums(Metric):
    """Float64 sums over a pass (float32 on MPS, which has no float64) and a count, summed across processes."""

    is_differentiable = False
    full_state_update = False

    count: Tensor

    def __init__(self, sums: dict[str, int]) -> None:
        super().__init__()
        self.sum_names = tuple(sums)
        for name, size in sums.items():
            self.add_state(
                name, torch.zeros(size, dtype=torch.float64) if size else torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum"
            )
        self.add_state("count", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def _apply(self, fn, *args, **kwargs):
        moved = super()._apply(fn, *args, **kwargs)
        for name in self.sum_names:
            value = getattr(self, name)
            if value.device.type == "mps" and value.dtype == torch.float64:
                setattr(self, name, value.float())
        return moved


class MeanSquaredError(_Sums):
    """The mean squared error over every predicted value (`torchmetrics.MeanSquaredError`'s value)."""

    higher_is_better = False
    total: Tensor

    def __init__(self, absolute: bool = False) -> None:
        super().__init__({"total": 0})
        self.absolute = absolute

    def update(self, prediction: Tensor, target: Tensor) -> None:
        error = prediction.to(self.total.dtype) - target.to(self.total.dtype)
        self.total += (error.abs() if self.absolute else error * error).sum()
        self.count += target.numel()

    def compute(self) -> Tensor:
        return (self.total / self.count.clamp(min=1)).float()


class MeanAbsoluteError(MeanSquaredError):
    """The mean absolute error over every predicted value (`torchmetrics.MeanAbsoluteError`'s value)."""

    def __init__(self) -> None:
        super().__init__(absolute=True)


class R2Score(_Sums):
    """The coefficient of determination, averaged over the outputs (`torchmetrics.R2Score(multioutput="uniform_average")`):
    sums of the targets, their squares and the squared residuals per output (the target's dimensions after the first)."""

    higher_is_better = True
    targets: Tensor
    squared_targets: Tensor
    residuals: Tensor

    def __init__(self, num_outputs: int) -> None:
        super().__init__({"targets": num_outputs, "squared_targets": num_outputs, "residuals": num_outputs})

    def update(self, prediction: Tensor, target: Tensor) -> None:
        columns = target.reshape(target.shape[0], -1).to(self.targets.dtype)
        predicted = prediction.reshape(target.shape[0], -1).to(self.targets.dtype)
        self.targets += columns.sum(dim=0)
        self.squared_targets += (columns * columns).sum(dim=0)
        self.residuals += ((columns - predicted) ** 2).sum(dim=0)
        self.count += target.shape[0]

    def compute(self) -> Tensor:
        mean = self.targets / self.count.clamp(min=1)
        total = self.squared_targets - self.targets * mean
        return (1 - self.residuals / total).mean().float()


class Perplexity(_Sums):
    """exp of the mean cross-entropy per counted position (`torchmetrics.text.Perplexity(ignore_index=-100)`'s value):
    logits (N, L, V) against targets (N, L), positions equal to -100 left out."""

    higher_is_better = False
    total: Tensor

    def __init__(self) -> None:
        super().__init__({"total": 0})

    def update(self, logits: Tensor, target: Tensor) -> None:
        flat_target = target.reshape(-1)
        losses = F.cross_entropy(logits.reshape(flat_target.shape[0], -1).float(), flat_target, ignore_index=IGNORE_INDEX, reduction="sum")
        self.total += losses.to(self.total.dtype)
        self.count += (flat_target != IGNORE_INDEX).sum()

    def compute(self) -> Tensor:
        return torch.exp(self.total / self.count.clamp(min=1)).float()


class TokenAccuracy(Fraction):
    """The fraction of counted positions whose highest logit is their target (`MulticlassAccuracy(average="micro",
    ignore_index=-100)` over every position): logits (N, L, V) against targets (N, L)."""

    def update(self, logits: Tensor, target: Tensor) -> None:
        counted = target != IGNORE_INDEX
        self.correct += ((logits.argmax(dim=-1) == target) & counted).sum()
        self.total += counted.sum()
