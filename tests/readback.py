"""Read a finished run back through MLflow's own client and check everything the run must hold."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow import MlflowClient
from PIL import Image

from deep_learning.core.config import TrainConfig
from deep_learning.core.data.files import load_dataset
from deep_learning.core.model import build_model

EPOCH_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "epoch_seconds", "train_samples_per_second")
FINAL_METRICS = ("test_loss", "test_accuracy")
DEVICE_TAGS = ("device.type", "device.name", "device.count", "torch.version", "python.version", "platform", "cpu.count")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Each figure a run logs, and the least and most pixels (width, height) it may have.
FIGURE_SIZES = {"learning_curves.png": ((800, 300), (3000, 2000)), "confusion_matrix.png": ((500, 500), (2000, 2000))}


def logged_state_dict_bytes(client: MlflowClient, run_id: str) -> bytes:
    """The bytes of a run's `state_dict.pt`."""
    with tempfile.TemporaryDirectory() as folder:
        return Path(client.download_artifacts(run_id, "state_dict.pt", folder)).read_bytes()


def only_run(client: MlflowClient, experiment_name: str = "Default"):
    experiment = client.get_experiment_by_name(experiment_name)
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, [run.info.run_name for run in runs]
    return runs[0]


@contextlib.contextmanager
def tracking_uri(uri: str):
    """Point MLflow's fluent API (model loading) at `uri` for a while."""
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    try:
        yield
    finally:
        if previous is None:
            del os.environ["MLFLOW_TRACKING_URI"]
        else:
            os.environ["MLFLOW_TRACKING_URI"] = previous


def assert_valid_png(path: Path, smallest: tuple[int, int], largest: tuple[int, int]) -> tuple[int, int]:
    """The file is a PNG that decodes in full, with a size between `smallest` and `largest`; return its size."""
    assert Path(path).read_bytes()[:8] == PNG_SIGNATURE, path
    with Image.open(path) as image:
        assert image.format == "PNG"
        image.load()
        size = image.size
    assert all(low <= value <= high for low, value, high in zip(smallest, size, largest)), (path, size)
    return size


def assert_complete_run(uri: str, run, epochs: int, data_root: Path, run_name: str = "mlp-mnist-cpu") -> dict[str, torch.Tensor]:
    """Check params, metric histories, tags, device.json, state_dict.pt, the figures and the model; return the state_dict."""
    client = MlflowClient(uri)
    run_id = run.info.run_id
    assert run.info.status == "FINISHED"
    assert run.info.run_name == run_name

    fields = {field.name for field in dataclasses.fields(TrainConfig)}
    logged = set(run.data.params) - {"resume", "config"}  # `mlflow run` logs its MLproject parameters, these among them
    assert logged == fields | {
        "num_train_samples",
        "num_val_samples",
        "num_parameters",
        "world_size",
        "backend",
        "nnodes",
        "global_batch_size",
    }
    assert (run.data.params["world_size"], run.data.params["backend"]) == ("1", "none")
    assert run.data.params["global_batch_size"] == run.data.params["batch_size"]
    assert run.data.params["num_val_samples"] == "10000"
    assert run.data.params["num_parameters"] == "101770"
    assert int(run.data.params["epochs"]) == epochs

    for key in EPOCH_METRICS:
        history = client.get_metric_history(run_id, key)
        assert sorted(metric.step for metric in history) == list(range(1, epochs + 1)), key
    for key in FINAL_METRICS:
        assert len(client.get_metric_history(run_id, key)) == 1
    assert 0.5 < run.data.metrics["test_accuracy"] <= 1.0

    inputs = {entry.dataset.name: entry for entry in client.get_run(run_id).inputs.dataset_inputs}
    assert set(inputs) == {"mnist-training", "mnist-validation", "mnist-test"}
    assert {tag.value for entry in inputs.values() for tag in entry.tags} == {"training", "validation", "test"}
    assert all(len(entry.dataset.digest) == 12 for entry in inputs.values())

    for key in DEVICE_TAGS:
        assert run.data.tags.get(key), key
    assert run.data.tags["device.type"] == "cpu"
    found = client.search_runs([run.info.experiment_id], filter_string="tags.\"device.type\" = 'cpu'")
    assert run_id in {candidate.info.run_id for candidate in found}

    with tempfile.TemporaryDirectory() as folder:
        device_json = json.loads(Path(client.download_artifacts(run_id, "device.json", folder)).read_text())
        assert device_json["type"] == "cpu" and device_json["name"] == run.data.tags["device.name"]
        state_dict = torch.load(client.download_artifacts(run_id, "state_dict.pt", folder), weights_only=True)
        for name, (smallest, largest) in FIGURE_SIZES.items():
            assert_valid_png(Path(client.download_artifacts(run_id, name, folder)), smallest, largest)
    assert all(tensor.device.type == "cpu" for tensor in state_dict.values())
    build_model().load_state_dict(state_dict)

    test = load_dataset("mnist", train=False, root=data_root)
    images = torch.stack([test[index][0] for index in range(len(test))])
    labels = torch.as_tensor(test.targets)
    model_uri = f"runs:/{run_id}/model"
    with tracking_uri(uri):
        model = mlflow.pytorch.load_model(model_uri)
        predictor = mlflow.pyfunc.load_model(model_uri)
        requirements = Path(mlflow.pyfunc.get_model_dependencies(model_uri)).read_text().split()
    assert {f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}", f"mlflow=={mlflow.__version__}"} <= set(requirements)
    with torch.inference_mode():
        accuracy = (model(images).argmax(dim=1) == labels).float().mean().item()
    assert accuracy == run.data.metrics["test_accuracy"]
    logits = predictor.predict(images[:64].numpy().astype(np.float32))
    assert np.asarray(logits).shape == (64, 10)
    return state_dict
