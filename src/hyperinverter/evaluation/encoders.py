"""The two encoder-based methods: phase I alone (``w_encoder``) and the full HyperInverter (``hyperinverter``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .base import InversionMethod


@dataclass
class EncoderMethodConfig:
    """Settings of an encoder method (one forward pass; no optimisation)."""

    chunk_size: Optional[int] = None  # Split larger batches into passes of this many images (None = one pass).

    def __post_init__(self):
        if self.chunk_size is not None and (not isinstance(self.chunk_size, int) or self.chunk_size < 1):
            raise ValueError(f"chunk_size must be a positive integer or None, got {self.chunk_size!r}")


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

    @torch.no_grad()
    def _run(self, images, warmup):
        results = [self.model(x) for x in _chunks(images, self.config.chunk_size)]
        codes = {"w": torch.cat([r.w for r in results]), "ws": torch.cat([r.ws for r in results])}
        for name in results[0].deltas:
            codes[f"delta.{name}"] = torch.cat([r.deltas[name] for r in results])
        return torch.cat([r.image for r in results]), codes, []
