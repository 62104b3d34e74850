"""Bias + activation + gain + clamp, the epilogue of every StyleGAN2 layer."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

#: Gain applied by default after each activation so that unit-variance inputs stay unit-variance.
ACTIVATION_GAINS = {"linear": 1.0, "relu": math.sqrt(2.0), "lrelu": math.sqrt(2.0)}


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    act: str = "linear",
    gain: float | None = None,
    clamp: float | None = None,
    alpha: float = 0.2,
) -> torch.Tensor:
    """``clamp(act(x + b) * gain)`` along dimension 1.

    Args:
        x: ``[N, C, ...]``.
        b: ``[C]`` shared bias, or ``[N, C]`` per-sample bias; ``None`` for no bias.
        act: ``"linear"``, ``"relu"`` or ``"lrelu"`` (slope ``alpha``).
        gain: output scale; ``None`` uses the activation's default gain.
        clamp: clamp the output to ``[-clamp, clamp]``; ``None`` disables it.
    """
    if act not in ACTIVATION_GAINS:
        raise ValueError(f"unknown activation {act!r}; expected one of {sorted(ACTIVATION_GAINS)}")
    if b is not None:
        if b.ndim == 1:
            b = b.reshape(1, -1, *([1] * (x.ndim - 2)))
        else:  # per-sample bias [N, C]
            b = b.reshape(b.shape[0], b.shape[1], *([1] * (x.ndim - 2)))
        x = x + b.to(x.dtype)
    if act == "lrelu":
        x = F.leaky_relu(x, alpha)
    elif act == "relu":
        x = F.relu(x)
    gain = ACTIVATION_GAINS[act] if gain is None else gain
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x
