"""An infinite, resumable, distributed batch sampler whose state the trainer owns.

:class:`ResumableSampler` yields batches of dataset indices epoch after epoch, forever. Epoch ``e`` uses
the permutation ``torch.randperm(n, generator=torch.Generator().manual_seed(seed + e))`` (``arange(n)``
without shuffling). Global batches of ``batch_size * world_size`` indices are taken consecutively from it,
and rank ``r`` gets the slice ``[r * batch_size : (r + 1) * batch_size]`` of each global batch, so a run
on 2 processes sees exactly the global batches of a 1-process run with twice the batch size.

**Who advances the state.** Iterating does *not* change the sampler: a DataLoader with workers pulls
batches from the sampler ahead of the training loop (``prefetch_factor * num_workers`` of them), so a
count kept by the iterator would be ahead of what was trained on. The trainer owns the position: it
calls :meth:`ResumableSampler.advance` once per batch it has consumed (trained on), and saves
:meth:`ResumableSampler.state_dict` in its checkpoints. Every new iterator (``iter(sampler)``, hence every
``iter(loader)``) starts from the sampler's state *at the moment it is created* (a snapshot; later
``advance``/``set_batch_size`` calls do not affect it).

Trainer recipe (every rank does the same)::

    sampler = ResumableSampler(len(dataset), batch_size, seed=seed, rank=rank, world_size=world_size,
                               yield_epoch=True)           # indices come as (index, epoch) for the flips
    if resuming:
        sampler.load_state_dict(ckpt["sampler"])            # before creating the loader iterator
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=4)
    batches = iter(loader)
    while step < total_steps:
        if schedule_batch_size(step) != sampler.batch_size:   # batch size schedule
            sampler.set_batch_size(schedule_batch_size(step))
            batches = iter(loader)                          # drop batches prefetched with the old size
        images = next(batches)
        train_step(images)
        sampler.advance()                                   # this batch is consumed
        step += 1
        if step % save_every == 0:
            ckpt["sampler"] = sampler.state_dict()          # {"epoch", "position", "seed", "batch_size", ...}

``sampler.set_position(epoch, position)`` before ``iter(loader)`` is the short form of resuming when
only ``(epoch, position)`` were saved and the batch size never changed mid-epoch; ``load_state_dict``
is exact in every case. :meth:`ResumableSampler.batches_from` is the same generator as ``iter(sampler)``
for an explicit starting point.

**Epochs and flips.** The sampler never touches the dataset. For per-epoch random augmentations such as
:class:`~hyperinverter.data.ImageFolderDataset`'s flips, either pass ``yield_epoch=True`` (indices become
``(index, epoch)`` pairs that the dataset understands; works with persistent and prefetching workers) or
call ``dataset.set_epoch(sampler.epoch)`` and re-create the loader iterator at each epoch boundary
(workers copy the dataset when an iterator starts).

**Batch size changes.** ``set_batch_size(b)`` keeps the stream of indices exact: the samples consumed in
the current epoch so far are recorded in ``offset``, and ``position`` then counts batches of the new size
from there (``position`` counts global batches since ``offset``, which is 0 unless the batch size changed
mid-epoch). Both are in the state. Resuming with a different ``world_size`` continues the same index
stream from the same sample (the per-rank batch size is the saved one; the global one changes).
"""

from __future__ import annotations

import operator
from typing import Dict, Iterator, List, Optional

import torch

_STATE_VERSION = 1


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an int, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an int, got {value!r}") from None
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {v}")
    return v


class ResumableSampler:
    """Infinite batch sampler for ``DataLoader(batch_sampler=...)`` with an exact, resumable state.

    Args:
        dataset_len: number of samples ``n``.
        batch_size: per-rank batch size (the global batch is ``batch_size * world_size``).
        seed: epoch ``e`` is shuffled with ``torch.Generator().manual_seed(seed + e)``.
        shuffle: False iterates ``0..n-1`` in order every epoch.
        rank, world_size: this process and the number of processes.
        drop_last: True (default) drops the last incomplete global batch of each epoch; False yields it
            (smaller), only allowed with ``world_size == 1`` (ranks could not get equal batches).
        yield_epoch: yield ``(index, epoch)`` pairs instead of indices (for datasets whose augmentation
            depends on the epoch, such as ``ImageFolderDataset``).

    State: ``epoch``, ``position`` (global batches consumed since ``offset`` in this epoch), ``offset``
    (samples of this epoch consumed before the last batch size change, normally 0) and ``batch_size``.
    """

    def __init__(
        self,
        dataset_len: int,
        batch_size: int,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = True,
        *,
        yield_epoch: bool = False,
    ):
        self.dataset_len = _check_int(dataset_len, "dataset_len", 1)
        self.world_size = _check_int(world_size, "world_size", 1)
        self.rank = _check_int(rank, "rank", 0)
        if self.rank >= self.world_size:
            raise ValueError(f"rank must be < world_size={self.world_size}, got {self.rank}")
        if isinstance(seed, bool):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.seed = operator.index(seed)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        if not self.drop_last and self.world_size > 1:
            raise ValueError(
                "drop_last=False needs world_size == 1: the last, incomplete global batch of an epoch cannot be "
                "split into equal batches for all ranks"
            )
        self.yield_epoch = bool(yield_epoch)
        self.batch_size = self._checked_batch_size(batch_size)
        self.epoch = 0
        self.position = 0
        self.offset = 0

    # ------------------------------------------------------------------ helpers
    def _checked_batch_size(self, batch_size) -> int:
        b = _check_int(batch_size, "batch_size", 1)
        if self.drop_last and b * self.world_size > self.dataset_len:
            raise ValueError(
                f"the global batch ({b} x {self.world_size} processes = {b * self.world_size}) is larger than the "
                f"dataset ({self.dataset_len} samples): with drop_last=True no batch would ever be produced"
            )
        return b

    @property
    def global_batch_size(self) -> int:
        return self.batch_size * self.world_size

    def _num_batches(self, offset: int, global_bs: int) -> int:
        """Global batches in an epoch from sample ``offset`` on."""
        rest = self.dataset_len - offset
        return rest // global_bs if self.drop_last else -(-rest // global_bs)

    @property
    def batches_per_epoch(self) -> int:
        """Global batches in a whole epoch at the current batch size."""
        return self._num_batches(0, self.global_batch_size)

    @property
    def samples_consumed(self) -> int:
        """Samples of the current epoch consumed so far (all ranks together)."""
        return min(self.dataset_len, self.offset + self.position * self.global_batch_size)

    def _normalize(self) -> None:
        """Roll ``position`` over into following epochs once it reaches the end of the epoch."""
        while True:
            nb = self._num_batches(self.offset, self.global_batch_size)
            if self.position < nb:
                return
            self.position -= nb
            self.epoch += 1
            self.offset = 0

    def permutation(self, epoch: int) -> torch.Tensor:
        """The order of the ``dataset_len`` indices in ``epoch`` (int64 tensor)."""
        if not self.shuffle:
            return torch.arange(self.dataset_len)
        g = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.dataset_len, generator=g)

    # ------------------------------------------------------------------ state
    def advance(self, num_batches: int = 1) -> None:
        """Record that the trainer consumed ``num_batches`` more (global) batches; rolls epochs over."""
        self.position += _check_int(num_batches, "num_batches", 0)
        self._normalize()

    def set_position(self, epoch: int, position: int = 0) -> None:
        """Continue at global batch ``position`` of ``epoch`` (at the current batch size, ``offset`` 0).

        Call before creating the DataLoader iterator. Raises ValueError if ``position`` is not inside
        the epoch.
        """
        epoch = _check_int(epoch, "epoch", 0)
        position = _check_int(position, "position", 0)
        if position >= self.batches_per_epoch:
            raise ValueError(
                f"position {position} is past the end of an epoch of {self.batches_per_epoch} batches "
                f"(global batch {self.global_batch_size}, {self.dataset_len} samples)"
            )
        self.epoch, self.position, self.offset = epoch, position, 0

    def set_batch_size(self, batch_size: int) -> None:
        """Switch to a new per-rank batch size from the current state on, keeping the index stream exact.

        Iterators created before keep their old batch size: re-create the DataLoader iterator after this.
        """
        b = self._checked_batch_size(batch_size)
        if b == self.batch_size:
            return
        self.offset = self.samples_consumed
        self.position = 0
        self.batch_size = b
        self._normalize()

    def state_dict(self) -> Dict[str, object]:
        """``{"epoch", "position", "seed", "batch_size", "offset", "world_size", "dataset_len", "shuffle",
        "drop_last", "version"}``: plain ints and bools (safe for ``torch.save`` / JSON)."""
        return {
            "epoch": self.epoch,
            "position": self.position,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "offset": self.offset,
            "world_size": self.world_size,
            "dataset_len": self.dataset_len,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
            "version": _STATE_VERSION,
        }

    def load_state_dict(self, state: Dict[str, object]) -> None:
        """Restore a :meth:`state_dict` (call before creating the DataLoader iterator).

        Only ``epoch``, ``position`` and ``seed`` are required; ``batch_size`` (default: the current
        one), ``offset`` (default 0) and ``world_size`` (default: the current one) are used when present.
        A different ``world_size`` continues from the same sample of the same epoch.

        Raises:
            ValueError: the seed, ``dataset_len``, ``shuffle`` or ``drop_last`` differ (the index stream
                would not be the same), or the state is malformed.
        """
        missing = [k for k in ("epoch", "position", "seed") if k not in state]
        if missing:
            raise ValueError(f"sampler state lacks {missing}; got keys {sorted(state)}")
        if state["seed"] != self.seed:
            raise ValueError(
                f"sampler state has seed {state['seed']}, this sampler has seed {self.seed}: resuming would "
                "produce a different order of samples"
            )
        for key in ("dataset_len", "shuffle", "drop_last"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(
                    f"sampler state has {key}={state[key]!r}, this sampler has {key}={getattr(self, key)!r}: "
                    "resuming would produce a different order of samples"
                )
        epoch = _check_int(state["epoch"], "epoch", 0)
        position = _check_int(state["position"], "position", 0)
        batch_size = _check_int(state.get("batch_size", self.batch_size), "batch_size", 1)
        offset = _check_int(state.get("offset", 0), "offset", 0)
        world_size = _check_int(state.get("world_size", self.world_size), "world_size", 1)
        consumed = offset + position * batch_size * world_size
        if consumed >= self.dataset_len:
            raise ValueError(f"sampler state is past the end of its epoch ({consumed} of {self.dataset_len} samples)")
        new_batch_size = self._checked_batch_size(batch_size)
        if world_size == self.world_size:
            self.epoch, self.position, self.offset = epoch, position, offset
        else:
            self.epoch, self.position, self.offset = epoch, 0, consumed
        self.batch_size = new_batch_size
        self._normalize()

    # ------------------------------------------------------------------ iteration
    def __iter__(self) -> Iterator[List]:
        """This rank's batches from the current state on, forever (a snapshot of the state)."""
        return self._batches(self.epoch, self.offset, self.position, self.batch_size)

    def batches_from(self, epoch: Optional[int] = None, position: Optional[int] = None) -> Iterator[List]:
        """This rank's batches from ``(epoch, position)`` on, forever, without changing the sampler.

        With no arguments this is ``iter(self)`` (the current state, ``offset`` included). Given either
        argument, the start is global batch ``position`` (default 0) of ``epoch`` (default: the current
        one) at the current batch size, from the start of the epoch (``offset`` 0).
        """
        if epoch is None and position is None:
            return iter(self)
        epoch = self.epoch if epoch is None else _check_int(epoch, "epoch", 0)
        position = 0 if position is None else _check_int(position, "position", 0)
        if position >= self.batches_per_epoch:
            raise ValueError(f"position {position} is past the end of an epoch of {self.batches_per_epoch} batches")
        return self._batches(epoch, 0, position, self.batch_size)

    def _batches(self, epoch: int, offset: int, position: int, batch_size: int) -> Iterator[List]:
        global_bs = batch_size * self.world_size
        lo, hi = self.rank * batch_size, (self.rank + 1) * batch_size
        while True:
            perm = self.permutation(epoch)
            for b in range(position, self._num_batches(offset, global_bs)):
                start = offset + b * global_bs
                mine = perm[start:start + global_bs][lo:hi].tolist()
                yield [(i, epoch) for i in mine] if self.yield_epoch else mine
            epoch, offset, position = epoch + 1, 0, 0

    def __repr__(self) -> str:
        return (
            f"ResumableSampler(n={self.dataset_len}, batch_size={self.batch_size}, rank={self.rank}/"
            f"{self.world_size}, seed={self.seed}, epoch={self.epoch}, position={self.position}, "
            f"offset={self.offset})"
        )
