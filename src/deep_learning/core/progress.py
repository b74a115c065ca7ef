"""Progress of each training pass with tqdm: a bar rewritten in place on a terminal, a widget in a notebook (a text
bar where ipywidgets is missing), with samples per second and the running loss.

It is a callback of `train`, called after each batch; the loss stays on the device between refreshes, so a
training pass reads it once at its first batch and then at most every REFRESH_SECONDS, never per batch. The bar
is cleared when its pass ends, and the chapter's epoch line takes its place.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from torch import Tensor

from deep_learning.core.callbacks import Callback

REFRESH_SECONDS = 0.5
BAR_FORMAT = "{desc} |{bar}| {n_fmt}/{total_fmt} batches{postfix}"


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (an IPython shell that talks to a notebook over ZeroMQ)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def shows_progress(progress: bool | None) -> bool:
    """`progress` when said, else whether anyone watches: a terminal or a notebook, not a pipe or a CI log."""
    return sys.stdout.isatty() or in_notebook() if progress is None else progress


def _bar_class() -> type:
    """tqdm's notebook widget in a kernel that has ipywidgets, else its text bar (tqdm.auto would warn instead)."""
    if in_notebook():
        try:
            import ipywidgets  # noqa: F401  (the widget's own dependency)
            from tqdm.notebook import tqdm

            return tqdm
        except ImportError:
            pass
    from tqdm.std import tqdm

    return tqdm


class TrainingProgress(Callback):
    """A bar for each training pass, refreshed at its first batch and then at most every REFRESH_SECONDS."""

    def __init__(self, num_batches: int, first_epoch: int, num_epochs: int, stream: TextIO | None = None) -> None:
        self.num_batches = num_batches
        self.epoch = first_epoch
        self.num_epochs = num_epochs
        self.stream = stream or sys.stdout
        self.bar: Any = None
        self._start_pass()

    def _start_pass(self) -> None:
        self.batches_done = 0
        self.samples_done = 0
        self.loss_sum: Tensor | None = None
        self.started = time.perf_counter()
        self.shown = self.started

    def on_batch_end(self, loss: Tensor, num_samples: int) -> None:
        """Count one batch of `num_samples` whose (detached) loss is `loss`; refresh or clear the bar when due."""
        self.batches_done += 1
        self.samples_done += num_samples
        self.loss_sum = loss if self.loss_sum is None else self.loss_sum + loss
        if self.batches_done == self.num_batches:
            self.close()
            self.epoch += 1
            self._start_pass()
            return
        now = time.perf_counter()
        if self.batches_done == 1 or now - self.shown >= REFRESH_SECONDS:
            self.shown = now
            self._show(now - self.started)

    def _show(self, seconds: float) -> None:
        running_loss = self.loss_sum.item() / self.batches_done
        rate = f"{self.samples_done / seconds:,.0f}" if seconds > 0 else "-"
        postfix = f"{rate} samples/s, loss {running_loss:.4f}"
        if self.bar is None:  # drawn first at the pass's first batch, already with its numbers
            self.bar = _bar_class()(
                total=self.num_batches,
                initial=self.batches_done,
                postfix=postfix,
                desc=f"Epoch {self.epoch}/{self.num_epochs}",
                file=self.stream,
                leave=False,
                bar_format=BAR_FORMAT,
                dynamic_ncols=True,
            )
            return
        self.bar.n = self.batches_done
        self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        """Clear the pass's bar."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> TrainingProgress:
        return self

    def __exit__(self, *exception: object) -> None:
        self.close()  # an interrupted pass's bar, before the lines that say so
