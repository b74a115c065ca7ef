"""`train --device all`: a sweep over devices, one child run per available device under a sweep parent that holds
their comparison and their roll-up."""

from __future__ import annotations

import csv
import io
import json
import re
import tempfile
from pathlib import Path

import pytest
from commands import assert_one_line_error, invoke
from mlflow import MlflowClient
from readback import EPOCH_METRICS, FINAL_METRICS, assert_complete_run, assert_valid_png

from deep_learning.core.devices import available_devices
from deep_learning.studies.grid import Study

SWEEP = ("--epochs", "2", "--train-subset", "1000", "--device", "all")
COMPARISON = {"comparison.md", "comparison.csv", "comparison.png"}
ROLLUP = {"rollup.csv", "rollup.md", "rollup.json", "rollup.png"}


@pytest.fixture(scope="module")
def sweep(module_store) -> dict:
    """One sweep: what it printed, its parent run and its child runs (oldest first)."""
    result = invoke("train", *SWEEP)
    assert result.exit_code == 0, result.output
    parent_id = re.search(r"Sweep ([0-9a-f]{32}) finished", result.stdout).group(1)
    client = MlflowClient(module_store)
    children = client.search_runs(
        [client.get_run(parent_id).info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'", order_by=["attributes.start_time ASC"]
    )
    return {"stdout": result.stdout, "parent": client.get_run(parent_id), "children": children}


def artifact_text(client: MlflowClient, run_id: str, path: str) -> str:
    with tempfile.TemporaryDirectory() as folder:
        return Path(client.download_artifacts(run_id, path, folder)).read_text()


def test_one_finished_child_run_per_available_device_tagged_as_a_sweeps_point(sweep, module_store, data_root):
    children = sweep["children"]
    assert [child.data.params["device"] for child in children] == available_devices()
    client = MlflowClient(module_store)
    for child in children:
        device = child.data.params["device"]
        assert child.info.status == "FINISHED"
        assert child.data.tags["deep_learning.point"] == child.info.run_name == f"seed=42 {device}"
        assert child.data.tags["deep_learning.group"] == device
        for key in (*EPOCH_METRICS, *FINAL_METRICS):
            assert key in child.data.metrics, key
        assert {"learning_curves.png", "confusion_matrix.png", "state_dict.pt"} <= {
            artifact.path for artifact in client.list_artifacts(child.info.run_id)
        }
    assert_complete_run(module_store, children[0], epochs=2, data_root=data_root, run_name="seed=42 cpu")  # the CPU run, like any other run


def test_the_parent_is_a_finished_sweep_over_the_devices(sweep, module_store):
    parent = sweep["parent"]
    assert parent.info.status == "FINISHED" and parent.info.run_name == "mlp-mnist-all-devices"
    assert parent.data.tags["deep_learning.kind"] == "sweep" and "mlflow.parentRunId" not in parent.data.tags
    study = Study.from_json(parent.data.tags["deep_learning.study"])
    assert (study.grid, study.seeds, study.devices, study.base.epochs) == ({}, [42], available_devices(), 2)
    assert parent.data.params["device"] == "all" and parent.data.params["epochs"] == "2"
    assert parent.data.params["devices"] == ",".join(available_devices()) and parent.data.params["seeds"] == "42"
    artifacts = {artifact.path for artifact in MlflowClient(module_store).list_artifacts(parent.info.run_id)}
    assert artifacts == COMPARISON | ROLLUP
    lines = sweep["stdout"].splitlines()
    assert lines[-1].startswith(
        f"Sweep {parent.info.run_id} finished: {len(available_devices())} runs in {len(available_devices())} groups"
    )


def test_the_parent_holds_the_childrens_comparison_as_it_prints_it(sweep, module_store):
    parent, children = sweep["parent"], sweep["children"]
    child_ids = [child.info.run_id for child in children]
    client = MlflowClient(module_store)
    table = list(csv.reader(io.StringIO(artifact_text(client, parent.info.run_id, "comparison.csv"))))
    assert table[0] == ["name", *child_ids]
    rows = {name: values for name, *values in table[1:]}
    assert rows["device.type"] == [child.data.tags["device.type"] for child in children]
    assert [float(value) for value in rows["test_accuracy"]] == [child.data.metrics["test_accuracy"] for child in children]
    assert artifact_text(client, parent.info.run_id, "comparison.md").splitlines()[0] == f"| name | {' | '.join(child_ids)} |"
    with tempfile.TemporaryDirectory() as folder:
        assert_valid_png(Path(client.download_artifacts(parent.info.run_id, "comparison.png", folder)), (800, 300), (3000, 2000))
    printed = [line.split() for line in sweep["stdout"].splitlines() if line.startswith("name ")]
    assert printed == [["name", *child_ids]]  # the same comparison, printed as a table


def test_the_parent_holds_the_roll_up_and_compare_shows_it(sweep, module_store):
    parent, children = sweep["parent"], sweep["children"]
    client = MlflowClient(module_store)
    for child in children:
        device = child.data.params["device"]
        assert parent.data.metrics[f"{device}/test_accuracy_mean"] == child.data.metrics["test_accuracy"]
        assert parent.data.metrics[f"{device}/test_accuracy_n"] == 1
    markdown = artifact_text(client, parent.info.run_id, "rollup.md")
    assert markdown.startswith("| group | metric | mean | std | min | max | n |") and "| cpu | test_accuracy |" in markdown
    assert markdown in sweep["stdout"]  # printed with the run
    rollup = json.loads(artifact_text(client, parent.info.run_id, "rollup.json"))
    assert [group["group"] for group in rollup["groups"]] == available_devices()
    assert {(row["device"], row["metric"]) for row in rollup["seed_differences"]} == {
        (device, metric)
        for device in available_devices()[1:]
        for metric in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy")
    }
    shown = invoke("compare", parent.info.run_id)
    assert shown.exit_code == 0, shown.output
    assert shown.stdout == markdown


def test_the_same_seed_differences_of_two_devices_are_compares(module_store):
    """Two names of this machine's CPU stand in for two devices: the roll-up's differences are compare's max_abs_diff rows."""
    result = invoke("sweep", "--epochs", "2", "--train-subset", "500", "--devices", "cpu,cpu:0", "-q")
    assert result.exit_code == 0, result.output
    parent_id = re.search(r"Sweep ([0-9a-f]{32}) finished", result.stdout).group(1)
    client = MlflowClient(module_store)
    differences = {row["metric"]: row for row in json.loads(artifact_text(client, parent_id, "rollup.json"))["seed_differences"]}
    table = {name: values for name, *values in csv.reader(io.StringIO(artifact_text(client, parent_id, "comparison.csv")))}
    assert {f"max_abs_diff.{metric}" for metric in differences} == {name for name in table if name.startswith("max_abs_diff.")}
    for metric, row in differences.items():
        assert (row["device"], row["reference"]) == ("cpu:0", "cpu")
        assert row["per_seed"] == {"42": float(table[f"max_abs_diff.{metric}"][1])} and row["largest"] == row["per_seed"]["42"]
    assert "| (base) | val_accuracy | cpu:0 - cpu |" in result.stdout  # printed with the roll-up
    assert "| (base) | val_accuracy | cpu:0 - cpu |" in invoke("compare", parent_id).stdout


def test_runs_lists_the_children_but_not_the_parent(sweep):
    listed = invoke("runs").stdout
    assert sweep["parent"].info.run_id not in listed
    assert all(child.info.run_id in listed for child in sweep["children"])


def test_device_all_cannot_resume(sweep):
    result = invoke("train", "--device", "all", "--resume", sweep["children"][0].info.run_id)
    assert_one_line_error(result, "--device all starts new runs")
