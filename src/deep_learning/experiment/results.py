"""What a run gives back: its id and name, its epochs, its test scores and where to look at it; shown as a short
text, a notebook's table and figure, or a pandas DataFrame."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING

from deep_learning.analysis.display import browse_html, figure_html, frame_html
from deep_learning.core.results import EpochResult

if TYPE_CHECKING:
    import pandas


@dataclass(frozen=True, repr=False)
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

    def final_metrics(self) -> dict[str, float]:
        """The last epoch's losses and metrics, then the test scores."""
        last = self.history[-1].learning_metrics() if self.history else {}
        return {**last, **self.test_metrics}

    def to_pandas(self) -> pandas.DataFrame:
        """One row per epoch, indexed by epoch, with every metric the run logged for it."""
        import pandas

        epochs = pandas.Index([result.epoch for result in self.history], name="epoch")
        return pandas.DataFrame([result.logged_metrics() for result in self.history], index=epochs)

    def __repr__(self) -> str:
        scores = " | ".join(f"{name} {value:.4f}" for name, value in self.final_metrics().items())
        return (
            f"ExperimentResult: run {self.run_name!r} ({self.run_id}), {len(self.history)} epochs\n"
            f"  final: {scores or '-'}\n"
            f"  to browse it: {self.where_to_look}"
        )

    def _repr_html_(self) -> str:
        from deep_learning.analysis.figures import epoch_histories, learning_curves_figure

        tests = ", ".join(f"{name} {value:.4f}" for name, value in self.test_metrics.items())
        parts = [
            f"<p><b>{html.escape(self.run_name)}</b> (run {self.run_id}): {len(self.history)} epochs"
            + (f"; {html.escape(tests)}" if tests else "")
            + "</p>",
            frame_html(self.to_pandas()),
        ]
        if self.history:
            parts.append(figure_html(learning_curves_figure([("", epoch_histories(self.history))]), "learning curves"))
        parts.append(f"<p>To browse it: {browse_html(self.where_to_look)}</p>")
        return "\n".join(parts)
