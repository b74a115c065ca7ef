"""Scores beyond a run's metrics, for its figures and `evaluate`: each class's accuracy and the confusion matrix
(torchmetrics'), and a regression's predictions against the truth. They are updated in the pass that scores the
metrics (`evaluate(..., also=task_scores(...))`), read from the device once at its end, and summed or gathered
across processes under torchrun.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix
from torchmetrics.utilities import dim_zero_cat

from deep_learning.core.batches import forward, predictions, to_device
from deep_learning.core.config import CLASSIFICATION, REGRESSION

PLOTTED_POINTS = 5000  # a regression figure draws at most this many predicted values


@dataclass(frozen=True)
class ClassScores:
    """Per true class: its accuracy and its row of the confusion matrix (columns: predicted class)."""

    per_class_accuracy: list[float]
    confusion_matrix: list[list[int]]


def task_scores(task: str, num_classes: int) -> Metric | MetricCollection | None:
    """What a task counts beyond its metrics: a classifier's per-class accuracy and confusion matrix, a regression's
    predicted and true values; None for the other tasks."""
    if task == CLASSIFICATION:
        return MetricCollection(
            {
                "per_class_accuracy": MulticlassAccuracy(num_classes, average=None),
                "confusion_matrix": MulticlassConfusionMatrix(num_classes),
            }
        )
    if task == REGRESSION:
        return PredictedAndTrue()
    return None


def class_scores_of(scores: MetricCollection) -> ClassScores:
    """The per-class accuracy and confusion matrix `task_scores` counted (computed: synchronised across processes)."""
    computed = {name: value.tolist() for name, value in scores.compute().items()}
    return ClassScores(computed["per_class_accuracy"], computed["confusion_matrix"])


def predicted_and_true_of(scores: PredictedAndTrue) -> tuple[list[float], list[float]]:
    """The predicted and true values `task_scores` kept for a regression (at most PLOTTED_POINTS), as plain lists."""
    predicted, true = scores.compute()
    return predicted.tolist(), true.tolist()


def update_over(model: nn.Module, batches: Iterable[tuple[Any, Any]], device: torch.device, scores: Metric | MetricCollection) -> None:
    """`scores` updated with the model's predictions on every batch, without gradients (where no pass scores the metrics)."""
    model.eval()
    with torch.inference_mode():
        for inputs, target in batches:
            scores.update(predictions(forward(model, to_device(inputs, device))), to_device(target, device))


class PredictedAndTrue(Metric):
    """A regression's first PLOTTED_POINTS predicted values and their targets, flattened (gathered across processes)."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("predicted", [], dist_reduce_fx="cat")
        self.add_state("true", [], dist_reduce_fx="cat")
        self.kept = 0

    def update(self, prediction: Tensor, target: Tensor) -> None:
        if self.kept < PLOTTED_POINTS:  # counted on the host from shapes: no read of the device
            self.predicted.append(prediction.reshape(-1)[: PLOTTED_POINTS - self.kept].float())
            self.true.append(target.reshape(-1)[: PLOTTED_POINTS - self.kept].float())
            self.kept += self.predicted[-1].numel()

    def compute(self) -> tuple[Tensor, Tensor]:
        return dim_zero_cat(self.predicted), dim_zero_cat(self.true)
