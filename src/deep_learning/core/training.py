"""The chapter's loop: train, evaluate and train_and_evaluate.

Same names, signatures and numbers as the chapter, but the loss is accumulated on the device and
read once per epoch instead of once per batch. Tracking, checkpoints, progress and early stopping plug
in as callbacks (deep_learning.core.callbacks); this module knows nothing of MLflow or terminals.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.optim as optim
import torch.utils.data as utils
from torch import Tensor
from torchmetrics import Metric, MetricCollection

from deep_learning.core.batches import LossFn, batches_per_pass, num_samples, output_and_loss, predictions, to_device
from deep_learning.core.callbacks import Callback
from deep_learning.core.devices import get_default_device
from deep_learning.core.optimization import Stepper
from deep_learning.core.results import EpochResult


def loss_accumulator(device: torch.device, *shape: int) -> Tensor:
    """Zeros on `device` to sum a pass's batch losses into (one per model with a `shape`)."""
    # float64 sums the float32 batch losses exactly as the chapter's Python floats do; MPS has no float64.
    dtype = torch.float32 if torch.device(device).type == "mps" else torch.float64
    return torch.zeros(shape, dtype=dtype, device=device)


Score = float | dict[str, float]  # one metric's value, or a collection's values by name


def read_pass(
    total_loss: Tensor, num_batches: int, metric: Metric | MetricCollection, extra: dict[str, Tensor] | None = None
) -> tuple[float, Score, dict[str, float]]:
    """The pass's batch-averaged loss, its metrics and the `extra` scalars, read from the device in one transfer:
    the pass's only host sync.

    A metric collection's values come back by name; a metric whose value is a vector (per class, say)
    comes back as `name_0`, `name_1`, ...
    """
    distributed = dist.is_available() and dist.is_initialized()
    if num_batches == 0 and not distributed:
        raise ValueError("the dataloader yielded no batches")
    totals = torch.stack([total_loss, total_loss.new_full((), num_batches)])  # filled on the device: no copy from the host
    if distributed:
        dist.all_reduce(totals)  # every rank's batches: the loss of the whole split
    computed = metric.compute()
    values = computed if isinstance(computed, dict) else {"metric": computed}
    # float32 widens exactly to float64, so each value is what .item() would read
    flat = [value.detach().to(totals.dtype).reshape(-1) for value in values.values()]
    extra = extra or {}
    extras = [value.detach().to(totals.dtype).reshape(1) for value in extra.values()]
    total, count, *scores = torch.cat([totals, *extras, *flat]).tolist()
    if count == 0:
        raise ValueError("the dataloader yielded no batches")
    read_extra, scores = dict(zip(extra, scores[: len(extras)])), scores[len(extras) :]
    if not isinstance(computed, dict) and len(scores) == 1:
        return total / count, scores[0], read_extra
    return total / count, _named(values, flat, scores), read_extra


def _named(values: dict[str, Tensor], flat: list[Tensor], scores: list[float]) -> dict[str, float]:
    named, position = {}, 0
    for name, tensor in zip(values, flat):
        size = tensor.numel()
        if size == 1:
            named[name] = scores[position]
        else:
            named.update({f"{name}_{index}": scores[position + index] for index in range(size)})
        position += size
    return named


def train(
    model: nn.Module,
    dataloader: utils.DataLoader[tuple[Tensor, Tensor]],
    loss_fn: LossFn,
    optimizer: optim.Optimizer,
    metric: Metric | MetricCollection,
    device: torch.device,
    *,
    grad_scaler: torch.amp.GradScaler | None = None,
    stepper: Stepper | None = None,
    callbacks: Sequence[Callback] = (),
) -> tuple[float, Score]:
    """Train one epoch; return the batch-averaged loss and the epoch's metric (a MetricCollection's by name; fp16 passes a GradScaler).

    Batches are `(inputs, target)` as the dataloader makes them (see deep_learning.core.batches): a tensor, a tuple or a
    dict of inputs, moved to the device with the target; `loss_fn(output, target)` may be any callable.

    `stepper` turns each loss into optimizer steps (accumulation, clipping, a schedule; by default the chapter's
    zero_grad, backward, step) and keeps the epoch's lr and gradient norms in its `epoch_stats`.
    Each callback's `on_batch_end` is called after each batch with its detached loss, still on the device, and its size.
    """
    model.train()
    metric.reset()
    stepper = stepper or Stepper(optimizer, grad_scaler=grad_scaler)
    # An iterable without a length (0): with --accumulate-batches, a last incomplete group is then not stepped.
    stepper.start_pass(batches_per_pass(dataloader), device)
    total_loss = loss_accumulator(device)
    num_batches = 0
    for inputs, target in dataloader:
        inputs = to_device(inputs, device)
        target = to_device(target, device)
        output, loss = output_and_loss(model, inputs, target, loss_fn)
        stepper.step(loss, model)
        total_loss += loss.detach()
        num_batches += 1
        metric.update(predictions(output).detach(), target)
        for callback in callbacks:
            callback.on_batch_end(loss.detach(), num_samples(target))
    loss, score, stats = read_pass(total_loss, num_batches, metric, stepper.device_stats())
    stepper.finish_pass(stats)
    return loss, score


def evaluate(
    model: nn.Module,
    dataloader: utils.DataLoader[tuple[Tensor, Tensor]],
    loss_fn: LossFn,
    metric: Metric | MetricCollection,
    device: torch.device,
    *,
    also: Metric | MetricCollection | None = None,
) -> tuple[float, Score]:
    """Evaluate without gradients; return the batch-averaged loss and the metric (a MetricCollection's by name).

    `also` (a confusion matrix, say) is updated with the same predictions and targets, for the caller to compute.
    """
    model.eval()
    metric.reset()
    total_loss = loss_accumulator(device)
    num_batches = 0
    with torch.inference_mode():
        for inputs, target in dataloader:
            inputs = to_device(inputs, device)
            target = to_device(target, device)
            output, loss = output_and_loss(model, inputs, target, loss_fn)
            total_loss += loss
            num_batches += 1
            metric.update(predictions(output), target)
            if also is not None:
                also.update(predictions(output), target)
    loss, score, _ = read_pass(total_loss, num_batches, metric)
    return loss, score


def train_and_evaluate(
    model: nn.Module,
    train_dl: utils.DataLoader[tuple[Tensor, Tensor]],
    val_dl: utils.DataLoader[tuple[Tensor, Tensor]],
    loss_fn: LossFn,
    optimizer: optim.Optimizer,
    metric: Metric | MetricCollection,
    val_metric: Metric | MetricCollection,
    num_epochs: int,
    device: torch.device | None = None,
    *,
    callbacks: Sequence[Callback] = (),
    grad_scaler: torch.amp.GradScaler | None = None,
    start_epoch: int = 1,
    stepper: Stepper | None = None,
) -> list[EpochResult]:
    """Train and validate epochs `start_epoch`..`num_epochs`, print the chapter's line for each, return their history.

    `stepper` and the `callbacks` go to `train`; after each epoch, the callbacks see its result and may stop training.
    """
    if device is None:
        device = get_default_device()
    model.to(device)
    metric.to(device)
    val_metric.to(device)
    stepper = stepper or Stepper(optimizer, grad_scaler=grad_scaler)
    history = []
    for epoch in range(start_epoch, num_epochs + 1):
        started = time.perf_counter()
        trained = train(model, train_dl, loss_fn, optimizer, metric, device, stepper=stepper, callbacks=callbacks)
        trained_seconds = time.perf_counter() - started
        validated = evaluate(model, val_dl, loss_fn, val_metric, device)
        seconds = (trained_seconds, time.perf_counter() - started)
        # A stream's samples are counted as it went.
        result = epoch_result(epoch, num_epochs, trained, validated, seconds, samples_per_epoch(train_dl), stepper.epoch_stats)
        history.append(result)
        for callback in callbacks:
            callback.on_epoch_end(result)
        print(epoch_line(result), flush=True)
        if any(callback.should_stop() for callback in callbacks):
            break
    return history


def epoch_result(
    epoch: int,
    num_epochs: int,
    trained: tuple[float, Score],
    validated: tuple[float, Score],
    seconds: tuple[float, float],
    num_train_samples: int,
    step_stats: dict[str, float],
) -> EpochResult:
    """An epoch's result from its training and validation passes' loss and score, and its (training, whole) seconds."""
    return EpochResult(
        epoch=epoch,
        num_epochs=num_epochs,
        train_loss=trained[0],
        train_metrics=by_name(trained[1]),
        val_loss=validated[0],
        val_metrics=by_name(validated[1]),
        train_seconds=seconds[0],
        epoch_seconds=seconds[1],
        num_train_samples=num_train_samples,
        step_stats=step_stats,
    )


def samples_per_epoch(loader: Any) -> int:
    """How many training samples an epoch holds: what the loader says (a stream's), else its dataset's length."""
    counted = getattr(loader, "samples_per_epoch", None)
    return counted if counted is not None else len(loader.dataset)


def by_name(score: Score) -> dict[str, float]:
    """A pass's score by metric name (one metric's value is `metric`)."""
    return score if isinstance(score, dict) else {"metric": score}


def epoch_line(result: EpochResult) -> str:
    """The chapter's line for an epoch; with several metrics, each by its name."""
    w = len(str(result.num_epochs))
    head = f"Epoch [{result.epoch:{w}d}/{result.num_epochs:{w}d}] "
    if len(result.train_metrics) == 1 and len(result.val_metrics) == 1:
        return (
            head + f"| loss: {result.train_loss:.4f} "
            f"| metric: {result.train_metric:.4f} "
            f"| val_loss: {result.val_loss:.4f} "
            f"| val_metric: {result.val_metric:.4f}"
        )
    train = "".join(f"| {name}: {value:.4f} " for name, value in result.train_metrics.items())
    val = " ".join(f"| val_{name}: {value:.4f}" for name, value in result.val_metrics.items())
    return head + f"| loss: {result.train_loss:.4f} {train}| val_loss: {result.val_loss:.4f} {val}"
