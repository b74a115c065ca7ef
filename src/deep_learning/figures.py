"""Figures as PNG files: learning curves (of one run or of several side by side) and a confusion matrix.

matplotlib draws with its Agg canvas only, so no display is needed; import this module lazily.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

if TYPE_CHECKING:
    from deep_learning.training import EpochResult

LEARNING_CURVES_FILE = "learning_curves.png"
CONFUSION_MATRIX_FILE = "confusion_matrix.png"
DPI = 100

# A curve set: a label (empty for a single run) and metric histories by their logged names, {step: value}.
Curves = tuple[str, dict[str, dict[int, float]]]


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plot_learning_curves(curve_sets: Sequence[Curves], path: Path) -> Path:
    """A PNG of per-epoch loss and accuracy in two panels, train solid and validation dashed, one colour per curve set."""
    figure = _figure(13, 5)
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    for axes, quantity in ((loss_axes, "loss"), (accuracy_axes, "accuracy")):
        for index, (label, histories) in enumerate(curve_sets):
            for split, line_style in (("train", "-"), ("val", "--")):
                history = histories.get(f"{split}_{quantity}", {})
                steps = sorted(history)
                axes.plot(
                    steps, [history[step] for step in steps], line_style, marker="o",
                    color=f"C{index % 10}", label=f"{label} {split}".strip(),
                )
        axes.set(title=quantity.capitalize(), xlabel="epoch", ylabel=quantity)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
    figure.legend(*loss_axes.get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize="small")
    figure.savefig(path, dpi=DPI)
    return path


def epoch_histories(history: Sequence[EpochResult]) -> dict[str, dict[int, float]]:
    """A run's per-epoch train and validation loss and accuracy, under the names the run logs them by."""
    return {
        "train_loss": {result.epoch: result.train_loss for result in history},
        "train_accuracy": {result.epoch: result.train_metric for result in history},
        "val_loss": {result.epoch: result.val_loss for result in history},
        "val_accuracy": {result.epoch: result.val_metric for result in history},
    }


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: Path, title: str) -> Path:
    """A PNG of a confusion matrix (rows: true class, columns: predicted class), each cell labelled with its count."""
    figure = _figure(8, 7)
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, shrink=0.8)
    darkest = max(max(row) for row in matrix) or 1
    for true_class, row in enumerate(matrix):
        for predicted_class, count in enumerate(row):
            color = "white" if count > darkest / 2 else "black"
            axes.text(predicted_class, true_class, str(count), ha="center", va="center", fontsize="small", color=color)
    ticks = range(len(class_names))
    axes.set_xticks(ticks, class_names, rotation=45, ha="right", rotation_mode="anchor")
    axes.set_yticks(ticks, class_names)
    axes.set(title=title, xlabel="predicted class", ylabel="true class")
    figure.savefig(path, dpi=DPI)
    return path


def plot_run(history: Sequence[EpochResult], confusion_matrix: Sequence[Sequence[int]], class_names: Sequence[str], folder: Path) -> list[Path]:
    """A finished run's learning_curves.png and its test confusion_matrix.png, written into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    num_samples = sum(map(sum, confusion_matrix))
    correct = sum(confusion_matrix[label][label] for label in range(len(confusion_matrix)))
    return [
        plot_learning_curves([("", epoch_histories(history))], folder / LEARNING_CURVES_FILE),
        plot_confusion_matrix(
            confusion_matrix, class_names, folder / CONFUSION_MATRIX_FILE,
            f"Test split: {correct} of {num_samples} correct ({correct / num_samples:.2%})",
        ),
    ]
