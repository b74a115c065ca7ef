"""Data: where datasets live, MNIST and Fashion-MNIST as in the chapter, the seeded split, and the loaders."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import shutil
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.utils.data as utils
import torchvision.datasets as datasets
import torchvision.transforms.v2 as v2
from torch import Tensor
from torchvision.datasets.utils import calculate_md5

from deep_learning.config import TrainConfig
from deep_learning.distributed import Cluster, ShuffledShards, evaluation_shard
from deep_learning.errors import ConfigError, DataError, first_line

DATASET_CLASSES: dict[str, type[datasets.MNIST]] = {
    "mnist": datasets.MNIST,
    "fashion-mnist": datasets.FashionMNIST,
}
TRAIN_VAL_SPLIT = (50_000, 10_000)
NUM_CLASSES = 10
IMAGE_SHAPE = (1, 28, 28)


def get_data_root() -> Path:
    """$DEEP_LEARNING_DATA_ROOT when set, else the per-user cache folder (honouring $XDG_CACHE_HOME)."""
    configured = os.environ.get("DEEP_LEARNING_DATA_ROOT")
    if configured:
        return Path(configured).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "deep_learning" / "data"


def chapter_transform() -> v2.Compose:
    """The chapter's transform: uint8 image to float32 tensor in [0, 1]."""
    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])


def raw_folder(dataset: str, root: str | Path | None = None) -> Path:
    """The folder where torchvision expects the dataset's raw IDX files."""
    return Path(root or get_data_root()) / DATASET_CLASSES[dataset].__name__ / "raw"


def raw_files(dataset: str) -> list[tuple[str, str]]:
    """The four gzip'd IDX files of a dataset and their md5 checksums."""
    return list(DATASET_CLASSES[dataset].resources)


def load_dataset(dataset: str, *, train: bool, root: str | Path | None = None, transform=None) -> datasets.MNIST:
    """The dataset's train (60,000) or test (10,000) split; downloads missing files unless $DEEP_LEARNING_OFFLINE is set."""
    dataset_class = DATASET_CLASSES[dataset]
    root = Path(root or get_data_root())
    transform = transform or chapter_transform()
    try:
        return dataset_class(root, train=train, transform=transform, download=False)
    except RuntimeError:
        pass  # not extracted yet: extract the .gz files that are there, or download them
    problems = _raw_file_problems(dataset, raw_folder(dataset, root))
    if problems and os.environ.get("DEEP_LEARNING_OFFLINE"):
        raise DataError(f"{problems[0]}; downloads are off (DEEP_LEARNING_OFFLINE). {_how_to_place(dataset, root)}")
    try:
        # torchvision reports download attempts on stdout; keep stdout for our own output.
        with contextlib.redirect_stdout(sys.stderr):
            return dataset_class(root, train=train, transform=transform, download=True)
    except PermissionError as error:
        raise DataError(f"Cannot write to {error.filename or root}: set DEEP_LEARNING_DATA_ROOT to a writable folder.") from None
    except Exception as error:  # torchvision raises RuntimeError, URLError, OSError, ...
        found = problems[0] if problems else f"{dataset} files in {raw_folder(dataset, root)} cannot be read"
        raise DataError(f"{found}, and the download failed ({first_line(error)}). {_how_to_place(dataset, root)}") from None


def _raw_file_problems(dataset: str, folder: Path) -> list[str]:
    problems = []
    for filename, md5 in raw_files(dataset):
        path = folder / filename
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif calculate_md5(str(path)) != md5:
            problems.append(f"{path} is corrupt (its md5 is not {md5})")
    return problems


def _how_to_place(dataset: str, root: Path) -> str:
    expected = ", ".join(name for name, _ in raw_files(dataset))
    return (
        f"Put {expected} in {raw_folder(dataset, root)}, "
        f"e.g. with `deep-learning data import DIR --dataset {dataset}`."
    )


def import_raw_files(dataset: str, source: str | Path, root: str | Path | None = None) -> Path:
    """Copy a dataset's four raw files from `source` into the data root, checking each md5; return the folder."""
    source = Path(source)
    target = raw_folder(dataset, root)
    problems = _raw_file_problems(dataset, source)
    if problems:
        raise DataError(f"{problems[0]}: {source} must hold the four original files.")
    try:
        target.mkdir(parents=True, exist_ok=True)
        for filename, _ in raw_files(dataset):
            shutil.copyfile(source / filename, target / filename)
            (target / filename).with_suffix("").unlink(missing_ok=True)  # re-extract from the checked file
    except OSError as error:
        raise DataError(f"Cannot write {error.filename or target}: {error.strerror}. Set DEEP_LEARNING_DATA_ROOT to a writable folder.") from None
    load_dataset(dataset, train=True, root=root)
    load_dataset(dataset, train=False, root=root)
    return target


def split_train_val(train_dataset: utils.Dataset, split_seed: int = 42) -> tuple[utils.Subset, utils.Subset]:
    """The chapter's 50,000/10,000 split, drawn from its own generator so that it never depends on the global RNG."""
    generator = torch.Generator().manual_seed(split_seed)
    train_split, val_split = utils.random_split(train_dataset, list(TRAIN_VAL_SPLIT), generator=generator)
    return train_split, val_split


@dataclass(frozen=True)
class DataSplits:
    """The three splits a run uses."""

    train: utils.Dataset
    val: utils.Dataset
    test: utils.Dataset


def load_splits(config: TrainConfig, root: str | Path | None = None) -> DataSplits:
    """Train (optionally its first `train_subset` samples), validation and test splits for a config."""
    train_split, val_split = split_train_val(load_dataset(config.dataset, train=True, root=root), config.split_seed)
    if config.train_subset:
        if config.train_subset > len(train_split):
            raise ConfigError(f"train_subset must be at most {len(train_split)}, not {config.train_subset}")
        train_split = utils.Subset(train_split, range(config.train_subset))
    test = load_dataset(config.dataset, train=False, root=root)
    return DataSplits(train=train_split, val=val_split, test=test)


class TensorLoader:
    """A split held as one tensor on the device, batched by index: the DataLoader's batches without per-sample work.

    Each pass draws from torch's global RNG exactly as a DataLoader with a RandomSampler does, so
    both paths give the same batches in the same order, epoch after epoch. With a `sampler` (a
    rank's shard under torchrun) the sampler gives the order instead.
    """

    def __init__(self, images: Tensor, labels: Tensor, batch_size: int, shuffle: bool, sampler: utils.Sampler | None = None) -> None:
        self.dataset = utils.TensorDataset(images, labels)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.sampler = sampler

    def __len__(self) -> int:
        return math.ceil((len(self.sampler) if self.sampler is not None else len(self.dataset)) / self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        images, labels = self.dataset.tensors
        torch.empty((), dtype=torch.int64).random_()  # the DataLoader iterator's worker base seed
        order = None
        if self.sampler is not None:
            order = _onto(torch.tensor(list(self.sampler)), images.device)
        elif self.shuffle:
            seed = int(torch.empty((), dtype=torch.int64).random_().item())  # RandomSampler's seed, from the host's RNG
            order = _onto(torch.randperm(len(self.dataset), generator=torch.Generator().manual_seed(seed)), images.device)
        count = len(order) if order is not None else len(self.dataset)
        for start in range(0, count, self.batch_size):
            if order is None:
                yield images[start:start + self.batch_size], labels[start:start + self.batch_size]
            else:
                batch = order[start:start + self.batch_size]
                yield images[batch], labels[batch]


def _onto(indices: Tensor, device: torch.device) -> Tensor:
    """Host indices on `device`; to CUDA through pinned memory, so that the copy does not wait for the GPU."""
    if device.type == "cuda":
        return indices.pin_memory().to(device, non_blocking=True)
    return indices.to(device)


def raw_tensors(dataset: utils.Dataset) -> tuple[Tensor, Tensor]:
    """A split of MNIST or Fashion-MNIST (possibly a Subset of a Subset) as its uint8 images (N, 1, 28, 28) and labels."""
    indices = None
    while isinstance(dataset, utils.Subset):
        level = torch.as_tensor(dataset.indices)
        indices = level if indices is None else level[indices]
        dataset = dataset.dataset
    images, labels = dataset.data.unsqueeze(1), dataset.targets
    if indices is not None:
        images, labels = images[indices], labels[indices]
    return images, labels


def as_tensors(dataset: utils.Dataset) -> tuple[Tensor, Tensor]:
    """A split as float images in [0, 1], converted as the chapter's transform does, and labels."""
    images, labels = raw_tensors(dataset)
    return v2.functional.to_dtype(images, torch.float32, scale=True), labels


def split_digest(dataset: utils.Dataset) -> str:
    """A short digest of a split's content: its images and labels, in order."""
    images, labels = raw_tensors(dataset)
    digest = hashlib.md5(images.contiguous().numpy().tobytes())
    digest.update(labels.numpy().tobytes())
    return digest.hexdigest()[:12]


def dataset_source(dataset: str) -> str:
    """Where a dataset's files come from (torchvision's first mirror)."""
    return DATASET_CLASSES[dataset].mirrors[0]


def make_loaders(
    config: TrainConfig, splits: DataSplits, device: torch.device, cluster: Cluster | None = None, first_epoch: int = 1
) -> tuple[Iterable[tuple[Tensor, Tensor]], Iterable[tuple[Tensor, Tensor]], Iterable[tuple[Tensor, Tensor]]]:
    """Training batches shuffled from the global RNG (as in the chapter), ordered evaluation batches.

    `loader="dataloader"` gives the chapter's DataLoaders; `loader="tensor"` the same batches from
    tensors decoded once and kept on `device`. Under torchrun (`cluster`), each rank trains on its
    shard of a seeded DistributedSampler and evaluates every world_size-th sample.
    """
    train, val, test = splits.train, splits.val, splits.test
    sampler = None
    if cluster is not None:
        sampler = ShuffledShards(train, cluster, seed=config.seed, first_epoch=first_epoch)
        val, test = (utils.Subset(split, evaluation_shard(len(split), cluster)) for split in (val, test))
    sizes = ((train, config.batch_size, True), (val, config.val_batch_size, False), (test, config.val_batch_size, False))
    if config.loader == "dataloader":
        return tuple(
            utils.DataLoader(split, batch_size=size, shuffle=shuffle and sampler is None, sampler=sampler if shuffle else None)
            for split, size, shuffle in sizes
        )
    loaders = []
    for split, size, shuffle in sizes:
        images, labels = as_tensors(split)
        loaders.append(TensorLoader(images.to(device), labels.to(device), size, shuffle, sampler if shuffle else None))
    return tuple(loaders)
