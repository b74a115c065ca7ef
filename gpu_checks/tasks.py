"""On a CUDA machine: the other tasks on the GPU. A character-level language model (`--dataset text:`, the built-in
causal transformer) trains an epoch on CUDA and on the CPU (epoch seconds side by side), its training and evaluation
passes make the same number of synchronizing CUDA calls for 10 batches as for 20 (none per batch), and a regression
`fit` on CUDA leaves its run in $OUT/mlflow.db, whose model a CPU-only machine then loads and scores.

Run from the repository root with the package installed: `python gpu_checks/tasks.py TEXT_FILE` (any text; the
chapter's, say). Prints PASS/FAIL lines and the timings; exits non-zero on a failure.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.utils.data as utils
from mlflow import MlflowClient

import deep_learning
from deep_learning.benchmarks.syncs import cuda_syncs
from deep_learning.core.batches import to_device
from deep_learning.core.config import TrainConfig
from deep_learning.core.data.examples import example_batch
from deep_learning.core.data.loaders import make_loaders
from deep_learning.core.reproducibility import set_seed
from deep_learning.core.training import evaluate, train
from deep_learning.experiment.recipe import recipe_from_config, settle

LENGTHS = (10, 20)
OUT = Path(os.environ.get("OUT", "tasks-out")).absolute()


def text_epoch_seconds(text: Path, device: str) -> float:
    """The median epoch time of a short text run on `device`, as the run logged it."""
    uri = f"sqlite:///{OUT / 'mlflow.db'}"
    command = [
        sys.executable,
        "-m",
        "deep_learning",
        "train",
        "--dataset",
        f"text:{text}",
        "--model",
        "transformer",
        "--block-size",
        "64",
        "--batch-size",
        "64",
        "--steps-per-epoch",
        "200",
        "--epochs",
        "3",
        "--optimizer",
        "adamw",
        "--lr",
        "3e-3",
        "--device",
        device,
        "-q",
    ]
    output = subprocess.run(
        command, cwd=OUT, capture_output=True, text=True, env={**os.environ, "MLFLOW_TRACKING_URI": uri}, check=True
    ).stdout
    run_id = output.split()[1]
    seconds = sorted(metric.value for metric in MlflowClient(uri).get_metric_history(run_id, "epoch_seconds"))
    return seconds[len(seconds) // 2]


def syncs_per_pass(text: Path, device: torch.device) -> dict[str, list[int]]:
    """Synchronizing CUDA calls of the language model's training and evaluation passes over 10 and 20 batches."""
    config = TrainConfig(dataset=f"text:{text}", model="transformer", block_size=64, batch_size=64)
    recipe = recipe_from_config(config)
    train_dl = make_loaders(config, recipe.data, device)[0]
    counts: dict[str, list[int]] = {"train": [], "evaluate": []}
    for length in LENGTHS:
        set_seed(0)
        model = recipe.build_model().to(device)
        _, settled = settle(config, recipe, model, to_device(example_batch(recipe.data), device))
        batches = list(itertools.islice(train_dl, length))
        optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, fused=True)
        passes = {
            "train": lambda: train(model, batches, settled.loss_fn, optimizer, settled.metrics().to(device), device),
            "evaluate": lambda: evaluate(model, batches, settled.loss_fn, settled.metrics().to(device), device),
        }
        for name, run in passes.items():
            run()  # warm-up: first-call allocations and kernel loads
            counts[name].append(cuda_syncs(run))
    return counts


def regression_on_cuda() -> str:
    """A regression fit on CUDA (scikit-learn's diabetes data) into $OUT/mlflow.db; its run id."""
    from sklearn.datasets import load_diabetes

    features, targets = (torch.tensor(array, dtype=torch.float32) for array in load_diabetes(return_X_y=True))
    targets = ((targets - targets.mean()) / targets.std()).unsqueeze(1)
    train_data, val_data, test_data = utils.random_split(
        utils.TensorDataset(features, targets), [300, 70, 72], generator=torch.Generator().manual_seed(0)
    )
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{OUT / 'mlflow.db'}"
    result = deep_learning.fit(
        nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 1)),
        train_data,
        val_data,
        test_data=test_data,
        loss_fn=nn.MSELoss(),
        metrics=["mae", "r2"],
        optimizer="adam",
        lr=1e-2,
        epochs=5,
        batch_size=32,
        device="cuda",
        checkpoint_dir=str(OUT / "checkpoints"),
    )
    (OUT / "regression.json").write_text(json.dumps({"run_id": result.run_id, "test_metrics": result.test_metrics}))
    return result.run_id


def main(text: Path) -> int:
    if not torch.cuda.is_available():
        print("no CUDA device here", file=sys.stderr)
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    failed = False
    counts = syncs_per_pass(text, torch.device("cuda"))
    for name, pair in counts.items():
        verdict = "PASS" if pair[0] == pair[1] else "FAIL"
        failed |= verdict == "FAIL"
        print(f"{verdict} language model {name} pass: synchronizing CUDA calls per pass of {LENGTHS} batches: {pair}", flush=True)
    timings = {device: text_epoch_seconds(text, device) for device in ("cuda", "cpu")}
    print(
        f"language model epoch (200 steps of 64 x 64 tokens): cuda {timings['cuda']:.2f} s, cpu {timings['cpu']:.2f} s, "
        f"{timings['cpu'] / timings['cuda']:.1f}x",
        flush=True,
    )
    print(f"regression fit on cuda: run {regression_on_cuda()} in {OUT / 'mlflow.db'}; load it on a CPU-only machine", flush=True)
    (OUT / "tasks.json").write_text(json.dumps({"syncs": counts, "epoch_seconds": timings}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]).absolute()))
