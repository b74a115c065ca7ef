"""What runs beside the chapter's loop: one small interface for progress, profiling, checkpoints, tracking and stopping.

`train_and_evaluate(..., callbacks=[...])` calls each callback in order after every training batch and
after every epoch, then asks each whether training should stop. A callback overrides what it needs;
the rest do nothing. The loop itself knows nothing of MLflow, terminals or files.
"""

from __future__ import annotations

from torch import Tensor

from deep_learning.core.results import EpochResult


class Callback:
    """A hook into the loop, after Keras' and Lightning's callbacks, with the three moments the loop has."""

    def on_batch_end(self, loss: Tensor, num_samples: int) -> None:
        """After each training step: the batch's loss, detached and still on the device (read it sparingly), and its size."""

    def on_epoch_end(self, result: EpochResult) -> None:
        """After each epoch's validation, before its line is printed: a printed epoch is a recorded one."""

    def should_stop(self) -> bool:
        """Asked after every callback's `on_epoch_end`: True ends training after this epoch."""
        return False
