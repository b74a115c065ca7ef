"""Reading runs back as plain records (experiments, runs, children, metric histories), and the few changes made to finished runs."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator, Sequence

from mlflow import MlflowClient
from mlflow.entities import Run, RunTag
from mlflow.environment_variables import MLFLOW_EXPERIMENT_ID, MLFLOW_EXPERIMENT_NAME
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from deep_learning.analysis.records import KIND_TAG, STOP_REASON_TAG, RunRecord
from deep_learning.core.errors import InputError, TrackingError, first_line
from deep_learning.tracking.client import MAX_TAG_LENGTH, open_client, redacted, tracking_uri

Histories = Sequence[str] | Callable[[RunRecord], Sequence[str]]  # metric keys, or a function of the run naming them


@contextlib.contextmanager
def reading(what: str, uri: str) -> Iterator[None]:
    try:
        yield
    except MlflowException as error:
        raise TrackingError(f"Cannot read {what} at {redacted(uri)}: {first_line(error)}") from None


def find_experiment(name: str | None = None) -> tuple[str, str]:
    """The id and name of experiment `name`, else of the one `train` logs to ($MLFLOW_EXPERIMENT_ID, $MLFLOW_EXPERIMENT_NAME, Default)."""
    uri = tracking_uri()
    client = open_client(uri)
    with reading("the experiments", uri):
        if name is None and MLFLOW_EXPERIMENT_ID.get():
            experiment = client.get_experiment(MLFLOW_EXPERIMENT_ID.get())
        else:
            name = name or MLFLOW_EXPERIMENT_NAME.get() or "Default"
            experiment = client.get_experiment_by_name(name)
        if experiment is None or experiment.lifecycle_stage != "active":
            known = ", ".join(found.name for found in client.search_experiments()) or "none"
            raise TrackingError(f"No experiment named {name!r} at {redacted(uri)}; experiments there: {known}.")
    return experiment.experiment_id, experiment.name


def list_runs(experiment_id: str, *, limit: int | None = None, finished_only: bool = False, histories: Histories = ()) -> list[RunRecord]:
    """The experiment's training runs, newest first, with the named metric histories; comparison and evaluation runs are left out."""
    uri = tracking_uri()
    client = open_client(uri)
    filter_string = "attributes.status = 'FINISHED'" if finished_only else ""
    records: list[RunRecord] = []
    token = None
    with reading(f"the runs of experiment {experiment_id}", uri):
        while True:
            page = client.search_runs(
                [experiment_id], filter_string, order_by=["attributes.start_time DESC"], max_results=500, page_token=token
            )
            for run in page:
                if KIND_TAG not in run.data.tags:
                    records.append(_record(client, run, histories))
                    if len(records) == limit:
                        return records
            token = page.token
            if not token:
                return records


def child_runs(parent_run_id: str, histories: Histories = ()) -> list[RunRecord]:
    """The runs nested under `parent_run_id` (a sweep's children), oldest first, with the named metric histories."""
    uri = tracking_uri()
    client = open_client(uri)
    with reading(f"the children of run {parent_run_id}", uri):
        parent = client.get_run(parent_run_id)
        children = client.search_runs(
            [parent.info.experiment_id],
            f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}'",
            order_by=["attributes.start_time ASC"],
            max_results=5000,
        )
        return [_record(client, run, histories) for run in children]


def get_run(run_id: str, histories: Histories = ()) -> RunRecord:
    """One run by id, with the named metric histories (or those a function of the run names)."""
    uri = tracking_uri()
    client = open_client(uri)
    with reading(f"run {run_id}", uri):
        try:
            run = client.get_run(run_id)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise InputError(f"No run {run_id!r} at {redacted(uri)}: `deep-learning runs` lists the runs there.") from None
            raise
        return _record(client, run, histories)


def _record(client: MlflowClient, run: Run, histories: Histories) -> RunRecord:
    record = RunRecord(
        run_id=run.info.run_id,
        run_name=run.info.run_name,
        experiment_id=run.info.experiment_id,
        status=run.info.status,
        start_time_ms=run.info.start_time,
        end_time_ms=run.info.end_time,
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
        tags=dict(run.data.tags),
    )
    keys = histories(record) if callable(histories) else histories
    return dataclasses.replace(record, histories={key: _history(client, record.run_id, key) for key in keys})


def _history(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    metrics = sorted(client.get_metric_history(run_id, key), key=lambda metric: metric.timestamp)
    return {metric.step: metric.value for metric in metrics}


def set_run_tags(run_id: str, tags: dict[str, str]) -> None:
    """Tag a run that has ended (a search's trial with how it ended)."""
    open_client(tracking_uri()).log_batch(
        run_id, tags=[RunTag(key, value[:MAX_TAG_LENGTH]) for key, value in tags.items()], synchronous=True
    )


def end_pruned(run_id: str, state_tag: str, reason: str) -> None:
    """Mark a finished trial's run as one its search pruned: status KILLED (stopped before its last epoch, by the study), tagged why."""
    set_run_tags(run_id, {state_tag: "PRUNED", STOP_REASON_TAG: reason})
    open_client(tracking_uri()).set_terminated(run_id, "KILLED")


def delete_run(run_id: str) -> None:
    """Delete a run (a sweep's child that it replaces with a new one)."""
    open_client(tracking_uri()).delete_run(run_id)
