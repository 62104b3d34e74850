"""All weight regressors of a generator, keyed like the official ``hypernet.weight_regressors``."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .regressor import WeightRegressor
from .targets import TargetLayer


class Hypernetwork(nn.Module):
    """One :class:`WeightRegressor` per target layer; maps E2 codes to a dict of residuals."""

    def __init__(
        self,
        targets: Sequence[TargetLayer],  # Target layers (from target_layers(G.synthesis, ...)).
        input_channels: int = 512,  # Channels of the E2 slot maps.
        input_size: int = 8,  # Spatial size of the E2 slot maps.
        hidden_dim: int = 128,  # D of every regressor.
    ):
        super().__init__()
        self.targets = list(targets)
        if not self.targets:
            raise ValueError("the hypernetwork needs at least one target layer")
        self.weight_regressors = nn.ModuleDict({
            t.key: WeightRegressor(t.shape, input_channels, input_size, hidden_dim) for t in self.targets
        })

    @property
    def num_slots(self) -> int:
        return max(t.slot for t in self.targets) + 1

    def forward(self, image_codes: torch.Tensor, input_codes: torch.Tensor, factored: bool = False) -> dict:
        """E2 codes of the phase-I image and of the input, ``[B, slots, C, S, S]`` -> ``{name: [B, *shape]}``
        (``factored``: :class:`~hyperinverter.stylegan2.residuals.LowRankResidual` values, no dense kernels)."""
        if image_codes.shape != input_codes.shape or image_codes.ndim != 5:
            raise ValueError(f"E2 codes must both be [B, slots, C, S, S]; got {list(image_codes.shape)} and "
                             f"{list(input_codes.shape)}")
        if image_codes.shape[1] < self.num_slots:
            raise ValueError(f"E2 gives {image_codes.shape[1]} slots, the targets need {self.num_slots}")
        if self.training:  # one regressor after the other (the official loop)
            return {t.name: self.weight_regressors[t.key](image_codes[:, t.slot], input_codes[:, t.slot], factored)
                    for t in self.targets}
        codes = self.codes(image_codes, input_codes)  # every head's code at once
        out = {}
        for i, t in enumerate(self.targets):
            reg = self.weight_regressors[t.key]
            out[t.name] = reg.factored(codes[:, i]) if factored else reg.expand(codes[:, i])
        return out

    def codes(self, image_codes: torch.Tensor, input_codes: torch.Tensor) -> torch.Tensor:
        """Every head's code ``[B, heads, D]`` in one pass: the heads' fusion and feature convs have the
        same shapes, so they run as grouped convolutions (group = head) over the stacked slot maps."""
        regs = [self.weight_regressors[t.key] for t in self.targets]
        heads, batch = len(regs), image_codes.shape[0]
        slots = torch.tensor([t.slot for t in self.targets], device=image_codes.device)
        x = torch.cat([image_codes[:, slots], input_codes[:, slots]], dim=2)  # [B, heads, 2C, S, S]
        x = x.reshape(batch, -1, *x.shape[3:])
        layers = [list(r.fusion) + list(r.feature_extractor) for r in regs]
        for parts in zip(*layers):
            first = parts[0]
            if isinstance(first, nn.Conv2d):
                weight = torch.cat([p.weight for p in parts])  # [heads*out, in, k, k]
                bias = torch.cat([p.bias for p in parts])
                x = F.conv2d(x, weight, bias, stride=first.stride, padding=first.padding, groups=heads)
            elif isinstance(first, nn.InstanceNorm2d):
                assert not first.affine and not first.track_running_stats
                x = F.instance_norm(x, eps=first.eps)
            elif isinstance(first, nn.ReLU):
                x = F.relu(x)
            else:
                raise TypeError(f"no batched form for {type(first).__name__}")
        return x.reshape(batch, heads, -1)  # [B, heads, D] (the maps are 1x1 by now)
