"""One run being trained: its MLflow run (a do-nothing one on ranks other than 0), its checkpointer and its per-epoch callbacks; a failure or an interruption ends the run FAILED or KILLED with what it had trained kept."""

from __future__ import annotations

import contextlib
import math
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from deep_learning import tracking
from deep_learning.core import distributed
from deep_learning.core.callbacks import Callback
from deep_learning.core.checkpoint_files import latest_checkpoint
from deep_learning.core.config import TrainConfig, settings_apart
from deep_learning.core.data.digests import split_digest
from deep_learning.core.data.loaders import TensorLoader
from deep_learning.core.devices import device_tags, memory_metrics
from deep_learning.core.distributed import Cluster
from deep_learning.core.errors import DeepLearningError, DistributedFailure, Interrupted, TrainingDiverged, first_line
from deep_learning.core.results import EpochResult
from deep_learning.experiment.assembly import Assembly, assemble, run_params
from deep_learning.experiment.checkpoints import Checkpointer
from deep_learning.experiment.finish import finish_run, keep_checkpoint_models
from deep_learning.experiment.recipe import Recipe, run_name_for
from deep_learning.experiment.results import ExperimentResult
from deep_learning.experiment.resume import Resumed
from deep_learning.tracking.tracker import Tracker

PROFILE_ARTIFACTS = "profile"  # the run's folder of the profiler's trace and table


@dataclass
class Session:
    """One run being trained: what it trains, its MLflow run (a do-nothing one on ranks other than 0) and its checkpointer."""

    assembly: Assembly
    run: Tracker
    checkpointer: Checkpointer

    @property
    def folder(self) -> Path:
        return self.checkpointer.folder

    def callbacks(self) -> list[Callback]:
        """What each epoch's end goes through, in order: the finite check, the checkpoint (rank 0's), the tracker."""
        saving = [self.checkpointer] if self.assembly.is_main else []
        return [FiniteCheck(self.checkpointer), *saving, EpochTracking(self.run, self.assembly.device)]

    def finish(self, training_model: torch.nn.Module, history: list[EpochResult]) -> ExperimentResult:
        """Score the test split, log the models and figures, and say what the run produced."""
        test_metrics = finish_run(self.assembly, training_model, self.run, history, self.folder)
        return ExperimentResult(self.run.run_id, self.run.run_name, history, test_metrics, self.run.where_to_look())


@contextlib.contextmanager
def training_session(
    config: TrainConfig,
    recipe: Recipe,
    device: torch.device,
    cluster: Cluster | None,
    *,
    resumed: Resumed | None,
    parent_run_id: str | None = None,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    loaders: tuple[Any, Any, Any] | None = None,
    system_metrics: bool = True,
) -> Iterator[Session]:
    """Assemble the run, open its MLflow run and checkpointer, and end it as what stopped it says:
    an interruption keeps what it trained, a diverged run its last good checkpoints as models.

    `loaders` (built for `config` by `make_loaders`) are shared by runs that train on the same batches;
    `system_metrics` samples the process's CPU, memory and GPU into the run.
    """
    resume_run_id, checkpoint = resumed or (None, None)
    assembly = assemble(config, recipe, device, cluster, checkpoint, loaders)
    config = assembly.config  # settled: the task and metrics the run logs
    where = device.type + (f"-x{assembly.world_size}" if cluster else "")
    run_name = run_name or run_name_for(assembly.recipe.model_name, recipe.dataset_name, where, settings_apart(config))
    tracked = tracking.tracked_run(
        run_name,
        run_params(assembly),
        {**device_tags(assembly.description), **(tags or {})},
        resume_run_id=resume_run_id,
        parent_run_id=parent_run_id,
        system_metrics=system_metrics,
    )
    with tracked if assembly.is_main else contextlib.nullcontext(Tracker()) as run:
        checkpointer = _checkpointer(assembly, run)
        _open(assembly, run)
        try:
            yield Session(assembly, run, checkpointer)
        except BaseException as error:
            if isinstance(error, TrainingDiverged) and assembly.is_main:
                keep_checkpoint_models(assembly, run, checkpointer.history, checkpointer.folder)
            raise _reason_to_stop(error, run, checkpointer, cluster is not None) from None


def _checkpointer(assembly: Assembly, run: Tracker) -> Checkpointer:
    """The run's checkpointer, in its own folder under --checkpoint-dir, handing each checkpoint to the tracker."""
    config = assembly.config
    return Checkpointer(
        Path(config.checkpoint_dir) / run.run_id,
        keep=config.keep_checkpoints,
        model=assembly.model,
        optimizer=assembly.optimizer,
        grad_scaler=assembly.scaler,
        scheduler=assembly.scheduler,
        config=config,
        device=assembly.device,
        history=assembly.history,
        on_saved=run.log_checkpoint,
        world_size=assembly.world_size,
        params=assembly.extra_params,
        keep_best=max(config.keep_best, int(config.restore_best)),
    )


def _open(assembly: Assembly, run: Tracker) -> None:
    """Say where the run goes, and record its data and any epochs a resumed run brings."""
    data = assembly.recipe.data
    action = f"Resuming run {run.run_id} after epoch {len(assembly.history)}" if assembly.history else f"MLflow run {run.run_id}"
    print(f"{action} ({run.run_name}) on {assembly.description['name']} [{assembly.device}]", flush=True)
    if not assembly.is_main:
        return
    run.log_datasets(assembly.recipe.dataset_name, data.source, _digests(assembly))
    logged = run.logged_epochs()
    for result in assembly.history:
        if result.epoch not in logged:
            run.log_epoch(result)


def _digests(assembly: Assembly) -> dict[str, str]:
    """Each split's content digest, hashed from the tensors its loader already decoded where it has them (one process)."""
    data = assembly.recipe.data
    digests = {}
    for name, split, loader in zip(("training", "validation", "test"), (data.train, data.val, data.test), assembly.loaders):
        if split is not None:
            decoded = loader.dataset.tensors if isinstance(loader, TensorLoader) and assembly.cluster is None else None
            digests[name] = split_digest(split, decoded)
    return digests


@dataclass
class FiniteCheck(Callback):
    """Stop at the first epoch whose loss is NaN or infinite (read once per epoch, never per batch), naming the last good checkpoint."""

    checkpointer: Checkpointer

    def on_epoch_end(self, result: EpochResult) -> None:
        last_checkpoint = self.checkpointer.last_saved
        kept = f" The last good checkpoint is {last_checkpoint}." if last_checkpoint else ""
        for name, value in (("train loss", result.train_loss), ("validation loss", result.val_loss)):
            if not math.isfinite(value):
                raise TrainingDiverged(
                    f"The {name} is {value} at epoch {result.epoch}: training diverged; lower the learning rate (--lr) and run again.{kept}",
                    result.epoch,
                )


@dataclass
class EpochTracking(Callback):
    """Each epoch's metrics, with the device's memory, to the run's tracker."""

    run: Tracker
    device: torch.device

    def on_epoch_end(self, result: EpochResult) -> None:
        self.run.log_epoch(result, memory_metrics(self.device))


def _reason_to_stop(error: BaseException, run: Tracker, checkpointer: Checkpointer, distributed_job: bool) -> BaseException:
    """The error to end the run with: a failing rank named, an interruption with what it kept, else the error itself."""
    failure = distributed_failure(error) if distributed_job else None
    if failure is not None:
        return failure
    if not isinstance(error, KeyboardInterrupt):
        return error
    interrupted = error if isinstance(error, Interrupted) else Interrupted(signal.SIGINT)
    interrupted.run_id, interrupted.epoch = run.run_id, len(checkpointer.history)
    interrupted.checkpoint = str(checkpointer.last_saved or latest_checkpoint(checkpointer.folder) or "")
    return interrupted


def distributed_failure(error: BaseException) -> DistributedFailure | None:
    """What ended a torchrun job, named after the failing rank where it said so."""
    reported = distributed.reported_failure()
    if reported:
        return DistributedFailure(f"The job failed on {reported}")
    if isinstance(error, Interrupted) and error.signal_number == signal.SIGTERM:
        return DistributedFailure("torchrun stopped this rank because another rank failed (its output names the rank).")
    if isinstance(error, RuntimeError) and not isinstance(error, DeepLearningError):
        return DistributedFailure(f"Another rank stopped answering (torchrun's output names it): {first_line(error)[-160:]}")
    return None
