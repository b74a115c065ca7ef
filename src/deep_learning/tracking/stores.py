"""What a tracking store's errors mean: it is unreachable (retry, keep what was to be sent), or two runs raced to insert."""

from __future__ import annotations

import requests
from mlflow.exceptions import MlflowException


def unreachable(error: BaseException) -> bool:
    """True when the store (a tracking server) did not answer, as opposed to refusing the request."""
    if isinstance(error, (requests.RequestException, ConnectionError)):
        return True
    return isinstance(error, MlflowException) and "failed with exception" in str(error)


def lost_insert_race(error: MlflowException) -> bool:
    """True when another run inserted the same row first (the store's unique constraint)."""
    message = str(error).lower()
    return "unique constraint" in message or "integrityerror" in message
