"""One config trained on every device of this machine: a parent run, one child run per device, and their comparison."""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

from deep_learning import tracking
from deep_learning.comparison import Comparison, compare_runs, histories_to_read, plot_curves, render, write_table
from deep_learning.config import ALL_DEVICES, TrainConfig
from deep_learning.devices import available_devices
from deep_learning.experiment import ExperimentResult, run_experiment
from deep_learning.recipe import short_name
from deep_learning.records import DEVICE_SWEEP, KIND_TAG, SWEPT_DEVICES_TAG


@dataclass(frozen=True)
class SweepResult:
    """The parent run, the devices it trained on, the training run on each, and how they compare."""

    run_id: str
    devices: list[str]
    runs: list[ExperimentResult]
    comparison: Comparison
    where_to_look: str

    def summary(self) -> str:
        """The line that ends a sweep's output: where to browse it."""
        return (
            f"Device sweep {self.run_id} finished: one run per device ({', '.join(self.devices)}), "
            f"compared in its artifacts; to browse it: {self.where_to_look}"
        )


def run_on_every_device(config: TrainConfig, data_root: str | Path | None = None, *, progress: bool = False) -> SweepResult:
    """Train `config` on each available device in turn, as child runs of a run tagged deep_learning.kind=device-sweep,
    print their comparison and log it to that parent run (comparison.md, comparison.csv, comparison.png)."""
    devices = available_devices()
    tags = {KIND_TAG: DEVICE_SWEEP, SWEPT_DEVICES_TAG: ",".join(devices)}
    params = dataclasses.replace(config, device=ALL_DEVICES).to_params()
    with tracking.tracked_run(f"{short_name(config.model)}-{short_name(config.dataset)}-all-devices", params, tags) as parent:
        runs = [
            run_experiment(dataclasses.replace(config, device=device), data_root, parent_run_id=parent.run_id, progress=progress)
            for device in devices
        ]
        comparison = compare_runs([tracking.get_run(run.run_id, histories=histories_to_read) for run in runs])
        print(render(comparison, "table"), end="", flush=True)
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            parent.log_files([
                write_table(comparison, "markdown", folder),
                write_table(comparison, "csv", folder),
                plot_curves(comparison.runs, folder / "comparison.png"),
            ])
    return SweepResult(parent.run_id, devices, runs, comparison, parent.where_to_look())
