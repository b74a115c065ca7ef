"""MLflow's costs around the loop: a scratch store, a run's fixed cost and logging the model.

`deep-learning train` pays the fixed costs in a process that has not yet talked to the store,
so they are measured in fresh processes (`python -m deep_learning.benchmarks.mlflow_costs`), one
per repeat, against the benchmark's existing sqlite store. This module imports mlflow only
inside the child's measurement, which times that import too.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from deep_learning.benchmarks.commands import run_command
from deep_learning.core.batches import ExampleInputs
from deep_learning.core.checkpoint_files import checkpoints_in, epoch_of, load_checkpoint
from deep_learning.core.config import TrainConfig
from deep_learning.core.data.spec import IMAGE_SHAPE
from deep_learning.core.data.splits import TRAIN_VAL_SPLIT
from deep_learning.core.devices import describe_device, device_tags
from deep_learning.core.errors import BenchmarkError
from deep_learning.core.model import build_model, count_parameters
from deep_learning.core.results import EpochResult
from deep_learning.experiment.checkpoints import Checkpointer

EXPERIMENT_NAME = "deep-learning-benchmark"
LATER_RUNS = 3
SAMPLER_START_SECONDS = 1.5  # MLflow's monitor takes its first sample and logs it
SAMPLER_WINDOW_SECONDS, QUICK_SAMPLER_WINDOW_SECONDS = 5.0, 2.0
QUICK_FLAG = "--quick"
METRIC_WRITES = 20
CHECKPOINT_EPOCHS, CHECKPOINTS_KEPT = 6, 2
_STORE_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_EXPERIMENT_ID", "MLFLOW_RUN_ID")


@contextlib.contextmanager
def scratch_store() -> Iterator[Path]:
    """A new sqlite store in a temporary folder, current for the block (environment and working folder), then gone."""
    previous = {name: os.environ.get(name) for name in _STORE_VARIABLES}
    previous_folder = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="deep-learning-bench-") as folder:
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
        os.environ.pop("MLFLOW_RUN_ID", None)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(folder) / 'mlflow.db'}"
        os.environ["MLFLOW_EXPERIMENT_NAME"] = EXPERIMENT_NAME
        os.chdir(folder)  # a sqlite store keeps artifacts under ./mlruns of the process that creates it
        try:
            yield Path(folder)
        finally:
            os.chdir(previous_folder)
            for name, value in previous.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def measure_mlflow_costs(repeats: int, quick: bool = False) -> dict[str, Any]:
    """Fixed costs of a run and of logging the model: each the median over `repeats` fresh processes (`quick`: the
    sampler's share over a shorter window)."""
    samples = []
    for _ in range(repeats):
        output = run_command([sys.executable, "-m", __name__, *([QUICK_FLAG] if quick else [])]).stdout.strip().splitlines()
        try:
            samples.append(json.loads(output[-1]))
        except (IndexError, json.JSONDecodeError):
            raise BenchmarkError(f"{__name__} printed no measurements (stdout ended {output[-1:]!r})") from None
    return {key: statistics.median(sample[key] for sample in samples) for key in samples[0]} | {"processes": repeats}


def measure_in_this_process(sampler_window: float = SAMPLER_WINDOW_SECONDS) -> dict[str, float]:
    """In a process that has not touched MLflow: import, the first and later runs' fixed cost, log_trained_model twice,
    the CPU that sending one epoch's metrics takes, and the CPU that the system-metrics sampler of a run uses
    while the process does nothing else."""
    model = build_model()
    description = describe_device(torch.device("cpu"))
    tags = device_tags(description)
    params = {
        **TrainConfig().to_params(),
        "num_train_samples": TRAIN_VAL_SPLIT[0],
        "num_val_samples": TRAIN_VAL_SPLIT[1],
        "num_parameters": count_parameters(model),
    }
    example = ExampleInputs(torch.rand(2, *IMAGE_SHAPE))

    started = time.perf_counter()
    from deep_learning import tracking

    import_seconds = time.perf_counter() - started
    run_seconds = []
    for _ in range(1 + LATER_RUNS):
        started = time.perf_counter()
        with tracking.tracked_run("fixed-cost", params, tags):
            pass
        run_seconds.append(time.perf_counter() - started)
    log_model_seconds = []
    for _ in range(2):
        with tracking.tracked_run("log-model", params, tags) as run, tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            run.log_trained_model(model, example, {tracking.DEVICE_ARTIFACT: description}, Path(folder))
            log_model_seconds.append(time.perf_counter() - started)
    return {
        **_checkpoint_costs(model, example, params, tags),
        "import_tracking_seconds": import_seconds,
        "first_run_seconds": run_seconds[0],
        "later_run_seconds": statistics.median(run_seconds[1:]),
        "log_model_first_seconds": log_model_seconds[0],
        "log_model_second_seconds": log_model_seconds[1],
        "epoch_metrics_cpu_seconds": _epoch_metrics_cpu_seconds(params, tags),
        "system_metrics_core_share": _sampler_core_share(params, tags, sampler_window),
    }


def _epoch_metrics_cpu_seconds(params: dict[str, Any], tags: dict[str, str]) -> float:
    """The CPU that logging one epoch's metrics takes, the sender thread's write included (median over METRIC_WRITES epochs)."""
    from deep_learning import tracking

    seconds = []
    with tracking.tracked_run("epoch-metrics", params, tags) as run:
        for epoch in range(1, METRIC_WRITES + 1):
            cpu_before = _process_cpu_seconds()
            run.log_epoch(_epoch_result(epoch, METRIC_WRITES))
            run.flush(wait_seconds=0)  # the sender thread's write, done
            seconds.append(_process_cpu_seconds() - cpu_before)
    return statistics.median(seconds)


def _sampler_core_share(params: dict[str, Any], tags: dict[str, str], window: float) -> float:
    """The share of a core that a run's system-metrics sampler uses while the process does nothing else."""
    from deep_learning import tracking

    with tracking.tracked_run("system-metrics", params, tags, system_metrics=True):
        time.sleep(SAMPLER_START_SECONDS)
        cpu_before, started = _process_cpu_seconds(), time.perf_counter()
        time.sleep(window)
        return (_process_cpu_seconds() - cpu_before) / (time.perf_counter() - started)


def _checkpoint_costs(model: torch.nn.Module, example: ExampleInputs, params: dict[str, Any], tags: dict[str, str]) -> dict[str, float]:
    """Per epoch, the training thread's time in the checkpointer (write the checkpoint, log it, queue its LoggedModel)
    and the sender's time creating that LoggedModel; at the end, writing the files of the kept checkpoints' LoggedModels."""
    from deep_learning import tracking

    config = TrainConfig(keep_checkpoints=CHECKPOINTS_KEPT)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr)
    training_seconds, sender_seconds = [], []
    with tracking.tracked_run("checkpoints", params, tags) as run, tempfile.TemporaryDirectory() as folder:
        checkpointer = Checkpointer(
            Path(folder),
            keep=config.keep_checkpoints,
            model=model,
            optimizer=optimizer,
            grad_scaler=None,
            config=config,
            device=torch.device("cpu"),
            history=[],
            on_saved=run.log_checkpoint,
        )
        for epoch in range(1, CHECKPOINT_EPOCHS + 1):
            started = time.perf_counter()
            checkpointer.on_epoch_end(_epoch_result(epoch, CHECKPOINT_EPOCHS))
            queued = time.perf_counter()
            run.flush(wait_seconds=0)  # the sender has created the LoggedModel (and deleted a stale one's)
            training_seconds.append(queued - started)
            sender_seconds.append(time.perf_counter() - queued)
        kept = {epoch_of(path): load_checkpoint(path)["model"] for path in checkpoints_in(Path(folder))}
        started = time.perf_counter()
        run.log_checkpoint_models(model, example, kept, None)
        end_seconds = time.perf_counter() - started
    return {
        "checkpoint_epoch_training_seconds": statistics.median(training_seconds[1:]),
        "checkpoint_model_sender_seconds": statistics.median(sender_seconds[1:]),
        "checkpoint_models_end_seconds": end_seconds / len(kept),
    }


def _epoch_result(epoch: int, num_epochs: int) -> EpochResult:
    return EpochResult(
        epoch=epoch,
        num_epochs=num_epochs,
        train_loss=0.3,
        train_metrics={"accuracy": 0.9},
        val_loss=0.3,
        val_metrics={"accuracy": 0.9},
        train_seconds=0.5,
        epoch_seconds=0.6,
        num_train_samples=TRAIN_VAL_SPLIT[0],
    )


def _process_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    print(json.dumps(measure_in_this_process(QUICK_SAMPLER_WINDOW_SECONDS if QUICK_FLAG in sys.argv else SAMPLER_WINDOW_SECONDS)))
