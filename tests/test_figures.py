"""Figures: the scores behind the confusion matrix, and the PNGs a run logs."""

from __future__ import annotations

import torch

from deep_learning.data import DATASET_CLASSES, TensorLoader, as_tensors, load_dataset
from deep_learning.experiment import accuracy_metric
from deep_learning.figures import CONFUSION_MATRIX_FILE, LEARNING_CURVES_FILE, plot_run
from deep_learning.model import build_model
from deep_learning.reproducibility import set_seed
from deep_learning.scoring import class_scores
from deep_learning.training import EpochResult, evaluate
from readback import FIGURE_SIZES, assert_valid_png

CPU = torch.device("cpu")


def test_the_confusion_matrix_counts_every_test_image_and_agrees_with_the_logged_accuracy(data_root):
    images, labels = as_tensors(load_dataset("mnist", train=False, root=data_root))
    batches = TensorLoader(images, labels, 128, shuffle=False)
    set_seed(0)
    model = build_model()
    _, accuracy = evaluate(model, batches, torch.nn.CrossEntropyLoss(), accuracy_metric(), CPU)
    scores = class_scores(model, batches, CPU)
    matrix = torch.tensor(scores.confusion_matrix)
    assert matrix.shape == (10, 10)
    assert matrix.sum(dim=1).tolist() == torch.bincount(labels, minlength=10).tolist()  # rows: true classes
    assert matrix.sum(dim=0).tolist() == torch.bincount(model(images).argmax(dim=1), minlength=10).tolist()  # columns: predicted
    assert matrix.trace().item() == round(accuracy * len(labels))  # the logged accuracy is a float32
    assert scores.per_class_accuracy == (matrix.diag() / matrix.sum(dim=1)).tolist()


def test_a_run_draws_its_learning_curves_and_confusion_matrix(tmp_path):
    history = [
        EpochResult(epoch, 3, train_loss=1 / epoch, train_metric=0.9 - 0.1 / epoch, val_loss=1.2 / epoch, val_metric=0.88 - 0.1 / epoch,
                    train_seconds=1.0, epoch_seconds=1.2, num_train_samples=1000)
        for epoch in (1, 2, 3)
    ]
    matrix = [[90 if true == predicted else 1 for predicted in range(10)] for true in range(10)]
    paths = plot_run(history, matrix, DATASET_CLASSES["fashion-mnist"].classes, tmp_path / "figures")
    assert [path.name for path in paths] == [LEARNING_CURVES_FILE, CONFUSION_MATRIX_FILE]
    width, height = assert_valid_png(paths[0], *FIGURE_SIZES[LEARNING_CURVES_FILE])
    assert width > height  # two panels side by side
    assert_valid_png(paths[1], *FIGURE_SIZES[CONFUSION_MATRIX_FILE])
