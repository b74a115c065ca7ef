"""Batches as users make them: `(inputs, target)`, where inputs are a tensor (`model(x)`), a tuple or list of tensors
(`model(*x)`) or a dict of tensors (`model(**x)`), and the target is a tensor of any shape and dtype.

The loop only calls what is here, so it never asks what a batch holds. Every function is a few Python type checks
on the host: nothing reads the device. Models that compute their own loss (the Hugging Face style) plug in
through `ModelLoss`, the one hook the loop knows besides a plain `loss_fn(output, target)`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor
from torch.utils._pytree import tree_map

Inputs = Tensor | Sequence[Tensor] | Mapping[str, Tensor]
LossFn = Callable[[Any, Tensor], Tensor]


@dataclass(frozen=True)
class ExampleInputs:
    """A batch's inputs that a logged model is shown with, and for each input tensor the dimensions (the batch's being 0)
    whose size the data varies."""

    inputs: Any
    varying_dims: Sequence[set[int]] = ()


def to_device(value: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """`value` with every tensor in it (nested in tuples, lists and dicts) moved to `device`."""
    if isinstance(value, Tensor):
        return value.to(device, non_blocking=non_blocking)
    return tree_map(lambda leaf: leaf.to(device, non_blocking=non_blocking) if isinstance(leaf, Tensor) else leaf, value)


def as_arguments(inputs: Inputs) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The positional and keyword arguments a model is called with: `model(x)`, `model(*x)` for a tuple or list,
    `model(**x)` for a dict."""
    if isinstance(inputs, Tensor):
        return (inputs,), {}
    if isinstance(inputs, Mapping):
        return (), dict(inputs)
    return tuple(inputs), {}


def forward(model: nn.Module | Callable[..., Any], inputs: Inputs) -> Any:
    """Call the model as the inputs say (see `as_arguments`)."""
    args, kwargs = as_arguments(inputs)
    return model(*args, **kwargs)


def predictions(output: Any) -> Tensor:
    """What metrics score of a model's output: the tensor itself, an output object's or dict's `logits`, or a tuple's first item."""
    if isinstance(output, Tensor):
        return output
    if isinstance(output, Mapping):
        return output["logits"]
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, (tuple, list)) and output:
        return predictions(output[0])
    raise TypeError(f"a model output of type {type(output).__name__} holds no predictions: return a tensor, or an object with .logits")


def num_samples(target: Any) -> int:
    """How many samples a batch holds: its target's first dimension (a host-side shape, never a read of the device)."""
    if isinstance(target, Tensor):
        return target.shape[0] if target.ndim else 1
    return len(target)


def batches_per_pass(loader: Any) -> int:
    """How many batches a pass of `loader` gives; 0 where it cannot say (a stream, an iterable without a length)."""
    try:
        return len(loader)
    except TypeError:
        return 0


def is_integral(tensor: Tensor) -> bool:
    """True for integer tensors (class indices, token ids); floats, complex numbers and booleans are not."""
    return not (tensor.is_floating_point() or tensor.is_complex() or tensor.dtype == torch.bool)


def leaves(value: Any) -> list[Tensor]:
    """The tensors in `value`, in order (a dict's in its key order)."""
    if isinstance(value, Tensor):
        return [value]
    if isinstance(value, Mapping):
        return [tensor for item in value.values() for tensor in leaves(item)]
    if isinstance(value, (tuple, list)):
        return [tensor for item in value for tensor in leaves(item)]
    return []


def first_tensor(value: Any) -> Tensor:
    """The first tensor of some inputs: what a run's data spec describes as its input shape and dtype."""
    found = leaves(value)
    if not found:
        raise TypeError(f"{type(value).__name__} holds no tensor")
    return found[0]


class ModelLoss:
    """The loss of a model that computes its own (the Hugging Face style): the target goes into the forward call, and
    the output's `loss` (an attribute, or a dict key) is the loss; its `logits` are what metrics score.

    The target is passed as keyword `target_argument` (default `labels`) for dict inputs and single tensors, or as the
    last positional argument for tuple inputs: `fit(..., target_key="labels", loss_fn=ModelLoss())`. After skorch's
    `get_loss` and the HF Trainer's `compute_loss_func`, but smaller: it only says where the loss comes from.
    """

    def __init__(self, target_argument: str = "labels") -> None:
        self.target_argument = target_argument

    def __call__(self, output: Any, target: Tensor) -> Tensor:
        loss = output["loss"] if isinstance(output, Mapping) else getattr(output, "loss", None)
        if not isinstance(loss, Tensor):
            raise TypeError(
                f"the model's output ({type(output).__name__}) has no loss: with ModelLoss the model must return an object with .loss"
            )
        return loss

    def arguments(self, inputs: Inputs, target: Tensor) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The positional and keyword arguments that the model, given the target as well, is called with."""
        args, kwargs = as_arguments(inputs)
        if isinstance(inputs, (tuple, list)):
            return (*args, target), kwargs
        return args, {**kwargs, self.target_argument: target}

    def __repr__(self) -> str:
        return f"ModelLoss(target_argument={self.target_argument!r})"


def output_and_loss(model: nn.Module | Callable[..., Any], inputs: Inputs, target: Tensor, loss_fn: LossFn) -> tuple[Any, Tensor]:
    """A batch's forward pass and its loss: `loss_fn(model(inputs), target)`, or, for a `ModelLoss`, the loss the
    model computed with the target in its call."""
    if isinstance(loss_fn, ModelLoss):
        args, kwargs = loss_fn.arguments(inputs, target)
        output = model(*args, **kwargs)
    else:
        output = forward(model, inputs)
    return output, loss_fn(output, target)


def split_target(batch: Any, target_key: str | None) -> tuple[Any, Any]:
    """A sample or batch as `(inputs, target)`: the pair it is, or a dict's `target_key` item and the rest as inputs."""
    if target_key is None:
        inputs, target = batch
        return inputs, target
    inputs = {key: value for key, value in batch.items() if key != target_key}
    return inputs, batch[target_key]


class TargetSplit:
    """A loader of dict batches as one of `(inputs, target)` pairs, the target taken from under `target_key`."""

    def __init__(self, loader: Iterable[Any], target_key: str) -> None:
        self.loader = loader
        self.target_key = target_key

    def __iter__(self) -> Iterator[tuple[Any, Any]]:
        for batch in self.loader:
            yield split_target(batch, self.target_key)

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:  # dataset, batch_size, sampler, ...: the wrapped loader's
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)
