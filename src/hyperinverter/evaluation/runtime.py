"""Seconds per image of a method at fixed batch sizes, warm-up excluded (the paper's runtime column)."""

from __future__ import annotations

from typing import Sequence

import torch

from .base import InversionMethod

#: Batch sizes timed by default.
RUNTIME_BATCH_SIZES = (1, 8)


def _batch_of(images: torch.Tensor, size: int) -> torch.Tensor:
    """The first ``size`` images, repeated cyclically when there are fewer."""
    if images.shape[0] >= size:
        return images[:size]
    reps = -(-size // images.shape[0])
    return images.repeat(reps, 1, 1, 1)[:size]


def measure_runtime(method: InversionMethod, images: torch.Tensor,
                    batch_sizes: Sequence[int] = RUNTIME_BATCH_SIZES, repeats: int = 1) -> dict[int, float]:
    """``{batch size: seconds per image}``.

    For each batch size, the method first runs an untimed warm-up on a batch of that size (kernel
    selection, allocations; optimisation methods take a few steps only), then ``repeats`` timed
    :meth:`~InversionMethod.invert` calls whose device-synchronised wall times are averaged and divided
    by the batch size. Batches larger than ``images`` repeat images.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    out = {}
    progress, method.progress = method.progress, False  # no progress bars inside timed calls
    try:
        for size in batch_sizes:
            if size < 1:
                raise ValueError(f"batch sizes must be >= 1, got {size}")
            batch = _batch_of(images, int(size))
            method.warmup(batch)
            total = sum(method.invert(batch).seconds for _ in range(repeats))
            out[int(size)] = total / repeats / size
    finally:
        method.progress = progress
    return out
