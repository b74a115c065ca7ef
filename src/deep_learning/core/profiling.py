"""A torch.profiler trace of a few training steps, for TensorBoard's profiler plugin or Perfetto, and its key-averages table.

`StepProfiler` is a callback of `train`: each batch's end ends one step of the profiler's schedule
(wait, warmup, then active steps), and once the active steps are recorded it stops, so the rest of
the pass runs unprofiled. It never reads the loss, so it adds no host syncs of its own.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from types import TracebackType

import torch
from torch import Tensor
from torch.profiler import ProfilerActivity, profile, schedule

from deep_learning.core.callbacks import Callback

# TensorBoard's profiler plugin reads `<worker>[.<timestamp>].pt.trace.json`; a fixed name makes a stable artifact.
TRACE_FILE = "train.pt.trace.json"
TABLE_FILE = "key_averages.txt"
TABLE_ROWS = 30
# Devices whose kernels torch.profiler traces; on others (MPS, say) only the host side is recorded.
DEVICE_ACTIVITIES = {"cuda": ProfilerActivity.CUDA, "xpu": ProfilerActivity.XPU}


class StepProfiler(Callback):
    """Records steps `wait + warmup + 1` .. `wait + warmup + active` of a pass with shapes and memory, then writes them to `folder`.

    Profiling starts when it is made. Given the pass's `num_batches`, it stops after the pass's last
    batch too, so a pass shorter than the schedule is all that gets profiled; `close` (or leaving its
    `with` block) ends it at any time. Either way it writes the active steps recorded, or nothing if none were.
    """

    def __init__(
        self, folder: Path, device: torch.device, *, wait: int = 1, warmup: int = 1, active: int = 3, num_batches: int | None = None
    ) -> None:
        self.folder = Path(folder)
        self.num_steps = wait + warmup + active if num_batches is None else min(wait + warmup + active, num_batches)
        self.steps_done = 0
        activities = [ProfilerActivity.CPU]
        device_activity = DEVICE_ACTIVITIES.get(torch.device(device).type)
        if device_activity is not None:
            activities.append(device_activity)
        self._sort_by = "self_device_time_total" if device_activity is not None else "self_cpu_time_total"
        self._written: list[Path] = []
        self._profiler = profile(
            activities=activities,
            schedule=schedule(wait=wait, warmup=warmup, active=active, repeat=1),
            on_trace_ready=self._write,
            record_shapes=True,
            profile_memory=True,
            with_stack=False,
        )
        self._running = ExitStack()
        self._running.enter_context(self._profiler)
        self.stopped = False

    def on_batch_end(self, loss: Tensor, num_samples: int) -> None:
        """End one training step; after the last step to profile, stop profiling and ignore further calls."""
        if self.stopped:
            return
        self.steps_done += 1
        if self.steps_done < self.num_steps:
            self._profiler.step()
        else:
            self.close()  # stopping in the last step saves it as stepping past it would, without opening another

    def close(self) -> None:
        """Stop profiling now (a no-op once stopped), writing the active steps recorded so far."""
        self.stopped = True
        self._running.close()

    def files(self) -> list[Path]:
        """The files written so far: the trace and the table, or nothing if no active step was recorded."""
        return list(self._written)

    def __enter__(self) -> StepProfiler:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None) -> None:
        self.close()

    def _write(self, prof: profile) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        trace = self.folder / TRACE_FILE
        prof.export_chrome_trace(str(trace))
        table = self.folder / TABLE_FILE
        table.write_text(prof.key_averages().table(sort_by=self._sort_by, row_limit=TABLE_ROWS) + "\n")
        self._written = [trace, table]
