"""The example batch of a run's data: what checks the model before a run and shows its inputs to MLflow."""

from __future__ import annotations

from typing import Any

import torch.utils.data as utils

from deep_learning.core.batches import ExampleInputs, leaves, split_target
from deep_learning.core.data.samples import first_samples
from deep_learning.core.data.splits import DataSplits

EXAMPLE_SAMPLES = 2  # the example batch's


def _first_samples_and_collate(splits: DataSplits, count: int) -> tuple[list[Any], Any]:
    """The first `count` samples of the test split (else validation), and the function the run's loader collates them with."""
    name, split = ("test", splits.test) if splits.test is not None else ("validation", splits.val)
    users = splits.loaders.get(name)
    return first_samples(split, count), users.collate_fn if users is not None else utils.default_collate


def example_batch(splits: DataSplits) -> tuple[Any, Any]:
    """The first samples of the test split (else validation), collated as the run's loader collates them and split into
    (inputs, target): what checks the model before a run and shows its input to MLflow."""
    samples, collate = _first_samples_and_collate(splits, EXAMPLE_SAMPLES)
    return split_target(collate(samples), splits.target_key)


def example_inputs(splits: DataSplits, count: int = 8) -> ExampleInputs:
    """The example batch's inputs, and for each input tensor the dimensions (the batch's being 0) whose size differs
    among the first `count` samples, each collated alone as the run collates batches: what a logged model's signature
    lets vary beside the batch (a sequence's length, where a collate_fn pads to the longest)."""
    samples, collate = _first_samples_and_collate(splits, count)
    alone = [split_target(collate([sample]), splits.target_key)[0] for sample in samples]
    shapes = [[leaf.shape for leaf in leaves(inputs)] for inputs in alone]
    varying = [
        {dim for dim in range(1, len(sizes[0])) if len({size[dim] for size in sizes if len(size) > dim}) > 1} for sizes in zip(*shapes)
    ]
    return ExampleInputs(split_target(collate(samples[:EXAMPLE_SAMPLES]), splits.target_key)[0], varying)
