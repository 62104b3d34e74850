"""One frame's inversion codes (``ws`` and Δθ) and their temporal smoothing.

The hypernetworks' residuals come factored (:class:`~hyperinverter.stylegan2.residuals.LowRankResidual`:
``Δθ = reinterpret(h @ W2 + b2)``, with ``W2``, ``b2`` shared by all frames). A frame keeps only its own
part: ``ws`` and, per layer, ``h`` (or the dense Δθ for layers stored densely). Δθ is affine in ``h``
and smoothing weights sum to 1, so a weighted mean of the ``h`` *is* the weighted mean of the Δθ; the
shared factors are put back (:meth:`Factors.residuals`) when a batch is rendered.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from ..stylegan2.residuals import LowRankResidual, Residuals, raw_items


@dataclass
class FrameCodes:
    """The codes of one frame: ``ws`` ``[num_ws, w_dim]`` and per layer ``h`` ``[in, D]`` (factored
    layers) or the dense Δθ ``[*shape]``."""

    ws: torch.Tensor
    parts: Dict[str, torch.Tensor]

    def to_tensors(self, prefix: str) -> Dict[str, torch.Tensor]:
        """Flat CPU tensors for a safetensors file (``<prefix>ws``, ``<prefix>delta.<layer>``)."""
        out = {f"{prefix}ws": self.ws}
        out.update({f"{prefix}delta.{k}": v for k, v in self.parts.items()})
        return {k: v.detach().float().cpu().contiguous() for k, v in out.items()}

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor], prefix: str,
                     device: Optional[torch.device] = None) -> "FrameCodes":
        """The inverse of :meth:`to_tensors`."""
        ws = tensors[f"{prefix}ws"].to(device)
        start = f"{prefix}delta."
        return cls(ws, {k[len(start):]: v.to(device) for k, v in tensors.items() if k.startswith(start)})


class Factors:
    """The shared factors (``W2``, ``b2``, shape) of each factored layer of a model's residuals, taken
    from any batch of its inversions; splits batches into :class:`FrameCodes` and puts them back."""

    def __init__(self):
        self._factors: Dict[str, Optional[Tuple[torch.Tensor, torch.Tensor, tuple]]] = {}

    def split(self, ws: torch.Tensor, deltas: Mapping[str, torch.Tensor]) -> List[FrameCodes]:
        """A batch's ``ws`` ``[B, num_ws, w_dim]`` and residuals -> one :class:`FrameCodes` per frame (the
        shared factors are remembered)."""
        per_layer = {}
        for name, value in raw_items(deltas).items():
            if isinstance(value, LowRankResidual):
                self._factors[name] = (value.w2, value.b2, value.param_shape)
                per_layer[name] = value.h
            else:
                self._factors[name] = None
                per_layer[name] = value
        return [FrameCodes(ws[i], {k: v[i] for k, v in per_layer.items()}) for i in range(ws.shape[0])]

    def residuals(self, codes: Sequence[FrameCodes]) -> Tuple[torch.Tensor, Residuals]:
        """``ws`` ``[B, num_ws, w_dim]`` and :class:`Residuals` for a batch of frames (factored layers stay
        factored)."""
        if not self._factors:
            raise RuntimeError("no inversion has been split yet: the residuals' shared factors are unknown")
        ws = torch.stack([c.ws for c in codes])
        out = {}
        for name, factors in self._factors.items():
            stacked = torch.stack([c.parts[name] for c in codes])
            out[name] = stacked if factors is None else LowRankResidual(stacked, factors[0], factors[1], factors[2])
        return ws, Residuals(out)


def gaussian_radius(sigma: float) -> int:
    """How many frames on each side a Gaussian of ``sigma`` frames reaches (``ceil(2 sigma)``; 0 when off)."""
    return 0 if sigma <= 0 else int(math.ceil(2.0 * sigma))


def blend(codes: Sequence[FrameCodes], offsets: Sequence[int], sigma: float) -> FrameCodes:
    """The Gaussian-weighted mean (weights ``exp(-k^2 / 2 sigma^2)`` for frame offsets ``k``, normalised to
    sum to 1) of the codes of neighbouring frames."""
    if len(codes) != len(offsets) or not codes:
        raise ValueError("blend needs one offset per code, and at least one code")
    if len(codes) == 1 or sigma <= 0:
        return codes[list(offsets).index(0)] if 0 in offsets else codes[0]
    weights = torch.tensor([math.exp(-0.5 * (k / sigma) ** 2) for k in offsets], dtype=torch.float64)
    weights = (weights / weights.sum()).tolist()

    def mean(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
        out = tensors[0] * weights[0]
        for t, w in zip(tensors[1:], weights[1:]):
            out = out + t * w
        return out

    names = codes[0].parts.keys()
    return FrameCodes(mean([c.ws for c in codes]), {n: mean([c.parts[n] for c in codes]) for n in names})


__all__ = ["Factors", "FrameCodes", "blend", "gaussian_radius"]
