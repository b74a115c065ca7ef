"""Putting trained models to use: load one onto any device, rebuilt as its run built it, and score it on a test split."""

from __future__ import annotations

import dataclasses
import json
import pickle
import re
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from deep_learning import tracking
from deep_learning.analysis.records import TRAINING, RunRecord
from deep_learning.analysis.tables import text_table
from deep_learning.core.batches import to_device
from deep_learning.core.config import CLASSIFICATION, TrainConfig, field_value
from deep_learning.core.data.examples import example_batch
from deep_learning.core.data.files import DATASET_CLASSES
from deep_learning.core.data.loaders import make_loaders
from deep_learning.core.data.samples import split_size
from deep_learning.core.data.spec import DataSpec
from deep_learning.core.errors import ConfigError, InputError
from deep_learning.core.scoring import class_scores_of, task_scores
from deep_learning.core.training import by_name, evaluate
from deep_learning.experiment.recipe import model_for, recipe_from_config, settle

RUN_ID = re.compile(r"[0-9a-f]{32}")
MODEL_URI_SCHEMES = ("runs:/", "models:/")
# What runs made before data specs were logged trained on, and what a bare state_dict file is taken for: the chapter's MNIST.
CHAPTER_SPEC = DataSpec((1, 28, 28), "float32", 10, tuple(DATASET_CLASSES["mnist"].classes))


@dataclass(frozen=True)
class LoadedModel:
    """A model in eval mode on its device, what it was loaded from, the run that trained it when known, and its data's spec."""

    model: nn.Module
    origin: str
    source_run: RunRecord | None
    spec: DataSpec

    def trained_with(self, param: str) -> str:
        """A param of the run that trained the model, else its TrainConfig default (a bare state_dict file has no run)."""
        return trained_with(self.source_run, param)

    def config(self) -> TrainConfig:
        """The config of the run that trained the model, as far as its params tell (defaults for a bare file)."""
        return config_of(self.source_run)


def trained_with(run: RunRecord | None, param: str) -> str:
    """A param of a training run, else its TrainConfig default."""
    if run is not None and param in run.params:
        return run.params[param]
    return str(getattr(TrainConfig, param))


def config_of(run: RunRecord | None) -> TrainConfig:
    """A run's TrainConfig rebuilt from its params (logged as strings), defaults where it logged none."""
    settings = {}
    for field in dataclasses.fields(TrainConfig):
        if run is not None and field.name in run.params:
            settings[field.name] = field_value(field.name, run.params[field.name])
    return TrainConfig(**settings)


def run_spec(run: RunRecord | None) -> DataSpec:
    """The data spec a run logged (data_spec.json); the chapter's MNIST for a bare file or an older run."""
    if run is None:
        return CHAPTER_SPEC
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = tracking.download_artifact(run, tracking.DATA_SPEC_ARTIFACT, folder)
        except InputError:
            return CHAPTER_SPEC
        return DataSpec.from_dict(json.loads(path.read_text()))


def load_model(reference: str, device: torch.device) -> LoadedModel:
    """Load a model onto `device` from a run id (its state_dict.pt), a runs:/ or models:/ URI, or a state_dict file."""
    path = Path(reference).expanduser()
    source: RunRecord | None = None
    if path.is_file():
        weights, origin = read_state_dict(path), str(path)
    elif reference.startswith(MODEL_URI_SCHEMES):
        weights, source_run_id = tracking.logged_model_weights(reference)
        source = tracking.get_run(source_run_id) if source_run_id else None
        origin = reference
    elif RUN_ID.fullmatch(reference):
        source = tracking.get_run(reference)
        if source.kind != TRAINING:
            raise InputError(f"Run {reference} is a {source.kind} run, which holds no model: give the run id of a training run.")
        with tempfile.TemporaryDirectory() as folder:
            weights = read_state_dict(tracking.download_artifact(source, tracking.STATE_DICT_ARTIFACT, folder))
        origin = f"{tracking.STATE_DICT_ARTIFACT} of run {reference}"
    else:
        raise InputError(
            f"No model {reference!r}: it is neither a file nor a run id (32 hex digits), runs:/RUN_ID/model or models:/NAME/VERSION."
        )
    spec = run_spec(source)
    model = model_from_weights(config_of(source), spec, weights, origin)
    return LoadedModel(model.to(device).eval(), origin, source, spec)


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """The tensors a torch.save file holds, mapped onto the CPU; weights_only, so no pickled code runs."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises UnpicklingError, KeyError, EOFError, RuntimeError, ... on other files
        if isinstance(error, pickle.UnpicklingError) and zipfile.is_zipfile(path):  # torch.save's format, holding objects
            raise InputError(
                f"{path} holds pickled objects besides tensors, which could run code and are not loaded: save model.state_dict() with torch.save."
            ) from None
        raise InputError(
            f"{path} is not a file written by torch.save ({type(error).__name__}): save model.state_dict() with torch.save."
        ) from None
    if not isinstance(state, dict) or not all(isinstance(name, str) and isinstance(tensor, Tensor) for name, tensor in state.items()):
        raise InputError(
            f"{path} holds a {type(state).__name__}, not a state_dict of named tensors: save model.state_dict() with torch.save."
        )
    return state


def model_from_weights(config: TrainConfig, spec: DataSpec, weights: dict[str, Tensor], origin: str) -> nn.Module:
    """The run's model (built as it was: architecture, arguments, data spec) holding `weights`, or a one-line error saying why they do not fit."""
    on_meta = [name for name, tensor in weights.items() if tensor.is_meta]
    if on_meta:
        raise InputError(
            f"{origin} holds tensors without data ({on_meta[0]} is on the meta device): save the state_dict of a trained model."
        )
    try:
        model = model_for(config, spec)
    except ConfigError as error:
        raise InputError(
            f"Cannot rebuild the model of {origin}: {error}. Load its logged model with mlflow.pytorch.load_model instead."
        ) from None
    expected = model.state_dict()
    problems = [f"{name} is missing" for name in expected if name not in weights]
    problems += [f"{name} is unexpected" for name in weights if name not in expected]
    problems += [
        f"{name} has shape {tuple(weights[name].shape)}, not {tuple(tensor.shape)}"
        for name, tensor in expected.items()
        if name in weights and weights[name].shape != tensor.shape
    ]
    if problems:
        shown = "; ".join(problems[:3]) + ("; ..." if len(problems) > 3 else "")
        raise InputError(f"{origin} is not a state_dict of the {config.model} model: {shown}.")
    model.load_state_dict(weights)
    return model


@dataclass(frozen=True)
class Evaluation:
    """A model's scores on a dataset's test split: the loss, each metric by name and, for a classifier, per-class
    accuracy and the confusion matrix."""

    dataset: str
    num_samples: int
    loss: float
    scores: dict[str, float]
    class_names: list[str]
    per_class_accuracy: list[float]
    confusion_matrix: list[list[int]]

    @property
    def accuracy(self) -> float | None:
        """The run's accuracy metric where it logs one, else, for a classifier, the fraction correct counted from the confusion matrix."""
        if "accuracy" in self.scores:
            return self.scores["accuracy"]
        if not self.confusion_matrix:
            return None
        return sum(self.confusion_matrix[label][label] for label in range(len(self.confusion_matrix))) / max(self.num_samples, 1)

    def to_report(self) -> dict[str, Any]:
        """Everything as JSON-ready values (evaluation.json), with the fraction correct as `accuracy` where there is one."""
        return dataclasses.asdict(self) | ({"accuracy": self.accuracy} if self.accuracy is not None else {})

    def metrics(self) -> dict[str, float]:
        """The scores as MLflow metrics: test_loss, test_<metric> and, for a classifier, test_accuracy_class_N."""
        per_class = {f"test_accuracy_class_{label}": value for label, value in enumerate(self.per_class_accuracy)}
        return {"test_loss": self.loss, **{f"test_{name}": value for name, value in self.scores.items()}, **per_class}

    def report(self) -> str:
        """The scores for a person: loss and metrics, then for a classifier per true class its accuracy and confusion-matrix row."""
        scores = "  ".join(f"{name}: {value:.4f}" for name, value in self.scores.items())
        head = f"Test split of {self.dataset}: {self.num_samples} samples\nloss: {self.loss:.4f}  {scores}"
        if not self.confusion_matrix:
            return head + "\n"
        correct = sum(self.confusion_matrix[label][label] for label in range(len(self.confusion_matrix)))
        header = ["true class", "accuracy", *(str(label) for label in range(len(self.class_names)))]
        lines = [
            [name, f"{accuracy:.4f}", *map(str, row)]
            for name, accuracy, row in zip(self.class_names, self.per_class_accuracy, self.confusion_matrix)
        ]
        return (
            f"{head} ({correct} correct)\n\n"
            "Per true class: its accuracy and its row of the confusion matrix (columns: predicted class)\n" + text_table(header, lines)
        )


def evaluate_model(loaded: LoadedModel, dataset: str, device: torch.device, root: str | Path | None = None) -> Evaluation:
    """Test loss and metrics as the training run computed them (its recipe's loss and metrics, the same batches), and for a
    classifier per-class accuracy and the confusion matrix."""
    config = dataclasses.replace(loaded.config(), dataset=dataset, train_subset=0, steps_per_epoch=0)
    recipe = recipe_from_config(config, root)
    if recipe.data.test is None:
        raise InputError(f"The dataset {dataset} has no test split to score on.")
    config, recipe = settle(config, recipe, loaded.model, to_device(example_batch(recipe.data), device))
    test_dl = make_loaders(config, recipe.data, device)[2]
    counted = task_scores(CLASSIFICATION, recipe.data.spec.num_classes).to(device) if recipe.data.spec.task == CLASSIFICATION else None
    loss, scores = evaluate(loaded.model, test_dl, recipe.loss_fn, recipe.metrics().to(device), device, also=counted)
    per_class = class_scores_of(counted) if counted is not None else None
    return Evaluation(
        dataset,
        split_size(recipe.data.test),
        loss,
        by_name(scores),
        list(recipe.data.spec.class_names),
        per_class.per_class_accuracy if per_class else [],
        per_class.confusion_matrix if per_class else [],
    )
