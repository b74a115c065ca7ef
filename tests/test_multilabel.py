"""Multi-label classification on real images: MNIST digits labelled with what each digit is (even, greater than 4,
prime, round), trained by `fit` with BCEWithLogitsLoss; the task, its metrics and the model read back from MLflow."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.utils.data as utils
from mlflow import MlflowClient
from readback import tracking_uri

import deep_learning
from deep_learning.core.data.files import load_dataset
from deep_learning.core.data.samples import as_tensors

PROPERTIES = {"even": {0, 2, 4, 6, 8}, "greater_than_4": {5, 6, 7, 8, 9}, "prime": {2, 3, 5, 7}, "round": {0, 6, 8, 9}}


def properties_of(digits: torch.Tensor) -> torch.Tensor:
    """Each digit's properties as a 0/1 float vector, one column per property."""
    return torch.stack([torch.isin(digits, torch.tensor(sorted(members))) for members in PROPERTIES.values()], dim=1).float()


def _split(images: torch.Tensor, digits: torch.Tensor, start: int, stop: int) -> utils.TensorDataset:
    return utils.TensorDataset(images[start:stop], properties_of(digits[start:stop]))


@pytest.fixture(scope="module")
def multilabel_run(module_store, data_root):
    images, digits = as_tensors(load_dataset("mnist", train=True, root=data_root))
    test_images, test_digits = as_tensors(load_dataset("mnist", train=False, root=data_root))
    test = _split(test_images, test_digits, 0, 1000)
    result = deep_learning.fit(
        lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, len(PROPERTIES))),  # built after fit seeds
        _split(images, digits, 0, 4000),
        _split(images, digits, 4000, 5000),
        test_data=test,
        loss_fn=nn.BCEWithLogitsLoss(),
        class_names=list(PROPERTIES),
        epochs=2,
        device="cpu",
    )
    return result, MlflowClient(module_store).get_run(result.run_id), test


def test_the_task_is_told_from_the_targets_and_its_metrics_are_logged(multilabel_run, module_store, tmp_path):
    result, run, _ = multilabel_run
    assert (run.data.params["task"], run.data.params["metrics"], run.data.params["num_classes"]) == ("multilabel", "f1,accuracy", "4")
    for key in ("train_f1", "train_accuracy", "val_f1", "val_accuracy"):
        assert [metric.step for metric in MlflowClient(module_store).get_metric_history(run.info.run_id, key)] == [1, 2], key
    assert run.data.metrics["val_f1"] > 0.6 and run.data.metrics["val_accuracy"] > 0.4  # exact match: all four right
    assert list(result.history[-1].val_metrics) == ["accuracy", "f1"]
    artifacts = {item.path for item in MlflowClient(module_store).list_artifacts(run.info.run_id)}
    assert "learning_curves.png" in artifacts and "confusion_matrix.png" not in artifacts


def test_the_logged_model_scores_the_logged_exact_match(multilabel_run, module_store):
    _, run, test = multilabel_run
    images, labels = test.tensors
    with tracking_uri(module_store):
        logits = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model").predict(images.numpy())
    exact = ((logits > 0) == labels.numpy().astype(bool)).all(axis=1).mean()
    assert float(exact) == pytest.approx(run.data.metrics["test_accuracy"], abs=1e-6)
    assert np.asarray(logits).shape == (len(images), len(PROPERTIES))
