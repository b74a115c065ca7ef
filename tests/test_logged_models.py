"""The kept checkpoints as MLflow 3 LoggedModels: ranked by MLflow's own search, each loading back pickle-free and
scoring what its epoch logged; the best one tagged; the final model carrying the test metrics."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
from commands import assert_one_line_error, invoke, train_run
from mlflow import MlflowClient
from mlflow.entities import LoggedModelStatus

from deep_learning.core.config import TrainConfig
from deep_learning.core.data.samples import as_tensors
from deep_learning.core.data.splits import load_splits

EPOCHS = 4


@pytest.fixture(scope="module")
def ranked_run(module_store):
    run_id = train_run(
        "--epochs", str(EPOCHS), "--train-subset", "1500", "--device", "cpu", "--keep-best", "2", "--monitor", "val_accuracy"
    )
    return MlflowClient(module_store), run_id


def logged_models(run_id: str, **search) -> list:
    return mlflow.search_logged_models(filter_string=f"source_run_id = '{run_id}'", output_format="list", **search)


def test_search_logged_models_ranks_the_kept_checkpoints_by_their_epoch_metrics(ranked_run):
    client, run_id = ranked_run
    val_accuracy = {metric.step: metric.value for metric in client.get_metric_history(run_id, "val_accuracy")}
    assert sorted(val_accuracy) == list(range(1, EPOCHS + 1))  # each epoch once: the link adds no second point
    ranked = logged_models(run_id, order_by=[{"field_name": "metrics.val_accuracy", "ascending": False}])
    checkpoints = [model for model in ranked if model.name.startswith("checkpoint-")]
    best_two = sorted(val_accuracy, key=lambda epoch: (-val_accuracy[epoch], epoch))[:2]
    kept = sorted({EPOCHS, *best_two})
    assert sorted(int(model.tags["deep_learning.epoch"]) for model in checkpoints) == kept
    assert sorted(path.name for path in (Path("checkpoints") / run_id).glob("epoch-*.pt")) == [f"epoch-{epoch:04d}.pt" for epoch in kept]
    scores = [next(metric.value for metric in model.metrics if metric.key == "val_accuracy") for model in checkpoints]
    assert scores == sorted(scores, reverse=True)
    for model in checkpoints:
        epoch = int(model.tags["deep_learning.epoch"])
        assert model.status == LoggedModelStatus.READY
        linked = {metric.key: (metric.value, metric.step, metric.dataset_name) for metric in model.metrics}
        assert linked["val_accuracy"] == (val_accuracy[epoch], epoch, "mnist-validation")
        assert linked["train_loss"][1:] == (epoch, "mnist-training")
        assert model.params["monitor"] == "val_accuracy" and model.params["keep_best"] == "2"


def test_each_checkpoint_loads_pickle_free_and_reproduces_its_validation_score(ranked_run, data_root):
    client, run_id = ranked_run
    val_accuracy = {metric.step: metric.value for metric in client.get_metric_history(run_id, "val_accuracy")}
    images, labels = as_tensors(load_splits(TrainConfig(), data_root).val)
    for model in logged_models(run_id):
        if not model.name.startswith("checkpoint-"):
            continue
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{model.model_id}"))
        assert sorted(path.name for path in (local / "data").iterdir()) == ["model.pt2"]  # no pickle
        loaded = mlflow.pyfunc.load_model(f"runs:/{run_id}/{model.name}")
        predictions = np.concatenate(
            [loaded.predict(images[start : start + 2000].numpy()).argmax(1) for start in range(0, len(images), 2000)]
        )
        accuracy = float((torch.from_numpy(predictions) == labels).double().mean())
        assert accuracy == pytest.approx(val_accuracy[int(model.tags["deep_learning.epoch"])], abs=1e-6)  # float32, one sample is 1e-4


def test_the_best_checkpoint_is_tagged_and_evaluate_best_scores_it(ranked_run):
    client, run_id = ranked_run
    val_accuracy = {metric.step: metric.value for metric in client.get_metric_history(run_id, "val_accuracy")}
    best_epoch = max(val_accuracy, key=lambda epoch: (val_accuracy[epoch], -epoch))
    tagged = [model for model in logged_models(run_id) if model.tags.get("deep_learning.best") == "true"]
    assert [model.tags["deep_learning.epoch"] for model in tagged] == [str(best_epoch)]
    assert tagged[0].tags["deep_learning.monitor"] == "val_accuracy max"
    assert client.get_run(run_id).data.tags["deep_learning.best_model_id"] == tagged[0].model_id
    result = invoke("evaluate", run_id, "--best", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert f"Model: models:/{tagged[0].model_id}" in result.stdout


def test_the_final_model_carries_the_test_metrics(ranked_run):
    client, run_id = ranked_run
    (final,) = [model for model in logged_models(run_id) if model.name == "model"]
    linked = {metric.key: metric for metric in final.metrics}
    run_metrics = client.get_run(run_id).data.metrics
    assert set(linked) == {"test_loss", "test_accuracy"}
    assert linked["test_accuracy"].value == run_metrics["test_accuracy"] and linked["test_accuracy"].dataset_name == "mnist-test"
    assert [metric.step for metric in client.get_metric_history(run_id, "test_accuracy")] == [EPOCHS]


def test_evaluate_best_of_a_run_without_a_best_checkpoint_is_one_line(store):
    run_id = train_run("--epochs", "2", "--train-subset", "500", "--device", "cpu", "--monitor", "train_loss", "--monitor-mode", "max")
    # The best epoch by this monitor is epoch 1, whose checkpoint is not kept (only the latest is).
    assert [model.name for model in logged_models(run_id, order_by=[{"field_name": "name"}])] == ["checkpoint-0002", "model"]
    assert_one_line_error(invoke("evaluate", run_id, "--best"), "kept no best checkpoint as a model: train with --keep-best 1")
