"""MLflow through one door: the only module that imports mlflow.

A run is started (or adopted, when `mlflow run` started it), its params and tags are logged in
one batch, each epoch's metrics in one call, and at the end the test score, `state_dict.pt`,
`device.json` and the model. The run ends FINISHED, FAILED (with the error recorded) or KILLED.
Reading back (experiments, runs, metric histories, artifacts, logged models) returns plain data.
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import mlflow
import numpy as np
import torch
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, Run, RunStatus, RunTag
from mlflow.environment_variables import MLFLOW_EXPERIMENT_ID, MLFLOW_EXPERIMENT_NAME
from mlflow.exceptions import MlflowException
from mlflow.models import Model, infer_signature

from deep_learning.errors import InputError, TrackingError, first_line
from deep_learning.records import COMPARED_RUNS_TAG, COMPARISON, EVALUATION, KIND_TAG, RunRecord
from deep_learning.training import EpochResult

STATE_DICT_ARTIFACT = "state_dict.pt"
DEVICE_ARTIFACT = "device.json"
MODEL_ARTIFACT = "model"
EVALUATION_ARTIFACT = "evaluation.json"
MAX_TAG_LENGTH = 5000


def tracking_uri() -> str:
    """The tracking URI in use, refusing MLflow's retired file store with a clear message."""
    uri = mlflow.get_tracking_uri()
    scheme = urlsplit(uri).scheme
    if scheme in ("", "file") and not os.environ.get("MLFLOW_ALLOW_FILE_STORE"):
        raise TrackingError(
            f"{uri} is an old MLflow file store, which MLflow 3 no longer opens. "
            "Set MLFLOW_TRACKING_URI=sqlite:///mlflow.db to use a new store (bring old runs over with "
            "`mlflow migrate-filestore --source ./mlruns --target sqlite:///mlflow.db`), or move ./mlruns away."
        )
    return uri


def redacted(uri: str) -> str:
    """The URI without user name or password, safe to print and to log."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


class TrackedRun:
    """An active MLflow run that the training loop reports to through `log_epoch`."""

    def __init__(self, run: mlflow.ActiveRun, client: MlflowClient, uri: str) -> None:
        self.run_id = run.info.run_id
        self.run_name = run.info.run_name
        self.experiment_id = run.info.experiment_id
        self.tracking_uri = redacted(uri)
        self._client = client

    def where_to_look(self) -> str:
        """Where a person finds this run: its page on a server, or the command that opens the UI."""
        if urlsplit(self.tracking_uri).scheme in ("http", "https"):
            return f"{self.tracking_uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"
        return f"mlflow ui --backend-store-uri {self.tracking_uri} --host 127.0.0.1"

    def log_epoch(self, result: EpochResult) -> None:
        """Log one epoch's metrics in a single call, with step = epoch."""
        self.log_metrics(
            {
                "train_loss": result.train_loss,
                "train_accuracy": result.train_metric,
                "val_loss": result.val_loss,
                "val_accuracy": result.val_metric,
                "epoch_seconds": result.epoch_seconds,
                "train_samples_per_second": result.train_samples_per_second,
            },
            step=result.epoch,
        )

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        timestamp = int(time.time() * 1000)
        batch = [Metric(key, float(value), timestamp, step) for key, value in metrics.items()]
        self._client.log_batch(self.run_id, metrics=batch, synchronous=True)

    def log_files(self, paths: Sequence[Path]) -> None:
        """Log files as artifacts at the run's root."""
        for path in paths:
            self._client.log_artifact(self.run_id, str(path))

    def log_dict(self, data: dict[str, Any], artifact_file: str) -> None:
        """Log a dict as a JSON artifact."""
        self._client.log_dict(self.run_id, data, artifact_file)

    def log_trained_model(self, model: torch.nn.Module, example_batch: torch.Tensor, description: dict[str, Any]) -> None:
        """Log device.json, the CPU `state_dict.pt` and an MLflow PyTorch model that loads on any device."""
        self._client.log_dict(self.run_id, description, DEVICE_ARTIFACT)
        cpu_state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / STATE_DICT_ARTIFACT
            torch.save(cpu_state, path)
            self._client.log_artifact(self.run_id, str(path))
        cpu_model = _cpu_copy(model, cpu_state)
        example = example_batch.detach().cpu().numpy().astype(np.float32)
        with torch.inference_mode():
            output = cpu_model(torch.from_numpy(example)).numpy()
        mlflow.pytorch.log_model(
            cpu_model,
            name=MODEL_ARTIFACT,
            signature=infer_signature(example, output),
            input_example=example,
            pip_requirements=model_requirements(),
        )


def _cpu_copy(model: torch.nn.Module, cpu_state: dict[str, torch.Tensor]) -> torch.nn.Module:
    cpu_model = copy.deepcopy(model).to("cpu")
    cpu_model.load_state_dict(cpu_state)
    return cpu_model.eval()


def model_requirements() -> list[str]:
    """Explicit pip requirements of the logged model (inferring them would cost seconds)."""
    return [
        f"mlflow=={mlflow.__version__}",
        f"torch=={torch.__version__.split('+')[0]}",
        f"numpy=={np.__version__}",
    ]


@contextlib.contextmanager
def tracked_run(
    run_name: str, params: dict[str, Any], tags: dict[str, str], experiment_id: str | None = None
) -> Iterator[TrackedRun]:
    """Start (or adopt, under `mlflow run`) a run, log params and tags in one batch, and end it truthfully.

    A new run goes to `experiment_id` when given, else to the experiment MLflow's environment names;
    an adopted run stays where `mlflow run` put it.
    """
    uri = tracking_uri()
    client = MlflowClient(uri)
    try:
        active = mlflow.start_run(run_name=run_name, experiment_id=experiment_id)
    except MlflowException as error:
        raise TrackingError(f"Cannot start an MLflow run at {redacted(uri)}: {first_line(error)}") from None
    run = TrackedRun(active, client, uri)
    try:
        _log_params_and_tags(client, run.run_id, params, {**tags, "tracking_uri": run.tracking_uri})
        yield run
    except KeyboardInterrupt:
        _end(client, run.run_id, RunStatus.KILLED, {"error.type": "KeyboardInterrupt", "error.message": "interrupted by the user"})
        raise
    except BaseException as error:
        _end(client, run.run_id, RunStatus.FAILED, {"error.type": type(error).__name__, "error.message": first_line(error)})
        raise
    else:
        mlflow.end_run(RunStatus.to_string(RunStatus.FINISHED))


def _log_params_and_tags(client: MlflowClient, run_id: str, params: dict[str, Any], tags: dict[str, str]) -> None:
    # A run adopted from `mlflow run` already holds its MLproject parameters, perhaps spelled
    # differently (1e-1 for 0.1); MLflow forbids changing a param, so log only the missing ones.
    existing = client.get_run(run_id).data.params
    batch = [Param(key, str(value)) for key, value in params.items() if key not in existing]
    client.log_batch(
        run_id,
        params=batch,
        tags=[RunTag(key, value[:MAX_TAG_LENGTH]) for key, value in tags.items()],
        synchronous=True,
    )


def _end(client: MlflowClient, run_id: str, status: int, tags: dict[str, str]) -> None:
    with contextlib.suppress(Exception):  # the store itself may be what failed; the run's status is best effort
        client.log_batch(run_id, tags=[RunTag(key, value[:MAX_TAG_LENGTH]) for key, value in tags.items()], synchronous=True)
    with contextlib.suppress(Exception):
        mlflow.end_run(RunStatus.to_string(status))


@contextlib.contextmanager
def _reading(what: str, uri: str) -> Iterator[None]:
    try:
        yield
    except MlflowException as error:
        raise TrackingError(f"Cannot read {what} at {redacted(uri)}: {first_line(error)}") from None


def find_experiment(name: str | None = None) -> tuple[str, str]:
    """The id and name of experiment `name`, else of the one `train` logs to ($MLFLOW_EXPERIMENT_ID, $MLFLOW_EXPERIMENT_NAME, Default)."""
    uri = tracking_uri()
    client = MlflowClient(uri)
    with _reading("the experiments", uri):
        if name is None and MLFLOW_EXPERIMENT_ID.get():
            experiment = client.get_experiment(MLFLOW_EXPERIMENT_ID.get())
        else:
            name = name or MLFLOW_EXPERIMENT_NAME.get() or "Default"
            experiment = client.get_experiment_by_name(name)
        if experiment is None or experiment.lifecycle_stage != "active":
            known = ", ".join(found.name for found in client.search_experiments()) or "none"
            raise TrackingError(f"No experiment named {name!r} at {redacted(uri)}; experiments there: {known}.")
    return experiment.experiment_id, experiment.name


def list_runs(experiment_id: str, *, limit: int | None = None, finished_only: bool = False, histories: Sequence[str] = ()) -> list[RunRecord]:
    """The experiment's training runs, newest first, with the named metric histories; comparison and evaluation runs are left out."""
    uri = tracking_uri()
    client = MlflowClient(uri)
    filter_string = "attributes.status = 'FINISHED'" if finished_only else ""
    records: list[RunRecord] = []
    token = None
    with _reading(f"the runs of experiment {experiment_id}", uri):
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


def get_run(run_id: str, histories: Sequence[str] = ()) -> RunRecord:
    """One run by id, with the named metric histories."""
    uri = tracking_uri()
    client = MlflowClient(uri)
    with _reading(f"run {run_id}", uri):
        try:
            run = client.get_run(run_id)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise InputError(f"No run {run_id!r} at {redacted(uri)}: `deep-learning runs` lists the runs there.") from None
            raise
        return _record(client, run, histories)


def _record(client: MlflowClient, run: Run, histories: Sequence[str]) -> RunRecord:
    return RunRecord(
        run_id=run.info.run_id,
        run_name=run.info.run_name,
        experiment_id=run.info.experiment_id,
        status=run.info.status,
        start_time_ms=run.info.start_time,
        end_time_ms=run.info.end_time,
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
        tags=dict(run.data.tags),
        histories={key: _history(client, run.info.run_id, key) for key in histories},
    )


def _history(client: MlflowClient, run_id: str, key: str) -> dict[int, float]:
    metrics = sorted(client.get_metric_history(run_id, key), key=lambda metric: metric.timestamp)
    return {metric.step: metric.value for metric in metrics}


def download_artifact(run: RunRecord, artifact_path: str, folder: str | Path) -> Path:
    """Download one of a run's artifacts into `folder`; a run that never logged it is an error the user can act on."""
    uri = tracking_uri()
    client = MlflowClient(uri)
    with _reading(f"the artifacts of run {run.run_id}", uri):
        if artifact_path not in {artifact.path for artifact in client.list_artifacts(run.run_id)}:
            raise InputError(f"Run {run.run_id} ({run.status}) has no {artifact_path}: use a run that finished training.")
        return Path(client.download_artifacts(run.run_id, artifact_path, str(folder)))


def logged_model_weights(model_uri: str) -> tuple[dict[str, torch.Tensor], str | None]:
    """The weights, on the CPU, of the MLflow PyTorch model at a runs:/ or models:/ URI, and the id of the run that logged it."""
    uri = tracking_uri()
    with tempfile.TemporaryDirectory() as folder, _reading(f"model {model_uri}", uri):
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=folder, tracking_uri=uri)
        source_run_id = Model.load(local).run_id
        model = mlflow.pytorch.load_model(local, map_location="cpu")
        weights = {name: tensor.detach().cpu() for name, tensor in model.state_dict().items()}
    return weights, source_run_id


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
