"""set_seed, the chapter's control of randomness, and the RNG states a checkpoint keeps."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch


def set_seed(seed: int = 42, *, deterministic: bool = True, benchmark: bool = False, warn_only: bool = True) -> torch.Generator:
    """Seed Python, NumPy and torch, and ask torch for deterministic algorithms; return torch's RNG."""
    if deterministic:
        # cuBLAS is deterministic only with a fixed workspace; it reads this before its first use.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    random.seed(seed)
    np.random.seed(seed)
    torch_rng = torch.manual_seed(seed)
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = benchmark
    return torch_rng


def rng_state(device: torch.device) -> dict[str, Any]:
    """Every RNG state a run draws from, in types that `torch.load(weights_only=True)` accepts."""
    numpy_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (numpy_state[0], numpy_state[1].tolist(), *numpy_state[2:]),
        "torch": torch.get_rng_state(),
    }
    accelerator = _accelerator_module(device)
    if accelerator is not None:
        state[device.type] = accelerator.get_rng_state()
    return state


def restore_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Put back the RNG states that `rng_state` captured."""
    version, keys, *rest = state["python"]
    random.setstate((version, tuple(keys), *rest))
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    accelerator = _accelerator_module(device)
    if accelerator is not None and device.type in state:
        accelerator.set_rng_state(state[device.type])


def _accelerator_module(device: torch.device):
    if device.type == "cpu":
        return None
    module = torch.get_device_module(device.type)
    return module if hasattr(module, "get_rng_state") else None
