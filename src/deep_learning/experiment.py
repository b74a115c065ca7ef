"""One tracked training run: config -> data, model, device -> the chapter's loop -> MLflow.

Each epoch is checked (a NaN or infinite loss stops the run), checkpointed, then logged; a run
resumed from its last checkpoint ends exactly as if it had never stopped. At the end come the test
score, the model, and the figures of the learning curves and the test confusion matrix.
"""

from __future__ import annotations

import contextlib
import io
import math
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from deep_learning import distributed, tracking
from deep_learning.checkpoints import Checkpointer, check_compatible, latest_checkpoint, load_checkpoint, restore
from deep_learning.config import TrainConfig
from deep_learning.data import DATASET_CLASSES, dataset_source, load_splits, make_loaders, split_digest
from deep_learning.devices import describe_device, device_tags, memory_metrics, resolve_device
from deep_learning.distributed import Cluster
from deep_learning.errors import (
    CheckpointError,
    DeepLearningError,
    DistributedFailure,
    Interrupted,
    TrackingError,
    TrainingDiverged,
    first_line,
)
from deep_learning.metrics import Accuracy
from deep_learning.model import build_model, count_parameters
from deep_learning.precision import grad_scaler, sgd, with_amp
from deep_learning.progress import TrainingProgress
from deep_learning.reproducibility import set_seed
from deep_learning.scoring import class_scores
from deep_learning.training import EpochResult, evaluate, train_and_evaluate


@dataclass(frozen=True)
class ExperimentResult:
    """What a tracked run produced."""

    run_id: str
    run_name: str
    history: list[EpochResult]
    test_loss: float
    test_accuracy: float
    where_to_look: str

    def summary(self) -> str:
        """The line that ends a run's output: where to browse it."""
        return f"Run {self.run_id} finished; to browse it: {self.where_to_look}"


def accuracy_metric() -> Accuracy:
    """The accuracy every run logs: the fraction of correct predictions, without per-batch host syncs."""
    return Accuracy()


def with_options(model: nn.Module, device: torch.device, config: TrainConfig) -> nn.Module:
    """The model as the loop calls it: under autocast with `amp`, then compiled with `compile`."""
    model = with_amp(model, device, config.amp)
    return torch.compile(model, mode=config.compile_mode) if config.compile else model


def resume_config(run_id: str, overrides: dict[str, Any]) -> tuple[TrainConfig, Path]:
    """The config of the run to resume (its checkpoint's, with `overrides`) and its latest checkpoint."""
    params = tracking.get_run(run_id).params
    folder = Path(overrides.get("checkpoint_dir", params.get("checkpoint_dir", TrainConfig.checkpoint_dir))) / run_id
    path = latest_checkpoint(folder) or tracking.download_latest_checkpoint(run_id, folder)
    if path is None:
        raise CheckpointError(f"Run {run_id} has no checkpoint to resume from (none in {folder} nor in the run).")
    saved = load_checkpoint(path)["config"]
    unknown = sorted(set(saved) - set(TrainConfig.__dataclass_fields__))
    if unknown:
        raise CheckpointError(f"Cannot resume: the checkpoint holds settings this version does not know ({', '.join(unknown)}).")
    return TrainConfig(**{**saved, **overrides}), path


def check_finite(result: EpochResult, last_checkpoint: Path | None) -> None:
    """Stop at the first epoch whose loss is NaN or infinite (read once per epoch, never per batch)."""
    kept = f" The last good checkpoint is {last_checkpoint}." if last_checkpoint else ""
    for name, value in (("train loss", result.train_loss), ("validation loss", result.val_loss)):
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"The {name} is {value} at epoch {result.epoch}: training diverged; lower the learning rate (--lr) and run again.{kept}",
                result.epoch,
            )


def run_experiment(
    config: TrainConfig,
    data_root: str | Path | None = None,
    *,
    parent_run_id: str | None = None,
    progress: bool = False,
) -> ExperimentResult:
    """Train and evaluate `config` as one MLflow run (a child of `parent_run_id` when given);
    `progress` rewrites a line on stdout during each training pass.

    Under torchrun, every rank trains its shard with DistributedDataParallel and rank 0 alone tracks the run.
    """
    options = {"parent_run_id": parent_run_id, "progress": progress}
    if not distributed.launched_by_torchrun():
        return _train(config, data_root, resolve_device(config.device), None, resumed=None, **options)
    return _on_every_rank(config.device, lambda cluster, device: (config, None), data_root, **options)


def resume_experiment(run_id: str, overrides: dict[str, Any], data_root: str | Path | None = None, *, progress: bool = False) -> ExperimentResult:
    """Continue run `run_id` from its last checkpoint, with the checkpoint's config (`overrides` must agree with it).

    Under torchrun (same world size), rank 0 finds the checkpoint and hands it to the other ranks.
    """
    if not distributed.launched_by_torchrun():
        config, path = resume_config(run_id, overrides)
        checkpoint = load_checkpoint(path)
        check_compatible(checkpoint, config)
        return _train(config, data_root, resolve_device(config.device), None, resumed=(run_id, checkpoint), parent_run_id=None, progress=progress)

    def share_checkpoint(cluster: Cluster, device: torch.device) -> tuple[TrainConfig, tuple[str, dict[str, Any]]]:
        payload: list[Any] = [None, None]
        if cluster.is_main:
            config, path = resume_config(run_id, overrides)
            checkpoint = load_checkpoint(path)
            check_compatible(checkpoint, config, cluster.world_size)
            payload = [config.to_params(), checkpoint]
        distributed.broadcast(payload)
        return TrainConfig(**payload[0]), (run_id, payload[1])

    return _on_every_rank(overrides.get("device", TrainConfig.device), share_checkpoint, data_root, parent_run_id=None, progress=progress)


def _on_every_rank(device_name: str, prepare, data_root, *, parent_run_id: str | None, progress: bool) -> ExperimentResult:
    """Join torchrun's process group, train on this rank, and leave; a failing rank leaves its reason for rank 0."""
    cluster, device = distributed.start(device_name)
    try:
        config, resumed = prepare(cluster, device)
        if cluster.is_main:
            return _train(config, data_root, device, cluster, resumed=resumed, parent_run_id=parent_run_id, progress=progress)
        with contextlib.redirect_stdout(io.StringIO()):  # one copy of the epoch lines: rank 0's
            return _train(config, data_root, device, cluster, resumed=resumed, parent_run_id=None, progress=False)
    except BaseException as error:
        if not cluster.is_main and not isinstance(error, KeyboardInterrupt):
            distributed.report_failure(cluster, first_line(error))
        raise
    finally:
        distributed.stop()


class Untracked:
    """What ranks other than 0 report to: nothing, so that only rank 0 touches MLflow."""

    run_id = run_name = tracking_uri = ""

    def log_epoch(self, result: EpochResult, extra: dict[str, float] | None = None) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        pass

    def log_datasets(self, name: str, source_url: str, digests: dict[str, str]) -> None:
        pass

    def log_checkpoint(self, path: Path, stale: list[Path]) -> None:
        pass

    def logged_epochs(self) -> set[int]:
        return set()

    def flush(self, wait_seconds: float) -> bool:
        return True

    def log_trained_model(self, *args: Any) -> None:
        pass

    def where_to_look(self) -> str:
        return ""

    def log_files(self, paths: Any) -> None:
        pass


def _distributed_failure(error: BaseException) -> DistributedFailure | None:
    """What ended a torchrun job, named after the failing rank where it said so."""
    reported = distributed.reported_failure()
    if reported:
        return DistributedFailure(f"The job failed on {reported}")
    if isinstance(error, Interrupted) and error.signal_number == signal.SIGTERM:
        return DistributedFailure("torchrun stopped this rank because another rank failed (its output names the rank).")
    if isinstance(error, RuntimeError) and not isinstance(error, DeepLearningError):
        return DistributedFailure(f"Another rank stopped answering (torchrun's output names it): {first_line(error)[-160:]}")
    return None


def _train(
    config: TrainConfig,
    data_root: str | Path | None,
    device: torch.device,
    cluster: Cluster | None,
    *,
    resumed: tuple[str, dict[str, Any]] | None,
    parent_run_id: str | None,
    progress: bool,
) -> ExperimentResult:
    is_main = cluster is None or cluster.is_main
    resume_run_id, checkpoint = resumed or (None, None)
    splits = load_splits(config, data_root)
    first_epoch = checkpoint["epoch"] + 1 if checkpoint else 1
    train_dl, val_dl, test_dl = make_loaders(config, splits, device, cluster, first_epoch=first_epoch)
    world_size = cluster.world_size if cluster else 1
    run_name = f"{config.model}-{config.dataset}-{device.type}" + (f"-x{world_size}" if cluster else "")

    set_seed(config.seed, deterministic=config.deterministic)
    model = build_model(config.model).to(device)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = sgd(model.parameters(), config.lr, config.amp)
    scaler = grad_scaler(device, config.amp)
    history: list[EpochResult] = []
    if checkpoint is not None:
        history = restore(checkpoint, model=model, optimizer=optimizer, grad_scaler=scaler, device=device)
    description = describe_device(device)
    if cluster:
        description["ranks"] = distributed.gather(description | {"rank": cluster.rank})
    params = {
        **config.to_params(),
        "num_train_samples": len(splits.train),
        "num_val_samples": len(splits.val),
        "num_parameters": count_parameters(model),
        "world_size": world_size,
        "backend": cluster.backend if cluster else "none",
        "nnodes": cluster.nnodes if cluster else 1,
        "global_batch_size": config.batch_size * world_size,
    }
    tracked = tracking.tracked_run(
        run_name, params, device_tags(description), resume_run_id=resume_run_id, parent_run_id=parent_run_id, system_metrics=True
    )

    with tracked if is_main else contextlib.nullcontext(Untracked()) as run:
        folder = Path(config.checkpoint_dir) / run.run_id
        checkpointer = Checkpointer(
            folder, keep=config.keep_checkpoints, model=model, optimizer=optimizer, grad_scaler=scaler,
            config=config, device=device, history=history, on_saved=run.log_checkpoint, world_size=world_size,
        )
        action = f"Resuming run {run.run_id} after epoch {len(history)}" if history else f"MLflow run {run.run_id}"
        print(f"{action} ({run.run_name}) on {description['name']} [{device}]", flush=True)
        digests = {"training": split_digest(splits.train), "validation": split_digest(splits.val), "test": split_digest(splits.test)} if is_main else {}
        run.log_datasets(config.dataset, dataset_source(config.dataset), digests)
        logged = run.logged_epochs()
        for result in history:
            if result.epoch not in logged:
                run.log_epoch(result)

        def after_epoch(result: EpochResult) -> None:
            check_finite(result, checkpointer.last_saved)
            if is_main:
                checkpointer(result)
            run.log_epoch(result, memory_metrics(device))

        training_model = model
        if cluster:
            training_model = DistributedDataParallel(model, device_ids=[device.index] if device.type != "cpu" else None)
        training_model = with_options(training_model, device, config)
        try:
            history += train_and_evaluate(
                model=training_model,
                train_dl=train_dl,
                val_dl=val_dl,
                loss_fn=loss_fn,
                optimizer=optimizer,
                metric=accuracy_metric(),
                val_metric=accuracy_metric(),
                num_epochs=config.epochs,
                device=device,
                on_epoch=after_epoch,
                grad_scaler=scaler,
                start_epoch=len(history) + 1,
                on_batch=TrainingProgress(len(train_dl), len(history) + 1, config.epochs) if progress else None,
            )
            test_loss, test_accuracy = evaluate(training_model, test_dl, loss_fn, accuracy_metric().to(device), device)
        except BaseException as error:
            failure = _distributed_failure(error) if cluster else None
            if failure is not None:
                raise failure from None
            if not isinstance(error, KeyboardInterrupt):
                raise
            interrupted = error if isinstance(error, Interrupted) else Interrupted(signal.SIGINT)
            interrupted.run_id, interrupted.epoch = run.run_id, len(checkpointer.history)
            interrupted.checkpoint = str(checkpointer.last_saved or latest_checkpoint(folder) or "")
            raise interrupted from None
        print(f"Test | loss: {test_loss:.4f} | accuracy: {test_accuracy:.4f}", flush=True)
        run.log_metrics({"test_loss": test_loss, "test_accuracy": test_accuracy}, step=config.epochs)
        if not run.flush(wait_seconds=tracking.patience_seconds()):
            unsent = run.save_pending(folder)
            raise TrackingError(
                f"The tracking server {run.tracking_uri} stopped answering: unsent metrics are in {unsent} "
                f"(send them later with `deep-learning sync {unsent}`); checkpoints are in {folder}."
            )
        example_batch = torch.stack([splits.test[index][0] for index in range(2)])
        run.log_trained_model(model, example_batch, description, folder, config.register_model)
        confusion_matrix = class_scores(training_model, test_dl, device).confusion_matrix  # on every rank: counts are summed across them
        if is_main:
            from deep_learning.figures import plot_run  # matplotlib loads only when a run has something to draw

            run.log_files(plot_run(history, confusion_matrix, DATASET_CLASSES[config.dataset].classes, folder))
    return ExperimentResult(run.run_id, run.run_name, history, test_loss, test_accuracy, run.where_to_look())
