"""What a run gives back: its id and name, its epochs, its test scores and where to look at it."""

from __future__ import annotations

from dataclasses import dataclass

from deep_learning.core.results import EpochResult


@dataclass(frozen=True)
class ExperimentResult:
    """What a tracked run produced: its id and name, every epoch, and the test scores by their logged names."""

    run_id: str
    run_name: str
    history: list[EpochResult]
    test_metrics: dict[str, float]
    where_to_look: str

    @property
    def test_loss(self) -> float | None:
        return self.test_metrics.get("test_loss")

    @property
    def test_accuracy(self) -> float | None:
        return self.test_metrics.get("test_accuracy")

    def summary(self) -> str:
        """The line that ends a run's output: where to browse it."""
        return f"Run {self.run_id} finished; to browse it: {self.where_to_look}"
