"""One tracked training run: config -> data, model, device -> the chapter's loop -> MLflow."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.optim as optim
from torchmetrics.classification import MulticlassAccuracy

from deep_learning import tracking
from deep_learning.config import TrainConfig
from deep_learning.data import NUM_CLASSES, load_splits, make_loaders
from deep_learning.devices import describe_device, device_tags, resolve_device
from deep_learning.model import build_model, count_parameters
from deep_learning.precision import grad_scaler, with_amp
from deep_learning.reproducibility import set_seed
from deep_learning.training import EpochResult, evaluate, train_and_evaluate


@dataclass(frozen=True)
class ExperimentResult:
    """What a tracked run produced."""

    run_id: str
    run_name: str
    history: list[EpochResult]
    test_loss: float
    test_accuracy: float


def accuracy_metric() -> MulticlassAccuracy:
    """The accuracy every run logs: the fraction of correct predictions, without per-batch host syncs."""
    return MulticlassAccuracy(num_classes=NUM_CLASSES, average="micro", validate_args=False)


def run_experiment(config: TrainConfig, data_root: str | Path | None = None) -> ExperimentResult:
    """Train and evaluate `config` as one MLflow run; everything is checked before the run is created."""
    device = resolve_device(config.device)
    splits = load_splits(config, data_root)
    train_dl, val_dl, test_dl = make_loaders(config, splits, device)
    run_name = f"{config.model}-{config.dataset}-{device.type}"

    set_seed(config.seed, deterministic=config.deterministic)
    model = build_model(config.model)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = optim.SGD(model.parameters(), lr=config.lr)
    description = describe_device(device)
    params = {
        **config.to_params(),
        "num_train_samples": len(splits.train),
        "num_val_samples": len(splits.val),
        "num_parameters": count_parameters(model),
    }

    with tracking.tracked_run(run_name, params, device_tags(description)) as run:
        print(f"MLflow run {run.run_id} ({run.run_name}) on {description['name']} [{device}]", flush=True)
        training_model = with_amp(model, device, config.amp)
        if config.compile:
            training_model = torch.compile(training_model)
        history = train_and_evaluate(
            model=training_model,
            train_dl=train_dl,
            val_dl=val_dl,
            loss_fn=loss_fn,
            optimizer=optimizer,
            metric=accuracy_metric(),
            val_metric=accuracy_metric(),
            num_epochs=config.epochs,
            device=device,
            on_epoch=run.log_epoch,
            grad_scaler=grad_scaler(device, config.amp),
        )
        test_loss, test_accuracy = evaluate(training_model, test_dl, loss_fn, accuracy_metric().to(device), device)
        print(f"Test | loss: {test_loss:.4f} | accuracy: {test_accuracy:.4f}", flush=True)
        run.log_metrics({"test_loss": test_loss, "test_accuracy": test_accuracy}, step=config.epochs)
        example_batch = torch.stack([splits.test[index][0] for index in range(2)])
        run.log_trained_model(model, example_batch, description)
    print(f"Run {run.run_id} finished; to browse it: {run.where_to_look()}", flush=True)
    return ExperimentResult(run.run_id, run.run_name, history, test_loss, test_accuracy)
