"""Figures: the scores behind the confusion matrix, and the PNGs a run logs."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from readback import FIGURE_SIZES, assert_valid_png

from deep_learning.analysis.figures import (
    CONFUSION_MATRIX_FILE,
    LEARNING_CURVES_FILE,
    PREDICTED_VS_TRUE_FILE,
    confusion_matrix_figure,
    epoch_histories,
    learning_curves_figure,
    plot_confusion_matrix,
    plot_learning_curves,
    plot_run,
)
from deep_learning.core.config import CLASSIFICATION
from deep_learning.core.data.files import DATASET_CLASSES, load_dataset
from deep_learning.core.data.loaders import TensorLoader
from deep_learning.core.data.samples import as_tensors
from deep_learning.core.metrics import accuracy_metric
from deep_learning.core.model import build_model
from deep_learning.core.reproducibility import set_seed
from deep_learning.core.results import EpochResult
from deep_learning.core.scoring import class_scores_of, task_scores
from deep_learning.core.training import evaluate

CPU = torch.device("cpu")


def test_the_confusion_matrix_counts_every_test_image_and_agrees_with_the_logged_accuracy(data_root):
    images, labels = as_tensors(load_dataset("mnist", train=False, root=data_root))
    batches = TensorLoader(images, labels, 128, shuffle=False)
    set_seed(0)
    model = build_model()
    counted = task_scores(CLASSIFICATION, 10)
    _, accuracy = evaluate(model, batches, torch.nn.CrossEntropyLoss(), accuracy_metric(), CPU, also=counted)  # one pass for both
    scores = class_scores_of(counted)
    matrix = torch.tensor(scores.confusion_matrix)
    assert matrix.shape == (10, 10)
    assert matrix.sum(dim=1).tolist() == torch.bincount(labels, minlength=10).tolist()  # rows: true classes
    assert matrix.sum(dim=0).tolist() == torch.bincount(model(images).argmax(dim=1), minlength=10).tolist()  # columns: predicted
    assert matrix.trace().item() == round(accuracy * len(labels))  # the logged accuracy is a float32
    assert scores.per_class_accuracy == (matrix.diag() / matrix.sum(dim=1)).tolist()


def _history(metrics: Sequence[str], epochs: int = 3) -> list[EpochResult]:
    """Epochs whose losses fall and whose every metric rises, the validation scores a little behind."""
    return [
        EpochResult(
            epoch,
            epochs,
            train_loss=1 / epoch,
            train_metrics={name: 0.9 - 0.1 / epoch for name in metrics},
            val_loss=1.2 / epoch,
            val_metrics={name: 0.88 - 0.1 / epoch for name in metrics},
            train_seconds=1.0,
            epoch_seconds=1.2,
            num_train_samples=1000,
        )
        for epoch in range(1, epochs + 1)
    ]


def test_a_run_draws_its_learning_curves_and_confusion_matrix(tmp_path):
    history = _history(["accuracy"])
    matrix = [[90 if true == predicted else 1 for predicted in range(10)] for true in range(10)]
    paths = plot_run(history, tmp_path / "figures", confusion_matrix=matrix, class_names=DATASET_CLASSES["fashion-mnist"].classes)
    assert [path.name for path in paths] == [LEARNING_CURVES_FILE, CONFUSION_MATRIX_FILE]
    width, height = assert_valid_png(paths[0], *FIGURE_SIZES[LEARNING_CURVES_FILE])
    assert width > height  # two panels side by side
    assert_valid_png(paths[1], *FIGURE_SIZES[CONFUSION_MATRIX_FILE])


def test_a_regression_draws_its_predictions_against_the_truth(tmp_path):
    history = _history(["mae"])
    true = [float(value) for value in range(100)]
    paths = plot_run(
        history, tmp_path / "figures", predicted_against_true=([value + (value % 7) - 3 for value in true], true), split="Validation"
    )
    assert [path.name for path in paths] == [LEARNING_CURVES_FILE, PREDICTED_VS_TRUE_FILE]
    assert_valid_png(paths[1], (500, 500), (2000, 2000))


def test_epoch_histories_hold_every_logged_metric_by_epoch():
    histories = epoch_histories(_history(["accuracy", "f1"], epochs=2))
    assert list(histories) == ["train_loss", "train_accuracy", "train_f1", "val_loss", "val_accuracy", "val_f1"]
    assert histories["val_f1"] == {1: pytest.approx(0.78), 2: pytest.approx(0.83)}
    assert histories["train_loss"] == {1: 1.0, 2: 0.5}


@pytest.mark.parametrize(
    ("metrics", "grid"), [(["accuracy"], (1, 2)), (["iou"], (1, 2)), (["recall", "accuracy", "f1", "precision"], (2, 3))]
)
def test_learning_curves_have_a_panel_for_the_loss_and_each_metric(tmp_path, metrics, grid):
    histories = epoch_histories(_history(metrics))
    figure = learning_curves_figure([("", histories)])
    expected = ["loss", *sorted(metrics, key=lambda name: (name != "accuracy", name))]
    assert [axes.get_title() for axes in figure.axes] == expected
    assert {axes.get_subplotspec().get_geometry()[:2] for axes in figure.axes} == {grid}
    for axes, quantity in zip(figure.axes, expected):
        train, val = axes.lines
        assert (train.get_linestyle(), val.get_linestyle()) == ("-", "--")
        assert list(val.get_ydata()) == list(histories[f"val_{quantity}"].values())
    width, height = assert_valid_png(plot_learning_curves([("", histories)], tmp_path / "curves.png"), *FIGURE_SIZES[LEARNING_CURVES_FILE])
    assert width > height


def test_learning_curves_of_runs_with_different_metrics_draw_the_union():
    accuracy_only = epoch_histories(_history(["accuracy"]))
    with_iou = {**epoch_histories(_history(["iou"])), "test_iou": {3: 0.5}, "epoch_seconds": {1: 1.2}}
    figure = learning_curves_figure([("cpu", accuracy_only), ("cuda", with_iou)])
    assert [axes.get_title() for axes in figure.axes] == ["loss", "accuracy", "iou"]
    assert [len(axes.lines) for axes in figure.axes] == [4, 4, 4]  # a run without the metric draws empty lines
    assert [len(line.get_xdata()) for line in figure.axes[2].lines] == [0, 0, 3, 3]


def test_a_confusion_matrix_of_many_classes_drops_the_counts_and_stays_in_bounds(tmp_path):
    names = [f"class {label}" for label in range(100)]
    matrix = [[50 if true == predicted else true % 3 for predicted in range(100)] for true in range(100)]
    path = plot_confusion_matrix(matrix, names, tmp_path / "matrix.png", "100 classes")
    assert_valid_png(path, *FIGURE_SIZES[CONFUSION_MATRIX_FILE])
    axes = confusion_matrix_figure(matrix, names, "100 classes").axes[0]
    assert len(axes.texts) == 0
    labels = axes.get_xticklabels()
    assert len(labels) == 100 and 4 <= labels[0].get_fontsize() < 10


def test_a_confusion_matrix_of_few_classes_labels_every_cell():
    matrix = [[9, 1], [2, 8]]
    axes = confusion_matrix_figure(matrix, ["cat", "dog"], "two classes").axes[0]
    assert [text.get_text() for text in axes.texts] == ["9", "1", "2", "8"]
    assert [label.get_text() for label in axes.get_yticklabels()] == ["cat", "dog"]
