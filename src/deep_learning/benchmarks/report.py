"""A benchmark's results as files: the full JSON, and a markdown summary for humans and pull requests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from deep_learning.benchmarks.sections import (
    MIB,
    costs_table,
    epochs_table,
    host_reads_table,
    machine_table,
    metric_updates_table,
    models_table,
    options_table,
    paragraphs,
    studies_table,
    targets_table,
    tasks_section,
)
from deep_learning.core.errors import BenchmarkError

JSON_NAME = "benchmark.json"
MARKDOWN_NAME = "benchmark.md"


def write_reports(results: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    """Write benchmark.json and benchmark.md into `folder` (created if needed); return their paths."""
    json_path, markdown_path = folder / JSON_NAME, folder / MARKDOWN_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        markdown_path.write_text(markdown(results), encoding="utf-8")
    except OSError as error:
        raise BenchmarkError(f"Cannot write the results to {folder}: {error.strerror}. Choose another --output.") from None
    return json_path, markdown_path


def markdown(results: dict[str, Any]) -> str:
    """The whole summary: settings, epoch times, targets, fixed costs, machine."""
    return (
        paragraphs(
            [
                *_introduction(results),
                "## Targets",
                targets_table(results),
                "## Epoch time",
                epochs_table(results),
                "## Options",
                "Our untracked loop on the tensor path with each option the chapter leaves out (`--compile`, `--amp`), raced "
                "against itself plain in the same interleaved rounds. Compilation happens in the warm-up epoch, which is not timed.",
                options_table(results),
                "## The CNN",
                f"The built-in `cnn` (two conv-ReLU-pool blocks, a linear head) in the chapter's loop on its DataLoader and in ours on the "
                f"tensor path, untracked, on the first {results['models']['train_samples']:,} training samples, interleaved as above; "
                "then the cost of updating a pass's metrics per batch of 64, accuracy alone and four metrics.",
                models_table(results),
                metric_updates_table(results),
                tasks_section(results),
                "## Host reads",
                "Every read of device data back to the host, counted from the operations on any device (on CUDA each one "
                "is a sync that stalls the kernel queue), over passes of 4 and 8 batches of 64; what grows between them is per batch.",
                host_reads_table(results),
                *(
                    f"Synchronizing CUDA calls in one whole epoch at batch 64 on {device}: the chapter's loop {syncs['chapter']:,}, ours {syncs['untracked']:,}."
                    for device, syncs in results["cuda_epoch_syncs"].items()
                ),
                "## Costs outside the loop",
                costs_table(results),
                "## Studies",
                "A sweep's children in one process: what each extra child adds beyond its epochs (sweeps of 1 and 4 seeds, one short "
                "epoch each), then the chapter's MLP with 8 seeds as separate children and as one `--vectorize` group against one "
                "run, and the largest difference per metric between a seed's vectorized and separate runs (over seeds and epochs).",
                studies_table(results),
                "## Machine",
                machine_table(results),
                _flops_and_memory(results),
            ]
        )
        + "\n"
    )


def _introduction(results: dict[str, Any]) -> list[str]:
    """The title, the machine and library versions, and how the epochs were timed."""
    settings, host = results["settings"], results["host"]
    threads = settings["torch_threads"]
    return [
        "# `deep-learning bench`" + (" --quick: noisy and preliminary, not a measurement" if results["quick"] else ""),
        f"{results['created']} on {host['cpu_name']} ({host['cpu_count']} CPUs; torch threads: {threads['intra_op']} "
        f"intra-op, {threads['inter_op']} inter-op), torch {host['torch_version']}, Python {host['python_version']}.",
        f"Median of {settings['repeats']} timed epoch(s) per loop after {settings['warmup_epochs']} warm-up epoch, "
        f"loops interleaved; an epoch trains on {settings['train_samples']:,} samples and validates on "
        f"{settings['val_samples']:,} (batch {settings['val_batch_size']}). Speed-ups are over the chapter's loop "
        f"on its DataLoader at the same batch size and device.",
    ]


def _flops_and_memory(results: dict[str, Any]) -> str:
    flops, memory = results["flops"], results["memory"]
    return (
        f"FLOPs (matrix multiplies, as torch's FlopCounterMode counts them): {flops['per_train_sample']:,.0f} per training "
        f"sample, {flops['per_val_sample']:,.0f} per validation sample, {flops['per_epoch'] / 1e9:.2f} GFLOP per epoch. "
        f"Peak RSS of the benchmark's process: {memory['peak_rss_bytes'] / MIB:.0f} MiB."
    )
