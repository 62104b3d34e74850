"""Inference commands over ``torchrun`` processes (``invert``, ``evaluate``): one code path for 1 process and N.

``torchrun`` (and ``srun`` with torchrun's variables) starts one process per GPU or CPU worker and sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. :func:`inference_group`
reads them and starts a gloo process group (only small Python objects travel between processes here: counts,
file lists and metric values, never images, so gloo serves CPU and CUDA runs alike, across nodes too).
Without those variables it returns a one-process group whose collectives are plain returns.

The jobs use :class:`Group` to

* agree on a start (every process checks its inputs and outputs; one process's error stops them all,
  before any file is written): :meth:`Group.agree`;
* split work round-robin in lock-step rounds (:meth:`Group.rounds`), so that process 0 can show the
  progress of all of them after each round (:meth:`Group.sum`);
* collect per-process results (bad files, metrics) in one place: :meth:`Group.all_gather`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator, List, Optional, Sequence, TypeVar

T = TypeVar("T")

#: How long a process waits for the others at a collective (start-up included) before giving up.
TIMEOUT = timedelta(minutes=60)


@dataclass
class Ranks:
    """This process's place among the processes of a job (``world_size`` 1 without torchrun); the base of the
    inference commands' :class:`Group` and the trainers' ``train.distributed.DistEnv``."""

    rank: int = 0  # Global rank (0 .. world_size - 1).
    world_size: int = 1  # Processes of the job, over all nodes.
    local_rank: int = 0  # Rank on this node (picks the GPU).

    @property
    def is_main(self) -> bool:
        """Process 0: the one that prints progress and the summary and writes shared files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


@dataclass
class Group(Ranks):
    """The processes of one inference command, with the collectives the commands use."""

    owns_process_group: bool = False  # Whether close() destroys the torch process group.

    # ------------------------------------------------------------------------------------------ device
    def device(self, name: str):
        """The device for ``--device NAME``: under torchrun, ``auto``/``cuda`` mean this node's GPU
        ``LOCAL_RANK`` (one process per GPU); anything explicit is used as given."""
        from ..devices import choose_device

        return choose_device(name, self.local_rank if self.distributed else None)

    # ------------------------------------------------------------------------------------- collectives
    def all_gather(self, obj: T) -> List[T]:
        """Every process's ``obj`` (picklable), in rank order, on every process."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        out: List[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def gather(self, obj: T) -> Optional[List[T]]:
        """Every process's ``obj`` in rank order on process 0 (None on the others)."""
        if not self.distributed:
            return [obj]
        import torch.distributed as dist

        out: Optional[List[Any]] = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def sum(self, value: int) -> int:
        """The sum of an integer over the processes (a collective: every process must call it)."""
        return int(sum(self.all_gather(int(value)))) if self.distributed else int(value)

    def agree(self, error: Optional[BaseException]) -> None:
        """Collective check-point: raise when any process had an error.

        Each process passes the exception it got while checking its start (or None). Process 0 raises its
        own error, or else a :class:`~hyperinverter.errors.HyperInverterError` with the first failing
        process's message; the others leave quietly with exit status 2 (``SystemExit``), so that the message
        is printed once. Also a barrier: no process gets past it before every process has arrived.
        """
        from ..errors import HyperInverterError

        if not self.distributed:
            if error is not None:
                raise error
            return
        messages = self.all_gather(None if error is None else _one_line(error))
        failed = [(r, m) for r, m in enumerate(messages) if m is not None]
        if not failed:
            return
        if not self.is_main:
            raise SystemExit(2)
        if error is not None:
            raise error
        first_rank, message = failed[0]
        raise HyperInverterError(f"process {first_rank} of {self.world_size}: {message}")

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    # ---------------------------------------------------------------------------------------- sharding
    def rounds(self, items: Sequence[T]) -> Iterator[Optional[T]]:
        """Round-robin shares of ``items`` in lock-step: round ``k`` gives process ``r`` item
        ``k * world_size + r``, or None where the items ran out (so every process runs the same number of
        rounds and can meet at a collective after each)."""
        count = -(-len(items) // self.world_size) if items else 0
        for k in range(count):
            i = k * self.world_size + self.rank
            yield items[i] if i < len(items) else None

    def close(self) -> None:
        """Destroy the process group this object started (a group started by the caller is left alone)."""
        if self.owns_process_group:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self.owns_process_group = False


def torchrun_ranks() -> tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment (``(0, 1, 0)`` without torchrun), checked:
    the one reader of ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` for inference and training."""
    world = _env_int("WORLD_SIZE", 1)
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"torchrun environment: RANK={rank} does not fit WORLD_SIZE={world}")
    return rank, world, local


def inference_group() -> Group:
    """The :class:`Group` of this process: torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, with a gloo
    process group started when ``WORLD_SIZE`` > 1 (or an already started one reused)."""
    rank, world, local = torchrun_ranks()
    if world == 1:
        return Group()
    import torch.distributed as dist

    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="gloo", timeout=TIMEOUT)
        owns = True
    return Group(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local, owns_process_group=owns)


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name}={text[:40]!r} is not an integer") from None


def _one_line(error: BaseException, limit: int = 2000) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return text[:limit]


__all__ = ["Group", "TIMEOUT", "inference_group"]
