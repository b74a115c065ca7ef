"""`sweep --vectorize`: three seeds trained as one batched model against the same three trained as separate runs,
each vectorized seed read back as its own run (metrics, checkpoint, loadable model), and what it refuses."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from commands import assert_one_line_error, invoke
from mlflow import MlflowClient
from readback import assert_complete_run

from deep_learning.core.checkpoint_files import checkpoint_name, load_checkpoint

SEEDS = ("--seeds", "3", "--epochs", "2", "--train-subset", "1000", "--devices", "cpu", "--momentum", "0.9", "--lr-schedule", "cosine")
EPOCH_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
# The stated bound: batched products sum in another order, so losses agree to float32 rounding, and
# accuracies to a handful of the 10,000 validation (and test) images whose top logit is a near tie.
LOSS_TOLERANCE = 1e-4
ACCURACY_TOLERANCE = 0.001


@pytest.fixture(scope="module")
def together_and_apart(module_store):
    """The same sweep twice in one store: vectorized, then as separate runs; each one's parent and children by point."""
    client = MlflowClient(module_store)
    sweeps = {}
    for name, extra in (("together", ("--vectorize",)), ("apart", ())):
        result = invoke("sweep", *SEEDS, *extra)
        assert result.exit_code == 0, result.output
        parent, children = newest_sweep(client)
        sweeps[name] = (parent, {run.data.tags["deep_learning.point"]: run for run in children})
    return client, sweeps


def newest_sweep(client: MlflowClient) -> tuple:
    runs = client.search_runs(["0"], order_by=["attributes.start_time DESC"])
    parent = next(run for run in runs if run.data.tags.get("deep_learning.kind") == "sweep")
    return parent, [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]


def history(client: MlflowClient, run_id: str, key: str) -> list[float]:
    return [metric.value for metric in sorted(client.get_metric_history(run_id, key), key=lambda metric: metric.step)]


def test_each_seed_trained_together_is_its_own_finished_run(together_and_apart):
    client, sweeps = together_and_apart
    parent, children = sweeps["together"]
    assert sorted(children) == ["seed=42 cpu", "seed=43 cpu", "seed=44 cpu"]
    for label, run in children.items():
        assert run.info.status == "FINISHED" and run.info.run_name == label
        assert run.data.tags["deep_learning.vectorized"] == "3" and run.data.params["seed"] == label.split()[0].removeprefix("seed=")
        for key in EPOCH_METRICS:
            assert [metric.step for metric in client.get_metric_history(run.info.run_id, key)] == [1, 2], key
        assert "test_accuracy" in run.data.metrics
    assert parent.data.metrics["cpu/val_accuracy_n"] == 3
    assert len({run.data.metrics["val_loss"] for run in children.values()}) == 3  # three initialisations, three shuffles


def test_vectorized_seeds_match_separate_runs_within_the_stated_bound(together_and_apart):
    client, sweeps = together_and_apart
    together, apart = sweeps["together"][1], sweeps["apart"][1]
    for label, run in together.items():
        separate = apart[label]
        for key in EPOCH_METRICS:
            tolerance = LOSS_TOLERANCE if key.endswith("loss") else ACCURACY_TOLERANCE
            assert history(client, run.info.run_id, key) == pytest.approx(history(client, separate.info.run_id, key), abs=tolerance), (
                label,
                key,
            )
        assert run.data.metrics["test_loss"] == pytest.approx(separate.data.metrics["test_loss"], abs=LOSS_TOLERANCE)
        assert run.data.metrics["test_accuracy"] == pytest.approx(separate.data.metrics["test_accuracy"], abs=ACCURACY_TOLERANCE)


def test_a_vectorized_seeds_checkpoint_is_what_its_separate_run_saves(together_and_apart, tmp_path):
    """Same RNG states (its own shuffles), weights, momentum and schedule: a plain run resumes from it."""
    client, sweeps = together_and_apart
    label = "seed=43 cpu"
    saved = {}
    for name in ("together", "apart"):
        run_id = sweeps[name][1][label].info.run_id
        saved[name] = load_checkpoint(Path(client.download_artifacts(run_id, f"checkpoints/{checkpoint_name(2)}", str(tmp_path / name))))
    together, apart = saved["together"], saved["apart"]
    assert torch.equal(together["rng"]["torch"], apart["rng"]["torch"]) and together["rng"]["numpy"] == apart["rng"]["numpy"]
    assert together["scheduler"] == apart["scheduler"] and together["config"] == apart["config"]
    for name, weight in apart["model"].items():
        torch.testing.assert_close(together["model"][name], weight, atol=1e-5, rtol=1e-4)
        assert together["model"][name].is_contiguous()
    for index, state in apart["optimizer"]["state"].items():
        torch.testing.assert_close(together["optimizer"]["state"][index]["momentum_buffer"], state["momentum_buffer"], atol=1e-5, rtol=1e-4)
    assert together["optimizer"]["param_groups"] == apart["optimizer"]["param_groups"]


def test_a_vectorized_seed_is_a_complete_run_whose_model_scores_its_test_accuracy(together_and_apart, module_store, data_root):
    _, sweeps = together_and_apart
    assert_complete_run(module_store, sweeps["together"][1]["seed=44 cpu"], epochs=2, data_root=data_root, run_name="seed=44 cpu")


@pytest.mark.parametrize(
    "options, message",
    [
        (("--grad-clip-norm", "1"), "--vectorize cannot be combined with --grad-clip-norm"),
        (("--early-stopping-patience", "2"), "--vectorize cannot be combined with --early-stopping-patience"),
        (("--amp", "fp16"), "--vectorize does not train with --amp fp16"),
    ],
)
def test_settings_a_batched_model_would_not_reproduce_are_refused_before_any_run(store, options, message):
    result = invoke("sweep", "--seeds", "2", "--vectorize", *options)
    assert_one_line_error(result, message)
    assert MlflowClient(store).search_runs(["0"]) == []


def test_a_search_refuses_vectorize(store):
    result = invoke("sweep", "--search", "optuna", "--param", "lr=loguniform:1e-3:1", "--vectorize")
    assert_one_line_error(result, "--vectorize are for a grid sweep")
