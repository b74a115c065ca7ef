"""A user's script whose training data is a stream: an IterableDataset of real MNIST images, read on across epochs
(`steps_per_epoch`). Run as `python stream_script.py`, or under torchrun, where each rank keeps every world_size-th
sample of the stream. The data root comes from $DEEP_LEARNING_DATA_ROOT, the store from $MLFLOW_TRACKING_URI.
"""

from __future__ import annotations

import torch.nn as nn
import torch.utils.data as utils

import deep_learning
from deep_learning.core.data.files import load_dataset
from deep_learning.core.data.samples import as_tensors

STEPS, EPOCHS, BATCH = 6, 2, 32


class DigitStream(utils.IterableDataset):
    """The first `count` MNIST training images and labels, in order, as a stream (no index, no length)."""

    def __init__(self, count: int) -> None:
        images, labels = as_tensors(load_dataset("mnist", train=True))
        self.images, self.labels = images[:count], labels[:count]

    def __iter__(self):
        yield from zip(self.images, self.labels)


def main() -> None:
    images, labels = as_tensors(load_dataset("mnist", train=False))
    result = deep_learning.fit(
        nn.Sequential(nn.Flatten(), nn.Linear(784, 10)),
        DigitStream(1000),
        utils.TensorDataset(images[:500], labels[:500]),
        epochs=EPOCHS,
        steps_per_epoch=STEPS,
        batch_size=BATCH,
        device="cpu",
    )
    if result.run_id:
        print(f"run_id {result.run_id}", flush=True)


if __name__ == "__main__":
    main()
