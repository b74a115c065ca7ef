"""`fit`: a user's own model, data, task, loss, optimizer and metrics as one tracked, resumable run.

The same runner as `deep-learning train` (checkpoints, exact resume, torchrun, nothing lost, the
logged model), called from Python: a script, a notebook, or a script under torchrun. Errors are
raised as exceptions with one-line messages; nothing here exits the interpreter.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import re
import signal
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch.nn as nn
import torch.optim as optim
import torch.utils.data as utils
from torchmetrics import Metric, MetricCollection

from deep_learning.core.batches import LossFn, ModelLoss
from deep_learning.core.config import AUTO, TrainConfig
from deep_learning.core.data.samples import check_samples, split_size
from deep_learning.core.data.spec import DataSpec, describe_data
from deep_learning.core.data.splits import DataSplits
from deep_learning.core.errors import ConfigError
from deep_learning.core.factories import call_factory, is_import_path, is_python_reference
from deep_learning.core.interruption import signals_interrupt_runs
from deep_learning.core.optimization import build_optimizer
from deep_learning.core.progress import shows_progress
from deep_learning.experiment.recipe import Recipe
from deep_learning.experiment.results import ExperimentResult
from deep_learning.experiment.runner import run_experiment

Data = utils.Dataset | utils.DataLoader
# Hyperparameters of torch's optimizers that choose an implementation, not what it computes.
IMPLEMENTATION_SWITCHES = {"foreach", "fused", "capturable", "differentiable"}
# fit's own arguments; any other TrainConfig field may be given by name as well.
FIT_FIELDS = {"epochs", "batch_size", "val_batch_size", "device", "seed", "task"}
NOT_FOR_FIT = {
    "dataset",
    "model",
    "model_args",
    "metrics",
    "train_subset",
    "val_fraction",
    "image_size",
    "split_seed",
    "optimizer",
    "target",
    "block_size",
}
# The hyperparameters of an optimizer fit builds (optimizer=None or a name); a user's optimizer holds its own.
OPTIMIZER_SETTINGS = {"lr", "momentum", "weight_decay", "adam_beta1", "adam_beta2"}


def fit(
    model: nn.Module | Callable[..., nn.Module],
    train_data: Data,
    val_data: Data,
    *,
    test_data: Data | None = None,
    loss_fn: LossFn | None = None,
    optimizer: optim.Optimizer | Callable[[Iterable[nn.Parameter]], optim.Optimizer] | str | None = None,
    metrics: Mapping[str, Metric] | MetricCollection | Metric | str | Sequence[str] | None = None,
    epochs: int = TrainConfig.epochs,
    batch_size: int = TrainConfig.batch_size,
    val_batch_size: int = TrainConfig.val_batch_size,
    device: str = TrainConfig.device,
    seed: int = TrainConfig.seed,
    task: str = TrainConfig.task,
    target_key: str | None = None,
    params: Mapping[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
    num_classes: int | None = None,
    resume: str | None = None,
    progress: bool | None = None,
    **options: Any,
) -> ExperimentResult:
    """Train `model` on `train_data`, validate on `val_data` every epoch, score `test_data`, all as one MLflow run.

    `model` is a module or any callable building one. Data are datasets of `(inputs, target)` samples (dicts: `target_key`
    names the target), streams, or DataLoaders (kept but for their sampler). `task` (auto: inferred) gives the default
    `loss_fn` (any callable, or `ModelLoss()`) and `metrics`; `optimizer` is one, a factory of the parameters, or a name.
    `resume=RUN_ID` continues that run. Other options are TrainConfig's by name; see docs/tasks.md.
    """
    data = user_splits(train_data, val_data, test_data, class_names, target_key, num_classes)
    metric_names, user_metrics = _metrics(metrics)
    config = _config(
        model,
        data,
        metric_names,
        optimizer,
        epochs=epochs,
        batch_size=_batch_size(train_data, batch_size),
        val_batch_size=_batch_size(val_data, val_batch_size),
        device=device,
        seed=seed,
        task=task,
        **options,
    )
    recipe = _recipe(model, data, config, optimizer, loss_fn, metric_names, user_metrics, params or {})
    # SIGTERM ends the run KILLED, as Ctrl-C's KeyboardInterrupt does; Ctrl-C itself keeps Python's (and a notebook's) behaviour.
    with signals_interrupt_runs((signal.SIGTERM,)):
        return run_experiment(config, recipe=recipe, resume_run_id=resume, progress=shows_progress(progress))


def _recipe(
    model, data: DataSplits, config: TrainConfig, optimizer, loss_fn, metric_names: str, user_metrics, params: Mapping[str, Any]
) -> Recipe:
    """What fit trains: the user's model, optimizer, loss and metrics, or the task's defaults where they gave none."""
    return Recipe(
        data=data,
        build_model=_model_builder(model, data.spec),
        build_optimizer=_optimizer_builder(optimizer, config),
        model_name=_model_name(model),
        loss_fn=loss_fn,
        metric_names=tuple(name for name in metric_names.split(",") if name) if user_metrics is None else (),
        user_metrics=user_metrics,
        task=config.task,
        extra_params=lambda built, built_optimizer, spec: _known_params(
            built, built_optimizer if _is_users(optimizer) else None, loss_fn, data, spec, params
        ),
    )


def user_splits(
    train_data: Data,
    val_data: Data,
    test_data: Data | None,
    class_names: Sequence[str] | None = None,
    target_key: str | None = None,
    num_classes: int | None = None,
) -> DataSplits:
    """A user's splits (a DataLoader's dataset, the loader kept for its settings), each checked to yield (inputs, target), and described."""
    splits = {"training": train_data, "validation": val_data, "test": test_data}
    datasets = {split: data.dataset if isinstance(data, utils.DataLoader) else data for split, data in splits.items()}
    for split, dataset in datasets.items():
        if dataset is not None:
            check_samples(dataset, split, target_key)
    train = datasets["training"]
    return DataSplits(
        train=train,
        val=datasets["validation"],
        test=datasets["test"],
        spec=describe_data(train, class_names=class_names, num_classes=num_classes, target_key=target_key),
        name=_import_path(type(train)),
        source=_import_path(type(train)),
        target_key=target_key,
        loaders={split: data for split, data in splits.items() if isinstance(data, utils.DataLoader)},
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
        raise ConfigError(
            f"{sorted(given & OPTIMIZER_SETTINGS)[0]} is a setting of the optimizer you pass: set it there, or pass optimizer='sgd' (or adamw, ...)."
        )
    if isinstance(optimizer, str):
        settings["optimizer"] = optimizer
    return TrainConfig(model=_model_path(model), dataset=data.name, metrics=metric_names or AUTO, **settings)


def _model_path(model: Any) -> str:
    """Where the model comes from, as `module:QualifiedName` of its class, or of the function that builds it."""
    return _import_path(_maker(model))


def _maker(model: Any) -> Any:
    """The class or function a model comes from: a module's class, a partial's function, a callable object's class."""
    if isinstance(model, nn.Module):
        return type(model)
    while isinstance(model, functools.partial):
        model = model.func
    return model if hasattr(model, "__qualname__") else type(model)


def _import_path(target: Any) -> str:
    """`module:QualifiedName` of a class or function (`module:Name` for one defined inside a function)."""
    path = f"{target.__module__}:{target.__qualname__}"
    return path if is_import_path(path) or is_python_reference(path) else f"{target.__module__}:{target.__name__}"


def _model_name(model: Any) -> str:
    """How run names call the model: its class's or its factory's name; for a lambda, the class of what it builds (found later)."""
    name = _maker(model).__name__
    return "" if name == "<lambda>" else name


def _model_builder(model: Any, spec: DataSpec) -> Callable[[], nn.Module]:
    if isinstance(model, nn.Module):
        return lambda: model
    if not callable(model):
        raise ConfigError(f"fit() takes an nn.Module or a function that builds one, not a {type(model).__name__}.")

    def build() -> nn.Module:
        offered = {
            "num_classes": spec.num_classes,
            "num_outputs": spec.num_classes,
            "input_shape": spec.input_shape,
            "input_dtype": spec.input_dtype,
        }
        built = call_factory(model, _model_path(model), "model", offered if spec.num_classes else _without_classes(offered), {})
        if not isinstance(built, nn.Module):
            raise ConfigError(f"model {_model_path(model)!r} returned a {type(built).__name__}, not a torch.nn.Module")
        return built

    return build


def _without_classes(offered: dict[str, Any]) -> dict[str, Any]:
    """What a factory is offered where the data does not say its classes (a regression, labels not stored)."""
    return {name: value for name, value in offered.items() if name not in ("num_classes", "num_outputs")}


def _is_users(optimizer: Any) -> bool:
    """Whether fit was given an optimizer (or its factory) rather than the name of one it builds."""
    return optimizer is not None and not isinstance(optimizer, str)


def _optimizer_builder(optimizer: Any, config: TrainConfig) -> Callable[[Iterable[nn.Parameter]], optim.Optimizer]:
    if not _is_users(optimizer):
        return lambda parameters: build_optimizer(parameters, config)
    if isinstance(optimizer, optim.Optimizer):
        return lambda parameters: _same_parameters(optimizer, parameters)
    if not callable(optimizer):
        raise ConfigError(
            f"optimizer must be a torch optimizer or a function of the parameters that builds one, not a {type(optimizer).__name__}."
        )

    def build(parameters: Iterable[nn.Parameter]) -> optim.Optimizer:
        built = optimizer(parameters)
        if not isinstance(built, optim.Optimizer):
            raise ConfigError(f"The optimizer factory returned a {type(built).__name__}, not a torch.optim.Optimizer.")
        return built

    return build


def _same_parameters(optimizer: optim.Optimizer, parameters: Iterable[nn.Parameter]) -> optim.Optimizer:
    mine = {id(parameter) for group in optimizer.param_groups for parameter in group["params"]}
    if not {id(parameter) for parameter in parameters} <= mine:
        raise ConfigError(
            "The optimizer does not hold the model's parameters: pass the optimizer of this model, or a factory such as lambda params: SGD(params, lr=0.1)."
        )
    return optimizer


def _metrics(metrics: Any) -> tuple[str, Callable[[], dict[str, Metric]] | None]:
    """The metrics' names (comma-separated) and, for the user's own metric objects, a builder of fresh copies."""
    if metrics is None:
        return "", None
    if isinstance(metrics, str) or (isinstance(metrics, Sequence) and metrics and all(isinstance(name, str) for name in metrics)):
        return ",".join(name.strip() for name in ([metrics] if isinstance(metrics, str) else metrics)), None
    if isinstance(metrics, MetricCollection):
        build = lambda: dict(copy.deepcopy(metrics).items())  # noqa: E731
    elif isinstance(metrics, Metric):
        build = lambda: {_snake_case(type(metrics).__name__): metrics.clone()}  # noqa: E731
    elif isinstance(metrics, Mapping) and metrics and all(isinstance(metric, Metric) for metric in metrics.values()):
        build = lambda: {str(name): metric.clone() for name, metric in metrics.items()}  # noqa: E731
    else:
        raise ConfigError(
            "metrics must be a dict of torchmetrics Metrics by name, a MetricCollection, one Metric, or the task's metrics by name."
        )
    return ",".join(build()), build


def _snake_case(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def _known_params(
    model: nn.Module, optimizer: optim.Optimizer | None, loss_fn: Any, data: DataSplits, spec: DataSpec, params: Mapping[str, Any]
) -> dict[str, str]:
    """What fit knows of its objects, logged without the user listing it: model, loss, the user's optimizer and its
    hyperparameters (one fit builds is the config's), data."""
    hyperparameters = (
        {}
        if optimizer is None
        else {
            "optimizer": type(optimizer).__name__,
            **{
                f"optimizer.{name}" if name != "lr" else "lr": value
                for name, value in optimizer.defaults.items()
                if name not in IMPLEMENTATION_SWITCHES
            },
        }
    )
    known = {
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        **hyperparameters,
        **({"loss_fn": repr(loss_fn) if isinstance(loss_fn, ModelLoss) else type(loss_fn).__name__} if loss_fn is not None else {}),
        "input_shape": list(spec.input_shape),
        "num_classes": spec.num_classes,
        **({"target_key": data.target_key} if data.target_key else {}),
        "num_test_samples": split_size(data.test) if data.test is not None else 0,
    }
    return {name: str(value) for name, value in {**known, **params}.items()}
