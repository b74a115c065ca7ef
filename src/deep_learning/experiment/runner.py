"""One tracked training run: config and recipe -> data, model, device -> the chapter's loop -> MLflow.

The runner assembles what the recipe builds, then hands `train_and_evaluate` one per-epoch hook
made of three callbacks: the finite check (a NaN or infinite loss stops the run), the checkpointer
and the tracker. A run resumed from its last checkpoint ends exactly as if it had never stopped.
At the end come the test scores, the model, and the figures of the learning curves and the confusion matrix.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from deep_learning import tracking
from deep_learning.core import distributed
from deep_learning.core.batches import batches_per_pass, to_device
from deep_learning.core.checkpoint_files import checkpoint_name, checkpoints_in, epoch_of, latest_checkpoint, load_checkpoint
from deep_learning.core.config import CLASSIFICATION, REGRESSION, TrainConfig, settings_apart
from deep_learning.core.data.digests import split_digest
from deep_learning.core.data.loaders import TensorLoader, example_batch, example_inputs, loader_kind, make_loaders
from deep_learning.core.data.samples import split_size
from deep_learning.core.devices import describe_device, device_tags, memory_metrics, resolve_device
from deep_learning.core.distributed import Cluster
from deep_learning.core.errors import (
    CheckpointError,
    ConfigError,
    DeepLearningError,
    DistributedFailure,
    Interrupted,
    TrackingError,
    TrainingDiverged,
    first_line,
)
from deep_learning.core.model import count_parameters
from deep_learning.core.optimization import build_schedule, lr_scheduler, optimizer_steps
from deep_learning.core.precision import grad_scaler, with_options
from deep_learning.core.profiling import StepProfiler
from deep_learning.core.progress import TrainingProgress
from deep_learning.core.reproducibility import set_seed
from deep_learning.core.results import EpochResult
from deep_learning.core.scoring import class_scores, predicted_against_true
from deep_learning.core.training import evaluate, train_and_evaluate
from deep_learning.experiment.checkpoints import Checkpointer, check_compatible, restore
from deep_learning.experiment.controls import RESTORED_EPOCH_TAG, StepMetrics, Stopper, best_weights, each_batch, stepper_for
from deep_learning.experiment.recipe import Recipe, recipe_from_config, settle
from deep_learning.experiment.stopping import Monitor
from deep_learning.tracking.tracker import Tracker

PROFILE_ARTIFACTS = "profile"  # the run's folder of the profiler's trace and table

Resumed = tuple[str, dict[str, Any]]  # the run id and its checkpoint


@dataclass(frozen=True)
class ExperimentResult:
    """What a tracked run produced: its id and name, every epoch, and the test scores by their logged names."""

    run_id: str
    run_name: str
    history: list[EpochResult]
    test_metrics: dict[str, float]
    where_to_look: str

    @property
    def test_loss(self) -> float | None:
        return self.test_metrics.get("test_loss")

    @property
    def test_accuracy(self) -> float | None:
        return self.test_metrics.get("test_accuracy")

    def summary(self) -> str:
        """The line that ends a run's output: where to browse it."""
        return f"Run {self.run_id} finished; to browse it: {self.where_to_look}"


@dataclass
class Assembly:
    """What a run trains: the recipe's objects, placed on the device, with the history a resumed run brings."""

    config: TrainConfig
    recipe: Recipe
    device: torch.device
    cluster: Cluster | None
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    steps_per_epoch: int
    loaders: tuple[Any, Any, Any]
    history: list[EpochResult]
    description: dict[str, Any]
    extra_params: dict[str, str]

    @property
    def is_main(self) -> bool:
        return self.cluster is None or self.cluster.is_main

    @property
    def world_size(self) -> int:
        return self.cluster.world_size if self.cluster else 1


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
    should_stop: Callable[[EpochResult], bool] | None = None,
) -> ExperimentResult:
    """Train and evaluate `config` (with `recipe`, else the one the config names) as one MLflow run, a child of
    `parent_run_id` when given; `resume_run_id` continues that run from its last checkpoint. `progress` rewrites a
    line on stdout during each training pass. `run_name` replaces the run's usual name (model-dataset-device),
    `tags` go beside the device's, and `should_stop` (a search's pruner) may end training after an epoch.

    Under torchrun, every rank trains its shard with DistributedDataParallel and rank 0 alone tracks the run.
    """
    recipe = recipe or recipe_from_config(config, data_root)
    options = {"parent_run_id": parent_run_id, "progress": progress, "run_name": run_name, "tags": tags, "should_stop": should_stop}
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


def _checkpoint_path(run_id: str, checkpoint_dir: str) -> Path:
    folder = Path(checkpoint_dir) / run_id
    path = latest_checkpoint(folder) or tracking.download_latest_checkpoint(run_id, folder)
    if path is None:
        raise CheckpointError(f"Run {run_id} has no checkpoint to resume from (none in {folder} nor in the run).")
    return path


def resume_config(run_id: str, overrides: dict[str, Any]) -> tuple[TrainConfig, dict[str, Any]]:
    """The config of the run to resume (its checkpoint's, with `overrides`) and its latest checkpoint."""
    params = tracking.get_run(run_id).params
    checkpoint = load_checkpoint(
        _checkpoint_path(run_id, overrides.get("checkpoint_dir", params.get("checkpoint_dir", TrainConfig.checkpoint_dir)))
    )
    saved = checkpoint["config"]
    unknown = sorted(set(saved) - set(TrainConfig.__dataclass_fields__))
    if unknown:
        raise CheckpointError(f"Cannot resume: the checkpoint holds settings this version does not know ({', '.join(unknown)}).")
    return TrainConfig(**{**saved, **overrides}), checkpoint


def checkpoint_to_resume(run_id: str, checkpoint_dir: str) -> dict[str, Any]:
    """The latest checkpoint of run `run_id`: local, else downloaded from the run (whether it fits is checked when it is restored)."""
    tracking.get_run(run_id)  # an unknown run is named as such
    return load_checkpoint(_checkpoint_path(run_id, checkpoint_dir))


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


def check_finite(result: EpochResult, last_checkpoint: Path | None) -> None:
    """Stop at the first epoch whose loss is NaN or infinite (read once per epoch, never per batch)."""
    kept = f" The last good checkpoint is {last_checkpoint}." if last_checkpoint else ""
    for name, value in (("train loss", result.train_loss), ("validation loss", result.val_loss)):
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"The {name} is {value} at epoch {result.epoch}: training diverged; lower the learning rate (--lr) and run again.{kept}",
                result.epoch,
            )


def assemble(
    config: TrainConfig,
    recipe: Recipe,
    device: torch.device,
    cluster: Cluster | None,
    checkpoint: dict[str, Any] | None,
    loaders: tuple[Any, Any, Any] | None = None,
) -> Assembly:
    """Build the recipe's loaders (unless given), seeded model, optimizer and scaler on `device`, settle the task on a batch
    of the data; restore them from `checkpoint` when resuming."""
    first_epoch = checkpoint["epoch"] + 1 if checkpoint else 1
    kind, reason = loader_kind(config, recipe.data, device)
    if reason is not None and loaders is None:
        print(f"Batches come from a DataLoader: {reason}.", flush=True)
    config = dataclasses.replace(config, loader=kind)
    loaders = loaders or make_loaders(config, recipe.data, device, cluster, first_epoch=first_epoch)
    set_seed(config.seed, deterministic=config.deterministic)
    model = recipe.build_model().to(device)
    config, recipe = settle(config, recipe, model, to_device(example_batch(recipe.data), device))
    optimizer = recipe.build_optimizer(model.parameters())
    scaler = grad_scaler(device, config.amp)
    steps_per_epoch = optimizer_steps(epoch_length(loaders[0], config), config.accumulate_batches)
    scheduler = lr_scheduler(optimizer, build_schedule(config, steps_per_epoch))
    extra_params = recipe.extra_params(model, optimizer, recipe.data.spec)
    history = []
    if checkpoint is not None:
        check_compatible(checkpoint, config, cluster.world_size if cluster else 1, extra_params)
        history = restore(checkpoint, model=model, optimizer=optimizer, grad_scaler=scaler, scheduler=scheduler, device=device)
    description = describe_device(device)
    if cluster:
        description["ranks"] = distributed.gather(description | {"rank": cluster.rank})
    return Assembly(
        config, recipe, device, cluster, model, optimizer, scaler, scheduler, steps_per_epoch, loaders, history, description, extra_params
    )


def epoch_length(train_dl: Any, config: TrainConfig) -> int:
    """The batches of a training epoch: the loader's, or a stream's `steps_per_epoch`; a schedule needs a stream to have them."""
    length = batches_per_pass(train_dl)
    if not length and (config.lr_schedule != "constant" or config.warmup_epochs):
        raise ConfigError(
            f"--lr-schedule {config.lr_schedule} (and warm-up) needs epochs of known length: give steps_per_epoch for a stream."
        )
    return length


def run_params(assembly: Assembly) -> dict[str, Any]:
    """What a run logs as params: the config, the recipe's own, the data sizes and the job's shape."""
    config, recipe, cluster = assembly.config, assembly.recipe, assembly.cluster
    return {
        **config.to_params(),
        **assembly.extra_params,
        "num_train_samples": split_size(recipe.data.train),
        "num_val_samples": split_size(recipe.data.val),
        "num_parameters": count_parameters(assembly.model),
        "world_size": assembly.world_size,
        "backend": cluster.backend if cluster else "none",
        "nnodes": cluster.nnodes if cluster else 1,
        "global_batch_size": config.batch_size * assembly.world_size,
    }


@dataclass
class Session:
    """One run being trained: what it trains, its MLflow run (a do-nothing one on ranks other than 0) and its checkpointer."""

    assembly: Assembly
    run: Tracker
    checkpointer: Checkpointer

    @property
    def folder(self) -> Path:
        return self.checkpointer.folder

    def after_epoch(self, result: EpochResult) -> None:
        """The per-epoch hook: the finite check, then the checkpoint (rank 0's), then the tracker."""
        check_finite(result, self.checkpointer.last_saved)
        if self.assembly.is_main:
            self.checkpointer(result)
        self.run.log_epoch(result, memory_metrics(self.assembly.device))

    def finish(self, training_model: torch.nn.Module, history: list[EpochResult]) -> ExperimentResult:
        """Score the test split, log the models and figures, and say what the run produced."""
        test_metrics = _finish(self.assembly, training_model, self.run, history, self.folder)
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
    run_name = run_name or " ".join(
        filter(
            None,
            [
                f"{assembly.recipe.model_name}-{recipe.dataset_name}-{device.type}" + (f"-x{assembly.world_size}" if cluster else ""),
                settings_apart(config),
            ],
        )
    )
    tracked = tracking.tracked_run(
        run_name,
        run_params(assembly),
        {**device_tags(assembly.description), **(tags or {})},
        resume_run_id=resume_run_id,
        parent_run_id=parent_run_id,
        system_metrics=system_metrics,
    )
    with tracked if assembly.is_main else contextlib.nullcontext(Tracker()) as run:
        checkpointer = Checkpointer(
            Path(config.checkpoint_dir) / run.run_id,
            keep=config.keep_checkpoints,
            model=assembly.model,
            optimizer=assembly.optimizer,
            grad_scaler=assembly.scaler,
            scheduler=assembly.scheduler,
            config=config,
            device=device,
            history=assembly.history,
            on_saved=run.log_checkpoint,
            world_size=assembly.world_size,
            params=assembly.extra_params,
            keep_best=max(config.keep_best, int(config.restore_best)),
        )
        _open(assembly, run)
        try:
            yield Session(assembly, run, checkpointer)
        except BaseException as error:
            if isinstance(error, TrainingDiverged) and assembly.is_main:
                _keep_checkpoint_models(assembly, run, checkpointer.history, checkpointer.folder)
            raise _reason_to_stop(error, run, checkpointer, cluster is not None) from None


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
    should_stop: Callable[[EpochResult], bool] | None = None,
) -> ExperimentResult:
    with training_session(
        config, recipe, device, cluster, resumed=resumed, parent_run_id=parent_run_id, run_name=run_name, tags=tags
    ) as session:
        assembly, run = session.assembly, session.run
        training_model = _for_the_loop(assembly)
        history = assembly.history + _epochs(assembly, training_model, session, progress, should_stop)
        if assembly.config.restore_best:
            _restore_best(assembly, run, history, session.folder)
        return session.finish(training_model, history)


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


def _for_the_loop(assembly: Assembly) -> torch.nn.Module:
    """The model as the loop calls it: wrapped for DDP under torchrun, then under autocast and compiled as the config asks."""
    model, device, config = assembly.model, assembly.device, assembly.config
    if assembly.cluster:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type != "cpu" else None)
    return with_options(model, device, config.amp, config.compile, config.compile_mode)


def _epochs(
    assembly: Assembly,
    training_model: torch.nn.Module,
    session: Session,
    progress: bool,
    should_stop: Callable[[EpochResult], bool] | None = None,
) -> list[EpochResult]:
    """Train and validate the epochs left, with the controls the config turns on; stop early where it or `should_stop` says."""
    config, recipe, run = assembly.config, assembly.recipe, session.run
    train_dl, val_dl, _ = assembly.loaders
    first_epoch = len(assembly.history) + 1
    stepper = stepper_for(config, assembly.optimizer, assembly.scaler, assembly.scheduler, len(assembly.history) * assembly.steps_per_epoch)
    stopper = Stopper(config, assembly.history, should_stop)
    # Rank 0 profiles the first epoch this process trains; the profiler stops itself after its last step.
    num_batches = batches_per_pass(train_dl)
    profiler = (
        StepProfiler(session.folder / PROFILE_ARTIFACTS, assembly.device, num_batches=num_batches or None)
        if config.profile and assembly.is_main
        else None
    )
    on_batch = each_batch(
        [
            TrainingProgress(num_batches, first_epoch, config.epochs) if progress and num_batches else None,
            StepMetrics(run, stepper, config.log_every_n_steps) if config.log_every_n_steps and assembly.is_main else None,
            profiler,
        ]
    )
    with profiler or contextlib.nullcontext():
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
            on_epoch=session.after_epoch,
            start_epoch=first_epoch,
            on_batch=on_batch,
            stepper=stepper,
            should_stop=stopper.should_stop,
        )
    if profiler is not None:
        run.log_files(profiler.files(), PROFILE_ARTIFACTS)
    stopper.record(run)
    return history


def _restore_best(assembly: Assembly, run: Tracker, history: list[EpochResult], folder: Path) -> None:
    """Load the best epoch's weights (rank 0 reads its checkpoint and hands them to the other ranks)."""
    payload: list[Any] = [None]
    if assembly.is_main:
        epoch = Monitor.of(assembly.config).best(history).epoch
        tracking.download_checkpoint(run.run_id, folder, checkpoint_name(epoch))
        payload = [(epoch, best_weights(epoch, folder))]
    if assembly.cluster:
        distributed.broadcast(payload)
    epoch, weights = payload[0]
    assembly.model.load_state_dict(weights)
    print(f"Restored the weights of epoch {epoch}, the best by {assembly.config.monitor}", flush=True)
    run.set_tags({RESTORED_EPOCH_TAG: str(epoch)})


def _reason_to_stop(error: BaseException, run: Tracker, checkpointer: Checkpointer, distributed_job: bool) -> BaseException:
    """The error to end the run with: a failing rank named, an interruption with what it kept, else the error itself."""
    failure = _distributed_failure(error) if distributed_job else None
    if failure is not None:
        return failure
    if not isinstance(error, KeyboardInterrupt):
        return error
    interrupted = error if isinstance(error, Interrupted) else Interrupted(signal.SIGINT)
    interrupted.run_id, interrupted.epoch = run.run_id, len(checkpointer.history)
    interrupted.checkpoint = str(checkpointer.last_saved or latest_checkpoint(checkpointer.folder) or "")
    return interrupted


def _finish(
    assembly: Assembly, training_model: torch.nn.Module, run: Tracker, history: list[EpochResult], folder: Path
) -> dict[str, float]:
    """Score the test split, send every metric, then log the models and the figures; return the test scores."""
    test_metrics = _test_scores(assembly, training_model)
    if not run.flush(wait_seconds=tracking.patience_seconds()):
        run.log_metrics(test_metrics, step=history[-1].epoch)
        unsent = run.save_pending(folder)
        raise TrackingError(
            f"The tracking server {run.tracking_uri} stopped answering: unsent metrics are in {unsent} "
            f"(send them later with `deep-learning sync {unsent}`); checkpoints are in {folder}."
        )
    _log_models(assembly, run, history, folder, test_metrics)
    figures = _figure_data(assembly, training_model)  # on every rank: counts are summed, predictions gathered
    if assembly.is_main:
        from deep_learning.analysis.figures import plot_run  # matplotlib loads only when a run has something to draw

        run.log_files(plot_run(history, folder, **figures))
    return test_metrics


def _figure_data(assembly: Assembly, training_model: torch.nn.Module) -> dict[str, Any]:
    """What the task's figure shows, of the test split (else the validation split): a classification's confusion
    matrix, a regression's predictions against the truth; nothing more for the other tasks."""
    _, val_dl, test_dl = assembly.loaders
    scored, spec = (test_dl if test_dl is not None else val_dl), assembly.recipe.data.spec
    split = "Test" if test_dl is not None else "Validation"
    if spec.task == CLASSIFICATION:
        matrix = class_scores(training_model, scored, assembly.device, spec.num_classes).confusion_matrix
        return {"confusion_matrix": matrix, "class_names": spec.class_names, "split": split}
    if spec.task == REGRESSION:
        return {"predicted_against_true": predicted_against_true(training_model, scored, assembly.device), "split": split}
    return {}


def _test_scores(assembly: Assembly, training_model: torch.nn.Module) -> dict[str, float]:
    """The test split's loss and metrics by their logged names (none without a test split), printed on one line."""
    test_dl = assembly.loaders[2]
    if test_dl is None:
        return {}
    metrics = assembly.recipe.metrics().to(assembly.device)
    loss, scores = evaluate(training_model, test_dl, assembly.recipe.loss_fn, metrics, assembly.device)
    test_metrics = {"test_loss": loss, **{f"test_{name}": value for name, value in scores.items()}}
    print("Test | " + " | ".join(f"{name.removeprefix('test_')}: {value:.4f}" for name, value in test_metrics.items()), flush=True)
    return test_metrics


def _log_models(assembly: Assembly, run: Tracker, history: list[EpochResult], folder: Path, test_metrics: dict[str, float]) -> None:
    """Log the final model with the test metrics linked, then the files of the kept checkpoints' LoggedModels."""
    config, recipe = assembly.config, assembly.recipe
    records = {
        tracking.DEVICE_ARTIFACT: assembly.description,
        tracking.CONFIG_ARTIFACT: config.to_params(),
        tracking.DATA_SPEC_ARTIFACT: recipe.data.spec.to_dict(),
    }
    model_id, example = None, example_inputs(recipe.data)
    try:
        model_id = run.log_trained_model(assembly.model, example, records, folder, config.register_model)
    finally:
        run.log_metrics(test_metrics, step=history[-1].epoch, model_id=model_id or None)
    if assembly.is_main:
        run.log_checkpoint_models(assembly.model, example, *_kept_checkpoints(config, history, folder))


def _kept_checkpoints(
    config: TrainConfig, history: list[EpochResult], folder: Path
) -> tuple[dict[int, dict[str, torch.Tensor]], tuple[int, str] | None]:
    """The weights of each checkpoint in `folder` by epoch, and the best epoch with the metric that says so."""
    monitor = Monitor.of(config)
    kept = {epoch_of(path): load_checkpoint(path)["model"] for path in checkpoints_in(folder)}
    best = monitor.best(history)
    return kept, (best.epoch, f"{monitor.name} {monitor.direction}") if best else None


def _keep_checkpoint_models(assembly: Assembly, run: Tracker, history: list[EpochResult], folder: Path) -> None:
    """A diverged run's kept checkpoints still become loadable LoggedModels (their weights are the last good ones); best effort."""
    with contextlib.suppress(Exception):
        run.log_checkpoint_models(
            assembly.model, example_inputs(assembly.recipe.data), *_kept_checkpoints(assembly.config, history, folder)
        )
