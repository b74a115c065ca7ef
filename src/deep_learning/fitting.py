"""`fit`: a user's own model, data, loss, optimizer and metrics as one tracked, resumable run.

The same runner as `deep-learning train` (checkpoints, exact resume, torchrun, nothing lost, the
logged model), called from Python: a script, a notebook, or a script under torchrun. Errors are
raised as exceptions with one-line messages; nothing here exits the interpreter.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import signal
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch.nn as nn
import torch.optim as optim
import torch.utils.data as utils
from torchmetrics import Metric, MetricCollection

from deep_learning.config import TrainConfig
from deep_learning.data import DataSplits, check_samples, describe_data, is_tensor_backed
from deep_learning.errors import ConfigError
from deep_learning.experiment import ExperimentResult, run_experiment
from deep_learning.factories import call_factory, is_import_path
from deep_learning.interruption import signals_interrupt_runs
from deep_learning.metrics import Accuracy
from deep_learning.optimization import build_optimizer
from deep_learning.recipe import Recipe

Data = utils.Dataset | utils.DataLoader
# Hyperparameters of torch's optimizers that choose an implementation, not what it computes.
IMPLEMENTATION_SWITCHES = {"foreach", "fused", "capturable", "differentiable"}
# fit's own arguments; any other TrainConfig field may be given by name as well.
FIT_FIELDS = {"epochs", "batch_size", "val_batch_size", "device", "seed"}
NOT_FOR_FIT = {"dataset", "model", "model_args", "metrics", "train_subset", "val_fraction", "image_size", "split_seed", "optimizer"}
# The hyperparameters of an optimizer fit builds (optimizer=None or a name); a user's optimizer holds its own.
OPTIMIZER_SETTINGS = {"lr", "momentum", "weight_decay", "adam_beta1", "adam_beta2"}


def fit(
    model: nn.Module | Callable[..., nn.Module],
    train_data: Data,
    val_data: Data,
    *,
    test_data: Data | None = None,
    loss_fn: nn.Module | None = None,
    optimizer: optim.Optimizer | Callable[[Iterable[nn.Parameter]], optim.Optimizer] | str | None = None,
    metrics: Mapping[str, Metric] | MetricCollection | Metric | None = None,
    epochs: int = TrainConfig.epochs,
    batch_size: int = TrainConfig.batch_size,
    val_batch_size: int = TrainConfig.val_batch_size,
    device: str = TrainConfig.device,
    seed: int = TrainConfig.seed,
    params: Mapping[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
    resume: str | None = None,
    progress: bool | None = None,
    **options: Any,
) -> ExperimentResult:
    """Train `model` on `train_data`, validate on `val_data` every epoch, score `test_data`, all as one MLflow run.

    `model` is a module, or a factory called (after seeding) with `num_classes` and `input_shape` when it names them.
    Data are map-style datasets of (input, target) pairs, or DataLoaders (their dataset and batch size are used).
    `loss_fn` defaults to cross-entropy, `optimizer` (an optimizer, a factory of the parameters, or a name: sgd, adamw,
    adam, rmsprop, with lr, momentum, weight_decay, ... as options) to the chapter's SGD at lr 0.1, `metrics` (by name)
    to accuracy. `params` are logged beside what fit knows. `resume=RUN_ID`
    continues that run from its last checkpoint, given the same model code and arguments. Other options are
    TrainConfig's by name (amp, compile, deterministic, checkpoint_dir, keep_checkpoints, register_model, ...).
    """
    data = user_splits(train_data, val_data, test_data, class_names)
    build_metrics = _metrics_builder(metrics)
    config = _config(
        model, data, ",".join(build_metrics()), optimizer, epochs=epochs, batch_size=_batch_size(train_data, batch_size),
        val_batch_size=_batch_size(val_data, val_batch_size), device=device, seed=seed, **options,
    )
    recipe = Recipe(
        data=data,
        build_model=_model_builder(model, data.spec),
        loss_fn=loss_fn if loss_fn is not None else nn.CrossEntropyLoss(),
        build_optimizer=_optimizer_builder(optimizer, config),
        build_metrics=build_metrics,
        model_name=_model_name(model),
        extra_params=lambda built, built_optimizer: _known_params(built, built_optimizer if _is_users(optimizer) else None, data, params or {}),
    )
    # SIGTERM ends the run KILLED, as Ctrl-C's KeyboardInterrupt does; Ctrl-C itself keeps Python's (and a notebook's) behaviour.
    with signals_interrupt_runs((signal.SIGTERM,)):
        return run_experiment(config, recipe=recipe, resume_run_id=resume, progress=sys.stdout.isatty() if progress is None else progress)


def user_splits(train_data: Data, val_data: Data, test_data: Data | None, class_names: Sequence[str] | None = None) -> DataSplits:
    """A user's splits (a DataLoader's dataset), each checked to yield (input, target) pairs, and described."""
    splits = {"training": train_data, "validation": val_data, "test": test_data}
    datasets = {split: data.dataset if isinstance(data, utils.DataLoader) else data for split, data in splits.items()}
    for split, dataset in datasets.items():
        if dataset is not None:
            check_samples(dataset, split)
    train = datasets["training"]
    return DataSplits(
        train=train, val=datasets["validation"], test=datasets["test"], spec=describe_data(train, class_names=class_names),
        name=_import_path(type(train)), source=_import_path(type(train)),
    )


def _batch_size(data: Data, given: int) -> int:
    """A DataLoader's batch size, else the one given."""
    return data.batch_size or given if isinstance(data, utils.DataLoader) else given


def _config(model: Any, data: DataSplits, metric_names: str, optimizer: Any, **settings: Any) -> TrainConfig:
    """The run's settings: fit's arguments and the TrainConfig options given by name."""
    given = set(settings) - FIT_FIELDS
    known = {field.name for field in dataclasses.fields(TrainConfig)} - NOT_FOR_FIT - FIT_FIELDS
    unknown = sorted(given - known)
    if unknown:
        raise ConfigError(f"fit() has no option {unknown[0]!r}; its options besides its arguments are {', '.join(sorted(known))}.")
    if _is_users(optimizer) and given & OPTIMIZER_SETTINGS:
        raise ConfigError(f"{sorted(given & OPTIMIZER_SETTINGS)[0]} is a setting of the optimizer you pass: set it there, or pass optimizer='sgd' (or adamw, ...).")
    if isinstance(optimizer, str):
        settings["optimizer"] = optimizer
    if "loader" not in settings:
        settings["loader"] = "tensor" if all(is_tensor_backed(split) for split in (data.train, data.val, data.test) if split is not None) else "dataloader"
    return TrainConfig(model=_model_path(model), dataset=data.name, metrics=metric_names, **settings)


def _model_path(model: Any) -> str:
    """Where the model comes from, as an import path: `module:Class` (or the factory's)."""
    return _import_path(model if callable(model) and not isinstance(model, nn.Module) else type(model))


def _import_path(target: Any) -> str:
    """`module:QualifiedName` of a class or function (`module:Name` for one defined inside a function)."""
    path = f"{target.__module__}:{target.__qualname__}"
    return path if is_import_path(path) else f"{target.__module__}:{target.__name__}"


def _model_name(model: Any) -> str:
    target = model if callable(model) and not isinstance(model, nn.Module) else type(model)
    return target.__name__


def _model_builder(model: Any, spec) -> Callable[[], nn.Module]:
    if isinstance(model, nn.Module):
        return lambda: model
    if not callable(model):
        raise ConfigError(f"fit() takes an nn.Module or a function that builds one, not a {type(model).__name__}.")

    def build() -> nn.Module:
        built = call_factory(model, _model_path(model), "model", {"num_classes": spec.num_classes, "input_shape": spec.input_shape}, {})
        if not isinstance(built, nn.Module):
            raise ConfigError(f"model {_model_path(model)!r} returned a {type(built).__name__}, not a torch.nn.Module")
        return built

    return build


def _is_users(optimizer: Any) -> bool:
    """Whether fit was given an optimizer (or its factory) rather than the name of one it builds."""
    return optimizer is not None and not isinstance(optimizer, str)


def _optimizer_builder(optimizer: Any, config: TrainConfig) -> Callable[[Iterable[nn.Parameter]], optim.Optimizer]:
    if not _is_users(optimizer):
        return lambda parameters: build_optimizer(parameters, config)
    if isinstance(optimizer, optim.Optimizer):
        return lambda parameters: _same_parameters(optimizer, parameters)
    if not callable(optimizer):
        raise ConfigError(f"optimizer must be a torch optimizer or a function of the parameters that builds one, not a {type(optimizer).__name__}.")

    def build(parameters: Iterable[nn.Parameter]) -> optim.Optimizer:
        built = optimizer(parameters)
        if not isinstance(built, optim.Optimizer):
            raise ConfigError(f"The optimizer factory returned a {type(built).__name__}, not a torch.optim.Optimizer.")
        return built

    return build


def _same_parameters(optimizer: optim.Optimizer, parameters: Iterable[nn.Parameter]) -> optim.Optimizer:
    mine = {id(parameter) for group in optimizer.param_groups for parameter in group["params"]}
    if not {id(parameter) for parameter in parameters} <= mine:
        raise ConfigError("The optimizer does not hold the model's parameters: pass the optimizer of this model, or a factory such as lambda params: SGD(params, lr=0.1).")
    return optimizer


def _metrics_builder(metrics: Any) -> Callable[[], dict[str, Metric]]:
    if metrics is None:
        return lambda: {"accuracy": Accuracy()}
    if isinstance(metrics, MetricCollection):
        return lambda: dict(copy.deepcopy(metrics).items())
    if isinstance(metrics, Metric):
        return lambda: {_snake_case(type(metrics).__name__): metrics.clone()}
    if isinstance(metrics, Mapping) and metrics and all(isinstance(metric, Metric) for metric in metrics.values()):
        return lambda: {str(name): metric.clone() for name, metric in metrics.items()}
    raise ConfigError("metrics must be a dict of torchmetrics Metrics by name, a MetricCollection or one Metric.")


def _snake_case(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def _known_params(model: nn.Module, optimizer: optim.Optimizer | None, data: DataSplits, params: Mapping[str, Any]) -> dict[str, str]:
    """What fit knows of its objects, logged without the user listing it: model, the user's optimizer and its
    hyperparameters (one fit builds is the config's), data."""
    hyperparameters = {} if optimizer is None else {
        "optimizer": type(optimizer).__name__,
        **{f"optimizer.{name}" if name != "lr" else "lr": value for name, value in optimizer.defaults.items() if name not in IMPLEMENTATION_SWITCHES},
    }
    known = {
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        **hyperparameters,
        "input_shape": list(data.spec.input_shape),
        "num_classes": data.spec.num_classes,
        "num_test_samples": len(data.test) if data.test is not None else 0,
    }
    return {name: str(value) for name, value in {**known, **params}.items()}
