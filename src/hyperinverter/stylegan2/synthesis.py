"""StyleGAN2 synthesis network (config-f "skip" architecture) with per-sample parameter residuals."""

from __future__ import annotations

import math
from typing import Mapping, Optional

import torch
from torch import nn

from ..ops import ACTIVATION_GAINS, bias_act, modulated_conv2d, setup_filter, upsample2d
from ..ops.lowrank_conv2d import lowrank_is_cheaper, lowrank_modulated_conv2d
from .layers import Deltas, FullyConnectedLayer, sub_deltas
from .residuals import LowRankResidual, as_dense, raw_items

NOISE_MODES = ("const", "random", "none")
#: How factored residuals are applied: "auto" (cost model per layer), "lowrank" (wherever the shapes
#: allow), "grouped" (always build the per-sample kernels; the reference path).
RESIDUAL_PATHS = ("auto", "lowrank", "grouped")
#: Output clamp of layers that run in reduced precision when the generator has no conv_clamp (NVlabs: 256).
REDUCED_PRECISION_CLAMP = 256.0


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally 2x upsampling) + noise + bias + lrelu."""

    def __init__(
        self,
        in_channels: int,  # Number of input channels.
        out_channels: int,  # Number of output channels.
        w_dim: int,  # Dimensionality of w.
        resolution: int,  # Output resolution of the layer.
        kernel_size: int = 3,  # Width and height of the kernel.
        up: int = 1,  # Upsampling factor (1 or 2).
        use_noise: bool = True,  # Add per-pixel noise?
        resample_filter: tuple = (1, 3, 3, 1),  # FIR taps used for upsampling.
        conv_clamp: Optional[float] = None,  # Clamp of the output, None = off.
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.conv_clamp = conv_clamp
        self.padding = kernel_size // 2
        self.act_gain = ACTIVATION_GAINS["lrelu"]
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: str = "const",
        fused_modconv: Optional[bool] = None,
        deltas: Optional[Deltas] = None,
        residual_path: str = "auto",
    ) -> torch.Tensor:
        # x: [B, in, r/up, r/up], w: [B, w_dim] -> [B, out, r, r]
        deltas = deltas or {}
        batch = x.shape[0]
        styles = self.affine(w, sub_deltas(deltas, "affine"))  # [B, in]
        weight = self.weight
        factored = deltas.get("weight")
        if isinstance(factored, LowRankResidual) and factored.shape[0] != batch:  # one residual shared by the batch
            factored = factored.with_h(factored.h.expand(batch, -1, -1))
        if not isinstance(factored, LowRankResidual) or not self.use_lowrank(factored, residual_path):
            factored = None
            if "weight" in deltas:
                weight = weight + as_dense(deltas["weight"]).expand(batch, *weight.shape)  # [B, out, in, k, k]

        noise = None
        if self.use_noise and noise_mode != "none":
            strength = self.noise_strength
            if "noise_strength" in deltas:
                strength = (strength + deltas["noise_strength"]).reshape(-1, 1, 1, 1)  # [B|1, 1, 1, 1]
            if noise_mode == "random":
                noise = torch.randn([batch, 1, self.resolution, self.resolution], device=x.device, dtype=x.dtype)
            else:
                noise = self.noise_const.to(x.dtype)
            noise = noise * strength.to(x.dtype)

        if factored is not None:  # shared convs + per-sample channel mix, no per-sample kernels
            x = lowrank_modulated_conv2d(x, weight, factored.kernels(), factored.mix(), styles, noise=noise,
                                         up=self.up, padding=self.padding, resample_filter=self.resample_filter,
                                         flip_weight=(self.up == 1))
        else:
            x = modulated_conv2d(x, weight, styles, noise=noise, up=self.up, padding=self.padding,
                                 resample_filter=self.resample_filter, flip_weight=(self.up == 1),
                                 fused_modconv=fused_modconv)
        bias = self.bias
        if "bias" in deltas:
            bias = (bias + deltas["bias"]).expand(batch, -1)
        return bias_act(x, bias, act="lrelu", gain=self.act_gain, clamp=_clamp(self.conv_clamp, x.dtype))

    def use_lowrank(self, delta: LowRankResidual, residual_path: str = "auto") -> bool:
        """Whether this layer applies the factored residual ``delta`` without per-sample kernels."""
        if residual_path not in RESIDUAL_PATHS:
            raise ValueError(f"residual_path must be one of {RESIDUAL_PATHS}, got {residual_path!r}")
        if residual_path == "grouped" or delta.groups is None or tuple(delta.param_shape) != tuple(self.weight.shape):
            return False
        if residual_path == "lowrank":
            return True
        out_ch, in_ch, kh, kw = self.weight.shape
        conv_pixels = (self.resolution // self.up) ** 2
        return lowrank_is_cheaper(delta.shape[0], out_ch, in_ch, kh * kw, delta.w2.shape[0] + 1, conv_pixels,
                                  self.resolution ** 2)

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, out_channels={self.out_channels}, "
                f"resolution={self.resolution}, up={self.up}")


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv to image channels, without demodulation."""

    def __init__(
        self,
        in_channels: int,  # Number of input channels.
        out_channels: int,  # Number of image channels.
        w_dim: int,  # Dimensionality of w.
        kernel_size: int = 1,  # Width and height of the kernel.
        conv_clamp: Optional[float] = None,  # Clamp of the output, None = off.
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        fused_modconv: Optional[bool] = None,
        deltas: Optional[Deltas] = None,
    ) -> torch.Tensor:
        # x: [B, in, r, r], w: [B, w_dim] -> [B, img_channels, r, r]
        deltas = deltas or {}
        batch = x.shape[0]
        styles = self.affine(w, sub_deltas(deltas, "affine")) * self.weight_gain
        weight = self.weight
        if "weight" in deltas:
            weight = weight + as_dense(deltas["weight"]).expand(batch, *weight.shape)
        x = modulated_conv2d(x, weight, styles, demodulate=False, fused_modconv=fused_modconv)
        bias = self.bias
        if "bias" in deltas:
            bias = (bias + deltas["bias"]).expand(batch, -1)
        return bias_act(x, bias, clamp=_clamp(self.conv_clamp, x.dtype))

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, out_channels={self.out_channels}"


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network: [const | upsampling conv0], conv1, toRGB (skip)."""

    def __init__(
        self,
        in_channels: int,  # Input channels, 0 = first block (starts from a learned constant).
        out_channels: int,  # Output channels.
        w_dim: int,  # Dimensionality of w.
        resolution: int,  # Resolution of this block.
        img_channels: int,  # Number of image channels.
        resample_filter: tuple = (1, 3, 3, 1),  # FIR taps for upsampling.
        conv_clamp: Optional[float] = None,  # Clamp of the layer outputs, None = off.
        use_noise: bool = True,  # Add per-pixel noise in the convs?
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.resolution = resolution
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = 0
        layer_kwargs = dict(resample_filter=resample_filter, conv_clamp=conv_clamp, use_noise=use_noise)
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, **layer_kwargs)
        self.num_conv += 1
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_torgb = 1

    def forward(
        self,
        x: Optional[torch.Tensor],
        img: Optional[torch.Tensor],
        ws: torch.Tensor,
        noise_mode: str = "const",
        fused_modconv: Optional[bool] = None,
        deltas: Optional[Deltas] = None,
        residual_path: str = "auto",
        dtype: torch.dtype = torch.float32,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # ws: [B, num_conv + num_torgb, w_dim]; x: [B, in, r/2, r/2] | None; img: [B, C, r/2, r/2] | None
        # dtype: of the activations in this block (styles, demodulation and img stay float32).
        w_iter = iter(ws.unbind(dim=1))
        batch = ws.shape[0]
        if self.in_channels == 0:
            const = self.const.to(ws.dtype).unsqueeze(0)  # [1, C, r, r]
            if deltas and "const" in deltas:
                const = const + deltas["const"].to(ws.dtype)  # [B|1, C, r, r]
            x = const.expand(batch, -1, -1, -1).to(dtype)
        else:
            x = self.conv0(x.to(dtype), next(w_iter), noise_mode, fused_modconv, sub_deltas(deltas, "conv0"),
                           residual_path)
        x = self.conv1(x, next(w_iter), noise_mode, fused_modconv, sub_deltas(deltas, "conv1"), residual_path)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        y = self.torgb(x, next(w_iter), fused_modconv, sub_deltas(deltas, "torgb")).to(torch.float32)
        img = y if img is None else img + y
        return x, img

    def extra_repr(self) -> str:
        return f"resolution={self.resolution}, in_channels={self.in_channels}, out_channels={self.out_channels}"


class SynthesisNetwork(nn.Module):
    """ws ``[B, num_ws, w_dim]`` -> image ``[B, img_channels, R, R]`` in roughly [-1, 1]."""

    def __init__(
        self,
        w_dim: int,  # Dimensionality of w.
        img_resolution: int,  # Output resolution, a power of two >= 4.
        img_channels: int = 3,  # Number of output image channels.
        channel_base: int = 32768,  # Channels at resolution r are min(channel_base // r, channel_max).
        channel_max: int = 512,  # Maximum number of channels in any layer.
        resample_filter: tuple = (1, 3, 3, 1),  # FIR taps for upsampling.
        conv_clamp: Optional[float] = None,  # Clamp of the layer outputs, None = off.
        use_noise: bool = True,  # Add per-pixel noise in the convs?
    ):
        super().__init__()
        log2 = int(round(math.log2(img_resolution))) if img_resolution > 0 else -1
        if img_resolution < 4 or 2**log2 != img_resolution:
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        channels = {r: min(channel_base // r, channel_max) for r in self.block_resolutions}
        if min(channels.values()) < 1:
            raise ValueError(f"channel_base {channel_base} gives no channels at {img_resolution}px")
        self.num_ws = 0
        for res in self.block_resolutions:
            in_ch = channels[res // 2] if res > 4 else 0
            block = SynthesisBlock(in_ch, channels[res], w_dim, res, img_channels, resample_filter=resample_filter,
                                   conv_clamp=conv_clamp, use_noise=use_noise)
            self.num_ws += block.num_conv
            setattr(self, f"b{res}", block)
        self.num_ws += 1  # the last toRGB reads one more w

    def blocks(self) -> list[SynthesisBlock]:
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def largest_feature_map(self) -> int:
        """Elements of the largest feature map one sample goes through (channels x resolution²)."""
        return max(b.out_channels * b.resolution**2 for b in self.blocks())

    def check_deltas(self, deltas: Mapping[str, torch.Tensor], batch: int) -> None:
        """Raise a ``ValueError`` naming the first delta whose name or shape is wrong."""
        params = dict(self.named_parameters())
        for name, delta in deltas.items():
            if name not in params:
                close = [p for p in params if p.rsplit(".", 1)[-1] == name.rsplit(".", 1)[-1]][:6]
                raise ValueError(f"weight_deltas[{name!r}]: the synthesis network has no parameter of that name "
                                 f"(names are those of G.synthesis.named_parameters(), e.g. {close})")
            expected = tuple(params[name].shape)
            tensor_like = isinstance(delta, (torch.Tensor, LowRankResidual))
            if not tensor_like or tuple(delta.shape[1:]) != expected or delta.shape[0] not in (1, batch):
                got = list(delta.shape) if tensor_like else type(delta).__name__
                raise ValueError(f"weight_deltas[{name!r}] has shape {got}; expected [{batch}, "
                                 f"{', '.join(map(str, expected))}] (batch of ws) or [1, ...]")
            if not delta.dtype.is_floating_point:
                raise ValueError(f"weight_deltas[{name!r}] must be a floating-point tensor, got {delta.dtype}")

    def forward(
        self,
        ws: torch.Tensor,
        noise_mode: str = "const",
        weight_deltas: Optional[Mapping[str, torch.Tensor]] = None,
        fused_modconv: Optional[bool] = None,
        residual_path: str = "auto",
        reduced_dtype: Optional[torch.dtype] = None,
        reduced_blocks: int = 4,
    ) -> torch.Tensor:
        """Render images from ws.

        Args:
            ws: ``[B, num_ws, w_dim]``.
            noise_mode: ``"const"`` (stored noise buffers), ``"random"`` (fresh noise) or ``"none"``.
            weight_deltas: ``{name: [B, *param.shape]}`` residuals added to synthesis parameters
                (names as ``named_parameters()`` gives them) for each sample before modulation.
            fused_modconv: force the grouped (True) or activation-scaling (False) modulated conv;
                None picks per layer: grouped where a layer has per-sample kernels or autograd is off.
            residual_path: for factored residuals (:class:`~hyperinverter.stylegan2.residuals.LowRankResidual`,
                what the hypernetworks give): ``"auto"`` picks per layer by cost, ``"lowrank"`` applies them
                without per-sample kernels wherever ``in`` is a multiple of ``out``, ``"grouped"`` always
                builds the per-sample kernels. The results agree to float rounding.
            reduced_dtype: ``torch.bfloat16`` or ``torch.float16`` runs the activations of the highest
                ``reduced_blocks`` resolutions in that dtype, as NVlabs does with ``num_fp16_res``: styles,
                demodulation and the image skip path stay float32, and layer outputs are clamped to
                ±conv_clamp (±256 when the generator has none). None = float32 everywhere.
        Returns:
            ``[B, img_channels, img_resolution, img_resolution]`` float32.
        """
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"ws must have shape [batch, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if weight_deltas:
            weight_deltas = raw_items(weight_deltas)  # factored entries stay factored
            self.check_deltas(weight_deltas, ws.shape[0])
        if reduced_dtype not in (None, torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(f"reduced_dtype must be None, torch.bfloat16 or torch.float16, got {reduced_dtype}")
        ws = ws.to(torch.float32)
        first_reduced = len(self.block_resolutions) - (reduced_blocks if reduced_dtype is not None else 0)
        x = img = None
        w_idx = 0
        for k, (block, res) in enumerate(zip(self.blocks(), self.block_resolutions)):
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            dtype = reduced_dtype if k >= first_reduced else torch.float32
            x, img = block(x, img, block_ws, noise_mode, fused_modconv, sub_deltas(weight_deltas, f"b{res}"),
                           residual_path, dtype)
        return img

    def extra_repr(self) -> str:
        return f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}"


def _clamp(conv_clamp: Optional[float], dtype: torch.dtype) -> Optional[float]:
    """The layer's clamp; in reduced precision a generator without one gets NVlabs' 256."""
    if conv_clamp is None and dtype in (torch.float16, torch.bfloat16):
        return REDUCED_PRECISION_CLAMP
    return conv_clamp
