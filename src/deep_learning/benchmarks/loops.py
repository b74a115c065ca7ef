"""The race: the chapter's loop, ours untracked and ours tracked, one epoch each in turn (A B C C B A ...).

Every contestant is a whole training set-up (model, optimizer, metrics, loaders) on one device,
data path and batch size; an epoch is one call of its loop's `train_and_evaluate` with one epoch,
so it trains on the training samples and then validates, as the chapter's epoch does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.optim as optim

from deep_learning.benchmarks.chapter import chapter_loop, chapter_metric
from deep_learning.benchmarks.machine import synchronize
from deep_learning.core.callbacks import Callback
from deep_learning.core.config import LOADERS, TrainConfig
from deep_learning.core.data.loaders import make_loaders
from deep_learning.core.data.splits import DataSplits
from deep_learning.core.metrics import accuracy_metric
from deep_learning.core.model import build_model
from deep_learning.core.optimization import build_optimizer
from deep_learning.core.precision import grad_scaler, with_options
from deep_learning.core.reproducibility import set_seed
from deep_learning.core.results import EpochResult
from deep_learning.core.training import train_and_evaluate

LOOPS = ("chapter", "untracked", "tracked")
# The options the chapter leaves out, each raced against our plain untracked loop (tensor path).
OPTIONS = {
    "plain": {},
    "compile": {"compile": True},
    "amp-bf16": {"amp": "bf16"},
    "amp-fp16": {"amp": "fp16"},
    "compile-amp-bf16": {"compile": True, "amp": "bf16"},
}
CUDA_OPTIONS = {"compile-reduce-overhead": {"compile": True, "compile_mode": "reduce-overhead"}}  # CUDA graphs
BATCH_SIZES = (64, 1024)
WARMUP_EPOCHS = 1


class TimedLogEpoch(Callback):
    """`TrackedRun.log_epoch` behind a stopwatch, numbering the epochs of one contestant 1, 2, 3, ..."""

    def __init__(self, log_epoch: Callable[[EpochResult], None]) -> None:
        self._log_epoch = log_epoch
        self.epochs = 0
        self.last_seconds = 0.0

    def on_epoch_end(self, result: EpochResult) -> None:
        self.epochs += 1
        numbered = dataclasses.replace(result, epoch=self.epochs)  # the step MLflow records
        started = time.perf_counter()
        self._log_epoch(numbered)
        self.last_seconds = time.perf_counter() - started


@dataclass
class Contestant:
    """One loop on one device, data path and batch size, and the epochs it was timed for."""

    device: torch.device
    loader: str
    batch_size: int
    loop: str
    run_epoch: Callable[[], object]
    stopwatch: TimedLogEpoch | None  # the tracked loop's timed log_epoch
    epoch_seconds: list[float] = field(default_factory=list)
    tracking_seconds: list[float] = field(default_factory=list)

    def time_epoch(self, *, record: bool) -> None:
        """Run one epoch, timed between device synchronisations; keep its time when `record`."""
        synchronize(self.device)
        started = time.perf_counter()
        self.run_epoch()
        synchronize(self.device)
        if record:
            self.epoch_seconds.append(time.perf_counter() - started)
            self.tracking_seconds.append(self.stopwatch.last_seconds if self.stopwatch else 0.0)

    def summary(self, flops_per_epoch: float) -> dict[str, Any]:
        """The contestant's timings as a JSON row: every epoch, the median, and the rate it reached."""
        median = statistics.median(self.epoch_seconds)
        return {
            "device": str(self.device),
            "loader": self.loader,
            "batch_size": self.batch_size,
            "loop": self.loop,
            "epoch_seconds": self.epoch_seconds,
            "median_epoch_seconds": median,
            "median_tracking_seconds": statistics.median(self.tracking_seconds),
            "gflops": flops_per_epoch / median / 1e9,
        }


def contestants(
    device: torch.device, splits: DataSplits, log_epoch: Callable[[EpochResult], None], seed: int = TrainConfig.seed
) -> list[Contestant]:
    """Every loop on every data path and batch size, on one device; tracked loops report to `log_epoch`."""
    lineup = []
    for loader in sorted(LOADERS):  # dataloader first: the chapter's own data path
        for batch_size in BATCH_SIZES:
            config = TrainConfig(loader=loader, batch_size=batch_size)
            train_dl, val_dl, _ = make_loaders(config, splits, device)
            for loop in LOOPS:
                set_seed(seed, deterministic=config.deterministic)
                run_epoch, stopwatch = epoch_runner(loop, train_dl, val_dl, device, config.lr, log_epoch)
                lineup.append(Contestant(device, loader, batch_size, loop, run_epoch, stopwatch))
    return lineup


def option_contestants(device: torch.device, splits: DataSplits, seed: int = TrainConfig.seed) -> list[Contestant]:
    """Our untracked loop on the tensor path, plain and with each option (compile, mixed precision), at each batch size."""
    options = OPTIONS | (CUDA_OPTIONS if device.type == "cuda" else {})
    lineup = []
    for batch_size in BATCH_SIZES:
        base = TrainConfig(batch_size=batch_size)
        train_dl, val_dl, _ = make_loaders(base, splits, device)
        for name, changes in options.items():
            config = dataclasses.replace(base, **changes)
            set_seed(seed, deterministic=config.deterministic)
            model = build_model().to(device)
            run_epoch = functools.partial(
                train_and_evaluate,
                model=with_options(model, device, config.amp, config.compile, config.compile_mode),
                train_dl=train_dl,
                val_dl=val_dl,
                loss_fn=nn.CrossEntropyLoss(),
                optimizer=build_optimizer(model.parameters(), config),
                metric=accuracy_metric(),
                val_metric=accuracy_metric(),
                num_epochs=1,
                device=device,
                grad_scaler=grad_scaler(device, config.amp),
            )
            lineup.append(Contestant(device, base.loader, batch_size, name, run_epoch, None))
    return lineup


def epoch_runner(
    loop: str,
    train_dl: Iterable,
    val_dl: Iterable,
    device: torch.device,
    lr: float,
    log_epoch: Callable[[EpochResult], None],
    build: Callable[[], nn.Module] = build_model,
) -> tuple[Callable[[], object], TimedLogEpoch | None]:
    """One epoch of `loop` (chapter, untracked or tracked) with a fresh model from `build`, and the tracked loop's stopwatch."""
    model = build()
    training = {
        "model": model,
        "train_dl": train_dl,
        "val_dl": val_dl,
        "loss_fn": nn.CrossEntropyLoss(),
        "optimizer": optim.SGD(model.parameters(), lr=lr),
        "num_epochs": 1,
        "device": device,
    }
    if loop == "chapter":
        chapter_train_and_evaluate = chapter_loop()["train_and_evaluate"]
        return functools.partial(chapter_train_and_evaluate, **training, metric=chapter_metric(), val_metric=chapter_metric()), None
    training |= {"metric": accuracy_metric(), "val_metric": accuracy_metric()}
    if loop == "untracked":
        return functools.partial(train_and_evaluate, **training), None
    stopwatch = TimedLogEpoch(log_epoch)
    return functools.partial(train_and_evaluate, **training, callbacks=[stopwatch]), stopwatch


def race(lineup: list[Contestant], repeats: int, progress: Callable[[str], None]) -> None:
    """One untimed warm-up epoch of each contestant, then `repeats` timed rounds, each contestant in turn;
    every other round runs the lineup backwards, so no contestant always follows the same one."""
    rounds = WARMUP_EPOCHS + repeats
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):  # the loops' epoch lines
        for round_number in range(rounds):
            for contestant in lineup if round_number % 2 == 0 else reversed(lineup):
                contestant.time_epoch(record=round_number >= WARMUP_EPOCHS)
            progress(f"  round {round_number + 1}/{rounds} ({'warm-up' if round_number < WARMUP_EPOCHS else 'timed'})")
