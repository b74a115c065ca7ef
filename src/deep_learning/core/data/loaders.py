"""How a run's splits become batches: the tensor path (a split stored as tensors, batched by index on the device),
a DataLoader (the chapter's, or the user's own with its settings kept), or a stream.

Training batches are shuffled from torch's global RNG, as the chapter's DataLoader shuffles, so every path gives the
same batches in the same order and a checkpoint's RNG state resumes the order exactly; under torchrun a seeded
DistributedSampler deals the shards instead. Nothing here reads every sample of a split.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Iterator
from typing import Any

import psutil
import torch
import torch.utils.data as utils
from torch import Tensor

from deep_learning.core.batches import TargetSplit
from deep_learning.core.config import TrainConfig
from deep_learning.core.data.samples import as_tensors, is_stream, stored_tensors
from deep_learning.core.data.seeded import SeededDataLoader, kept_settings
from deep_learning.core.data.splits import DataSplits
from deep_learning.core.data.streams import stream_loader
from deep_learning.core.distributed import Cluster, ShuffledShards, evaluation_shard
from deep_learning.core.errors import ConfigError

TENSOR = "tensor"
DATALOADER = "dataloader"
BUDGET_SHARE = 4  # the tensor path holds the splits in at most a quarter of the device's memory
Loaders = tuple[Iterable[Any], Iterable[Any], Iterable[Any] | None]


class TensorLoader:
    """A split held as one tensor on the device, batched by index: the DataLoader's batches without per-sample work.

    Each pass draws from torch's global RNG exactly as a DataLoader with a RandomSampler does, so
    both paths give the same batches in the same order, epoch after epoch. With a `sampler` (a
    rank's shard under torchrun) the sampler gives the order instead.
    """

    def __init__(self, inputs: Tensor, targets: Tensor, batch_size: int, shuffle: bool, sampler: utils.Sampler | None = None) -> None:
        self.dataset = utils.TensorDataset(inputs, targets)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.sampler = sampler

    def __len__(self) -> int:
        return math.ceil((len(self.sampler) if self.sampler is not None else len(self.dataset)) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        yield from self.batches(self.draw_order())  # drawn when the first batch is asked for, as a DataLoader draws

    def draw_order(self) -> Tensor | None:
        """A pass's order of samples, drawn from the global RNG as a DataLoader's iterator draws it (None: in order)."""
        device = self.dataset.tensors[0].device
        torch.empty((), dtype=torch.int64).random_()  # the DataLoader iterator's worker base seed
        if self.sampler is not None:
            return _onto(torch.tensor(list(self.sampler)), device)
        if self.shuffle:
            seed = int(torch.empty((), dtype=torch.int64).random_().item())  # RandomSampler's seed, from the host's RNG
            return _onto(torch.randperm(len(self.dataset), generator=torch.Generator().manual_seed(seed)), device)
        return None

    def batches(self, order: Tensor | None) -> Iterator[tuple[Tensor, Tensor]]:
        """The batches of a pass in `order`; of several passes at once, stacked, when `order` has a row per pass."""
        inputs, targets = self.dataset.tensors
        count = order.shape[-1] if order is not None else len(self.dataset)
        for start in range(0, count, self.batch_size):
            if order is None:
                yield inputs[start : start + self.batch_size], targets[start : start + self.batch_size]
            else:
                batch = order[..., start : start + self.batch_size]
                yield inputs[batch], targets[batch]


def _onto(indices: Tensor, device: torch.device) -> Tensor:
    """Host indices on `device`; to CUDA through pinned memory, so that the copy does not wait for the GPU."""
    if device.type == "cuda":
        return indices.pin_memory().to(device, non_blocking=True)
    return indices.to(device)


def tensor_budget(device: torch.device) -> int:
    """The bytes the tensor path may hold: a quarter of the device's memory (the CPU's: of the RAM available now)."""
    if device.type == "cuda":
        return torch.cuda.get_device_properties(device).total_memory // BUDGET_SHARE
    return psutil.virtual_memory().available // BUDGET_SHARE


def why_not_tensors(splits: DataSplits, device: torch.device) -> str | None:
    """Why the splits cannot take the tensor path (None: they can): a split not stored as tensors, or over the budget."""
    present = [(name, split) for name, split in splits.named() if split is not None]
    for name, split in present:
        if name in splits.loaders:
            return f"the {name} split is given as a DataLoader, whose settings are kept"
        if stored_tensors(split) is None:
            return f"the {name} split ({type(split).__name__}) is not stored as tensors"
    size = sum(_converted_bytes(split) for _, split in present)
    budget = tensor_budget(device)
    if size > budget:
        return f"the splits take {size / 2**30:.1f} GiB as tensors, over the tensor path's budget of {budget / 2**30:.1f} GiB (a quarter of the device's memory)"
    return None


def _converted_bytes(split: Any) -> int:
    inputs, targets = stored_tensors(split)
    item_size = 4 if inputs.dtype == torch.uint8 else inputs.element_size()  # MNIST's bytes become float32
    return inputs.numel() * item_size + targets.numel() * targets.element_size()


def loader_kind(config: TrainConfig, splits: DataSplits, device: torch.device) -> tuple[str, str | None]:
    """The path the run's batches take, and why it is not the tensor path that the config asked for (None: it is)."""
    if config.loader == DATALOADER:
        return DATALOADER, None
    reason = why_not_tensors(splits, device)
    return (DATALOADER, reason) if reason else (TENSOR, None)


def make_loaders(
    config: TrainConfig, splits: DataSplits, device: torch.device, cluster: Cluster | None = None, first_epoch: int = 1
) -> Loaders:
    """Training batches shuffled from the global RNG (as in the chapter), ordered evaluation batches; None for a missing test split.

    `loader="tensor"` gives the batches from tensors decoded once and kept on `device`, where the splits allow it
    (see `loader_kind`); else DataLoaders: the user's own, rebuilt with their settings, or the chapter's. Under torchrun
    (`cluster`), each rank trains on its shard of a seeded DistributedSampler and evaluates every world_size-th sample.
    """
    kind, _ = loader_kind(config, splits, device)
    sizes = {"training": config.batch_size, "validation": config.val_batch_size, "test": config.val_batch_size}
    loaders = []
    for name, split in splits.named():
        if split is None:
            loaders.append(None)
            continue
        training = name == "training"
        if is_stream(split):
            if training and cluster is not None and not config.steps_per_epoch:
                raise ConfigError(
                    "Under torchrun a training stream needs steps_per_epoch: every rank must take as many steps as the others."
                )
            loader = stream_loader(
                split, sizes[name], splits.loaders.get(name), cluster, config.steps_per_epoch if training else 0, config.seed, first_epoch
            )
        elif kind == TENSOR:
            loader = _tensor_loader(split, sizes[name], training, device, cluster, config.seed, first_epoch)
        else:
            loader = _dataloader(split, sizes[name], training, splits.loaders.get(name), cluster, config.seed, first_epoch)
        if training and config.steps_per_epoch and not is_stream(split):
            loader = FirstBatches(loader, config.steps_per_epoch, cluster.world_size if cluster else 1)
        loaders.append(TargetSplit(loader, splits.target_key) if splits.target_key else loader)
    return tuple(loaders)


def _sampler(split: Any, training: bool, cluster: Cluster | None, seed: int, first_epoch: int) -> tuple[Any, utils.Sampler | None]:
    """The split (an evaluation split: this rank's share) and the training sampler under torchrun."""
    if cluster is None:
        return split, None
    if training:
        return split, ShuffledShards(split, cluster, seed=seed, first_epoch=first_epoch)
    return utils.Subset(split, evaluation_shard(len(split), cluster)), None


def _tensor_loader(
    split: Any, batch_size: int, training: bool, device: torch.device, cluster: Cluster | None, seed: int, first_epoch: int
) -> TensorLoader:
    split, sampler = _sampler(split, training, cluster, seed, first_epoch)
    inputs, targets = as_tensors(split)
    return TensorLoader(inputs.to(device), targets.to(device), batch_size, training, sampler)


def _dataloader(
    split: Any, batch_size: int, training: bool, users: utils.DataLoader | None, cluster: Cluster | None, seed: int, first_epoch: int
) -> utils.DataLoader:
    split, sampler = _sampler(split, training, cluster, seed, first_epoch)
    if users is None:  # the chapter's
        return utils.DataLoader(split, batch_size=batch_size, shuffle=training and sampler is None, sampler=sampler)
    if sampler is None:
        sampler = utils.RandomSampler(split) if training else utils.SequentialSampler(split)
    return SeededDataLoader(split, batch_size=batch_size, sampler=sampler, seed=seed, first_epoch=first_epoch, **kept_settings(users))


class FirstBatches:
    """The first `steps` batches of each pass of a loader: an epoch of `steps_per_epoch` batches of a dataset, each
    epoch from a new shuffle (so a run resumes exactly, as every epoch's order comes from the checkpointed RNG)."""

    def __init__(self, loader: Any, steps: int, world_size: int) -> None:
        self.loader, self.dataset, self.batch_size = loader, loader.dataset, loader.batch_size
        self.steps = min(steps, len(loader))
        self.samples_per_epoch = min(self.steps * loader.batch_size * world_size, len(loader.dataset))

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[Any]:
        return itertools.islice(iter(self.loader), self.steps)
