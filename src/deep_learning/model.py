"""The chapter's model: an MLP 784-128-10 for 28x28 single-channel images."""

from __future__ import annotations

import torch.nn as nn


def build_model(name: str = "mlp") -> nn.Module:
    """A fresh, randomly initialised model of the named architecture (draws from torch's global RNG)."""
    if name != "mlp":
        raise ValueError(f"unknown model {name!r}")
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(28 * 28, 128),
        nn.ReLU(),
        nn.Linear(128, 10),
    )


def count_parameters(model: nn.Module) -> int:
    """The number of trainable parameters."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
