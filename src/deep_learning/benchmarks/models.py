"""Beyond the chapter's MLP: the built-in CNN raced in the chapter's loop and ours, and what metrics cost per batch.

The CNN race trains on its own (smaller) share of the training split: a CPU convolves far slower than it
multiplies the MLP's matrices, and the point is the ratio between the loops, not the epoch's length.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any

import torch
import torch.utils.data as utils
from torchmetrics import MetricCollection

from deep_learning.benchmarks.loops import BATCH_SIZES, Contestant, epoch_runner
from deep_learning.benchmarks.machine import synchronize
from deep_learning.core.config import TrainConfig
from deep_learning.core.data.loaders import make_loaders
from deep_learning.core.data.splits import DataSplits
from deep_learning.core.metrics import build_metrics
from deep_learning.core.model import build_model
from deep_learning.core.reproducibility import set_seed

MODEL = "cnn"
TRAIN_SAMPLES = 10_000
QUICK_TRAIN_SAMPLES = 1_000
# The loops raced: the chapter's on its DataLoader, ours on the tensor path; untracked, as the MLP race covers tracking.
LOOPS = (("chapter", "dataloader"), ("untracked", "tensor"))
METRIC_SETS = {"accuracy": ("accuracy",), "four metrics": ("accuracy", "f1", "precision", "recall")}
METRIC_UPDATES = 200
METRIC_BATCH = 64


def cnn_splits(splits: DataSplits, quick: bool) -> DataSplits:
    """The first samples of the training split for the CNN race (its validation split is the MLP race's)."""
    count = min(len(splits.train), QUICK_TRAIN_SAMPLES if quick else TRAIN_SAMPLES)
    return dataclasses.replace(splits, train=utils.Subset(splits.train, range(count)))


def cnn_contestants(device: torch.device, splits: DataSplits, seed: int = TrainConfig.seed) -> list[Contestant]:
    """The CNN in the chapter's loop (DataLoader) and in ours (tensor path), untracked, at each batch size."""
    spec = splits.spec
    lineup = []
    for batch_size in BATCH_SIZES:
        for loop, loader in LOOPS:
            config = TrainConfig(model=MODEL, loader=loader, batch_size=batch_size)
            train_dl, val_dl, _ = make_loaders(config, splits, device)
            set_seed(seed, deterministic=config.deterministic)
            run_epoch, _ = epoch_runner(
                loop,
                train_dl,
                val_dl,
                device,
                config.lr,
                log_epoch=lambda result: None,
                build=lambda: build_model(MODEL, spec.input_shape, spec.num_classes),
            )
            lineup.append(Contestant(device, loader, batch_size, loop, run_epoch, None))
    return lineup


def metric_update_costs(device: torch.device, num_classes: int = 10) -> list[dict[str, Any]]:
    """Microseconds per batch of 64 that updating each metric set takes (accuracy alone, then four metrics), median of 5 timings."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(METRIC_BATCH, num_classes, generator=generator).to(device)
    target = torch.randint(0, num_classes, (METRIC_BATCH,), generator=generator).to(device)
    rows = []
    for name, names in METRIC_SETS.items():
        metrics = MetricCollection(build_metrics(names, num_classes), compute_groups=False).to(device)
        metrics.update(logits, target)  # warm-up: the first update allocates
        timings = []
        for _ in range(5):
            synchronize(device)
            started = time.perf_counter()
            for _ in range(METRIC_UPDATES):
                metrics.update(logits, target)
            synchronize(device)
            timings.append((time.perf_counter() - started) / METRIC_UPDATES * 1e6)
        rows.append({"device": str(device), "metrics": name, "names": list(names), "microseconds_per_batch": statistics.median(timings)})
    return rows
