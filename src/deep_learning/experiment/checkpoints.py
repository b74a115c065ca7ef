"""Checkpoints: everything needed to continue a run exactly, written atomically, read without running pickled code."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from deep_learning.core.callbacks import Callback
from deep_learning.core.checkpoint_files import FORMAT, checkpoint_name, checkpoints_in, library_versions
from deep_learning.core.config import TrainConfig
from deep_learning.core.errors import CheckpointError
from deep_learning.core.reproducibility import restore_rng_state, rng_state
from deep_learning.core.results import EpochResult
from deep_learning.experiment.stopping import Monitor

# Where a run is, not what it computes: these may differ when a run is resumed (both data paths give the same batches).
RESUMABLE_DIFFERENCES = {
    "device",
    "checkpoint_dir",
    "keep_checkpoints",
    "keep_best",
    "register_model",
    "log_every_n_steps",
    "profile",
    "loader",
}


class Checkpointer(Callback):
    """The callback that writes a checkpoint after each epoch and hands it on (to tracking)."""

    def __init__(
        self,
        folder: Path,
        *,
        keep: int,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        grad_scaler: torch.amp.GradScaler | None,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        config: TrainConfig,
        device: torch.device,
        history: list[EpochResult],
        on_saved: Callable[[Path, list[Path]], None],
        world_size: int = 1,
        params: dict[str, Any] | None = None,
        keep_best: int = 0,
        monitor: Monitor | None = None,
    ) -> None:
        self.folder = folder
        self.keep = keep
        self.keep_best = keep_best
        self.monitor = monitor or Monitor.of(config)
        self.model = model
        self.optimizer = optimizer
        self.grad_scaler = grad_scaler
        self.scheduler = scheduler
        self.config = config
        self.device = device
        self.history = list(history)
        self.on_saved = on_saved
        self.world_size = world_size
        self.params = dict(params or {})
        self.last_saved: Path | None = None

    def on_epoch_end(self, result: EpochResult) -> None:
        self.history.append(result)
        checkpoint = {
            "format": FORMAT,
            "versions": library_versions(),
            "config": self.config.to_params(),
            "params": self.params,
            "world_size": self.world_size,
            "epoch": result.epoch,
            "model": {key: value.detach().cpu() for key, value in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "grad_scaler": self.grad_scaler.state_dict() if self.grad_scaler is not None else None,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "history": [dataclasses.asdict(entry) for entry in self.history],
            "rng": rng_state(self.device),
        }
        path = self.folder / checkpoint_name(result.epoch)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(path.name + ".tmp")
            torch.save(checkpoint, temporary)
            os.replace(temporary, path)  # a reader never sees half a checkpoint
        except OSError as error:
            raise CheckpointError(
                f"Cannot write checkpoint {path}: {error.strerror or error}. Free space or set --checkpoint-dir."
            ) from None
        self.last_saved = path
        stale = [old for old in checkpoints_in(self.folder) if old.name not in self.kept_names()]
        for old in stale:
            old.unlink(missing_ok=True)
        self.on_saved(path, stale)

    def kept_names(self) -> set[str]:
        """The checkpoints kept: the latest `keep` epochs', and the `keep_best` best by the monitored metric."""
        latest = [result.epoch for result in self.history[-self.keep :]]
        best = [result.epoch for result in self.monitor.ranked(self.history)[: self.keep_best]] if self.keep_best else []
        return {checkpoint_name(epoch) for epoch in latest + best}


def check_compatible(checkpoint: dict[str, Any], config: TrainConfig, world_size: int = 1, params: dict[str, Any] | None = None) -> None:
    """Refuse to continue from a checkpoint of another library version, config, recipe params or world size, saying what differs."""
    saved_world_size = checkpoint.get("world_size", 1)
    differences = [f"world_size {saved_world_size} in the checkpoint, {world_size} now"] if saved_world_size != world_size else []
    differences += [
        f"{name} {saved!r} in the checkpoint, {current!r} now"
        for name, saved, current in _differences(checkpoint["versions"], library_versions())
    ]
    saved_config = TrainConfig().to_params() | checkpoint["config"]  # a field added since then ran as its default
    differences += [
        f"{name}={saved!r} in the checkpoint, {current!r} now"
        for name, saved, current in _differences(saved_config, config.to_params())
        if name not in RESUMABLE_DIFFERENCES
    ]
    differences += [
        f"{name}={saved!r} in the checkpoint, {current!r} now"
        for name, saved, current in _differences(checkpoint.get("params", {}), dict(params or {}))
    ]
    if differences:
        raise CheckpointError("Cannot resume: " + "; ".join(differences) + ". Resume with the original settings.")


def _differences(saved: dict[str, Any], current: dict[str, Any]):
    for name in sorted(set(saved) | set(current)):
        if saved.get(name) != current.get(name):
            yield name, saved.get(name), current.get(name)


def restore(checkpoint: dict[str, Any], *, model, optimizer, grad_scaler, device: torch.device, scheduler=None) -> list[EpochResult]:
    """Load model, optimizer, scaler, schedule and RNG states from a checkpoint; return the history so far."""
    model.load_state_dict(checkpoint["model"])
    kernels = [group.get("fused") for group in optimizer.param_groups]
    optimizer.load_state_dict(checkpoint["optimizer"])
    for group, fused in zip(optimizer.param_groups, kernels):
        group["fused"] = fused  # which kernel steps is this version's choice (see build_optimizer), not the run's state
    if grad_scaler is not None and checkpoint["grad_scaler"] is not None:
        grad_scaler.load_state_dict(checkpoint["grad_scaler"])
    if scheduler is not None and checkpoint.get("scheduler") is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
    restore_rng_state(checkpoint["rng"], device)
    return [EpochResult(**entry) for entry in checkpoint["history"]]
