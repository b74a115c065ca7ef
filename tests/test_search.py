"""`deep-learning sweep --search optuna`: every trial a real child run, pruned trials marked as such, the best
on the parent, and a resumed study that adds trials rather than repeating them."""

from __future__ import annotations

import optuna
import pytest
from commands import assert_one_line_error, invoke
from mlflow import MlflowClient

from deep_learning.core.errors import ConfigError
from deep_learning.studies.search import parse_space

SEARCH = (
    "sweep",
    "--search",
    "optuna",
    "--param",
    "lr=loguniform:1e-4:1",
    "--epochs",
    "3",
    "--train-subset",
    "500",
    "--device",
    "cpu",
    "-q",
)


def search_runs(client: MlflowClient) -> tuple:
    runs = client.search_runs(["0"], order_by=["attributes.start_time ASC"])
    (parent,) = [run for run in runs if run.data.tags.get("deep_learning.kind") == "search"]
    return parent, [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]


@pytest.fixture(scope="module")
def searched(module_store):
    first = invoke(*SEARCH, "--trials", "4")
    assert first.exit_code == 0, first.output
    client = MlflowClient(module_store)
    parent, children = search_runs(client)
    study = optuna.load_study(
        study_name=parent.info.run_id, storage=f"sqlite:///{module_store.removeprefix('sqlite:///').rsplit('/', 1)[0]}/optuna.db"
    )
    return client, parent, children, [trial for trial in study.trials]


def test_every_trial_is_a_child_run_and_pruned_ones_are_marked(searched):
    _, parent, children, trials = searched
    assert len(children) == len(trials) == 4
    assert sorted(run.data.tags["deep_learning.trial"] for run in children) == ["0", "1", "2", "3"]
    states = {trial.number: trial.state.name for trial in trials}
    assert "PRUNED" in states.values() and "COMPLETE" in states.values()
    for run in children:
        state = states[int(run.data.tags["deep_learning.trial"])]
        assert run.data.tags["deep_learning.trial_state"] == state
        assert run.info.status == ("KILLED" if state == "PRUNED" else "FINISHED")
        if state == "PRUNED":
            assert run.data.tags["deep_learning.stop_reason"].startswith("pruned by the median pruner after epoch")
            assert len({m.step for m in searched[0].get_metric_history(run.info.run_id, "val_loss")}) < 3
        assert run.info.run_name.startswith(f"trial {run.data.tags['deep_learning.trial']}: lr=")


def test_the_parent_holds_the_best_params_and_value(searched):
    client, parent, children, trials = searched
    best = min((trial for trial in trials if trial.state.name == "COMPLETE"), key=lambda trial: trial.value)
    assert float(parent.data.tags["best.lr"]) == pytest.approx(best.params["lr"])
    assert parent.data.metrics["best_value"] == pytest.approx(best.value)
    (winner,) = [run for run in children if run.data.tags["deep_learning.trial"] == str(best.number)]
    assert winner.data.metrics["val_loss"] == pytest.approx(best.value)  # the monitored metric, val_loss, at the last epoch


def test_resuming_a_search_adds_trials_not_duplicates(searched, module_store):
    client, parent, *_ = searched
    resumed = invoke("sweep", "--resume", parent.info.run_id, "--trials", "6", "-q")
    assert resumed.exit_code == 0, resumed.output
    again, children = search_runs(client)
    assert again.info.run_id == parent.info.run_id and again.info.status == "FINISHED"
    assert sorted(int(run.data.tags["deep_learning.trial"]) for run in children) == list(range(6))
    assert len({run.data.params["lr"] for run in children}) == 6


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (["lr=gauss:1:2"], "does not parse: give NAME=uniform:LOW:HIGH"),
        (["lr=loguniform:0:1"], "the bounds must be LOW < HIGH and above 0"),
        (["lr=uniform:1"], "its values are not numbers (or not two bounds)"),
        (["nope=uniform:0:1"], "--param names 'nope', which is not a setting a search can vary"),
        ([], "A search needs at least one --param"),
    ],
)
def test_a_search_space_that_does_not_parse_is_one_line(params, message):
    with pytest.raises(ConfigError) as raised:
        parse_space(params)
    assert message in str(raised.value) and "\n" not in str(raised.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--search", "optuna", "--param", "lr=gauss:1:2"), "does not parse"),
        (
            ("--search", "optuna", "--param", "lr=uniform:0.1:1", "--grid", "batch_size=32,64"),
            "--grid, --seeds, --devices and --vectorize are for a grid sweep",
        ),
        (("--param", "lr=uniform:0.1:1"), "--param and --trials are for a search: add --search optuna"),
    ],
)
def test_bad_searches_are_one_line_and_leave_no_run(store, options, message):
    assert_one_line_error(invoke("sweep", "--train-subset", "100", *options), message)
    assert MlflowClient(store).search_runs(["0"]) == []
