"""Pivotal Tuning Inversion (Roich et al. 2021): a W pivot, then per-image generator tuning around it.

1. Pivot: ``w`` from W optimisation (:func:`optimize_latent`, PTI's default) or from the model's E1.
2. Tuning: with the pivot fixed, the synthesis parameters are optimised with Adam on
   ``mse_weight * MSE + lpips_weight * LPIPS`` (PTI: L2 + LPIPS, lr 3e-4, 350 steps).

Each image gets a fresh copy of θ: the tuned parameters are held as per-image residuals Δθ that start
at zero (``θ + 0`` is the original generator) and are rendered through the generator's per-sample
``weight_deltas``. Adam's update is element-wise and the per-image losses are summed, so the residuals
of one image see only that image's gradient: a batch is the same as tuning one generator copy per image,
but runs as one batched pass. The codes hold the pivot (``w``, ``ws``) and every tuned residual
(``delta.<name>``), so an edit moves the pivot and keeps the tuned weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..hypernet import TARGET_SETS, target_layers
from ..tuning import check_steps_lr, check_weights, tune_residuals
from .base import InversionMethod
from .optimization import WARMUP_STEPS, LatentOptConfig, optimize_latent

PIVOTS = ("w_opt", "w_encoder")
#: ``parameters`` values: every synthesis parameter, or one of the hypernetwork target sets.
PARAMETER_SETS = ("all", *TARGET_SETS)


@dataclass
class PTIConfig:
    """Settings of PTI (defaults: the PTI paper's, with its W projection for the pivot)."""

    pivot: str = "w_opt"  # Where the pivot comes from: "w_opt" (W optimisation) or "w_encoder" (E1).
    pivot_steps: int = 450  # W optimisation steps for the pivot (pivot="w_opt").
    pivot_lr: float = 0.01  # Peak learning rate of the pivot's W optimisation.
    steps: int = 350  # Generator tuning steps per image.
    lr: float = 3e-4  # Adam learning rate of the tuning.
    mse_weight: float = 1.0  # Weight of the per-pixel MSE (L2) in both stages.
    lpips_weight: float = 1.0  # Weight of LPIPS in both stages (used only when an LPIPS module is given).
    parameters: str = "all"  # Tuned parameters: "all" synthesis parameters or a hypernet target set.

    def __post_init__(self):
        if self.pivot not in PIVOTS:
            raise ValueError(f"pivot must be one of {PIVOTS}, got {self.pivot!r}")
        if self.parameters not in PARAMETER_SETS:
            raise ValueError(f"parameters must be one of {PARAMETER_SETS}, got {self.parameters!r}")
        check_steps_lr(self.pivot_steps, self.pivot_lr, "pivot_steps", "pivot_lr")
        check_steps_lr(self.steps, self.lr, "steps", "lr")
        check_weights(self.mse_weight, self.lpips_weight)

    def pivot_config(self) -> LatentOptConfig:
        return LatentOptConfig(steps=self.pivot_steps, lr=self.pivot_lr, mse_weight=self.mse_weight,
                               lpips_weight=self.lpips_weight)


class PTIMethod(InversionMethod):
    """Pivot in W, then one tuned copy of the synthesis parameters per image."""

    name = "pti"
    kind = "hybrid"
    label = "PTI"
    config_class = PTIConfig

    def tuned_parameters(self) -> dict[str, torch.Tensor]:
        """``{name: parameter}`` of the synthesis network that the tuning changes."""
        params = dict(self.model.generator.synthesis.named_parameters())
        if self.config.parameters == "all":
            return params
        return {t.name: params[t.name] for t in target_layers(self.model.generator.synthesis, self.config.parameters)}

    def pivot(self, images: torch.Tensor, warmup: bool = False) -> tuple[torch.Tensor, list[float]]:
        """``(ws [B, num_ws, w_dim], history)`` of the pivot for checked images."""
        cfg = self.config
        if cfg.pivot == "w_encoder":
            with torch.no_grad():
                w = self.model.encode_w(images)
            return w.unsqueeze(1).repeat(1, self.model.num_ws, 1), []
        ws, _, history = optimize_latent(self.model, images, "w", cfg.pivot_config(), self.lpips,
                                         steps=WARMUP_STEPS if warmup else None,
                                         progress=self.progress and not warmup, desc="pti pivot")
        return ws, history

    def _run(self, images, warmup):
        cfg = self.config
        ws, _ = self.pivot(images, warmup)
        ws = ws.detach()
        batch = images.shape[0]
        start = {name: torch.zeros((batch, *p.shape), device=p.device, dtype=p.dtype)
                 for name, p in self.tuned_parameters().items()}  # θ + 0: a fresh copy per image
        deltas, recon, history = tune_residuals(
            self.model, images, ws, start, WARMUP_STEPS if warmup else cfg.steps, cfg.lr, cfg.mse_weight,
            cfg.lpips_weight, self.lpips, progress=self.progress and not warmup, desc="pti tuning")
        codes = {"w": ws[:, 0], "ws": ws, **{f"delta.{k}": v for k, v in deltas.items()}}
        return recon, codes, history
