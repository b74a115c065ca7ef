"""Logged models load and serve where MLflow would put them on a GPU host: pyfunc and a real `mlflow models serve`.

On a GPU host MLflow's pyfunc picks "cuda" for a model whose pyfunc config leaves the device open
(`mlflow.pytorch._load_pyfunc`); here MLFLOW_DEFAULT_PREDICTION_DEVICE=cuda makes that same choice on
the CPU. What runs on a GPU itself is left to gpu_checks/serving.sh.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
import torch.utils.data as utils
import yaml
from commands import train_run
from conftest import model_server
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from readback import tracking_uri
from user_models import DataDependent

import deep_learning
from deep_learning.core.data.files import load_dataset
from deep_learning.core.data.samples import as_tensors
from deep_learning.core.model import build_model

# MLflow's device when a model's config leaves it open: this, else "cuda" if available, else "cpu".
DEFAULT_DEVICE = "MLFLOW_DEFAULT_PREDICTION_DEVICE"


@pytest.fixture(scope="module")
def run_id(module_store) -> str:
    return train_run("--epochs", "1", "--train-subset", "2000", "--device", "cpu")


@pytest.fixture(scope="module")
def model_path(run_id, module_store, tmp_path_factory) -> Path:
    """The logged model, downloaded as MLflow's loaders see it."""
    folder = tmp_path_factory.mktemp("model")
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=f"runs:/{run_id}/model", dst_path=str(folder), tracking_uri=module_store))


@pytest.fixture(scope="module")
def images(data_root) -> tuple[np.ndarray, np.ndarray]:
    """The first 64 MNIST test images as the float32 (N, 1, 28, 28) batch the model's signature takes, and their labels."""
    inputs, labels = as_tensors(load_dataset("mnist", train=False, root=data_root))
    return inputs[:64].numpy().astype(np.float32), labels[:64].numpy()


def _pyfunc_flavor(model_path: Path) -> dict:
    return yaml.safe_load((model_path / "MLmodel").read_text())["flavors"]["python_function"]


def test_the_pickle_free_model_tells_pyfunc_to_load_it_on_the_cpu(model_path):
    flavor = _pyfunc_flavor(model_path)
    assert flavor["loader_module"] == "mlflow.pytorch" and flavor["config"] == {"device": "cpu"}
    assert sorted(path.name for path in (model_path / flavor["data"]).iterdir()) == ["model.pt2"]


def test_where_mlflow_would_pick_cuda_the_model_loads_on_the_cpu_and_predicts(run_id, module_store, model_path, images, monkeypatch):
    monkeypatch.setenv(DEFAULT_DEVICE, "cuda")
    with pytest.raises(MlflowException, match="can't be loaded on 'cuda' device"):
        mlflow.pyfunc.load_model(str(model_path), model_config={"device": None})  # MLflow's default config, which we replace

    predictor = mlflow.pyfunc.load_model(str(model_path))
    assert {tensor.device.type for tensor in predictor.get_raw_model().parameters()} == {"cpu"}
    inputs, labels = images
    logits = predictor.predict(inputs)
    trained = build_model()
    trained.load_state_dict(torch.load(MlflowClient(module_store).download_artifacts(run_id, "state_dict.pt"), weights_only=True))
    with torch.inference_mode():
        assert np.allclose(logits, trained.eval()(torch.from_numpy(inputs)).numpy(), atol=1e-5)
    assert (logits.argmax(axis=1) == labels).mean() > 0.5


def test_a_pickled_model_is_left_to_mlflow_which_moves_it_to_the_device_it_picks(store, tmp_path):
    data = utils.TensorDataset(torch.rand(24, 2, 4, 4, generator=torch.Generator().manual_seed(0)), torch.arange(24) % 3)
    result = deep_learning.fit(DataDependent(), data, data, epochs=1, device="cpu")
    folder = tmp_path / "downloaded"
    folder.mkdir()
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"runs:/{result.run_id}/model", dst_path=str(folder), tracking_uri=store))
    flavor = _pyfunc_flavor(local)
    assert flavor["config"] == {"device": None}  # MLflow picks: "cuda" on a GPU host
    # "meta" stands in for "cuda": the same `.to(device)` in mlflow.pytorch._load_model, without a GPU.
    moved = mlflow.pytorch._load_pyfunc(str(local / flavor["data"]), model_config={"device": "meta"})
    assert {tensor.device.type for tensor in moved.get_raw_model().parameters()} == {"meta"}


def test_mlflow_models_serve_answers_invocations_with_the_models_predictions(run_id, module_store, images, tmp_path):
    inputs, labels = images
    model_uri = f"runs:/{run_id}/model"
    with model_server(model_uri, module_store, tmp_path) as url:
        request = urllib.request.Request(
            f"{url}/invocations", data=json.dumps({"inputs": inputs.tolist()}).encode(), headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            served = np.asarray(json.loads(response.read())["predictions"])
    with tracking_uri(module_store):
        expected = mlflow.pyfunc.load_model(model_uri).predict(inputs)
    assert served.shape == (64, 10)
    assert (served.argmax(axis=1) == expected.argmax(axis=1)).all()
    assert (served.argmax(axis=1) == labels).mean() > 0.5
