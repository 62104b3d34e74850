"""MoCo-v2 feature loss (e4e / HyperInverter for non-face domains): cosine distance of ResNet-50 features.

Reads ``moco_v2_800ep_pretrain.pt`` (``{"state_dict": {"module.encoder_q.<torchvision resnet50 key>": ...}}``):
the query encoder is kept, its projection head ``fc.*`` and everything else (key encoder, queue) dropped.
A plain torchvision ResNet-50 state dict is accepted as well (``fc.*`` ignored).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError
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

MOCO_PREFIX = "module.encoder_q."
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class Bottleneck(nn.Module):
    """torchvision ResNet v1.5 bottleneck: 1x1 -> 3x3 (carries the stride) -> 1x1 (x4 channels)."""

    expansion = 4

    def __init__(
        self,
        in_channels: int,  # Channels entering the block.
        width: int,  # Channels of the inner 3x3 conv; the block outputs width * 4.
        stride: int = 1,  # Stride of the 3x3 conv (and of the projection shortcut).
    ):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50Features(nn.Module):
    """torchvision ResNet-50 without ``fc``: images -> global-average-pooled ``[B, 2048]``."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        in_ch = 64
        for i, (n, width, stride) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512), (1, 2, 2, 2)), 1):
            blocks = []
            for j in range(n):
                blocks.append(Bottleneck(in_ch, width, stride if j == 0 else 1))
                in_ch = width * Bottleneck.expansion
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.out_features = in_ch  # 2048

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # [B, 64, H/4, W/4]
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # [B, 2048, H/32, W/32]
        return self.avgpool(x).flatten(1)  # [B, 2048]


def moco_state_dict(obj, path: PathLike) -> dict[str, torch.Tensor]:
    """The ResNet-50 tensors of a MoCo checkpoint (or of a plain torchvision ResNet-50 state dict)."""
    state = as_state_dict(obj, path, "MoCo ResNet-50")
    if any(k.startswith(MOCO_PREFIX) for k in state):
        state = {k[len(MOCO_PREFIX):]: v for k, v in state.items() if k.startswith(MOCO_PREFIX)}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}  # MoCo projection / ImageNet classifier
    if not state:
        raise CheckpointError(f"{path}: no ResNet-50 tensors besides fc.* (expected {MOCO_PREFIX}conv1.weight, ...)")
    return state


class MocoLoss(FrozenModule):
    """e4e MocoLoss: ``mean(1 - cos(f(y_hat), f(y)))`` in [0, 2], f = unit MoCo-v2 ResNet-50 features.

    Preprocessing (default): bilinear resize to 224 and [-1, 1] -> ImageNet mean/std, i.e. the input the
    network was trained on. ``official=True`` reproduces e4e/HyperInverter instead: nearest-neighbour
    resize and no normalisation (the [-1, 1] image goes in as is).
    """

    def __init__(
        self,
        weights_path: Optional[PathLike] = None,  # moco_v2_800ep_pretrain.pt; None = random (tests only).
        official: bool = False,  # Use e4e's preprocessing (nearest resize, no ImageNet normalisation).
    ):
        super().__init__()
        self.official = official
        self.model = ResNet50Features()
        if weights_path is not None:
            state = moco_state_dict(read_weight_file(weights_path, "MoCo ResNet-50"), weights_path)
            load_weights_into(self.model, state, weights_path)
        # ImageNet statistics for [-1, 1] inputs: ((x + 1) / 2 - mean) / std = (x - (2 mean - 1)) / (2 std).
        self.register_buffer("shift", torch.tensor([2 * m - 1 for m in _IMAGENET_MEAN]).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("scale", torch.tensor([2 * s for s in _IMAGENET_STD]).view(1, 3, 1, 1),
                             persistent=False)
        self.freeze()

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """images ``[B, 3, H, W]`` in [-1, 1] -> unit features ``[B, 2048]``."""
        if self.official:
            x = F.interpolate(images, size=224)  # mode "nearest", as e4e
        else:
            x = F.interpolate(images, size=(224, 224), mode="bilinear", align_corners=False)
            x = (x - self.shift.to(x.dtype)) / self.scale.to(x.dtype)
        return F.normalize(self.model(x), dim=1)

    def similarity(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-image cosine ``[B]``."""
        check_pair(x, y)
        return cosine_per_sample(self.embed(x), self.embed(y))

    def forward(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """reconstructions and targets ``[B, 3, H, W]`` in [-1, 1] -> scalar loss."""
        return embedding_loss(self.embed, y_hat, y)

    def extra_repr(self) -> str:
        return f"official={self.official}"
