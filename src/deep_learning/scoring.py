"""Scores beyond loss and accuracy: each class's accuracy and the confusion matrix, from torchmetrics."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix



@dataclass(frozen=True)
class ClassScores:
    """Per true class: its accuracy and its row of the confusion matrix (columns: predicted class)."""

    per_class_accuracy: list[float]
    confusion_matrix: list[list[int]]


def class_scores(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], device: torch.device, num_classes: int) -> ClassScores:
    """One pass without gradients over `batches`, read from the device once at the end."""
    scores = MetricCollection(
        {
            "per_class_accuracy": MulticlassAccuracy(num_classes, average=None),
            "confusion_matrix": MulticlassConfusionMatrix(num_classes),
        }
    ).to(device)
    model.eval()
    with torch.inference_mode():
        for X, y in batches:
            scores.update(model(X.to(device)), y.to(device))
    computed = {name: value.tolist() for name, value in scores.compute().items()}
    return ClassScores(computed["per_class_accuracy"], computed["confusion_matrix"])
