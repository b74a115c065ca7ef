"""Optimizers, schedules, clipping and accumulation: each does what it claims, checked against torch's own."""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn as nn
import torch.optim as optim
import torch.utils.data as utils

from deep_learning.core.config import TrainConfig
from deep_learning.core.data.splits import load_splits
from deep_learning.core.metrics import Accuracy
from deep_learning.core.optimization import Schedule, Stepper, build_optimizer, build_schedule, lr_scheduler
from deep_learning.core.reproducibility import set_seed
from deep_learning.core.training import train

STEPS_PER_EPOCH = 7


def mlp() -> nn.Module:
    set_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10))


def factors(schedule: Schedule) -> list[float]:
    return [schedule.factor(step) for step in range(schedule.total_steps)]


def torch_lrs(make_scheduler, steps: int, lr: float = 1.0) -> list[float]:
    optimizer = optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = make_scheduler(optimizer)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_each_optimizer_is_built_with_its_hyperparameters():
    parameters = list(mlp().parameters())
    sgd = build_optimizer(parameters, TrainConfig(momentum=0.9, weight_decay=1e-4))
    assert type(sgd) is optim.SGD and sgd.defaults["momentum"] == 0.9 and sgd.defaults["weight_decay"] == 1e-4
    adamw = build_optimizer(parameters, TrainConfig(optimizer="adamw", lr=1e-3, adam_beta1=0.8, adam_beta2=0.99, weight_decay=0.01))
    assert type(adamw) is optim.AdamW and adamw.defaults["betas"] == (0.8, 0.99) and adamw.defaults["lr"] == 1e-3
    assert type(build_optimizer(parameters, TrainConfig(optimizer="adam"))) is optim.Adam
    assert type(build_optimizer(parameters, TrainConfig(optimizer="rmsprop", momentum=0.5))) is optim.RMSprop
    chapter = build_optimizer(parameters, TrainConfig())
    assert chapter.defaults == optim.SGD(parameters, lr=0.1).defaults


def test_the_chapter_has_no_schedule_and_each_schedule_follows_torchs():
    assert build_schedule(TrainConfig(), STEPS_PER_EPOCH) is None
    total = 4 * STEPS_PER_EPOCH
    cosine = build_schedule(TrainConfig(epochs=4, lr_schedule="cosine"), STEPS_PER_EPOCH)
    assert factors(cosine) == pytest.approx(torch_lrs(lambda o: optim.lr_scheduler.CosineAnnealingLR(o, T_max=total), total), abs=1e-12)
    step = build_schedule(TrainConfig(epochs=4, lr_schedule="step", lr_step_size=2, lr_gamma=0.5), STEPS_PER_EPOCH)
    per_epoch = [0.5 ** (epoch // 2) for epoch in range(4)]
    assert factors(step) == [per_epoch[index // STEPS_PER_EPOCH] for index in range(total)]
    for warmup, rise in ((0.0, 0.3), (1.0, 0.25)):
        onecycle = build_schedule(TrainConfig(epochs=4, lr_schedule="onecycle", warmup_epochs=warmup), STEPS_PER_EPOCH)
        expected = torch_lrs(
            lambda o: optim.lr_scheduler.OneCycleLR(o, max_lr=1.0, total_steps=total, pct_start=rise, cycle_momentum=False), total
        )
        assert factors(onecycle) == pytest.approx(expected, rel=1e-9)


def test_warmup_rises_linearly_then_hands_over_to_the_schedule():
    schedule = build_schedule(TrainConfig(epochs=3, lr_schedule="cosine", warmup_epochs=1), STEPS_PER_EPOCH)
    assert factors(schedule)[:STEPS_PER_EPOCH] == pytest.approx([(step + 1) / STEPS_PER_EPOCH for step in range(STEPS_PER_EPOCH)])
    after = factors(schedule)[STEPS_PER_EPOCH:]
    remaining = 2 * STEPS_PER_EPOCH
    assert after == pytest.approx([0.5 * (1 + math.cos(math.pi * step / remaining)) for step in range(remaining)])
    constant = build_schedule(TrainConfig(epochs=2, warmup_epochs=0.5), 4)
    assert factors(constant) == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]


def test_a_scheduler_resumed_from_its_state_goes_on_exactly():
    schedule = build_schedule(TrainConfig(epochs=3, lr_schedule="onecycle"), STEPS_PER_EPOCH)
    model = mlp()
    optimizer = build_optimizer(model.parameters(), TrainConfig())
    scheduler = lr_scheduler(optimizer, schedule)
    for _ in range(10):
        optimizer.step()
        scheduler.step()
    saved_optimizer, saved_scheduler = copy.deepcopy(optimizer.state_dict()), copy.deepcopy(scheduler.state_dict())
    expected = []
    for _ in range(5):
        expected.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    fresh = build_optimizer(mlp().parameters(), TrainConfig())
    resumed = lr_scheduler(fresh, schedule)
    fresh.load_state_dict(saved_optimizer)
    resumed.load_state_dict(saved_scheduler)
    got = []
    for _ in range(5):
        got.append(fresh.param_groups[0]["lr"])
        fresh.step()
        resumed.step()
    assert got == expected == [schedule.factor(step) * 0.1 for step in range(10, 15)]


@pytest.fixture(scope="module")
def batches(data_root) -> utils.Dataset:
    return utils.Subset(load_splits(TrainConfig(), data_root).train, range(256))


def one_epoch(batches, batch_size: int, **stepper_options) -> tuple[nn.Module, Stepper]:
    model = mlp()
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    stepper = Stepper(optimizer, **stepper_options)
    loader = utils.DataLoader(batches, batch_size=batch_size)
    train(model, loader, nn.CrossEntropyLoss(), optimizer, Accuracy(), torch.device("cpu"), stepper=stepper)
    return model, stepper


def test_accumulating_four_batches_of_16_steps_as_one_batch_of_64(batches):
    accumulated, stepper = one_epoch(batches, 16, accumulate_batches=4)
    whole, _ = one_epoch(batches, 64)
    assert stepper.global_step == 4
    for (name, mine), theirs in zip(accumulated.state_dict().items(), whole.state_dict().values()):
        torch.testing.assert_close(mine, theirs, rtol=1e-5, atol=1e-6, msg=name)
    different, _ = one_epoch(batches, 16)
    assert not torch.allclose(different.state_dict()["1.weight"], whole.state_dict()["1.weight"], atol=1e-4)


def test_clipping_bounds_the_norm_and_logs_the_norm_before_it(batches):
    _, stepper = one_epoch(batches, 64, grad_clip_norm=0.5)
    model, loader = mlp(), utils.DataLoader(batches, batch_size=64)
    optimizer, norms = optim.SGD(model.parameters(), lr=0.1), []
    for X, y in loader:
        optimizer.zero_grad()
        nn.CrossEntropyLoss()(model(X), y).backward()
        norms.append(nn.utils.clip_grad_norm_(model.parameters(), 0.5).item())
        assert torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()])).item() <= 0.5 + 1e-5
        optimizer.step()
    assert max(norms) > 0.5  # the clip did something
    assert stepper.epoch_stats["grad_norm_mean"] == pytest.approx(sum(norms) / len(norms), rel=1e-6)
    assert stepper.epoch_stats["grad_norm_max"] == pytest.approx(max(norms), rel=1e-6)
    assert stepper.epoch_stats["lr"] == 0.1


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"grad_clip_norm": -1.0}, "grad_clip_norm must be a finite number, 0 or above"),
        ({"lr_schedule": "linear"}, "lr_schedule must be one of constant, step, cosine, onecycle"),
        ({"optimizer": "lion"}, "optimizer must be one of sgd, adamw, adam, rmsprop"),
        (
            {"early_stopping_patience": 2, "monitor": "val_f1", "metrics": "accuracy"},
            "monitor must be one of the epoch metrics val_loss, val_accuracy",
        ),
        ({"monitor": "f1"}, "monitor must be one of the epoch metrics val_loss, val_<metric>"),
        ({"accumulate_batches": 0}, "accumulate_batches must be a positive integer"),
        ({"warmup_epochs": 5.0}, "warmup_epochs (5.0) must be fewer than the epochs (5)"),
        ({"optimizer": "adamw", "momentum": 0.9}, "adamw's momentum is --adam-beta1"),
        ({"adam_beta2": 1.0}, "adam_beta2 must be a number from 0 to below 1"),
        ({"monitor_mode": "up"}, "monitor_mode must be one of auto, min, max"),
    ],
)
def test_bad_settings_are_refused_by_the_config(changes, message):
    from deep_learning.core.errors import ConfigError

    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        dataclasses.replace(TrainConfig(), **changes)
