"""What the machine can do and what the benchmark used of it: threads, SGEMM rate, FLOPs, peak memory."""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from collections.abc import Iterator

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from deep_learning.core.data.spec import IMAGE_SHAPE, NUM_CLASSES
from deep_learning.core.model import build_model

CPU_SGEMM_SIZE = 2048
ACCELERATOR_SGEMM_SIZE = 8192
SGEMM_REPEATS = 5


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work, so that a clock read after it means the work is done."""
    if device.type != "cpu":
        torch.accelerator.synchronize(device)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[dict[str, int]]:
    """Set torch's intra-op threads (None: keep torch's default here) for the block; yield what is in use."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        yield {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}
    finally:
        torch.set_num_threads(previous)


def sgemm_gflops(device: torch.device) -> dict[str, float | int]:
    """The device's float32 matrix-multiply rate: the best of a few timed `torch.mm` of large square matrices."""
    size = CPU_SGEMM_SIZE if device.type == "cpu" else ACCELERATOR_SGEMM_SIZE
    left, right = (torch.rand(size, size, device=device) for _ in range(2))
    product = torch.mm(left, right)  # warm-up: library initialisation and the output buffer
    best = float("inf")
    for _ in range(SGEMM_REPEATS):
        synchronize(device)
        started = time.perf_counter()
        torch.mm(left, right, out=product)
        synchronize(device)
        best = min(best, time.perf_counter() - started)
    return {"size": size, "seconds": best, "gflops": 2 * size**3 / best / 1e9}


def flops_per_sample(model_name: str = "mlp") -> dict[str, float]:
    """Matrix-multiply FLOPs of one training sample (forward and backward) and one evaluation sample, as torch counts them."""
    model = build_model(model_name)
    batch = 32
    inputs = torch.rand(batch, *IMAGE_SHAPE)
    targets = torch.randint(0, NUM_CLASSES, (batch,))
    with FlopCounterMode(display=False) as training:
        nn.functional.cross_entropy(model(inputs), targets).backward()
    with FlopCounterMode(display=False) as evaluation, torch.inference_mode():
        model(inputs)
    return {"train": training.get_total_flops() / batch, "evaluate": evaluation.get_total_flops() / batch}


def reset_peak_memory(device: torch.device) -> None:
    """Start counting the device's peak allocation afresh (CUDA only)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_device_memory(device: torch.device) -> int | None:
    """The most memory torch held allocated on a CUDA device since the last reset; None elsewhere."""
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def peak_rss_bytes() -> int:
    """Peak resident memory of this process: the loops, their data and everything imported."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS reports bytes, Linux KiB
