"""A user's script: their own small CNN on Fashion-MNIST tensors, trained with deep_learning.fit.

Run as `python fit_script.py [RESUME_RUN_ID]`, or under `torchrun ... fit_script.py`; the data root
comes from $DEEP_LEARNING_DATA_ROOT and the store from $MLFLOW_TRACKING_URI. Prints the run id last.
"""

from __future__ import annotations

import sys

import torch
import torch.nn as nn
import torch.optim as optim
import torch.utils.data as utils
from torchmetrics.classification import MulticlassF1Score

import deep_learning
from deep_learning.core.data.files import load_dataset
from deep_learning.core.data.samples import as_tensors
from deep_learning.core.metrics import Accuracy

TRAIN, VAL, TEST = 1500, 500, 500
EPOCHS = 3


class TinyConvNet(nn.Module):
    """Two convolutions and a linear head: the user's own model."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.head = nn.Linear(16 * 7 * 7, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images).flatten(1))


def fashion_tensors() -> tuple[utils.TensorDataset, utils.TensorDataset, utils.TensorDataset]:
    """Train, validation and test TensorDatasets cut from real Fashion-MNIST."""
    images, labels = as_tensors(load_dataset("fashion-mnist", train=True))
    test_images, test_labels = as_tensors(load_dataset("fashion-mnist", train=False))
    return (
        utils.TensorDataset(images[:TRAIN], labels[:TRAIN]),
        utils.TensorDataset(images[TRAIN : TRAIN + VAL], labels[TRAIN : TRAIN + VAL]),
        utils.TensorDataset(test_images[:TEST], test_labels[:TEST]),
    )


def main(resume: str | None) -> None:
    train_data, val_data, test_data = fashion_tensors()
    deep_learning.set_seed(0)
    result = deep_learning.fit(
        TinyConvNet(),
        train_data,
        val_data,
        test_data=test_data,
        loss_fn=nn.CrossEntropyLoss(),
        optimizer=lambda params: optim.AdamW(params, lr=3e-3),
        metrics={"accuracy": Accuracy(), "f1": MulticlassF1Score(10, validate_args=False)},
        epochs=EPOCHS,
        batch_size=64,
        device="cpu",
        seed=42,
        params={"arch": "tiny-conv-net"},
        resume=resume,
    )
    if result.run_id:
        print(f"run_id {result.run_id}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
