"""Building blocks with equalised learning rate, shared by the generator and the discriminator.

Weights are stored as unit-variance ``randn / lr_multiplier`` and scaled at run time
(``weight_gain = lr_multiplier / sqrt(fan_in)``), which is what makes the stored tensors
interchangeable with the NVIDIA and rosinality checkpoints.

Per-sample residuals: layers that take ``deltas`` accept a dict from their own parameter names
(``"weight"``, ``"bias"``) to tensors ``[B, *param.shape]`` (or ``[1, *param.shape]``, shared),
added to the stored parameter for sample b before any scaling.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional

import torch
from torch import nn

from ..ops import ACTIVATION_GAINS, bias_act, conv2d_resample, setup_filter
from .residuals import as_dense

Deltas = Mapping[str, torch.Tensor]


def sub_deltas(deltas: Optional[Deltas], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``deltas`` under ``prefix.``, with the prefix removed."""
    if not deltas:
        return {}
    p = prefix + "."
    return {k[len(p):]: v for k, v in deltas.items() if k.startswith(p)}


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """Scale ``x`` to unit mean square along ``dim`` ("pixel norm")."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


class FullyConnectedLayer(nn.Module):
    """Linear layer with equalised learning rate and a fused activation."""

    def __init__(
        self,
        in_features: int,  # Number of input features.
        out_features: int,  # Number of output features.
        bias: bool = True,  # Learn an additive bias?
        activation: str = "linear",  # "linear", "relu" or "lrelu".
        lr_multiplier: float = 1.0,  # Learning-rate multiplier (stored weights are divided by it).
        bias_init: float = 0.0,  # Initial value of the bias.
    ):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor, deltas: Optional[Deltas] = None) -> torch.Tensor:
        # x: [B, in_features] -> [B, out_features]
        deltas = deltas or {}
        w = self.weight.to(x.dtype) * self.weight_gain
        y = x.matmul(w.t())
        if "weight" in deltas:  # per-sample residual: y_b += (dW_b * gain) x_b
            dw = as_dense(deltas["weight"]).to(x.dtype) * self.weight_gain  # [B|1, out, in]
            y = y + torch.einsum("boi,bi->bo", dw.expand(x.shape[0], -1, -1), x)
        b = None
        if self.bias is not None:
            b = self.bias.to(x.dtype)
            if "bias" in deltas:
                b = b + deltas["bias"].to(x.dtype)  # [B|1, out]
                b = b.expand(x.shape[0], -1)
            b = b * self.bias_gain
        return bias_act(y, b, act=self.activation)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}"


class Conv2dLayer(nn.Module):
    """Convolution with equalised learning rate, optional FIR resampling and fused activation."""

    def __init__(
        self,
        in_channels: int,  # Number of input channels.
        out_channels: int,  # Number of output channels.
        kernel_size: int,  # Width and height of the kernel.
        bias: bool = True,  # Learn an additive bias?
        activation: str = "linear",  # "linear", "relu" or "lrelu".
        up: int = 1,  # Integer upsampling factor.
        down: int = 1,  # Integer downsampling factor.
        resample_filter: tuple = (1, 3, 3, 1),  # Taps of the FIR resampling filter.
        conv_clamp: Optional[float] = None,  # Clamp the output to +-this value, None = off.
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.activation = activation
        self.up, self.down = up, down
        self.conv_clamp = conv_clamp
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.act_gain = ACTIVATION_GAINS[activation]
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None
        self.register_buffer("resample_filter", setup_filter(resample_filter))

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        # x: [B, in, H, W] -> [B, out, H*up/down, W*up/down]
        w = self.weight.to(x.dtype) * self.weight_gain
        x = conv2d_resample(x, w, f=self.resample_filter, up=self.up, down=self.down, padding=self.padding,
                            flip_weight=(self.up == 1))
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        b = self.bias.to(x.dtype) if self.bias is not None else None
        return bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp)

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
                f"activation={self.activation}, up={self.up}, down={self.down}")


class MappingNetwork(nn.Module):
    """z -> w: pixel norm, then ``num_layers`` fully connected lrelu layers; tracks ``w_avg``."""

    def __init__(
        self,
        z_dim: int,  # Dimensionality of the input latent z.
        w_dim: int,  # Dimensionality of the output latent w.
        num_ws: int,  # Number of copies of w to output (one per synthesis style input).
        num_layers: int = 8,  # Number of fully connected layers.
        lr_multiplier: float = 0.01,  # Learning-rate multiplier of the layers.
        w_avg_beta: float = 0.995,  # Decay of the running average of w during training.
        layer_features: Optional[int] = None,  # Width of the hidden layers, None = w_dim.
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"the mapping network needs at least one layer, got {num_layers}")
        self.z_dim, self.w_dim, self.num_ws = z_dim, w_dim, num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        hidden = w_dim if layer_features is None else layer_features
        features = [z_dim] + [hidden] * (num_layers - 1) + [w_dim]
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], activation="lrelu",
                                        lr_multiplier=lr_multiplier)
            setattr(self, f"fc{idx}", layer)
        self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(
        self,
        z: torch.Tensor,
        truncation_psi: float = 1.0,
        truncation_cutoff: Optional[int] = None,
        update_w_avg: bool = False,
    ) -> torch.Tensor:
        """z ``[B, z_dim]`` -> ws ``[B, num_ws, w_dim]``.

        Args:
            truncation_psi: ws are pulled toward ``w_avg``: ``w_avg + psi * (w - w_avg)``.
            truncation_cutoff: truncate only the first this many ws (None = all).
            update_w_avg: update the running average with this batch (training only).
        """
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape [batch, {self.z_dim}], got {list(z.shape)}")
        x = normalize_2nd_moment(z.to(torch.float32))
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if update_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        x = x.unsqueeze(1).repeat([1, self.num_ws, 1])  # [B, num_ws, w_dim]
        if truncation_psi != 1:
            avg = self.w_avg.to(x.dtype)
            if truncation_cutoff is None:
                x = avg.lerp(x, truncation_psi)
            else:
                x = x.clone()
                x[:, :truncation_cutoff] = avg.lerp(x[:, :truncation_cutoff], truncation_psi)
        return x

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}, num_layers={self.num_layers}"


class MinibatchStdLayer(nn.Module):
    """Appends the standard deviation across groups of samples as extra feature maps."""

    def __init__(
        self,
        group_size: Optional[int],  # Samples per group; None = the whole batch.
        num_channels: int = 1,  # Number of appended feature maps.
    ):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n) if self.group_size is not None else n
        if n % g != 0:
            raise ValueError(f"minibatch-std group size {g} does not divide the batch size {n}")
        f = self.num_channels
        y = x.reshape(g, -1, f, c // f, h, w)  # [G, N/G, F, c, H, W]
        y = y - y.mean(dim=0)
        y = (y.square().mean(dim=0) + 1e-8).sqrt()  # [N/G, F, c, H, W]
        y = y.mean(dim=[2, 3, 4]).reshape(-1, f, 1, 1)  # [N/G, F, 1, 1]
        y = y.repeat(g, 1, h, w)  # [N, F, H, W]
        return torch.cat([x, y], dim=1)
