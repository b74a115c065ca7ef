"""`deep-learning sweep`: real child runs under one parent, the parent's roll-up read back with MLflow's client,
an interrupted sweep resumed, the verdict on groups whose difference is known, and bad input."""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import pytest
from commands import assert_one_line_error, invoke
from mlflow import MlflowClient
from readback import assert_valid_png
from test_faults import start_training, wait_for_line

from deep_learning.analysis.rollup import DIFFERS, WITHIN_NOISE, Spread, verdict_of, welch_interval

SMALL = ("--epochs", "2", "--train-subset", "500", "--devices", "cpu")
GRID = ("--grid", "lr=0.05,0.5", "--seeds", "3")


def parent_and_children(client: MlflowClient) -> tuple:
    runs = client.search_runs(["0"], order_by=["attributes.start_time ASC"])
    parent = [run for run in runs if run.data.tags.get("deep_learning.kind") == "sweep"][0]  # the first sweep's
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return parent, children


@pytest.fixture(scope="module")
def interrupted_then_resumed(module_store):
    """A 2 x 3 sweep killed while its third run trains, then resumed to the end."""
    process = start_training("sweep", *SMALL, *GRID)
    wait_for_line(process, "Sweep point lr=0.05 seed=44")
    wait_for_line(process, "Epoch [1/2]")
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    client = MlflowClient(module_store)
    killed, before = parent_and_children(client)
    resumed = invoke("sweep", "--resume", killed.info.run_id)
    assert resumed.exit_code == 0, resumed.output
    return client, process.returncode, stderr, killed, before, resumed


def test_an_interrupted_sweep_resumes_to_one_finished_run_per_point(interrupted_then_resumed):
    client, returncode, stderr, killed, before, resumed = interrupted_then_resumed
    assert returncode == 143 and f"deep-learning sweep --resume {killed.info.run_id}" in stderr.strip().splitlines()[-1]
    assert killed.info.status == "KILLED"
    assert [run.info.status for run in before] == ["FINISHED", "FINISHED", "KILLED"]
    parent, children = parent_and_children(client)
    assert parent.info.run_id == killed.info.run_id and parent.info.status == "FINISHED"
    labels = [run.data.tags["deep_learning.point"] for run in children]
    assert sorted(labels) == sorted(f"lr={lr} seed={seed} cpu" for lr in (0.05, 0.5) for seed in (42, 43, 44))
    assert all(run.info.status == "FINISHED" for run in children) and len(children) == 6
    assert [run.info.run_name for run in children] == labels  # named by what sets them apart
    first_two = {run.info.run_id for run in before[:2]}
    assert first_two <= {run.info.run_id for run in children}  # kept, not trained again
    assert "Sweep point lr=0.05 seed=42" not in resumed.stdout and "Sweep point lr=0.05 seed=44" in resumed.stdout


def test_the_parents_roll_up_is_numpys_over_the_children(interrupted_then_resumed, tmp_path):
    client, *_ = interrupted_then_resumed
    parent, children = parent_and_children(client)
    for lr in ("0.05", "0.5"):
        group = [run for run in children if run.data.params["lr"] == lr]
        for key in ("val_accuracy", "test_loss"):
            values = [run.data.metrics[key] for run in group]
            assert parent.data.metrics[f"lr_{lr} cpu/{key}_mean"] == pytest.approx(np.mean(values))
            assert parent.data.metrics[f"lr_{lr} cpu/{key}_std"] == pytest.approx(np.std(values, ddof=1))
            assert parent.data.metrics[f"lr_{lr} cpu/{key}_n"] == 3
        first_epoch = [next(m.value for m in client.get_metric_history(run.info.run_id, "val_loss") if m.step == 1) for run in group]
        series = {m.step: m.value for m in client.get_metric_history(parent.info.run_id, f"lr_{lr} cpu/val_loss_mean")}
        assert series[1] == pytest.approx(np.mean(first_epoch)) and sorted(series) == [1, 2]
    artifacts = {item.path for item in client.list_artifacts(parent.info.run_id)}
    assert {"rollup.csv", "rollup.md", "rollup.json", "rollup.png"} <= artifacts
    assert_valid_png(Path(client.download_artifacts(parent.info.run_id, "rollup.png", str(tmp_path))), (800, 400), (3000, 3000))
    assert "| lr=0.5 cpu | val_accuracy |" in Path(client.download_artifacts(parent.info.run_id, "rollup.md", str(tmp_path))).read_text()


def test_the_verdict_tells_learning_rates_far_apart_from_seeds_of_one_config(interrupted_then_resumed):
    client, *_ = interrupted_then_resumed
    _, children = parent_and_children(client)
    accuracy = {
        lr: Spread.of([run.data.metrics["test_accuracy"] for run in children if run.data.params["lr"] == lr]) for lr in ("0.05", "0.5")
    }
    assert verdict_of(*welch_interval(accuracy["0.5"], accuracy["0.05"])[1:]) == DIFFERS
    more_seeds = invoke("sweep", *SMALL, "--lr", "0.5", "--seed-list", "45,46,47", "-q")
    assert more_seeds.exit_code == 0, more_seeds.output
    again = Spread.of(
        [run.data.metrics["test_accuracy"] for run in client.search_runs(["0"]) if run.data.params.get("seed") in ("45", "46", "47")]
    )
    assert again.n == 3
    assert verdict_of(*welch_interval(accuracy["0.5"], again)[1:]) == WITHIN_NOISE


def test_compare_shows_a_sweeps_roll_up_and_runs_lists_its_children_together(interrupted_then_resumed):
    client, *_ = interrupted_then_resumed
    parent, children = parent_and_children(client)
    shown = invoke("compare", parent.info.run_id)
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.startswith("| group | metric | mean | std | min | max | n |") and "| lr=0.05 cpu | test_accuracy |" in shown.stdout
    listed = invoke("runs")
    assert listed.exit_code == 0, listed.output
    names = [line.split("  ")[1].strip() for line in listed.stdout.splitlines()[2:] if "/ lr=" in line]
    assert len(names) == 6 and all(name.startswith(f"{parent.info.run_id[:8]}/ lr=") for name in names)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--grid", "nope=1,2"), "--grid names 'nope', which is not a setting a sweep can vary"),
        (("--grid", "lr=0.1,-1"), "lr must be a finite number above 0"),
        (("--seeds", "0"), "--seeds must be 1 or more, not 0"),
        (("--grid", "lr"), "--grid takes NAME=V1,V2,..."),
        (("--device", "all"), "A sweep's devices are --devices"),
        (("--resume", "0123456789abcdef0123456789abcdef", "--seeds", "2"), "give --resume PARENT_ID alone"),
    ],
)
def test_bad_sweeps_are_one_line_and_leave_no_run(store, options, message):
    assert_one_line_error(invoke("sweep", "--train-subset", "100", *options), message)
    assert MlflowClient(store).search_runs(["0"]) == []
