"""Data: where datasets live, MNIST and Fashion-MNIST as in the chapter, image folders, csv and text files, user
factories; the checks of a split's samples, its spec and its digest (the loaders are in deep_learning.core.data.loaders)."""

from __future__ import annotations

import contextlib
import dataclasses
import numbers
import os
import shutil
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.utils.data as utils
import torchvision.datasets as datasets
import torchvision.transforms.v2 as v2
from PIL import Image
from torch import Tensor
from torchvision.datasets.utils import calculate_md5

from deep_learning.core.config import CLASSIFICATION, IMAGE_FOLDER, SEQUENCE, TrainConfig
from deep_learning.core.batches import first_tensor, is_integral, split_target
from deep_learning.core.errors import ConfigError, DataError, first_line
from deep_learning.core.data.tabular import CSV, csv_splits
from deep_learning.core.data.text import TEXT, text_splits
from deep_learning.core.factories import call_factory, import_object, is_import_path

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

    input_shape: tuple[int, ...]  # one sample's first input tensor, e.g. (1, 28, 28)
    input_dtype: str  # a torch dtype's name without "torch.", e.g. "float32"
    num_classes: int  # classes (labels of a multi-label task, the vocabulary of a sequence task); 0: none or not known yet
    class_names: tuple[str, ...]
    task: str = "classification"  # see deep_learning.core.tasks; "" until a run settles it
    target_shape: tuple[int, ...] = ()  # one sample's target
    target_dtype: str = "int64"
    features: dict[str, Any] | None = None  # a csv run's feature and target columns and the training split's statistics

    def __post_init__(self) -> None:
        if self.class_names and len(self.class_names) != self.num_classes:
            raise DataError(f"{len(self.class_names)} class names were given for {self.num_classes} classes")

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON-ready values."""
        spec = {
            "input_shape": list(self.input_shape),
            "input_dtype": self.input_dtype,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "task": self.task,
            "target_shape": list(self.target_shape),
            "target_dtype": self.target_dtype,
        }
        return spec | ({"features": self.features} if self.features else {})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataSpec:
        """The spec that `to_dict` gave, e.g. read back from JSON (a run from before tasks: a classification's)."""
        return cls(
            input_shape=tuple(int(size) for size in data["input_shape"]),
            input_dtype=str(data["input_dtype"]),
            num_classes=int(data["num_classes"]),
            class_names=tuple(str(name) for name in data["class_names"]),
            task=str(data.get("task", "classification")),
            target_shape=tuple(int(size) for size in data.get("target_shape", ())),
            target_dtype=str(data.get("target_dtype", "int64")),
            features=data.get("features"),
        )


@dataclass(frozen=True)
class DataSplits:
    """The splits a run uses, what they hold, and where they come from."""

    train: utils.Dataset
    val: utils.Dataset
    test: utils.Dataset | None  # a user's data may have no test split
    spec: DataSpec
    name: str  # as the config names it: "mnist", "imagefolder:DIR", "csv:FILE", "package.module:factory"
    source: str  # torchvision's mirror, the image folder, the file, or the factory's import path
    target_key: str | None = None  # dict samples: the key of the target, the other keys being the model's inputs
    loaders: dict[str, utils.DataLoader] = field(default_factory=dict)  # the user's DataLoaders, by split: fit keeps their settings

    def named(self) -> list[tuple[str, utils.Dataset | None]]:
        """The splits by the names runs give them: training, validation, test."""
        return [("training", self.train), ("validation", self.val), ("test", self.test)]


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


@dataclass(frozen=True)
class _Found:
    """What each kind of dataset gives load_splits: the splits, the class names (None: the dataset's own), where they
    come from, and what the kind says of the task (empty: the run infers it) and of a csv file's columns."""

    train: utils.Dataset
    val: utils.Dataset
    test: utils.Dataset | None
    class_names: tuple[str, ...] | None
    source: str
    task: str = ""
    features: dict[str, Any] | None = None


def _held_out_size(count: int, fraction: float) -> int:
    """How many of `count` samples a fraction holds out: at least one where there are two or more."""
    return max(round(count * fraction), 1 if count > 1 else 0)


def load_splits(config: TrainConfig, root: str | Path | None = None) -> DataSplits:
    """Train (optionally its first `train_subset` samples), validation and test splits of the config's dataset, checked and described."""
    found = _found(config, root)
    train = found.train
    for split, dataset in (("training", train), ("validation", found.val), ("test", found.test)):
        if dataset is not None:
            check_samples(dataset, split)
    if config.train_subset:
        if config.train_subset > len(train):
            raise ConfigError(f"train_subset must be at most {len(train)}, not {config.train_subset}")
        train = utils.Subset(train, range(config.train_subset))
    spec = dataclasses.replace(describe_data(train, class_names=found.class_names), task=found.task, features=found.features)
    return DataSplits(train, found.val, found.test, spec, config.dataset, found.source)


def _found(config: TrainConfig, root: str | Path | None) -> _Found:
    name = config.dataset
    if name in DATASET_CLASSES:
        return _mnist_splits(config, root)
    if name.startswith(IMAGE_FOLDER) and name != IMAGE_FOLDER:
        return _imagefolder_splits(config)
    if name.startswith(CSV) and name != CSV:
        table = csv_splits(name, config.target, config.task, config.val_fraction, config.split_seed)
        return _Found(table.train, table.val, table.test, table.class_names, str(Path(name.removeprefix(CSV)).expanduser().absolute()), table.task, table.features)
    if name.startswith(TEXT) and name != TEXT:
        text = text_splits(name, config.block_size, config.val_fraction)
        return _Found(text.train, text.val, text.test, text.vocabulary, str(Path(name.removeprefix(TEXT)).expanduser().absolute()), SEQUENCE)
    if is_import_path(name):
        return _factory_splits(config, root)
    raise ConfigError(f"dataset must be mnist, fashion-mnist, imagefolder:DIR, csv:FILE, text:FILE or an import path package.module:factory, not {name!r}")


def _mnist_splits(config: TrainConfig, root: str | Path | None) -> _Found:
    """MNIST or Fashion-MNIST: the chapter's split of the training set, or `val_fraction` of it held out; the test set."""
    transform = _image_transform(config.image_size)
    train = load_dataset(config.dataset, train=True, root=root, transform=transform)
    held_out = _held_out_size(len(train), config.val_fraction) if config.val_fraction else TRAIN_VAL_SPLIT[1]
    train_split, val_split = _split_off(train, [held_out], config.split_seed)
    test = load_dataset(config.dataset, train=False, root=root, transform=transform)
    return _Found(train_split, val_split, test, None, dataset_source(config.dataset), CLASSIFICATION)


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
    return _Found(found["train"], found["val"], found["test"], None, str(folder), CLASSIFICATION)


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
        return _Found(returned["train"], returned["val"], returned.get("test"), classes and tuple(map(str, classes)), path)
    if isinstance(returned, tuple) and len(returned) in (2, 3):
        train, val, test = (*returned, None)[:3]
        return _Found(train, val, test, None, path)
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


def is_stream(dataset: Any) -> bool:
    """True for an IterableDataset: samples come from iterating it, with no index and perhaps no length."""
    return isinstance(dataset, utils.IterableDataset)


def split_size(dataset: Any) -> int | str:
    """A split's number of samples, or "stream" for one without a length."""
    return "stream" if is_stream(dataset) else len(dataset)


def first_sample(dataset: Any) -> Any:
    """A split's first sample (a stream's first item), read once; None for a stream that yields nothing."""
    samples = first_samples(dataset, 1)
    return samples[0] if samples else None


def first_samples(split: Any, count: int) -> list[Any]:
    """The first `count` samples of a split (of a stream: the first it yields)."""
    if not is_stream(split):
        return [split[index] for index in range(min(count, len(split)))]
    samples: list[Any] = []
    for sample in split:
        samples.append(sample)
        if len(samples) >= count:
            break
    return samples


def check_samples(dataset: Any, split: str, target_key: str | None = None) -> None:
    """Refuse, in one line, a split whose first sample is not `(inputs, target)` (a dict holding `target_key`).

    Inputs are a tensor, a tuple or list of tensors, or a dict of them; the target a tensor or a number.
    """
    where = f"the {split} split"
    if not is_stream(dataset) and not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise DataError(f"{where} is {_kind(dataset)}, not a dataset: give one with __getitem__ and __len__, or an IterableDataset")
    if not is_stream(dataset) and len(dataset) == 0:
        raise DataError(f"{where} is empty")
    sample = first_sample(dataset)
    if sample is None:
        raise DataError(f"{where} is a stream that yields nothing")
    inputs, target = _as_pair(sample, where, target_key)
    if not _all_tensors(inputs):
        raise DataError(
            f"{where}'s inputs are {_kind(inputs)}, not tensors: convert them in the dataset "
            "(e.g. with v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])), or give a tuple or dict of tensors"
        )
    if not (isinstance(target, Tensor) or (isinstance(target, numbers.Number) and not isinstance(target, complex))):
        raise DataError(f"{where}'s targets are {_kind(target)}, not tensors or numbers")


def _as_pair(sample: Any, where: str, target_key: str | None) -> tuple[Any, Any]:
    if isinstance(sample, dict):
        if target_key is None:
            raise DataError(f"{where} yields {_kind(sample)}, not (input, target) pairs: name the target's key with target_key")
        if target_key not in sample:
            raise DataError(f"{where}'s samples have no key {target_key!r} (their keys: {', '.join(map(str, sample))}): give the target's key as target_key")
        return split_target(sample, target_key)
    if target_key is not None:
        raise DataError(f"{where} yields {_kind(sample)}, not dicts: target_key is for samples that are dicts")
    if not isinstance(sample, (tuple, list)) or len(sample) != 2:
        raise DataError(f"{where} yields {_kind(sample)}, not (input, target) pairs: make __getitem__ return (inputs, target)")
    return sample[0], sample[1]


def _all_tensors(inputs: Any) -> bool:
    if isinstance(inputs, Tensor):
        return True
    if isinstance(inputs, dict):
        return bool(inputs) and all(_all_tensors(value) for value in inputs.values())
    if isinstance(inputs, (tuple, list)):
        return bool(inputs) and all(_all_tensors(value) for value in inputs)
    return False


def describe_data(
    train: Any, *, class_names: Sequence[str] | None = None, num_classes: int | None = None, target_key: str | None = None,
) -> DataSpec:
    """The spec of a training split that check_samples accepts, from its first sample alone: its first input tensor's
    shape and dtype, its target's, and its classes where they are known without reading the data.

    The class names are `class_names`, else the dataset's `.classes` (under any Subsets); without names, the count is
    `num_classes`, else one more than the largest stored label (a TensorDataset's integer targets, `.targets`), else
    not known yet (0): a run then takes it from the model's output. Unnamed classes are called "0", "1", ...
    """
    inputs, target = split_target(first_sample(train), target_key)
    first, target = first_tensor(inputs), torch.as_tensor(target)
    names = class_names or getattr(_unwrap(train)[0], "classes", None)
    count = len(names) if names else num_classes or _stored_class_count(train)
    names = tuple(map(str, names)) if names else tuple(str(label) for label in range(count))
    return DataSpec(
        tuple(first.shape), _dtype_name(first.dtype), count, names, task="",
        target_shape=tuple(target.shape), target_dtype=_dtype_name(target.dtype),
    )


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _stored_class_count(dataset: Any) -> int:
    """One more than the largest stored integer label (a TensorDataset's, `.targets`), without reading a sample; 0 when none is stored."""
    if is_stream(dataset):
        return 0
    base, _ = _unwrap(dataset)
    if isinstance(base, utils.TensorDataset) and len(base.tensors) == 2:
        labels = base.tensors[1]
    elif getattr(base, "targets", None) is not None:
        labels = torch.as_tensor(base.targets)
    else:
        return 0
    return int(labels.max()) + 1 if is_integral(labels) and labels.numel() and labels.ndim == 1 else 0


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


def stored_tensors(dataset: Any) -> tuple[Tensor, Tensor] | None:
    """A split's inputs and targets as stored, without decoding: MNIST's uint8 images (N, 1, 28, 28) or a TensorDataset's
    two tensors; integer targets as int64 (what cross-entropy takes). None for any other split."""
    base, indices = _unwrap(dataset)
    if _is_chapter_mnist(base):
        inputs, targets = base.data.unsqueeze(1), base.targets
    elif isinstance(base, utils.TensorDataset) and len(base.tensors) == 2:
        inputs, targets = base.tensors
    else:
        return None
    if indices is not None:
        inputs, targets = inputs[indices], targets[indices]
    return inputs, targets.to(torch.int64) if is_integral(targets) else targets


def as_tensors(dataset: Any) -> tuple[Tensor, Tensor]:
    """A split as one inputs tensor and its targets, equal to its samples stacked.

    MNIST's stored images are converted as the chapter's transform does and a TensorDataset's
    tensors are indexed, both without per-sample work; any other dataset of (tensor, label) pairs is read
    sample by sample, once (runs never do this: it is for a split that fits in memory, on request).
    """
    stored = stored_tensors(dataset)
    if stored is None:
        return _stacked(dataset)
    inputs, targets = stored
    if _is_chapter_mnist(_unwrap(dataset)[0]):
        inputs = v2.functional.to_dtype(inputs, torch.float32, scale=True)
    return inputs, targets


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


def dataset_source(dataset: str) -> str:
    """Where a dataset's files come from (torchvision's first mirror)."""
    return DATASET_CLASSES[dataset].mirrors[0]
