"""Beyond image classification: a regression (scikit-learn's diabetes data as a csv file) and a character-level
language model (a text file) raced on the tensor path against the same loop through a plain DataLoader, and what the
loop's handling of batches as users make them (any inputs, moved recursively, any loss) costs per batch against the
tuple path it replaced.
"""

from __future__ import annotations

import csv
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

import deep_learning
from deep_learning.benchmarks.loops import WARMUP_EPOCHS, Contestant, race
from deep_learning.benchmarks.machine import synchronize
from deep_learning.core.batches import num_samples, output_and_loss, predictions, to_device
from deep_learning.core.config import TrainConfig
from deep_learning.core.data.examples import example_batch
from deep_learning.core.data.loaders import make_loaders
from deep_learning.core.data.splits import DataSplits
from deep_learning.core.model import build_model
from deep_learning.core.reproducibility import set_seed
from deep_learning.core.training import train_and_evaluate
from deep_learning.experiment.recipe import Recipe, recipe_from_config, settle

TEXT_SAMPLES, QUICK_TEXT_SAMPLES = 8_000, 1_000
BATCH_CALLS = 2_000


def task_configs(folder: Path, quick: bool) -> dict[str, TrainConfig]:
    """The regression and the language model, as configs of files written into `folder`: the diabetes data (scikit-learn
    ships it), and as the text, this package's own source (English prose and code, about 90 distinct characters)."""
    from sklearn.datasets import load_diabetes

    data = load_diabetes(scaled=False)
    table = folder / "diabetes.csv"
    with open(table, "w", newline="") as file:
        csv.writer(file).writerows(
            [[*data.feature_names, "progression"], *([*row, target] for row, target in zip(data.data.tolist(), data.target.tolist()))]
        )
    text = folder / "source.txt"
    text.write_text(
        "".join(path.read_text(encoding="utf-8") for path in sorted(Path(deep_learning.__file__).parent.rglob("*.py"))), encoding="utf-8"
    )
    return {
        "regression": TrainConfig(dataset=f"csv:{table}", target="progression", task="regression", batch_size=32),
        "language model": TrainConfig(
            dataset=f"text:{text}",
            model="transformer",
            block_size=64,
            batch_size=64,
            train_subset=QUICK_TEXT_SAMPLES if quick else TEXT_SAMPLES,
        ),
    }


def task_contestants(
    device: torch.device, configs: dict[str, TrainConfig], seed: int = TrainConfig.seed
) -> tuple[list[Contestant], dict[str, int]]:
    """Each task's run in our untracked loop, on the tensor path and through a DataLoader (the same batches); and each
    task's number of training samples."""
    lineup, sizes = [], {}
    for name, config in configs.items():
        recipe = recipe_from_config(config)
        sizes[name] = len(recipe.data.train)
        for loader in ("dataloader", "tensor"):
            train_dl, val_dl, _ = make_loaders(TrainConfig(**{**config.to_params(), "loader": loader}), recipe.data, device)
            set_seed(seed, deterministic=config.deterministic)
            model = recipe.build_model().to(device)
            _, settled = settle(config, recipe, model, to_device(example_batch(recipe.data), device))
            run_epoch = _epoch_of(model, settled, train_dl, val_dl, device, config.lr)
            lineup.append(Contestant(device, loader, config.batch_size, name, run_epoch, None))
    return lineup, sizes


def _epoch_of(model: nn.Module, recipe: Recipe, train_dl: Any, val_dl: Any, device: torch.device, lr: float) -> Callable[[], object]:
    optimizer = recipe.build_optimizer(model.parameters())
    return lambda: train_and_evaluate(model, train_dl, val_dl, recipe.loss_fn, optimizer, recipe.metrics(), recipe.metrics(), 1, device)


def batch_handling_costs(device: torch.device, splits: DataSplits) -> list[dict[str, Any]]:
    """Microseconds per batch of the chapter's MLP forward and loss, with the loop's batch handling (to_device, output_and_loss,
    predictions, num_samples) and with the tuple path's direct calls it replaced; median of 5 interleaved timings of BATCH_CALLS batches."""
    inputs, target = next(iter(make_loaders(TrainConfig(), splits, device)[0]))
    set_seed(TrainConfig.seed)
    model, loss_fn = build_model().to(device), nn.CrossEntropyLoss()

    def tuple_path() -> None:
        X, y = inputs.to(device), target.to(device)
        logits = model(X)
        loss_fn(logits, y)
        logits.detach(), len(y)

    def batches_as_made() -> None:
        X, y = to_device(inputs, device), to_device(target, device)
        output, _ = output_and_loss(model, X, y, loss_fn)
        predictions(output).detach(), num_samples(y)

    paths = {"tuple path": tuple_path, "batches as made": batches_as_made}
    timings: dict[str, list[float]] = {name: [] for name in paths}
    with torch.inference_mode():
        for step in paths.values():
            step()  # warm-up
        for round_number in range(5):  # the paths interleaved, every other round backwards, so neither always goes first
            for name in list(paths) if round_number % 2 == 0 else reversed(list(paths)):
                synchronize(device)
                started = time.perf_counter()
                for _ in range(BATCH_CALLS):
                    paths[name]()
                synchronize(device)
                timings[name].append((time.perf_counter() - started) / BATCH_CALLS * 1e6)
    return [{"device": str(device), "path": name, "microseconds_per_batch": statistics.median(times)} for name, times in timings.items()]


def measure_tasks(device: torch.device, splits: DataSplits, quick: bool, repeats: int, progress: Callable[[str], None]) -> dict[str, Any]:
    """The tasks' race and the batch handling's cost on `device`, as JSON rows."""
    with tempfile.TemporaryDirectory() as folder:
        lineup, sizes = task_contestants(device, task_configs(Path(folder), quick))
        progress(
            f"Regression and language model on {device}: tensor path and DataLoader, {WARMUP_EPOCHS} warm-up and {repeats} timed round(s)"
        )
        race(lineup, repeats, progress)
    return {
        "epochs": [contestant.summary(0.0) | {"train_samples": sizes[contestant.loop]} for contestant in lineup],
        "batch_handling": batch_handling_costs(device, splits),
    }
