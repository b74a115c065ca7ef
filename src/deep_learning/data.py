"""Data: where datasets live, MNIST and Fashion-MNIST as in the chapter, image folders, user factories, the spec, and the loaders."""

from __future__ import annotations

import contextlib
import hashlib
import math
import numbers
import os
import shutil
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.utils.data as utils
import torchvision.datasets as datasets
import torchvision.transforms.v2 as v2
from PIL import Image
from torch import Tensor
from torchvision.datasets.utils import calculate_md5

from deep_learning.config import IMAGE_FOLDER, TrainConfig
from deep_learning.distributed import Cluster, ShuffledShards, evaluation_shard
from deep_learning.errors import ConfigError, DataError, first_line
from deep_learning.factories import call_factory, import_object, is_import_path

DATASET_CLASSES: dict[str, type[datasets.MNIST]] = {
    "mnist": datasets.MNIST,
    "fashion-mnist": datasets.FashionMNIST,
}
TRAIN_VAL_SPLIT = (50_000, 10_000)
NUM_CLASSES = 10
IMAGE_SHAPE = (1, 28, 28)
DEFAULT_VAL_FRACTION = 0.1  # held out for validation (and again for test) where a dataset has no split of its own


@dataclass(frozen=True)
class DataSpec:
    """What a model and everything after it need to know of the data."""

    input_shape: tuple[int, ...]  # one sample's, e.g. (1, 28, 28)
    input_dtype: str  # a torch dtype's name without "torch.", e.g. "float32"
    num_classes: int
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.class_names) != self.num_classes:
            raise DataError(f"{len(self.class_names)} class names were given for {self.num_classes} classes")

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready values."""
        return {
            "input_shape": list(self.input_shape),
            "input_dtype": self.input_dtype,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataSpec:
        """The spec that `to_dict` gave, e.g. read back from JSON."""
        return cls(
            input_shape=tuple(int(size) for size in data["input_shape"]),
            input_dtype=str(data["input_dtype"]),
            num_classes=int(data["num_classes"]),
            class_names=tuple(str(name) for name in data["class_names"]),
        )


@dataclass(frozen=True)
class DataSplits:
    """The splits a run uses, what they hold, and where they come from."""

    train: utils.Dataset
    val: utils.Dataset
    test: utils.Dataset | None  # a user's data may have no test split
    spec: DataSpec
    name: str  # as the config names it: "mnist", "imagefolder:DIR", "package.module:factory"
    source: str  # torchvision's mirror, the image folder, or the factory's import path


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
    train_split, val_split = _split_off(train_dataset, [TRAIN_VAL_SPLIT[1]], split_seed)
    return train_split, val_split


def _split_off(dataset: utils.Dataset, sizes: Sequence[int], split_seed: int) -> list[utils.Subset]:
    """The rest of `dataset` and held-out parts of `sizes`, seeded as the chapter's split."""
    rest = len(dataset) - sum(sizes)
    if rest < 1:
        raise DataError(f"the training data has {len(dataset)} samples: too few to hold out {' and '.join(map(str, sizes))} of them")
    return utils.random_split(dataset, [rest, *sizes], generator=torch.Generator().manual_seed(split_seed))


# What each kind of dataset gives load_splits: train, val, test, class names (None: the dataset's own), source.
_Found = tuple[utils.Dataset, utils.Dataset, utils.Dataset | None, tuple[str, ...] | None, str]


def _held_out_size(count: int, fraction: float) -> int:
    """How many of `count` samples a fraction holds out: at least one where there are two or more."""
    return max(round(count * fraction), 1 if count > 1 else 0)


def load_splits(config: TrainConfig, root: str | Path | None = None) -> DataSplits:
    """Train (optionally its first `train_subset` samples), validation and test splits of the config's dataset, checked and described."""
    name = config.dataset
    if name in DATASET_CLASSES:
        train, val, test, class_names, source = _mnist_splits(config, root)
    elif name.startswith(IMAGE_FOLDER) and name != IMAGE_FOLDER:
        train, val, test, class_names, source = _imagefolder_splits(config)
    elif is_import_path(name):
        train, val, test, class_names, source = _factory_splits(config, root)
    else:
        raise ConfigError(f"dataset must be mnist, fashion-mnist, imagefolder:DIR or an import path package.module:factory, not {name!r}")
    for split, dataset in (("training", train), ("validation", val), ("test", test)):
        if dataset is not None:
            check_samples(dataset, split)
    if config.train_subset:
        if config.train_subset > len(train):
            raise ConfigError(f"train_subset must be at most {len(train)}, not {config.train_subset}")
        train = utils.Subset(train, range(config.train_subset))
    return DataSplits(train, val, test, describe_data(train, class_names=class_names), name, source)


def _mnist_splits(config: TrainConfig, root: str | Path | None) -> _Found:
    """MNIST or Fashion-MNIST: the chapter's split of the training set, or `val_fraction` of it held out; the test set."""
    transform = _image_transform(config.image_size)
    train = load_dataset(config.dataset, train=True, root=root, transform=transform)
    held_out = _held_out_size(len(train), config.val_fraction) if config.val_fraction else TRAIN_VAL_SPLIT[1]
    train_split, val_split = _split_off(train, [held_out], config.split_seed)
    test = load_dataset(config.dataset, train=False, root=root, transform=transform)
    return train_split, val_split, test, None, dataset_source(config.dataset)


def _image_transform(image_size: int) -> v2.Compose:
    """The chapter's transform, resized to image_size x image_size when that is set."""
    resize = [v2.Resize((image_size, image_size), antialias=True)] if image_size else []
    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), *resize])


def _imagefolder_splits(config: TrainConfig) -> _Found:
    """DIR/train, DIR/val and DIR/test (or DIR alone) as ImageFolders; the splits missing there held out of the training folder."""
    folder = Path(config.dataset.removeprefix(IMAGE_FOLDER)).expanduser().absolute()
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder: expected images as {folder}/train/<class>/*.png")
    train_folder = folder / "train" if (folder / "train").is_dir() else folder
    paths = {"train": train_folder} | {
        split: folder / split for split in ("val", "test") if train_folder != folder and (folder / split).is_dir()
    }
    transform = _image_transform(config.image_size)
    found = {split: _image_folder(path, folder, transform) for split, path in paths.items()}
    train = found["train"]
    mode = _image_mode(train.samples[0][0])
    for split, dataset in found.items():
        if dataset.classes != train.classes:
            raise DataError(
                f"{paths[split]} has classes {', '.join(dataset.classes)} but {train_folder} has {', '.join(train.classes)}: "
                "give every split the same class folders"
            )
        dataset.loader = partial(_load_image, mode=mode)  # the mode comes from the first image, which only the folder scan finds
    if not config.image_size:
        _check_same_size(folder, found.values())
    missing = [split for split in ("val", "test") if split not in found]
    if missing:
        size = _held_out_size(len(train), config.val_fraction or DEFAULT_VAL_FRACTION)
        rest, *held_out = _split_off(train, [size] * len(missing), config.split_seed)
        found |= {"train": rest, **dict(zip(missing, held_out))}
    return found["train"], found["val"], found["test"], None, str(folder)


def _image_folder(path: Path, folder: Path, transform: v2.Compose) -> datasets.ImageFolder:
    """torchvision's ImageFolder of `path`, its complaints about the layout as one DataError line."""
    try:
        return datasets.ImageFolder(path, transform=transform)
    except FileNotFoundError as error:
        entries = list(path.iterdir())
        folders = sum(entry.is_dir() for entry in entries)
        raise DataError(
            f"{first_line(error).rstrip('. ')} ({path} holds {len(entries) - folders} files and {folders} folders): "
            f"expected images as {folder}/train/<class>/*.png"
        ) from None


def _image_mode(path: str) -> str:
    """The mode every image is converted to: the first image's when it is grayscale or RGB, else RGB."""
    with Image.open(path) as image:
        return image.mode if image.mode in ("L", "RGB") else "RGB"


def _load_image(path: str, mode: str) -> Image.Image:
    with open(path, "rb") as file:
        return Image.open(file).convert(mode)


def _check_same_size(folder: Path, found: Iterable[datasets.ImageFolder]) -> None:
    """Refuse images of different sizes, reading only their headers: a model takes one input shape."""
    first = None
    for dataset in found:
        for path, _ in dataset.samples:
            with Image.open(path) as image:
                size = image.size
            first = first or size
            if size != first:
                raise DataError(
                    f"images in {folder} have different sizes ({first[0]}x{first[1]} and {size[0]}x{size[1]}, e.g. {path}): give --image-size N"
                )


def _factory_splits(config: TrainConfig, root: str | Path | None) -> _Found:
    """The splits a user's `package.module:factory` returns, called with the root, split seed and image size it asks for."""
    path = config.dataset
    offered = {"root": Path(root or get_data_root()), "split_seed": config.split_seed, "image_size": config.image_size}
    returned = call_factory(import_object(path, "dataset"), path, "dataset", offered=offered, given={})
    if isinstance(returned, dict) and {"train", "val"} <= returned.keys() <= {"train", "val", "test", "classes"}:
        classes = returned.get("classes")
        return returned["train"], returned["val"], returned.get("test"), classes and tuple(map(str, classes)), path
    if isinstance(returned, tuple) and len(returned) in (2, 3):
        train, val, test = (*returned, None)[:3]
        return train, val, test, None, path
    raise DataError(
        f"dataset {path!r} returned {_kind(returned)}: expected a dict with keys train, val and optionally test and classes, "
        "or a tuple (train, val) or (train, val, test), of map-style Datasets"
    )


def _kind(value: Any) -> str:
    """What a value is, for a message: "a dict with keys a, b", "a tuple of 4 items", "a tensor of shape (10,) and dtype float32"."""
    if isinstance(value, dict):
        return f"a dict with keys {', '.join(map(str, value))}" if value else "an empty dict"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)} items"
    if isinstance(value, Tensor):
        return f"a tensor of shape {tuple(value.shape)} and dtype {str(value.dtype).removeprefix('torch.')}"
    if value is None:
        return "None"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiouAEIOU' else 'a'} {name}"


def check_samples(dataset: Any, split: str) -> None:
    """Refuse, in one line, a split that is not map-style or whose first sample is not an (input tensor, integer label) pair."""
    where = f"the {split} split"
    if isinstance(dataset, utils.IterableDataset) or not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise DataError(f"{where} is {_kind(dataset)}, not a map-style dataset: give one with __getitem__ and __len__")
    if len(dataset) == 0:
        raise DataError(f"{where} is empty")
    sample = dataset[0]
    if not isinstance(sample, (tuple, list)) or len(sample) != 2:
        raise DataError(f"{where} yields {_kind(sample)}, not (input, target) pairs: make __getitem__ return (tensor, label)")
    inputs, label = sample
    if not isinstance(inputs, Tensor):
        raise DataError(
            f"{where}'s inputs are {_kind(inputs)}, not tensors: convert them in the dataset, "
            "e.g. with v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])"
        )
    if not _is_class_index(label):
        raise DataError(f"{where}'s labels are {_kind(label)}, not class indices: make each label an int (or a 0-d integer tensor)")


def _is_class_index(label: Any) -> bool:
    if isinstance(label, Tensor):
        return label.ndim == 0 and not (label.dtype.is_floating_point or label.dtype.is_complex or label.dtype == torch.bool)
    return isinstance(label, numbers.Integral) and not isinstance(label, bool)


def describe_data(train: Any, *, class_names: Sequence[str] | None = None, num_classes: int | None = None) -> DataSpec:
    """The spec of a training split that check_samples accepts: the first sample's shape and dtype, and its classes.

    The class names are `class_names`, else the dataset's `.classes` (under any Subsets); without
    names, the count is `num_classes`, else one more than the largest stored label (a TensorDataset's
    labels, `.targets`), else one more than the largest label of all samples, which reads every sample
    once: fine for small datasets. Unnamed classes are called "0", "1", ...
    """
    inputs = train[0][0]
    names = class_names or getattr(_unwrap(train)[0], "classes", None)
    if names is None:
        names = [str(label) for label in range(num_classes or _count_classes(train))]
    return DataSpec(tuple(inputs.shape), str(inputs.dtype).removeprefix("torch."), len(names), tuple(map(str, names)))


def _count_classes(dataset: Any) -> int:
    """One more than the largest label: stored ones where the dataset keeps them, else read sample by sample."""
    base, _ = _unwrap(dataset)
    if isinstance(base, utils.TensorDataset) and len(base.tensors) == 2:
        labels = base.tensors[1]
    elif getattr(base, "targets", None) is not None:
        labels = torch.as_tensor(base.targets)
    else:
        labels = torch.tensor([int(dataset[index][1]) for index in range(len(dataset))])
    return int(labels.max()) + 1


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
        images, labels = self.dataset.tensors
        count = order.shape[-1] if order is not None else len(self.dataset)
        for start in range(0, count, self.batch_size):
            if order is None:
                yield images[start:start + self.batch_size], labels[start:start + self.batch_size]
            else:
                batch = order[..., start:start + self.batch_size]
                yield images[batch], labels[batch]


def _onto(indices: Tensor, device: torch.device) -> Tensor:
    """Host indices on `device`; to CUDA through pinned memory, so that the copy does not wait for the GPU."""
    if device.type == "cuda":
        return indices.pin_memory().to(device, non_blocking=True)
    return indices.to(device)


def _unwrap(dataset: Any) -> tuple[Any, Tensor | None]:
    """The dataset under a chain of Subsets, and the indices into it that the chain selects (None: all of it)."""
    indices = None
    while isinstance(dataset, utils.Subset):
        level = torch.as_tensor(dataset.indices)
        indices = level if indices is None else level[indices]
        dataset = dataset.dataset
    return dataset, indices


def _is_chapter_mnist(dataset: Any) -> bool:
    """MNIST-like (uint8 `.data` and `.targets` tensors) with the chapter's transform: its stored images are its samples."""
    if not isinstance(dataset, datasets.MNIST) or dataset.target_transform is not None:
        return False
    steps = getattr(dataset.transform, "transforms", [])
    return [type(step) for step in steps] == [v2.ToImage, v2.ToDtype] and steps[1].dtype == torch.float32 and steps[1].scale


def _stored_tensors(dataset: Any) -> tuple[Tensor, Tensor] | None:
    """A split's inputs and labels as stored, without decoding: MNIST's uint8 images (N, 1, 28, 28) or a TensorDataset's tensors."""
    base, indices = _unwrap(dataset)
    if _is_chapter_mnist(base):
        inputs, labels = base.data.unsqueeze(1), base.targets
    elif isinstance(base, utils.TensorDataset) and len(base.tensors) == 2:
        inputs, labels = base.tensors
    else:
        return None
    if indices is not None:
        inputs, labels = inputs[indices], labels[indices]
    return inputs, labels.to(torch.int64)


def is_tensor_backed(dataset: Any) -> bool:
    """True for a split whose inputs and labels are stored as tensors (MNIST's, a TensorDataset's), so batching it copies no sample."""
    return _stored_tensors(dataset) is not None


def as_tensors(dataset: Any) -> tuple[Tensor, Tensor]:
    """A split as one inputs tensor and int64 labels, equal to its samples stacked.

    MNIST's stored images are converted as the chapter's transform does and a TensorDataset's
    tensors are indexed, both without per-sample work; any other dataset is read sample by sample, once.
    """
    stored = _stored_tensors(dataset)
    if stored is None:
        return _stacked(dataset)
    inputs, labels = stored
    if _is_chapter_mnist(_unwrap(dataset)[0]):
        inputs = v2.functional.to_dtype(inputs, torch.float32, scale=True)
    return inputs, labels


def _stacked(dataset: Any) -> tuple[Tensor, Tensor]:
    """Every sample read once into one preallocated inputs tensor, and the labels."""
    first = dataset[0][0]
    inputs = torch.empty((len(dataset), *first.shape), dtype=first.dtype)
    labels = torch.empty(len(dataset), dtype=torch.int64)
    for index in range(len(dataset)):
        sample, label = dataset[index]
        if sample.shape != first.shape:  # assigning would broadcast some shapes silently
            raise DataError(f"sample {index} has shape {tuple(sample.shape)} but sample 0 {tuple(first.shape)}: samples must share one shape")
        inputs[index], labels[index] = sample, int(label)
    return inputs, labels


def split_digest(dataset: Any, tensors: tuple[Tensor, Tensor] | None = None) -> str:
    """A short digest of a split's content: its inputs and labels, in order.

    MNIST's digest is of its stored uint8 images and a TensorDataset's of its tensors, read without
    decoding; any other split's is of `tensors` when the caller already has them from as_tensors,
    else of as_tensors(dataset).
    """
    inputs, labels = _stored_tensors(dataset) or tensors or as_tensors(dataset)
    digest = hashlib.md5(_as_bytes(inputs))
    digest.update(_as_bytes(labels.to(torch.int64)))
    return digest.hexdigest()[:12]


def _as_bytes(tensor: Tensor) -> np.ndarray:
    """A tensor's bytes, without a copy where it is contiguous on the host; through uint8, as numpy has no bfloat16."""
    return tensor.detach().cpu().contiguous().flatten().view(torch.uint8).numpy()


def dataset_source(dataset: str) -> str:
    """Where a dataset's files come from (torchvision's first mirror)."""
    return DATASET_CLASSES[dataset].mirrors[0]


Loaders = tuple[Iterable[tuple[Tensor, Tensor]], Iterable[tuple[Tensor, Tensor]], Iterable[tuple[Tensor, Tensor]] | None]


def make_loaders(config: TrainConfig, splits: DataSplits, device: torch.device, cluster: Cluster | None = None, first_epoch: int = 1) -> Loaders:
    """Training batches shuffled from the global RNG (as in the chapter), ordered evaluation batches; None for a missing test split.

    `loader="dataloader"` gives the chapter's DataLoaders; `loader="tensor"` the same batches from
    tensors decoded once and kept on `device`. Under torchrun (`cluster`), each rank trains on its
    shard of a seeded DistributedSampler and evaluates every world_size-th sample.
    """
    train, val, test = splits.train, splits.val, splits.test
    sampler = None
    if cluster is not None:
        sampler = ShuffledShards(train, cluster, seed=config.seed, first_epoch=first_epoch)
        val, test = (None if split is None else utils.Subset(split, evaluation_shard(len(split), cluster)) for split in (val, test))
    sizes = ((train, config.batch_size, True), (val, config.val_batch_size, False), (test, config.val_batch_size, False))
    loaders = []
    for split, size, shuffle in sizes:
        if split is None:
            loaders.append(None)
        elif config.loader == "dataloader":
            loaders.append(utils.DataLoader(split, batch_size=size, shuffle=shuffle and sampler is None, sampler=sampler if shuffle else None))
        else:
            inputs, labels = as_tensors(split)
            loaders.append(TensorLoader(inputs.to(device), labels.to(device), size, shuffle, sampler if shuffle else None))
    return tuple(loaders)
