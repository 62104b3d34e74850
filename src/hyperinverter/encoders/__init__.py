"""The HyperInverter encoders: E1 (W-encoder) and E2 (layer-wise encoder), with official key names."""

from .backbones import Backbone, BackboneConfig, ir_se50, resnet34, tiny_backbone
from .layer_encoder import LayerWiseEncoder, LayerWiseEncoderConfig
from .presets import official_church_encoders, official_face_encoders, tiny_encoders
from .w_encoder import EqualLinear, WEncoder, WEncoderConfig

__all__ = [
    "Backbone",
    "BackboneConfig",
    "EqualLinear",
    "LayerWiseEncoder",
    "LayerWiseEncoderConfig",
    "WEncoder",
    "WEncoderConfig",
    "ir_se50",
    "official_church_encoders",
    "official_face_encoders",
    "resnet34",
    "tiny_backbone",
    "tiny_encoders",
]
