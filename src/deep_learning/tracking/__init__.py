"""MLflow through one door: this package is the only place that imports mlflow, and the rest of the code reaches
it through the names below. `client` opens the store; `starting` starts, adopts or reopens a run; `run` is the run
the loop reports to; `models` logs the runs' models (the final one and the kept checkpoints, as LoggedModels);
`artifacts` and `readback` read runs back; `sync` sends what a server never took; `stores` says what a store's
errors mean.

A run is started (or adopted, when `mlflow run` started it, or reopened to resume it), its params
and tags are logged in one batch, each epoch's metrics in one call (linked to the epoch's checkpoint
LoggedModel), each epoch's checkpoint, and at the end the test score, `state_dict.pt`, `device.json`, the
model and the files of the kept checkpoints' LoggedModels. The run ends FINISHED, FAILED
(with the error recorded) or KILLED. Metrics a tracking server could not take are kept and sent when
it answers again; if it never does, they are saved to a file that `deep-learning sync` sends later.
Reading back (experiments, runs, metric histories, artifacts, logged models) returns plain data.
"""

import warnings

with warnings.catch_warnings():
    # MLflow imports tqdm.auto, which in a notebook without ipywidgets warns "IProgress not found" although nothing
    # of MLflow's draws a bar in a run: a warning the run provokes but the user can do nothing about.
    warnings.filterwarnings("ignore", message="IProgress not found")
    import mlflow  # noqa: F401  (imported here first, under the filter)

from deep_learning.tracking.artifacts import (  # noqa: E402
    CONFIG_ARTIFACT,
    DATA_SPEC_ARTIFACT,
    DEVICE_ARTIFACT,
    STATE_DICT_ARTIFACT,
    best_checkpoint_uri,
    download_artifact,
    download_checkpoint,
    download_latest_checkpoint,
    logged_model_weights,
)
from deep_learning.tracking.client import patience_seconds, redacted, tracking_uri
from deep_learning.tracking.readback import child_runs, delete_run, end_pruned, find_experiment, get_run, list_runs, set_run_tags
from deep_learning.tracking.run import TrackedRun
from deep_learning.tracking.starting import log_comparison, log_evaluation, tracked_run
from deep_learning.tracking.sync import send_unsent

__all__ = [
    "CONFIG_ARTIFACT",
    "DATA_SPEC_ARTIFACT",
    "DEVICE_ARTIFACT",
    "STATE_DICT_ARTIFACT",
    "TrackedRun",
    "best_checkpoint_uri",
    "child_runs",
    "delete_run",
    "download_artifact",
    "download_checkpoint",
    "download_latest_checkpoint",
    "end_pruned",
    "find_experiment",
    "get_run",
    "list_runs",
    "log_comparison",
    "log_evaluation",
    "logged_model_weights",
    "patience_seconds",
    "redacted",
    "send_unsent",
    "set_run_tags",
    "tracked_run",
    "tracking_uri",
]
