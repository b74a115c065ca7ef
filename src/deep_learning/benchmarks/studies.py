"""What a sweep costs beyond its training: each extra child's fixed cost, and the chapter's MLP with 8 seeds trained
as separate runs and together (`--vectorize`) against one run, with how close the two ways' metrics come."""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deep_learning import tracking
from deep_learning.core.config import TrainConfig
from deep_learning.experiment.runner import run_experiment
from deep_learning.studies.grid import Study
from deep_learning.studies.sweep import StudyResult, run_study

CHILD_COST_SAMPLES = 500  # a child whose epoch is short, so that what is left is its fixed cost
CHILD_COUNTS = (1, 4)
VECTORIZED_SEEDS = 8
# --quick: a check that it all runs, not a measurement
QUICK_CHILD_COUNTS, QUICK_SAMPLES, QUICK_SEEDS = (1, 2), 1_000, 2
COMPARED_METRICS = ("train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy")


def measure_studies(device: str, data_root: Path | None, quick: bool, progress: Callable[[str], None]) -> dict[str, Any]:
    """The costs of a sweep's children on `device`, in the current (scratch) store; quietly, as `sweep -q` runs."""
    with contextlib.redirect_stdout(io.StringIO()):
        counts = QUICK_CHILD_COUNTS if quick else CHILD_COUNTS
        progress(f"A sweep's extra child on {device}: sweeps of {' and '.join(map(str, counts))} seeds")
        child = extra_child_seconds(device, data_root, counts)
        epochs = 1 if quick else 2
        count = QUICK_SEEDS if quick else VECTORIZED_SEEDS
        progress(f"{count} seeds of the chapter's MLP on {device}, {epochs} epoch(s): one run, separate runs, vectorized")
        seeds = seeds_against_one_run(device, data_root, epochs, QUICK_SAMPLES if quick else 0, count)
    return {"device": device, **child, **seeds}


def extra_child_seconds(device: str, data_root: Path | None, counts: tuple[int, int] = CHILD_COUNTS) -> dict[str, Any]:
    """Each extra child's wall time beyond its epochs: a sweep's growth from one seed to more, less the epochs it adds."""
    base = TrainConfig(epochs=1, train_subset=CHILD_COST_SAMPLES, device=device)
    run_study(Study(base, {}, [base.seed], [device]), data_root)  # untimed: what a process pays once (the first export, imports)
    walls, epochs = {}, {}
    for count in counts:
        started = time.perf_counter()
        result = run_study(Study(base, {}, [base.seed + offset for offset in range(count)], [device]), data_root)
        walls[count] = time.perf_counter() - started
        epochs[count] = sum(_epoch_seconds(run_id) for run_id in result.children.values())
    low, high = counts
    extra = (walls[high] - walls[low] - (epochs[high] - epochs[low])) / (high - low)
    return {
        "child_samples": CHILD_COST_SAMPLES,
        "sweep_seconds": {str(count): wall for count, wall in walls.items()},
        "extra_child_seconds": extra,
    }


def seeds_against_one_run(device: str, data_root: Path | None, epochs: int, train_subset: int, count: int) -> dict[str, Any]:
    """Wall times of one run, of its seeds as separate children of a sweep and as one vectorized group; their ratios
    to the one run, and per metric the largest difference between a seed's vectorized and separate runs."""
    base = TrainConfig(epochs=epochs, train_subset=train_subset, device=device)
    seeds = [base.seed + offset for offset in range(count)]
    started = time.perf_counter()
    run_experiment(base, data_root)
    one = time.perf_counter() - started
    walls, results = {}, {}
    for name, vectorize in (("separate", False), ("vectorized", True)):
        started = time.perf_counter()
        results[name] = run_study(Study(base, {}, seeds, [device], vectorize), data_root)
        walls[name] = time.perf_counter() - started
    return {
        "seeds": count,
        "epochs": epochs,
        "train_samples": train_subset or 50_000,
        "one_run_seconds": one,
        "separate_seconds": walls["separate"],
        "vectorized_seconds": walls["vectorized"],
        "separate_over_one_run": walls["separate"] / one,
        "vectorized_over_one_run": walls["vectorized"] / one,
        "largest_differences": _largest_differences(results["vectorized"], results["separate"]),
    }


def _largest_differences(together: StudyResult, apart: StudyResult) -> dict[str, float]:
    """Per metric, the largest absolute difference between a seed's two runs, over seeds and epochs."""
    largest = dict.fromkeys(COMPARED_METRICS, 0.0)
    for label, run_id in together.children.items():
        mine, theirs = (tracking.get_run(run, histories=COMPARED_METRICS).histories for run in (run_id, apart.children[label]))
        for key in COMPARED_METRICS:
            largest[key] = max(
                [largest[key], *(abs(value - theirs[key][step]) for step, value in mine[key].items() if step in theirs[key])]
            )
    return largest


def _epoch_seconds(run_id: str) -> float:
    return sum(tracking.get_run(run_id, histories=["epoch_seconds"]).histories["epoch_seconds"].values())
