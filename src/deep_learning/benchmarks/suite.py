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
    splits = benchmark_splits(options.quick, options.data_root)
    flops = flops_per_sample()
    flops_per_epoch = len(splits.train) * flops["train"] + len(splits.val) * flops["evaluate"]
    cnn_data = cnn_splits(splits, options.quick)
    cnn_flops = flops_per_sample(MODEL)
    cnn_flops_per_epoch = len(cnn_data.train) * cnn_flops["train"] + len(cnn_data.val) * cnn_flops["evaluate"]
    with torch_threads(options.threads) as threads, scratch_store():
        set_seed(TrainConfig.seed, deterministic=TrainConfig.deterministic)  # a run's settings, before any device work
        host = describe_device(torch.device("cpu"))
        descriptions = {str(device): describe_device(device) for device in devices}
        progress(f"SGEMM rate on {', '.join(descriptions)}")
        sgemm = {str(device): sgemm_gflops(device) for device in devices}
        epochs, option_rows, cnn_rows, metric_rows, task_rows, reads, epoch_syncs = [], [], [], [], [], [], {}
        params = {"quick": options.quick, "repeats": repeats, "train_samples": len(splits.train), "torch_threads": threads["intra_op"]}
        with tracking.tracked_run("benchmark", params, device_tags(host)) as run:
            for device in devices:
                reset_peak_memory(device)
                lineup = contestants(device, splits, run.log_epoch)
                progress(f"Epochs on {device}: {len(lineup)} loops, {WARMUP_EPOCHS} warm-up and {repeats} timed round(s)")
                race(lineup, repeats, progress)
                epochs += [contestant.summary(flops_per_epoch) for contestant in lineup]
                option_lineup = option_contestants(device, splits)
                progress(f"Options on {device}: {len(option_lineup)} loops, {WARMUP_EPOCHS} warm-up and {repeats} timed round(s)")
                race(option_lineup, repeats, progress)
                option_rows += [contestant.summary(flops_per_epoch) for contestant in option_lineup]
                cnn_lineup = cnn_contestants(device, cnn_data)
                progress(
                    f"The {MODEL} on {device}: {len(cnn_lineup)} loops on {len(cnn_data.train):,} samples, {WARMUP_EPOCHS} warm-up and {repeats} timed round(s)"
                )
                race(cnn_lineup, repeats, progress)
                cnn_rows += [contestant.summary(cnn_flops_per_epoch) | {"model": MODEL} for contestant in cnn_lineup]
                metric_rows += metric_update_costs(device)
                task_rows.append(measure_tasks(device, splits, options.quick, repeats, progress))
                progress(f"Host reads per pass on {device}")
                reads += host_reads(device, make_loaders(TrainConfig(), splits, device)[0])
                if device.type == "cuda":
                    progress(f"Synchronizing CUDA calls in one epoch at batch 64 on {device}")
                    epoch_syncs[str(device)] = cuda_epoch_syncs(lineup)
        peak_allocated = {str(device): peak for device in devices if (peak := peak_device_memory(device)) is not None}
        studies = [measure_studies(str(device), options.data_root, options.quick, progress) for device in devices]
        progress(f"MLflow's fixed costs in {repeats} fresh process(es)")
        mlflow_costs = measure_mlflow_costs(repeats)
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
        "settings": {
            "devices": list(descriptions),
            "repeats": repeats,
            "warmup_epochs": WARMUP_EPOCHS,
            "train_samples": len(splits.train),
            "val_samples": len(splits.val),
            "batch_sizes": list(BATCH_SIZES),
            "val_batch_size": TrainConfig.val_batch_size,
            "loops": list(LOOPS),
            "options": list(dict.fromkeys(row["loop"] for row in option_rows)),
            "torch_threads": threads,
        },
        "host": host,
        "devices": descriptions,
        "flops": {"per_train_sample": flops["train"], "per_val_sample": flops["evaluate"], "per_epoch": flops_per_epoch},
        "sgemm": sgemm,
        "epochs": epochs,
        "options": option_rows,
        "models": {"train_samples": len(cnn_data.train), "epochs": cnn_rows, "metric_updates": metric_rows},
        "tasks": {
            "epochs": [row for rows in task_rows for row in rows["epochs"]],
            "batch_handling": [row for rows in task_rows for row in rows["batch_handling"]],
        },
        "host_reads": reads,
        "cuda_epoch_syncs": epoch_syncs,
        "mlflow": mlflow_costs,
        "studies": studies,
        "startup": startup,
        "mlflow_run": mlflow_run,
        "memory": {"peak_rss_bytes": peak_rss_bytes(), "device_peak_allocated_bytes": peak_allocated},
    }
    results["targets"] = [verdict.as_dict() for verdict in judge(results)]
    return results
