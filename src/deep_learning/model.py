"""The models a run can train: the chapter's MLP, a small CNN, a small vision transformer, or user code by import path."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from deep_learning.config import MODELS
from deep_learning.errors import ConfigError
from deep_learning.factories import call_factory, import_object, is_import_path


def build_model(name: str = "mlp", input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10, **model_args: Any) -> nn.Module:
    """A fresh, randomly initialised model mapping (N, *input_shape) floats to (N, num_classes) logits (draws from torch's global RNG)."""
    input_shape = tuple(input_shape)
    if name in _BUILDERS:
        builder = _BUILDERS[name]
        _check_model_args(name, builder, model_args)
        return builder(input_shape, num_classes, **model_args)
    if is_import_path(name):
        return _user_model(name, input_shape, num_classes, model_args)
    raise ConfigError(f"model must be one of {', '.join(MODELS)}, or an import path package.module:factory, not {name!r}")


def mlp(input_shape: tuple[int, ...], num_classes: int, hidden: int = 128) -> nn.Module:
    """The chapter's MLP: flatten, one hidden ReLU layer, linear logits (784-128-10 for MNIST)."""
    _check_positive("mlp", hidden=hidden, num_classes=num_classes)
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(math.prod(input_shape), hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


def cnn(input_shape: tuple[int, ...], num_classes: int, channels: Sequence[int] = (16, 32)) -> nn.Module:
    """Conv-ReLU-max-pool blocks, one per entry of `channels`, each halving the image, then a linear head."""
    in_channels, height, width = _image_shape("cnn", input_shape)
    if not isinstance(channels, (list, tuple)) or not channels:
        raise ConfigError(f"model 'cnn' needs channels as a list of channel counts such as [16, 32], not {channels!r}")
    _check_positive("cnn", num_classes=num_classes, **{f"channels[{index}]": count for index, count in enumerate(channels)})
    scale = 2 ** len(channels)
    if height < scale or width < scale:
        most = min(height, width).bit_length() - 1
        raise ConfigError(f"model 'cnn' halves the image once per channel count: {height}x{width} images allow at most {most}, not {len(channels)}")
    layers: list[nn.Module] = []
    for out_channels in channels:
        layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        in_channels = out_channels
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(in_channels * (height // scale) * (width // scale), num_classes))


def transformer(
    input_shape: tuple[int, ...],
    num_classes: int,
    dim: int = 64,
    depth: int = 2,
    heads: int = 4,
    mlp_dim: int = 128,
    patch_size: int | None = None,
) -> nn.Module:
    """A small vision transformer; `patch_size` defaults to the largest of 7, 4, 2, 1 that divides height and width."""
    _, height, width = _image_shape("transformer", input_shape)
    if patch_size is None:
        patch_size = next(size for size in (7, 4, 2, 1) if height % size == 0 and width % size == 0)
    _check_positive("transformer", num_classes=num_classes, dim=dim, depth=depth, heads=heads, mlp_dim=mlp_dim, patch_size=patch_size)
    if height % patch_size or width % patch_size:
        raise ConfigError(f"model 'transformer' needs a patch_size that divides {height} and {width}, not {patch_size}")
    if dim % heads:
        raise ConfigError(f"model 'transformer' needs dim divisible by heads, not dim={dim} with heads={heads}")
    return VisionTransformer(input_shape, num_classes, dim, depth, heads, mlp_dim, patch_size)


class VisionTransformer(nn.Module):
    """ViT: patches embedded by a strided convolution, a class token, pre-norm encoder layers, a linear head on the class token."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, dim: int, depth: int, heads: int, mlp_dim: int, patch_size: int) -> None:
        super().__init__()
        channels, height, width = input_shape
        self.patch_embedding = nn.Conv2d(channels, dim, kernel_size=patch_size, stride=patch_size)
        self.class_token = nn.Parameter(nn.init.trunc_normal_(torch.empty(1, 1, dim), std=0.02))
        patches = (height // patch_size) * (width // patch_size)
        self.position_embedding = nn.Parameter(nn.init.trunc_normal_(torch.empty(1, patches + 1, dim), std=0.02))
        layer = nn.TransformerEncoderLayer(dim, heads, mlp_dim, dropout=0.0, batch_first=True, norm_first=True)
        # Nested tensors only serve padding masks, and pre-norm layers cannot use them anyway.
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, images: Tensor) -> Tensor:
        """Logits of shape (N, classes) for images of shape (N, C, H, W)."""
        patches = self.patch_embedding(images).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.class_token.expand(patches.shape[0], -1, -1), patches], dim=1) + self.position_embedding
        return self.head(self.norm(self.encoder(tokens)[:, 0]))


_BUILDERS: dict[str, Callable[..., nn.Module]] = {"mlp": mlp, "cnn": cnn, "transformer": transformer}


def _check_model_args(name: str, builder: Callable[..., nn.Module], model_args: dict[str, Any]) -> None:
    accepted = [parameter for parameter in inspect.signature(builder).parameters if parameter not in ("input_shape", "num_classes")]
    for argument in model_args:
        if argument not in accepted:
            raise ConfigError(f"model {name!r} has no argument {argument!r}: use any of {', '.join(accepted)}")


def _check_positive(model: str, **values: Any) -> None:
    for argument, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"model {model!r} needs {argument} to be a positive integer, not {value!r}")


def _image_shape(model: str, input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(input_shape) != 3 or not all(isinstance(size, int) and size >= 1 for size in input_shape):
        raise ConfigError(f"model {model!r} needs input_shape (channels, height, width) of positive sizes, not {input_shape}")
    return input_shape  # type: ignore[return-value]


def _user_model(path: str, input_shape: tuple[int, ...], num_classes: int, model_args: dict[str, Any]) -> nn.Module:
    factory = import_object(path, "model")
    offered = {"input_shape": input_shape, "num_classes": num_classes}
    model = call_factory(factory, path, "model", offered, model_args)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model {path!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def count_parameters(model: nn.Module) -> int:
    """The number of trainable parameters."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
