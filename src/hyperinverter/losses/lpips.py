"""LPIPS perceptual distance (Zhang et al., CVPR 2018), v0.1, with AlexNet or VGG16 features.

The feature extractors keep torchvision's module indices, so the standard ImageNet files load as they
are (``alexnet-owt-7be5be79.pth``, ``vgg16-397923af.pth``; their ``classifier.*`` tensors are ignored).
The linear heads read the ``lpips`` package files ``weights/v0.1/{alex,vgg}.pth``
(keys ``lin<i>.model.1.weight``, shape ``[1, C_i, 1, 1]``).

distance(x, y) = sum over taps l of mean over (h, w) of  w_l . (n(f_l(x)) - n(f_l(y)))^2,
with f_l the activations after a ReLU, n() unit length along channels, and w_l >= 0 the head weights.
"""

from __future__ import annotations

import logging
from typing import Optional, Sequence

import torch
from torch import nn

from ..errors import CheckpointError
from ._common import FrozenModule, PathLike, as_state_dict, check_pair, load_weights_into, read_weight_file

log = logging.getLogger("hyperinverter")

LPIPS_NETS = ("alex", "vgg")

# Input scaling of LPIPS v0.1: images in [-1, 1] -> roughly ImageNet-normalised.
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)


class AlexNetFeatures(nn.Module):
    """torchvision ``AlexNet.features[:12]``; returns relu1..relu5."""

    taps = (1, 4, 7, 9, 11)  # indices in ``features`` after which LPIPS reads the activations
    channels = (64, 192, 384, 256, 256)  # channels at each tap

    def __init__(self):
        super().__init__()
        # ReLUs run in place: every tapped tensor is only read afterwards (by a conv or a max-pool).
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True),  # 0, 1 (relu1)
            nn.MaxPool2d(3, 2),  # 2
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True),  # 3, 4 (relu2)
            nn.MaxPool2d(3, 2),  # 5
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),  # 6, 7 (relu3)
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),  # 8, 9 (relu4)
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True),  # 10, 11 (relu5)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return _run_taps(self.features, self.taps, x)


class VGG16Features(nn.Module):
    """torchvision ``VGG16.features[:30]`` (no batch norm); returns relu1_2, relu2_2, relu3_3, relu4_3, relu5_3."""

    taps = (3, 8, 15, 22, 29)
    channels = (64, 128, 256, 512, 512)

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        # torchvision cfg "D"; "M" = 2x2 max-pool. The final pool (index 30) comes after the last tap.
        for v in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512):
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(in_ch, v, 3, padding=1), nn.ReLU(inplace=True)]
                in_ch = v
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return _run_taps(self.features, self.taps, x)


def _run_taps(features: nn.Sequential, taps: Sequence[int], x: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for i, layer in enumerate(features):
        x = layer(x)
        if i in taps:
            out.append(x)
    return out


class LinearHead(nn.Module):
    """One LPIPS head: a 1x1 conv C -> 1 without bias (key ``model.1.weight``)."""

    def __init__(self, channels: int):  # Channels of the tapped activation.
        super().__init__()
        # Index 0 is the training-time Dropout of the lpips package; an Identity keeps the key
        # "model.1.weight" without any randomness if someone calls .train().
        self.model = nn.Sequential(nn.Identity(), nn.Conv2d(channels, 1, 1, bias=False))
        # Without a head file: all ones, i.e. the uncalibrated "baseline" LPIPS (plain channel sum).
        nn.init.ones_(self.model[1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)  # [B, C, h, w] -> [B, 1, h, w]


class LPIPSHeads(nn.Module):
    """The heads of all taps, named as in the ``lpips`` package files (``lin<i>.model.1.weight``)."""

    def __init__(self, channels: Sequence[int]):
        super().__init__()
        self.num_layers = len(channels)
        for i, c in enumerate(channels):
            setattr(self, f"lin{i}", LinearHead(c))

    def forward(self, diffs: Sequence[torch.Tensor]) -> torch.Tensor:
        # diffs[i]: [B, C_i, h_i, w_i] -> [B]
        total = 0
        for i, d in enumerate(diffs):
            total = total + getattr(self, f"lin{i}")(d).mean(dim=(1, 2, 3))  # [B, 1, h, w] -> [B]
        return total


def _unit_normalize(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    # eps is added to the norm (not under the sqrt), exactly as in the lpips package.
    return f / (f.square().sum(dim=1, keepdim=True).sqrt() + eps)


def infer_lpips_net(state: dict[str, torch.Tensor], path: PathLike) -> str:
    """``"alex"`` or ``"vgg"`` from the first conv of a torchvision backbone file."""
    w = state.get("features.0.weight")
    if w is not None and w.ndim == 4:
        if tuple(w.shape) == (64, 3, 11, 11):
            return "alex"
        if tuple(w.shape) == (64, 3, 3, 3):
            return "vgg"
    found = list(w.shape) if w is not None else "no such tensor"
    raise CheckpointError(f"{path}: not a torchvision AlexNet or VGG16 file (features.0.weight: {found})")


class LPIPS(FrozenModule):
    """LPIPS distance between image batches in [-1, 1]: ``lpips(x, y)`` -> ``[B]``.

    The official HyperInverter computes it on 256x256 images (resize before calling). All weights are
    frozen; gradients flow to both inputs.
    """

    def __init__(
        self,
        net: str = "alex",  # Feature extractor: "alex" (HyperInverter's training loss) or "vgg".
        backbone_path: Optional[PathLike] = None,  # torchvision ImageNet file; None = random (tests only).
        head_path: Optional[PathLike] = None,  # lpips head file (weights/v0.1/<net>.pth); None = all ones.
    ):
        super().__init__()
        if net not in LPIPS_NETS:
            raise ValueError(f"net must be one of {LPIPS_NETS}, got {net!r}")
        self.net_name = net
        self.net = AlexNetFeatures() if net == "alex" else VGG16Features()
        self.heads = LPIPSHeads(self.net.channels)
        # Not persistent: constants of the method, not weights.
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        if backbone_path is not None:
            self.load_backbone(backbone_path)
        if head_path is not None:
            self.load_heads(head_path)
        elif backbone_path is not None:  # a real backbone without heads is almost certainly a config slip
            log.warning("LPIPS: no head file given (set losses.lpips_head_path); using uniform heads, "
                        "i.e. uncalibrated LPIPS")
        self.freeze()

    @classmethod
    def from_files(cls, backbone_path: PathLike, head_path: PathLike, net: Optional[str] = None) -> LPIPS:
        """The calibrated metric from its two files; ``net`` (None) is read off the backbone file."""
        state = as_state_dict(read_weight_file(backbone_path, "LPIPS backbone"), backbone_path, "LPIPS backbone")
        found = infer_lpips_net(state, backbone_path)
        if net is not None and net != found:
            raise CheckpointError(f"{backbone_path}: holds a {found!r} backbone, but net={net!r} was asked for")
        model = cls(found, head_path=head_path)
        model._load_backbone_state(state, backbone_path)
        return model

    def load_backbone(self, path: PathLike) -> None:
        """Load a torchvision ImageNet file (``features.*``; ``classifier.*`` is ignored)."""
        what = f"torchvision {'AlexNet' if self.net_name == 'alex' else 'VGG16'}"
        self._load_backbone_state(as_state_dict(read_weight_file(path, what), path, what), path)

    def _load_backbone_state(self, state: dict[str, torch.Tensor], path: PathLike) -> None:
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
        load_weights_into(self.net, state, path)
        self.freeze()

    def load_heads(self, path: PathLike) -> None:
        """Load an lpips head file (``lin<i>.model.1.weight`` [1, C_i, 1, 1])."""
        what = f"LPIPS {self.net_name} head"
        load_weights_into(self.heads, as_state_dict(read_weight_file(path, what), path, what), path)
        self.freeze()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """images ``[B, 3, H, W]`` x2 in [-1, 1] (H, W >= 32) -> distances ``[B]`` (0 for identical images)."""
        check_pair(x, y, min_size=32)  # AlexNet's stride-4 stem and two pools need at least ~31 px
        # Two passes rather than one over cat([x, y]): a target without requires_grad then builds no graph,
        # which saves the memory of its activations during training.
        fx, fy = self.net(self._scale_input(x)), self.net(self._scale_input(y))
        diffs = [(_unit_normalize(a) - _unit_normalize(b)).square() for a, b in zip(fx, fy)]  # [B, C_l, h_l, w_l]
        return self.heads(diffs)

    def _scale_input(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.shift.to(x.dtype)) / self.scale.to(x.dtype)

    def extra_repr(self) -> str:
        return f"net={self.net_name!r}"
