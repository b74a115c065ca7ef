"""What a run holds besides metrics: its artifacts' names, and fetching them back (files, checkpoints, the weights of a logged model)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
import torch
from mlflow import MlflowClient
from mlflow.models import Model

from deep_learning.analysis.records import RunRecord
from deep_learning.core.errors import InputError
from deep_learning.tracking.client import open_client, tracking_uri
from deep_learning.tracking.models import BEST_MODEL_TAG
from deep_learning.tracking.readback import get_run, reading

STATE_DICT_ARTIFACT = "state_dict.pt"
DEVICE_ARTIFACT = "device.json"
CONFIG_ARTIFACT = "config.yaml"  # the resolved config, which `train --config` reads back
DATA_SPEC_ARTIFACT = "data_spec.json"  # input shape and dtype, classes: what evaluate and predict rebuild from
CHECKPOINT_ARTIFACTS = "checkpoints"
EVALUATION_ARTIFACT = "evaluation.json"


def download_artifact(run: RunRecord, artifact_path: str, folder: str | Path) -> Path:
    """Download one of a run's artifacts into `folder`; a run that never logged it is an error the user can act on."""
    uri = tracking_uri()
    client = open_client(uri)
    with reading(f"the artifacts of run {run.run_id}", uri):
        if artifact_path not in {artifact.path for artifact in client.list_artifacts(run.run_id)}:
            raise InputError(f"Run {run.run_id} ({run.status}) has no {artifact_path}: use a run that finished training.")
        return Path(client.download_artifacts(run.run_id, artifact_path, str(folder)))


def download_latest_checkpoint(run_id: str, folder: Path) -> Path | None:
    """Download the run's latest logged checkpoint into `folder`; None when it logged none."""
    client = open_client(tracking_uri())
    names = sorted(_logged_checkpoints(client, run_id))
    return _download_checkpoint(client, run_id, names[-1], folder) if names else None


def download_checkpoint(run_id: str, folder: Path, name: str) -> Path | None:
    """Checkpoint `name` of a run in `folder`: the local copy, else the one the run logged; None when neither exists."""
    path = folder / name
    if path.is_file() or not run_id:
        return path if path.is_file() else None
    client = open_client(tracking_uri())
    return _download_checkpoint(client, run_id, name, folder) if name in _logged_checkpoints(client, run_id) else None


def _logged_checkpoints(client: MlflowClient, run_id: str) -> list[str]:
    return [Path(item.path).name for item in client.list_artifacts(run_id, CHECKPOINT_ARTIFACTS) if item.path.endswith(".pt")]


def _download_checkpoint(client: MlflowClient, run_id: str, name: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(client.download_artifacts(run_id, f"{CHECKPOINT_ARTIFACTS}/{name}", str(folder)))


def best_checkpoint_uri(run_id: str) -> str:
    """The models:/ URI of the best checkpoint run `run_id` kept (its LoggedModel tagged deep_learning.best)."""
    run = get_run(run_id)
    model_id = run.tags.get(BEST_MODEL_TAG)
    if not model_id:
        raise InputError(f"Run {run_id} kept no best checkpoint as a model: train with --keep-best 1 (best by --monitor).")
    return f"models:/{model_id}"


def logged_model_weights(model_uri: str) -> tuple[dict[str, torch.Tensor], str | None]:
    """The weights, on the CPU, of the MLflow PyTorch model at a runs:/ or models:/ URI, and the id of the run that logged it."""
    uri = tracking_uri()
    with tempfile.TemporaryDirectory() as folder, reading(f"model {model_uri}", uri):
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=folder, tracking_uri=uri)
        source_run_id = Model.load(local).run_id
        model = mlflow.pytorch.load_model(local, map_location="cpu")
        weights = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    return weights, source_run_id
