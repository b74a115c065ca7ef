"""What the loop returns: one `EpochResult` per epoch (plain data, no torch, so analysis can read it)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class EpochResult:
    """What one epoch of train_and_evaluate measured: the losses, and each metric by its name."""

    epoch: int
    num_epochs: int
    train_loss: float
    train_metrics: dict[str, float]
    val_loss: float
    val_metrics: dict[str, float]
    train_seconds: float
    epoch_seconds: float
    num_train_samples: int
    step_stats: dict[str, float] = field(default_factory=dict)  # lr, and grad_norm_mean/max with clipping

    @property
    def train_metric(self) -> float:
        """The first training metric: what the chapter's line prints as `metric`."""
        return next(iter(self.train_metrics.values()))

    @property
    def val_metric(self) -> float:
        """The first validation metric: the chapter's `val_metric`."""
        return next(iter(self.val_metrics.values()))

    @property
    def train_samples_per_second(self) -> float:
        return self.num_train_samples / self.train_seconds if self.train_seconds > 0 else float("nan")

    def learning_metrics(self) -> dict[str, float]:
        """Losses and metrics by the names runs log them: train_loss, train_<metric>, val_loss, val_<metric>."""
        return {
            "train_loss": self.train_loss,
            **{f"train_{name}": value for name, value in self.train_metrics.items()},
            "val_loss": self.val_loss,
            **{f"val_{name}": value for name, value in self.val_metrics.items()},
        }

    def logged_metrics(self) -> dict[str, float]:
        """The metrics a run logs for this epoch, by their contract names: losses and metrics, then speed."""
        return {
            **self.learning_metrics(),
            **self.step_stats,
            "epoch_seconds": self.epoch_seconds,
            "train_samples_per_second": self.train_samples_per_second,
        }
