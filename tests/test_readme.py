"""The README's "Any model, any data, any task" examples run as written and log what the README says."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from conftest import CHAPTER, REPO, subprocess_env
from readback import only_run

SECTION = "## Any model, any data, any task"


def readme_examples() -> list[str]:
    """The Python blocks of the README's section on any model, data and task, in order."""
    section = (REPO / "README.md").read_text().split(SECTION, 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def run_example(code: str, folder: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, timeout=900, env=subprocess_env())
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_the_readme_example_runs_as_written(store, tmp_path):
    result = run_example(readme_examples()[0], tmp_path)
    run = only_run(MlflowClient(store))
    assert run.info.run_id in result.stdout.splitlines()[-1]
    assert run.info.status == "FINISHED" and run.data.params["arch"] == "small-cnn" and run.data.params["optimizer"] == "AdamW"
    for key in ("train_accuracy", "train_f1", "val_accuracy", "val_f1"):
        assert [metric.step for metric in MlflowClient(store).get_metric_history(run.info.run_id, key)] == [1, 2], key
    assert run.data.metrics["test_accuracy"] > 0.6 and run.data.metrics["test_f1"] > 0.5


@pytest.mark.parametrize(
    "index, task, metrics",
    [(1, "regression", {"test_mae", "test_r2"}), (2, "multilabel", {"val_f1", "val_accuracy"}), (3, "sequence", {"val_perplexity", "val_accuracy"})],
    ids=["regression", "multi-label", "dict batches"],
)
def test_each_tasks_example_runs_as_written(index, task, metrics, store, tmp_path):
    (tmp_path / "book.txt").write_text(CHAPTER.read_text(encoding="utf-8"), encoding="utf-8")  # the text the dict-batch example reads
    result = run_example(readme_examples()[index], tmp_path)
    run = only_run(MlflowClient(store))
    assert run.info.status == "FINISHED" and result.stdout.splitlines()[-1].startswith(run.info.run_id)
    assert run.data.params["task"] == task and metrics <= set(run.data.metrics)
