"""The run the training loop reports to: metrics (sent by tracking.sending's thread) linked to the epoch's checkpoint LoggedModel and the split's dataset; checkpoints, the final model and the records of a run."""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import mlflow
import torch
from mlflow import MlflowClient
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.http_dataset_source import HTTPDatasetSource
from mlflow.data.meta_dataset import MetaDataset
from mlflow.entities import DatasetInput, InputTag, LoggedModelStatus, Metric, RunStatus, RunTag
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from deep_learning.analysis.records import MODEL_FORMAT_TAG, MODEL_INPUTS_TAG
from deep_learning.core.batches import ExampleInputs
from deep_learning.core.checkpoint_files import epoch_of
from deep_learning.core.errors import TrackingError, first_line
from deep_learning.core.interruption import signals_deferred
from deep_learning.core.results import EpochResult
from deep_learning.tracking.artifacts import CHECKPOINT_ARTIFACTS, STATE_DICT_ARTIFACT
from deep_learning.tracking.client import MAX_TAG_LENGTH, RETRY_SECONDS, patience_seconds, redacted
from deep_learning.tracking.models import (
    EPOCH_TAG,
    checkpoint_model_name,
    copy_model,
    create_model,
    inputs_tag,
    log_model,
    mark_best,
    same_weights,
    save_model,
    servable,
)
from deep_learning.tracking.sending import Batch, Sender
from deep_learning.tracking.stores import lost_insert_race, unreachable
from deep_learning.tracking.tracker import Tracker

SPLIT_PREFIXES = {"train_": "training", "val_": "validation", "test_": "test"}  # a metric's split, by its name
DATASET_RACE_ATTEMPTS = 5
METRICS_PER_BATCH = 1000  # MLflow's most metrics in one log_batch


class TrackedRun(Tracker):
    """An active MLflow run that the training loop reports to."""

    def __init__(self, run: mlflow.ActiveRun, client: MlflowClient, uri: str) -> None:
        self.run_id = run.info.run_id
        self.run_name = run.info.run_name
        self.experiment_id = run.info.experiment_id
        self.artifact_uri = run.info.artifact_uri
        self.tracking_uri = redacted(uri)
        self.client = client
        self._info = run.info
        self.params: dict[str, str] = {}  # the run's params, which its LoggedModels carry too
        self._datasets: dict[str, tuple[str, str]] = {}  # split -> the dataset's name and digest
        self._checkpoint_models: dict[int, str] = {}  # epoch -> its checkpoint's LoggedModel
        self._model_format = ""  # the final model's, once logged
        self._model_files = tempfile.TemporaryDirectory(prefix="deep-learning-model-")  # where models are written to be uploaded
        self._final_model: tuple[dict[str, torch.Tensor], str] | None = None  # its CPU weights and files, once logged
        self._sender = Sender(client, self.run_id, self.tracking_uri, self._linked)

    def where_to_look(self) -> str:
        """Where a person finds this run: its page on a server, or the command that opens the UI."""
        if urlsplit(self.tracking_uri).scheme in ("http", "https"):
            return f"{self.tracking_uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"
        return f"mlflow ui --backend-store-uri {self.tracking_uri} --host 127.0.0.1"

    def log_epoch(self, result: EpochResult, extra: dict[str, float] | None = None) -> None:
        """Log one epoch's metrics (and `extra` ones) in a single call, with step = epoch, linked to the epoch's
        checkpoint LoggedModel where there is one."""
        self._queue({**result.logged_metrics(), **(extra or {})}, result.epoch, link=result.epoch)

    def log_metrics(self, metrics: dict[str, float], step: int, model_id: str | None = None) -> None:
        """Queue metrics for the sender thread, which keeps them until the tracking server answers; linked to
        LoggedModel `model_id` when given."""
        self._queue(metrics, step, link=model_id)

    def _queue(self, metrics: dict[str, float], step: int, link: int | str | None) -> None:
        timestamp = int(time.time() * 1000)
        self._sender.queue(Batch([Metric(key, float(value), timestamp, step) for key, value in metrics.items()], link))

    def _linked(self, batch: Batch) -> list[Metric]:
        """The batch's metrics, each with the LoggedModel it describes and the split's dataset, once that model exists."""
        model_id = self._checkpoint_models.get(batch.link) if isinstance(batch.link, int) else batch.link
        if model_id is None:
            return batch.metrics
        linked = []
        for metric in batch.metrics:
            split = next((split for prefix, split in SPLIT_PREFIXES.items() if metric.key.startswith(prefix)), None)
            dataset_name, dataset_digest = self._datasets.get(split, (None, None))
            linked.append(
                Metric(
                    metric.key,
                    metric.value,
                    metric.timestamp,
                    metric.step,
                    dataset_name=dataset_name,
                    dataset_digest=dataset_digest,
                    model_id=model_id,
                )
            )
        return linked

    def flush(self, wait_seconds: float) -> bool:
        """Send every queued metric, waiting up to `wait_seconds` for an unreachable server; True when none are left."""
        return self._sender.flush(wait_seconds)

    def log_metric_rows(self, rows: Sequence[tuple[str, float, int]]) -> None:
        """Log (key, value, step) rows now, in batches of MLflow's limit, waiting (up to the patience) for an unreachable server."""
        timestamp = int(time.time() * 1000)
        metrics = [Metric(key, value, timestamp, step) for key, value, step in rows]
        for start in range(0, len(metrics), METRICS_PER_BATCH):
            self.with_patience(
                lambda: self.client.log_batch(self.run_id, metrics=metrics[start : start + METRICS_PER_BATCH], synchronous=True)
            )

    def set_tags(self, tags: dict[str, str]) -> None:
        """Tag the run, waiting (up to the patience) for an unreachable server."""
        self.with_patience(
            lambda: self.client.log_batch(self.run_id, tags=[RunTag(key, value[:MAX_TAG_LENGTH]) for key, value in tags.items()])
        )

    def logged_epochs(self) -> set[int]:
        """The epochs whose metrics the run already holds."""
        return {metric.step for metric in self.client.get_metric_history(self.run_id, "train_loss")}

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
                self.client.log_inputs(self.run_id, datasets=inputs)
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
            self.client.log_artifact(self.run_id, str(path), CHECKPOINT_ARTIFACTS)
            repository = get_artifact_repository(self.artifact_uri)
            for old in stale:
                with contextlib.suppress(Exception):
                    repository.delete_artifacts(f"{CHECKPOINT_ARTIFACTS}/{old.name}")
        except Exception as error:
            if not unreachable(error):
                raise TrackingError(
                    f"Cannot log checkpoint {path} to {self.artifact_uri}: {first_line(error)}. It is kept at {path}."
                ) from None

    def log_files(self, paths: Sequence[Path], folder: str | None = None) -> None:
        """Log files as artifacts at the run's root (or in its `folder`), waiting (up to the patience) for an unreachable server."""
        for path in paths:
            self.with_patience(lambda: self.client.log_artifact(self.run_id, str(path), folder))

    def log_dict(self, data: dict[str, Any], artifact_file: str) -> None:
        """Log a dict as a JSON artifact."""
        self.client.log_dict(self.run_id, data, artifact_file)

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
        _, served, shown = servable(model, example)
        taken_as = inputs_tag(type(model).__name__, shown)
        final_files = os.path.join(self._model_files.name, "final")
        self._final_model = (cpu_state, final_files)

        def log_all() -> str:
            for artifact_file, record in records.items():
                self.client.log_dict(self.run_id, record, artifact_file)
            self.client.log_artifact(self.run_id, str(path))
            model_id, model_format = log_model(
                self.client, self._info, served, shown, final_files, params=self.params, registered_name=registered_name
            )
            self.client.log_batch(self.run_id, tags=[RunTag(MODEL_FORMAT_TAG, model_format), RunTag(MODEL_INPUTS_TAG, taken_as)])
            self._model_format = model_format
            return model_id

        try:
            return self.with_patience(log_all)
        except Exception as error:
            self._final_model = None
            raise TrackingError(
                f"Cannot log the trained model to {self.artifact_uri}: {first_line(error)}. The weights are saved at {path}."
            ) from None

    def _track_checkpoint_models(self, epoch: int, stale: list[int]) -> None:
        """Create the LoggedModel of epoch's checkpoint and delete those of stale ones (on the sender thread)."""
        try:
            if epoch not in self._checkpoint_models:
                self._checkpoint_models[epoch] = create_model(
                    self.client, self._info, checkpoint_model_name(epoch), epoch, self.params, {EPOCH_TAG: str(epoch)}
                )
            for old in stale:
                if old in self._checkpoint_models:
                    self.client.delete_logged_model(self._checkpoint_models.pop(old))
        except Exception as error:
            if not unreachable(error):
                raise

    def log_checkpoint_models(
        self, model: torch.nn.Module, example: ExampleInputs, kept: dict[int, dict[str, torch.Tensor]], best: tuple[int, str] | None
    ) -> None:
        """Write the files of each kept checkpoint's LoggedModel (`kept`: epoch to weights), and tag the best one's
        (`best`: its epoch and the monitored metric, as "val_loss min") when it is kept."""
        self._sender.wait()  # the sender has created the checkpoints' LoggedModels
        exportable = None
        for epoch, weights in sorted(kept.items()):
            if epoch not in self._checkpoint_models:
                self._checkpoint_models[epoch] = create_model(
                    self.client, self._info, checkpoint_model_name(epoch), epoch, self.params, {EPOCH_TAG: str(epoch)}
                )
            model_id = self._checkpoint_models[epoch]
            if self.client.get_logged_model(model_id).status == LoggedModelStatus.READY:
                continue
            if self._final_model is not None and same_weights(weights, self._final_model[0]):  # exported once, for the final model
                self.with_patience(lambda: copy_model(self.client, model_id, self.run_id, self._final_model[1]))
                continue
            cpu_model, served, shown = exportable = exportable or servable(model, example)
            cpu_model.load_state_dict(weights)
            exports = self._model_format != "pickle"  # the final model did not export: the same model's checkpoints won't
            files = os.path.join(self._model_files.name, "checkpoint")
            self.with_patience(lambda: save_model(self.client, model_id, self.run_id, served, shown, files, exports))
        if best is not None and best[0] in kept:
            self.with_patience(lambda: mark_best(self.client, self.run_id, self._checkpoint_models[best[0]], best[1]))

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
                self.client.log_batch(
                    self.run_id, tags=[RunTag(key, value[:MAX_TAG_LENGTH]) for key, value in tags.items()], synchronous=True
                )
            with contextlib.suppress(Exception):
                mlflow.end_run(RunStatus.to_string(status))

    def close(self) -> None:
        """Stop the sender thread (after `flush`, it has nothing left to do) and remove the written model files."""
        self._sender.close()
        self._model_files.cleanup()

    def save_pending(self, folder: Path) -> Path:
        """Write metrics the server never took to a JSON file that `deep-learning sync` sends later."""
        return self._sender.save_pending(folder)


def _dataset_source(source: str):
    """An http(s) URL as MLflow's HTTP source; a folder or a user's factory as a code source naming it."""
    if urlsplit(source).scheme in ("http", "https"):
        return HTTPDatasetSource(source)
    return CodeDatasetSource({"source": source})
