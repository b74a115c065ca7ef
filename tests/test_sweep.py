"""`train --device all`: one child run per available device under a device-sweep parent that holds their comparison."""

from __future__ import annotations

import csv
import io
import re
import tempfile
from pathlib import Path

import pytest
from mlflow import MlflowClient

from commands import assert_one_line_error, invoke
from deep_learning.devices import available_devices
from readback import EPOCH_METRICS, FINAL_METRICS, assert_complete_run, assert_valid_png

SWEEP = ("--epochs", "2", "--train-subset", "1000", "--device", "all")


@pytest.fixture(scope="module")
def sweep(module_store) -> dict:
    """One sweep: what it printed, its parent run and its child runs (oldest first)."""
    result = invoke("train", *SWEEP)
    assert result.exit_code == 0, result.output
    parent_id = re.search(r"Device sweep ([0-9a-f]{32}) finished", result.stdout).group(1)
    client = MlflowClient(module_store)
    children = client.search_runs(
        [client.get_run(parent_id).info.experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'", order_by=["attributes.start_time ASC"]
    )
    return {"stdout": result.stdout, "parent": client.get_run(parent_id), "children": children}


def test_one_finished_child_run_per_available_device(sweep, module_store, data_root):
    children = sweep["children"]
    assert [child.data.params["device"] for child in children] == available_devices()
    client = MlflowClient(module_store)
    for child in children:
        assert child.info.status == "FINISHED"
        for key in (*EPOCH_METRICS, *FINAL_METRICS):
            assert key in child.data.metrics, key
        assert {"learning_curves.png", "confusion_matrix.png", "state_dict.pt"} <= {artifact.path for artifact in client.list_artifacts(child.info.run_id)}
    assert_complete_run(module_store, children[0], epochs=2, data_root=data_root)  # the CPU run, like any other run


def test_the_parent_is_a_finished_device_sweep_holding_the_comparison(sweep, module_store):
    parent, child_ids = sweep["parent"], [child.info.run_id for child in sweep["children"]]
    assert parent.info.status == "FINISHED" and parent.info.run_name == "mlp-mnist-all-devices"
    assert parent.data.tags["deep_learning.kind"] == "device-sweep"
    assert parent.data.tags["deep_learning.devices"] == ",".join(available_devices())
    assert parent.data.params["device"] == "all" and parent.data.params["epochs"] == "2"
    assert "mlflow.parentRunId" not in parent.data.tags
    client = MlflowClient(module_store)
    assert {artifact.path for artifact in client.list_artifacts(parent.info.run_id)} == {"comparison.md", "comparison.csv", "comparison.png"}
    with tempfile.TemporaryDirectory() as folder:
        table = list(csv.reader(io.StringIO(Path(client.download_artifacts(parent.info.run_id, "comparison.csv", folder)).read_text())))
        markdown = Path(client.download_artifacts(parent.info.run_id, "comparison.md", folder)).read_text()
        assert_valid_png(Path(client.download_artifacts(parent.info.run_id, "comparison.png", folder)), (800, 300), (3000, 2000))
    assert table[0] == ["name", *child_ids]
    rows = {name: values for name, *values in table[1:]}
    assert rows["device.type"] == [child.data.tags["device.type"] for child in sweep["children"]]
    assert [float(value) for value in rows["test_accuracy"]] == [child.data.metrics["test_accuracy"] for child in sweep["children"]]
    assert markdown.splitlines()[0] == f"| name | {' | '.join(child_ids)} |"
    printed = [line.split() for line in sweep["stdout"].splitlines() if line.startswith("name ")]
    assert printed == [["name", *child_ids]]  # the same comparison, printed as a table
    assert sweep["stdout"].splitlines()[-1].startswith(f"Device sweep {parent.info.run_id} finished: one run per device ({', '.join(available_devices())})")


def test_runs_lists_the_children_but_not_the_parent(sweep):
    listed = invoke("runs").stdout
    assert sweep["parent"].info.run_id not in listed
    assert all(child.info.run_id in listed for child in sweep["children"])


def test_device_all_cannot_resume(sweep):
    result = invoke("train", "--device", "all", "--resume", sweep["children"][0].info.run_id)
    assert_one_line_error(result, "--device all starts new runs")
