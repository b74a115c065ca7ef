"""The README's first `fit` example and the task examples of docs/tasks.md run as written and log what they say."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CHAPTER, REPO, subprocess_env
from mlflow import MlflowClient
from readback import only_run

FIRST_RUN = "## A first run from Python"


def python_blocks(text: str) -> list[str]:
    """The Python code blocks of a markdown text, in order."""
    return re.findall(r"```python\n(.*?)```", text, re.DOTALL)


def readme_example() -> str:
    """The README's first `fit` example: the Python block of its section on a first run from Python."""
    section = (REPO / "README.md").read_text(encoding="utf-8").split(FIRST_RUN, 1)[1].split("\n## ", 1)[0]
    return python_blocks(section)[0]


def tasks_examples() -> list[str]:
    """The Python blocks of docs/tasks.md, in order: the README's first example, then regression, multi-label and dict batches."""
    return python_blocks((REPO / "docs" / "tasks.md").read_text(encoding="utf-8"))


def run_example(code: str, folder: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, timeout=900, env=subprocess_env())
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_the_tasks_page_opens_with_the_readme_example():
    assert tasks_examples()[0] == readme_example()


def test_the_readme_example_runs_as_written(store, tmp_path):
    result = run_example(readme_example(), tmp_path)
    run = only_run(MlflowClient(store))
    assert run.info.run_id in result.stdout.splitlines()[-1]
    assert run.info.status == "FINISHED" and run.data.params["arch"] == "small-cnn" and run.data.params["optimizer"] == "AdamW"
    for key in ("train_accuracy", "train_f1", "val_accuracy", "val_f1"):
        assert [metric.step for metric in MlflowClient(store).get_metric_history(run.info.run_id, key)] == [1, 2], key
    assert run.data.metrics["test_accuracy"] > 0.6 and run.data.metrics["test_f1"] > 0.5


@pytest.mark.parametrize(
    "index, task, metrics",
    [
        (1, "regression", {"test_mae", "test_r2"}),
        (2, "multilabel", {"val_f1", "val_accuracy"}),
        (3, "sequence", {"val_perplexity", "val_accuracy"}),
    ],
    ids=["regression", "multi-label", "dict batches"],
)
def test_each_tasks_example_runs_as_written(index, task, metrics, store, tmp_path):
    (tmp_path / "book.txt").write_text(CHAPTER.read_text(encoding="utf-8"), encoding="utf-8")  # the text the dict-batch example reads
    result = run_example(tasks_examples()[index], tmp_path)
    run = only_run(MlflowClient(store))
    assert run.info.status == "FINISHED" and result.stdout.splitlines()[-1].startswith(run.info.run_id)
    assert run.data.params["task"] == task and metrics <= set(run.data.metrics)
