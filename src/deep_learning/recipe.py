"""The recipe: what makes a run the run it is (its data, model, loss, optimizer and metrics), as builders.

The runner in experiment.py only calls what a recipe holds, so nothing after it knows that the
chapter's run trains an MLP on MNIST and logs accuracy. `recipe_from_config` builds the recipe
that the CLI and the MLproject name (the chapter's by default); `fit` builds one from a user's objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
import torch
import torch.nn as nn
import torch.optim as optim
from torchmetrics import Metric, MetricCollection

from deep_learning.config import IMAGE_FOLDER, TrainConfig
from deep_learning.data import DataSplits, load_splits
from deep_learning.errors import ConfigError, first_line
from deep_learning.metrics import build_metrics
from deep_learning.model import build_model
from deep_learning.optimization import build_optimizer


@dataclass(frozen=True)
class Recipe:
    """A run's data and the builders of its model, loss, optimizer and metrics."""

    data: DataSplits
    build_model: Callable[[], nn.Module]  # a fresh model, drawing its initialisation from torch's global RNG
    loss_fn: nn.Module
    build_optimizer: Callable[[Iterable[nn.Parameter]], optim.Optimizer]
    build_metrics: Callable[[], dict[str, Metric]]  # a fresh set: train, validation and test each get their own
    model_name: str  # how run names call the model: mlp, cnn, TinyCNN, ...
    # Params logged beside (and over) the config's, from the built model and optimizer: what fit() knows of its objects.
    extra_params: Callable[[nn.Module, optim.Optimizer], dict[str, str]] = lambda model, optimizer: {}

    def metrics(self) -> MetricCollection:
        """A fresh collection of the recipe's metrics, updated and read together."""
        return MetricCollection(self.build_metrics(), compute_groups=False)

    @property
    def dataset_name(self) -> str:
        """How run names and MLflow datasets call the data: mnist, my-images, ..."""
        return short_name(self.data.name)


def short_name(name: str) -> str:
    """A model's or dataset's name as runs show it: the factory of an import path, the folder of an image folder."""
    if name.startswith(IMAGE_FOLDER):
        return Path(name[len(IMAGE_FOLDER):]).name or "imagefolder"
    if ":" in name:  # package.module:factory, or where fit's objects come from
        return name.rpartition(":")[2].rpartition(".")[2]
    return name


def recipe_from_config(config: TrainConfig, data_root: str | Path | None = None, data: DataSplits | None = None) -> Recipe:
    """The recipe a config names (the chapter's MNIST MLP, SGD and accuracy by default), checked before any run starts;
    `data`, when given, are its splits already loaded (a sweep's points that share their data)."""
    data = data or load_splits(config, data_root)
    spec = data.spec
    build_metrics(config.metric_names, spec.num_classes)  # an unknown name fails here, not after an epoch
    return Recipe(
        data=data,
        build_model=lambda: build_model(config.model, spec.input_shape, spec.num_classes, **config.model_arguments),
        loss_fn=nn.CrossEntropyLoss(),
        build_optimizer=lambda parameters: build_optimizer(parameters, config),
        build_metrics=lambda: build_metrics(config.metric_names, spec.num_classes),
        model_name=short_name(config.model),
    )


def check_model_output(model: nn.Module, example: torch.Tensor, num_classes: int, model_name: str) -> None:
    """Refuse a model whose output on two samples is not one logit per class (checked without gradients or RNG draws)."""
    training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            output = model(example)
    except Exception as error:
        raise ConfigError(f"The model {model_name} fails on a batch of the data ({type(error).__name__}: {first_line(error)}): check its input shape.") from None
    finally:
        model.train(training)
    expected = (len(example), num_classes)
    if not isinstance(output, torch.Tensor) or tuple(output.shape) != expected:
        shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ConfigError(
            f"The model {model_name} outputs {shape} for a batch of {len(example)}, not {expected}: "
            f"a classifier of this data needs one logit per class ({num_classes} classes)."
        )
