"""The data spec: what a model and everything after it need to know of the data, described from a split's first sample."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.utils.data as utils

from deep_learning.core.batches import first_tensor, is_integral, split_target
from deep_learning.core.data.samples import first_sample, is_stream, unwrap
from deep_learning.core.errors import DataError

NUM_CLASSES = 10


IMAGE_SHAPE = (1, 28, 28)


@dataclass(frozen=True)
class DataSpec:
    """What a model and everything after it need to know of the data."""

    input_shape: tuple[int, ...]  # one sample's first input tensor, e.g. (1, 28, 28)
    input_dtype: str  # a torch dtype's name without "torch.", e.g. "float32"
    num_classes: int  # classes (labels of a multi-label task, the vocabulary of a sequence task); 0: none or not known yet
    class_names: tuple[str, ...]
    task: str = "classification"  # see deep_learning.core.tasks; "" until a run settles it
    target_shape: tuple[int, ...] = ()  # one sample's target
    target_dtype: str = "int64"
    features: dict[str, Any] | None = None  # a csv run's feature and target columns and the training split's statistics

    def __post_init__(self) -> None:
        if self.class_names and len(self.class_names) != self.num_classes:
            raise DataError(f"{len(self.class_names)} class names were given for {self.num_classes} classes")

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready values."""
        spec = {
            "input_shape": list(self.input_shape),
            "input_dtype": self.input_dtype,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "task": self.task,
            "target_shape": list(self.target_shape),
            "target_dtype": self.target_dtype,
        }
        return spec | ({"features": self.features} if self.features else {})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataSpec:
        """The spec that `to_dict` gave, e.g. read back from JSON (a run from before tasks: a classification's)."""
        return cls(
            input_shape=tuple(int(size) for size in data["input_shape"]),
            input_dtype=str(data["input_dtype"]),
            num_classes=int(data["num_classes"]),
            class_names=tuple(str(name) for name in data["class_names"]),
            task=str(data.get("task", "classification")),
            target_shape=tuple(int(size) for size in data.get("target_shape", ())),
            target_dtype=str(data.get("target_dtype", "int64")),
            features=data.get("features"),
        )


def describe_data(
    train: Any, *, class_names: Sequence[str] | None = None, num_classes: int | None = None, target_key: str | None = None
) -> DataSpec:
    """The spec of a training split that check_samples accepts, from its first sample alone: its first input tensor's
    shape and dtype, its target's, and its classes where they are known without reading the data.

    The class names are `class_names`, else the dataset's `.classes` (under any Subsets); without names, the count is
    `num_classes`, else one more than the largest stored label (a TensorDataset's integer targets, `.targets`), else
    not known yet (0): a run then takes it from the model's output. Unnamed classes are called "0", "1", ...
    """
    inputs, target = split_target(first_sample(train), target_key)
    first, target = first_tensor(inputs), torch.as_tensor(target)
    names = class_names or getattr(unwrap(train)[0], "classes", None)
    count = len(names) if names else num_classes or _stored_class_count(train)
    names = tuple(map(str, names)) if names else tuple(str(label) for label in range(count))
    return DataSpec(
        tuple(first.shape),
        _dtype_name(first.dtype),
        count,
        names,
        task="",
        target_shape=tuple(target.shape),
        target_dtype=_dtype_name(target.dtype),
    )


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _stored_class_count(dataset: Any) -> int:
    """One more than the largest stored integer label (a TensorDataset's, `.targets`), without reading a sample; 0 when none is stored."""
    if is_stream(dataset):
        return 0
    base, _ = unwrap(dataset)
    if isinstance(base, utils.TensorDataset) and len(base.tensors) == 2:
        labels = base.tensors[1]
    elif getattr(base, "targets", None) is not None:
        labels = torch.as_tensor(base.targets)
    else:
        return 0
    return int(labels.max()) + 1 if is_integral(labels) and labels.numel() and labels.ndim == 1 else 0
