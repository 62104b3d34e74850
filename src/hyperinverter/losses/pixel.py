"""Pixel losses: mean absolute error, the mean absolute error of neighbour differences (edges), and the box of an
image that a region term weighs."""

from __future__ import annotations

import torch


def l1_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean |output - target|`` over images ``[B, C, H, W]``."""
    assert output.shape == target.shape and output.ndim == 4, (output.shape, target.shape)
    return (output - target).abs().mean()


def gradient_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error of the horizontal and vertical neighbour differences of ``[B, C, H, W]`` images.

    Flat areas contribute nothing, so thin features (eyes, mouths, frames of glasses) weigh as much as
    large ones: the term sharpens what a plain L1/L2 leaves blurred.
    """
    assert output.shape == target.shape and output.ndim == 4, (output.shape, target.shape)
    diff = output - target
    dx = diff[..., :, 1:] - diff[..., :, :-1]
    dy = diff[..., 1:, :] - diff[..., :-1, :]
    return 0.5 * (dx.abs().mean() + dy.abs().mean())


def check_box(box) -> tuple:
    """``((row0, row1), (col0, col1))`` as floats, fractions of the side with ``0 <= start < end <= 1``; one
    ValueError naming what is wrong otherwise."""
    try:
        (r0, r1), (c0, c1) = [(float(a), float(b)) for a, b in box]
    except (TypeError, ValueError):
        raise ValueError(f"a box is [[row0, row1], [col0, col1]] (fractions of the side), got {box!r}") from None
    for name, a, b in (("rows", r0, r1), ("columns", c0, c1)):
        if not 0.0 <= a < b <= 1.0:
            raise ValueError(f"the box's {name} must satisfy 0 <= start < end <= 1, got [{a}, {b}]")
    return (r0, r1), (c0, c1)


def box_crop(images: torch.Tensor, box) -> torch.Tensor:
    """The ``box`` (``((row0, row1), (col0, col1))``, fractions of the side) of ``[B, C, S, S]`` images; at least
    one pixel each way."""
    S = images.shape[-1]
    (r0, r1), (c0, c1) = box
    rs, cs = round(r0 * S), round(c0 * S)
    return images[..., rs:max(rs + 1, round(r1 * S)), cs:max(cs + 1, round(c1 * S))]
