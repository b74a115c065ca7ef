"""End to end: `mlflow run . --env-manager local` into a sqlite store and into a real mlflow server."""

from __future__ import annotations

import subprocess

import pytest
import torch
from conftest import BIN, REPO, subprocess_env
from mlflow import MlflowClient
from readback import assert_complete_run, only_run


def mlflow_run(tmp_path, tracking_uri: str, data_root, *parameters: str, experiment: str | None = None, entry: str = "main"):
    command = [str(BIN / "mlflow"), "run", str(REPO), "--env-manager", "local", "--entry-point", entry]
    if experiment:
        command += ["--experiment-name", experiment]
    for parameter in parameters:
        command += ["-P", parameter]
    return subprocess.run(
        command,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=subprocess_env(MLFLOW_TRACKING_URI=tracking_uri, DEEP_LEARNING_DATA_ROOT=str(data_root), DEEP_LEARNING_OFFLINE="1"),
    )


def test_mlflow_run_trains_and_logs_one_complete_run(tmp_path, data_root):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = mlflow_run(tmp_path, uri, data_root, "epochs=1", "train_subset=2000", "lr=1e-1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Epoch [1/1]" in result.stdout
    assert "Warning" not in result.stderr and "deprecat" not in result.stderr.lower()
    run = only_run(MlflowClient(uri))  # adopted by the CLI, not duplicated
    assert run.data.params["lr"] == "1e-1"  # the MLproject's own spelling is kept
    assert_complete_run(uri, run, epochs=1, data_root=data_root)


def test_the_sweep_entry_point_nests_its_runs_under_the_run_mlflow_starts(tmp_path, data_root):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = mlflow_run(
        tmp_path, uri, data_root, "grid=lr=0.05,0.1", "seeds=2", "epochs=1", "train_subset=300", "devices=cpu", entry="sweep"
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = MlflowClient(uri).search_runs(["0"])
    (parent,) = [run for run in runs if run.data.tags.get("deep_learning.kind") == "sweep"]
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 5 and len(children) == 4  # the run `mlflow run` made is the parent, adopted
    assert parent.info.status == "FINISHED" and "lr_0.1 cpu/val_accuracy_mean" in parent.data.metrics


@pytest.mark.parametrize(
    "parameter, message",
    [
        ("epochs=0", "Error: epochs must be a positive integer, not 0"),
        ("lr=nan", "Error: lr must be a finite number above 0, not nan"),
        ("dataset=nope", "Error: dataset must be one of mnist, fashion-mnist, imagefolder:DIR, csv:FILE, text:FILE or an import path"),
        pytest.param(
            "device=cuda",
            "Error: Device 'cuda' is not available on this machine; available: cpu",
            marks=pytest.mark.skipif(torch.accelerator.is_available(), reason="this machine has an accelerator"),
        ),
        ("resume=0123456789abcdef", "Error: No run '0123456789abcdef'"),
    ],
)
def test_mlflow_run_with_bad_parameter_fails_cleanly(tmp_path, data_root, parameter, message):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = mlflow_run(tmp_path, uri, data_root, parameter)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert [run.info.status for run in MlflowClient(uri).search_runs(["0"])] == ["FAILED"]


@pytest.mark.server
def test_mlflow_run_against_a_real_server(tmp_path, data_root, mlflow_server):
    result = mlflow_run(tmp_path, mlflow_server, data_root, "epochs=2", "train_subset=2000", experiment="against-server")
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run(MlflowClient(mlflow_server), "against-server")
    assert_complete_run(mlflow_server, run, epochs=2, data_root=data_root)
    assert run.data.tags["tracking_uri"] == mlflow_server
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.server
def test_cli_against_a_real_server_with_experiment_from_environment(tmp_path, data_root, mlflow_server):
    result = subprocess.run(
        [str(BIN / "deep-learning"), "train", "--epochs", "1", "--train-subset", "1000"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=subprocess_env(
            MLFLOW_TRACKING_URI=mlflow_server,
            MLFLOW_EXPERIMENT_NAME="cli-on-server",
            DEEP_LEARNING_DATA_ROOT=str(data_root),
            DEEP_LEARNING_OFFLINE="1",
        ),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run(MlflowClient(mlflow_server), "cli-on-server")
    assert_complete_run(mlflow_server, run, epochs=1, data_root=data_root)
