"""A user's regression script: scikit-learn's diabetes data (442 patients, 10 features, one target) with
deep_learning.fit, their own MLP, MSELoss and torchmetrics' MeanAbsoluteError.

Run as `python regression_script.py [RESUME_RUN_ID]`; the store comes from $MLFLOW_TRACKING_URI. Prints the run id last.
"""

from __future__ import annotations

import sys

import torch
import torch.nn as nn
import torch.optim as optim
import torch.utils.data as utils
from sklearn.datasets import load_diabetes
from torchmetrics.regression import MeanAbsoluteError

import deep_learning

TRAIN, VAL = 300, 70  # the other 72 patients are the test split
EPOCHS = 3


class Regressor(nn.Module):
    def __init__(self, features: int = 10) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(features, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)


def diabetes_splits() -> tuple[utils.TensorDataset, utils.TensorDataset, utils.TensorDataset]:
    """Train, validation and test splits of the diabetes data, the targets standardised with the training split's statistics."""
    features, targets = load_diabetes(return_X_y=True)
    features, targets = torch.tensor(features, dtype=torch.float32), torch.tensor(targets, dtype=torch.float32).unsqueeze(1)
    targets = (targets - targets[:TRAIN].mean()) / targets[:TRAIN].std()
    return (
        utils.TensorDataset(features[:TRAIN], targets[:TRAIN]),
        utils.TensorDataset(features[TRAIN : TRAIN + VAL], targets[TRAIN : TRAIN + VAL]),
        utils.TensorDataset(features[TRAIN + VAL :], targets[TRAIN + VAL :]),
    )


def main(resume: str | None) -> None:
    train_data, val_data, test_data = diabetes_splits()
    result = deep_learning.fit(
        lambda: Regressor(),
        train_data,
        val_data,
        test_data=test_data,
        loss_fn=nn.MSELoss(),
        optimizer=lambda params: optim.Adam(params, lr=1e-2),
        metrics={"mae": MeanAbsoluteError()},
        epochs=EPOCHS,
        batch_size=32,
        device="cpu",
        seed=7,
        resume=resume,
    )
    if result.run_id:
        print(f"run_id {result.run_id}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
