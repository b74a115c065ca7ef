"""`fit`: a user's own model, data and metrics as one tracked run, read back through MLflow's client."""

from __future__ import annotations

import subprocess
from pathlib import Path

import fit_script
import mlflow
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.utils.data as utils
from conftest import BIN, subprocess_env
from mlflow import MlflowClient
from readback import logged_state_dict_bytes, only_run, tracking_uri
from scripts import run_script, terminate_after_first_epoch
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy
from user_models import DataDependent

import deep_learning
from deep_learning.core.errors import ConfigError, DataError

SCRIPT = Path(fit_script.__file__)
LEARNED = ("train_loss", "train_accuracy", "train_f1", "val_loss", "val_accuracy", "val_f1")


def histories(
    client: MlflowClient, run_id: str, keys=LEARNED + ("test_loss", "test_accuracy", "test_f1")
) -> dict[str, list[tuple[int, float]]]:
    return {key: sorted((metric.step, metric.value) for metric in client.get_metric_history(run_id, key)) for key in keys}


@pytest.fixture(scope="module")
def fitted(module_store, tmp_path_factory):
    """One uninterrupted run of the user's script, as a separate process (as a user runs it)."""
    return MlflowClient(module_store).get_run(run_script(SCRIPT, cwd=tmp_path_factory.mktemp("fit")))


def test_every_metric_is_logged_per_epoch_and_at_the_end(fitted, module_store):
    client = MlflowClient(module_store)
    logged = histories(client, fitted.info.run_id)
    for key in LEARNED:
        assert [step for step, _ in logged[key]] == [1, 2, 3], key
    for key in ("test_loss", "test_accuracy", "test_f1"):
        assert [step for step, _ in logged[key]] == [3], key
    assert fitted.info.status == "FINISHED"
    assert fitted.info.run_name == "TinyConvNet-TensorDataset-cpu"
    assert 0.5 < fitted.data.metrics["val_accuracy"] <= 1 and 0.3 < fitted.data.metrics["val_f1"] <= 1


def test_what_fit_knows_is_logged_without_being_listed(fitted):
    params = fitted.data.params
    assert params["optimizer"] == "AdamW" and float(params["lr"]) == 3e-3
    assert params["optimizer.weight_decay"] == "0.01" and params["optimizer.betas"] == "(0.9, 0.999)"
    assert params["model_class"].endswith("TinyConvNet") and params["arch"] == "tiny-conv-net"
    assert (params["epochs"], params["batch_size"], params["seed"]) == ("3", "64", "42")
    assert params["num_train_samples"] == str(fit_script.TRAIN) and params["num_val_samples"] == str(fit_script.VAL)
    assert params["num_test_samples"] == str(fit_script.TEST)
    assert params["num_parameters"] == str(sum(p.numel() for p in fit_script.TinyConvNet().parameters()))
    assert params["metrics"] == "accuracy,f1" and params["input_shape"] == "[1, 28, 28]"


def test_the_logged_model_reproduces_the_test_accuracy_through_pyfunc(fitted, module_store):
    _, _, test_data = fit_script.fashion_tensors()
    images, labels = test_data.tensors
    with tracking_uri(module_store):
        predictor = mlflow.pyfunc.load_model(f"runs:/{fitted.info.run_id}/model")
    logits = np.asarray(predictor.predict(images.numpy()))
    assert logits.shape == (fit_script.TEST, 10)
    accuracy = float((logits.argmax(axis=1) == labels.numpy()).mean())
    assert accuracy == pytest.approx(fitted.data.metrics["test_accuracy"], abs=1e-6)
    assert fitted.data.tags["deep_learning.model_format"] == "pt2"
    state_dict = torch.load(MlflowClient(module_store).download_artifacts(fitted.info.run_id, "state_dict.pt"), weights_only=True)
    fit_script.TinyConvNet().load_state_dict(state_dict)


def test_killed_after_an_epoch_and_resumed_ends_as_the_uninterrupted_run(fitted, module_store, tmp_path):
    terminate_after_first_epoch(SCRIPT, tmp_path)
    client = MlflowClient(module_store)
    [killed] = client.search_runs(["0"], "attributes.status = 'KILLED'")
    run_id = killed.info.run_id

    run_script(SCRIPT, run_id, cwd=tmp_path)
    assert client.get_run(run_id).info.status == "FINISHED"
    assert histories(client, run_id) == histories(client, fitted.info.run_id)
    assert logged_state_dict_bytes(client, run_id) == logged_state_dict_bytes(client, fitted.info.run_id)


def test_the_script_under_torchrun_logs_one_run(tmp_path, data_root):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = subprocess.run(
        [str(BIN / "torchrun"), "--standalone", "--nproc-per-node", "2", str(SCRIPT)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=subprocess_env(MLFLOW_TRACKING_URI=uri, DEEP_LEARNING_DATA_ROOT=str(data_root), DEEP_LEARNING_OFFLINE="1"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run(MlflowClient(uri))
    assert run.info.status == "FINISHED" and run.data.params["world_size"] == "2"
    assert run.info.run_name == "TinyConvNet-TensorDataset-cpu-x2"
    assert [metric.step for metric in MlflowClient(uri).get_metric_history(run.info.run_id, "val_f1")] == [1, 2, 3]


def _tensors(count: int, classes: int = 3) -> utils.TensorDataset:
    generator = torch.Generator().manual_seed(count)
    return utils.TensorDataset(torch.rand(count, 2, 4, 4, generator=generator), torch.arange(count) % classes)


def _flat_model(classes: int = 3) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(32, classes))


def test_a_metric_collection_and_a_model_factory_work_in_process(store, capsys):
    seen = {}

    def build(num_classes, input_shape):
        seen.update(num_classes=num_classes, input_shape=input_shape)
        return _flat_model(num_classes)

    collection = MetricCollection({"acc": MulticlassAccuracy(3, average="micro"), "macro": MulticlassAccuracy(3)})
    result = deep_learning.fit(
        build, utils.DataLoader(_tensors(96), batch_size=32), _tensors(30), metrics=collection, epochs=2, device="cpu"
    )
    assert seen == {"num_classes": 3, "input_shape": (2, 4, 4)}
    assert list(result.history[-1].val_metrics) == ["acc", "macro"]
    assert result.test_metrics == {}
    run = MlflowClient(store).get_run(result.run_id)
    assert {"train_acc", "val_macro"} <= set(run.data.metrics) and run.data.params["batch_size"] == "32"
    assert "Epoch [2/2] | loss:" in capsys.readouterr().out


def test_fit_builds_an_optimizer_by_name_and_wraps_the_users_with_the_controls(store):
    named = deep_learning.fit(
        _flat_model(),
        _tensors(96),
        _tensors(30),
        optimizer="adamw",
        lr=3e-3,
        weight_decay=0.01,
        lr_schedule="cosine",
        grad_clip_norm=0.5,
        epochs=2,
        batch_size=16,
        device="cpu",
    )
    params = MlflowClient(store).get_run(named.run_id).data.params
    assert (params["optimizer"], params["lr"], params["weight_decay"], params["lr_schedule"]) == ("adamw", "0.003", "0.01", "cosine")
    assert named.history[0].step_stats["lr"] == pytest.approx(3e-3 * 0.5 * (1 + np.cos(np.pi * 5 / 12)))  # the 6th of 12 steps
    assert named.history[1].step_stats["grad_norm_max"] > 0
    users = deep_learning.fit(
        _flat_model(),
        _tensors(96),
        _tensors(30),
        optimizer=lambda parameters: torch.optim.RMSprop(parameters, lr=1e-3),
        lr_schedule="step",
        lr_gamma=0.5,
        epochs=2,
        batch_size=16,
        device="cpu",
    )
    assert [result.step_stats["lr"] for result in users.history] == [1e-3, 5e-4]
    assert MlflowClient(store).get_run(users.run_id).data.params["optimizer"] == "RMSprop"


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        ({"model": _flat_model(5)}, ConfigError, "outputs (2, 5) for a batch of 2, not (2, 3)"),
        ({"model": nn.Linear(3, 3)}, ConfigError, "fails on a batch of the data"),
        ({"train_data": [{"x": 1}] * 4}, DataError, "not (input, target)"),
        ({"metrics": {"accuracy": "not a metric"}}, ConfigError, "metrics must be a dict of torchmetrics Metrics"),
        ({"warmup": 3}, ConfigError, "fit() has no option 'warmup'"),
        ({"optimizer": torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)}, ConfigError, "does not hold the model's parameters"),
        (
            {"optimizer": lambda parameters: torch.optim.SGD(parameters, lr=0.1), "lr": 0.5},
            ConfigError,
            "lr is a setting of the optimizer you pass",
        ),
        ({"optimizer": "lion"}, ConfigError, "optimizer must be one of sgd, adamw, adam, rmsprop"),
    ],
    ids=[
        "output size",
        "input shape",
        "not pairs",
        "not a metric",
        "unknown option",
        "optimizer of another model",
        "lr of the user's",
        "unknown name",
    ],
)
def test_bad_input_is_one_line_and_no_run_is_left_running(store, arguments, error, message):
    given = {"model": _flat_model(), "train_data": _tensors(12), "val_data": _tensors(6), "epochs": 1, "device": "cpu"} | arguments
    with pytest.raises(error) as raised:
        deep_learning.fit(given.pop("model"), given.pop("train_data"), given.pop("val_data"), **given)
    assert message in str(raised.value) and "\n" not in str(raised.value)
    if Path("mlflow.db").exists():
        assert all(run.info.status != "RUNNING" for run in MlflowClient(store).search_runs(["0"]))


def test_a_model_that_does_not_export_is_logged_in_mlflows_pickle_format_saying_why(store, capsys):
    result = deep_learning.fit(DataDependent(), _tensors(48), _tensors(12), test_data=_tensors(12), epochs=1, device="cpu")
    assert capsys.readouterr().err.count("torch.export cannot export DataDependent") == 1
    run = MlflowClient(store).get_run(result.run_id)
    assert run.data.tags["deep_learning.model_format"] == "pickle" and run.info.status == "FINISHED"
    with tracking_uri(store):
        logged_models = mlflow.search_logged_models(filter_string=f"source_run_id='{result.run_id}'", output_format="list")
    # The kept checkpoint too, in the same format; no failed attempt left.
    assert sorted((model.name, str(model.status)) for model in logged_models) == [("checkpoint-0001", "READY"), ("model", "READY")]
    inputs = _tensors(12).tensors[0]
    with tracking_uri(store):
        logits = mlflow.pyfunc.load_model(f"runs:/{result.run_id}/model").predict(inputs.numpy())
    model = DataDependent()
    model.load_state_dict(torch.load(MlflowClient(store).download_artifacts(result.run_id, "state_dict.pt"), weights_only=True))
    with torch.inference_mode():
        assert np.allclose(logits, model.eval()(inputs).numpy())
