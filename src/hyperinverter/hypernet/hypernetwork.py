"""All weight regressors of a generator, keyed like the official ``hypernet.weight_regressors``."""

from __future__ import annotations

from typing import Sequence

import torch
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

    def forward(self, image_codes: torch.Tensor, input_codes: torch.Tensor) -> dict[str, torch.Tensor]:
        """E2 codes of the phase-I image and of the input, ``[B, slots, C, S, S]`` -> ``{name: [B, *shape]}``."""
        if image_codes.shape != input_codes.shape or image_codes.ndim != 5:
            raise ValueError(f"E2 codes must both be [B, slots, C, S, S]; got {list(image_codes.shape)} and "
                             f"{list(input_codes.shape)}")
        if image_codes.shape[1] < self.num_slots:
            raise ValueError(f"E2 gives {image_codes.shape[1]} slots, the targets need {self.num_slots}")
        return {t.name: self.weight_regressors[t.key](image_codes[:, t.slot], input_codes[:, t.slot])
                for t in self.targets}
