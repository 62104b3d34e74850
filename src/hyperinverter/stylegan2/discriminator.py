"""The StyleGAN2 discriminator (residual architecture, as in config-f)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..checkpoints import PretrainedMixin
from ..ops import setup_filter
from .generator import _check_power_of_two
from .layers import Conv2dLayer, FullyConnectedLayer, MinibatchStdLayer


@dataclass
class DiscriminatorConfig:
    """Everything needed to build a :class:`Discriminator`."""

    img_resolution: int = 1024  # Input resolution, a power of two >= 4.
    img_channels: int = 3  # Number of input channels.
    channel_base: int = 32768  # Channels at resolution r: min(channel_base // r, channel_max).
    channel_max: int = 512  # Upper bound on the channels of any layer.
    mbstd_group_size: Optional[int] = 4  # Minibatch-std group size, None = whole batch.
    mbstd_num_channels: int = 1  # Minibatch-std feature maps, 0 = off.
    resample_filter: list = field(default_factory=lambda: [1, 3, 3, 1])  # FIR taps for downsampling.
    conv_clamp: Optional[float] = None  # Clamp of every conv output, None = off.

    def __post_init__(self):
        _check_power_of_two("img_resolution", self.img_resolution, 4)
        if self.channel_base // self.img_resolution < 1:
            raise ValueError(f"channel_base {self.channel_base} leaves no channels at {self.img_resolution}px")
        self.resample_filter = [float(t) for t in self.resample_filter]


class DiscriminatorBlock(nn.Module):
    """fromRGB (first block only), conv0, conv1 with 2x downsampling, and a 1x1 residual skip."""

    def __init__(
        self,
        in_channels: int,  # Input channels, 0 = first block (reads the image).
        tmp_channels: int,  # Channels of the intermediate conv.
        out_channels: int,  # Output channels.
        img_channels: int,  # Number of image channels.
        resample_filter: tuple = (1, 3, 3, 1),  # FIR taps for downsampling.
        conv_clamp: Optional[float] = None,  # Clamp of the conv outputs.
    ):
        super().__init__()
        self.in_channels = in_channels
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        kw = dict(resample_filter=resample_filter, conv_clamp=conv_clamp)
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, activation="lrelu", **kw)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, activation="lrelu", **kw)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, kernel_size=3, activation="lrelu", down=2, **kw)
        self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2, **kw)

    def forward(self, x: Optional[torch.Tensor], img: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 0:
            x = self.fromrgb(img)
        y = self.skip(x, gain=np.sqrt(0.5))
        x = self.conv0(x)
        x = self.conv1(x, gain=np.sqrt(0.5))
        return y + x


class DiscriminatorEpilogue(nn.Module):
    """Minibatch std, a 3x3 conv, and two fully connected layers to one logit at 4x4."""

    def __init__(
        self,
        in_channels: int,  # Channels at 4x4.
        resolution: int = 4,  # Resolution of the epilogue.
        mbstd_group_size: Optional[int] = 4,  # Minibatch-std group size.
        mbstd_num_channels: int = 1,  # Minibatch-std feature maps, 0 = off.
        conv_clamp: Optional[float] = None,  # Clamp of the conv output.
    ):
        super().__init__()
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation="lrelu",
                                conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation="lrelu")
        self.out = FullyConnectedLayer(in_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.fc(x.flatten(1))
        return self.out(x)


class Discriminator(PretrainedMixin, nn.Module):
    """images ``[B, C, R, R]`` in [-1, 1] -> logits ``[B, 1]`` (NVIDIA parameter names)."""

    config_class = DiscriminatorConfig

    def __init__(
        self,
        img_resolution: int = 1024,
        img_channels: int = 3,
        channel_base: int = 32768,
        channel_max: int = 512,
        mbstd_group_size: Optional[int] = 4,
        mbstd_num_channels: int = 1,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: Optional[float] = None,
    ):
        """A StyleGAN2 residual discriminator; the defaults are config-f at 1024 px (FFHQ).

        The arguments are the fields of :class:`DiscriminatorConfig` (kept as ``self.config``, the record that
        ``save_pretrained`` writes); ``Discriminator.from_config(config)`` builds one from such a config.

        Args:
            img_resolution: input resolution, a power of two >= 4.
            img_channels: number of input channels.
            channel_base: channels at resolution r are ``min(channel_base // r, channel_max)``.
            channel_max: upper bound on the channels of any layer.
            mbstd_group_size: minibatch-std group size, None = the whole batch.
            mbstd_num_channels: minibatch-std feature maps, 0 = off.
            resample_filter: FIR taps for downsampling.
            conv_clamp: clamp of every conv output, None = off.
        Raises:
            ValueError: values :class:`DiscriminatorConfig` refuses.
        """
        super().__init__()
        self.config = cfg = DiscriminatorConfig(
            img_resolution=img_resolution, img_channels=img_channels, channel_base=channel_base,
            channel_max=channel_max, mbstd_group_size=mbstd_group_size, mbstd_num_channels=mbstd_num_channels,
            resample_filter=resample_filter, conv_clamp=conv_clamp)
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        log2 = int(math.log2(cfg.img_resolution))
        self.block_resolutions = [2**i for i in range(log2, 2, -1)]
        ch = {2**i: min(cfg.channel_base // 2**i, cfg.channel_max) for i in range(2, log2 + 1)}
        for res in self.block_resolutions:
            block = DiscriminatorBlock(ch[res] if res < cfg.img_resolution else 0, ch[res], ch[res // 2],
                                       cfg.img_channels, tuple(cfg.resample_filter), cfg.conv_clamp)
            setattr(self, f"b{res}", block)
        if cfg.img_resolution == 4:  # no downsampling block: read the image directly
            self.fromrgb = Conv2dLayer(cfg.img_channels, ch[4], kernel_size=1, activation="lrelu",
                                       conv_clamp=cfg.conv_clamp)
        self.b4 = DiscriminatorEpilogue(ch[4], 4, cfg.mbstd_group_size, cfg.mbstd_num_channels, cfg.conv_clamp)

    @classmethod
    def from_config(cls, config: DiscriminatorConfig) -> "Discriminator":
        return cls(**dataclasses.asdict(config))

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        expected = (self.img_channels, self.img_resolution, self.img_resolution)
        if img.ndim != 4 or tuple(img.shape[1:]) != expected:
            raise ValueError(f"images must have shape [batch, {', '.join(map(str, expected))}], got {list(img.shape)}")
        x = None
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x, img)
        if x is None:
            x = self.fromrgb(img)
        return self.b4(x)
