"""Model factories a user might name on the command line as `user_models:<factory>`."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

DEFAULT_WIDTH = 8


def tiny_cnn(num_classes: int, input_shape: tuple[int, ...], width: int = DEFAULT_WIDTH) -> nn.Module:
    """One convolution, global average pooling, a linear head: sized from what the run offers."""
    return nn.Sequential(
        nn.Conv2d(input_shape[0], width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes)
    )


def no_arguments() -> nn.Module:
    """A model for 1x28x28 images and 10 classes that asks for nothing."""
    return nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 10))


def from_keywords(**arguments) -> nn.Module:
    """A linear model that takes whatever it is offered as keywords."""
    channels, height, width = arguments["input_shape"]
    return nn.Sequential(nn.Flatten(), nn.Linear(channels * height * width, arguments["num_classes"]))


def three_outputs(input_shape: tuple[int, ...]) -> nn.Module:
    """A linear model of three outputs, whatever the data asks for."""
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), 3))


def raises() -> nn.Module:
    raise ValueError("bad width\nsecond line")


def not_a_module() -> int:
    return 3


class DataDependent(nn.Module):
    """A model torch.export cannot trace (its forward branches on its input's values), so it is logged in MLflow's pickle format."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(32, 3)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        logits = self.linear(inputs.flatten(1))
        return logits * 2 if inputs.mean() > 0.5 else logits
