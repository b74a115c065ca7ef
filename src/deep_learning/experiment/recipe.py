"""The recipe: what makes a run the run it is (its data, model, task, loss, optimizer and metrics), as builders.

The runner in experiment.py only calls what a recipe holds, so nothing after it knows that the
chapter's run trains an MLP on MNIST and logs accuracy, or even that it classifies. `recipe_from_config`
builds the recipe that the CLI and the MLproject name (the chapter's by default); `fit` builds one from a
user's objects. Before a run starts, `settle` runs the model on a batch of the data once and makes the recipe
definite: the task (named, or inferred from the target and the output), the data's classes, the loss and the
metrics, each checked with a one-line refusal where it does not fit.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.optim as optim
from torch import Tensor
from torchmetrics import Metric, MetricCollection

from deep_learning.core.batches import LossFn, ModelLoss, forward, output_and_loss, predictions
from deep_learning.core.config import AUTO, CLASSIFICATION, FILE_DATASETS, IMAGE_FOLDER, REGRESSION, SEQUENCE, TrainConfig
from deep_learning.core.data.spec import DataSpec
from deep_learning.core.data.splits import DataSplits, load_splits
from deep_learning.core.data.tabular import Standardized, StandardizedMSE
from deep_learning.core.errors import ConfigError, first_line
from deep_learning.core.model import build_model
from deep_learning.core.optimization import build_optimizer
from deep_learning.core.tasks import Task, check_metric_names, check_output, infer_task, output_width, task_named


@dataclass(frozen=True)
class Recipe:
    """A run's data and the builders of its model, loss, optimizer and metrics; `settle` makes its task definite."""

    data: DataSplits
    build_model: Callable[[], nn.Module]  # a fresh model, drawing its initialisation from torch's global RNG
    build_optimizer: Callable[[Iterable[nn.Parameter]], optim.Optimizer]
    model_name: str  # how run names call the model: mlp, cnn, TinyCNN, ... (empty: its class's name, once built)
    loss_fn: LossFn | None = None  # None: the task's default loss
    metric_names: tuple[str, ...] = ()  # the task's metrics by name; none: the task's defaults
    user_metrics: Callable[[], dict[str, Metric]] | None = None  # fit's own metric objects: a fresh set per call
    task: str = AUTO  # a task's name once settled
    width: int = 0  # the model's outputs per sample, once settled
    # Params logged beside (and over) the config's, from the built model and optimizer: what fit() knows of its objects.
    extra_params: Callable[[nn.Module, optim.Optimizer, DataSpec], dict[str, str]] = lambda model, optimizer, spec: {}

    def metrics(self) -> MetricCollection:
        """A fresh collection of the recipe's metrics, updated and read together (train, validation and test each get one)."""
        built = self.user_metrics() if self.user_metrics is not None else task_named(self.task).build_metrics(self.metric_names, self.width)
        return MetricCollection(built, compute_groups=False)

    @property
    def dataset_name(self) -> str:
        """How run names and MLflow datasets call the data: mnist, my-images, ..."""
        return short_name(self.data.name)


def run_name_for(model: str, dataset: str, kind: str, apart: str = "") -> str:
    """How runs are named: `model-dataset-kind`, then what sets the run apart (mlp-mnist-cpu lr=0.05, mlp-mnist-sweep)."""
    return " ".join(filter(None, [f"{short_name(model)}-{short_name(dataset)}-{kind}", apart]))


def short_name(name: str) -> str:
    """A model's or dataset's name as runs show it: the factory of an import path, the file or folder of a file dataset."""
    for prefix in FILE_DATASETS:
        if name.startswith(prefix):
            path = Path(name[len(prefix) :])
            return (path.name if prefix == IMAGE_FOLDER else path.stem) or prefix.rstrip(":")  # a folder's name, a file's stem
    if ":" in name:  # package.module:factory, or where fit's objects come from
        return name.rpartition(":")[2].rpartition(".")[2]
    return name


def recipe_from_config(config: TrainConfig, data_root: str | Path | None = None, data: DataSplits | None = None) -> Recipe:
    """The recipe a config names (the chapter's MNIST MLP, SGD and accuracy by default), checked before any run starts;
    `data`, when given, are its splits already loaded (a sweep's points that share their data)."""
    data = data or load_splits(config, data_root)
    task = config.task if config.task != AUTO else data.spec.task
    if task and config.metric_names:
        check_metric_names(task_named(task), config.metric_names)  # an unknown name fails here, not after an epoch
    return Recipe(
        data=data,
        build_model=lambda: model_for(config, data.spec),
        build_optimizer=lambda parameters: build_optimizer(parameters, config),
        model_name=short_name(config.model),
        metric_names=config.metric_names,
        task=config.task,
        loss_fn=StandardizedMSE(data.spec.features["target_std"]) if data.spec.features and "target_std" in data.spec.features else None,
    )


def model_for(config: TrainConfig, spec: DataSpec) -> nn.Module:
    """The model a config names, sized from the data's spec; a csv run's takes the raw features and standardises them."""
    model = build_model(config.model, spec.input_shape, _outputs(config.task, spec), input_dtype=spec.input_dtype, **config.model_arguments)
    return Standardized(model, spec.features) if spec.features else model


def _outputs(task: str, spec: DataSpec) -> int:
    """How many outputs per sample a built-in model needs: one per class (label, token), or the regression target's size."""
    task = task if task != AUTO else spec.task
    floats = spec.target_dtype.startswith(("float", "bfloat"))
    if task == REGRESSION or (not task and floats and spec.target_shape):
        return math.prod(spec.target_shape) or 1
    return spec.num_classes or math.prod(spec.target_shape) or 1


def settle(config: TrainConfig, recipe: Recipe, model: nn.Module, example: tuple[Any, Any]) -> tuple[TrainConfig, Recipe]:
    """The config and recipe made definite by the model's output on `example` (a batch of the data), or a one-line refusal.

    The task is the config's, else the data's kind's, else inferred from the target and the output; the output must fit it
    (one logit per class, the target's shape, (N, L, V)); the loss (the task's default unless given) must give a scalar;
    the metrics are the task's by name (its defaults unless named) or the user's own. The config records the task and the
    metrics' names, so the run's params say what ran.
    """
    inputs, target = example
    recipe = dataclasses.replace(recipe, model_name=recipe.model_name or type(model).__name__)
    target = torch.as_tensor(target)
    output = _probe(model, inputs, target, recipe)
    scores = predictions(output)
    task = task_named(config.task if config.task != AUTO else recipe.data.spec.task or infer_task(target, scores))
    spec = settled_spec(recipe.data.spec, task, scores)
    check_output(task, scores, target, spec.num_classes, recipe.model_name)
    loss_fn = recipe.loss_fn if recipe.loss_fn is not None else task.default_loss()
    if recipe.loss_fn is None and not isinstance(output, Tensor):
        loss_fn = OfPredictions(loss_fn)  # the task's loss, of an output object's logits
    _check_loss(loss_fn, output, target, recipe.model_name)
    width = output_width(task, scores)
    if recipe.user_metrics is not None:
        names = tuple(recipe.user_metrics())
    else:
        names = recipe.metric_names or task.default_metrics
        task.build_metrics(names, width)
    config = dataclasses.replace(config, task=task.name, metrics=",".join(names))
    data = dataclasses.replace(recipe.data, spec=spec)
    return config, dataclasses.replace(recipe, data=data, loss_fn=loss_fn, metric_names=names, task=task.name, width=width)


def _probe(model: nn.Module, inputs: Any, target: Tensor, recipe: Recipe) -> Any:
    """The model's output on the example batch, without gradients or RNG draws, in eval mode; a failure is one line."""
    training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            if isinstance(recipe.loss_fn, ModelLoss):
                return output_and_loss(model, inputs, target, recipe.loss_fn)[0]
            return forward(model, inputs)
    except Exception as error:
        raise ConfigError(
            f"The model {recipe.model_name} fails on a batch of the data ({type(error).__name__}: {first_line(error)}): check its input shape."
        ) from None
    finally:
        model.train(training)


def _check_loss(loss_fn: LossFn, output: Any, target: Tensor, model_name: str) -> None:
    """Refuse a loss that fails on the example batch or does not give one number."""
    try:
        with torch.inference_mode():
            loss = loss_fn(output, target)
    except Exception as error:
        raise ConfigError(
            f"The loss fails on the output of {model_name} and the targets ({type(error).__name__}: {first_line(error)})."
        ) from None
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        shape = tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__
        raise ConfigError(f"The loss gives {shape}, not a scalar tensor: reduce it (its mean over the batch) in loss_fn.")


class OfPredictions(nn.Module):
    """A loss of a model's predictions (an output object's `logits`), where the model returns more than a tensor."""

    def __init__(self, loss_fn: nn.Module) -> None:
        super().__init__()
        self.loss_fn = loss_fn

    def forward(self, output: Any, target: Tensor) -> Tensor:
        return self.loss_fn(predictions(output), target)


def settled_spec(spec: DataSpec, task: Task, scores: Tensor) -> DataSpec:
    """The spec with the task and its classes: the data's where it names them, else counted from the model's output."""
    if task.name == REGRESSION:
        return dataclasses.replace(spec, task=task.name, num_classes=0, class_names=())
    width = output_width(task, scores)
    count = spec.num_classes if task.name in (CLASSIFICATION, SEQUENCE) and spec.num_classes else width
    names = spec.class_names if len(spec.class_names) == count else tuple(str(label) for label in range(count))
    return dataclasses.replace(spec, task=task.name, num_classes=count, class_names=names)
