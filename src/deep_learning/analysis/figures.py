"""Figures as PNG files: learning curves (of one run or of several side by side), a confusion matrix, a regression's
predictions against the truth, and a
sweep's roll-up (each group's mean curve with a band of one standard deviation).

matplotlib draws with its Agg canvas only, so no display is needed; import this module lazily.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from deep_learning.analysis.records import metric_names

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from deep_learning.analysis.rollup import GroupRollup
    from deep_learning.core.results import EpochResult

LEARNING_CURVES_FILE = "learning_curves.png"
CONFUSION_MATRIX_FILE = "confusion_matrix.png"
PREDICTED_VS_TRUE_FILE = "predicted_vs_true.png"
DPI = 100
CURVE_SPLITS = ("train", "val")
# Sizes in inches: panels stay legible at up to three a row, and the smallest figure is still 800 pixels wide.
PANELS_PER_ROW = 3
PANEL_WIDTH, PANEL_HEIGHT, LEGEND_HEIGHT, MIN_WIDTH = 5.5, 4.5, 0.8, 8.0
MATRIX_INCHES_PER_CLASS, MIN_MATRIX_SIDE, MAX_MATRIX_SIDE = 0.35, 7.0, 16.0
# Past this many classes a cell is too small for its count.
MAX_COUNTED_CLASSES = 20
MIN_TICK_FONTSIZE, MAX_TICK_FONTSIZE = 4.0, 10.0

# A curve set: a label (empty for a single run) and metric histories by their logged names, {step: value}.
Curves = tuple[str, dict[str, dict[int, float]]]


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def learning_curves_figure(curve_sets: Sequence[Curves]) -> Figure:
    """Per-epoch loss and each metric the histories hold (train_<m>, val_<m>), one panel each, up to three a row."""
    quantities = ["loss", *metric_names((key for _, histories in curve_sets for key in histories), splits=CURVE_SPLITS)]
    columns = min(len(quantities), PANELS_PER_ROW)
    rows = math.ceil(len(quantities) / columns)
    figure = _figure(max(MIN_WIDTH, PANEL_WIDTH * columns), PANEL_HEIGHT * rows + LEGEND_HEIGHT)
    for position, quantity in enumerate(quantities, 1):
        axes = figure.add_subplot(rows, columns, position)
        for index, (label, histories) in enumerate(curve_sets):
            for split, line_style in zip(CURVE_SPLITS, ("-", "--")):
                history = histories.get(f"{split}_{quantity}", {})
                steps = sorted(history)
                axes.plot(
                    steps,
                    [history[step] for step in steps],
                    line_style,
                    marker="o",
                    color=f"C{index % 10}",
                    label=f"{label} {split}".strip(),
                )
        axes.set(title=quantity, xlabel="epoch", ylabel=quantity)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
    figure.legend(*figure.axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize="small")
    return figure


def plot_learning_curves(curve_sets: Sequence[Curves], path: Path) -> Path:
    """A PNG of the learning curves: train solid and validation dashed, one colour per curve set."""
    learning_curves_figure(curve_sets).savefig(path, dpi=DPI)
    return path


def epoch_histories(history: Sequence[EpochResult]) -> dict[str, dict[int, float]]:
    """A run's per-epoch train and validation losses and metrics, under the names the run logs them by."""
    histories: dict[str, dict[int, float]] = {}
    for result in history:
        for key, value in result.learning_metrics().items():
            histories.setdefault(key, {})[result.epoch] = value
    return histories


def confusion_matrix_figure(matrix: Sequence[Sequence[int]], class_names: Sequence[str], title: str) -> Figure:
    """A confusion matrix (rows: true class, columns: predicted class), its cells labelled with counts when few enough."""
    num_classes = len(class_names)
    side = min(max(MATRIX_INCHES_PER_CLASS * num_classes + 3, MIN_MATRIX_SIDE), MAX_MATRIX_SIDE)
    figure = _figure(side + 1, side)
    axes = figure.subplots()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes, shrink=0.8)
    if num_classes <= MAX_COUNTED_CLASSES:
        _label_counts(axes, matrix)
    _label_classes(axes, class_names, side)
    axes.set(title=title, xlabel="predicted class", ylabel="true class")
    return figure


def _label_classes(axes: Axes, class_names: Sequence[str], side: float) -> None:
    # A class's share of the axes (about three quarters of the figure), in points: its label fills most of it, and where
    # even the smallest legible font would not fit, only every k-th class is named.
    fontsize = min(0.8 * 0.75 * side * 72 / max(len(class_names), 1), MAX_TICK_FONTSIZE)
    ticks = range(0, len(class_names), math.ceil(MIN_TICK_FONTSIZE / fontsize))
    labels = [class_names[tick] for tick in ticks]
    fontsize = max(fontsize, MIN_TICK_FONTSIZE)
    rotation = 45 if len(class_names) <= MAX_COUNTED_CLASSES else 90
    axes.set_xticks(ticks, labels, rotation=rotation, ha="right", rotation_mode="anchor", fontsize=fontsize)
    axes.set_yticks(ticks, labels, fontsize=fontsize)


def _label_counts(axes: Axes, matrix: Sequence[Sequence[int]]) -> None:
    darkest = max(max(row) for row in matrix) or 1
    for true_class, row in enumerate(matrix):
        for predicted_class, count in enumerate(row):
            color = "white" if count > darkest / 2 else "black"
            axes.text(predicted_class, true_class, str(count), ha="center", va="center", fontsize="small", color=color)


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], class_names: Sequence[str], path: Path, title: str) -> Path:
    """A PNG of a confusion matrix, sized by its number of classes."""
    confusion_matrix_figure(matrix, class_names, title).savefig(path, dpi=DPI)
    return path


def plot_run(
    history: Sequence[EpochResult],
    folder: Path,
    *,
    confusion_matrix: Sequence[Sequence[int]] | None = None,
    class_names: Sequence[str] = (),
    predicted_against_true: tuple[Sequence[float], Sequence[float]] | None = None,
    split: str = "Test",
) -> list[Path]:
    """A finished run's learning_curves.png, with its `split`'s confusion_matrix.png (a classification's) or
    predicted_vs_true.png (a regression's), written into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [plot_learning_curves([("", epoch_histories(history))], folder / LEARNING_CURVES_FILE)]
    if confusion_matrix is not None:
        num_samples = sum(map(sum, confusion_matrix))
        correct = sum(confusion_matrix[label][label] for label in range(len(confusion_matrix)))
        title = f"{split} split: {correct} of {num_samples} correct ({correct / max(num_samples, 1):.2%})"
        paths.append(plot_confusion_matrix(confusion_matrix, class_names, folder / CONFUSION_MATRIX_FILE, title))
    if predicted_against_true is not None:
        paths.append(plot_predicted_against_true(*predicted_against_true, folder / PREDICTED_VS_TRUE_FILE, f"{split} split"))
    return paths


def predicted_against_true_figure(predicted: Sequence[float], true: Sequence[float], title: str) -> Figure:
    """Each predicted value against its true one, with the line where they are equal."""
    figure = _figure(MIN_MATRIX_SIDE, MIN_MATRIX_SIDE)
    axes = figure.subplots()
    axes.scatter(true, predicted, s=8, alpha=0.5)
    if true:
        low, high = min(min(true), min(predicted)), max(max(true), max(predicted))
        axes.plot([low, high], [low, high], "--", color="C1", label="predicted = true")
        axes.legend(loc="upper left", fontsize="small")
    axes.set(title=f"{title}: {len(true)} predicted values", xlabel="true", ylabel="predicted")
    axes.grid(alpha=0.3)
    return figure


def plot_predicted_against_true(predicted: Sequence[float], true: Sequence[float], path: Path, title: str) -> Path:
    """A PNG of a regression's predictions against the truth."""
    predicted_against_true_figure(predicted, true, title).savefig(path, dpi=DPI)
    return path


def rollup_figure(rollups: Sequence[GroupRollup]) -> Figure:
    """Each group's mean curve per epoch with a band of one standard deviation, one panel per loss and metric (train and validation)."""
    keys = [
        key
        for key in sorted({key for rollup in rollups for key in rollup.epochs})
        if key.startswith(tuple(f"{split}_" for split in CURVE_SPLITS))
    ]
    columns = max(min(len(keys), PANELS_PER_ROW), 1)
    rows = max(math.ceil(len(keys) / columns), 1)
    figure = _figure(max(MIN_WIDTH, PANEL_WIDTH * columns), PANEL_HEIGHT * rows + LEGEND_HEIGHT)
    for position, key in enumerate(keys, 1):
        axes = figure.add_subplot(rows, columns, position)
        for index, rollup in enumerate(rollups):
            series = rollup.epochs.get(key, {})
            steps = sorted(series)
            means = [series[step].mean for step in steps]
            spreads = [0.0 if math.isnan(series[step].std) else series[step].std for step in steps]
            color = f"C{index % 10}"
            axes.plot(
                steps,
                means,
                marker="o",
                color=color,
                label=f"{rollup.group or 'base'} (n={max((series[step].n for step in steps), default=0)})",
            )
            axes.fill_between(
                steps, [m - s for m, s in zip(means, spreads)], [m + s for m, s in zip(means, spreads)], color=color, alpha=0.2
            )
        axes.set(title=f"{key}: mean ± 1 std over seeds", xlabel="epoch", ylabel=key)
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
    if figure.axes:
        figure.legend(*figure.axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize="small")
    return figure


def plot_rollup(rollups: Sequence[GroupRollup], path: Path) -> Path:
    """A PNG of the roll-up's curves: each group's mean and ±1 std band per epoch."""
    rollup_figure(rollups).savefig(path, dpi=DPI)
    return path
