"""E2, the layer-wise encoder: trunk -> feature pyramid -> one ``[C, S, S]`` code map per slot.

Official counterparts: ``LayerWiseEncoder`` (IR-SE-50, faces, 18 slots) and ``ResNetLayerWiseEncoder``
(ResNet-34, churches, 14 slots). The HyperInverter checkpoint stores these keys under
``w_bar_encoder.``; strip that prefix and load with ``strict=True``.

Slots ``[0, 3)`` read the last stage (c3), ``[3, 7)`` the middle pyramid level p2 and ``[7, num_slots)``
the finest level p1, each through stride-2 convs down to S = input / (2 * trunk reduction) (8 at 256 px).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import PretrainedMixin
from .backbones import Backbone, BackboneConfig, as_backbone_config, ir_se50

#: Slots before these indices read c3, then p2; the rest read p1 (official ``coarse_ind``, ``middle_ind``).
SLOT_GROUP_ENDS = (3, 7)


class StyleBlock(nn.Module):
    """``num_convs`` x (3x3 stride-2 conv + LeakyReLU(0.01)): keys ``convs.0``, ``convs.2``, ..."""

    def __init__(self, channels: int, num_convs: int):
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(num_convs):
            layers += [nn.Conv2d(channels, channels, 3, 2, 1), nn.LeakyReLU()]  # default slope 0.01, as official
        self.convs = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)  # [B, C, H, W] -> [B, C, H / 2**num_convs, W / 2**num_convs]


@dataclass
class LayerWiseEncoderConfig:
    """Everything needed to build a :class:`LayerWiseEncoder` (stored in ``config.json``)."""

    backbone: BackboneConfig = field(default_factory=ir_se50)  # Trunk (its dict form is accepted and converted).
    num_slots: int = 18  # Code maps produced (official: 2*log2(output_size) - 2, 18 faces / 14 churches).
    style_channels: Optional[int] = None  # Channels of every code map; None = the trunk's last width
                                          # (512 officially). c3 feeds the pyramid as it is, so they must match.

    def __post_init__(self):
        self.backbone = bb = as_backbone_config(self.backbone)  # a copy, validated; asdict gives the stored dict
        if not isinstance(self.num_slots, int) or self.num_slots < 1:
            raise ValueError(f"num_slots must be a positive integer, got {self.num_slots!r}")
        if len(bb.blocks) < 3:
            raise ValueError(f"the layer-wise encoder taps the last 3 stages; the backbone has {len(bb.blocks)}")
        if self.style_channels is None:
            self.style_channels = bb.widths[-1]
        if self.style_channels != bb.widths[-1]:
            raise ValueError(f"style_channels ({self.style_channels}) must equal the backbone's last width "
                             f"({bb.widths[-1]}): c3 enters the pyramid without a projection, as in the official model")

    @property
    def backbone_config(self) -> BackboneConfig:
        """The trunk's config (the same object as ``backbone``)."""
        return self.backbone


class LayerWiseEncoder(PretrainedMixin, Backbone):
    """E2: images ``[B, 3, H, W]`` in [-1, 1] -> codes ``[B, num_slots, C, H/32, W/32]`` (official trunks)."""

    config_class = LayerWiseEncoderConfig

    def __init__(self, backbone: Union[BackboneConfig, dict, None] = None, num_slots: int = 18,
                 style_channels: Optional[int] = None):
        """E2 on the trunk ``backbone``; the defaults are the official face encoder (IR-SE-50, 18 slots).

        The arguments are the fields of :class:`LayerWiseEncoderConfig` (kept as ``self.config``, the record that
        ``save_pretrained`` writes).

        Args:
            backbone: the trunk (:class:`BackboneConfig` or its dict form); None = IR-SE-50 (:func:`ir_se50`).
            num_slots: code maps produced, one per generator style input (``2 * log2(resolution) - 2``: 18 for
                1024 px faces, 14 for 256 px churches); more than the generator needs is allowed.
            style_channels: channels of every code map; None = the trunk's last width, the only value allowed
                (c3 enters the feature pyramid without a projection, as in the official model).
        Raises:
            ValueError, TypeError: values :class:`LayerWiseEncoderConfig` or :class:`BackboneConfig` refuse.
        """
        cfg = LayerWiseEncoderConfig(backbone=ir_se50() if backbone is None else backbone, num_slots=num_slots,
                                     style_channels=style_channels)
        super().__init__(cfg.backbone)
        self.config = cfg
        self.num_slots, self.style_channels = cfg.num_slots, cfg.style_channels
        C = cfg.style_channels

        # Taps: ends of the last three stages (c1 finest, c3 coarsest).
        self.taps = self.stage_ends[-3:]
        tap_reductions = self.stage_reductions[-3:]
        self.output_reduction = 2 * tap_reductions[-1]  # one stride-2 conv on c3 (32 for the official trunks)
        groups = [(0, SLOT_GROUP_ENDS[0]), SLOT_GROUP_ENDS, (SLOT_GROUP_ENDS[1], cfg.num_slots)]
        # Level read by each slot: 2 = c3, 1 = p2, 0 = p1; convs bring that level down to the output size.
        self.slot_level: list[int] = []
        styles = []
        for level, (start, stop) in zip((2, 1, 0), groups):
            ratio = self.output_reduction // tap_reductions[level]
            num_convs = int(round(math.log2(ratio)))
            assert 2**num_convs == ratio, (self.output_reduction, tap_reductions)
            for _ in range(start, min(stop, cfg.num_slots)):
                styles.append(StyleBlock(C, num_convs))
                self.slot_level.append(level)
        self.styles = nn.ModuleList(styles)
        # Lateral 1x1 convs bring c2 / c1 to C channels; only built when a slot reads that level.
        if cfg.num_slots > SLOT_GROUP_ENDS[0]:
            self.latlayer1 = nn.Conv2d(self.out_channels[-2], C, 1)
        if cfg.num_slots > SLOT_GROUP_ENDS[1]:
            self.latlayer2 = nn.Conv2d(self.out_channels[-3], C, 1)

    @classmethod
    def from_config(cls, config: LayerWiseEncoderConfig) -> "LayerWiseEncoder":
        return cls(**dataclasses.asdict(config))

    @staticmethod
    def _upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # align_corners=True is what the official pyramid uses; it changes the numbers.
        return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """images ``[B, 3, H, W]`` (H, W multiples of ``output_reduction``) -> ``[B, num_slots, C, H/32, W/32]``."""
        self.check_input(x, self.output_reduction)
        # Official trunks: c1 [B, 128, H/4, W/4], c2 [B, 256, H/8, W/8], c3 [B, 512, H/16, W/16].
        c1, c2, c3 = self.features(x, self.taps)
        levels = {2: c3}
        if self.num_slots > SLOT_GROUP_ENDS[0]:
            levels[1] = self._upsample_add(c3, self.latlayer1(c2))  # p2 [B, C, *c2 size]
        if self.num_slots > SLOT_GROUP_ENDS[1]:
            levels[0] = self._upsample_add(levels[1], self.latlayer2(c1))  # p1 [B, C, *c1 size]
        codes = [style(levels[lvl]) for style, lvl in zip(self.styles, self.slot_level)]
        out = torch.stack(codes, dim=1)
        S_h, S_w = x.shape[2] // self.output_reduction, x.shape[3] // self.output_reduction
        assert out.shape == (x.shape[0], self.num_slots, self.style_channels, S_h, S_w), out.shape
        return out
