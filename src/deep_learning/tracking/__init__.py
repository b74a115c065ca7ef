"""MLflow through one door: this package is the only place that imports mlflow. This module keeps runs and their
metrics; `tracking.models` the runs' models (the final one and the kept checkpoints, as LoggedModels); `tracking.stores`
what a store's errors mean.

A run is started (or adopted, when `mlflow run` started it, or reopened to resume it), its params
and tags are logged in one batch, each epoch's metrics in one call (linked to the epoch's checkpoint
LoggedModel), each epoch's checkpoint, and at the end the test score, `state_dict.pt`, `device.json`, the
model and the files of the kept checkpoints' LoggedModels. The run ends FINISHED, FAILED
(with the error recorded) or KILLED. Metrics a tracking server could not take are kept and sent when
it answers again; if it never does, they are saved to a file that `deep-learning sync` sends later.
Reading back (experiments, runs, metric histories, artifacts, logged models) returns plain data.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import logging
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent first starts are then the user's care
    fcntl = None

import mlflow
import torch
from mlflow import MlflowClient
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.http_dataset_source import HTTPDatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import (
    DatasetInput,
    InputTag,
    LoggedModelStatus,
    Metric,
    Param,
    Run,
    RunStatus,
    RunTag,
)
from mlflow.environment_variables import MLFLOW_EXPERIMENT_ID, MLFLOW_EXPERIMENT_NAME
from mlflow.exceptions import MlflowException
from mlflow.models import Model
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT, MLFLOW_PARENT_RUN_ID

from deep_learning.core.checkpoint_files import epoch_of
from deep_learning.core.errors import InputError, TrackingError, first_line
from deep_learning.core.interruption import signals_deferred
from deep_learning.core.batches import ExampleInputs, to_device
from deep_learning.tracking.models import (
    BEST_MODEL_TAG,
    EPOCH_TAG,
    Example,
    checkpoint_model_name,
    checkpoint_models,
    create_model,
    log_model,
    mark_best,
    save_model,
    served_model,
)
from deep_learning.analysis.records import (
    COMPARED_RUNS_TAG,
    COMPARISON,
    EVALUATION,
    KIND_TAG,
    MODEL_FORMAT_TAG,
    MODEL_INPUTS_TAG,
    PARENT_RUN_TAG,
    STOP_REASON_TAG,
    RunRecord,
)
from deep_learning.tracking.stores import lost_insert_race, unreachable
from deep_learning.tracking.tracker import Tracker
from deep_learning.core.results import EpochResult

STATE_DICT_ARTIFACT = "state_dict.pt"
DEVICE_ARTIFACT = "device.json"
CONFIG_ARTIFACT = "config.yaml"  # the resolved config, which `train --config` reads back
DATA_SPEC_ARTIFACT = "data_spec.json"  # input shape and dtype, classes: what evaluate and predict rebuild from
CHECKPOINT_ARTIFACTS = "checkpoints"
EVALUATION_ARTIFACT = "evaluation.json"
SPLIT_PREFIXES = {"train_": "training", "val_": "validation", "test_": "test"}  # a metric's split, by its name
MAX_TAG_LENGTH = 5000
# A server that is down should cost seconds, not MLflow's default minutes of retries, per call.
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
RETRY_SECONDS = 2.0
DATASET_RACE_ATTEMPTS = 5
METRICS_PER_BATCH = 1000  # MLflow's most metrics in one log_batch
SYSTEM_METRICS_SECONDS = 1.0
logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # its start/stop lines are noise
# With tqdm installed (Optuna brings it), MLflow draws a progress bar on stderr for every download of a run's
# small files, where the CLI's errors are one line; a user's own setting wins.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


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
    if scheme in ("http", "https"):
        for name, value in HTTP_LIMITS.items():
            os.environ.setdefault(name, value)
    return uri


def open_client(uri: str) -> MlflowClient:
    """A client for `uri`; a new local sqlite store is created by one process at a time (MLflow's
    schema migration races when several runs start at once on a fresh file)."""
    parts = urlsplit(uri)
    if parts.scheme != "sqlite" or len(parts.path) < 2 or fcntl is None:
        return MlflowClient(uri)
    database = Path(unquote(parts.path[1:]))
    database.parent.mkdir(parents=True, exist_ok=True)
    with open(database.with_name(database.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            client = MlflowClient(uri)
            client.search_experiments(max_results=1)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return client


def redacted(uri: str) -> str:
    """The URI without user name or password, safe to print and to log."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def patience_seconds() -> float:
    """How long the end of a run waits for an unreachable tracking server ($DEEP_LEARNING_TRACKING_PATIENCE)."""
    return float(os.environ.get("DEEP_LEARNING_TRACKING_PATIENCE", "300"))


class TrackedRun(Tracker):
    """An active MLflow run that the training loop reports to."""

    def __init__(self, run: mlflow.ActiveRun, client: MlflowClient, uri: str) -> None:
        self.run_id = run.info.run_id
        self.run_name = run.info.run_name
        self.experiment_id = run.info.experiment_id
        self.artifact_uri = run.info.artifact_uri
        self.tracking_uri = redacted(uri)
        self._client = client
        self._info = run.info
        self._pending: list[_Batch] = []
        self._warned = False
        self.params: dict[str, str] = {}  # the run's params, which its LoggedModels carry too
        self._datasets: dict[str, tuple[str, str]] = {}  # split -> the dataset's name and digest
        self._checkpoint_models: dict[int, str] = {}  # epoch -> its checkpoint's LoggedModel
        self._model_format = ""  # the final model's, once logged
        # One sender thread: the training thread never waits on the store, and batches keep their order.
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deep-learning-metrics")
        self._send_error: Exception | None = None

    def where_to_look(self) -> str:
        """Where a person finds this run: its page on a server, or the command that opens the UI."""
        if urlsplit(self.tracking_uri).scheme in ("http", "https"):
            return f"{self.tracking_uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"
        return f"mlflow ui --backend-store-uri {self.tracking_uri} --host 127.0.0.1"

    def log_epoch(self, result: EpochResult, extra: dict[str, float] | None = None) -> None:
        """Log one epoch's metrics (and `extra` ones) in a single call, with step = epoch, linked to the epoch's
        checkpoint LoggedModel where there is one."""
        self._queue({**epoch_metrics(result), **(extra or {})}, result.epoch, link=result.epoch)

    def log_metrics(self, metrics: dict[str, float], step: int, model_id: str | None = None) -> None:
        """Queue metrics for the sender thread, which keeps them until the tracking server answers; linked to
        LoggedModel `model_id` when given."""
        self._queue(metrics, step, link=model_id)

    def _queue(self, metrics: dict[str, float], step: int, link: int | str | None) -> None:
        timestamp = int(time.time() * 1000)
        self._sender.submit(self._send_in_background, _Batch([Metric(key, float(value), timestamp, step) for key, value in metrics.items()], link))

    def _linked(self, batch: _Batch) -> list[Metric]:
        """The batch's metrics, each with the LoggedModel it describes and the split's dataset, once that model exists."""
        model_id = self._checkpoint_models.get(batch.link) if isinstance(batch.link, int) else batch.link
        if model_id is None:
            return batch.metrics
        linked = []
        for metric in batch.metrics:
            split = next((split for prefix, split in SPLIT_PREFIXES.items() if metric.key.startswith(prefix)), None)
            dataset_name, dataset_digest = self._datasets.get(split, (None, None))
            linked.append(Metric(metric.key, metric.value, metric.timestamp, metric.step, dataset_name=dataset_name,
                                 dataset_digest=dataset_digest, model_id=model_id))
        return linked

    def _send_in_background(self, batch: _Batch) -> None:
        # Queued on the sender thread, behind the checkpoint's LoggedModel that the batch links to.
        self._pending.append(batch)
        try:
            self._send(wait_seconds=0)
        except Exception as error:  # raised to the training thread at the next flush
            self._send_error = self._send_error or error

    def flush(self, wait_seconds: float) -> bool:
        """Send every queued metric, waiting up to `wait_seconds` for an unreachable server; True when none are left."""
        self._sender.submit(lambda: None).result()  # what the sender had queued has been tried
        if self._send_error is not None:
            error, self._send_error = self._send_error, None
            raise error
        return self._sender.submit(self._send, wait_seconds).result()

    def _send(self, wait_seconds: float) -> bool:
        deadline = time.monotonic() + wait_seconds
        while self._pending:
            try:
                self._client.log_batch(self.run_id, metrics=self._linked(self._pending[0]), synchronous=True)
            except Exception as error:
                if not unreachable(error):
                    raise
                if not self._warned:
                    print(f"Tracking server {self.tracking_uri} does not answer: training goes on, metrics are kept.", file=sys.stderr, flush=True)
                    self._warned = True
                if time.monotonic() >= deadline:
                    return False
                time.sleep(RETRY_SECONDS)
            else:
                self._pending.pop(0)
        return True

    def log_metric_rows(self, rows: Sequence[tuple[str, float, int]]) -> None:
        """Log (key, value, step) rows now, in batches of MLflow's limit, waiting (up to the patience) for an unreachable server."""
        timestamp = int(time.time() * 1000)
        metrics = [Metric(key, value, timestamp, step) for key, value, step in rows]
        for start in range(0, len(metrics), METRICS_PER_BATCH):
            self.with_patience(lambda: self._client.log_batch(self.run_id, metrics=metrics[start:start + METRICS_PER_BATCH], synchronous=True))

    def set_tags(self, tags: dict[str, str]) -> None:
        """Tag the run, waiting (up to the patience) for an unreachable server."""
        self.with_patience(lambda: self._client.log_batch(self.run_id, tags=[RunTag(key, value[:MAX_TAG_LENGTH]) for key, value in tags.items()]))

    def logged_epochs(self) -> set[int]:
        """The epochs whose metrics the run already holds."""
        return {metric.step for metric in self._client.get_metric_history(self.run_id, "train_loss")}

    def log_datasets(self, name: str, source_url: str, digests: dict[str, str]) -> None:
        """Record each split the run used as an MLflow dataset input (name, split, content digest)."""
        self._datasets = {split: (f"{name}-{split}", digest) for split, digest in digests.items()}
        inputs = [
            DatasetInput(
                MetaDataset(_dataset_source(source_url), name=f"{name}-{split}", digest=digest)._to_mlflow_entity(),
                tags=[InputTag(MLFLOW_DATASET_CONTEXT, split)],
            )
            for split, digest in digests.items()
        ]
        # Runs starting at once into one experiment may both insert the same dataset; the loser's
        # insert fails on the store's unique constraint, and a retry finds the dataset and links it.
        for attempt in range(DATASET_RACE_ATTEMPTS):
            try:
                self._client.log_inputs(self.run_id, datasets=inputs)
                return
            except MlflowException as error:
                if not lost_insert_race(error) or attempt == DATASET_RACE_ATTEMPTS - 1:
                    raise
                time.sleep(random.uniform(0.05, 0.5))

    def log_checkpoint(self, path: Path, stale: list[Path]) -> None:
        """Log the epoch's checkpoint and delete the ones no longer kept; an unreachable server only delays this.

        The sender thread creates the checkpoint's LoggedModel (its files come at the end of the run, for the
        checkpoints kept) and deletes those of stale checkpoints."""
        self._sender.submit(self._track_checkpoint_models, epoch_of(path), [epoch_of(old) for old in stale])
        try:
            self._client.log_artifact(self.run_id, str(path), CHECKPOINT_ARTIFACTS)
            repository = get_artifact_repository(self.artifact_uri)
            for old in stale:
                with contextlib.suppress(Exception):
                    repository.delete_artifacts(f"{CHECKPOINT_ARTIFACTS}/{old.name}")
        except Exception as error:
            if not unreachable(error):
                raise TrackingError(f"Cannot log checkpoint {path} to {self.artifact_uri}: {first_line(error)}. It is kept at {path}.") from None

    def log_files(self, paths: Sequence[Path], folder: str | None = None) -> None:
        """Log files as artifacts at the run's root (or in its `folder`), waiting (up to the patience) for an unreachable server."""
        for path in paths:
            self.with_patience(lambda: self._client.log_artifact(self.run_id, str(path), folder))

    def log_dict(self, data: dict[str, Any], artifact_file: str) -> None:
        """Log a dict as a JSON artifact."""
        self._client.log_dict(self.run_id, data, artifact_file)

    def log_trained_model(
        self, model: torch.nn.Module, example: ExampleInputs, records: dict[str, dict[str, Any]], folder: Path, registered_name: str = ""
    ) -> str:
        """Log the run's `records` (device.json, config.yaml, ...: file name to content), the CPU `state_dict.pt`
        (first saved in `folder`) and a model that loads on any device, shown to MLflow with `example` (a batch's inputs
        and the dimensions the data varies); register it as `registered_name` when given. Return the model's LoggedModel id."""
        cpu_state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / STATE_DICT_ARTIFACT
        torch.save(cpu_state, path)
        _, served, shown = _servable(model, example)
        inputs_tag = _say_how_it_takes_inputs(type(model).__name__, shown)

        def log_all() -> str:
            for artifact_file, record in records.items():
                self._client.log_dict(self.run_id, record, artifact_file)
            self._client.log_artifact(self.run_id, str(path))
            model_id, model_format = log_model(self._client, self._info, served, shown, params=self.params, registered_name=registered_name)
            self._client.log_batch(self.run_id, tags=[RunTag(MODEL_FORMAT_TAG, model_format), RunTag(MODEL_INPUTS_TAG, inputs_tag)])
            self._model_format = model_format
            return model_id

        try:
            return self.with_patience(log_all)
        except Exception as error:
            raise TrackingError(f"Cannot log the trained model to {self.artifact_uri}: {first_line(error)}. The weights are saved at {path}.") from None

    def _track_checkpoint_models(self, epoch: int, stale: list[int]) -> None:
        """Create the LoggedModel of epoch's checkpoint and delete those of stale ones (on the sender thread)."""
        try:
            if epoch not in self._checkpoint_models:
                self._checkpoint_models[epoch] = create_model(
                    self._client, self._info, checkpoint_model_name(epoch), epoch, self.params, {EPOCH_TAG: str(epoch)}
                )
            for old in stale:
                if old in self._checkpoint_models:
                    self._client.delete_logged_model(self._checkpoint_models.pop(old))
        except Exception as error:
            if not unreachable(error):
                self._send_error = self._send_error or error

    def log_checkpoint_models(self, model: torch.nn.Module, example: ExampleInputs, kept: dict[int, dict[str, torch.Tensor]], best: tuple[int, str] | None) -> None:
        """Write the files of each kept checkpoint's LoggedModel (`kept`: epoch to weights), and tag the best one's
        (`best`: its epoch and the monitored metric, as "val_loss min") when it is kept."""
        self._sender.submit(lambda: None).result()  # the sender has created the checkpoints' LoggedModels
        cpu_model, served, example = _servable(model, example)
        for epoch, weights in sorted(kept.items()):
            cpu_model.load_state_dict(weights)
            if epoch not in self._checkpoint_models:
                self._checkpoint_models[epoch] = create_model(self._client, self._info, checkpoint_model_name(epoch), epoch, self.params, {EPOCH_TAG: str(epoch)})
            if self._client.get_logged_model(self._checkpoint_models[epoch]).status != LoggedModelStatus.READY:
                exports = self._model_format != "pickle"  # the final model did not export: the same model's checkpoints won't
                self.with_patience(lambda: save_model(self._client, self._checkpoint_models[epoch], self.run_id, served, example, exports))
        if best is not None and best[0] in kept:
            self.with_patience(lambda: mark_best(self._client, self.run_id, self._checkpoint_models[best[0]], best[1]))

    def with_patience(self, call):
        """Run a tracking call, retrying while the server is unreachable, up to the patience."""
        deadline = time.monotonic() + patience_seconds()
        while True:
            try:
                return call()
            except Exception as error:
                if not unreachable(error) or time.monotonic() >= deadline:
                    raise
                time.sleep(RETRY_SECONDS)

    def end(self, status: int, tags: dict[str, str]) -> None:
        """End the run with `status` and tags saying why; best effort and quick, since the store may be what failed."""
        with signals_deferred():
            with contextlib.suppress(Exception):
                self.flush(wait_seconds=0)
            self.close()
            with contextlib.suppress(Exception):
                self._client.log_batch(self.run_id, tags=[RunTag(key, value[:MAX_TAG_LENGTH]) for key, value in tags.items()], synchronous=True)
            with contextlib.suppress(Exception):
                mlflow.end_run(RunStatus.to_string(status))

    def close(self) -> None:
        """Stop the sender thread (after `flush`, it has nothing left to do)."""
        self._sender.shutdown(wait=False)

    def save_pending(self, folder: Path) -> Path:
        """Write metrics the server never took to a JSON file that `deep-learning sync` sends later."""
        path = folder / "unsent-metrics.json"
        record = {
            "tracking_uri": self.tracking_uri,
            "run_id": self.run_id,
            "metrics": [[metric.key, metric.value, metric.timestamp, metric.step] for batch in self._pending for metric in batch.metrics],
        }
        path.write_text(json.dumps(record))
        return path


def _servable(model: torch.nn.Module, example: ExampleInputs) -> tuple[torch.nn.Module, torch.nn.Module, Example]:
    """A CPU copy of the model, the module MLflow's flavour logs (the copy, or it wrapped in `Served`), and its Example."""
    cpu_model = copy.deepcopy(model).to("cpu").eval()
    cpu_inputs = to_device(example.inputs, torch.device("cpu"))
    served = served_model(cpu_model, cpu_inputs)
    return cpu_model, served, Example.of(served, cpu_inputs, example.varying_dims)


def _say_how_it_takes_inputs(model_name: str, example: Example) -> str:
    """The logged model's inputs, as its run's tag says them; for several, a warning that pyfunc takes one array."""
    if not example.input_names:
        return "tensor"
    names = ", ".join(example.input_names)
    print(
        f"Warning: {model_name} takes {len(example.input_names)} inputs ({names}); the logged model takes them positionally, in that "
        "order, through mlflow.pytorch.load_model, but MLflow's pyfunc and `mlflow models serve` pass one array to a PyTorch model.",
        file=sys.stderr, flush=True,
    )
    return f"positional: {names}"


@dataclasses.dataclass(frozen=True)
class _Batch:
    """Metrics queued for the sender, and what they describe: an epoch's checkpoint LoggedModel, a LoggedModel's id, or nothing."""

    metrics: list[Metric]
    link: int | str | None = None


def _dataset_source(source: str):
    """An http(s) URL as MLflow's HTTP source; a folder or a user's factory as a code source naming it."""
    if urlsplit(source).scheme in ("http", "https"):
        return HTTPDatasetSource(source)
    return CodeDatasetSource({"source": source})


def epoch_metrics(result: EpochResult) -> dict[str, float]:
    """The metrics a run logs for one epoch, by their contract names: losses and metrics, then speed."""
    return {
        **result.learning_metrics(),
        **result.step_stats,
        "epoch_seconds": result.epoch_seconds,
        "train_samples_per_second": result.train_samples_per_second,
    }




def download_latest_checkpoint(run_id: str, folder: Path) -> Path | None:
    """Download the run's latest logged checkpoint into `folder`; None when it logged none."""
    client = MlflowClient(tracking_uri())
    names = sorted(_logged_checkpoints(client, run_id))
    return _download_checkpoint(client, run_id, names[-1], folder) if names else None


def download_checkpoint(run_id: str, folder: Path, name: str) -> Path | None:
    """Checkpoint `name` of a run in `folder`: the local copy, else the one the run logged; None when neither exists."""
    path = folder / name
    if path.is_file() or not run_id:
        return path if path.is_file() else None
    client = MlflowClient(tracking_uri())
    return _download_checkpoint(client, run_id, name, folder) if name in _logged_checkpoints(client, run_id) else None


def _logged_checkpoints(client: MlflowClient, run_id: str) -> list[str]:
    return [Path(item.path).name for item in client.list_artifacts(run_id, CHECKPOINT_ARTIFACTS) if item.path.endswith(".pt")]


def _download_checkpoint(client: MlflowClient, run_id: str, name: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(client.download_artifacts(run_id, f"{CHECKPOINT_ARTIFACTS}/{name}", str(folder)))


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
            raise TrackingError(f"Cannot reach the tracking server at {redacted(uri)}: start it, or point MLFLOW_TRACKING_URI elsewhere.") from None
        raise TrackingError(f"Cannot start an MLflow run at {redacted(uri)}: {first_line(error)}") from None
    run = TrackedRun(active, client, uri)
    run.params = {key: str(value) for key, value in params.items()}
    if resume_run_id is not None:
        run._checkpoint_models = checkpoint_models(client, run._info)
    if resume_run_id is not None and adopted and adopted != resume_run_id:
        # `mlflow run -P resume=ID` made a run of its own; point it at the run that goes on.
        with contextlib.suppress(Exception):
            client.set_tag(adopted, "deep_learning.resumed_run", resume_run_id)
    if parent_run_id is not None:
        tags = {**tags, PARENT_RUN_TAG: parent_run_id}  # the parent, also where a sibling is the active run
    try:
        _log_params_and_tags(client, run.run_id, params, {**tags, "tracking_uri": run.tracking_uri})
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
    client.log_batch(
        run_id,
        params=batch,
        tags=[RunTag(key, value[:MAX_TAG_LENGTH]) for key, value in tags.items()],
        synchronous=True,
    )


def send_unsent(path: Path) -> tuple[str, int]:
    """Send the metrics saved by `save_pending` to their run, each (key, step) once; return the run id and count."""
    try:
        record = json.loads(Path(path).read_text())
        run_id, metrics = record["run_id"], record["metrics"]
    except (OSError, ValueError, KeyError) as error:
        raise TrackingError(f"{path} is not a file of unsent metrics ({first_line(error)}).") from None
    client = MlflowClient(tracking_uri())
    try:
        present = {(key, metric.step) for key in {entry[0] for entry in metrics} for metric in client.get_metric_history(run_id, key)}
        missing = [Metric(key, value, timestamp, step) for key, value, timestamp, step in metrics if (key, step) not in present]
        for start in range(0, len(missing), METRICS_PER_BATCH):
            client.log_batch(run_id, metrics=missing[start:start + METRICS_PER_BATCH], synchronous=True)
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_tag(run_id, "error.message", "the tracking server was unreachable when training ended; metrics sent later")
            client.set_terminated(run_id, "FAILED")
    except MlflowException as error:
        raise TrackingError(f"Cannot send to {redacted(tracking_uri())}: {first_line(error)}. Try again when it answers.") from None
    return run_id, len(missing)


@contextlib.contextmanager
def _reading(what: str, uri: str) -> Iterator[None]:
    try:
        yield
    except MlflowException as error:
        raise TrackingError(f"Cannot read {what} at {redacted(uri)}: {first_line(error)}") from None


def find_experiment(name: str | None = None) -> tuple[str, str]:
    """The id and name of experiment `name`, else of the one `train` logs to ($MLFLOW_EXPERIMENT_ID, $MLFLOW_EXPERIMENT_NAME, Default)."""
    uri = tracking_uri()
    client = open_client(uri)
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


def list_runs(experiment_id: str, *, limit: int | None = None, finished_only: bool = False, histories: Histories = ()) -> list[RunRecord]:
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


def child_runs(parent_run_id: str, histories: Histories = ()) -> list[RunRecord]:
    """The runs nested under `parent_run_id` (a sweep's children), oldest first, with the named metric histories."""
    uri = tracking_uri()
    client = open_client(uri)
    with _reading(f"the children of run {parent_run_id}", uri):
        parent = client.get_run(parent_run_id)
        children = client.search_runs(
            [parent.info.experiment_id], f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{parent_run_id}'", order_by=["attributes.start_time ASC"], max_results=5000
        )
        return [_record(client, run, histories) for run in children]


def set_run_tags(run_id: str, tags: dict[str, str]) -> None:
    """Tag a run that has ended (a search's trial with how it ended)."""
    open_client(tracking_uri()).log_batch(run_id, tags=[RunTag(key, value[:MAX_TAG_LENGTH]) for key, value in tags.items()], synchronous=True)


def end_pruned(run_id: str, state_tag: str, reason: str) -> None:
    """Mark a finished trial's run as one its search pruned: status KILLED (stopped before its last epoch, by the study), tagged why."""
    set_run_tags(run_id, {state_tag: "PRUNED", STOP_REASON_TAG: reason})
    open_client(tracking_uri()).set_terminated(run_id, "KILLED")


def delete_run(run_id: str) -> None:
    """Delete a run (a sweep's child that it replaces with a new one)."""
    open_client(tracking_uri()).delete_run(run_id)


def get_run(run_id: str, histories: Histories = ()) -> RunRecord:
    """One run by id, with the named metric histories (or those a function of the run names)."""
    uri = tracking_uri()
    client = open_client(uri)
    with _reading(f"run {run_id}", uri):
        try:
            run = client.get_run(run_id)
        except MlflowException as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise InputError(f"No run {run_id!r} at {redacted(uri)}: `deep-learning runs` lists the runs there.") from None
            raise
        return _record(client, run, histories)


Histories = Sequence[str] | Callable[[RunRecord], Sequence[str]]  # metric keys, or a function of the run naming them


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


def download_artifact(run: RunRecord, artifact_path: str, folder: str | Path) -> Path:
    """Download one of a run's artifacts into `folder`; a run that never logged it is an error the user can act on."""
    uri = tracking_uri()
    client = open_client(uri)
    with _reading(f"the artifacts of run {run.run_id}", uri):
        if artifact_path not in {artifact.path for artifact in client.list_artifacts(run.run_id)}:
            raise InputError(f"Run {run.run_id} ({run.status}) has no {artifact_path}: use a run that finished training.")
        return Path(client.download_artifacts(run.run_id, artifact_path, str(folder)))


def best_checkpoint_uri(run_id: str) -> str:
    """The models:/ URI of the best checkpoint run `run_id` kept (its LoggedModel tagged deep_learning.best)."""
    run = get_run(run_id)
    model_id = run.tags.get(BEST_MODEL_TAG)
    if not model_id:
        raise InputError(f"Run {run_id} kept no best checkpoint as a model: train with --keep-best 1 (best by --monitor).")
    return f"models:/{model_id}"


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
