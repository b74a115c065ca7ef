"""Scale-out with PyTorch's own engine: the process group torchrun describes, shards, and global numbers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from deep_learning.core.errors import DeviceError

# Long enough for a slow epoch's straggler, short enough that a dead peer never hangs the job.
COLLECTIVE_TIMEOUT = timedelta(seconds=120)
FAILURE_KEY = "deep_learning/failure"


@dataclass(frozen=True)
class Cluster:
    """This process's place in a torchrun job."""

    rank: int
    local_rank: int
    world_size: int
    nnodes: int
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True in a process that torchrun (or another launcher setting its variables) started."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def start(device_name: str) -> tuple[Cluster, torch.device]:
    """Join the job's process group from torchrun's environment; each rank takes its own device (LOCAL_RANK)."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    accelerator = torch.accelerator.current_accelerator(check_available=True)
    if device_name == "auto":
        device_name = accelerator.type if accelerator is not None else "cpu"
    if device_name == "cpu":
        device = torch.device("cpu")
    elif accelerator is not None and device_name == accelerator.type:
        if local_rank >= torch.accelerator.device_count():
            raise DeviceError(
                f"Local rank {local_rank} has no {device_name} device: this node has {torch.accelerator.device_count()}; lower --nproc-per-node."
            )
        device = torch.device(device_name, local_rank)
        torch.accelerator.set_device_index(local_rank)
    else:
        raise DeviceError(f"Under torchrun, --device must be auto, cpu or this machine's accelerator, not {device_name!r}.")
    backend = dist.get_default_backend_for_device(device)
    dist.init_process_group(backend, timeout=COLLECTIVE_TIMEOUT, device_id=device if device.type != "cpu" else None)
    world_size = dist.get_world_size()
    local_world_size = int(os.environ.get("LOCAL_WORLD_SIZE", world_size))
    cluster = Cluster(dist.get_rank(), local_rank, world_size, max(1, world_size // local_world_size), backend)
    return cluster, device


def stop() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def report_failure(cluster: Cluster, message: str) -> None:
    """Leave the failing rank and its reason where rank 0 can read them (torchrun's store)."""
    try:
        dist.distributed_c10d._get_default_store().set(FAILURE_KEY, f"rank {cluster.rank}: {message}")
    except Exception:
        pass  # the store may be gone with the job; torchrun still names the rank


def reported_failure() -> str | None:
    """The failure another rank reported, if any."""
    try:
        store = dist.distributed_c10d._get_default_store()
        if store.check([FAILURE_KEY]):
            return store.get(FAILURE_KEY).decode()
    except Exception:
        pass
    return None


def broadcast(values: list[object]) -> None:
    """Replace `values` on every rank with rank 0's (in place)."""
    dist.broadcast_object_list(values, src=0)


def gather(value: object) -> list[object]:
    """Every rank's `value`, in rank order, on every rank."""
    gathered: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


class ShuffledShards(DistributedSampler):
    """A DistributedSampler seeded from the config that moves to the next epoch by itself at each pass."""

    def __init__(self, dataset, cluster: Cluster, seed: int, first_epoch: int = 1) -> None:
        super().__init__(dataset, num_replicas=cluster.world_size, rank=cluster.rank, shuffle=True, seed=seed)
        self.set_epoch(first_epoch)

    def __iter__(self) -> Iterator[int]:
        indices = super().__iter__()
        self.set_epoch(self.epoch + 1)
        return indices


def evaluation_shard(size: int, cluster: Cluster) -> range:
    """This rank's share of an evaluation split: every world_size-th sample, no padding, so metrics stay exact."""
    return range(cluster.rank, size, cluster.world_size)
