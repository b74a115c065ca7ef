"""A study's seeds trained together: the seeds of one configuration as one batched model (`torch.func.vmap` over
parameters stacked with `stack_module_state`), each seed still its own tracked run with its own checkpoints and models.

Each seed keeps what a separate run of it would have: its initialisation (its model is built after `set_seed`), its
shuffle (its RNG state is put back before its batches are drawn, and before its checkpoint saves the state) and its
optimizer state (elementwise optimizers such as SGD, Adam, AdamW and RMSprop act on each seed's slice alone). What
differs is the arithmetic: batched matrix products sum in another order, so the runs agree to float32 rounding at
first and drift apart slowly as training goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils._pytree import tree_map

from deep_learning.analysis.records import GROUP_TAG, POINT_TAG, VECTORIZED_TAG
from deep_learning.core.batches import to_device
from deep_learning.core.callbacks import Callback
from deep_learning.core.config import TrainConfig
from deep_learning.core.data.loaders import TensorLoader, make_loaders
from deep_learning.core.devices import resolve_device
from deep_learning.core.optimization import Stepper, build_schedule, lr_scheduler
from deep_learning.core.precision import with_amp
from deep_learning.core.progress import TrainingProgress
from deep_learning.core.reproducibility import restore_rng_state, rng_state
from deep_learning.core.results import EpochResult
from deep_learning.core.training import epoch_line, epoch_result, loss_accumulator, read_pass
from deep_learning.experiment.controls import stepper_for
from deep_learning.experiment.recipe import Recipe
from deep_learning.experiment.results import ExperimentResult
from deep_learning.experiment.session import Session, training_session
from deep_learning.studies.ensemble import SeedEnsemble
from deep_learning.studies.grid import Point


def _stack(inputs: Sequence[Any]) -> Any:
    """The seeds' inputs of one batch stacked along a new first dimension (each tensor of a tuple or dict of them)."""
    return tree_map(lambda *tensors: torch.stack(tensors), *inputs)


def train_seeds_together(points: Sequence[Point], recipe: Recipe, *, parent_run_id: str, progress: bool = False) -> list[ExperimentResult]:
    """Train `points` (one configuration's seeds, on one device) as one batched model, each as its own child run of
    `parent_run_id`: its metrics each epoch, its checkpoints, its test scores, model and figures at the end."""
    config = points[0].config
    device = resolve_device(config.device)
    loaders = make_loaders(config, recipe.data, device)
    with contextlib.ExitStack() as stack:
        members, randomness = [], SeedRandomness(device)
        for index, point in enumerate(points):
            member = stack.enter_context(
                training_session(
                    point.config,
                    recipe,
                    device,
                    None,
                    resumed=None,
                    parent_run_id=parent_run_id,
                    run_name=point.label,
                    tags={POINT_TAG: point.label, GROUP_TAG: point.group, VECTORIZED_TAG: str(len(points))},
                    loaders=loaders,
                    system_metrics=index == 0,  # one process, one set of samples: the group's first run holds them
                )
            )
            members.append(member)
            randomness.keep()  # what the seed's own run would draw its first shuffle from
        histories = _epochs(members, randomness, [point.label for point in points], members[0].assembly.recipe, progress)
        return [member.finish(with_amp(member.assembly.model, device, config.amp), history) for member, history in zip(members, histories)]


class SeedRandomness:
    """Each seed's RNG states, put in place wherever its own run would draw: its shuffles, an iterator's seed, its checkpoint."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.states: list[dict[str, Any]] = []

    def keep(self) -> None:
        """Keep the current states as the next seed's."""
        self.states.append(rng_state(self.device))

    @contextlib.contextmanager
    def of(self, index: int) -> Iterator[None]:
        """Draw as seed `index`: its states in place, and kept as they are left."""
        restore_rng_state(self.states[index], self.device)
        yield
        self.states[index] = rng_state(self.device)

    def batches(self, loader: Any) -> Iterator[tuple[Tensor, Tensor]]:
        """Every seed's next batch of its own pass over `loader`, stacked: (seeds, batch, ...) inputs and targets."""
        if (
            isinstance(loader, TensorLoader) and loader.shuffle and loader.sampler is None
        ):  # the seeds' orders side by side: one gather a batch for all of them
            orders = []
            for index in range(len(self.states)):
                with self.of(index):
                    orders.append(loader.draw_order())
            yield from loader.batches(torch.stack(orders))
            return
        passes = []
        for index in range(len(self.states)):
            with self.of(index):  # a pass draws its order when its first batch is asked for
                iterator = iter(loader)
                first = next(iterator, None)
            passes.append(itertools.chain([first] if first is not None else [], iterator))
        for batches in zip(*passes):
            yield _stack([inputs for inputs, _ in batches]), torch.stack([targets for _, targets in batches])

    def shared_batches(self, loader: Any) -> Iterator[tuple[Tensor, Tensor]]:
        """An unshuffled loader's batches, once for all seeds, each seed's RNG advanced as its own pass would advance it."""
        for index in range(1, len(self.states)):
            with self.of(index):
                next(iter(loader), None)
        with self.of(0):
            iterator = iter(loader)
            first = next(iterator, None)
        yield from itertools.chain([first] if first is not None else [], iterator)


@dataclasses.dataclass
class _Together:
    """What trains the seeds as one: the batched model, its optimizer, schedule and stepper, and each seed's metrics."""

    ensemble: SeedEnsemble
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    stepper: Stepper
    train_metrics: list[Any]
    val_metrics: list[Any]


def _together(members: Sequence[Session], recipe: Recipe) -> _Together:
    first = members[0].assembly
    config, device = first.config, first.device
    inputs, targets = next(iter(first.loaders[1]))  # each seed's RNG is put in place where it draws: this draw is no seed's
    models = [with_amp(member.assembly.model, device, config.amp) for member in members]
    probe = to_device((tree_map(lambda tensor: tensor[:8], inputs), targets[:8]), device)
    ensemble = SeedEnsemble(models, probe, recipe.loss_fn)
    optimizer = recipe.build_optimizer(list(ensemble.params.values()))
    scheduler = lr_scheduler(optimizer, build_schedule(config, first.steps_per_epoch))
    metrics = [[recipe.metrics().to(device) for _ in members] for _ in range(2)]
    return _Together(ensemble, optimizer, scheduler, stepper_for(config, optimizer, None, scheduler, 0), *metrics)


def _epochs(
    members: Sequence[Session], randomness: SeedRandomness, labels: Sequence[str], recipe: Recipe, progress: bool
) -> list[list[EpochResult]]:
    """Train and validate every epoch of the seeds together; after each, each seed's result goes to its own run."""
    first = members[0].assembly
    config, device = first.config, first.device
    train_dl, val_dl, _ = first.loaders
    together = _together(members, recipe)
    shown = TrainingProgress(len(train_dl), 1, config.epochs) if progress else None
    callbacks = [shown] if shown else []
    histories: list[list[EpochResult]] = [[] for _ in members]
    with shown or contextlib.nullcontext():
        for epoch in range(1, config.epochs + 1):
            started = time.perf_counter()
            trained_totals = _train_pass(together, randomness.batches(train_dl), len(train_dl), device, callbacks)
            trained = time.perf_counter()
            val_totals = _evaluate(together.ensemble, randomness.shared_batches(val_dl), together.val_metrics, device)
            together.ensemble.write_back(together.optimizer, together.scheduler, members)
            seconds = (trained - started, time.perf_counter() - started)
            for index, member in enumerate(members):
                result = _epoch_result(epoch, config, together, index, trained_totals, val_totals, seconds, len(train_dl.dataset))
                with randomness.of(index):  # the checkpoint keeps the seed's own RNG states
                    for callback in member.callbacks():
                        callback.on_epoch_end(result)
                histories[index].append(result)
                print(f"{labels[index]} | {epoch_line(result)}", flush=True)
    return histories


def _train_pass(
    together: _Together, batches: Iterator[tuple[Tensor, Tensor]], num_batches: int, device: torch.device, callbacks: Sequence[Callback]
) -> tuple[Tensor, int]:
    """One epoch of every seed on its own batches; each seed's summed loss and the number of batches."""
    ensemble, stepper = together.ensemble, together.stepper
    ensemble.train()
    for metric in together.train_metrics:
        metric.reset()
    stepper.start_pass(num_batches, device)
    totals, count = loss_accumulator(device, ensemble.size), 0
    for inputs, targets in batches:
        inputs, targets = to_device(inputs, device), targets.to(device)
        logits = ensemble(inputs)
        losses = ensemble.losses(logits, targets)
        stepper.step(losses.sum(), ensemble.base)  # each seed's parameters get its own loss's gradient
        totals += losses.detach()
        count += 1
        for metric, seed_logits, seed_targets in zip(together.train_metrics, logits.detach(), targets):
            metric.update(seed_logits, seed_targets)
        for callback in callbacks:
            callback.on_batch_end(losses.detach().mean(), targets.shape[1])
    stepper.finish_pass({})
    return totals, count


def _evaluate(
    ensemble: SeedEnsemble, batches: Iterator[tuple[Tensor, Tensor]], metrics: Sequence[Any], device: torch.device
) -> tuple[Tensor, int]:
    """Every seed on the same batches, without gradients; each seed's summed loss and the number of batches."""
    ensemble.train(False)
    for metric in metrics:
        metric.reset()
    totals, count = loss_accumulator(device, ensemble.size), 0
    with torch.inference_mode():
        for inputs, targets in batches:
            inputs, targets = to_device(inputs, device), targets.to(device)
            logits = ensemble(inputs, shared=True)
            totals += ensemble.losses(logits, targets, shared=True)
            count += 1
            for metric, seed_logits in zip(metrics, logits):
                metric.update(seed_logits, targets)
    return totals, count


def _epoch_result(
    epoch: int,
    config: TrainConfig,
    together: _Together,
    index: int,
    trained: tuple[Tensor, int],
    validated: tuple[Tensor, int],
    seconds: tuple[float, float],
    num_train_samples: int,
) -> EpochResult:
    """Seed `index`'s epoch, read from the device (its loss and metrics in one transfer per split); times are the group's."""
    train_loss, train_score, _ = read_pass(trained[0][index], trained[1], together.train_metrics[index])
    val_loss, val_score, _ = read_pass(validated[0][index], validated[1], together.val_metrics[index])
    passes = (train_loss, train_score), (val_loss, val_score)
    return epoch_result(epoch, config.epochs, *passes, seconds, num_train_samples, together.stepper.epoch_stats)
