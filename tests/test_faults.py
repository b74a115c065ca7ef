"""Nothing lost: checkpoints and exact resume, signals, NaN, tracking server faults, concurrency."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import BIN, free_port, kill_mlflow_server, start_mlflow_server, stop_mlflow_server, subprocess_env
from mlflow import MlflowClient
from readback import EPOCH_METRICS, logged_state_dict_bytes, only_run, tracking_uri

from deep_learning import tracking
from deep_learning.cli import cli
from deep_learning.core.checkpoint_files import load_checkpoint

LEARNED = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy")
FOUR_EPOCHS = ["train", "--epochs", "4", "--train-subset", "3000"]
# Slow enough epochs (the chapter's DataLoader) that a server can be killed while they run.
SLOW_FOUR_EPOCHS = ["train", "--epochs", "4", "--train-subset", "5000", "--loader", "dataloader"]
# A dead server refuses connections at once: with MLflow's own retries off, each call fails in milliseconds and
# what is tested is the run's patience and the sender's retries, not MLflow's back-off (seconds per call).
NO_MLFLOW_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}


def start_training(*args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "deep_learning", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=subprocess_env(**env)
    )


def wait_for_line(process: subprocess.Popen, prefix: str) -> None:
    for line in process.stdout:
        if line.startswith(prefix):
            return
    pytest.fail(f"training ended before printing {prefix!r}: {process.stderr.read()[-2000:]}")


def histories(client: MlflowClient, run_id: str) -> dict[str, list[tuple[int, float]]]:
    return {key: sorted((metric.step, metric.value) for metric in client.get_metric_history(run_id, key)) for key in LEARNED}


def test_sigterm_then_resume_ends_exactly_like_an_uninterrupted_run(store):
    process = start_training(*FOUR_EPOCHS)
    wait_for_line(process, "Epoch [2/4]")
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143
    message = stderr.strip().splitlines()[-1]
    client = MlflowClient(store)
    interrupted = only_run(client)
    run_id = interrupted.info.run_id
    assert interrupted.info.status == "KILLED"
    assert f"deep-learning train --resume {run_id}" in message and "epoch-0002.pt" in message
    assert [item.path for item in client.list_artifacts(run_id, "checkpoints")] == ["checkpoints/epoch-0002.pt"]
    checkpoint = load_checkpoint(Path("checkpoints") / run_id / "epoch-0002.pt")
    assert checkpoint["epoch"] == 2 and len(checkpoint["history"]) == 2

    refused = CliRunner().invoke(cli, ["train", "--resume", run_id, "--epochs", "5"])
    assert refused.exit_code == 1 and "epochs=4 in the checkpoint, 5 now" in refused.output

    resumed = CliRunner().invoke(cli, ["train", "--resume", run_id], catch_exceptions=False)
    assert resumed.exit_code == 0, resumed.output
    assert "Epoch [1/4]" not in resumed.output and "Epoch [3/4]" in resumed.output
    assert CliRunner().invoke(cli, FOUR_EPOCHS, catch_exceptions=False).exit_code == 0

    first, second = sorted(client.search_runs(["0"]), key=lambda run: run.info.start_time)
    assert first.info.run_id == run_id and first.info.status == second.info.status == "FINISHED"
    assert histories(client, run_id) == histories(client, second.info.run_id)
    assert [step for step, _ in histories(client, run_id)["train_loss"]] == [1, 2, 3, 4]
    for key in EPOCH_METRICS:
        assert [metric.step for metric in client.get_metric_history(run_id, key)] == [1, 2, 3, 4]
    assert logged_state_dict_bytes(client, run_id) == logged_state_dict_bytes(client, second.info.run_id)


def test_resume_of_unknown_run_or_run_without_checkpoint_is_one_line(store):
    unknown = CliRunner().invoke(cli, ["train", "--resume", "0123456789abcdef"])
    assert unknown.exit_code == 1 and "No run '0123456789abcdef'" in unknown.output
    with tracking.tracked_run("mlp-mnist-cpu", {"epochs": 1}, {}) as run:
        pass
    empty = CliRunner().invoke(cli, ["train", "--resume", run.run_id])
    assert empty.exit_code == 1 and "has no checkpoint to resume from" in empty.output
    assert "Traceback" not in unknown.output + empty.output


def test_checkpoint_of_another_version_is_refused(store, tmp_path):
    assert CliRunner().invoke(cli, ["train", "--epochs", "2", "--train-subset", "500"]).exit_code == 0
    run_id = only_run(MlflowClient(store)).info.run_id
    path = Path("checkpoints") / run_id / "epoch-0002.pt"
    checkpoint = load_checkpoint(path)
    checkpoint["versions"]["torch"] = "1.0.0"
    torch.save(checkpoint, path)
    refused = CliRunner().invoke(cli, ["train", "--resume", run_id])
    assert refused.exit_code == 1 and "torch '1.0.0' in the checkpoint" in refused.output
    path.write_bytes(b"not a checkpoint")
    corrupt = CliRunner().invoke(cli, ["train", "--resume", run_id])
    assert corrupt.exit_code == 1 and "is not a readable checkpoint" in corrupt.output


def test_keep_checkpoints_keeps_the_latest_n(store):
    assert CliRunner().invoke(cli, ["train", "--epochs", "3", "--train-subset", "500", "--keep-checkpoints", "2"]).exit_code == 0
    client = MlflowClient(store)
    run_id = only_run(client).info.run_id
    assert sorted(path.name for path in (Path("checkpoints") / run_id).glob("epoch-*.pt")) == ["epoch-0002.pt", "epoch-0003.pt"]
    assert [item.path for item in client.list_artifacts(run_id, "checkpoints")] == [
        "checkpoints/epoch-0002.pt",
        "checkpoints/epoch-0003.pt",
    ]


def test_nan_loss_fails_the_run_with_reason_and_epoch(store):
    result = CliRunner().invoke(cli, ["train", "--epochs", "3", "--train-subset", "1000", "--lr", "1e6"])
    assert result.exit_code == 1
    assert "The train loss is nan at epoch 1: training diverged; lower the learning rate" in result.output
    run = only_run(MlflowClient(store))
    assert run.info.status == "FAILED"
    assert run.data.tags["error.type"] == "TrainingDiverged" and run.data.tags["error.epoch"] == "1"
    assert not list((Path("checkpoints") / run.info.run_id).glob("epoch-*.pt"))  # no checkpoint of NaN weights


def test_a_run_that_diverges_later_keeps_its_last_good_checkpoint_as_a_loadable_model(store):
    # Epoch 1 trains at lr 0.1; the step schedule then multiplies it by 1e7, and epoch 2 diverges.
    options = ["train", "--epochs", "3", "--train-subset", "1000", "--lr-schedule", "step", "--lr-gamma", "1e7"]
    result = CliRunner().invoke(cli, options)
    assert result.exit_code == 1 and "The train loss is nan at epoch 2" in result.output
    run = only_run(MlflowClient(store))
    assert run.info.status == "FAILED"
    with tracking_uri(store):
        (model,) = mlflow.search_logged_models(filter_string=f"source_run_id = '{run.info.run_id}'", output_format="list")
        assert (model.name, str(model.status), model.tags["deep_learning.best"]) == ("checkpoint-0001", "READY", "true")
        logits = mlflow.pyfunc.load_model(f"models:/{model.model_id}").predict(np.zeros((2, 1, 28, 28), dtype=np.float32))
    assert logits.shape == (2, 10) and np.isfinite(logits).all()


def test_second_signal_exits_at_once():
    probe = (
        "import time\n"
        "from deep_learning.core.errors import Interrupted\n"
        "from deep_learning.core.interruption import signals_interrupt_runs\n"
        "with signals_interrupt_runs():\n"
        "    try:\n        print('ready', flush=True); time.sleep(60)\n"
        "    except Interrupted:\n        print('cleaning up', flush=True); time.sleep(60)\n"
    )
    process = subprocess.Popen([sys.executable, "-c", probe], stdout=subprocess.PIPE, text=True, env=subprocess_env())
    assert process.stdout.readline() == "ready\n"
    process.send_signal(signal.SIGINT)
    assert process.stdout.readline() == "cleaning up\n"
    started = time.monotonic()
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 130
    assert time.monotonic() - started < 30


def test_tracking_server_down_at_start_fails_fast_before_training(store):
    started = time.monotonic()
    process = start_training("train", "--epochs", "1", "--train-subset", "500", MLFLOW_TRACKING_URI=f"http://127.0.0.1:{free_port()}")
    stdout, stderr = process.communicate(timeout=120)
    assert time.monotonic() - started < 30  # MLflow's own retries alone would take minutes
    assert process.returncode == 1
    assert stderr.strip().splitlines()[-1].startswith("Error: Cannot reach the tracking server at http://127.0.0.1:")
    assert "Epoch" not in stdout


def test_unwritable_artifact_store_names_the_path_and_keeps_the_weights(store):
    client = MlflowClient(store)
    client.create_experiment("unwritable", artifact_location="file:///proc/deep-learning-artifacts")
    result = subprocess.run(
        [sys.executable, "-m", "deep_learning", "train", "--epochs", "1", "--train-subset", "500"],
        capture_output=True,
        text=True,
        env=subprocess_env(MLFLOW_EXPERIMENT_NAME="unwritable"),
    )
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert "/proc/deep-learning-artifacts" in line and "It is kept at checkpoints/" in line
    run = only_run(client, "unwritable")
    assert run.info.status == "FAILED"
    assert load_checkpoint(Path("checkpoints") / run.info.run_id / "epoch-0001.pt")["epoch"] == 1


def _run_four_at_once(tracking_uri: str, experiment: str) -> None:
    processes = [
        start_training(
            "train",
            "--epochs",
            "2",
            "--train-subset",
            "200",
            "--seed",
            str(seed),
            MLFLOW_TRACKING_URI=tracking_uri,
            MLFLOW_EXPERIMENT_NAME=experiment,
        )
        for seed in range(4)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-2000:]
        assert "locked" not in stderr
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 4 and {run.info.status for run in runs} == {"FINISHED"}
    for run in runs:
        for key in EPOCH_METRICS:
            assert [metric.step for metric in client.get_metric_history(run.info.run_id, key)] == [1, 2]
        assert len(run.inputs.dataset_inputs) == 3  # train, validation and test splits


@pytest.mark.server
def test_runs_logging_the_same_new_dataset_at_once_all_link_it(store, mlflow_server):
    # Each round, four runs insert one dataset the experiment does not hold yet, released together:
    # on a server's sqlite store about every other round one of them loses the insert race.
    client = MlflowClient(mlflow_server)
    experiment_id = client.create_experiment("dataset-race")
    for round_number in range(8):
        runs = [tracking.TrackedRun(client.create_run(experiment_id), client, mlflow_server) for _ in range(4)]
        digests = {"train": f"round{round_number}"}
        start = threading.Barrier(len(runs))
        errors: list[Exception] = []

        def log(run: tracking.TrackedRun) -> None:
            start.wait()
            try:
                run.log_datasets("mnist", "https://example.org/mnist", digests)
            except Exception as error:
                errors.append(error)

        threads = [threading.Thread(target=log, args=(run,)) for run in runs]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors[0]
        for run in runs:
            (linked,) = client.get_run(run.run_id).inputs.dataset_inputs
            assert linked.dataset.digest == f"round{round_number}"


def test_four_concurrent_runs_into_one_new_sqlite_store(store):
    _run_four_at_once(store, "concurrent")


@pytest.mark.server
def test_four_concurrent_runs_into_one_server(store, mlflow_server):
    _run_four_at_once(mlflow_server, "concurrent-on-server")


@pytest.mark.server
def test_server_dies_mid_run_and_comes_back(store, tmp_path):
    server = start_mlflow_server(tmp_path / "server")
    process = start_training(*SLOW_FOUR_EPOCHS, MLFLOW_TRACKING_URI=server.url, DEEP_LEARNING_TRACKING_PATIENCE="300", **NO_MLFLOW_RETRIES)
    try:
        wait_for_line(process, "Epoch [1/4]")
        kill_mlflow_server(server)
        wait_for_line(process, "Test |")  # training went on without the server
        server = start_mlflow_server(tmp_path / "server", port=server.port)
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-2000:]
        assert "does not answer: training goes on" in stderr
        client = MlflowClient(server.url)
        run = only_run(client)
        assert run.info.status == "FINISHED"
        for key in (*EPOCH_METRICS, "test_accuracy"):
            steps = [metric.step for metric in client.get_metric_history(run.info.run_id, key)]
            assert steps == ([1, 2, 3, 4] if key in EPOCH_METRICS else [4]), key
    finally:
        process.kill()
        stop_mlflow_server(server)


@pytest.mark.server
def test_server_that_never_returns_leaves_a_file_that_sync_sends(store, tmp_path):
    server = start_mlflow_server(tmp_path / "server")
    process = start_training(*SLOW_FOUR_EPOCHS, MLFLOW_TRACKING_URI=server.url, DEEP_LEARNING_TRACKING_PATIENCE="3", **NO_MLFLOW_RETRIES)
    try:
        wait_for_line(process, "Epoch [1/4]")
        kill_mlflow_server(server)
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 1
        line = stderr.strip().splitlines()[-1]
        assert "stopped answering: unsent metrics are in" in line
        unsent = Path(line.split("unsent metrics are in ")[1].split(" ")[0])
        assert unsent.is_file()
        server = start_mlflow_server(tmp_path / "server", port=server.port)
        synced = subprocess.run(
            [str(BIN / "deep-learning"), "sync", str(unsent)],
            capture_output=True,
            text=True,
            env=subprocess_env(MLFLOW_TRACKING_URI=server.url),
        )
        assert synced.returncode == 0, synced.stderr
        client = MlflowClient(server.url)
        run = only_run(client)
        for key in EPOCH_METRICS:
            assert [metric.step for metric in client.get_metric_history(run.info.run_id, key)] == [1, 2, 3, 4], key
        assert run.info.status == "FAILED"
        again = subprocess.run(
            [str(BIN / "deep-learning"), "sync", str(unsent)],
            capture_output=True,
            text=True,
            env=subprocess_env(MLFLOW_TRACKING_URI=server.url),
        )
        assert "Sent 0 metric values" in again.stdout
    finally:
        process.kill()
        stop_mlflow_server(server)
