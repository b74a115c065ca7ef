"""`deep-learning sync`: send the metrics a server never took, saved by a run that could not wait for it."""

from __future__ import annotations

import json
from pathlib import Path

from mlflow.entities import Metric
from mlflow.exceptions import MlflowException

from deep_learning.core.errors import TrackingError, first_line
from deep_learning.tracking.client import open_client, redacted, tracking_uri
from deep_learning.tracking.run import METRICS_PER_BATCH


def send_unsent(path: Path) -> tuple[str, int]:
    """Send the metrics saved by `save_pending` to their run, each (key, step) once; return the run id and count."""
    try:
        record = json.loads(Path(path).read_text())
        run_id, metrics = record["run_id"], record["metrics"]
    except (OSError, ValueError, KeyError) as error:
        raise TrackingError(f"{path} is not a file of unsent metrics ({first_line(error)}).") from None
    client = open_client(tracking_uri())
    try:
        present = {(key, metric.step) for key in {entry[0] for entry in metrics} for metric in client.get_metric_history(run_id, key)}
        missing = [Metric(key, value, timestamp, step) for key, value, timestamp, step in metrics if (key, step) not in present]
        for start in range(0, len(missing), METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=missing[start : start + METRICS_PER_BATCH], synchronous=True)
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_tag(run_id, "error.message", "the tracking server was unreachable when training ended; metrics sent later")
            client.set_terminated(run_id, "FAILED")
    except MlflowException as error:
        raise TrackingError(f"Cannot send to {redacted(tracking_uri())}: {first_line(error)}. Try again when it answers.") from None
    return run_id, len(missing)
