"""A user's DataLoader as a run uses it: its settings kept, the run's sampler, and worker processes seeded from the run."""

from __future__ import annotations

from typing import Any

import torch
import torch.utils.data as utils

# What fit keeps of a user's DataLoader; it replaces the sampler (and batch_sampler) and the generator of worker seeds.
KEPT_SETTINGS = (
    "collate_fn",
    "num_workers",
    "pin_memory",
    "drop_last",
    "timeout",
    "worker_init_fn",
    "multiprocessing_context",
    "prefetch_factor",
    "persistent_workers",
    "in_order",
)


def kept_settings(loader: utils.DataLoader) -> dict[str, Any]:
    """The settings of a user's DataLoader that fit keeps (prefetch_factor only where there are workers, as torch asks)."""
    settings = {name: getattr(loader, name) for name in KEPT_SETTINGS if hasattr(loader, name)}
    if not settings.get("num_workers"):
        settings.pop("prefetch_factor", None)
    return settings


class SeededDataLoader(utils.DataLoader):
    """A user's DataLoader with the run's sampler, whose worker processes are seeded from the run's seed and the epoch.

    Its own generator gives the workers' base seed, so the global RNG (the shuffle's, the model's) is drawn the same
    whatever `num_workers` and `persistent_workers` are; without persistent workers, each epoch's worker seeds are
    those of (seed, epoch), so a resumed run's workers draw what the uninterrupted run's drew.
    """

    def __init__(self, dataset: Any, *, seed: int, first_epoch: int, **settings: Any) -> None:
        super().__init__(dataset, generator=torch.Generator(), **settings)
        self.run_seed, self.epoch = seed, first_epoch

    def __iter__(self):
        self.generator.manual_seed(self.run_seed * 1_000_003 + self.epoch)
        self.epoch += 1
        return super().__iter__()
