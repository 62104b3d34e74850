"""The StyleGAN2 generator: mapping network + synthesis network, with a recorded config."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import torch
from torch import nn

from ..checkpoints import PretrainedMixin
from .layers import MappingNetwork
from .synthesis import SynthesisNetwork


def _check_power_of_two(name: str, value: int, minimum: int) -> None:
    if not isinstance(value, int) or value < minimum or 2 ** int(round(math.log2(value))) != value:
        raise ValueError(f"{name} must be a power of two >= {minimum}, got {value!r}")


@dataclass
class GeneratorConfig:
    """Everything needed to build a :class:`Generator` (stored in ``config.json``)."""

    z_dim: int = 512  # Dimensionality of the input latent z.
    w_dim: int = 512  # Dimensionality of the intermediate latent w.
    img_resolution: int = 1024  # Output resolution, a power of two >= 4.
    img_channels: int = 3  # Number of output channels.
    channel_base: int = 32768  # Channels at resolution r: min(channel_base // r, channel_max).
    channel_max: int = 512  # Upper bound on the channels of any layer.
    mapping_layers: int = 8  # Depth of the mapping network.
    mapping_lr_multiplier: float = 0.01  # Learning-rate multiplier of the mapping network.
    w_avg_beta: float = 0.995  # Decay of the running average of w during training.
    resample_filter: list = field(default_factory=lambda: [1, 3, 3, 1])  # FIR taps for upsampling.
    conv_clamp: Optional[float] = None  # Clamp of every conv output, None = off (config-f).
    use_noise: bool = True  # Per-pixel noise inputs in the synthesis convs.

    def __post_init__(self):
        _check_power_of_two("img_resolution", self.img_resolution, 4)
        for name in ("z_dim", "w_dim", "img_channels", "channel_base", "channel_max", "mapping_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.channel_base // self.img_resolution < 1:
            raise ValueError(f"channel_base {self.channel_base} leaves no channels at {self.img_resolution}px")
        self.resample_filter = [float(t) for t in self.resample_filter]

    def channels(self) -> dict[int, int]:
        """Channels of each block resolution."""
        return {2**i: min(self.channel_base // 2**i, self.channel_max)
                for i in range(2, int(math.log2(self.img_resolution)) + 1)}

    @property
    def num_ws(self) -> int:
        return 2 * int(math.log2(self.img_resolution)) - 2


def config_f(img_resolution: int = 1024, **overrides) -> GeneratorConfig:
    """The published StyleGAN2 config-f at any resolution (FFHQ 1024, LSUN church 256, ...)."""
    return GeneratorConfig(img_resolution=img_resolution, **overrides)


class Generator(PretrainedMixin, nn.Module):
    """StyleGAN2 generator (NVIDIA parameter names, so official state dicts load as they are).

    ``G.mapping(z, truncation_psi) -> ws [B, num_ws, w_dim]``;
    ``G.synthesis(ws, noise_mode, weight_deltas) -> images [B, C, R, R]``.
    """

    config_class = GeneratorConfig

    def __init__(
        self,
        z_dim: int = 512,
        w_dim: int = 512,
        img_resolution: int = 1024,
        img_channels: int = 3,
        channel_base: int = 32768,
        channel_max: int = 512,
        mapping_layers: int = 8,
        mapping_lr_multiplier: float = 0.01,
        w_avg_beta: float = 0.995,
        resample_filter: Sequence[float] = (1, 3, 3, 1),
        conv_clamp: Optional[float] = None,
        use_noise: bool = True,
    ):
        """A StyleGAN2 generator; the defaults are config-f at 1024 px (FFHQ).

        The arguments are the fields of :class:`GeneratorConfig` (kept as ``self.config``, the record that
        ``save_pretrained`` writes); ``Generator.from_config(config)`` builds one from such a config.

        Args:
            z_dim: dimensionality of the input latent z.
            w_dim: dimensionality of the intermediate latent w.
            img_resolution: output resolution, a power of two >= 4.
            img_channels: number of output channels.
            channel_base: channels at resolution r are ``min(channel_base // r, channel_max)``.
            channel_max: upper bound on the channels of any layer.
            mapping_layers: depth of the mapping network.
            mapping_lr_multiplier: learning-rate multiplier of the mapping network.
            w_avg_beta: decay of the running average of w during training.
            resample_filter: FIR taps for upsampling.
            conv_clamp: clamp of every conv output, None = off (config-f).
            use_noise: per-pixel noise inputs in the synthesis convs.
        Raises:
            ValueError: values :class:`GeneratorConfig` refuses (a resolution that is not a power of two, ...).
        """
        super().__init__()
        self.config = cfg = GeneratorConfig(
            z_dim=z_dim, w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
            channel_base=channel_base, channel_max=channel_max, mapping_layers=mapping_layers,
            mapping_lr_multiplier=mapping_lr_multiplier, w_avg_beta=w_avg_beta, resample_filter=resample_filter,
            conv_clamp=conv_clamp, use_noise=use_noise)
        self.z_dim, self.w_dim = cfg.z_dim, cfg.w_dim
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.synthesis = SynthesisNetwork(
            w_dim=cfg.w_dim, img_resolution=cfg.img_resolution, img_channels=cfg.img_channels,
            channel_base=cfg.channel_base, channel_max=cfg.channel_max,
            resample_filter=tuple(cfg.resample_filter), conv_clamp=cfg.conv_clamp, use_noise=cfg.use_noise,
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            z_dim=cfg.z_dim, w_dim=cfg.w_dim, num_ws=self.num_ws, num_layers=cfg.mapping_layers,
            lr_multiplier=cfg.mapping_lr_multiplier, w_avg_beta=cfg.w_avg_beta,
        )

    @classmethod
    def from_config(cls, config: GeneratorConfig) -> "Generator":
        return cls(**dataclasses.asdict(config))

    @property
    def w_avg(self) -> torch.Tensor:
        """Running average of w, ``[w_dim]`` (the centre of truncation and of W-encoders)."""
        return self.mapping.w_avg

    def forward(
        self,
        z: torch.Tensor,
        truncation_psi: float = 1.0,
        truncation_cutoff: Optional[int] = None,
        noise_mode: str = "const",
        weight_deltas: Optional[Mapping[str, torch.Tensor]] = None,
    ) -> torch.Tensor:
        """z ``[B, z_dim]`` -> images ``[B, img_channels, R, R]``."""
        ws = self.mapping(z, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, weight_deltas=weight_deltas)

    @torch.no_grad()
    def compute_w_avg(self, num_samples: int = 10000, seed: int = 0, batch_size: int = 1000) -> torch.Tensor:
        """Set ``w_avg`` to the mean of ``num_samples`` mapped z (for files that do not store it)."""
        gen = torch.Generator().manual_seed(seed)
        device = self.mapping.w_avg.device
        total = torch.zeros(self.w_dim, dtype=torch.float64)
        for start in range(0, num_samples, batch_size):
            n = min(batch_size, num_samples - start)
            z = torch.randn([n, self.z_dim], generator=gen).to(device)
            total += self.mapping(z)[:, 0].double().sum(dim=0).cpu()
        self.mapping.w_avg.copy_((total / num_samples).to(self.mapping.w_avg.dtype))
        return self.mapping.w_avg
