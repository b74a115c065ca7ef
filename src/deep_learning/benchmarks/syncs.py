"""Host reads: how often a training pass makes Python wait for a value computed on the device.

On CUDA each such read is a host sync: the CPU stops queueing kernels until the GPU catches up,
which is what keeps a small model's epoch far above the launch-latency floor. They are counted
here from the operations themselves, so the count is the same on any device, the CPU included:
Python's reads of a tensor (`.item()`, `.tolist()`, `bool()`, `float()`, `.numpy()`, ...), copies
to the host, and the operations whose output size depends on the data (`nonzero`, `unique`,
`bincount`, ...). On CUDA, `cuda_syncs` also counts the syncs the CUDA runtime itself reports.
"""

from __future__ import annotations

import collections
import itertools
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from deep_learning.benchmarks.chapter import chapter_loop, chapter_metric
from deep_learning.core.metrics import accuracy_metric
from deep_learning.core.model import build_model
from deep_learning.core.training import evaluate, train

# Reads of a whole tensor in Python; `.item()`, `bool()`, `float()` and `int()` reach the host through
# `aten._local_scalar_dense`, counted below, wherever they are called from.
PYTHON_READS = frozenset({Tensor.tolist, Tensor.numpy, Tensor.__array__})
HOST_COPIES = frozenset({Tensor.cpu, Tensor.to})
DATA_DEPENDENT_OPS = frozenset(
    {
        "_local_scalar_dense",
        "nonzero",
        "masked_select",
        "bincount",
        "_unique",
        "_unique2",
        "unique_dim",
        "unique_consecutive",
        "repeat_interleave",
        "histc",
    }
)
READ_NAMES = {"_local_scalar_dense": "item"}  # .item(), bool(), float(), int() of a tensor
COUNTED_BATCHES = (4, 8)  # two pass lengths: what grows between them is read per batch


class _PythonReads(TorchFunctionMode):
    def __init__(self, counts: collections.Counter[str]) -> None:
        super().__init__()
        self.counts = counts

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if func in PYTHON_READS:
            self.counts[func.__name__] += 1
        elif func in HOST_COPIES and args[0].device.type != "cpu" and isinstance(result, Tensor) and result.device.type == "cpu":
            self.counts[f"{func.__name__} to the host"] += 1
        return result


class _DataDependentOps(TorchDispatchMode):
    def __init__(self, counts: collections.Counter[str]) -> None:
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in DATA_DEPENDENT_OPS and not (name == "repeat_interleave" and (kwargs or {}).get("output_size") is not None):
            self.counts[READ_NAMES.get(name, name)] += 1
        return func(*args, **(kwargs or {}))


def count_host_reads(work: Callable[[], Any]) -> collections.Counter[str]:
    """Run `work` and count, by kind, every read of device data back to the host that it makes."""
    counts: collections.Counter[str] = collections.Counter()
    with _PythonReads(counts), _DataDependentOps(counts):
        work()
    return counts


def cuda_syncs(work: Callable[[], Any]) -> int:
    """Run `work` on CUDA and count the synchronizing CUDA calls it makes (`torch.cuda.set_sync_debug_mode`)."""
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            work()
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    return sum("synchronizing CUDA operation" in str(warning.message) for warning in caught)


def _passes(loop: str, batches: list[tuple[Tensor, Tensor]], device: torch.device) -> dict[str, Callable[[], Any]]:
    functions = chapter_loop() if loop == "chapter" else {"train": train, "evaluate": evaluate}
    metric = (chapter_metric() if loop == "chapter" else accuracy_metric()).to(device)
    model = build_model().to(device)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return {
        "train": lambda: functions["train"](model, batches, loss_fn, optimizer, metric, device),
        "evaluate": lambda: functions["evaluate"](model, batches, loss_fn, metric, device),
    }


def host_reads(device: torch.device, train_dl: Iterable[tuple[Tensor, Tensor]]) -> list[dict[str, Any]]:
    """Host reads of the chapter's loop and ours in a training and an evaluation pass, per batch and per pass.

    Each pass is counted at two lengths, with batches taken from `train_dl` beforehand so that only
    the loop's own reads count; what grows between the lengths is read per batch. On CUDA the
    runtime's own count of synchronizing calls comes alongside.
    """
    rows = []
    for loop in ("chapter", "ours"):
        for name in ("train", "evaluate"):
            batches = {length: list(itertools.islice(train_dl, length)) for length in COUNTED_BATCHES}
            counts = {length: count_host_reads(_passes(loop, batches[length], device)[name]) for length in COUNTED_BATCHES}
            row = {"device": str(device), "loop": loop, "pass": name, **_per_batch_and_pass({n: c.total() for n, c in counts.items()})}
            row["kinds"] = dict(counts[COUNTED_BATCHES[1]])
            if device.type == "cuda":
                syncs = {length: cuda_syncs(_passes(loop, batches[length], device)[name]) for length in COUNTED_BATCHES}
                row["cuda_syncs"] = _per_batch_and_pass(syncs)
            rows.append(row)
    return rows


def _per_batch_and_pass(counts: dict[int, int]) -> dict[str, float]:
    short, long = COUNTED_BATCHES
    per_batch = (counts[long] - counts[short]) / (long - short)
    return {"per_batch": per_batch, "per_pass": counts[short] - per_batch * short}
