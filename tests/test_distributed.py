"""torchrun and DistributedDataParallel on CPU (Gloo): one tracked run, global metrics, failures that end the job."""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import torch
from conftest import BIN, subprocess_env
from mlflow import MlflowClient
from readback import EPOCH_METRICS, logged_state_dict_bytes, only_run

from deep_learning.core.config import TrainConfig
from deep_learning.core.data.loaders import make_loaders
from deep_learning.core.data.splits import load_splits
from deep_learning.core.metrics import accuracy_metric
from deep_learning.core.model import build_model
from deep_learning.core.training import evaluate


def torchrun(*args: str) -> list[str]:
    return [str(BIN / "torchrun"), "--standalone", "--nproc-per-node", "2", "-m", "deep_learning", "train", "--device", "cpu", *args]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, data_root):
    folder = tmp_path_factory.mktemp("ddp")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    # Batch 32 per rank: a global batch of 64, the chapter's schedule; a fifth of the training split.
    result = subprocess.run(
        torchrun("--epochs", "1", "--batch-size", "32", "--train-subset", "10000"),
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=900,
        env=subprocess_env(MLFLOW_TRACKING_URI=uri, DEEP_LEARNING_DATA_ROOT=str(data_root), DEEP_LEARNING_OFFLINE="1"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return uri, result


def test_torchrun_makes_one_run_with_global_metrics(two_process_run):
    uri, result = two_process_run
    assert result.stdout.count("Epoch [1/1]") == 1  # rank 0 alone prints and logs
    client = MlflowClient(uri)
    run = only_run(client)
    assert run.info.status == "FINISHED" and run.info.run_name == "mlp-mnist-cpu-x2 batch_size=32"
    params = run.data.params
    assert (params["world_size"], params["backend"], params["nnodes"], params["global_batch_size"]) == ("2", "gloo", "1", "64")
    for key in EPOCH_METRICS:
        assert [metric.step for metric in client.get_metric_history(run.info.run_id, key)] == [1]
    assert run.data.metrics["val_accuracy"] > 0.8
    with tempfile.TemporaryDirectory() as folder:
        device_json = json.loads(Path(client.download_artifacts(run.info.run_id, "device.json", folder)).read_text())
    assert [entry["rank"] for entry in device_json["ranks"]] == [0, 1]


def test_logged_validation_accuracy_is_that_of_the_whole_split(two_process_run, data_root):
    uri, _ = two_process_run
    client = MlflowClient(uri)
    run = only_run(client)
    with tempfile.TemporaryDirectory() as folder:
        state_dict = torch.load(client.download_artifacts(run.info.run_id, "state_dict.pt", folder), weights_only=True)
    assert not any(key.startswith("module.") for key in state_dict)
    model = build_model()
    model.load_state_dict(state_dict)
    config = TrainConfig()
    _, val_dl, test_dl = make_loaders(config, load_splits(config, data_root), torch.device("cpu"))
    cpu = torch.device("cpu")
    _, val_accuracy = evaluate(model, val_dl, torch.nn.CrossEntropyLoss(), accuracy_metric(), cpu)
    _, test_accuracy = evaluate(model, test_dl, torch.nn.CrossEntropyLoss(), accuracy_metric(), cpu)
    assert val_accuracy == run.data.metrics["val_accuracy"]
    assert test_accuracy == run.data.metrics["test_accuracy"]


def test_killing_one_rank_ends_the_job_and_fails_the_run(tmp_path, data_root):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    launcher = subprocess.Popen(
        torchrun("--epochs", "20", "--loader", "dataloader"),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(MLFLOW_TRACKING_URI=uri, DEEP_LEARNING_DATA_ROOT=str(data_root), DEEP_LEARNING_OFFLINE="1"),
    )
    try:
        for line in launcher.stdout:
            if line.startswith("MLflow run "):
                break
        time.sleep(3)  # mid-epoch
        workers = [child for child in psutil.Process(launcher.pid).children(recursive=True) if child.environ().get("RANK") == "1"]
        assert workers, "rank 1 not found"
        workers[0].send_signal(signal.SIGKILL)
        started = time.monotonic()
        _, stderr = launcher.communicate(timeout=300)
        assert time.monotonic() - started < 180
        assert launcher.returncode != 0
    finally:
        launcher.kill()
    run = only_run(MlflowClient(uri))
    assert run.info.status == "FAILED"
    assert "rank" in run.data.tags["error.message"]


def test_interrupted_torchrun_job_resumes_exactly_with_the_same_world_size(tmp_path, data_root):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = subprocess_env(MLFLOW_TRACKING_URI=uri, DEEP_LEARNING_DATA_ROOT=str(data_root), DEEP_LEARNING_OFFLINE="1")
    args = ("--epochs", "2", "--train-subset", "6000", "--loader", "dataloader")
    launcher = subprocess.Popen(torchrun(*args), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for line in launcher.stdout:
        if line.startswith("Epoch [1/2]"):
            launcher.send_signal(signal.SIGINT)  # Ctrl-C: torchrun passes SIGINT on to every rank
            break
    launcher.communicate(timeout=300)
    client = MlflowClient(uri)
    interrupted = only_run(client)
    run_id = interrupted.info.run_id
    assert interrupted.info.status == "KILLED"

    resumed = subprocess.run(torchrun("--resume", run_id), cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Epoch [1/2]" not in resumed.stdout and resumed.stdout.count("Epoch [2/2]") == 1
    uninterrupted = subprocess.run(torchrun(*args), cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]

    first, second = sorted(client.search_runs(["0"]), key=lambda run: run.info.start_time)
    assert first.info.run_id == run_id and first.info.status == second.info.status == "FINISHED"
    for key in ("train_loss", "val_accuracy", "test_accuracy"):
        histories = [[(m.step, m.value) for m in client.get_metric_history(run.info.run_id, key)] for run in (first, second)]
        assert sorted(histories[0]) == sorted(histories[1]), key
    assert logged_state_dict_bytes(client, first.info.run_id) == logged_state_dict_bytes(client, second.info.run_id)
