"""The chapter's own loop, as printed, for the benchmark to time against ours.

`TRAIN`, `EVALUATE` and `TRAIN_AND_EVALUATE` are chapter 2.7's definitions, verbatim (with the
indentation the printed text lost); tests/test_benchmark.py checks them against the chapter's listing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torchmetrics.classification import MulticlassAccuracy

# The names the three definitions use; get_default_device is only reached when no device is passed.
IMPORTS = """
import torch
import torch.nn as nn
import torch.optim as optim
import torch.utils.data as utils
from torch import Tensor
from torchmetrics import Metric
from deep_learning.core.devices import get_default_device
"""

TRAIN = """
def train(
    model: nn.Module,
    dataloader: utils.DataLoader[tuple[Tensor, Tensor]],
    loss_fn: nn.Module,
    optimizer: optim.Optimizer,
    metric: Metric,
    device: torch.device,
) -> tuple[float, float]:
    model.train()
    metric.reset()
    total_loss = 0.0
    for X, y in dataloader:
        X = X.to(device)
        y = y.to(device)
        logits = model(X)
        loss = loss_fn(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total_loss += loss.item()
        # We use `detach()` here to avoid keeping the computation graph
        # for the metric update.
        metric.update(logits.detach(), y)
    avg_loss = total_loss / len(dataloader)
    avg_metric = metric.compute().item()
    return avg_loss, avg_metric
"""

EVALUATE = """
def evaluate(
    model: nn.Module,
    dataloader: utils.DataLoader[tuple[Tensor, Tensor]],
    loss_fn: nn.Module,
    metric: Metric,
    device: torch.device,
) -> tuple[float, float]:
    model.eval()
    metric.reset()
    total_loss = 0.0
    with torch.inference_mode():
        for X, y in dataloader:
            X = X.to(device)
            y = y.to(device)
            logits = model(X)
            loss = loss_fn(logits, y)
            total_loss += loss.item()
            metric.update(logits, y)
    avg_loss = total_loss / len(dataloader)
    avg_metric = metric.compute().item()
    return avg_loss, avg_metric
"""

TRAIN_AND_EVALUATE = """
def train_and_evaluate(
    model: nn.Module,
    train_dl: utils.DataLoader[tuple[Tensor, Tensor]],
    val_dl: utils.DataLoader[tuple[Tensor, Tensor]],
    loss_fn: nn.Module,
    optimizer: optim.Optimizer,
    metric: Metric,
    val_metric: Metric,
    num_epochs: int,
    device: torch.device | None = None,
) -> None:
    if device is None:
        device = get_default_device()
    model.to(device)
    metric.to(device)
    val_metric.to(device)
    for epoch in range(1, num_epochs + 1):
        loss, score = train(
            model=model,
            dataloader=train_dl,
            loss_fn=loss_fn,
            optimizer=optimizer,
            metric=metric,
            device=device,
        )
        val_loss, val_score = evaluate(
            model=model,
            dataloader=val_dl,
            loss_fn=loss_fn,
            metric=val_metric,
            device=device,
        )
        w = len(str(num_epochs))
        print(
            f'Epoch [{epoch:{w}d}/{num_epochs:{w}d}] '
            f'| loss: {loss:.4f} '
            f'| metric: {score:.4f} '
            f'| val_loss: {val_loss:.4f} '
            f'| val_metric: {val_score:.4f}'
        )
"""


def chapter_loop() -> dict[str, Callable[..., Any]]:
    """The chapter's train, evaluate and train_and_evaluate, defined from their source."""
    namespace: dict[str, Any] = {}
    exec(IMPORTS + TRAIN + EVALUATE + TRAIN_AND_EVALUATE, namespace)
    return {name: namespace[name] for name in ("train", "evaluate", "train_and_evaluate")}


def chapter_metric() -> MulticlassAccuracy:
    """The metric the chapter's run passes its loop: per-class recall averaged, with argument checks."""
    return MulticlassAccuracy(num_classes=10)
