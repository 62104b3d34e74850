"""Pixel losses: mean absolute error and the mean absolute error of neighbour differences (edges)."""

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
