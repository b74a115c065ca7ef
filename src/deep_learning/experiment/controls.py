"""The training controls a config turns on around the chapter's loop: how losses become steps, the per-step
metrics callback, when training stops early, and which epoch's weights it ends with.

Each is built from the config alone, so the runner wires them in without branching on them.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from deep_learning.analysis.records import STOP_REASON_TAG
from deep_learning.core.callbacks import Callback
from deep_learning.core.checkpoint_files import checkpoint_name, load_checkpoint
from deep_learning.core.config import TrainConfig
from deep_learning.core.errors import CheckpointError
from deep_learning.core.optimization import Stepper
from deep_learning.core.results import EpochResult
from deep_learning.experiment.stopping import EarlyStopping, Monitor
from deep_learning.tracking.tracker import Tracker

RESTORED_EPOCH_TAG = "deep_learning.restored_epoch"


def stepper_for(config: TrainConfig, optimizer, grad_scaler, scheduler, global_step: int) -> Stepper:
    """The stepper the config asks for: accumulation, clipping and the schedule, from optimizer step `global_step` on."""
    return Stepper(
        optimizer,
        grad_scaler=grad_scaler,
        scheduler=scheduler,
        grad_clip_norm=config.grad_clip_norm,
        accumulate_batches=config.accumulate_batches,
        global_step=global_step,
    )


class StepMetrics(Callback):
    """The callback of --log-every-n-steps: every N optimizer steps, that batch's loss and lr at the global step.

    The loss is read from the device at those steps only, and the tracker's sender thread sends it.
    """

    def __init__(self, run: Tracker, stepper: Stepper, every: int) -> None:
        self.run, self.stepper, self.every = run, stepper, every

    def on_batch_end(self, loss: Tensor, num_samples: int) -> None:
        if self.stepper.stepped and self.stepper.global_step % self.every == 0:
            self.run.log_metrics({"train_loss_step": loss.item(), "lr_step": self.stepper.last_lr}, step=self.stepper.global_step)


class Stopper(Callback):
    """Early stopping over the whole history, a resumed run's epochs included."""

    def __init__(self, config: TrainConfig, history: list[EpochResult]) -> None:
        self.rule = EarlyStopping(Monitor.of(config), config.early_stopping_patience) if config.early_stopping_patience else None
        self.history = list(history)
        self.stopped = False

    def on_epoch_end(self, result: EpochResult) -> None:
        self.history.append(result)
        self.stopped = self.rule is not None and self.rule.should_stop(self.history)

    def should_stop(self) -> bool:
        return self.stopped

    def record(self, run: Tracker) -> None:
        """Log where and why training stopped early: metric stopped_epoch, and the reason as a tag and a line."""
        if not self.stopped:
            return
        reason = self.rule.reason(self.history)
        epoch = self.history[-1].epoch
        print(f"Stopped after epoch {epoch}: {reason}", flush=True)
        run.log_metrics({"stopped_epoch": epoch}, step=epoch)
        run.set_tags({STOP_REASON_TAG: reason})


def best_weights(epoch: int, folder: Path) -> dict[str, torch.Tensor]:
    """The weights of epoch `epoch` (the best one), from its kept checkpoint in `folder`."""
    path = folder / checkpoint_name(epoch)
    if not path.is_file():
        raise CheckpointError(
            f"The best epoch's checkpoint {path} is gone: --restore-best needs it; run without it, or resume where it is."
        )
    return load_checkpoint(path)["model"]
