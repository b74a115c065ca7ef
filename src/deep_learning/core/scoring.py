"""Scores beyond a run's metrics, for its figures and `evaluate`: each class's accuracy and the confusion matrix
(torchmetrics'), and a regression's predictions against the truth. Each is one pass without gradients, read from the
device once at its end, and summed or gathered across processes under torchrun.
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

PLOTTED_POINTS = 5000  # a regression figure draws at most this many predicted values


@dataclass(frozen=True)
class ClassScores:
    """Per true class: its accuracy and its row of the confusion matrix (columns: predicted class)."""

    per_class_accuracy: list[float]
    confusion_matrix: list[list[int]]


def _scored(model: nn.Module, batches: Iterable[tuple[Any, Any]], device: torch.device, metric: Metric | MetricCollection) -> Any:
    """`metric` updated with the model's predictions on every batch, computed (synchronised across processes)."""
    metric = metric.to(device)
    model.eval()
    with torch.inference_mode():
        for inputs, target in batches:
            metric.update(predictions(forward(model, to_device(inputs, device))), to_device(target, device))
    return metric.compute()


def class_scores(model: nn.Module, batches: Iterable[tuple[Any, Any]], device: torch.device, num_classes: int) -> ClassScores:
    """Each class's accuracy and the confusion matrix of a classifier over `batches`."""
    scores = MetricCollection(
        {"per_class_accuracy": MulticlassAccuracy(num_classes, average=None), "confusion_matrix": MulticlassConfusionMatrix(num_classes)}
    )
    computed = {name: value.tolist() for name, value in _scored(model, batches, device, scores).items()}
    return ClassScores(computed["per_class_accuracy"], computed["confusion_matrix"])


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


def predicted_against_true(model: nn.Module, batches: Iterable[tuple[Any, Any]], device: torch.device) -> tuple[list[float], list[float]]:
    """A regression model's predicted values over `batches` and the true ones, as plain lists (at most PLOTTED_POINTS)."""
    predicted, true = _scored(model, batches, device, PredictedAndTrue())
    return predicted.tolist(), true.tolist()
