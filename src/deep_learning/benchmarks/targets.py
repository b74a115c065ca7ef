"""The project's speed targets, judged against a benchmark's results: each PASS or MISS, and by how much."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Verdict:
    """One target: what was measured, the bound it must meet, and the margin (positive: met by that much)."""

    name: str
    device: str
    measured: str
    value: float
    bound: float
    at_least: bool
    unit: str

    @property
    def passed(self) -> bool:
        return self.margin >= 0

    @property
    def margin(self) -> float:
        return self.value - self.bound if self.at_least else self.bound - self.value

    def as_dict(self) -> dict[str, Any]:
        """The verdict as a JSON object, with its pass/miss spelled out."""
        return {**asdict(self), "goal": self.goal(), "passed": self.passed, "margin": self.margin, "verdict": self.sentence()}

    def sentence(self) -> str:
        """'PASS by 1.3x', 'MISS by 0.21 s', 'MISS by 2.5 percentage points'."""
        amount = f"{abs(self.margin):.1f} percentage points" if self.unit == "%" else format_value(abs(self.margin), self.unit)
        return f"{'PASS' if self.passed else 'MISS'} by {amount}"

    def goal(self) -> str:
        """The bound as the target states it: '>= 8x', '<= 0.7 s'."""
        return f"{'>=' if self.at_least else '<='} {format_value(self.bound, self.unit)}"


def format_value(value: float, unit: str) -> str:
    """A number in its unit: 8.0x, 0.70 s, 1.0%, 1.02."""
    if unit == "x":
        return f"{value:.1f}x"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "%":
        return f"{value:.1f}%"
    if unit in ("reads", "syncs"):
        return f"{value:g}"
    return f"{value:.3f}"


def paired_ratio(numerators: list[float], denominators: list[float]) -> float:
    """The median of the per-round ratios of two contestants' epoch times: drift between rounds cancels out."""
    return statistics.median(numerator / denominator for numerator, denominator in zip(numerators, denominators, strict=True))


def _epoch(rows: list[dict[str, Any]], device: str, loader: str, batch_size: int, loop: str) -> dict[str, Any]:
    return next(row for row in rows if (row["device"], row["loader"], row["batch_size"], row["loop"]) == (device, loader, batch_size, loop))


def judge(results: dict[str, Any]) -> list[Verdict]:
    """Every target the results can answer, on each device (the speed-ups' bounds differ between the CPU and accelerators)."""
    verdicts = []
    for device in results["settings"]["devices"]:
        verdicts += _speedup_verdicts(results["epochs"], device)
        if device != "cpu":
            verdicts.append(_compiled_verdict(results["options"], device))
        verdicts.append(_sgemm_verdict(results, device))
        for batch_size in results["settings"]["batch_sizes"]:
            verdicts += _tracking_verdicts(results["epochs"], device, batch_size)
    verdicts += _host_read_verdicts(results["host_reads"])
    verdicts += [_cuda_epoch_sync_verdict(device, syncs) for device, syncs in results["cuda_epoch_syncs"].items()]
    verdicts += [verdict for study in results["studies"] for verdict in _study_verdicts(study)]
    verdicts += _batch_handling_verdicts(results)
    return verdicts + _host_cost_verdicts(results)


def _speedup_verdicts(rows: list[dict[str, Any]], device: str) -> list[Verdict]:
    """The chapter's loop over our tracked one, at both batch sizes."""
    bounds = ((64, 8.0), (1024, 12.0)) if device == "cpu" else ((64, 10.0), (1024, 10.0))
    verdicts = []
    for batch_size, bound in bounds:
        chapter = _epoch(rows, device, "dataloader", batch_size, "chapter")
        tracked = _epoch(rows, device, "tensor", batch_size, "tracked")
        verdicts.append(
            Verdict(
                f"speedup_batch_{batch_size}",
                device,
                f"the chapter's loop (DataLoader) over our tracked loop (tensor path), batch {batch_size}",
                chapter["median_epoch_seconds"] / tracked["median_epoch_seconds"],
                bound,
                True,
                "x",
            )
        )
    return verdicts


def _compiled_verdict(options: list[dict[str, Any]], device: str) -> Verdict:
    """An accelerator's fastest compiled option at batch 64."""
    compiled = [row for row in options if row["device"] == device and row["batch_size"] == 64 and row["loop"].startswith("compile")]
    fastest = min(compiled, key=lambda row: row["median_epoch_seconds"])
    return Verdict(
        "compiled_epoch_batch_64",
        device,
        f"epoch time of our loop compiled (fastest: {fastest['loop']}), tensor path, batch 64; the launch-latency floor is ~35 ms",
        fastest["median_epoch_seconds"],
        0.1,
        False,
        "s",
    )


def _sgemm_verdict(results: dict[str, Any], device: str) -> Verdict:
    fastest = _epoch(results["epochs"], device, "tensor", 1024, "tracked")
    return Verdict(
        "sgemm_share_batch_1024",
        device,
        "GFLOP/s of our tracked loop (tensor path, batch 1024) as a share of the measured SGEMM rate",
        100 * fastest["gflops"] / results["sgemm"][device]["gflops"],
        40.0,
        True,
        "%",
    )


def _tracking_verdicts(rows: list[dict[str, Any]], device: str, batch_size: int) -> list[Verdict]:
    """What tracking costs an epoch: tracked over untracked, and the share spent in MLflow calls."""
    tracked = _epoch(rows, device, "tensor", batch_size, "tracked")
    untracked = _epoch(rows, device, "tensor", batch_size, "untracked")
    return [
        Verdict(
            f"tracked_over_untracked_batch_{batch_size}",
            device,
            f"epoch time tracked / untracked, median of the rounds' ratios (tensor path, batch {batch_size})",
            paired_ratio(tracked["epoch_seconds"], untracked["epoch_seconds"]),
            1.02,
            False,
            "",
        ),
        Verdict(
            f"mlflow_share_batch_{batch_size}",
            device,
            f"time in MLflow calls per epoch / epoch time (tensor path, batch {batch_size})",
            100 * tracked["median_tracking_seconds"] / tracked["median_epoch_seconds"],
            1.0,
            False,
            "%",
        ),
    ]


def _cuda_epoch_sync_verdict(device: str, syncs: dict[str, Any]) -> Verdict:
    return Verdict(
        "cuda_syncs_per_epoch",
        device,
        "synchronizing CUDA calls in one epoch of our untracked loop (tensor path, batch 64): "
        "one per pass, as train and evaluate each return their floats",
        syncs["untracked"],
        2.0,
        False,
        "syncs",
    )


def _host_cost_verdicts(results: dict[str, Any]) -> list[Verdict]:
    """Fixed costs on the host: a run's start, logging a model, the system-metrics sampler, the CLI's --help."""
    costs = results["mlflow"]
    return [
        Verdict(
            "run_fixed_seconds",
            "host",
            "fixed cost of a run (first in a fresh process, existing sqlite store)",
            costs["first_run_seconds"],
            0.7,
            False,
            "s",
        ),
        Verdict(
            "log_model_first_seconds",
            "host",
            "log_trained_model, first call in a process",
            costs["log_model_first_seconds"],
            1.0,
            False,
            "s",
        ),
        Verdict("log_model_second_seconds", "host", "log_trained_model, second call", costs["log_model_second_seconds"], 0.1, False, "s"),
        Verdict(
            "system_metrics_cpu_share",
            "host",
            "CPU used by a run's system-metrics sampler (1 s interval) as a share of the machine's CPU",
            100 * costs["system_metrics_core_share"] / results["host"]["cpu_count"],
            1.0,
            False,
            "%",
        ),
        Verdict("help_seconds", "host", "`deep-learning --help` in a new process", results["startup"]["median_seconds"], 0.3, False, "s"),
    ]


def _study_verdicts(study: dict[str, Any]) -> list[Verdict]:
    """A sweep's extra child, and a group of seeds trained together against one run."""
    return [
        Verdict(
            "study_extra_child_seconds",
            study["device"],
            "wall time each extra child adds to a sweep beyond its epochs "
            f"(one epoch on {study['child_samples']:,} samples; validation, test, models and figures)",
            study["extra_child_seconds"],
            0.3,
            False,
            "s",
        ),
        Verdict(
            "vectorized_seeds_over_one_run",
            study["device"],
            f"{study['seeds']} seeds with --vectorize / one run ({study['epochs']} epoch(s) on {study['train_samples']:,} samples)",
            study["vectorized_over_one_run"],
            3.0,
            False,
            "x",
        ),
    ]


def _batch_handling_verdicts(results: dict[str, Any]) -> list[Verdict]:
    """The loop's handling of batches of any form costs, per batch, within noise of the chapter's run: at most 2% of its step."""
    verdicts = []
    for device in results["settings"]["devices"]:
        costs = {row["path"]: row["microseconds_per_batch"] for row in results["tasks"]["batch_handling"] if row["device"] == device}
        epoch = _epoch(results["epochs"], device, "tensor", 64, "untracked")
        step_microseconds = 1e6 * epoch["median_epoch_seconds"] / (results["settings"]["train_samples"] / 64)
        verdicts.append(
            Verdict(
                "batch_handling_share_batch_64",
                device,
                "extra time the loop's batch handling (any inputs, moved recursively) takes per "
                "batch over the tuple path's, as a share of a training step of the chapter's run (untracked, tensor path, batch 64)",
                100 * (costs["batches as made"] - costs["tuple path"]) / step_microseconds,
                2.0,
                False,
                "%",
            )
        )
    return verdicts


def _host_read_verdicts(rows: list[dict[str, Any]]) -> list[Verdict]:
    """Our loop's passes: no host read per batch, one per pass (train and evaluate each return their floats)."""
    verdicts = []
    for row in rows:
        if row["loop"] != "ours":
            continue
        name, device = row["pass"], row["device"]
        verdicts += [
            Verdict(
                f"host_reads_per_batch_{name}",
                device,
                f"reads of device data by the host per batch, {name} pass",
                row["per_batch"],
                0.0,
                False,
                "reads",
            ),
            Verdict(
                f"host_reads_per_pass_{name}",
                device,
                f"reads of device data by the host per {name} pass, besides the batches'",
                row["per_pass"],
                1.0,
                False,
                "reads",
            ),
        ]
        if "cuda_syncs" in row:
            verdicts.append(
                Verdict(
                    f"cuda_syncs_per_batch_{name}",
                    device,
                    f"synchronizing CUDA calls per batch, {name} pass (sync debug mode)",
                    row["cuda_syncs"]["per_batch"],
                    0.0,
                    False,
                    "syncs",
                )
            )
    return verdicts
