"""How a batch's loss becomes an optimizer step: the optimizer a config names, its learning-rate schedule,
gradient accumulation and clipping.

Everything a step does stays on the device: the gradient norm is summed and maxed into tensors that
the pass reads with its loss, once per epoch. The schedule is a `LambdaLR` of the optimizer step, so
a checkpoint holds it whole and a resumed run steps on exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.optim as optim
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from deep_learning.core.config import TrainConfig

ONECYCLE_RISE = 0.3  # OneCycleLR's default pct_start, where --warmup-epochs does not say
ONECYCLE_DIV, ONECYCLE_FINAL_DIV = 25.0, 1e4  # OneCycleLR's defaults: start at lr/25, end at lr/25/1e4


def build_optimizer(parameters: Iterable[nn.Parameter], config: TrainConfig) -> optim.Optimizer:
    """The optimizer `config.optimizer` names with its hyperparameters, with torch's fused kernel where it spares a host read.

    A fused optimizer takes the GradScaler's unscaling and inf check on the device (unfused, GradScaler.step
    reads the inf flag every step: SGD is fused for fp16 only, so the chapter's run steps as it always has).
    Adam and AdamW are always fused: their unfused kernels read the step count with .item() every step.
    RMSprop has no fused kernel.
    """
    decay = config.weight_decay
    if config.optimizer == "sgd":
        fused = True if config.amp == "fp16" else None
        return optim.SGD(parameters, lr=config.lr, momentum=config.momentum, weight_decay=decay, fused=fused)
    if config.optimizer == "rmsprop":
        return optim.RMSprop(parameters, lr=config.lr, momentum=config.momentum, weight_decay=decay)
    adam = optim.AdamW if config.optimizer == "adamw" else optim.Adam
    return adam(parameters, lr=config.lr, betas=(config.adam_beta1, config.adam_beta2), weight_decay=decay, fused=True)


@dataclass(frozen=True)
class Schedule:
    """The learning rate of every optimizer step, as a multiple of the configured (peak) lr."""

    name: str
    total_steps: int
    warmup_steps: int
    steps_per_epoch: int
    step_size: int = 1
    gamma: float = 0.1

    def factor(self, step: int) -> float:
        """The multiple of lr that optimizer step `step` (0, 1, ...) uses."""
        if self.name == "onecycle":
            return self._onecycle(step)
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.name == "step":
            return self.gamma ** ((step // self.steps_per_epoch) // self.step_size)
        if self.name == "cosine":
            done = (step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1)
            return 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))
        return 1.0

    def _onecycle(self, step: int) -> float:
        # torch's OneCycleLR (cosine annealing, two phases), with the rise lasting warmup_steps when given.
        rise_end = (self.warmup_steps or ONECYCLE_RISE * self.total_steps) - 1
        start, peak, end = 1 / ONECYCLE_DIV, 1.0, 1 / ONECYCLE_DIV / ONECYCLE_FINAL_DIV
        if step <= rise_end:
            low, high, done = start, peak, step / rise_end if rise_end > 0 else 1.0
        else:
            low, high, done = peak, end, (step - rise_end) / (self.total_steps - 1 - rise_end)
        return high + (low - high) / 2 * (math.cos(math.pi * min(done, 1.0)) + 1)


def build_schedule(config: TrainConfig, steps_per_epoch: int) -> Schedule | None:
    """The schedule the config asks for over all its epochs; None for a constant lr without warm-up (the chapter's)."""
    if config.lr_schedule == "constant" and not config.warmup_epochs:
        return None
    return Schedule(
        name=config.lr_schedule,
        total_steps=config.epochs * steps_per_epoch,
        warmup_steps=round(config.warmup_epochs * steps_per_epoch),
        steps_per_epoch=steps_per_epoch,
        step_size=config.lr_step_size,
        gamma=config.lr_gamma,
    )


def lr_scheduler(optimizer: optim.Optimizer, schedule: Schedule | None) -> optim.lr_scheduler.LambdaLR | None:
    """A LambdaLR stepping `schedule` once per optimizer step (its state is the step count: checkpoints hold it)."""
    if schedule is None:
        return None
    return optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule.factor(step))


def optimizer_steps(num_batches: int, accumulate_batches: int) -> int:
    """How many optimizer steps an epoch of `num_batches` batches takes."""
    return math.ceil(num_batches / accumulate_batches)


class Stepper:
    """Turns each batch's loss into optimizer steps: accumulation, fp16 scaling, clipping, the step and the schedule.

    With the defaults it does what the chapter's loop does: zero_grad, backward, step, for every batch.
    """

    def __init__(
        self,
        optimizer: optim.Optimizer,
        *,
        grad_scaler: torch.amp.GradScaler | None = None,
        scheduler: optim.lr_scheduler.LRScheduler | None = None,
        grad_clip_norm: float = 0.0,
        accumulate_batches: int = 1,
        global_step: int = 0,
    ) -> None:
        self.optimizer = optimizer
        self.grad_scaler = grad_scaler
        self.scheduler = scheduler
        self.grad_clip_norm = grad_clip_norm
        self.accumulate_batches = accumulate_batches
        self.global_step = global_step  # optimizer steps taken, over all epochs
        self.stepped = False  # whether the last batch ended with an optimizer step
        self.last_lr = self.current_lr()
        self.epoch_stats: dict[str, float] = {}
        self._batch, self._num_batches, self._norms = 0, 0, None

    def current_lr(self) -> float:
        """The learning rate the next step uses (the first parameter group's)."""
        return float(self.optimizer.param_groups[0]["lr"])

    def start_pass(self, num_batches: int, device: torch.device) -> None:
        """Get ready for a pass of `num_batches` batches (the last group of an accumulation may be shorter)."""
        self._batch, self._num_batches, self._steps_this_pass = 0, num_batches, 0
        self._norms = torch.zeros(2, device=device) if self.grad_clip_norm else None  # sum and max of the norms

    def step(self, loss: Tensor, model: nn.Module) -> None:
        """Backpropagate `loss` (a batch's mean); step the optimizer at the end of each group of batches."""
        first, group = self._batch % self.accumulate_batches == 0, self._group_size()
        self._batch += 1
        last = self._batch % self.accumulate_batches == 0 or self._batch == self._num_batches
        if first:
            self.optimizer.zero_grad()
        scaled = loss / group if group > 1 else loss
        with contextlib.nullcontext() if last else _without_gradient_sync(model):
            (self.grad_scaler.scale(scaled) if self.grad_scaler else scaled).backward()
        self.stepped = last
        if last:
            self._optimizer_step()

    def _group_size(self) -> int:
        start = self._batch - self._batch % self.accumulate_batches
        return min(self.accumulate_batches, self._num_batches - start) if self._num_batches else self.accumulate_batches

    def _optimizer_step(self) -> None:
        if self.grad_clip_norm:
            if self.grad_scaler is not None:
                self.grad_scaler.unscale_(self.optimizer)
            parameters = [parameter for group in self.optimizer.param_groups for parameter in group["params"]]
            norm = nn.utils.clip_grad_norm_(parameters, self.grad_clip_norm).to(self._norms)
            self._norms[0] += norm
            torch.maximum(self._norms[1], norm, out=self._norms[1])
        if self.grad_scaler is None:
            self.optimizer.step()
        else:
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        self.last_lr = self.current_lr()
        if self.scheduler is not None:
            self.scheduler.step()
        self.global_step += 1
        self._steps_this_pass += 1

    def device_stats(self) -> dict[str, Tensor]:
        """What the pass measured, still on the device: the gradient norms' sum and maximum."""
        if self._norms is None:
            return {}
        return {"grad_norm_sum": self._norms[0], "grad_norm_max": self._norms[1]}

    def finish_pass(self, read: dict[str, float]) -> None:
        """Keep the pass's stats as logged per epoch: lr, and with clipping grad_norm_mean and grad_norm_max."""
        self.epoch_stats = {"lr": self.last_lr}
        if "grad_norm_sum" in read:
            self.epoch_stats["grad_norm_mean"] = read["grad_norm_sum"] / max(self._steps_this_pass, 1)
            self.epoch_stats["grad_norm_max"] = read["grad_norm_max"]


def _without_gradient_sync(model: nn.Module):
    """DDP's no_sync for a batch that only accumulates: its gradients are reduced with the group's last."""
    ddp = next((module for module in model.modules() if isinstance(module, DistributedDataParallel)), None)
    return ddp.no_sync() if ddp is not None else contextlib.nullcontext()
