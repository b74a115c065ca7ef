"""Tracked runs in a real sqlite store, read back through MLflow's client."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import subprocess_env
from mlflow import MlflowClient
from readback import EPOCH_METRICS, assert_complete_run, logged_state_dict_bytes, only_run

from deep_learning import tracking
from deep_learning.cli import cli

SMALL = ["--epochs", "2", "--train-subset", "2000"]


def train(*args: str):
    result = CliRunner().invoke(cli, ["train", *args], catch_exceptions=False)
    return result


def test_a_run_logs_everything_and_its_model_loads_back(store, data_root):
    result = train(*SMALL)
    assert result.exit_code == 0, result.output
    assert "Epoch [1/2] | loss:" in result.output and "Test | loss:" in result.output
    run = only_run(MlflowClient(store))
    assert run.info.run_id in result.output
    assert_complete_run(store, run, epochs=2, data_root=data_root)


def test_mlflow_still_has_the_requirements_check_that_logging_skips():
    # If an MLflow release renames it, logging a model still works but pays ~0.4 s again: this says so.
    from mlflow.utils import environment

    assert callable(getattr(environment, tracking.models.REQUIREMENTS_CHECK, None))


def test_same_seed_same_run_other_seed_other_run(store):
    for seed in ("42", "42", "43"):
        assert train(*SMALL, "--seed", seed).exit_code == 0
    client = MlflowClient(store)
    runs = sorted(client.search_runs(["0"]), key=lambda run: run.info.start_time)
    learned = [
        {
            key: [metric.value for metric in client.get_metric_history(run.info.run_id, key)]
            for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy")
        }
        for run in runs
    ]
    weights = [logged_state_dict_bytes(client, run.info.run_id) for run in runs]
    assert learned[0] == learned[1] and weights[0] == weights[1]
    assert learned[0] != learned[2] and weights[0] != weights[2]


def test_experiment_name_from_the_environment(store, monkeypatch):
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "chapter-2.7")
    assert train("--epochs", "1", "--train-subset", "500", "--dataset", "fashion-mnist").exit_code == 0
    run = only_run(MlflowClient(store), "chapter-2.7")
    assert run.info.run_name == "mlp-fashion-mnist-cpu" and run.data.params["dataset"] == "fashion-mnist"


def test_register_model_registers_the_logged_model(store):
    assert train("--epochs", "1", "--train-subset", "300", "--register-model", "mnist-mlp").exit_code == 0
    client = MlflowClient(store)
    run = only_run(client)
    versions = client.search_model_versions("name='mnist-mlp'")
    assert [version.run_id for version in versions] == [run.info.run_id]


def test_an_exception_marks_the_run_failed_with_its_message(store):
    with pytest.raises(RuntimeError):
        with tracking.tracked_run("mlp-mnist-cpu", {"epochs": 1}, {"device.type": "cpu"}) as run:
            raise RuntimeError("loss exploded\nsecond line")
    recorded = MlflowClient(store).get_run(run.run_id)
    assert recorded.info.status == "FAILED"
    assert recorded.data.tags["error.type"] == "RuntimeError"
    assert recorded.data.tags["error.message"] == "loss exploded"


def test_ctrl_c_ends_the_run_killed_and_exits_130(store, data_root):
    process = subprocess.Popen(
        [sys.executable, "-m", "deep_learning", "train", "--epochs", "50", "--train-subset", "3000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )
    for line in process.stdout:
        if line.startswith("Epoch [ 1/50]"):
            process.send_signal(signal.SIGINT)
            break
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "KILLED" in stderr
    run = only_run(MlflowClient(store))
    assert run.info.status == "KILLED"
    assert len(MlflowClient(store).get_metric_history(run.info.run_id, EPOCH_METRICS[0])) >= 1


def test_old_file_store_is_refused_with_a_way_out(tmp_path, monkeypatch, data_root):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DEEP_LEARNING_DATA_ROOT", str(data_root))
    (tmp_path / "mlruns" / "1").mkdir(parents=True)
    (tmp_path / "mlruns" / "1" / "meta.yaml").write_text("name: old\n")
    result = CliRunner().invoke(cli, ["train", "--epochs", "1", "--train-subset", "100"])
    assert result.exit_code == 1
    assert "old MLflow file store" in result.output and "MLFLOW_TRACKING_URI=sqlite:///mlflow.db" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "mlflow.db").exists()


def test_redacted_uri_hides_credentials():
    assert tracking.redacted("https://alice:secret@mlflow.example.com:5000/path") == "https://mlflow.example.com:5000/path"
    assert tracking.redacted("sqlite:///mlflow.db") == "sqlite:///mlflow.db"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--device", "cuda"], "not available on this machine; available: cpu"),
        (["--device", "gpu"], "Unknown device 'gpu'"),
        (["--epochs", "0"], "epochs must be a positive integer"),
        (["--epochs", "-1"], "epochs must be a positive integer"),
        (["--epochs", "abc"], "'abc' is not a valid integer"),
        (["--lr", "-1"], "lr must be a finite number above 0"),
        (["--lr", "nan"], "lr must be a finite number above 0"),
        (["--batch-size", "0"], "batch_size must be a positive integer"),
        (["--dataset", "nope"], "dataset must be one of mnist, fashion-mnist, imagefolder:DIR, csv:FILE, text:FILE or an import path"),
    ],
)
def test_bad_input_one_line_no_run(store, args, message):
    if "cuda" in args and torch.accelerator.is_available():
        pytest.skip("this machine has an accelerator")
    result = CliRunner().invoke(cli, ["train", *args])
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert not Path("mlflow.db").exists()  # refused before any run was created


def test_missing_data_is_one_line_in_a_real_process(store, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "deep_learning", "train", "--epochs", "1"],
        capture_output=True,
        text=True,
        env=subprocess_env(DEEP_LEARNING_DATA_ROOT=str(tmp_path / "empty")),
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "is missing" in lines[0], result.stderr
    assert result.stdout == ""
    assert not (tmp_path / "mlflow.db").exists()
