"""E1, the W-encoder: trunk -> global average pool -> EqualLinear -> one w offset per image.

Official counterparts: ``BackboneEncoderUsingLastLayerIntoW`` (IR-SE-50, faces) and
``ResNetEncoderUsingLastLayerIntoW`` (ResNet-34, churches). Their checkpoints store these keys
under ``encoder.``; strip that prefix and load with ``strict=True``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Union

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import PretrainedMixin
from .backbones import Backbone, BackboneConfig, as_backbone_config, ir_se50


class EqualLinear(nn.Module):
    """Linear layer scaled at run time by ``lr_mul / sqrt(in)`` (pSp/rosinality ``EqualLinear``, no activation)."""

    def __init__(
        self,
        in_dim: int,  # Input features.
        out_dim: int,  # Output features.
        lr_mul: float = 1.0,  # Learning-rate multiplier (stored weights are divided by it).
        bias_init: float = 0.0,  # Initial value of the bias.
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full([out_dim], float(bias_init)))
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)  # [B, in] -> [B, out]


@dataclass
class WEncoderConfig:
    """Everything needed to build a :class:`WEncoder` (stored in ``config.json``)."""

    backbone: BackboneConfig = field(default_factory=ir_se50)  # Trunk (its dict form is accepted and converted).
    w_dim: int = 512  # Dimensionality of w.

    def __post_init__(self):
        self.backbone = as_backbone_config(self.backbone)  # a copy, validated; asdict gives the stored dict
        if not isinstance(self.w_dim, int) or self.w_dim < 1:
            raise ValueError(f"w_dim must be a positive integer, got {self.w_dim!r}")

    @property
    def backbone_config(self) -> BackboneConfig:
        """The trunk's config (the same object as ``backbone``)."""
        return self.backbone


class WEncoder(PretrainedMixin, Backbone):
    """E1: images ``[B, 3, H, W]`` in [-1, 1] (256 px officially) -> ``[B, w_dim]``.

    The output is the offset from the generator's ``w_avg``; the caller adds ``w_avg``.
    """

    config_class = WEncoderConfig

    def __init__(self, backbone: Union[BackboneConfig, dict, None] = None, w_dim: int = 512):
        """E1 on the trunk ``backbone``; the defaults are the official face encoder (IR-SE-50, w_dim 512).

        The arguments are the fields of :class:`WEncoderConfig` (kept as ``self.config``, the record that
        ``save_pretrained`` writes).

        Args:
            backbone: the trunk (:class:`BackboneConfig` or its dict form); None = IR-SE-50 (:func:`ir_se50`).
            w_dim: dimensionality of w (the output).
        Raises:
            ValueError, TypeError: values :class:`WEncoderConfig` or :class:`BackboneConfig` refuse.
        """
        cfg = WEncoderConfig(backbone=ir_se50() if backbone is None else backbone, w_dim=w_dim)
        bb = cfg.backbone
        head = [("output_pool", nn.AdaptiveAvgPool2d(1)), ("linear", EqualLinear(bb.widths[-1], cfg.w_dim))]
        # The official IR-SE encoder registers its pool and linear before the body (state_dict order
        # input_layer, linear, body); the ResNet one registers them last.
        if bb.kind == "resnet":
            super().__init__(bb)
            for name, module in head:
                self.add_module(name, module)
        else:
            super().__init__(bb, before_body=head)
        self.config = cfg
        self.w_dim = cfg.w_dim

    @classmethod
    def from_config(cls, config: WEncoderConfig) -> "WEncoder":
        return cls(**dataclasses.asdict(config))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """images ``[B, 3, H, W]`` (H, W multiples of the trunk's ``reduction``) -> w offsets ``[B, w_dim]``."""
        self.check_input(x, self.reduction)
        x = self.body(self.stem(x))  # [B, C, H/16, W/16]
        x = self.output_pool(x).flatten(1)  # [B, C]
        return self.linear(x)
