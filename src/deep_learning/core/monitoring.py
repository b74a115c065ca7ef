"""The epoch metrics a run can watch (for early stopping, the best checkpoint and a search) and which way each improves."""

from __future__ import annotations

LOWER_IS_BETTER = ("loss", "error", "mse", "mae", "rmse", "perplexity")  # metric name endings that auto mode minimises


def monitorable(metric_names: tuple[str, ...]) -> tuple[str, ...]:
    """The epoch metrics a run can monitor: each split's loss and metrics, validation first."""
    return tuple(f"{split}_{name}" for split in ("val", "train") for name in ("loss", *metric_names))


def could_monitor(monitor: str, metric_names: tuple[str, ...]) -> bool:
    """Whether a run with these metrics (none named: the task's, not known yet) may log `monitor` every epoch."""
    if metric_names:
        return monitor in monitorable(metric_names)
    split, _, name = monitor.partition("_")
    return split in ("val", "train") and bool(name)


def monitor_direction(monitor: str, mode: str = "auto") -> str:
    """Which way `monitor` improves: `mode` when given, else min for a loss or an error, max for a score."""
    if mode != "auto":
        return mode
    return "min" if monitor.endswith(LOWER_IS_BETTER) else "max"
