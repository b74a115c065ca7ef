"""The benchmark report's tables, one per section: epochs, options, models, tasks, targets, host reads, costs, studies, machine."""

from __future__ import annotations

from typing import Any

from deep_learning.analysis.tables import markdown_table
from deep_learning.benchmarks.targets import format_value, paired_ratio

MIB = 1024 * 1024


def epochs_table(results: dict[str, Any]) -> str:
    """Median epoch time of every loop, its speed-up over the chapter's own loop, its GFLOP/s and its time in MLflow."""
    rows = results["epochs"]
    chapter = {
        (row["device"], row["batch_size"]): row["median_epoch_seconds"]
        for row in rows
        if row["loop"] == "chapter" and row["loader"] == "dataloader"
    }
    return markdown_table(
        ["device", "data path", "batch", "loop", "median epoch (s)", "speed-up over the chapter", "GFLOP/s", "in MLflow per epoch (ms)"],
        [
            [
                row["device"],
                row["loader"],
                str(row["batch_size"]),
                row["loop"],
                f"{row['median_epoch_seconds']:.3f}",
                format_value(chapter[row["device"], row["batch_size"]] / row["median_epoch_seconds"], "x"),
                f"{row['gflops']:.1f}",
                f"{1000 * row['median_tracking_seconds']:.2f}" if row["loop"] == "tracked" else "",
            ]
            for row in rows
        ],
    )


def options_table(results: dict[str, Any]) -> str:
    """Our untracked loop with each option against itself plain: median epoch, speed-up (median of per-round ratios), GFLOP/s."""
    rows = results["options"]
    plain = {(row["device"], row["batch_size"]): row["epoch_seconds"] for row in rows if row["loop"] == "plain"}
    return markdown_table(
        ["device", "batch", "option", "median epoch (s)", "speed-up over plain", "GFLOP/s"],
        [
            [
                row["device"],
                str(row["batch_size"]),
                row["loop"],
                f"{row['median_epoch_seconds']:.3f}",
                format_value(paired_ratio(plain[row["device"], row["batch_size"]], row["epoch_seconds"]), "x"),
                f"{row['gflops']:.1f}",
            ]
            for row in rows
        ],
    )


def models_table(results: dict[str, Any]) -> str:
    """The CNN in the chapter's loop and ours: median epoch, our speed-up over the chapter's, GFLOP/s."""
    rows = results["models"]["epochs"]
    chapter = {(row["device"], row["batch_size"]): row["median_epoch_seconds"] for row in rows if row["loop"] == "chapter"}
    return markdown_table(
        ["device", "model", "data path", "batch", "loop", "median epoch (s)", "speed-up over the chapter", "GFLOP/s"],
        [
            [
                row["device"],
                row["model"],
                row["loader"],
                str(row["batch_size"]),
                row["loop"],
                f"{row['median_epoch_seconds']:.3f}",
                format_value(chapter[row["device"], row["batch_size"]] / row["median_epoch_seconds"], "x"),
                f"{row['gflops']:.1f}",
            ]
            for row in rows
        ],
    )


def metric_updates_table(results: dict[str, Any]) -> str:
    """What updating the metrics of a pass costs per batch of 64: accuracy alone and four metrics."""
    return markdown_table(
        ["device", "metrics", "per batch (µs)"],
        [[row["device"], ", ".join(row["names"]), f"{row['microseconds_per_batch']:.1f}"] for row in results["models"]["metric_updates"]],
    )


def tasks_table(results: dict[str, Any]) -> str:
    """The regression and the language model: each data path's median epoch, and the tensor path's speed-up over the DataLoader."""
    rows = results["tasks"]["epochs"]
    dataloader = {(row["device"], row["loop"]): row["epoch_seconds"] for row in rows if row["loader"] == "dataloader"}
    return markdown_table(
        ["device", "task", "training samples", "batch", "data path", "median epoch (s)", "speed-up over the DataLoader"],
        [
            [
                row["device"],
                row["loop"],
                f"{row['train_samples']:,}",
                str(row["batch_size"]),
                row["loader"],
                f"{row['median_epoch_seconds']:.3f}",
                format_value(paired_ratio(dataloader[row["device"], row["loop"]], row["epoch_seconds"]), "x"),
            ]
            for row in rows
        ],
    )


def tasks_section(results: dict[str, Any]) -> str:
    """The section on tasks beyond image classification: their epochs on both data paths, and the batch handling's cost."""
    return paragraphs(
        [
            "## Other tasks",
            "A regression (scikit-learn's diabetes data as `--dataset csv:`, the built-in MLP) and a character-level language model "
            "(`--dataset text:` of this package's source, the built-in causal transformer, block 64) in our untracked loop, on the "
            "tensor path and through a plain DataLoader of the same batches, interleaved as above. Then the cost of the loop's batch "
            "handling (inputs of any form, moved recursively; any loss) against the tuple path it replaced, on the chapter's MLP.",
            tasks_table(results),
            batch_handling_table(results),
        ]
    )


def batch_handling_table(results: dict[str, Any]) -> str:
    """What a batch's handling costs: the loop's (any inputs, moved recursively) against the tuple path's direct calls."""
    return markdown_table(
        ["device", "batch handling", "forward and loss of a batch of 64 (µs)"],
        [[row["device"], row["path"], f"{row['microseconds_per_batch']:.1f}"] for row in results["tasks"]["batch_handling"]],
    )


def targets_table(results: dict[str, Any]) -> str:
    """Each target: what was measured, its value, the goal, PASS or MISS and by how much."""
    return markdown_table(
        ["target", "device", "measured", "value", "goal", "result"],
        [
            [
                target["name"],
                target["device"],
                target["measured"],
                format_value(target["value"], target["unit"]),
                target["goal"],
                target["verdict"],
            ]
            for target in results["targets"]
        ],
    )


def host_reads_table(results: dict[str, Any]) -> str:
    """Each loop's reads of device data by the host, per batch and per pass; CUDA's own sync count where measured."""

    def syncs(row: dict[str, Any], key: str) -> str:
        return format_value(row["cuda_syncs"][key], "syncs") if "cuda_syncs" in row else ""

    return markdown_table(
        [
            "device",
            "loop",
            "pass",
            "host reads per batch",
            "host reads per pass",
            "CUDA syncs per batch",
            "CUDA syncs per pass",
            "what reads, in the 8-batch pass",
        ],
        [
            [
                row["device"],
                row["loop"],
                row["pass"],
                f"{row['per_batch']:g}",
                f"{row['per_pass']:g}",
                syncs(row, "per_batch"),
                syncs(row, "per_pass"),
                ", ".join(f"{kind} x{count}" for kind, count in sorted(row["kinds"].items())),
            ]
            for row in results["host_reads"]
        ],
    )


def costs_table(results: dict[str, Any]) -> str:
    """The costs outside the loop, in seconds."""
    costs, mlflow_run = results["mlflow"], results["mlflow_run"]
    overhead = "skipped (" + mlflow_run["skipped"] + ")" if "skipped" in mlflow_run else f"{mlflow_run['overhead_seconds']:.2f}"
    return markdown_table(
        ["cost", "seconds"],
        [
            ["import mlflow (`deep_learning.tracking`, torch already loaded)", f"{costs['import_tracking_seconds']:.2f}"],
            ["a run's fixed cost, first in a fresh process (existing sqlite store)", f"{costs['first_run_seconds']:.3f}"],
            ["a run's fixed cost, later runs in the same process", f"{costs['later_run_seconds']:.3f}"],
            ["`log_trained_model`, first call in a process", f"{costs['log_model_first_seconds']:.3f}"],
            ["`log_trained_model`, second call", f"{costs['log_model_second_seconds']:.3f}"],
            [
                "sending one epoch's metrics to the store (the sender thread's CPU, which overlaps the next epoch)",
                f"{costs['epoch_metrics_cpu_seconds']:.4f}",
            ],
            [
                "an epoch's checkpoint on the training thread: write it, log it, queue its LoggedModel",
                f"{costs['checkpoint_epoch_training_seconds']:.4f}",
            ],
            [
                "creating that LoggedModel and deleting a stale one's (the sender thread, overlapping the next epoch)",
                f"{costs['checkpoint_model_sender_seconds']:.4f}",
            ],
            [
                "at the end of a run, the files of one kept checkpoint's LoggedModel (torch.export, upload)",
                f"{costs['checkpoint_models_end_seconds']:.3f}",
            ],
            ["system-metrics sampler (1 s interval), CPU seconds per second of a run", f"{costs['system_metrics_core_share']:.4f}"],
            ["`deep-learning --help`", f"{results['startup']['median_seconds']:.3f}"],
            ["`mlflow run . --env-manager local` minus the same command run directly", overhead],
        ],
    )


def studies_table(results: dict[str, Any]) -> str:
    """Per device: a sweep's extra child, and 8 seeds separate and vectorized against one run."""
    rows = []
    for study in results["studies"]:
        differences = ", ".join(f"{key} {value:.1e}" for key, value in study["largest_differences"].items())
        rows.append(
            [
                f"{study['device']} ({study['seeds']} seeds, {study['epochs']} epoch(s))",
                f"{study['extra_child_seconds']:.2f}",
                f"{study['one_run_seconds']:.1f}",
                f"{study['separate_seconds']:.1f} ({study['separate_over_one_run']:.2f}x)",
                f"{study['vectorized_seconds']:.1f} ({study['vectorized_over_one_run']:.2f}x)",
                differences,
            ]
        )
    return markdown_table(
        [
            "device",
            "extra child (s)",
            "one run (s)",
            "seeds separate (s)",
            "seeds vectorized (s)",
            "largest difference, vectorized vs separate",
        ],
        rows,
    )


def machine_table(results: dict[str, Any]) -> str:
    """Each device's measured SGEMM rate and peak allocation."""
    peaks = results["memory"]["device_peak_allocated_bytes"]
    return markdown_table(
        ["device", "name", "SGEMM GFLOP/s (n x n, float32)", "peak allocated (MiB)"],
        [
            [
                device,
                results["devices"][device]["name"],
                f"{sgemm['gflops']:.1f} (n = {sgemm['size']})",
                "" if peaks.get(device) is None else f"{peaks[device] / MIB:.0f}",
            ]
            for device, sgemm in results["sgemm"].items()
        ],
    )


def paragraphs(parts: list[str]) -> str:
    """Text and tables, a blank line between each."""
    return "\n\n".join(part.rstrip("\n") for part in parts)
