"""Convolutional trunks of the HyperInverter encoders: IR-SE (ArcFace-style) and ResNet (BasicBlock).

Module names follow the official code (pSp ``helpers.py`` for IR/IR-SE, torchvision for ResNet), so
a trunk's ``state_dict`` keys are the official ones: ``input_layer.*`` + ``body.<i>.*`` for IR-SE,
``conv1.*`` / ``bn1.*`` / ``relu.weight`` + ``body.<i>.*`` for ResNet.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence, Union

import torch
from torch import nn

BACKBONE_KINDS = ("ir_se", "ir", "resnet")


@dataclass
class BackboneConfig:
    """Architecture of an encoder trunk (stored inside the encoder configs)."""

    kind: str = "ir_se"  # "ir_se" (IR + squeeze-excitation), "ir" (no SE) or "resnet" (BasicBlocks).
    blocks: list = field(default_factory=lambda: [3, 4, 14, 3])  # Units per stage.
    widths: list = field(default_factory=lambda: [64, 128, 256, 512])  # Output channels per stage.
    stem_width: int = 64  # Channels after the stem (= input channels of the first unit).
    se_reduction: int = 16  # SE bottleneck = max(1, channels // se_reduction); ir_se only.
    in_channels: int = 3  # Channels of the input images: 3 (RGB); 6 for a HyperInverter E2 that reads each image
    #                       with the input's difference from it (HyperInverterConfig says how).

    def __post_init__(self):
        if self.kind not in BACKBONE_KINDS:
            raise ValueError(f"kind must be one of {BACKBONE_KINDS}, got {self.kind!r}")
        self.blocks = [int(b) for b in self.blocks]
        self.widths = [int(w) for w in self.widths]
        if not self.blocks or len(self.blocks) != len(self.widths):
            raise ValueError(f"blocks {self.blocks} and widths {self.widths} must be non-empty and of equal length")
        for name, values in (("blocks", self.blocks), ("widths", self.widths)):
            if any(v < 1 for v in values):
                raise ValueError(f"{name} must be positive integers, got {values}")
        for name in ("stem_width", "se_reduction", "in_channels"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

    @property
    def stage_strides(self) -> list[int]:
        """Stride of each stage's first unit: IR halves at every stage; ResNet keeps stage 1 at stem size."""
        if self.kind == "resnet":
            return [1] + [2] * (len(self.blocks) - 1)
        return [2] * len(self.blocks)

    @property
    def stem_stride(self) -> int:
        return 2 if self.kind == "resnet" else 1

    @property
    def stage_ends(self) -> list[int]:
        """Index into ``body`` of the last unit of each stage."""
        ends, total = [], 0
        for n in self.blocks:
            total += n
            ends.append(total - 1)
        return ends

    @property
    def stage_reductions(self) -> list[int]:
        """Input size / feature size at the end of each stage."""
        out, r = [], self.stem_stride
        for s in self.stage_strides:
            r *= s
            out.append(r)
        return out


def ir_se50() -> BackboneConfig:
    """IR-SE-50, the trunk of the official face encoders (E1 and E2)."""
    return BackboneConfig(kind="ir_se", blocks=[3, 4, 14, 3], widths=[64, 128, 256, 512], stem_width=64)


def resnet34() -> BackboneConfig:
    """torchvision ResNet-34 layer1-4 behind a PReLU stem, the trunk of the official church encoders."""
    return BackboneConfig(kind="resnet", blocks=[3, 4, 6, 3], widths=[64, 128, 256, 512], stem_width=64)


def tiny_backbone(kind: str = "ir_se") -> BackboneConfig:
    """A few-thousand-parameter trunk with the official layout, for tests and demos."""
    # se_reduction 4 keeps 2-4 SE channels (16 would leave 1, which a ReLU can switch off entirely).
    return BackboneConfig(kind=kind, blocks=[1, 1, 1, 1], widths=[8, 8, 16, 16], stem_width=8, se_reduction=4)


def as_backbone_config(value: Union[BackboneConfig, dict]) -> BackboneConfig:
    """Accept a :class:`BackboneConfig` or its ``asdict`` form (what configs store)."""
    if isinstance(value, BackboneConfig):
        return BackboneConfig(**dataclasses.asdict(value))  # a copy, re-validated
    if isinstance(value, dict):
        return BackboneConfig(**value)
    raise TypeError(f"backbone must be a BackboneConfig or a dict, got {type(value).__name__}")


# ----------------------------------------------------------------------------------------------
# Units
# ----------------------------------------------------------------------------------------------


class SEModule(nn.Module):
    """Squeeze-and-excitation gate (bias-free 1x1 convs, as in ArcFace/pSp)."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        hidden = max(1, channels // reduction)  # tiny configs would otherwise get 0 channels
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))  # [B, C, 1, 1]
        return x * gate


class BottleneckIR(nn.Module):
    """Pre-activation IR unit: BN-conv-PReLU-conv(stride)-BN[-SE] plus a shortcut."""

    def __init__(self, in_channels: int, depth: int, stride: int, se_reduction: int = 0):
        super().__init__()
        if in_channels == depth:
            # A 1x1 max-pool is plain subsampling; it has no parameters, hence no keys.
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channels, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))
        layers = [
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, depth, 3, 1, 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, 3, stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        ]
        if se_reduction:
            layers.append(SEModule(depth, se_reduction))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class BasicBlock(nn.Module):
    """torchvision ResNet BasicBlock (plain ReLU inside the block)."""

    def __init__(self, in_channels: int, depth: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, depth, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(depth)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(depth, depth, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(depth)
        self.downsample = None
        if stride != 1 or in_channels != depth:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, depth, 1, stride, bias=False), nn.BatchNorm2d(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


# ----------------------------------------------------------------------------------------------
# Trunk
# ----------------------------------------------------------------------------------------------


class Backbone(nn.Module):
    """Stem + ``body`` (a Sequential of units), registered at the top level of the module.

    The encoders subclass this, so their state_dict keys carry no ``backbone.`` prefix, exactly like
    the official encoders (which build their trunk inline).
    """

    def __init__(
        self,
        backbone: Union[BackboneConfig, dict],  # Trunk architecture.
        before_body: Sequence[tuple[str, nn.Module]] = (),  # Extra modules registered between stem and
                                                            # body; only changes the state_dict order.
    ):
        super().__init__()
        cfg = self.backbone_config = as_backbone_config(backbone)
        if cfg.kind == "resnet":
            self.conv1 = nn.Conv2d(cfg.in_channels, cfg.stem_width, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(cfg.stem_width)
            self.relu = nn.PReLU(cfg.stem_width)  # PReLU (not ReLU) and no max-pool, as in the official stem
            self._stem_names = ("conv1", "bn1", "relu")
        else:
            self.input_layer = nn.Sequential(
                nn.Conv2d(cfg.in_channels, cfg.stem_width, 3, 1, 1, bias=False),
                nn.BatchNorm2d(cfg.stem_width),
                nn.PReLU(cfg.stem_width),
            )
            self._stem_names = ("input_layer",)
        for name, module in before_body:
            self.add_module(name, module)

        units: list[nn.Module] = []
        in_ch = cfg.stem_width
        se = cfg.se_reduction if cfg.kind == "ir_se" else 0
        for n, depth, stride in zip(cfg.blocks, cfg.widths, cfg.stage_strides):
            for i in range(n):
                s = stride if i == 0 else 1
                units.append(BasicBlock(in_ch, depth, s) if cfg.kind == "resnet" else BottleneckIR(in_ch, depth, s, se))
                in_ch = depth
        self.body = nn.Sequential(*units)

        self.stage_ends: list[int] = cfg.stage_ends  # body index of each stage's last unit
        self.out_channels: list[int] = list(cfg.widths)  # channels at each stage end
        self.stage_reductions: list[int] = cfg.stage_reductions  # input size / feature size per stage
        self.reduction: int = self.stage_reductions[-1]  # of the whole trunk (16 for the official ones)

    @property
    def stem_conv_name(self) -> str:
        """state_dict key of the stem's first conv weight ``[stem_width, in_channels, k, k]``."""
        return "conv1.weight" if self.backbone_config.kind == "resnet" else "input_layer.0.weight"

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        for name in self._stem_names:
            x = getattr(self, name)(x)
        return x

    def check_input(self, x: torch.Tensor, multiple: int) -> None:
        """Raise ValueError unless ``x`` is ``[B, in_channels, H, W]`` with H and W positive multiples of
        ``multiple``."""
        c = self.backbone_config.in_channels
        ok = x.ndim == 4 and x.shape[0] > 0 and x.shape[1] == c and all(
            s > 0 and s % multiple == 0 for s in x.shape[2:])
        if not ok:
            raise ValueError(f"{type(self).__name__} expects images [B, {c}, H, W] with B >= 1 and H, W multiples of "
                             f"{multiple} (e.g. [B, {c}, 256, 256]), got {list(x.shape)}")

    def features(self, x: torch.Tensor, units: Sequence[int]) -> list[torch.Tensor]:
        """Outputs of the requested ``body`` units (``-1`` = the stem output), in the order asked.

        Units after the last one requested are not run.
        """
        wanted = sorted(set(units))
        if wanted and not (-1 <= wanted[0] and wanted[-1] < len(self.body)):
            raise IndexError(f"units must lie in [-1, {len(self.body) - 1}], got {list(units)}")
        found = {}
        x = self.stem(x)
        if -1 in wanted:
            found[-1] = x
        last = wanted[-1] if wanted else -1
        for i in range(last + 1):
            x = self.body[i](x)
            if i in wanted:
                found[i] = x
        return [found[u] for u in units]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """images ``[B, 3, H, W]`` -> last stage features ``[B, widths[-1], H/r, W/r]`` (r = ``reduction``)."""
        self.check_input(x, self.reduction)
        return self.body(self.stem(x))
