"""Image folders: DIR/train, DIR/val and DIR/test (or DIR alone) as ImageFolders of one mode and one size."""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from pathlib import Path

import torch
import torchvision.datasets as datasets
import torchvision.transforms.v2 as v2
from PIL import Image

from deep_learning.core.config import CLASSIFICATION, IMAGE_FOLDER, TrainConfig
from deep_learning.core.data.found import DEFAULT_VAL_FRACTION, Found, held_out_size, split_off
from deep_learning.core.errors import DataError, first_line


def image_transform(image_size: int) -> v2.Compose:
    """The chapter's transform, resized to image_size x image_size when that is set."""
    resize = [v2.Resize((image_size, image_size), antialias=True)] if image_size else []
    return v2.Compose([v2.ToImage(), v2.ToDtype(torch.float32, scale=True), *resize])


def imagefolder_splits(config: TrainConfig) -> Found:
    """DIR/train, DIR/val and DIR/test (or DIR alone) as ImageFolders; the splits missing there held out of the training folder."""
    folder = Path(config.dataset.removeprefix(IMAGE_FOLDER)).expanduser().absolute()
    if not folder.is_dir():
        raise DataError(f"{folder} is not a folder: expected images as {folder}/train/<class>/*.png")
    train_folder = folder / "train" if (folder / "train").is_dir() else folder
    paths = {"train": train_folder} | {
        split: folder / split for split in ("val", "test") if train_folder != folder and (folder / split).is_dir()
    }
    transform = image_transform(config.image_size)
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
        size = held_out_size(len(train), config.val_fraction or DEFAULT_VAL_FRACTION)
        rest, *held_out = split_off(train, [size] * len(missing), config.split_seed)
        found |= {"train": rest, **dict(zip(missing, held_out))}
    return Found(found["train"], found["val"], found["test"], None, str(folder), CLASSIFICATION)


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
