"""Predictions of a trained model: the classes of images (PNG, JPEG, IDX files), of a csv run's rows (or their
regression values), and the continuation of a text run's prompt.
"""

from __future__ import annotations

import gzip
import io
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torchvision.transforms.v2.functional as F
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from deep_learning.core.data.spec import DataSpec
from deep_learning.core.data.tabular import read_rows
from deep_learning.core.data.text import continue_text, decode, encode
from deep_learning.core.errors import InputError

GZIP_MAGIC = b"\x1f\x8b"
IDX_UNSIGNED_BYTE = 0x08
PREDICTION_BATCH_SIZE = 1024


@dataclass(frozen=True)
class Prediction:
    """The most probable class of one input (an image, a csv row) and its softmax probability."""

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
        raise InputError(
            f"{path} is an IDX file of {num_dims}-dimensional data, not of images (height x width, or count x height x width)."
        )
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
    """The most probable class of each input (an image, a csv row), with its softmax probability."""
    probabilities = torch.softmax(_outputs(model, images, device), dim=1)
    best, labels = probabilities.max(dim=1)
    return [
        Prediction(name, label, class_names[label], probability) for name, label, probability in zip(names, labels.tolist(), best.tolist())
    ]


def _outputs(model: nn.Module, inputs: Tensor, device: torch.device) -> Tensor:
    """The model's outputs for `inputs`, in batches, on the host."""
    with torch.inference_mode():
        return torch.cat([model(batch.to(device)).float().cpu() for batch in inputs.split(PREDICTION_BATCH_SIZE)])


@dataclass(frozen=True)
class Estimate:
    """A regression's predicted values for one input, by the names of its targets."""

    row: str
    values: dict[str, float]


def estimate(model: nn.Module, names: Sequence[str], inputs: Tensor, device: torch.device, target_names: Sequence[str]) -> list[Estimate]:
    """A regression model's predicted values for each input, by target name (output_0, ... where the run named none)."""
    outputs = _outputs(model, inputs, device).reshape(len(inputs), -1)
    columns = list(target_names) if len(target_names) == outputs.shape[1] else [f"output_{index}" for index in range(outputs.shape[1])]
    return [Estimate(name, dict(zip(columns, row))) for name, row in zip(names, outputs.tolist())]


def read_csv_rows(paths: Sequence[Path], spec: DataSpec) -> tuple[list[str], Tensor]:
    """The rows of csv files, by the run's feature columns, as raw features (the model standardises them)."""
    found = [read_rows(path, spec.features) for path in paths]
    return [name for names, _ in found for name in names], torch.cat([rows for _, rows in found])


def continue_prompt(model: nn.Module, spec: DataSpec, prompt: str, tokens: int, temperature: float, seed: int, device: torch.device) -> str:
    """The prompt and `tokens` more characters sampled from a text run's model (seeded: the same seed, the same text)."""
    if not prompt:
        raise InputError("--prompt is empty: give the text to continue")
    if temperature <= 0:
        raise InputError(f"--temperature must be above 0, not {temperature}")
    block_size = spec.input_shape[0]
    sampled = continue_text(
        model, encode(prompt, spec.class_names).to(device), tokens, block_size, temperature, torch.Generator().manual_seed(seed)
    )
    return prompt + decode(sampled, spec.class_names)
