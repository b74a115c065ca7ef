"""Where datasets live: the data root, the raw MNIST and Fashion-MNIST files, importing them, and the chapter's transform."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path

import torch
import torchvision.datasets as datasets
import torchvision.transforms.v2 as v2
from torchvision.datasets.utils import calculate_md5

from deep_learning.core.errors import DataError, first_line

DATASET_CLASSES: dict[str, type[datasets.MNIST]] = {"mnist": datasets.MNIST, "fashion-mnist": datasets.FashionMNIST}


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
    return f"Put {expected} in {raw_folder(dataset, root)}, e.g. with `deep-learning data import DIR --dataset {dataset}`."


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
        raise DataError(
            f"Cannot write {error.filename or target}: {error.strerror}. Set DEEP_LEARNING_DATA_ROOT to a writable folder."
        ) from None
    load_dataset(dataset, train=True, root=root)
    load_dataset(dataset, train=False, root=root)
    return target


def dataset_source(dataset: str) -> str:
    """Where a dataset's files come from (torchvision's first mirror)."""
    return DATASET_CLASSES[dataset].mirrors[0]
