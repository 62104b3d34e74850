"""The encoder-based methods: phase I alone (``w_encoder``), the full HyperInverter (``hyperinverter``), and
HyperInverter followed by a few steps of per-image tuning (``hyperinverter+refine``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional

import torch

from ..tuning import RefineConfig, refine_with_history
from .base import InversionMethod
from .optimization import WARMUP_STEPS


@dataclass
class EncoderMethodConfig:
    """Settings of an encoder method (one forward pass; no optimisation)."""

    chunk_size: Optional[int] = None  # Split larger batches into passes of this many images (None = one pass).

    def __post_init__(self):
        if self.chunk_size is not None and (not isinstance(self.chunk_size, int) or self.chunk_size < 1):
            raise ValueError(f"chunk_size must be a positive integer or None, got {self.chunk_size!r}")


def _codes(result) -> dict[str, torch.Tensor]:
    """A method's codes from an :class:`~hyperinverter.InversionResult`: ``w``, ``ws`` and dense ``delta.<name>``."""
    return {"w": result.w, "ws": result.ws, **{f"delta.{k}": v for k, v in result.deltas.items()}}


def _chunks(images: torch.Tensor, size: Optional[int]) -> list[torch.Tensor]:
    return [images] if size is None or images.shape[0] <= size else list(images.split(size))


class WEncoderMethod(InversionMethod):
    """Phase I: ``w = E1(x) + w_avg`` repeated over the rows of ``ws``, rendered with the original θ."""

    name = "w_encoder"
    kind = "encoder"
    label = "W encoder (phase I)"
    config_class = EncoderMethodConfig

    @torch.no_grad()
    def _run(self, images, warmup):
        ws_parts, image_parts = [], []
        for x in _chunks(images, self.config.chunk_size):
            w = self.model.encode_w(x)  # [b, w_dim]
            ws = w.unsqueeze(1).repeat(1, self.model.num_ws, 1)  # [b, num_ws, w_dim]
            ws_parts.append(ws)
            image_parts.append(self.model.render(ws))
        ws = torch.cat(ws_parts)
        return torch.cat(image_parts), {"w": ws[:, 0], "ws": ws}, []


class HyperInverterMethod(InversionMethod):
    """Phase II: the full model, ``w`` from E1 and per-image Δθ from the hypernetworks."""

    name = "hyperinverter"
    kind = "encoder"
    label = "HyperInverter"
    config_class = EncoderMethodConfig

    def _run(self, images, warmup):
        result = self.model.invert(images, batch_size=self.config.chunk_size or images.shape[0])
        return result.image, _codes(result), []

@dataclass
class RefineMethodConfig(RefineConfig):
    """:class:`~hyperinverter.tuning.RefineConfig` (steps, lr, loss weights, locality, parameters)."""


class HyperInverterRefineMethod(InversionMethod):
    """HyperInverter, then ``steps`` of PTI's per-image tuning started from its ``w`` and ``θ + Δθ``."""

    name = "hyperinverter+refine"
    kind = "hybrid"
    label = "HyperInverter + refine"
    config_class = RefineMethodConfig

    def _run(self, images, warmup):
        cfg = dataclasses.replace(self.config, steps=WARMUP_STEPS) if warmup else self.config
        with torch.no_grad():
            start = self.model(images)
        result, history = refine_with_history(self.model, images, start, cfg, self.lpips,
                                              progress=self.progress and not warmup)
        return result.image, _codes(result), history
