"""A split's digest: a short hash of its content that MLflow records with the run's datasets, read without decoding
what is stored as tensors and, for anything else, from a bounded sample, so no split is read whole for it."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils._pytree import tree_flatten

from deep_learning.core.data.samples import first_samples, is_stream, stored_tensors

DIGEST_SAMPLES = 16  # a split's digest reads at most this many samples where it is not stored as tensors


def split_digest(dataset: Any, tensors: tuple[Tensor, Tensor] | None = None) -> str:
    """A short digest of a split's content.

    Of its stored tensors where it has them (MNIST's uint8 images, a TensorDataset's), else of `tensors` when the
    caller already decoded them; else, as MLflow's own dataset digests do, of a bounded sample: its first
    DIGEST_SAMPLES samples (their structure and tensors) and its length, so no split is read whole for its digest.
    """
    stored = stored_tensors(dataset) or tensors
    if stored is None:
        return _sample_digest(dataset)
    inputs, labels = stored
    digest = hashlib.md5(_as_bytes(inputs))
    digest.update(_as_bytes(labels))
    return digest.hexdigest()[:12]


def _sample_digest(dataset: Any) -> str:
    digest = hashlib.md5(f"{type(dataset).__name__} {len(dataset) if not is_stream(dataset) else 'stream'}".encode())
    for sample in first_samples(dataset, DIGEST_SAMPLES):
        values, structure = tree_flatten(sample)
        digest.update(str(structure).encode())
        for value in values:
            digest.update(_as_bytes(value) if isinstance(value, Tensor) else repr(value).encode())
    return digest.hexdigest()[:12]


def _as_bytes(tensor: Tensor) -> np.ndarray:
    """A tensor's bytes, without a copy where it is contiguous on the host; through uint8, as numpy has no bfloat16."""
    return tensor.detach().cpu().contiguous().flatten().view(torch.uint8).numpy()
