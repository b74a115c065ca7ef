"""Which epochs were best by a monitored metric, and when to stop for lack of improvement.

Both are read from the history alone, so a resumed run (whose checkpoint holds its history) stops,
and keeps its best checkpoints, exactly where an uninterrupted one would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from deep_learning.core.config import TrainConfig
from deep_learning.core.monitoring import monitor_direction
from deep_learning.core.results import EpochResult


@dataclass(frozen=True)
class Monitor:
    """An epoch metric (val_loss, val_accuracy, ...) and the way it improves (min or max)."""

    name: str
    direction: str

    @classmethod
    def of(cls, config: TrainConfig) -> Monitor:
        return cls(config.monitor, monitor_direction(config.monitor, config.monitor_mode))

    def value(self, result: EpochResult) -> float:
        return result.learning_metrics()[self.name]

    def improves(self, value: float, best: float) -> bool:
        """Strictly better; a NaN never is."""
        return value < best if self.direction == "min" else value > best

    def best(self, history: Sequence[EpochResult]) -> EpochResult | None:
        """The first epoch with the best value."""
        best = None
        for result in history:
            value = self.value(result)
            if best is None or self.improves(value, self.value(best)) or (self.value(best) != self.value(best) and value == value):
                best = result
        return best

    def ranked(self, history: Sequence[EpochResult]) -> list[EpochResult]:
        """The epochs from best to worst (ties: the earlier first; NaNs last)."""
        sign = 1 if self.direction == "min" else -1
        return sorted(history, key=lambda result: (self.value(result) != self.value(result), sign * self.value(result), result.epoch))


@dataclass(frozen=True)
class EarlyStopping:
    """Stop once the monitored metric has not improved for `patience` epochs."""

    monitor: Monitor
    patience: int

    def should_stop(self, history: Sequence[EpochResult]) -> bool:
        best = self.monitor.best(history)
        return best is not None and history[-1].epoch - best.epoch >= self.patience

    def reason(self, history: Sequence[EpochResult]) -> str:
        """Why training stopped, for the run's tag and the output."""
        best = self.monitor.best(history)
        return (
            f"early stopping: {self.monitor.name} did not improve for {self.patience} epochs "
            f"(best {self.monitor.value(best):.6g} at epoch {best.epoch})"
        )
