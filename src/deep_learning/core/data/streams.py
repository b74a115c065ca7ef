"""Streams (IterableDatasets) as a run reads them: an epoch is one pass or `steps_per_epoch` batches, dealt between ranks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch.utils.data as utils

from deep_learning.core.batches import first_tensor, num_samples
from deep_learning.core.data.seeded import SeededDataLoader, kept_settings
from deep_learning.core.distributed import Cluster
from deep_learning.core.errors import ConfigError


class RankShare(utils.IterableDataset):
    """A stream dealt between ranks: rank r keeps the samples whose position is r modulo the world size."""

    def __init__(self, stream: utils.IterableDataset, cluster: Cluster) -> None:
        self.stream, self.rank, self.world_size = stream, cluster.rank, cluster.world_size

    def __iter__(self) -> Iterator[Any]:
        for position, sample in enumerate(self.stream):
            if position % self.world_size == self.rank:
                yield sample


class StreamLoader:
    """An IterableDataset's batches: each epoch one pass of the stream, or, with `steps_per_epoch`, that many
    batches of a stream read on across epochs (a new pass where it ends). A run resumed after epoch k skips the
    k x steps_per_epoch batches it trained on, so it continues exactly where a stream yields the same items each pass."""

    def __init__(self, loader: utils.DataLoader, steps_per_epoch: int, world_size: int, first_epoch: int) -> None:
        self.loader = loader
        self.dataset = loader.dataset
        self.batch_size = loader.batch_size
        self.steps_per_epoch = steps_per_epoch
        self.world_size = world_size
        self._skip = (first_epoch - 1) * steps_per_epoch
        self._iterator: Iterator[Any] | None = None
        self.samples_per_epoch: int | None = steps_per_epoch * (loader.batch_size or 1) * world_size if steps_per_epoch else None

    def __len__(self) -> int:
        if not self.steps_per_epoch:
            raise TypeError("a stream's epoch has no length without steps_per_epoch")
        return self.steps_per_epoch

    def __iter__(self) -> Iterator[Any]:
        if not self.steps_per_epoch:
            yield from self._counted(iter(self.loader))
            return
        for _ in range(self._skip):
            self._next_batch()
        self._skip = 0
        for _ in range(self.steps_per_epoch):
            yield self._next_batch()

    def _next_batch(self) -> Any:
        if self._iterator is not None:
            batch = next(self._iterator, None)
            if batch is not None:
                return batch
        self._iterator = iter(self.loader)
        batch = next(self._iterator, None)
        if batch is None:
            raise ConfigError("The training stream yielded no batch: give a stream that yields samples.")
        return batch

    def _counted(self, batches: Iterator[Any]) -> Iterator[Any]:
        """A full pass, counting its samples (the epoch's, as the stream has no length) as it goes."""
        count = 0
        for batch in batches:
            count += num_samples(first_tensor(batch)) * self.world_size
            yield batch
        self.samples_per_epoch = count


def stream_loader(
    stream: utils.IterableDataset,
    batch_size: int,
    users: utils.DataLoader | None,
    cluster: Cluster | None,
    steps_per_epoch: int,
    seed: int,
    first_epoch: int,
) -> StreamLoader:
    """A stream's batches (this rank's share under torchrun), with the user's DataLoader settings where given."""
    if cluster is not None:
        stream = RankShare(stream, cluster)
    settings = kept_settings(users) if users is not None else {}
    loader = SeededDataLoader(stream, batch_size=batch_size, seed=seed, first_epoch=first_epoch, **settings)
    return StreamLoader(loader, steps_per_epoch, cluster.world_size if cluster else 1, first_epoch)
