"""ArcFace identity loss as pSp / e4e / HyperInverter use it (IR-SE-50 at 112x112, ``model_ir_se50.pth``).

The recognition network is the IR-SE-50 trunk of :mod:`hyperinverter.encoders.backbones` (same units,
same key names) plus the ArcFace output layer, so ``model_ir_se50.pth`` loads with its own keys:
``input_layer.*``, ``body.<i>.*``, ``output_layer.{0,3,4}.*``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..encoders.backbones import Backbone, ir_se50
from ._common import (
    FrozenModule,
    PathLike,
    as_state_dict,
    check_pair,
    cosine_per_sample,
    embedding_loss,
    load_weights_into,
    read_weight_file,
)

#: pSp's face crop of a 256x256 aligned face: rows 35:223, columns 32:220 (188x188).
FACE_CROP = (35, 223, 32, 220)


class IRSE50FaceNet(Backbone):
    """ArcFace IR-SE-50: 112x112 face -> unit-length 512-d embedding."""

    input_size = 112

    def __init__(self, drop_ratio: float = 0.6):  # Dropout before the embedding (inactive: always eval).
        super().__init__(ir_se50())
        # 112 px / reduction 16 = 7x7 final map; the output layer flattens it.
        side = self.input_size // self.reduction
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512),
            nn.Dropout(drop_ratio),
            nn.Flatten(),
            nn.Linear(512 * side * side, 512),
            nn.BatchNorm1d(512),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """faces ``[B, 3, 112, 112]`` -> embeddings ``[B, 512]`` with unit L2 norm."""
        if tuple(x.shape[2:]) != (self.input_size, self.input_size):
            raise ValueError(f"IRSE50FaceNet expects [B, 3, 112, 112] faces, got {list(x.shape)}")
        return F.normalize(self.output_layer(super().forward(x)), dim=1)


def face_crop(images: torch.Tensor) -> torch.Tensor:
    """Aligned face images ``[B, 3, H, W]`` -> the network input ``[B, 3, 112, 112]``, as pSp.

    The crop box is defined on 256x256 images: larger inputs are average-pooled to 256 first (as pSp's
    ``face_pool``); smaller ones are upsampled bilinearly (pSp never does this; it keeps the box valid).
    """
    h, w = images.shape[2:]
    if (h, w) != (256, 256):
        if h >= 256 and w >= 256:
            images = F.adaptive_avg_pool2d(images, (256, 256))
        else:
            images = F.interpolate(images, size=(256, 256), mode="bilinear", align_corners=False)
    top, bottom, left, right = FACE_CROP
    return F.adaptive_avg_pool2d(images[:, :, top:bottom, left:right], (112, 112))


class IdentitySimilarity(FrozenModule):
    """Cosine similarity of ArcFace embeddings: ``sim(x, y)`` -> ``[B]`` in [-1, 1] (1 = same face).

    Used as a metric (the "ID similarity" of the HyperInverter tables) and as the base of :class:`IDLoss`.
    """

    def __init__(
        self,
        weights_path: Optional[PathLike] = None,  # model_ir_se50.pth; None = random weights (tests only).
    ):
        super().__init__()
        self.facenet = IRSE50FaceNet()
        if weights_path is not None:
            what = "IR-SE-50 face recognition"
            load_weights_into(self.facenet, as_state_dict(read_weight_file(weights_path, what), weights_path, what),
                              weights_path)
        self.freeze()

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """images ``[B, 3, H, W]`` in [-1, 1] -> unit embeddings ``[B, 512]``."""
        return self.facenet(face_crop(images))

    def similarity(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        check_pair(x, y)
        return cosine_per_sample(self.embed(x), self.embed(y))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.similarity(x, y)


class IDLoss(IdentitySimilarity):
    """pSp identity loss: ``mean(1 - cos(emb(y_hat), emb(y)))`` in [0, 2]; the target side gets no gradient."""

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """reconstructions and targets ``[B, 3, H, W]`` in [-1, 1] -> scalar loss."""
        return embedding_loss(self.embed, y_hat, y)
