"""Encoder configs of the released HyperInverter models, and tiny ones for tests and demos."""

from __future__ import annotations

from .backbones import ir_se50, resnet34, tiny_backbone
from .layer_encoder import LayerWiseEncoderConfig
from .w_encoder import WEncoderConfig


def official_face_encoders() -> tuple[WEncoderConfig, LayerWiseEncoderConfig]:
    """(E1, E2) of the FFHQ model: IR-SE-50 trunks, 18 code slots (1024 px generator)."""
    return WEncoderConfig(backbone=ir_se50()), LayerWiseEncoderConfig(backbone=ir_se50(), num_slots=18)


def official_church_encoders() -> tuple[WEncoderConfig, LayerWiseEncoderConfig]:
    """(E1, E2) of the LSUN church model: ResNet-34 trunks, 14 code slots (256 px generator)."""
    return WEncoderConfig(backbone=resnet34()), LayerWiseEncoderConfig(backbone=resnet34(), num_slots=14)


def tiny_encoders(
    kind: str = "ir_se", num_slots: int = 10, w_dim: int = 16
) -> tuple[WEncoderConfig, LayerWiseEncoderConfig]:
    """(E1, E2) with the official layout but widths 8-16, for tests and demos on a CPU."""
    return (WEncoderConfig(backbone=tiny_backbone(kind), w_dim=w_dim),
            LayerWiseEncoderConfig(backbone=tiny_backbone(kind), num_slots=num_slots))
