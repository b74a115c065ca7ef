"""Putting trained models to use: load one onto any device, score it on a test split, predict classes of images."""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import math
import pickle
import re
import struct
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torchvision.transforms.v2.functional as F
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torchmetrics import MetricCollection

from deep_learning import tracking
from deep_learning.comparison import text_table
from deep_learning.config import TrainConfig
from deep_learning.data import DATASET_CLASSES, DataSpec, TensorLoader, as_tensors, load_splits
from deep_learning.errors import ConfigError, InputError
from deep_learning.metrics import build_metrics
from deep_learning.model import build_model
from deep_learning.records import TRAINING, RunRecord
from deep_learning.scoring import class_scores
from deep_learning.training import evaluate

RUN_ID = re.compile(r"[0-9a-f]{32}")
MODEL_URI_SCHEMES = ("runs:/", "models:/")
GZIP_MAGIC = b"\x1f\x8b"
IDX_UNSIGNED_BYTE = 0x08
PREDICTION_BATCH_SIZE = 1024
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
            text = run.params[field.name]
            kind = type(field.default)
            settings[field.name] = text.lower() == "true" if kind is bool else kind(float(text)) if kind is int else kind(text)
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
        raise InputError(f"No model {reference!r}: it is neither a file nor a run id (32 hex digits), runs:/RUN_ID/model or models:/NAME/VERSION.")
    spec = run_spec(source)
    model = model_from_weights(config_of(source), spec, weights, origin)
    return LoadedModel(model.to(device).eval(), origin, source, spec)


def read_state_dict(path: Path) -> dict[str, Tensor]:
    """The tensors a torch.save file holds, mapped onto the CPU; weights_only, so no pickled code runs."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises UnpicklingError, KeyError, EOFError, RuntimeError, ... on other files
        if isinstance(error, pickle.UnpicklingError) and zipfile.is_zipfile(path):  # torch.save's format, holding objects
            raise InputError(f"{path} holds pickled objects besides tensors, which could run code and are not loaded: save model.state_dict() with torch.save.") from None
        raise InputError(f"{path} is not a file written by torch.save ({type(error).__name__}): save model.state_dict() with torch.save.") from None
    if not isinstance(state, dict) or not all(isinstance(name, str) and isinstance(tensor, Tensor) for name, tensor in state.items()):
        raise InputError(f"{path} holds a {type(state).__name__}, not a state_dict of named tensors: save model.state_dict() with torch.save.")
    return state


def model_from_weights(config: TrainConfig, spec: DataSpec, weights: dict[str, Tensor], origin: str) -> nn.Module:
    """The run's model (built as it was: architecture, arguments, data spec) holding `weights`, or a one-line error saying why they do not fit."""
    on_meta = [name for name, tensor in weights.items() if tensor.is_meta]
    if on_meta:
        raise InputError(f"{origin} holds tensors without data ({on_meta[0]} is on the meta device): save the state_dict of a trained model.")
    try:
        model = build_model(config.model, spec.input_shape, spec.num_classes, **config.model_arguments)
    except ConfigError as error:
        raise InputError(f"Cannot rebuild the model of {origin}: {error}. Load its logged model with mlflow.pytorch.load_model instead.") from None
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
    """A model's scores on a dataset's test split: the loss, each metric by name, per-class accuracy and the confusion matrix."""

    dataset: str
    num_samples: int
    loss: float
    scores: dict[str, float]
    class_names: list[str]
    per_class_accuracy: list[float]
    confusion_matrix: list[list[int]]

    @property
    def accuracy(self) -> float:
        """The fraction of correct predictions: the run's accuracy metric where it logs one, else counted from the confusion matrix."""
        if "accuracy" in self.scores:
            return self.scores["accuracy"]
        return sum(self.confusion_matrix[label][label] for label in range(len(self.confusion_matrix))) / max(self.num_samples, 1)

    def to_report(self) -> dict[str, Any]:
        """Everything as JSON-ready values (evaluation.json), with the fraction correct as `accuracy`."""
        return dataclasses.asdict(self) | {"accuracy": self.accuracy}

    def metrics(self) -> dict[str, float]:
        """The scores as MLflow metrics: test_loss, test_<metric> and test_accuracy_class_N."""
        per_class = {f"test_accuracy_class_{label}": value for label, value in enumerate(self.per_class_accuracy)}
        return {"test_loss": self.loss, **{f"test_{name}": value for name, value in self.scores.items()}, **per_class}

    def report(self) -> str:
        """The scores for a person: loss and metrics, then per true class its accuracy and confusion-matrix row."""
        correct = sum(self.confusion_matrix[label][label] for label in range(len(self.confusion_matrix)))
        header = ["true class", "accuracy", *(str(label) for label in range(len(self.class_names)))]
        lines = [
            [name, f"{accuracy:.4f}", *map(str, row)]
            for name, accuracy, row in zip(self.class_names, self.per_class_accuracy, self.confusion_matrix)
        ]
        scores = "  ".join(f"{name}: {value:.4f}" for name, value in self.scores.items())
        return (
            f"Test split of {self.dataset}: {self.num_samples} images\n"
            f"loss: {self.loss:.4f}  {scores} ({correct} correct)\n\n"
            "Per true class: its accuracy and its row of the confusion matrix (columns: predicted class)\n"
            + text_table(header, lines)
        )


def evaluate_model(loaded: LoadedModel, dataset: str, device: torch.device, root: str | Path | None = None) -> Evaluation:
    """Test loss and metrics as the training run computed them (same function, same batches, same metrics), per-class accuracy and the confusion matrix."""
    config = dataclasses.replace(loaded.config(), dataset=dataset, train_subset=0)
    test = load_splits(config, root).test
    if test is None:
        raise InputError(f"The dataset {dataset} has no test split to score on.")
    images, labels = as_tensors(test)
    batches = TensorLoader(images.to(device), labels.to(device), config.val_batch_size, shuffle=False)
    metrics = MetricCollection(build_metrics(config.metric_names, loaded.spec.num_classes), compute_groups=False).to(device)
    loss, scores = evaluate(loaded.model, batches, nn.CrossEntropyLoss(), metrics, device)
    per_class = class_scores(loaded.model, batches, device, loaded.spec.num_classes)
    return Evaluation(dataset, len(labels), loss, scores, list(loaded.spec.class_names), per_class.per_class_accuracy, per_class.confusion_matrix)


@dataclass(frozen=True)
class Prediction:
    """The most probable class of one image and its softmax probability."""

    image: str
    label: int
    class_name: str
    probability: float


def read_images(paths: Sequence[Path], spec: DataSpec) -> tuple[list[str], Tensor]:
    """The images in the files, named, as float tensors in [0, 1] of the model's input shape (N, C, H, W).

    Anything Pillow reads (PNG, JPEG, ...) is converted to grayscale for one channel, else RGB, and
    resized (bilinear, antialiased) unless it has the model's size; an IDX file of unsigned bytes,
    gzip'd or not, holds one image (named FILE) or many (named FILE[INDEX]).
    """
    channels, height, width = spec.input_shape
    names: list[str] = []
    batches: list[Tensor] = []
    for path in paths:
        data = path.read_bytes()
        if data[:2] == GZIP_MAGIC:
            try:
                data = gzip.decompress(data)
            except (OSError, EOFError):
                raise InputError(f"{path} is a damaged gzip file: give PNG or JPEG images, or an IDX file.") from None
        if _is_idx(data):
            pixels = _idx_images(data, path).expand(-1, channels, -1, -1)
            names += [str(path)] if data[3] == 2 else [f"{path}[{index}]" for index in range(len(pixels))]
        else:
            pixels = _decoded_image(data, path, "L" if channels == 1 else "RGB")
            names.append(str(path))
        if pixels.shape[-2:] != (height, width):
            pixels = F.resize(pixels, [height, width], antialias=True)
        batches.append(pixels)
    return names, F.to_dtype(torch.cat(batches), torch.float32, scale=True)


def _is_idx(data: bytes) -> bool:
    return len(data) >= 4 and data[:2] == b"\x00\x00" and data[2] == IDX_UNSIGNED_BYTE


def _idx_images(data: bytes, path: Path) -> Tensor:
    num_dims = data[3]
    header = 4 + 4 * num_dims
    if num_dims not in (2, 3) or len(data) < header:
        raise InputError(f"{path} is an IDX file of {num_dims}-dimensional data, not of images (height x width, or count x height x width).")
    dims = struct.unpack(f">{num_dims}I", data[4:header])
    if len(data) != header + math.prod(dims):
        raise InputError(f"{path} is a damaged IDX file: {'x'.join(map(str, dims))} bytes of pixels announced, {len(data) - header} found.")
    pixels = torch.frombuffer(bytearray(data[header:]), dtype=torch.uint8)
    return pixels.reshape(-1, 1, *dims[-2:])


def _decoded_image(data: bytes, path: Path, mode: str) -> Tensor:
    try:
        with Image.open(io.BytesIO(data)) as image:
            converted = image.convert(mode)
    except (UnidentifiedImageError, OSError):
        raise InputError(f"{path} is neither an image (PNG, JPEG, ...) nor an IDX file of images.") from None
    return F.pil_to_tensor(converted).unsqueeze(0)


def predict(model: nn.Module, names: Sequence[str], images: Tensor, device: torch.device, class_names: Sequence[str]) -> list[Prediction]:
    """The most probable class of each image, with its softmax probability."""
    with torch.inference_mode():
        probabilities = torch.cat([torch.softmax(model(batch.to(device)), dim=1).cpu() for batch in images.split(PREDICTION_BATCH_SIZE)])
    best, labels = probabilities.max(dim=1)
    return [
        Prediction(name, label, class_names[label], probability)
        for name, label, probability in zip(names, labels.tolist(), best.tolist())
    ]
