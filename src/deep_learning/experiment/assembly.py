"""What a run trains, built once from its config and recipe: data loaders, model, optimizer, schedule, precision, on its device."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from deep_learning.core import distributed
from deep_learning.core.batches import batches_per_pass, to_device
from deep_learning.core.config import TrainConfig
from deep_learning.core.data.examples import example_batch
from deep_learning.core.data.loaders import loader_kind, make_loaders
from deep_learning.core.data.samples import split_size
from deep_learning.core.devices import describe_device
from deep_learning.core.distributed import Cluster
from deep_learning.core.errors import ConfigError
from deep_learning.core.model import count_parameters
from deep_learning.core.optimization import build_schedule, lr_scheduler, optimizer_steps
from deep_learning.core.precision import grad_scaler, with_options
from deep_learning.core.reproducibility import set_seed
from deep_learning.core.results import EpochResult
from deep_learning.experiment.checkpoints import check_compatible, restore
from deep_learning.experiment.recipe import Recipe, settle


@dataclass
class Assembly:
    """What a run trains: the recipe's objects, placed on the device, with the history a resumed run brings."""

    config: TrainConfig
    recipe: Recipe
    device: torch.device
    cluster: Cluster | None
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    steps_per_epoch: int
    loaders: tuple[Any, Any, Any]
    history: list[EpochResult]
    description: dict[str, Any]
    extra_params: dict[str, str]

    @property
    def is_main(self) -> bool:
        return self.cluster is None or self.cluster.is_main

    @property
    def world_size(self) -> int:
        return self.cluster.world_size if self.cluster else 1


def assemble(
    config: TrainConfig,
    recipe: Recipe,
    device: torch.device,
    cluster: Cluster | None,
    checkpoint: dict[str, Any] | None,
    loaders: tuple[Any, Any, Any] | None = None,
) -> Assembly:
    """Build the recipe's loaders (unless given), seeded model, optimizer and scaler on `device`, settle the task on a batch
    of the data; restore them from `checkpoint` when resuming."""
    first_epoch = checkpoint["epoch"] + 1 if checkpoint else 1
    kind, reason = loader_kind(config, recipe.data, device)
    if reason is not None and loaders is None:
        print(f"Batches come from a DataLoader: {reason}.", flush=True)
    config = dataclasses.replace(config, loader=kind)
    loaders = loaders or make_loaders(config, recipe.data, device, cluster, first_epoch=first_epoch)
    set_seed(config.seed, deterministic=config.deterministic)
    model = recipe.build_model().to(device)
    config, recipe = settle(config, recipe, model, to_device(example_batch(recipe.data), device))
    optimizer = recipe.build_optimizer(model.parameters())
    scaler = grad_scaler(device, config.amp)
    steps_per_epoch = optimizer_steps(epoch_length(loaders[0], config), config.accumulate_batches)
    scheduler = lr_scheduler(optimizer, build_schedule(config, steps_per_epoch))
    extra_params = recipe.extra_params(model, optimizer, recipe.data.spec)
    history = []
    if checkpoint is not None:
        check_compatible(checkpoint, config, cluster.world_size if cluster else 1, extra_params)
        history = restore(checkpoint, model=model, optimizer=optimizer, grad_scaler=scaler, scheduler=scheduler, device=device)
    description = describe_device(device)
    if cluster:
        description["ranks"] = distributed.gather(description | {"rank": cluster.rank})
    return Assembly(
        config, recipe, device, cluster, model, optimizer, scaler, scheduler, steps_per_epoch, loaders, history, description, extra_params
    )


def epoch_length(train_dl: Any, config: TrainConfig) -> int:
    """The batches of a training epoch: the loader's, or a stream's `steps_per_epoch`; a schedule needs a stream to have them."""
    length = batches_per_pass(train_dl)
    if not length and (config.lr_schedule != "constant" or config.warmup_epochs):
        raise ConfigError(
            f"--lr-schedule {config.lr_schedule} (and warm-up) needs epochs of known length: give steps_per_epoch for a stream."
        )
    return length


def run_params(assembly: Assembly) -> dict[str, Any]:
    """What a run logs as params: the config, the recipe's own, the data sizes and the job's shape."""
    config, recipe, cluster = assembly.config, assembly.recipe, assembly.cluster
    return {
        **config.to_params(),
        **assembly.extra_params,
        "num_train_samples": split_size(recipe.data.train),
        "num_val_samples": split_size(recipe.data.val),
        "num_parameters": count_parameters(assembly.model),
        "world_size": assembly.world_size,
        "backend": cluster.backend if cluster else "none",
        "nnodes": cluster.nnodes if cluster else 1,
        "global_batch_size": config.batch_size * assembly.world_size,
    }


def for_the_loop(assembly: Assembly) -> torch.nn.Module:
    """The model as the loop calls it: wrapped for DDP under torchrun, then under autocast and compiled as the config asks."""
    model, device, config = assembly.model, assembly.device, assembly.config
    if assembly.cluster:
        model = DistributedDataParallel(model, device_ids=[device.index] if device.type != "cpu" else None)
    return with_options(model, device, config.amp, config.compile, config.compile_mode)
