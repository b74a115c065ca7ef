"""Profiling: a real training pass under StepProfiler writes a trace TensorBoard and Perfetto open, and a key-averages table."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn as nn
import torch.utils.data as utils

from deep_learning.core.metrics import Accuracy
from deep_learning.core.profiling import TABLE_FILE, TRACE_FILE, StepProfiler
from deep_learning.core.training import train

CPU = torch.device("cpu")
BATCH_SIZE = 16


def _train_one_epoch(num_batches: int, profiler: StepProfiler) -> None:
    generator = torch.Generator().manual_seed(0)
    num_samples = num_batches * BATCH_SIZE
    dataset = utils.TensorDataset(
        torch.rand(num_samples, 1, 28, 28, generator=generator), torch.randint(0, 10, (num_samples,), generator=generator)
    )
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    dataloader = utils.DataLoader(dataset, batch_size=BATCH_SIZE)
    train(model, dataloader, nn.CrossEntropyLoss(), optimizer, Accuracy(), CPU, callbacks=[profiler])


def _events(trace: Path) -> list[dict]:
    return json.loads(trace.read_text())["traceEvents"]


def _step_names(events: list[dict]) -> list[str]:
    return sorted(event["name"] for event in events if event.get("name", "").startswith("ProfilerStep#"))


def test_a_pass_records_the_active_steps_with_shapes_and_memory_and_a_table(tmp_path):
    with StepProfiler(tmp_path / "profile", CPU, wait=1, warmup=1, active=3) as profiler:
        _train_one_epoch(20, profiler)
        assert profiler.stopped  # stopped by itself, well before the pass ended

    trace, table = tmp_path / "profile" / TRACE_FILE, tmp_path / "profile" / TABLE_FILE
    assert profiler.files() == [trace, table]
    assert sorted(path.name for path in (tmp_path / "profile").iterdir()) == sorted([TRACE_FILE, TABLE_FILE])
    events = _events(trace)
    names = {event.get("name") for event in events}
    assert "aten::addmm" in names and "aten::mm" in names
    assert any(event.get("name") == "[memory]" and event["args"]["Bytes"] != 0 for event in events)
    # addmm(bias, input, weight, beta, alpha): the scalars come last, with no dims
    addmm_shapes = [event["args"]["Input Dims"][:3] for event in events if event.get("name") == "aten::addmm"]
    assert [[128], [BATCH_SIZE, 784], [784, 128]] in addmm_shapes
    assert _step_names(events) == ["ProfilerStep#2", "ProfilerStep#3", "ProfilerStep#4"]
    text = table.read_text()
    assert "Self CPU" in text and "aten::addmm" in text


def test_it_stops_after_wait_plus_warmup_plus_active_steps_and_ignores_later_calls(tmp_path):
    profiler = StepProfiler(tmp_path, CPU, wait=2, warmup=1, active=2)
    loss = torch.zeros(())
    for _ in range(4):
        profiler.on_batch_end(loss, BATCH_SIZE)
    assert not profiler.stopped and profiler.files() == []
    profiler.on_batch_end(loss, BATCH_SIZE)
    assert profiler.stopped and [path.name for path in profiler.files()] == [TRACE_FILE, TABLE_FILE]
    written = (tmp_path / TRACE_FILE).read_text()
    profiler.on_batch_end(loss, BATCH_SIZE)
    profiler.close()
    assert (tmp_path / TRACE_FILE).read_text() == written


def test_a_pass_that_ends_during_the_active_steps_writes_what_was_recorded(tmp_path):
    with StepProfiler(tmp_path, CPU, wait=1, warmup=1, active=3) as profiler:
        _train_one_epoch(3, profiler)
        assert not profiler.stopped
    assert profiler.stopped and len(profiler.files()) == 2
    events = _events(tmp_path / TRACE_FILE)
    assert "ProfilerStep#2" in _step_names(events)
    assert "aten::addmm" in {event.get("name") for event in events}


def test_given_the_pass_length_it_stops_after_the_last_batch_by_itself(tmp_path):
    profiler = StepProfiler(tmp_path, CPU, wait=1, warmup=1, active=3, num_batches=3)
    _train_one_epoch(3, profiler)
    assert profiler.stopped and len(profiler.files()) == 2
    assert _step_names(_events(tmp_path / TRACE_FILE)) == ["ProfilerStep#2"]


def test_a_pass_that_ends_before_any_active_step_writes_nothing(tmp_path):
    folder = tmp_path / "profile"
    with StepProfiler(folder, CPU, wait=1, warmup=1, active=3) as profiler:
        _train_one_epoch(1, profiler)
    assert profiler.files() == []
    assert not folder.exists()
