"""A split's samples: reading the first ones, checking them, and the tensors a split stores."""

from __future__ import annotations

import numbers
from typing import Any

import torch
import torch.utils.data as utils
import torchvision.datasets as datasets
import torchvision.transforms.v2 as v2
from torch import Tensor

from deep_learning.core.batches import is_integral, split_target
from deep_learning.core.errors import DataError


def kind_of(value: Any) -> str:
    """What a value is, for a message: "a dict with keys a, b", "a tuple of 4 items", "a tensor of shape (10,) and dtype float32"."""
    if isinstance(value, dict):
        return f"a dict with keys {', '.join(map(str, value))}" if value else "an empty dict"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {str(value.dtype).removeprefix('torch.')}"
    if value is None:
        return "None"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiouAEIOU' else 'a'} {name}"


def is_stream(dataset: Any) -> bool:
    """True for an IterableDataset: samples come from iterating it, with no index and perhaps no length."""
    return isinstance(dataset, utils.IterableDataset)


def split_size(dataset: Any) -> int | str:
    """A split's number of samples, or "stream" for one without a length."""
    return "stream" if is_stream(dataset) else len(dataset)


def first_sample(dataset: Any) -> Any:
    """A split's first sample (a stream's first item), read once; None for a stream that yields nothing."""
    samples = first_samples(dataset, 1)
    return samples[0] if samples else None


def first_samples(split: Any, count: int) -> list[Any]:
    """The first `count` samples of a split (of a stream: the first it yields)."""
    if not is_stream(split):
        return [split[index] for index in range(min(count, len(split)))]
    samples: list[Any] = []
    for sample in split:
        samples.append(sample)
        if len(samples) >= count:
            break
    return samples


def check_samples(dataset: Any, split: str, target_key: str | None = None) -> None:
    """Refuse, in one line, a split whose first sample is not `(inputs, target)` (a dict holding `target_key`).

    Inputs are a tensor, a tuple or list of tensors, or a dict of them; the target a tensor or a number.
    """
    where = f"the {split} split"
    if not is_stream(dataset) and not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise DataError(f"{where} is {kind_of(dataset)}, not a dataset: give one with __getitem__ and __len__, or an IterableDataset")
    if not is_stream(dataset) and len(dataset) == 0:
        raise DataError(f"{where} is empty")
    sample = first_sample(dataset)
    if sample is None:
        raise DataError(f"{where} is a stream that yields nothing")
    inputs, target = _as_pair(sample, where, target_key)
    if not _all_tensors(inputs):
        raise DataError(
            f"{where}'s inputs are {kind_of(inputs)}, not tensors: convert them in the dataset "
            "(e.g. with v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])), or give a tuple or dict of tensors"
        )
    if not (isinstance(target, Tensor) or (isinstance(target, numbers.Number) and not isinstance(target, complex))):
        raise DataError(f"{where}'s targets are {kind_of(target)}, not tensors or numbers")


def _as_pair(sample: Any, where: str, target_key: str | None) -> tuple[Any, Any]:
    if isinstance(sample, dict):
        if target_key is None:
            raise DataError(f"{where} yields {kind_of(sample)}, not (input, target) pairs: name the target's key with target_key")
        if target_key not in sample:
            raise DataError(
                f"{where}'s samples have no key {target_key!r} (their keys: {', '.join(map(str, sample))}): give the target's key as target_key"
            )
        return split_target(sample, target_key)
    if target_key is not None:
        raise DataError(f"{where} yields {kind_of(sample)}, not dicts: target_key is for samples that are dicts")
    if not isinstance(sample, (tuple, list)) or len(sample) != 2:
        raise DataError(f"{where} yields {kind_of(sample)}, not (input, target) pairs: make __getitem__ return (inputs, target)")
    return sample[0], sample[1]


def _all_tensors(inputs: Any) -> bool:
    if isinstance(inputs, Tensor):
        return True
    if isinstance(inputs, dict):
        return bool(inputs) and all(_all_tensors(value) for value in inputs.values())
    if isinstance(inputs, (tuple, list)):
        return bool(inputs) and all(_all_tensors(value) for value in inputs)
    return False


def unwrap(dataset: Any) -> tuple[Any, Tensor | None]:
    """The dataset under a chain of Subsets, and the indices into it that the chain selects (None: all of it)."""
    indices = None
    while isinstance(dataset, utils.Subset):
        level = torch.as_tensor(dataset.indices)
        indices = level if indices is None else level[indices]
        dataset = dataset.dataset
    return dataset, indices


def _is_chapter_mnist(dataset: Any) -> bool:
    """MNIST-like (uint8 `.data` and `.targets` tensors) with the chapter's transform: its stored images are its samples."""
    if not isinstance(dataset, datasets.MNIST) or dataset.target_transform is not None:
        return False
    steps = getattr(dataset.transform, "transforms", [])
    return [type(step) for step in steps] == [v2.ToImage, v2.ToDtype] and steps[1].dtype == torch.float32 and steps[1].scale


def stored_tensors(dataset: Any) -> tuple[Tensor, Tensor] | None:
    """A split's inputs and targets as stored, without decoding: MNIST's uint8 images (N, 1, 28, 28) or a TensorDataset's
    two tensors; integer targets as int64 (what cross-entropy takes). None for any other split."""
    base, indices = unwrap(dataset)
    if _is_chapter_mnist(base):
        inputs, targets = base.data.unsqueeze(1), base.targets
    elif isinstance(base, utils.TensorDataset) and len(base.tensors) == 2:
        inputs, targets = base.tensors
    else:
        return None
    if indices is not None:
        inputs, targets = inputs[indices], targets[indices]
    return inputs, targets.to(torch.int64) if is_integral(targets) else targets


def as_tensors(dataset: Any) -> tuple[Tensor, Tensor]:
    """A split as one inputs tensor and its targets, equal to its samples stacked.

    MNIST's stored images are converted as the chapter's transform does and a TensorDataset's
    tensors are indexed, both without per-sample work; any other dataset of (tensor, label) pairs is read
    sample by sample, once (runs never do this: it is for a split that fits in memory, on request).
    """
    stored = stored_tensors(dataset)
    if stored is None:
        return _stacked(dataset)
    inputs, targets = stored
    if _is_chapter_mnist(unwrap(dataset)[0]):
        inputs = v2.functional.to_dtype(inputs, torch.float32, scale=True)
    return inputs, targets


def _stacked(dataset: Any) -> tuple[Tensor, Tensor]:
    """Every sample read once into one preallocated inputs tensor, and the labels."""
    first = dataset[0][0]
    inputs = torch.empty((len(dataset), *first.shape), dtype=first.dtype)
    labels = torch.empty(len(dataset), dtype=torch.int64)
    for index in range(len(dataset)):
        sample, label = dataset[index]
        if sample.shape != first.shape:  # assigning would broadcast some shapes silently
            raise DataError(
                f"sample {index} has shape {tuple(sample.shape)} but sample 0 {tuple(first.shape)}: samples must share one shape"
            )
        inputs[index], labels[index] = sample, int(label)
    return inputs, labels
