"""The splits a run uses: the chapter's seeded 50,000/10,000 split of MNIST, and the splits of every other kind of dataset, checked and described."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch.utils.data as utils

from deep_learning.core.config import CLASSIFICATION, IMAGE_FOLDER, TrainConfig
from deep_learning.core.data.files import DATASET_CLASSES, dataset_source, get_data_root, load_dataset
from deep_learning.core.data.found import Found, held_out_size, split_off
from deep_learning.core.data.images import image_transform, imagefolder_splits
from deep_learning.core.data.samples import check_samples, kind_of
from deep_learning.core.data.spec import DataSpec, describe_data
from deep_learning.core.data.tabular import CSV, csv_splits
from deep_learning.core.data.text import TEXT, text_splits
from deep_learning.core.errors import ConfigError, DataError
from deep_learning.core.factories import call_factory, import_object, is_import_path

TRAIN_VAL_SPLIT = (50_000, 10_000)


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


def split_train_val(train_dataset: utils.Dataset, split_seed: int = 42) -> tuple[utils.Subset, utils.Subset]:
    """The chapter's 50,000/10,000 split, drawn from its own generator so that it never depends on the global RNG."""
    train_split, val_split = split_off(train_dataset, [TRAIN_VAL_SPLIT[1]], split_seed)
    return train_split, val_split


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


def _found(config: TrainConfig, root: str | Path | None) -> Found:
    name = config.dataset
    if name in DATASET_CLASSES:
        return _mnist_splits(config, root)
    if name.startswith(IMAGE_FOLDER) and name != IMAGE_FOLDER:
        return imagefolder_splits(config)
    if name.startswith(CSV) and name != CSV:
        return csv_splits(name, config.target, config.task, config.val_fraction, config.split_seed)
    if name.startswith(TEXT) and name != TEXT:
        return text_splits(name, config.block_size, config.val_fraction)
    if is_import_path(name):
        return _factory_splits(config, root)
    raise ConfigError(
        f"dataset must be mnist, fashion-mnist, imagefolder:DIR, csv:FILE, text:FILE or an import path package.module:factory, not {name!r}"
    )


def _mnist_splits(config: TrainConfig, root: str | Path | None) -> Found:
    """MNIST or Fashion-MNIST: the chapter's split of the training set, or `val_fraction` of it held out; the test set."""
    transform = image_transform(config.image_size)
    train = load_dataset(config.dataset, train=True, root=root, transform=transform)
    held_out = held_out_size(len(train), config.val_fraction) if config.val_fraction else TRAIN_VAL_SPLIT[1]
    train_split, val_split = split_off(train, [held_out], config.split_seed)
    test = load_dataset(config.dataset, train=False, root=root, transform=transform)
    return Found(train_split, val_split, test, None, dataset_source(config.dataset), CLASSIFICATION)


def _factory_splits(config: TrainConfig, root: str | Path | None) -> Found:
    """The splits a user's `package.module:factory` returns, called with the root, split seed and image size it asks for."""
    path = config.dataset
    offered = {"root": Path(root or get_data_root()), "split_seed": config.split_seed, "image_size": config.image_size}
    returned = call_factory(import_object(path, "dataset"), path, "dataset", offered=offered, given={})
    if isinstance(returned, dict) and {"train", "val"} <= returned.keys() <= {"train", "val", "test", "classes"}:
        classes = returned.get("classes")
        return Found(returned["train"], returned["val"], returned.get("test"), classes and tuple(map(str, classes)), path)
    if isinstance(returned, tuple) and len(returned) in (2, 3):
        train, val, test = (*returned, None)[:3]
        return Found(train, val, test, None, path)
    raise DataError(
        f"dataset {path!r} returned {kind_of(returned)}: expected a dict with keys train, val and optionally test and classes, "
        "or a tuple (train, val) or (train, val, test), of map-style Datasets"
    )
