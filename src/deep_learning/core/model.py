"""The models a run can train: the chapter's MLP, a small CNN, a small transformer (a vision transformer of images, a
causal language model of tokens), or user code by import path."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from deep_learning.core.config import MODELS
from deep_learning.core.errors import ConfigError
from deep_learning.core.factories import call_factory, import_object, is_import_path


def build_model(
    name: str = "mlp", input_shape: tuple[int, ...] = (1, 28, 28), num_classes: int = 10, *, input_dtype: str = "float32", **model_args: Any
) -> nn.Module:
    """A fresh, randomly initialised model (draws from torch's global RNG) mapping (N, *input_shape) inputs to
    `num_classes` outputs per sample: logits of classes or labels, regression outputs, or, for token inputs (an integer
    `input_dtype`) and the transformer, next-token logits of a `num_classes` vocabulary at every position."""
    input_shape = tuple(input_shape)
    if name in _BUILDERS:
        builder = _BUILDERS[name]
        _check_model_args(name, builder, model_args)
        if _is_token_dtype(input_dtype):
            return _token_model(name, input_shape, num_classes, model_args)
        return builder(input_shape, num_classes, **model_args)
    if is_import_path(name):
        return _user_model(name, input_shape, num_classes, input_dtype, model_args)
    raise ConfigError(f"model must be one of {', '.join(MODELS)}, or an import path package.module:factory, not {name!r}")


def _is_token_dtype(dtype: str) -> bool:
    return dtype in ("int64", "int32", "int16", "int8", "uint8")


def _token_model(name: str, input_shape: tuple[int, ...], vocabulary_size: int, model_args: dict[str, Any]) -> nn.Module:
    """The built-in model for token inputs: the transformer, as a causal language model; the others take float inputs."""
    if name != "transformer":
        raise ConfigError(f"model {name!r} takes float inputs, not integer tokens: train token data with --model transformer")
    if len(input_shape) != 1:
        raise ConfigError(f"model 'transformer' takes tokens of shape (positions,), not {input_shape}")
    if "patch_size" in model_args:
        raise ConfigError("model 'transformer' on tokens has no patch_size: use any of dim, depth, heads, mlp_dim")
    return causal_transformer(input_shape[0], vocabulary_size, **model_args)


def mlp(input_shape: tuple[int, ...], num_classes: int, hidden: int = 128) -> nn.Module:
    """The chapter's MLP: flatten, one hidden ReLU layer, linear logits (784-128-10 for MNIST)."""
    _check_positive("mlp", hidden=hidden, num_classes=num_classes)
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), hidden), nn.ReLU(), nn.Linear(hidden, num_classes))


def cnn(input_shape: tuple[int, ...], num_classes: int, channels: Sequence[int] = (16, 32)) -> nn.Module:
    """Conv-ReLU-max-pool blocks, one per entry of `channels`, each halving the image, then a linear head."""
    in_channels, height, width = _image_shape("cnn", input_shape)
    if not isinstance(channels, (list, tuple)) or not channels:
        raise ConfigError(f"model 'cnn' needs channels as a list of channel counts such as [16, 32], not {channels!r}")
    _check_positive("cnn", num_classes=num_classes, **{f"channels[{index}]": count for index, count in enumerate(channels)})
    scale = 2 ** len(channels)
    if height < scale or width < scale:
        most = min(height, width).bit_length() - 1
        raise ConfigError(
            f"model 'cnn' halves the image once per channel count: {height}x{width} images allow at most {most}, not {len(channels)}"
        )
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

    def __init__(
        self, input_shape: tuple[int, ...], num_classes: int, dim: int, depth: int, heads: int, mlp_dim: int, patch_size: int
    ) -> None:
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


def causal_transformer(
    block_size: int, vocabulary_size: int, dim: int = 64, depth: int = 2, heads: int = 4, mlp_dim: int = 128
) -> nn.Module:
    """A small GPT-style language model of `vocabulary_size` tokens, over at most `block_size` positions."""
    _check_positive(
        "transformer", block_size=block_size, vocabulary_size=vocabulary_size, dim=dim, depth=depth, heads=heads, mlp_dim=mlp_dim
    )
    if dim % heads:
        raise ConfigError(f"model 'transformer' needs dim divisible by heads, not dim={dim} with heads={heads}")
    return CausalTransformer(block_size, vocabulary_size, dim, depth, heads, mlp_dim)


class CausalTransformer(nn.Module):
    """Token and learned position embeddings, pre-norm causal self-attention blocks, a linear head: logits (N, L, vocabulary)
    for tokens (N, L), each position seeing itself and those before it."""

    def __init__(self, block_size: int, vocabulary_size: int, dim: int, depth: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(vocabulary_size, dim)
        self.position_embedding = nn.Parameter(nn.init.trunc_normal_(torch.empty(1, block_size, dim), std=0.02))
        self.blocks = nn.ModuleList([CausalBlock(dim, heads, mlp_dim) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocabulary_size)

    def forward(self, tokens: Tensor) -> Tensor:
        hidden = self.token_embedding(tokens) + self.position_embedding[:, : tokens.shape[1]]
        for block in self.blocks:
            hidden = block(hidden)
        return self.head(self.norm(hidden))


class CausalBlock(nn.Module):
    """Pre-norm multi-head causal self-attention (torch's scaled_dot_product_attention) and an MLP, each residual."""

    def __init__(self, dim: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.heads = heads
        self.attention_norm = nn.LayerNorm(dim)
        self.query_key_value = nn.Linear(dim, 3 * dim)
        self.projection = nn.Linear(dim, dim)
        self.mlp_norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, hidden: Tensor) -> Tensor:
        batch, positions, dim = hidden.shape
        query, key, value = (
            self.query_key_value(self.attention_norm(hidden))
            .reshape(batch, positions, 3, self.heads, dim // self.heads)
            .permute(2, 0, 3, 1, 4)
        )
        attended = nn.functional.scaled_dot_product_attention(query, key, value, is_causal=True)
        hidden = hidden + self.projection(attended.transpose(1, 2).reshape(batch, positions, dim))
        return hidden + self.mlp(self.mlp_norm(hidden))


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


def _user_model(path: str, input_shape: tuple[int, ...], num_classes: int, input_dtype: str, model_args: dict[str, Any]) -> nn.Module:
    factory = import_object(path, "model")
    offered = {"input_shape": input_shape, "num_classes": num_classes, "num_outputs": num_classes, "input_dtype": input_dtype}
    model = call_factory(factory, path, "model", offered, model_args)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model {path!r} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


def count_parameters(model: nn.Module) -> int:
    """The number of trainable parameters."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
