"""A study's parent run: one MLflow run over its children, which an interruption names as the thing to resume."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from deep_learning import tracking
from deep_learning.core.errors import Interrupted


@contextlib.contextmanager
def parent_run(name: str, params: dict[str, Any], tags: dict[str, str], resume: str | None) -> Iterator[tracking.TrackedRun]:
    """Start (or, with `resume`, reopen) the parent run and end it as its children ended: `sweep --resume PARENT` continues it."""
    with tracking.tracked_run(name, params, tags, resume_run_id=resume) as parent:
        try:
            yield parent
        except Interrupted as interrupted:
            interrupted.sweep_run_id = parent.run_id  # what to resume: the study, not its child
            raise
