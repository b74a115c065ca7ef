"""A progress line for interactive terminals: batches done, samples/s and running loss, rewritten in place.

It is a callback of `train`, called after each batch; the loss stays on the device between refreshes, so a
training pass reads it once at its first batch and then at most every REFRESH_SECONDS, never per batch.
"""

from __future__ import annotations

import shutil
import sys
import time
from typing import TextIO

from torch import Tensor

from deep_learning.core.callbacks import Callback

REFRESH_SECONDS = 0.5
# The cursor is parked at the start of the line, so whatever is printed next overwrites the progress.
CLEAR_TO_END_OF_LINE = "\x1b[K"


class TrainingProgress(Callback):
    """Rewrites one line during each training pass and clears it when the pass ends."""

    def __init__(self, num_batches: int, first_epoch: int, num_epochs: int, stream: TextIO | None = None) -> None:
        self.num_batches = num_batches
        self.epoch = first_epoch
        self.num_epochs = num_epochs
        self.stream = stream or sys.stdout
        self._start_pass()

    def _start_pass(self) -> None:
        self.batches_done = 0
        self.samples_done = 0
        self.loss_sum: Tensor | None = None
        self.started = time.perf_counter()
        self.shown = self.started

    def on_batch_end(self, loss: Tensor, num_samples: int) -> None:
        """Count one batch of `num_samples` whose (detached) loss is `loss`; refresh or clear the line when due."""
        self.batches_done += 1
        self.samples_done += num_samples
        self.loss_sum = loss if self.loss_sum is None else self.loss_sum + loss
        if self.batches_done == self.num_batches:
            self.stream.write(CLEAR_TO_END_OF_LINE)
            self.stream.flush()
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
        width = len(str(self.num_batches))
        line = (
            f"Epoch {self.epoch}/{self.num_epochs} "
            f"| {self.batches_done:{width}d}/{self.num_batches} batches "
            f"| {rate} samples/s "
            f"| loss: {running_loss:.4f}"
        )
        columns = shutil.get_terminal_size().columns
        self.stream.write(line[: columns - 1] + CLEAR_TO_END_OF_LINE + "\r")
        self.stream.flush()
