"""The FID Inception-v3 (TensorFlow's 2015-12-05 graph as ported by pytorch-fid), returning pool3 features.

Module and parameter names are those of torchvision's ``Inception3(num_classes=1008, aux_logits=False)``
with pytorch-fid's patched blocks, so the standard FID weight file
``pt_inception-2015-12-05-6726825d.pth`` loads with its own keys (``Conv2d_1a_3x3.conv.weight``,
``Mixed_5b.branch_pool.bn.running_var``, ..., ``Mixed_7c.*``, ``fc.weight`` [1008, 2048], ``fc.bias``).

Differences from torchvision's Inception-v3, all taken from pytorch-fid (they reproduce the TF graph):

* ``FIDInceptionA`` / ``FIDInceptionC`` / ``FIDInceptionE_1`` (``Mixed_5b-d``, ``Mixed_6b-e``, ``Mixed_7b``):
  the pool branch's 3x3 average pool ignores the zero padding (``count_include_pad=False``);
* ``FIDInceptionE_2`` (``Mixed_7c``): the pool branch uses a 3x3 *max* pool;
* 1008 output classes (the ``fc`` layer is kept for the key layout; features are read before it).

Every convolution is bias-free and followed by BatchNorm (eps 0.001) and ReLU.

Input handling is pytorch-fid's: bilinear resize to 299x299 (``align_corners=False``, no antialiasing),
then values in [-1, 1]. pytorch-fid takes [0, 1] images and computes ``2x - 1`` after the resize; since
both steps are affine per pixel, feeding [-1, 1] images straight into the resize gives the same input.

The official HyperInverter numbers come from ``torch-fidelity``, which runs the same TF graph but takes
uint8 images and resizes with a TF1-compatible bilinear kernel: scores agree closely but not bit for bit.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..losses._common import FrozenModule, PathLike, as_state_dict, load_weights_into, read_weight_file

#: Input side length of the network.
INCEPTION_SIZE = 299
#: Dimension of the pool3 features used by FID and KID.
FEATURE_DIM = 2048
#: Classes of the TF graph's classifier (1000 ImageNet classes + 8 unused).
NUM_CLASSES = 1008
#: Name of the standard weight file (pytorch-fid release ``fid_weights``).
WEIGHT_FILE_NAME = "pt_inception-2015-12-05-6726825d.pth"


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm(eps=0.001) -> ReLU; keys ``conv.weight``, ``bn.*``."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _avg_pool_tf(x: torch.Tensor) -> torch.Tensor:
    # TensorFlow's SAME average pool divides by the number of real (not padded) pixels.
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(nn.Module):
    """35x35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1 -> 224 + pool_features channels."""

    def __init__(self, in_channels: int, pool_features: int):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_features, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg_pool_tf(x))
        return torch.cat([b1, b5, b3, bp], 1)


class InceptionB(nn.Module):
    """Grid reduction 35 -> 17 (``Mixed_6a``, unpatched): 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2 -> 768 channels."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, bd, bp], 1)


class FIDInceptionC(nn.Module):
    """17x17 block with factorised 7x7 convolutions -> 768 channels."""

    def __init__(self, in_channels: int, channels_7x7: int):
        super().__init__()
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for i in range(1, 6):
            bd = getattr(self, f"branch7x7dbl_{i}")(bd)
        bp = self.branch_pool(_avg_pool_tf(x))
        return torch.cat([b1, b7, bd, bp], 1)


class InceptionD(nn.Module):
    """Grid reduction 17 -> 8 (``Mixed_7a``, unpatched) -> 1280 channels."""

    def __init__(self, in_channels: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        bp = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([b3, b7, bp], 1)


class FIDInceptionE(nn.Module):
    """8x8 block with expanded 1x3 / 3x1 filter banks -> 2048 channels.

    ``pool="avg"`` is pytorch-fid's ``FIDInceptionE_1`` (``Mixed_7b``, padding-excluding average pool),
    ``pool="max"`` its ``FIDInceptionE_2`` (``Mixed_7c``).
    """

    def __init__(self, in_channels: int, pool: str):
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = pool
        self.branch1x1 = BasicConv2d(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(in_channels, 192, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        if self.pool == "avg":
            bp = _avg_pool_tf(x)
        else:
            bp = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        return torch.cat([b1, b3, bd, self.branch_pool(bp)], 1)

    def extra_repr(self) -> str:
        return f"pool={self.pool!r}"


class InceptionFeatures(FrozenModule):
    """FID Inception-v3: images ``[B, 3, H, W]`` in [-1, 1] -> pool3 features ``[B, 2048]``.

    Build it with :meth:`from_file` from ``pt_inception-2015-12-05-6726825d.pth``. The constructor
    alone gives random weights, which are only good for tests: FID / KID from them mean nothing.
    """

    feature_dim = FEATURE_DIM

    def __init__(self, weights_path: Optional[PathLike] = None):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE(1280, pool="avg")
        self.Mixed_7c = FIDInceptionE(2048, pool="max")
        self.fc = nn.Linear(FEATURE_DIM, NUM_CLASSES)  # unused by FID; part of the file's key layout
        if weights_path is not None:
            self.load_weights(weights_path)
        self.freeze()

    @classmethod
    def from_file(cls, path: PathLike) -> InceptionFeatures:
        """The network with the FID weights of ``path`` (strict: every key must match, see :meth:`load_weights`)."""
        return cls(weights_path=path)

    def load_weights(self, path: PathLike) -> None:
        """Load a pytorch-fid weight file (or a ``{"state_dict": ...}`` wrapper of one) with ``weights_only=True``.

        Raises:
            CheckpointError: the file is missing or unreadable, or its tensors do not match this network
                (the message names the missing, unexpected and mis-shaped keys). BatchNorm
                ``num_batches_tracked`` counters may be absent.
        """
        what = "FID Inception-v3"
        load_weights_into(self, as_state_dict(read_weight_file(path, what), path, what), path)
        self.freeze()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images ``[B, 3, H, W]`` in [-1, 1] (clipped to it) -> pool3 features ``[B, 2048]`` (float32)."""
        if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] < 1:
            raise ValueError(f"expected images [B, 3, H, W], got {list(images.shape)}")
        if not images.is_floating_point():
            raise ValueError(f"expected float images in [-1, 1], got {images.dtype}")
        x = images.to(self.fc.weight.dtype).clamp(-1, 1)
        x = F.interpolate(x, size=(INCEPTION_SIZE, INCEPTION_SIZE), mode="bilinear", align_corners=False)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # 64 x 147 x 147
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # 64 x 73 x 73
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))  # 192 x 71 x 71
        x = F.max_pool2d(x, kernel_size=3, stride=2)  # 192 x 35 x 35
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                     "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(self, name)(x)  # ... -> 2048 x 8 x 8
        return F.adaptive_avg_pool2d(x, 1).flatten(1)
