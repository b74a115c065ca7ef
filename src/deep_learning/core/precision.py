"""How the loop runs a model: under autocast (and, for float16, a gradient scaler and the optimizer that suits it), compiled or not."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
from torch.utils._pytree import tree_map

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


class Autocast(nn.Module):
    """Runs the wrapped model's forward under autocast and returns its floating-point outputs in float32.

    Autocast belongs around each forward, not around the whole loop: it caches low-precision
    copies of the weights until its region ends, so a loop-wide region would keep using the
    first step's weights.
    """

    def __init__(self, module: nn.Module, device_type: str, dtype: torch.dtype) -> None:
        super().__init__()
        self.module = module
        self.device_type = device_type
        self.dtype = dtype

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        with torch.autocast(device_type=self.device_type, dtype=self.dtype):
            return _in_float32(self.module(*args, **kwargs))


def _in_float32(output: Any) -> Any:
    """The output with its floating-point tensors (also inside tuples, lists and dicts) in float32."""
    if isinstance(output, torch.Tensor):
        return output.float() if output.is_floating_point() else output
    return tree_map(lambda leaf: leaf.float() if isinstance(leaf, torch.Tensor) and leaf.is_floating_point() else leaf, output)


def with_amp(model: nn.Module, device: torch.device, amp: str) -> nn.Module:
    """The model itself for amp="off", else the model wrapped in Autocast (bf16 or fp16)."""
    return model if amp == "off" else Autocast(model, device.type, AMP_DTYPES[amp])


def grad_scaler(device: torch.device, amp: str) -> torch.amp.GradScaler | None:
    """A GradScaler for fp16, whose small range underflows gradients; bf16 and fp32 need none."""
    return torch.amp.GradScaler(device.type) if amp == "fp16" else None


def with_options(model: nn.Module, device: torch.device, amp: str, compile: bool, compile_mode: str) -> nn.Module:
    """The model as the loop calls it: under autocast with `amp`, then compiled with `compile`."""
    model = with_amp(model, device, amp)
    return torch.compile(model, mode=compile_mode) if compile else model
