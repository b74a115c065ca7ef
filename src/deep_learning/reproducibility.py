"""set_seed: the chapter's control of randomness."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def set_seed(
    seed: int = 42,
    *,
    deterministic: bool = True,
    benchmark: bool = False,
    warn_only: bool = True,
) -> torch.Generator:
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
