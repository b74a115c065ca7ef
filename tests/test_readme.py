"""The README's "Your own model, data and metrics" example runs as written and logs what the README says."""

from __future__ import annotations

import re
import subprocess
import sys

from mlflow import MlflowClient

from conftest import REPO, subprocess_env
from readback import only_run

SECTION = "## Your own model, data and metrics"


def readme_example() -> str:
    """The first Python block of the README's section on a user's own model."""
    section = (REPO / "README.md").read_text().split(SECTION, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_the_readme_example_runs_as_written(store):
    result = subprocess.run([sys.executable, "-c", readme_example()], capture_output=True, text=True, timeout=900, env=subprocess_env())
    assert result.returncode == 0, result.stderr[-3000:]
    run = only_run(MlflowClient(store))
    assert run.info.run_id in result.stdout.splitlines()[-1]
    assert run.info.status == "FINISHED" and run.data.params["arch"] == "small-cnn" and run.data.params["optimizer"] == "AdamW"
    for key in ("train_accuracy", "train_f1", "val_accuracy", "val_f1"):
        assert [metric.step for metric in MlflowClient(store).get_metric_history(run.info.run_id, key)] == [1, 2], key
    assert run.data.metrics["test_accuracy"] > 0.6 and run.data.metrics["test_f1"] > 0.5
