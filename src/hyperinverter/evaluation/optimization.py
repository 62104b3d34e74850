"""Latent optimisation baselines: one code per image in W (``w_opt``) or W+ (``wplus_opt``).

Every image of a batch gets its own code, initialised at ``w_avg`` and optimised with Adam on
``mse_weight * MSE + lpips_weight * LPIPS`` (LPIPS only when a module is given). The per-image losses are
summed, so each code receives exactly the gradient of its own image (Adam is element-wise): a batch is
the same as inverting its images one by one. The generator's noise is the model's fixed mode
(``"const"`` buffers by default) and is not optimised. The learning rate follows the StyleGAN2
projector's schedule: a linear warm-up over ``lr_rampup`` of the steps and a cosine ramp-down over the
last ``lr_rampdown``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..inverter import HyperInverter
from ..tuning import check_steps_lr, check_weights, reconstruction_loss
from ..tuning import progress_bar as _bar
from .base import InversionMethod

#: Steps of the untimed warm-up runs of optimisation methods.
WARMUP_STEPS = 2


@dataclass
class LatentOptConfig:
    """Settings of W / W+ optimisation."""

    steps: int = 500  # Adam steps per image.
    lr: float = 0.01  # Peak learning rate.
    lr_rampup: float = 0.05  # Fraction of the steps with a linear warm-up of the learning rate.
    lr_rampdown: float = 0.25  # Fraction of the steps at the end with a cosine ramp-down to 0.
    mse_weight: float = 1.0  # Weight of the per-pixel MSE (on [-1, 1]).
    lpips_weight: float = 1.0  # Weight of LPIPS (used only when an LPIPS module is given).

    def __post_init__(self):
        check_steps_lr(self.steps, self.lr, "steps", "lr")
        for name in ("lr_rampup", "lr_rampdown"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")
        check_weights(self.mse_weight, self.lpips_weight)


def lr_schedule(step: int, steps: int, rampup: float, rampdown: float) -> float:
    """Multiplier of the peak learning rate at ``step`` of ``steps`` (StyleGAN2 projector schedule)."""
    t = step / steps
    ramp = min(1.0, (1.0 - t) / rampdown) if rampdown > 0 else 1.0
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    if rampup > 0:
        ramp *= min(1.0, (t + 1.0 / steps) / rampup)  # the first step is not at lr 0
    return ramp


def optimize_latent(model: HyperInverter, targets: torch.Tensor, space: str, config: LatentOptConfig,
                    lpips: Optional[torch.nn.Module] = None, steps: Optional[int] = None, progress: bool = False,
                    desc: str = "") -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Optimise one code per target image from ``w_avg``.

    Args:
        targets: ``[B, 3, R, R]`` in [-1, 1] on the model's device.
        space: ``"w"`` (one ``[w_dim]`` code repeated over the rows) or ``"w+"`` (one per row).
        steps: overrides ``config.steps`` (warm-up runs).
    Returns:
        ``(ws [B, num_ws, w_dim], images [B, 3, R, R], history)``; ``history[i]`` is the mean per-image loss
        before step ``i`` and the last entry the loss of the returned codes.
    """
    if space not in ("w", "w+"):
        raise ValueError(f"space must be 'w' or 'w+', got {space!r}")
    steps = config.steps if steps is None else steps
    batch, num_ws = targets.shape[0], model.num_ws
    w_avg = model.generator.w_avg.detach().to(targets.device, torch.float32)
    shape = (batch, w_avg.shape[0]) if space == "w" else (batch, num_ws, w_avg.shape[0])
    code = w_avg.expand(shape).clone().requires_grad_(True)  # [B, w_dim] or [B, num_ws, w_dim]
    to_ws: Callable[[torch.Tensor], torch.Tensor] = (
        (lambda c: c.unsqueeze(1).expand(-1, num_ws, -1)) if space == "w" else (lambda c: c))
    opt = torch.optim.Adam([code], lr=config.lr, betas=(0.9, 0.999))
    history: list[float] = []
    with torch.enable_grad(), _bar(steps, desc or f"{space} optimisation", progress) as bar:
        for step in range(steps):
            for group in opt.param_groups:
                group["lr"] = config.lr * lr_schedule(step, steps, config.lr_rampup, config.lr_rampdown)
            images = model.render(to_ws(code))
            loss = reconstruction_loss(images, targets, config.mse_weight, config.lpips_weight, lpips)  # [B]
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()  # independent per-image problems: each code gets its own gradient
            opt.step()
            history.append(float(loss.detach().mean()))
            bar.update(1)
    with torch.no_grad():
        ws = to_ws(code.detach()).contiguous()
        images = model.render(ws)
        final = reconstruction_loss(images, targets, config.mse_weight, config.lpips_weight, lpips)
        history.append(float(final.mean()))
    return ws, images, history


class WOptimization(InversionMethod):
    """Optimise one ``w`` per image in W (StyleGAN2 projector style, noise fixed)."""

    name = "w_opt"
    kind = "optimisation"
    label = "W optimisation"
    config_class = LatentOptConfig
    space = "w"

    def _run(self, images, warmup):
        ws, recon, history = optimize_latent(self.model, images, self.space, self.config, self.lpips,
                                             steps=WARMUP_STEPS if warmup else None,
                                             progress=self.progress and not warmup, desc=self.name)
        codes = {"ws": ws}
        if self.space == "w":
            codes["w"] = ws[:, 0]
        return recon, codes, history


class WPlusOptimization(WOptimization):
    """Optimise one code per row of ``ws`` per image (W+)."""

    name = "wplus_opt"
    label = "W+ optimisation"
    space = "w+"
