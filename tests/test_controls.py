"""Training controls end to end: what a run with a schedule, clipping, accumulation, early stopping, per-step
metrics and the profiler logs, read back with MLflow's client; and resuming mid-schedule and mid-patience."""

from __future__ import annotations

import io
import json
import signal
from pathlib import Path

import mlflow
import pytest
import torch
from commands import assert_one_line_error, invoke, train_run
from mlflow import MlflowClient
from readback import logged_state_dict_bytes
from test_faults import histories, start_training, wait_for_line

from deep_learning.core.checkpoint_files import load_checkpoint
from deep_learning.core.config import TrainConfig
from deep_learning.core.optimization import build_schedule

SUBSET = 640  # 10 batches of 64 an epoch
SCHEDULED = (
    "--epochs",
    "3",
    "--train-subset",
    str(SUBSET),
    "--device",
    "cpu",
    "--lr-schedule",
    "cosine",
    "--warmup-epochs",
    "1",
    "--grad-clip-norm",
    "1.0",
    "--accumulate-batches",
    "2",
    "--log-every-n-steps",
    "2",
)
# The training loss falls every epoch, so "max" never improves after epoch 1: patience 2 stops after epoch 3.
NEVER_IMPROVES = ("--monitor", "train_loss", "--monitor-mode", "max", "--early-stopping-patience", "2")


def history(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    return {metric.step: metric.value for metric in client.get_metric_history(run_id, key)}


def test_the_logged_lr_follows_the_schedule_and_clipping_logs_the_gradient_norm(store):
    run_id = train_run(*SCHEDULED)
    client = MlflowClient(store)
    steps_per_epoch = 5  # 10 batches, two a step
    config = TrainConfig(epochs=3, lr_schedule="cosine", warmup_epochs=1)
    schedule = build_schedule(config, steps_per_epoch)
    lr = history(client, run_id, "lr")
    assert lr == pytest.approx({epoch: 0.1 * schedule.factor(epoch * steps_per_epoch - 1) for epoch in (1, 2, 3)})
    assert lr[1] == pytest.approx(0.1) and lr[3] < 0.01  # warmed up, then annealed
    lr_step = history(client, run_id, "lr_step")
    assert sorted(lr_step) == list(range(2, 16, 2))
    assert lr_step == pytest.approx({step: 0.1 * schedule.factor(step - 1) for step in lr_step})
    assert sorted(history(client, run_id, "train_loss_step")) == sorted(lr_step)
    means, maxima = history(client, run_id, "grad_norm_mean"), history(client, run_id, "grad_norm_max")
    assert sorted(means) == sorted(maxima) == [1, 2, 3]
    assert all(0 < means[epoch] <= maxima[epoch] for epoch in means)
    params = client.get_run(run_id).data.params
    assert (params["lr_schedule"], params["grad_clip_norm"], params["accumulate_batches"]) == ("cosine", "1.0", "2")


def test_early_stopping_ends_finished_at_the_predicted_epoch_with_the_best_weights(store):
    run_id = train_run("--epochs", "6", "--train-subset", str(SUBSET), "--device", "cpu", *NEVER_IMPROVES, "--restore-best", "true")
    client = MlflowClient(store)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert sorted(history(client, run_id, "train_loss")) == [1, 2, 3]
    assert run.data.metrics["stopped_epoch"] == 3
    assert run.data.tags["deep_learning.stop_reason"].startswith("early stopping: train_loss did not improve for 2 epochs")
    assert run.data.tags["deep_learning.restored_epoch"] == "1"
    assert "test_accuracy" in run.data.metrics
    best = load_checkpoint(Path("checkpoints") / run_id / "epoch-0001.pt")["model"]
    logged = torch.load(io.BytesIO(logged_state_dict_bytes(client, run_id)), weights_only=True)
    assert all(torch.equal(logged[name], best[name]) for name in best)
    assert sorted(path.name for path in (Path("checkpoints") / run_id).glob("epoch-*.pt")) == ["epoch-0001.pt", "epoch-0003.pt"]


def test_resume_mid_schedule_and_mid_patience_is_exact(store):
    options = (
        "train",
        "--epochs",
        "5",
        "--train-subset",
        "1280",
        "--device",
        "cpu",
        "--lr-schedule",
        "onecycle",
        "--grad-clip-norm",
        "0.5",
        "--monitor",
        "train_loss",
        "--monitor-mode",
        "max",
        "--early-stopping-patience",
        "3",
    )
    process = start_training(*options)
    wait_for_line(process, "Epoch [2/5]")
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=120)
    client = MlflowClient(store)
    (interrupted,) = client.search_runs(["0"])
    assert interrupted.info.status == "KILLED"
    resumed = invoke("train", "--resume", interrupted.info.run_id)
    assert resumed.exit_code == 0, resumed.output
    assert "Stopped after epoch 4" in resumed.stdout
    uninterrupted = train_run(*options[1:])
    for run_id in (interrupted.info.run_id, uninterrupted):
        assert client.get_run(run_id).info.status == "FINISHED"
        assert client.get_run(run_id).data.metrics["stopped_epoch"] == 4
    assert histories(client, interrupted.info.run_id) == histories(client, uninterrupted)
    for key in ("lr", "grad_norm_mean", "grad_norm_max"):
        assert history(client, interrupted.info.run_id, key) == history(client, uninterrupted, key)
    assert logged_state_dict_bytes(client, interrupted.info.run_id) == logged_state_dict_bytes(client, uninterrupted)
    models = [
        sorted(
            (model.name, str(model.status))
            for model in mlflow.search_logged_models(filter_string=f"source_run_id = '{run_id}'", output_format="list")
        )
        for run_id in (interrupted.info.run_id, uninterrupted)
    ]
    assert models[0] == models[1] == [("checkpoint-0004", "READY"), ("model", "READY")]


def test_the_profiler_logs_a_trace_and_a_table_of_the_first_epoch(store):
    run_id = train_run("--epochs", "1", "--train-subset", str(SUBSET), "--device", "cpu", "--profile", "true")
    client = MlflowClient(store)
    assert sorted(item.path for item in client.list_artifacts(run_id, "profile")) == [
        "profile/key_averages.txt",
        "profile/train.pt.trace.json",
    ]
    trace = json.loads(Path(client.download_artifacts(run_id, "profile/train.pt.trace.json")).read_text())
    assert any(event.get("name", "").startswith("aten::addmm") for event in trace["traceEvents"])
    assert "aten::addmm" in Path(client.download_artifacts(run_id, "profile/key_averages.txt")).read_text()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--grad-clip-norm", "-1"), "grad_clip_norm must be a finite number, 0 or above, not -1.0"),
        (("--early-stopping-patience", "2", "--monitor", "val_f1"), "monitor must be one of the epoch metrics val_loss, val_accuracy"),
        (("--warmup-epochs", "2", "--epochs", "2"), "warmup_epochs (2.0) must be fewer than the epochs (2)"),
        (("--optimizer", "adam", "--momentum", "0.9"), "adam's momentum is --adam-beta1"),
    ],
)
def test_bad_controls_are_one_line_before_any_run(store, options, message):
    assert_one_line_error(invoke("train", "--train-subset", "100", *options), message)
    assert MlflowClient(store).search_runs(["0"]) == []


@pytest.mark.parametrize("option", ["--lr-schedule", "--optimizer", "--monitor-mode"])
def test_an_unknown_choice_is_a_usage_error(store, option):
    result = invoke("train", option, "bogus")
    assert result.exit_code == 2 and "Invalid value for" in result.stderr and "bogus" in result.stderr
