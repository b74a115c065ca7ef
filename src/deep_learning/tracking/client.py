"""The tracking store: its URI (the retired file store refused, a server's HTTP retries bounded), a client that creates a new sqlite store one process at a time, and how long to wait for a server that does not answer."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent first starts are then the user's care
    fcntl = None

import mlflow
from mlflow import MlflowClient

from deep_learning.core.errors import TrackingError

# A server that is down should cost seconds, not MLflow's default minutes of retries, per call.
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
MAX_TAG_LENGTH = 5000
RETRY_SECONDS = 2.0
# Lines a run provokes but says nothing by: the system-metrics sampler's start and stop, a new store's creation.
for _logger in ("mlflow.system_metrics", "mlflow.store.db.utils"):
    logging.getLogger(_logger).setLevel(logging.WARNING)
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
