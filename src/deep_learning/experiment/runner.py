"""One tracked training run, top to bottom: config and recipe -> assembly -> session (an MLflow run, a checkpointer) -> the chapter's loop through per-epoch callbacks -> finish. A run resumed from its last checkpoint ends exactly as if it had never stopped; under torchrun every rank runs it, and rank 0 tracks."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from deep_learning.core import distributed
from deep_learning.core.batches import batches_per_pass
from deep_learning.core.callbacks import Callback
from deep_learning.core.config import TrainConfig
from deep_learning.core.devices import resolve_device
from deep_learning.core.distributed import Cluster
from deep_learning.core.errors import first_line
from deep_learning.core.profiling import StepProfiler
from deep_learning.core.progress import TrainingProgress
from deep_learning.core.results import EpochResult
from deep_learning.core.training import train_and_evaluate
from deep_learning.experiment.assembly import Assembly, for_the_loop
from deep_learning.experiment.controls import StepMetrics, Stopper, stepper_for
from deep_learning.experiment.finish import restore_best
from deep_learning.experiment.recipe import Recipe, recipe_from_config
from deep_learning.experiment.results import ExperimentResult
from deep_learning.experiment.resume import Resumed, checkpoint_to_resume, resume_config
from deep_learning.experiment.session import PROFILE_ARTIFACTS, Session, training_session


def run_experiment(
    config: TrainConfig,
    data_root: str | Path | None = None,
    *,
    recipe: Recipe | None = None,
    resume_run_id: str | None = None,
    parent_run_id: str | None = None,
    progress: bool = False,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    callbacks: Sequence[Callback] = (),
) -> ExperimentResult:
    """Train and evaluate `config` (with `recipe`, else the one the config names) as one MLflow run, a child of
    `parent_run_id` when given; `resume_run_id` continues that run from its last checkpoint. `progress` rewrites a
    line on stdout during each training pass. `run_name` replaces the run's usual name (model-dataset-device),
    `tags` go beside the device's, and `callbacks` (a search's pruner) run after the run's own.

    Under torchrun, every rank trains its shard with DistributedDataParallel and rank 0 alone tracks the run.
    """
    recipe = recipe or recipe_from_config(config, data_root)
    options = {"parent_run_id": parent_run_id, "progress": progress, "run_name": run_name, "tags": tags, "callbacks": callbacks}
    if not distributed.launched_by_torchrun():
        resumed = (resume_run_id, checkpoint_to_resume(resume_run_id, config.checkpoint_dir)) if resume_run_id else None
        return _train(config, recipe, resolve_device(config.device), None, resumed=resumed, **options)

    def on_rank(cluster: Cluster) -> tuple[TrainConfig, Resumed | None]:
        if not resume_run_id:
            return config, None
        payload = [checkpoint_to_resume(resume_run_id, config.checkpoint_dir) if cluster.is_main else None]
        distributed.broadcast(payload)  # rank 0 finds the checkpoint and hands it to the other ranks
        return config, (resume_run_id, payload[0])

    return _on_every_rank(config.device, on_rank, recipe, **options)


def resume_experiment(
    run_id: str, overrides: dict[str, Any], data_root: str | Path | None = None, *, progress: bool = False, parent_run_id: str | None = None
) -> ExperimentResult:
    """Continue run `run_id` from its last checkpoint, with the checkpoint's config (`overrides` must agree with it);
    a child of `parent_run_id` (an active run, a sweep's) when given.

    Under torchrun (same world size), rank 0 finds the checkpoint and hands it to the other ranks.
    """
    if not distributed.launched_by_torchrun():
        config, checkpoint = resume_config(run_id, overrides)
        return _train(
            config,
            recipe_from_config(config, data_root),
            resolve_device(config.device),
            None,
            resumed=(run_id, checkpoint),
            parent_run_id=parent_run_id,
            progress=progress,
        )

    def on_rank(cluster: Cluster) -> tuple[TrainConfig, Resumed]:
        payload: list[Any] = [None, None]
        if cluster.is_main:
            config, checkpoint = resume_config(run_id, overrides)
            payload = [config.to_params(), checkpoint]
        distributed.broadcast(payload)
        return TrainConfig(**payload[0]), (run_id, payload[1])

    return _on_every_rank(
        overrides.get("device", TrainConfig.device), on_rank, None, parent_run_id=parent_run_id, progress=progress, data_root=data_root
    )


def _on_every_rank(device_name: str, prepare, recipe: Recipe | None, *, data_root=None, **options: Any) -> ExperimentResult:
    """Join torchrun's process group, train on this rank, and leave; a failing rank leaves its reason for rank 0."""
    cluster, device = distributed.start(device_name)
    try:
        config, resumed = prepare(cluster)
        recipe = recipe or recipe_from_config(config, data_root)
        if cluster.is_main:
            return _train(config, recipe, device, cluster, resumed=resumed, **options)
        with contextlib.redirect_stdout(io.StringIO()):  # one copy of the epoch lines: rank 0's
            return _train(config, recipe, device, cluster, resumed=resumed, progress=False)
    except BaseException as error:
        if not cluster.is_main and not isinstance(error, KeyboardInterrupt):
            distributed.report_failure(cluster, first_line(error))
        raise
    finally:
        distributed.stop()


def _train(
    config: TrainConfig,
    recipe: Recipe,
    device: torch.device,
    cluster: Cluster | None,
    *,
    resumed: Resumed | None,
    progress: bool,
    parent_run_id: str | None = None,
    run_name: str | None = None,
    tags: dict[str, str] | None = None,
    callbacks: Sequence[Callback] = (),
) -> ExperimentResult:
    with training_session(
        config, recipe, device, cluster, resumed=resumed, parent_run_id=parent_run_id, run_name=run_name, tags=tags
    ) as session:
        assembly, run = session.assembly, session.run
        training_model = for_the_loop(assembly)
        history = assembly.history + _epochs(assembly, training_model, session, progress, callbacks)
        if assembly.config.restore_best:
            restore_best(assembly, run, history, session.folder)
        return session.finish(training_model, history)


def _epochs(
    assembly: Assembly, training_model: torch.nn.Module, session: Session, progress: bool, callbacks: Sequence[Callback] = ()
) -> list[EpochResult]:
    """Train and validate the epochs left, with the controls the config turns on, then `callbacks`; stop early where one says."""
    config, recipe, run = assembly.config, assembly.recipe, session.run
    train_dl, val_dl, _ = assembly.loaders
    first_epoch = len(assembly.history) + 1
    stepper = stepper_for(config, assembly.optimizer, assembly.scaler, assembly.scheduler, len(assembly.history) * assembly.steps_per_epoch)
    stopper = Stopper(config, assembly.history)
    # Rank 0 profiles the first epoch this process trains; the profiler stops itself after its last step.
    num_batches = batches_per_pass(train_dl)
    profiler = (
        StepProfiler(session.folder / PROFILE_ARTIFACTS, assembly.device, num_batches=num_batches or None)
        if config.profile and assembly.is_main
        else None
    )
    shown = TrainingProgress(num_batches, first_epoch, config.epochs) if progress and num_batches else None
    optional = [
        shown,
        StepMetrics(run, stepper, config.log_every_n_steps) if config.log_every_n_steps and assembly.is_main else None,
        profiler,
    ]
    callbacks = [*session.callbacks(), stopper, *filter(None, optional), *callbacks]
    with profiler or contextlib.nullcontext(), shown or contextlib.nullcontext():
        history = train_and_evaluate(
            model=training_model,
            train_dl=train_dl,
            val_dl=val_dl,
            loss_fn=recipe.loss_fn,
            optimizer=assembly.optimizer,
            metric=recipe.metrics(),
            val_metric=recipe.metrics(),
            num_epochs=config.epochs,
            device=assembly.device,
            callbacks=callbacks,
            start_epoch=first_epoch,
            stepper=stepper,
        )
    if profiler is not None:
        run.log_files(profiler.files(), PROFILE_ARTIFACTS)
    stopper.record(run)
    return history
