"""`deep-learning bench`: every measurement, in one process and a fixed order, gathered into one results dict."""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.utils.data as utils

from deep_learning import tracking
from deep_learning.benchmarks.commands import measure_help, measure_mlflow_run
from deep_learning.benchmarks.loops import BATCH_SIZES, LOOPS, WARMUP_EPOCHS, Contestant, contestants, option_contestants, race
from deep_learning.benchmarks.machine import (
    flops_per_sample,
    peak_device_memory,
    peak_rss_bytes,
    reset_peak_memory,
    sgemm_gflops,
    torch_threads,
)
from deep_learning.benchmarks.mlflow_costs import measure_mlflow_costs, scratch_store
from deep_learning.benchmarks.models import MODEL, cnn_contestants, cnn_splits, metric_update_costs
from deep_learning.benchmarks.studies import measure_studies
from deep_learning.benchmarks.syncs import cuda_syncs, host_reads
from deep_learning.benchmarks.targets import judge
from deep_learning.benchmarks.tasks import measure_tasks
from deep_learning.core.config import TrainConfig
from deep_learning.core.data.loaders import make_loaders
from deep_learning.core.data.splits import DataSplits, load_splits
from deep_learning.core.devices import describe_device, device_tags, get_default_device, resolve_device
from deep_learning.core.reproducibility import set_seed

QUICK_TRAIN_SAMPLES = 2_000
QUICK_VAL_SAMPLES = 1_000
DEFAULT_REPEATS = 5
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class BenchmarkOptions:
    """What to benchmark, and how thoroughly."""

    quick: bool = False
    repeats: int | None = None  # None: 1 with quick, else DEFAULT_REPEATS
    devices: tuple[str, ...] = ()  # empty: the CPU and this machine's default accelerator
    threads: int | None = None  # None: torch's default on this machine
    data_root: Path | None = None

    @property
    def timed_repeats(self) -> int:
        return self.repeats or (1 if self.quick else DEFAULT_REPEATS)


def benchmark_devices(names: tuple[str, ...]) -> list[torch.device]:
    """The devices asked for, or the CPU and the default accelerator; each once."""
    devices = [resolve_device(name) for name in names] if names else [torch.device("cpu"), get_default_device()]
    return list({str(device): device for device in devices}.values())


def benchmark_splits(quick: bool, data_root: Path | None) -> DataSplits:
    """MNIST's 50,000/10,000 training and validation splits, or their first 5,000/2,000 samples when quick."""
    splits = load_splits(TrainConfig(train_subset=QUICK_TRAIN_SAMPLES if quick else 0), data_root)
    if not quick:
        return splits
    return dataclasses.replace(splits, val=utils.Subset(splits.val, range(QUICK_VAL_SAMPLES)))


def cuda_epoch_syncs(lineup: list[Contestant]) -> dict[str, int]:
    """Synchronizing CUDA calls in one whole epoch at batch 64: the chapter's loop on its DataLoader, ours on the tensor path."""
    epochs = {
        contestant.loop: contestant.run_epoch
        for contestant in lineup
        if contestant.batch_size == 64 and (contestant.loop, contestant.loader) in (("chapter", "dataloader"), ("untracked", "tensor"))
    }
    return {loop: cuda_syncs(run_epoch) for loop, run_epoch in epochs.items()}


def run_benchmark(options: BenchmarkOptions, progress: Callable[[str], None] = lambda message: None) -> dict[str, Any]:
    """Run every measurement and judge the project's speed targets; the results as a JSON-ready dict."""
    devices = benchmark_devices(options.devices)
    repeats = options.timed_repeats
    data = _Data.load(options)
    with torch_threads(options.threads) as threads, scratch_store():
        set_seed(TrainConfig.seed, deterministic=TrainConfig.deterministic)  # a run's settings, before any device work
        host = describe_device(torch.device("cpu"))
        descriptions = {str(device): describe_device(device) for device in devices}
        progress(f"SGEMM rate on {', '.join(descriptions)}")
        sgemm = {str(device): sgemm_gflops(device) for device in devices}
        params = {"quick": options.quick, "repeats": repeats, "train_samples": len(data.splits.train), "torch_threads": threads["intra_op"]}
        with tracking.tracked_run("benchmark", params, device_tags(host)) as run:
            measured = [_on_device(device, data, options, run.log_epoch, progress) for device in devices]
        peak_allocated = {str(device): peak for device in devices if (peak := peak_device_memory(device)) is not None}
        studies = [measure_studies(str(device), options.data_root, options.quick, progress) for device in devices]
        progress(f"MLflow's fixed costs in {repeats} fresh process(es)")
        mlflow_costs = measure_mlflow_costs(repeats, options.quick)
        progress("`deep-learning --help` start-up")
        startup = measure_help(repeats)
        if options.quick:
            mlflow_run = {"skipped": "--quick"}
        else:
            progress("`mlflow run` against the command itself")
            mlflow_run = measure_mlflow_run(repeats)
    results = {
        "schema_version": SCHEMA_VERSION,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "quick": options.quick,
        "settings": _settings(descriptions, repeats, data, measured, threads),
        "host": host,
        "devices": descriptions,
        "flops": {"per_train_sample": data.flops["train"], "per_val_sample": data.flops["evaluate"], "per_epoch": data.flops_per_epoch},
        "sgemm": sgemm,
        **_gathered(measured, len(data.cnn.train)),
        "mlflow": mlflow_costs,
        "studies": studies,
        "startup": startup,
        "mlflow_run": mlflow_run,
        "memory": {"peak_rss_bytes": peak_rss_bytes(), "device_peak_allocated_bytes": peak_allocated},
    }
    results["targets"] = [verdict.as_dict() for verdict in judge(results)]
    return results


@dataclass(frozen=True)
class _Data:
    """The chapter's splits and the CNN's, with what an epoch of each costs in FLOPs."""

    splits: DataSplits
    cnn: DataSplits
    flops: dict[str, float]
    flops_per_epoch: float
    cnn_flops_per_epoch: float

    @classmethod
    def load(cls, options: BenchmarkOptions) -> _Data:
        splits = benchmark_splits(options.quick, options.data_root)
        cnn = cnn_splits(splits, options.quick)
        flops, cnn_flops = flops_per_sample(), flops_per_sample(MODEL)
        return cls(
            splits,
            cnn,
            flops,
            len(splits.train) * flops["train"] + len(splits.val) * flops["evaluate"],
            len(cnn.train) * cnn_flops["train"] + len(cnn.val) * cnn_flops["evaluate"],
        )


def _on_device(device: torch.device, data: _Data, options: BenchmarkOptions, log_epoch, progress: Callable[[str], None]) -> dict[str, Any]:
    """Everything measured on one device: the loops, the options, the CNN, the metrics, the tasks, host reads and CUDA syncs."""
    repeats, splits = options.timed_repeats, data.splits
    reset_peak_memory(device)
    rounds = f"{WARMUP_EPOCHS} warm-up and {repeats} timed round(s)"
    lineup = contestants(device, splits, log_epoch)
    progress(f"Epochs on {device}: {len(lineup)} loops, {rounds}")
    race(lineup, repeats, progress)
    option_lineup = option_contestants(device, splits)
    progress(f"Options on {device}: {len(option_lineup)} loops, {rounds}")
    race(option_lineup, repeats, progress)
    cnn_lineup = cnn_contestants(device, data.cnn)
    progress(f"The {MODEL} on {device}: {len(cnn_lineup)} loops on {len(data.cnn.train):,} samples, {rounds}")
    race(cnn_lineup, repeats, progress)
    measured = {
        "epochs": [contestant.summary(data.flops_per_epoch) for contestant in lineup],
        "options": [contestant.summary(data.flops_per_epoch) for contestant in option_lineup],
        "cnn": [contestant.summary(data.cnn_flops_per_epoch) | {"model": MODEL} for contestant in cnn_lineup],
        "metric_updates": metric_update_costs(device),
        "tasks": measure_tasks(device, splits, options.quick, repeats, progress),
    }
    progress(f"Host reads per pass on {device}")
    measured["host_reads"] = host_reads(device, make_loaders(TrainConfig(), splits, device)[0])
    if device.type == "cuda":
        progress(f"Synchronizing CUDA calls in one epoch at batch 64 on {device}")
        measured["cuda_epoch_syncs"] = {str(device): cuda_epoch_syncs(lineup)}
    return measured


def _gathered(measured: list[dict[str, Any]], cnn_train_samples: int) -> dict[str, Any]:
    """The devices' measurements, each kind's rows together."""

    def rows(key: str) -> list[Any]:
        return [row for device in measured for row in device[key]]

    return {
        "epochs": rows("epochs"),
        "options": rows("options"),
        "models": {"train_samples": cnn_train_samples, "epochs": rows("cnn"), "metric_updates": rows("metric_updates")},
        "tasks": {
            "epochs": [row for device in measured for row in device["tasks"]["epochs"]],
            "batch_handling": [row for device in measured for row in device["tasks"]["batch_handling"]],
        },
        "host_reads": rows("host_reads"),
        "cuda_epoch_syncs": {name: syncs for device in measured for name, syncs in device.get("cuda_epoch_syncs", {}).items()},
    }


def _settings(
    descriptions: dict[str, Any], repeats: int, data: _Data, measured: list[dict[str, Any]], threads: dict[str, Any]
) -> dict[str, Any]:
    return {
        "devices": list(descriptions),
        "repeats": repeats,
        "warmup_epochs": WARMUP_EPOCHS,
        "train_samples": len(data.splits.train),
        "val_samples": len(data.splits.val),
        "batch_sizes": list(BATCH_SIZES),
        "val_batch_size": TrainConfig.val_batch_size,
        "loops": list(LOOPS),
        "options": list(dict.fromkeys(row["loop"] for device in measured for row in device["options"])),
        "torch_threads": threads,
    }
