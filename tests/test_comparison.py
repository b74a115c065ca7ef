"""Listing and comparing runs: `runs`, `compare` in every format, the curves figure, the logged comparison, bad input."""

from __future__ import annotations

import csv
import io
import json
import re
import statistics
import subprocess
import sys
from collections.abc import Sequence

import pytest
from commands import SMALL, assert_one_line_error, invoke, train_run
from conftest import BIN, REPO, subprocess_env
from mlflow import MlflowClient
from PIL import Image

from deep_learning.analysis.comparison import compare_runs, histories_to_read, render, select_latest_per_device_and_config
from deep_learning.analysis.listing import runs_table
from deep_learning.analysis.records import RunRecord

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def trained(module_store) -> dict[str, str]:
    """Three short CPU runs, oldest first: lr 0.1, lr 0.05, and lr 0.1 again."""
    return {"first": train_run(*SMALL), "other": train_run(*SMALL, "--lr", "0.05"), "repeat": train_run(*SMALL)}


def _json(*args: str) -> dict:
    result = invoke("compare", *args, "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_runs_lists_training_runs_newest_first(trained):
    result = invoke("runs")
    assert result.exit_code == 0, result.output
    header, rule, *lines = result.stdout.splitlines()
    assert header.split()[:4] == ["run_id", "run_name", "status", "device"]
    assert [line.split()[0] for line in lines] == [trained["repeat"], trained["other"], trained["first"]]
    assert "mlp-mnist-cpu lr=0.05  FINISHED  cpu: " in lines[1]  # named by what sets it apart
    assert all(re.search(r"mlp-mnist-cpu +FINISHED  cpu: ", line) for line in (lines[0], lines[2]))
    assert " 0.05 " in lines[1] and " 0.1 " in lines[0]

    limited = invoke("runs", "--limit", "2", "--experiment", "Default")
    assert [line.split()[0] for line in limited.stdout.splitlines()[2:]] == [trained["repeat"], trained["other"]]


def test_compare_by_default_takes_the_latest_run_per_device_and_config(trained):
    table = _json()
    assert table["run_ids"] == [trained["other"], trained["repeat"]]
    assert table["rows"]["params.lr"] == ["0.05", "0.1"]
    assert not any(name.startswith("max_abs_diff.") for name in table["rows"])


def test_compare_json_and_csv_hold_what_mlflow_holds(trained, module_store):
    ids = [trained["first"], trained["other"], trained["repeat"]]
    table = _json(*ids)
    assert table["run_ids"] == ids
    rows = table["rows"]
    client = MlflowClient(module_store)
    mean_epoch_seconds = []
    for column, run_id in enumerate(ids):
        run = client.get_run(run_id)
        assert rows["run_name"][column] == run.info.run_name
        assert rows["device.type"][column] == run.data.tags["device.type"] == "cpu"
        assert rows["device.name"][column] == run.data.tags["device.name"]
        assert rows["torch.version"][column] == run.data.tags["torch.version"]
        for metric in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy"):
            assert rows[metric][column] == run.data.metrics[metric], metric
        seconds = statistics.fmean(metric.value for metric in client.get_metric_history(run_id, "epoch_seconds"))
        assert rows["mean_epoch_seconds"][column] == seconds
        samples = statistics.fmean(metric.value for metric in client.get_metric_history(run_id, "train_samples_per_second"))
        assert rows["mean_train_samples_per_second"][column] == samples
        mean_epoch_seconds.append(seconds)
    assert rows["speedup"] == [mean_epoch_seconds[0] / seconds for seconds in mean_epoch_seconds]
    assert rows["params.lr"] == ["0.1", "0.05", "0.1"]
    assert "params.epochs" not in rows and "params.seed" not in rows  # only the params that differ
    # first and repeat are one config and seed on one device: they agree exactly; other has nothing to agree with.
    for metric in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "test_loss", "test_accuracy"):
        assert rows[f"max_abs_diff.{metric}"] == [0.0, None, 0.0]

    result = invoke("compare", ",".join(ids), "--format", "csv")
    assert result.exit_code == 0, result.output
    records = list(csv.reader(io.StringIO(result.stdout)))
    assert records[0] == ["name", *ids]
    assert [record[0] for record in records[1:]] == list(rows)
    for name, *values in records[1:]:
        expected = rows[name]
        for value, wanted in zip(values, expected):
            if wanted is None:
                assert value == ""
            elif isinstance(wanted, float):
                assert float(value) == wanted, name
            else:
                assert value == str(wanted), name


def test_compare_table_and_markdown_show_the_same_rows(trained):
    ids = [trained["first"], trained["other"]]
    names = list(_json(*ids)["rows"])

    table = invoke("compare", *ids)
    assert table.exit_code == 0, table.output
    header, rule, *lines = table.stdout.splitlines()
    assert header.split() == ["name", *ids]
    assert set(rule) == {"-", " "}
    assert [line.split()[0] for line in lines] == names
    assert any(line.startswith("speedup") and line.split()[1] == "1.00x" for line in lines)

    markdown = invoke("compare", *ids, "--format", "markdown")
    header, rule, *lines = markdown.stdout.splitlines()
    assert header == f"| name | {ids[0]} | {ids[1]} |"
    assert rule == "| --- | --- | --- |"
    assert [line.split(" | ")[0].lstrip("| ") for line in lines] == names


def test_output_writes_the_table_and_a_png_of_the_curves(trained, tmp_path):
    result = invoke("compare", trained["first"], trained["other"], "--format", "markdown", "--output", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "comparison.md").read_text() == result.stdout
    figure = tmp_path / "out" / "comparison.png"
    assert figure.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(figure) as image:
        assert image.format == "PNG"
        width, height = image.size
    assert 800 <= width <= 3000 and 300 <= height <= 2000 and width > height


def test_log_records_a_comparison_run_that_runs_and_compare_skip(trained, module_store):
    client = MlflowClient(module_store)
    result = invoke("compare", "--log", "--format", "csv")
    assert result.exit_code == 0, result.output
    logged = client.get_run(re.search(r"Logged comparison run ([0-9a-f]{32})", result.stderr).group(1))
    assert logged.info.status == "FINISHED" and logged.info.run_name == "compare-cpu"
    assert logged.data.tags["deep_learning.kind"] == "comparison"
    assert logged.data.tags["deep_learning.compared_run_ids"] == f"{trained['other']},{trained['repeat']}"
    assert {artifact.path for artifact in client.list_artifacts(logged.info.run_id)} == {"comparison.csv", "comparison.png"}

    listed = invoke("runs").stdout
    assert logged.info.run_id not in listed and trained["first"] in listed
    assert _json()["run_ids"] == [trained["other"], trained["repeat"]]
    assert_one_line_error(invoke("compare", logged.info.run_id), "is a comparison run, not a training run")


def _record(run_id: str, device_type: str, epoch_seconds: list[float], val_loss: list[float], lr: str = "0.1") -> RunRecord:
    return RunRecord(
        run_id=run_id,
        run_name=f"mlp-mnist-{device_type}",
        experiment_id="0",
        status="FINISHED",
        start_time_ms=int(run_id, 16),
        end_time_ms=None,
        params={"lr": lr, "seed": "42", "device": device_type},
        metrics={"val_loss": val_loss[-1]},
        tags={"device.type": device_type, "device.name": device_type.upper()},
        histories={"epoch_seconds": dict(enumerate(epoch_seconds, 1)), "val_loss": dict(enumerate(val_loss, 1))},
    )


def test_speedup_is_over_the_cpu_run_and_agreement_is_measured_from_it():
    cuda = _record("2" * 32, "cuda", [1.0, 1.0], [0.5, 0.25])
    cpu = _record("1" * 32, "cpu", [4.0, 6.0], [0.5, 0.2])
    other_config = _record("3" * 32, "cuda", [2.0, 2.0], [0.9, 0.8], lr="0.05")
    rows = {row.name: row.values for row in compare_runs([cuda, cpu, other_config]).rows}
    assert rows["speedup"] == (5.0, 1.0, 2.5)
    assert rows["max_abs_diff.val_loss"][0] == pytest.approx(0.05)
    assert rows["max_abs_diff.val_loss"][1:] == (0.0, None)
    assert rows["params.lr"] == ("0.1", "0.1", "0.05") and "params.device" in rows
    assert select_latest_per_device_and_config([cuda, cpu, other_config]) == [cpu, cuda, other_config]


def _scored(run_id: str, metrics: Sequence[str], device_type: str = "cpu") -> RunRecord:
    """A finished run of one config that logged the loss and `metrics` on every split, with two epochs of history."""
    keys = [f"{split}_{name}" for split in ("train", "val", "test") for name in ("loss", *metrics)]
    histories = {key: {1: 0.5, 2: 0.25 + len(key) / 100} for key in keys}
    return RunRecord(
        run_id=run_id,
        run_name=f"mlp-mnist-{device_type}",
        experiment_id="0",
        status="FINISHED",
        start_time_ms=int(run_id, 16),
        end_time_ms=int(run_id, 16) + 5000,
        params={"lr": "0.1", "seed": "42", "epochs": "2"},
        metrics={
            **{key: history[2] for key, history in histories.items()},
            "epoch_seconds": 1.5,
            "train_samples_per_second": 1000.0,
            "cuda_max_allocated_megabytes": 12.0,
            "test_accuracy_class_3": 0.9,
            "system/cpu_utilization_percentage": 50.0,
        },
        tags={"device.type": device_type, "device.name": device_type.upper()},
        histories={**histories, "epoch_seconds": {1: 1.0, 2: 2.0}},
    )


def test_the_histories_to_read_are_the_learning_metrics_the_run_logged_and_its_speed():
    run = _scored("1" * 32, ["iou", "accuracy"])
    assert run.metric_names() == ["accuracy", "iou"]
    assert histories_to_read(run) == (
        "train_loss",
        "train_accuracy",
        "train_iou",
        "val_loss",
        "val_accuracy",
        "val_iou",
        "test_loss",
        "test_accuracy",
        "test_iou",
        "epoch_seconds",
        "train_samples_per_second",
    )


def test_runs_with_different_metrics_compare_on_the_union_with_gaps():
    both, accuracy_only = _scored("1" * 32, ["accuracy", "f1"]), _scored("2" * 32, ["accuracy"], "cuda")
    comparison = compare_runs([both, accuracy_only])
    rows = {row.name: row.values for row in comparison.rows}
    learned = [name for name in rows if name.split("_")[0] in ("train", "val", "test")]
    assert learned == [f"{split}_{name}" for split in ("train", "val", "test") for name in ("loss", "accuracy", "f1")]
    assert rows["val_f1"] == (both.metrics["val_f1"], None)
    assert rows["val_accuracy"] == (both.metrics["val_accuracy"], accuracy_only.metrics["val_accuracy"])
    # One config and seed: each metric's agreement is measured from the CPU run, and a run that lacks the metric has none.
    assert rows["max_abs_diff.val_f1"] == (0.0, None)
    assert rows["max_abs_diff.val_accuracy"] == (0.0, 0.0)
    assert [name for name in rows if name.startswith("max_abs_diff.")] == [f"max_abs_diff.{name}" for name in learned]
    table = {line.split()[0]: line.split()[1:] for line in render(comparison, "table").splitlines()[2:]}
    assert table["val_f1"] == [f"{both.metrics['val_f1']:.4f}", "-"]
    assert table["max_abs_diff.test_f1"] == ["0", "-"]


def test_a_run_without_accuracy_compares_and_lists():
    iou, accuracy = _scored("1" * 32, ["iou"]), _scored("2" * 32, ["accuracy"])
    rows = {row.name: row.values for row in compare_runs([iou]).rows}
    assert [name for name in rows if name.startswith("test_")] == ["test_loss", "test_iou"]
    assert rows["test_iou"] == (iou.metrics["test_iou"],)

    header, rule, *lines = runs_table([iou]).splitlines()
    assert header.split() == [
        "run_id",
        "run_name",
        "status",
        "device",
        "dataset",
        "epochs",
        "lr",
        "batch_size",
        "seed",
        "val_iou",
        "test_iou",
        "epoch_seconds",
        "duration",
    ]
    assert lines[0].split()[-4:] == [f"{iou.metrics['val_iou']:.4f}", f"{iou.metrics['test_iou']:.4f}", "1.50", "5.0s"]

    header, rule, *lines = runs_table([accuracy, iou]).splitlines()
    assert header.split()[-6:] == ["val_accuracy", "test_accuracy", "val_iou", "test_iou", "epoch_seconds", "duration"]
    assert [line.split()[-6:-2] for line in lines] == [
        [f"{accuracy.metrics['val_accuracy']:.4f}", f"{accuracy.metrics['test_accuracy']:.4f}", "-", "-"],
        ["-", "-", f"{iou.metrics['val_iou']:.4f}", f"{iou.metrics['test_iou']:.4f}"],
    ]


@pytest.mark.parametrize("command", [["runs"], ["compare"]])
def test_unknown_experiment_is_one_line(trained, command):
    assert_one_line_error(invoke(*command, "--experiment", "nope"), "No experiment named 'nope'")


def test_unknown_run_id_is_one_line(trained):
    assert_one_line_error(invoke("compare", trained["first"], "0" * 32), f"No run '{'0' * 32}'")


def test_run_ids_and_experiment_together_are_refused(trained):
    assert_one_line_error(invoke("compare", trained["first"], "--experiment", "Default"), "Name run ids or an experiment, not both")


def test_unknown_experiment_is_one_line_in_a_real_process(trained):
    result = subprocess.run(
        [sys.executable, "-m", "deep_learning", "runs", "--experiment", "nope"], capture_output=True, text=True, env=subprocess_env()
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"Error: No experiment named 'nope' at {subprocess_env()['MLFLOW_TRACKING_URI']}; experiments there: Default."
    ]


def test_mlproject_compare_entry_point_logs_into_the_run_it_adopts(trained, module_store, tmp_path):
    result = subprocess.run(
        [str(BIN / "mlflow"), "run", str(REPO), "-e", "compare", "--env-manager", "local", "-P", "format=csv"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=subprocess_env(),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"name,{trained['other']},{trained['repeat']}" in result.stdout
    client = MlflowClient(module_store)
    comparisons = client.search_runs(["0"], "tags.\"deep_learning.kind\" = 'comparison'", order_by=["attributes.start_time DESC"])
    adopted = comparisons[0]
    assert adopted.data.tags["mlflow.project.entryPoint"] == "compare"  # the run `mlflow run` made, not a second one
    assert {artifact.path for artifact in client.list_artifacts(adopted.info.run_id)} == {"comparison.csv", "comparison.png"}
    assert adopted.info.run_id not in invoke("runs").stdout
