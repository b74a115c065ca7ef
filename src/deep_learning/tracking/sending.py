"""A run's metrics sent from one background thread: the training thread never waits on the store, batches keep their
order, and a server that does not answer only delays them (they are kept, and saved for `deep-learning sync` at the end)."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric

from deep_learning.tracking.client import RETRY_SECONDS
from deep_learning.tracking.stores import unreachable


@dataclasses.dataclass(frozen=True)
class Batch:
    """Metrics queued for the sender, and what they describe: an epoch's checkpoint LoggedModel, a LoggedModel's id, or nothing."""

    metrics: list[Metric]
    link: int | str | None = None


class Sender:
    """The thread that sends a run's metric batches in order; `linked` gives a batch's metrics as they are sent
    (with the LoggedModel they describe, once it exists). An error it meets is raised at the next `flush`."""

    def __init__(self, client: MlflowClient, run_id: str, tracking_uri: str, linked: Callable[[Batch], list[Metric]]) -> None:
        self.client, self.run_id, self.tracking_uri, self.linked = client, run_id, tracking_uri, linked
        self.pending: list[Batch] = []
        self._warned = False
        self._error: Exception | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deep-learning-metrics")

    def submit(self, call: Callable[..., Any], *args: Any) -> None:
        """Run `call` on the sender thread, behind what is queued; keep an error it raises for the next flush."""
        self._thread.submit(self._kept_errors, call, *args)

    def queue(self, batch: Batch) -> None:
        """Send `batch` after everything queued before it."""
        self.submit(self._append_and_send, batch)

    def wait(self) -> None:
        """Return once what the thread had queued has been tried."""
        self._thread.submit(lambda: None).result()

    def flush(self, wait_seconds: float) -> bool:
        """Send every queued metric, waiting up to `wait_seconds` for an unreachable server; True when none are left."""
        self.wait()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return self._thread.submit(self._send, wait_seconds).result()

    def close(self) -> None:
        """Stop the thread (after `flush`, it has nothing left to do)."""
        self._thread.shutdown(wait=False)

    def save_pending(self, folder: Path) -> Path:
        """Write metrics the server never took to a JSON file that `deep-learning sync` sends later."""
        path = folder / "unsent-metrics.json"
        record = {
            "tracking_uri": self.tracking_uri,
            "run_id": self.run_id,
            "metrics": [[metric.key, metric.value, metric.timestamp, metric.step] for batch in self.pending for metric in batch.metrics],
        }
        path.write_text(json.dumps(record))
        return path

    def _kept_errors(self, call: Callable[..., Any], *args: Any) -> None:
        try:
            call(*args)
        except Exception as error:  # raised to the training thread at the next flush
            self._error = self._error or error

    def _append_and_send(self, batch: Batch) -> None:
        # Queued on the sender thread, behind the checkpoint's LoggedModel that the batch links to.
        self.pending.append(batch)
        self._send(wait_seconds=0)

    def _send(self, wait_seconds: float) -> bool:
        deadline = time.monotonic() + wait_seconds
        while self.pending:
            try:
                self.client.log_batch(self.run_id, metrics=self.linked(self.pending[0]), synchronous=True)
            except Exception as error:
                if not unreachable(error):
                    raise
                self._warn_once()
                if time.monotonic() >= deadline:
                    return False
                time.sleep(RETRY_SECONDS)
            else:
                self.pending.pop(0)
        return True

    def _warn_once(self) -> None:
        if not self._warned:
            print(f"Tracking server {self.tracking_uri} does not answer: training goes on, metrics are kept.", file=sys.stderr, flush=True)
            self._warned = True
