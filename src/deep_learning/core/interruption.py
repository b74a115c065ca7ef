"""Ctrl-C and SIGTERM end a run cleanly once; a second signal exits at once; none cuts short a run's last words."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

from deep_learning.core.errors import Interrupted

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def signals_interrupt_runs(signals: tuple[int, ...] = HANDLED_SIGNALS) -> Iterator[None]:
    """Turn the first of `signals` (SIGINT, SIGTERM) into `Interrupted`, so the run can be marked KILLED; the next one exits now.

    Signal handlers belong to the main thread: elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def exit_now(signal_number: int, frame) -> None:
        os._exit(128 + signal_number)

    def interrupt(signal_number: int, frame) -> None:
        for handled in signals:
            signal.signal(handled, exit_now)
        raise Interrupted(signal_number)

    previous = {handled: signal.signal(handled, interrupt) for handled in signals}
    try:
        yield
    finally:
        for handled, handler in previous.items():
            signal.signal(handled, handler)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold off SIGINT/SIGTERM while a run's final status is written, so that no signal cuts it short."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {handled: signal.signal(handled, signal.SIG_IGN) for handled in HANDLED_SIGNALS}
    try:
        yield
    finally:
        for handled, handler in previous.items():
            signal.signal(handled, handler)
