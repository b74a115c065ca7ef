"""The chapter's loop: train, evaluate and train_and_evaluate.

Same names, signatures and numbers as the chapter, but the loss is accumulated on the device and
read once per epoch instead of once per batch. Tracking plugs in through `on_epoch`, a progress
display through `on_batch`; this module knows nothing of MLflow or terminals.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.optim as optim
import torch.utils.data as utils
from torch import Tensor
from torchmetrics import Metric

from deep_learning.devices import get_default_device


@dataclass(frozen=True)
class EpochResult:
    """What one epoch of train_and_evaluate measured."""

    epoch: int
    num_epochs: int
    train_loss: float
    train_metric: float
    val_loss: float
    val_metric: float
    train_seconds: float
    epoch_seconds: float
    num_train_samples: int

    @property
    def train_samples_per_second(self) -> float:
        return self.num_train_samples / self.train_seconds if self.train_seconds > 0 else float("nan")


def _loss_accumulator(device: torch.device) -> Tensor:
    # float64 sums the float32 batch losses exactly as the chapter's Python floats do; MPS has no float64.
    dtype = torch.float32 if torch.device(device).type == "mps" else torch.float64
    return torch.zeros((), dtype=dtype, device=device)


def _read_pass(total_loss: Tensor, num_batches: int, metric: Metric) -> tuple[float, float]:
    """The pass's batch-averaged loss and its metric, read from the device in one transfer: the pass's only host sync."""
    distributed = dist.is_available() and dist.is_initialized()
    if num_batches == 0 and not distributed:
        raise ValueError("the dataloader yielded no batches")
    totals = torch.stack([total_loss, total_loss.new_full((), num_batches)])  # filled on the device: no copy from the host
    if distributed:
        dist.all_reduce(totals)  # every rank's batches: the loss of the whole split
    score = metric.compute().to(totals.dtype).reshape(1)  # float32 widens exactly, so the value is .item()'s
    total, count, value = torch.cat([totals, score]).tolist()
    if count == 0:
        raise ValueError("the dataloader yielded no batches")
    return total / count, value


def train(
    model: nn.Module,
    dataloader: utils.DataLoader[tuple[Tensor, Tensor]],
    loss_fn: nn.Module,
    optimizer: optim.Optimizer,
    metric: Metric,
    device: torch.device,
    *,
    grad_scaler: torch.amp.GradScaler | None = None,
    on_batch: Callable[[Tensor, int], None] | None = None,
) -> tuple[float, float]:
    """Train one epoch; return the batch-averaged loss and the epoch's metric (fp16 passes a GradScaler).

    `on_batch` is called after each step with the batch's detached loss, still on the device, and its size.
    """
    model.train()
    metric.reset()
    total_loss = _loss_accumulator(device)
    num_batches = 0
    for X, y in dataloader:
        X = X.to(device)
        y = y.to(device)
        logits = model(X)
        loss = loss_fn(logits, y)
        optimizer.zero_grad()
        if grad_scaler is None:
            loss.backward()
            optimizer.step()
        else:
            grad_scaler.scale(loss).backward()
            grad_scaler.step(optimizer)
            grad_scaler.update()
        total_loss += loss.detach()
        num_batches += 1
        metric.update(logits.detach(), y)
        if on_batch is not None:
            on_batch(loss.detach(), len(y))
    return _read_pass(total_loss, num_batches, metric)


def evaluate(
    model: nn.Module,
    dataloader: utils.DataLoader[tuple[Tensor, Tensor]],
    loss_fn: nn.Module,
    metric: Metric,
    device: torch.device,
) -> tuple[float, float]:
    """Evaluate without gradients; return the batch-averaged loss and the metric."""
    model.eval()
    metric.reset()
    total_loss = _loss_accumulator(device)
    num_batches = 0
    with torch.inference_mode():
        for X, y in dataloader:
            X = X.to(device)
            y = y.to(device)
            logits = model(X)
            total_loss += loss_fn(logits, y)
            num_batches += 1
            metric.update(logits, y)
    return _read_pass(total_loss, num_batches, metric)


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
    on_epoch: Callable[[EpochResult], None] | None = None,
    grad_scaler: torch.amp.GradScaler | None = None,
    start_epoch: int = 1,
    on_batch: Callable[[Tensor, int], None] | None = None,
) -> list[EpochResult]:
    """Train and validate epochs `start_epoch`..`num_epochs`, print the chapter's line for each, call `on_epoch`, return their history.

    `on_batch` goes to `train`: it is called after every training step.
    """
    if device is None:
        device = get_default_device()
    model.to(device)
    metric.to(device)
    val_metric.to(device)
    num_train_samples = len(train_dl.dataset)
    history = []
    for epoch in range(start_epoch, num_epochs + 1):
        started = time.perf_counter()
        loss, score = train(
            model=model,
            dataloader=train_dl,
            loss_fn=loss_fn,
            optimizer=optimizer,
            metric=metric,
            device=device,
            grad_scaler=grad_scaler,
            on_batch=on_batch,
        )
        trained = time.perf_counter()
        val_loss, val_score = evaluate(
            model=model,
            dataloader=val_dl,
            loss_fn=loss_fn,
            metric=val_metric,
            device=device,
        )
        result = EpochResult(
            epoch=epoch,
            num_epochs=num_epochs,
            train_loss=loss,
            train_metric=score,
            val_loss=val_loss,
            val_metric=val_score,
            train_seconds=trained - started,
            epoch_seconds=time.perf_counter() - started,
            num_train_samples=num_train_samples,
        )
        history.append(result)
        if on_epoch is not None:
            on_epoch(result)  # before the line, so that a printed epoch is a recorded one
        w = len(str(num_epochs))
        print(
            f'Epoch [{epoch:{w}d}/{num_epochs:{w}d}] '
            f'| loss: {loss:.4f} '
            f'| metric: {score:.4f} '
            f'| val_loss: {val_loss:.4f} '
            f'| val_metric: {val_score:.4f}',
            flush=True,
        )
    return history
