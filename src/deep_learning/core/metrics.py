"""The metrics a run can log, by name, each equal to torchmetrics' (tested) with a cheaper update that never reads the host."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from deep_learning.core.errors import ConfigError


class Fraction(Metric):
    """A fraction counted over a pass: the samples (or positions) an update finds right over those it counts, summed
    across processes under torchrun like any torchmetrics state; 0 before any is counted."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    correct: Tensor
    total: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.add_state("correct", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def compute(self) -> Tensor:
        """Right over counted, in float32 as torchmetrics divides (0 before any sample)."""
        return self.correct.float() / self.total.clamp(min=1).float()


class Accuracy(Fraction):
    """The fraction of samples whose highest logit is their label: `MulticlassAccuracy(average="micro")`'s value.

    Its update is four kernels (argmax, compare, sum, add) and no argument checks, where the general
    metric runs its stat-scores machinery: 17 µs a batch in Python against 42 µs on a CPU, and fewer
    launches on a GPU.
    """

    def update(self, logits: Tensor, target: Tensor) -> None:
        """Count a batch: `logits` of shape (N, classes), `target` class indices of shape (N,)."""
        self.correct += (logits.argmax(dim=1) == target).sum()
        self.total += target.numel()


class TopKAccuracy(Fraction):
    """The fraction of samples whose label is among their `k` highest logits: `MulticlassAccuracy(top_k=k, average="micro")`'s value.

    torchmetrics one-hot encodes the targets for top-k, and on the CPU `one_hot` reads the smallest
    and largest label back to check them, twice a batch; a comparison with the top-k indices reads nothing.
    """

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = k

    def update(self, logits: Tensor, target: Tensor) -> None:
        """Count a batch: `logits` of shape (N, classes), `target` class indices of shape (N,)."""
        self.correct += (logits.topk(self.k, dim=1).indices == target.unsqueeze(1)).any(dim=1).sum()
        self.total += target.numel()


class MacroScore(Metric):
    """Macro-averaged F1, precision or recall: torchmetrics' `MulticlassF1Score` (and kin) with `average="macro"`'s value.

    The update counts the batch into a confusion matrix with one scatter-add (three kernels and no
    argument checks, where torchmetrics' stat-scores update runs a dozen and checks its arguments).
    As torchmetrics does, a class with neither predictions nor samples is left out of the average.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    confusion: Tensor

    def __init__(self, num_classes: int, score: str) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.score = score
        self.add_state("confusion", torch.zeros(num_classes * num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: Tensor, target: Tensor) -> None:
        """Count a batch: `logits` of shape (N, classes), `target` class indices of shape (N,)."""
        cells = target.reshape(-1) * self.num_classes + logits.argmax(dim=1)
        self.confusion.scatter_add_(0, cells, torch.ones_like(cells))

    def compute(self) -> Tensor:
        """The score of each class from its true and false positives and negatives, averaged over the classes seen."""
        confusion = self.confusion.reshape(self.num_classes, self.num_classes).double()
        true_positives = confusion.diagonal()
        false_positives = confusion.sum(dim=0) - true_positives
        false_negatives = confusion.sum(dim=1) - true_positives
        numerator, denominator = {
            "precision": (true_positives, true_positives + false_positives),
            "recall": (true_positives, true_positives + false_negatives),
            "f1": (2 * true_positives, 2 * true_positives + false_positives + false_negatives),
        }[self.score]
        per_class = numerator / denominator.clamp(min=1)
        seen = (true_positives + false_positives + false_negatives > 0).double()
        return ((per_class * seen).sum() / seen.sum().clamp(min=1)).float()


class AUROC(Metric):
    """Macro one-vs-rest AUROC over softmax probabilities: `MulticlassAUROC(average="macro", thresholds=None)`'s value.

    Computed as the Mann-Whitney U statistic with mid-ranks for ties, vectorised over classes, so
    neither update nor compute makes an op whose output size depends on the data or reads a value
    back to the host (torchmetrics' exact curve does both). A class with no positive or no negative
    sample scores 0 and counts in the mean, as in torchmetrics (which also warns).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    probabilities: list[Tensor]
    targets: list[Tensor]

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.add_state("probabilities", [], dist_reduce_fx="cat")
        self.add_state("targets", [], dist_reduce_fx="cat")

    def update(self, logits: Tensor, target: Tensor) -> None:
        """Keep a batch: `logits` of shape (N, classes), `target` class indices of shape (N,)."""
        self.probabilities.append(logits.softmax(dim=1))
        self.targets.append(target)

    def compute(self) -> Tensor:
        """The mean over classes of each class's one-vs-rest AUROC, in float32."""
        return macro_auroc(dim_zero_cat(self.probabilities), dim_zero_cat(self.targets), self.num_classes)


def macro_auroc(probabilities: Tensor, targets: Tensor, num_classes: int) -> Tensor:
    """Macro one-vs-rest AUROC of (N, classes) scores against (N,) class indices, by mid-rank U statistics."""
    scores = probabilities.T.contiguous()  # (classes, N): one sorted row per class
    ordered = scores.sort(dim=1).values
    below = torch.searchsorted(ordered, scores, right=False)
    up_to = torch.searchsorted(ordered, scores, right=True)
    ranks = (below + up_to + 1).double() / 2  # 1-based, tied scores share their mean rank
    positive = (targets.unsqueeze(0) == torch.arange(num_classes, device=targets.device).unsqueeze(1)).double()
    positives = positive.sum(dim=1)
    negatives = targets.numel() - positives
    u_statistic = (ranks * positive).sum(dim=1) - positives * (positives + 1) / 2
    # With no positives or no negatives U is 0, so the class scores 0, as torchmetrics' curve gives.
    return (u_statistic / (positives * negatives).clamp(min=1)).mean().float()


METRIC_NAMES = ("accuracy", "f1", "precision", "recall", "auroc", "top5")

_BUILDERS: dict[str, Callable[[int], Metric]] = {
    "accuracy": lambda num_classes: Accuracy(),
    "f1": lambda num_classes: MacroScore(num_classes, "f1"),
    "precision": lambda num_classes: MacroScore(num_classes, "precision"),
    "recall": lambda num_classes: MacroScore(num_classes, "recall"),
    "auroc": AUROC,
    "top5": lambda num_classes: TopKAccuracy(min(5, num_classes)),
}


def accuracy_metric() -> Accuracy:
    """The accuracy every run logs: the fraction of correct predictions, without per-batch host syncs."""
    return Accuracy()


def build_metrics(names: Sequence[str], num_classes: int) -> dict[str, Metric]:
    """Fresh metric objects by name, in the order given; validate_args off, as its checks read the host every batch."""
    check_metric_names(names)
    if num_classes < 2:
        raise ConfigError(f"metrics need at least 2 classes, not {num_classes}")
    return {name: _BUILDERS[name](num_classes) for name in names}


def parse_metric_names(text: str) -> tuple[str, ...]:
    """The metric names of a comma-separated list such as `accuracy,f1`, checked."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    check_metric_names(names)
    return names


def check_metric_names(names: Sequence[str]) -> None:
    """Refuse an empty list, an unknown name or a name given twice."""
    choices = ", ".join(METRIC_NAMES)
    if not names:
        raise ConfigError(f"no metric named: use any of {choices}")
    for index, name in enumerate(names):
        if name not in METRIC_NAMES:
            raise ConfigError(f"unknown metric {name!r}: use any of {choices}")
        if name in names[:index]:
            raise ConfigError(f"metric {name!r} is named twice: name each once, from {choices}")
