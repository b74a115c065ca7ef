"""A run's end: the best weights restored when asked, the test split scored, the model, the kept checkpoints' models and the figures logged."""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from deep_learning import tracking
from deep_learning.core import distributed
from deep_learning.core.checkpoint_files import checkpoint_name, checkpoints_in, epoch_of, load_checkpoint
from deep_learning.core.config import CLASSIFICATION, REGRESSION, TrainConfig
from deep_learning.core.data.examples import example_inputs
from deep_learning.core.data.spec import DataSpec
from deep_learning.core.errors import TrackingError
from deep_learning.core.results import EpochResult
from deep_learning.core.scoring import class_scores_of, predicted_and_true_of, task_scores, update_over
from deep_learning.core.training import evaluate
from deep_learning.experiment.assembly import Assembly
from deep_learning.experiment.controls import RESTORED_EPOCH_TAG, best_weights
from deep_learning.experiment.stopping import Monitor
from deep_learning.tracking.tracker import Tracker


def restore_best(assembly: Assembly, run: Tracker, history: list[EpochResult], folder: Path) -> None:
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


def finish_run(
    assembly: Assembly, training_model: torch.nn.Module, run: Tracker, history: list[EpochResult], folder: Path
) -> dict[str, float]:
    """Score the test split, send every metric, then log the models and the figures; return the test scores."""
    test_metrics, figures = _test_scores(assembly, training_model)  # on every rank: counts are summed, predictions gathered
    if not run.flush(wait_seconds=tracking.patience_seconds()):
        run.log_metrics(test_metrics, step=history[-1].epoch)
        unsent = run.save_pending(folder)
        raise TrackingError(
            f"The tracking server {run.tracking_uri} stopped answering: unsent metrics are in {unsent} "
            f"(send them later with `deep-learning sync {unsent}`); checkpoints are in {folder}."
        )
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="deep-learning-figures") as drawing:
        drawn = drawing.submit(_draw, history, folder, figures) if assembly.is_main else None  # while the models export
        _log_models(assembly, run, history, folder, test_metrics)
        if drawn is not None:
            run.log_files(drawn.result())
    return test_metrics


def _draw(history: list[EpochResult], folder: Path, figures: dict[str, Any]) -> list[Path]:
    from deep_learning.analysis.figures import plot_run  # matplotlib loads only when a run has something to draw

    return plot_run(history, folder, **figures)


def _test_scores(assembly: Assembly, training_model: torch.nn.Module) -> tuple[dict[str, float], dict[str, Any]]:
    """One pass over the test split: its loss and metrics by their logged names (printed on one line), and what the
    task's figure shows (without a test split, of the validation split)."""
    _, val_dl, test_dl = assembly.loaders
    spec, device = assembly.recipe.data.spec, assembly.device
    scores = task_scores(spec.task, spec.num_classes)
    scores = scores.to(device) if scores is not None else None
    if test_dl is None:
        if scores is not None:
            update_over(training_model, val_dl, device, scores)
        return {}, _figure_data(spec, scores, "Validation")
    metrics = assembly.recipe.metrics().to(device)
    loss, values = evaluate(training_model, test_dl, assembly.recipe.loss_fn, metrics, device, also=scores)
    test_metrics = {"test_loss": loss, **{f"test_{name}": value for name, value in values.items()}}
    print("Test | " + " | ".join(f"{name.removeprefix('test_')}: {value:.4f}" for name, value in test_metrics.items()), flush=True)
    return test_metrics, _figure_data(spec, scores, "Test")


def _figure_data(spec: DataSpec, scores: Any, split: str) -> dict[str, Any]:
    """What the task's figure shows: a classification's confusion matrix, a regression's predictions against the truth."""
    if spec.task == CLASSIFICATION:
        return {"confusion_matrix": class_scores_of(scores).confusion_matrix, "class_names": spec.class_names, "split": split}
    if spec.task == REGRESSION:
        return {"predicted_against_true": predicted_and_true_of(scores), "split": split}
    return {}


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


def keep_checkpoint_models(assembly: Assembly, run: Tracker, history: list[EpochResult], folder: Path) -> None:
    """A diverged run's kept checkpoints still become loadable LoggedModels (their weights are the last good ones); best effort."""
    with contextlib.suppress(Exception):
        run.log_checkpoint_models(
            assembly.model, example_inputs(assembly.recipe.data), *_kept_checkpoints(assembly.config, history, folder)
        )
