"""Per-layer weight regressor: fuse two E2 feature maps into a code, expand it into a residual kernel."""

from __future__ import annotations

import math

import torch
from torch import nn

from ..stylegan2.residuals import LowRankResidual


class WeightRegressor(nn.Module):
    """Predicts Δθ ``[B, *target_shape]`` for one generator weight from E2 features of one slot.

    fusion (1x1 conv 2C->C, InstanceNorm, ReLU) -> features (3x3 conv C->64, then stride-2 4x4 convs
    down to 1x1, the last to ``hidden_dim``) -> code ``[B, D]`` -> ``code @ w1 + b1`` reshaped to
    ``[B, in, D]`` -> ``@ w2 + b2`` -> ``[B, in, out*k*k]``, reinterpreted (no transpose, as the
    official model does) as ``[B, out, in, k, k]``. The two factor matrices keep the head at
    ``D * (in*D + out*k*k)`` parameters instead of ``D * out*in*k*k``.
    """

    def __init__(
        self,
        target_shape: tuple,  # Shape of the predicted weight: (out, in, k, k) or (out, in) for affine layers.
        input_channels: int = 512,  # Channels of each E2 slot feature map.
        input_size: int = 8,  # Spatial size of the E2 slot feature maps (a power of two).
        hidden_dim: int = 128,  # D, size of the per-layer code.
        feature_channels: int = 64,  # Channels of the intermediate feature convs.
    ):
        super().__init__()
        if input_size < 1 or 2 ** int(round(math.log2(input_size))) != input_size:
            raise ValueError(f"input_size must be a power of two, got {input_size}")
        self.target_shape = tuple(target_shape)
        self.out_features = self.target_shape[0]
        self.in_features = self.target_shape[1]
        self.kernel_numel = int(math.prod(self.target_shape[2:]))
        self.hidden_dim = hidden_dim
        self.input_channels, self.input_size = input_channels, input_size
        self.fusion = nn.Sequential(nn.Conv2d(2 * input_channels, input_channels, 1), nn.InstanceNorm2d(input_channels),
                                    nn.ReLU())
        num_down = int(round(math.log2(input_size)))
        layers: list[nn.Module] = [nn.Conv2d(input_channels, feature_channels, 3, padding=1), nn.ReLU()]
        for i in range(num_down):
            out_ch = hidden_dim if i == num_down - 1 else feature_channels
            layers += [nn.Conv2d(feature_channels, out_ch, 4, stride=2, padding=1), nn.ReLU()]
        if num_down == 0:  # already 1x1: a 1x1 conv to the code size
            layers += [nn.Conv2d(feature_channels, hidden_dim, 1), nn.ReLU()]
        self.feature_extractor = nn.Sequential(*layers)
        d, i, okk = hidden_dim, self.in_features, self.out_features * self.kernel_numel
        # Small second factor: the residual starts near zero, so training starts from phase I.
        self.w1 = nn.Parameter(torch.randn(d, i * d) * math.sqrt(2.0 / d))
        self.b1 = nn.Parameter(torch.zeros(i * d))
        self.w2 = nn.Parameter(torch.randn(d, okk) * (1e-3 / math.sqrt(d)))
        self.b2 = nn.Parameter(torch.zeros(okk))

    def code(self, image_codes: torch.Tensor, input_codes: torch.Tensor) -> torch.Tensor:
        """``[B, C, S, S]`` x 2 -> ``[B, D]`` (phase-I image codes first, as in the official concat order)."""
        expected = (self.input_channels, self.input_size, self.input_size)
        for name, t in (("image_codes", image_codes), ("input_codes", input_codes)):
            if t.ndim != 4 or tuple(t.shape[1:]) != expected:
                raise ValueError(f"{name} must have shape [B, {', '.join(map(str, expected))}], got {list(t.shape)}")
        x = self.fusion(torch.cat([image_codes, input_codes], dim=1))
        x = self.feature_extractor(x)  # [B, D, 1, 1]
        return x.flatten(1)

    def expand(self, code: torch.Tensor) -> torch.Tensor:
        """``[B, D]`` -> Δθ ``[B, *target_shape]``."""
        b = code.shape[0]
        h = (code @ self.w1 + self.b1).view(b, self.in_features, self.hidden_dim)  # [B, in, D]
        h = h @ self.w2 + self.b2  # [B, in, out*k*k]
        # Official memory reinterpretation: the [in, out*k*k] buffer is read as [out, in, k, k].
        return h.reshape(b, *self.target_shape)

    def factored(self, code: torch.Tensor) -> LowRankResidual:
        """``[B, D]`` -> Δθ in factored form (``h = code @ w1 + b1`` ``[B, in, D]``, ``w2``, ``b2``);
        ``.dense()`` equals :meth:`expand`. The synthesis applies it without per-sample kernels where it can."""
        h = (code @ self.w1 + self.b1).view(code.shape[0], self.in_features, self.hidden_dim)
        return LowRankResidual(h, self.w2, self.b2, self.target_shape)

    def forward(self, image_codes: torch.Tensor, input_codes: torch.Tensor, factored: bool = False):
        """Δθ ``[B, *target_shape]``, or a :class:`LowRankResidual` when ``factored``."""
        code = self.code(image_codes, input_codes)
        return self.factored(code) if factored else self.expand(code)

    def extra_repr(self) -> str:
        return f"target_shape={self.target_shape}, hidden_dim={self.hidden_dim}"
