"""One code path for a single CPU process and ``torchrun`` (one or many GPUs or nodes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

import torch
import torch.distributed as dist

from ..devices import choose_device
from ..utils.distributed import Ranks, torchrun_ranks


@dataclass
class DistEnv(Ranks):
    """This process's place in a training job and its device."""

    device: torch.device = torch.device("cpu")
    # The process group of host-side flags (stop requests): a gloo group beside NCCL, so that agreeing on a
    # flag never waits for the GPU; None = the default group (already gloo in a CPU job).
    cpu_group: Optional[Any] = None


def setup(device: str = "auto") -> DistEnv:
    """Read torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) and start the process group if needed."""
    rank, world, local = torchrun_ranks()
    dev = choose_device(device, local if world > 1 else None)
    cpu_group = None
    if world > 1:
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
        if dist.get_backend() != "gloo":  # every process creates it, in the same order
            cpu_group = dist.new_group(backend="gloo")
    return DistEnv(rank=rank, world_size=world, local_rank=local, device=dev, cpu_group=cpu_group)


def teardown(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


def mean_across(env: DistEnv, values: dict[str, Union[float, torch.Tensor]]) -> dict[str, float]:
    """Average scalar logs over processes -> python floats (gradients are synchronised by DDP, not here).

    ``values`` may be python floats or 0-d tensors on the device (losses accumulated without host syncs):
    they are stacked on the device, summed over processes in one ``all_reduce`` and pulled to the host
    with one ``tolist()``, the only host sync of a log step. Every process must pass the same keys.
    """
    if not values:
        return {}
    keys = sorted(values)
    device = env.device if env.device.type == "cuda" else torch.device("cpu")
    t = torch.stack([torch.as_tensor(values[k], dtype=torch.float64, device=device).detach().reshape([])
                     for k in keys])
    if env.distributed:
        dist.all_reduce(t)
        t /= env.world_size
    means = dict(zip(keys, t.tolist()))
    return {k: means[k] for k in values}  # in the caller's order (log lines read as the trainer wrote them)


def any_across(env: DistEnv, flag: bool) -> bool:
    """True when ``flag`` is true on any process (stop requests; NaN losses are caught by the log means)."""
    if not env.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])  # on the host, over the gloo group: no wait for the GPU
    dist.all_reduce(t, group=env.cpu_group)
    return bool(t.item() > 0)
