"""Starting a run: a new one, one that `mlflow run` started (adopted), or one reopened to resume; nested under a parent when asked; params and tags in one batch; system metrics."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Param, RunStatus, RunTag
from mlflow.environment_variables import MLFLOW_EXPERIMENT_ID, MLFLOW_EXPERIMENT_NAME
from mlflow.exceptions import MlflowException

from deep_learning.analysis.records import COMPARED_RUNS_TAG, COMPARISON, EVALUATION, KIND_TAG, PARENT_RUN_TAG
from deep_learning.core.errors import TrackingError, first_line
from deep_learning.core.interruption import signals_deferred
from deep_learning.tracking.artifacts import EVALUATION_ARTIFACT
from deep_learning.tracking.client import MAX_TAG_LENGTH, open_client, patience_seconds, redacted, tracking_uri
from deep_learning.tracking.models import checkpoint_models
from deep_learning.tracking.run import TrackedRun
from deep_learning.tracking.stores import unreachable

SYSTEM_METRICS_SECONDS = 1.0


@contextlib.contextmanager
def tracked_run(
    run_name: str,
    params: dict[str, Any],
    tags: dict[str, str],
    experiment_id: str | None = None,
    *,
    resume_run_id: str | None = None,
    parent_run_id: str | None = None,
    system_metrics: bool = False,
) -> Iterator[TrackedRun]:
    """Start (adopt under `mlflow run`, or reopen to resume) a run, log params and tags, and end it truthfully.

    A new run goes to `experiment_id` when given, else to the experiment MLflow's environment names;
    an adopted run stays where `mlflow run` put it. A run given `parent_run_id` (the active run) is
    its nested child, in its experiment. `system_metrics` samples CPU, memory and GPU.
    """
    run = _started(run_name, params, experiment_id, resume_run_id, parent_run_id, system_metrics)
    if parent_run_id is not None:
        tags = {**tags, PARENT_RUN_TAG: parent_run_id}  # the parent, also where a sibling is the active run
    try:
        _log_params_and_tags(run.client, run.run_id, params, {**tags, "tracking_uri": run.tracking_uri})
        yield run
        if not run.flush(wait_seconds=patience_seconds()):
            raise TrackingError(f"The tracking server {run.tracking_uri} stopped answering: the run's last metrics were not sent.")
    except KeyboardInterrupt:
        run.end(RunStatus.KILLED, {"error.type": "Interrupted", "error.message": "interrupted by a signal (Ctrl-C or SIGTERM)"})
        raise
    except BaseException as error:
        run.end(RunStatus.FAILED, {"error.type": type(error).__name__, "error.message": first_line(error), **getattr(error, "tags", {})})
        raise
    else:
        with signals_deferred():
            run.with_patience(lambda: mlflow.end_run(RunStatus.to_string(RunStatus.FINISHED)))
        run.close()


def _started(
    run_name: str,
    params: dict[str, Any],
    experiment_id: str | None,
    resume_run_id: str | None,
    parent_run_id: str | None,
    system_metrics: bool,
) -> TrackedRun:
    """The run started (or reopened, or adopted from `mlflow run`), in the experiment it belongs to; a store out of reach is one line."""
    uri = tracking_uri()
    client = open_client(uri)
    adopted = os.environ.get("MLFLOW_RUN_ID")
    try:
        if parent_run_id is not None and experiment_id is None:
            experiment_id = client.get_run(parent_run_id).info.experiment_id
        if experiment_id is None and not (resume_run_id or adopted or MLFLOW_EXPERIMENT_ID.get()) and MLFLOW_EXPERIMENT_NAME.get():
            experiment_id = _experiment_named(client, MLFLOW_EXPERIMENT_NAME.get())
        # Short runs need samples more often than MLflow's default of one per 10 s.
        mlflow.set_system_metrics_sampling_interval(SYSTEM_METRICS_SECONDS)
        active = mlflow.start_run(
            run_id=resume_run_id,
            run_name=None if resume_run_id else run_name,
            experiment_id=None if resume_run_id else experiment_id,
            nested=parent_run_id is not None,
            parent_run_id=_nested_under(parent_run_id),
            log_system_metrics=system_metrics,
        )
    except MlflowException as error:
        if unreachable(error):
            raise TrackingError(
                f"Cannot reach the tracking server at {redacted(uri)}: start it, or point MLFLOW_TRACKING_URI elsewhere."
            ) from None
        raise TrackingError(f"Cannot start an MLflow run at {redacted(uri)}: {first_line(error)}") from None
    run = TrackedRun(active, client, uri)
    run.params = {key: str(value) for key, value in params.items()}
    if resume_run_id is not None:
        run._checkpoint_models = checkpoint_models(client, run._info)
    if resume_run_id is not None and adopted and adopted != resume_run_id:
        # `mlflow run -P resume=ID` made a run of its own; point it at the run that goes on.
        with contextlib.suppress(Exception):
            client.set_tag(adopted, "deep_learning.resumed_run", resume_run_id)
    return run


def _nested_under(parent_run_id: str | None) -> str | None:
    """The run MLflow's run stack nests a new child under: its parent, or the sibling that is the active run
    (several children open at once, such as seeds trained together); the parent tag is then set to the parent."""
    active = mlflow.active_run()
    if parent_run_id is None or active is None:
        return parent_run_id
    return active.info.run_id


def _experiment_named(client: MlflowClient, name: str) -> str:
    """The id of experiment `name`, created if missing; safe when several runs start it at once."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return client.create_experiment(name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        return client.get_experiment_by_name(name).experiment_id  # another run created it first


def _log_params_and_tags(client: MlflowClient, run_id: str, params: dict[str, Any], tags: dict[str, str]) -> None:
    # A run adopted from `mlflow run` already holds its MLproject parameters, perhaps spelled
    # differently (1e-1 for 0.1), and a resumed run holds all of them; MLflow forbids changing
    # a param, so log only the missing ones.
    existing = client.get_run(run_id).data.params
    batch = [Param(key, str(value)) for key, value in params.items() if key not in existing]
    client.log_batch(run_id, params=batch, tags=[RunTag(key, value[:MAX_TAG_LENGTH]) for key, value in tags.items()], synchronous=True)


def log_comparison(run_ids: Sequence[str], files: Sequence[Path], run_name: str, experiment_id: str) -> TrackedRun:
    """Log a comparison's files to a new run (adopted under `mlflow run`), tagged as a comparison of `run_ids`."""
    with tracked_run(run_name, {}, {KIND_TAG: COMPARISON, COMPARED_RUNS_TAG: ",".join(run_ids)}, experiment_id) as run:
        run.log_files(files)
    return run


def log_evaluation(
    run_name: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    report: dict[str, Any],
    tags: dict[str, str],
    experiment_id: str | None,
) -> TrackedRun:
    """Log an evaluation to a new run (adopted under `mlflow run`): its metrics at step 0 and the full report as evaluation.json."""
    with tracked_run(run_name, params, {KIND_TAG: EVALUATION, **tags}, experiment_id) as run:
        run.log_metrics(metrics, step=0)
        run.log_dict(report, EVALUATION_ARTIFACT)
    return run
