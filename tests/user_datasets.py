"""Dataset factories from user code, as `--dataset user_datasets:NAME` names them (for tests/test_data.py)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.utils.data as utils

from deep_learning.core.data.files import load_dataset
from deep_learning.core.data.samples import as_tensors


def _fashion(root: Path) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    fashion = load_dataset("fashion-mnist", train=False, root=root)
    images, labels = as_tensors(utils.Subset(fashion, range(300)))
    return images, labels, fashion.classes


def fashion_slice(root: Path) -> dict:
    """300 real Fashion-MNIST test images as TensorDatasets: 200 to train on, 50 to validate, 50 to test; with the class names."""
    images, labels, classes = _fashion(root)

    def part(start: int, stop: int) -> utils.TensorDataset:
        return utils.TensorDataset(images[start:stop], labels[start:stop])

    return {"train": part(0, 200), "val": part(200, 250), "test": part(250, 300), "classes": classes}


def fashion_pair(root: Path, split_seed: int) -> tuple[utils.Dataset, utils.Dataset]:
    """Training and validation splits only, shuffled by the split seed it asks for."""
    images, labels, _ = _fashion(root)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(split_seed))
    dataset = utils.TensorDataset(images[order], labels[order])
    return utils.Subset(dataset, range(250)), utils.Subset(dataset, range(250, 300))


def a_list() -> list[int]:
    """Not splits at all."""
    return [1, 2, 3]


class Records(utils.Dataset):
    """Samples as dicts, as many datasets on the Hub give them."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> dict:
        return {"image": torch.zeros(1, 2, 2), "label": index % 2}


def records() -> tuple[Records, Records]:
    """Splits whose samples are dicts, not (input, target) pairs."""
    return Records(), Records()
