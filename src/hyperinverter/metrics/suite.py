"""Which metrics can run with the weight files at hand, and the per-image reconstruction metrics together.

Metrics that need a pretrained network (LPIPS, ID similarity, FID, KID) run only when its weight file is
given; otherwise they are reported as unavailable with the reason, never approximated with random or
default weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch

from ..losses._common import PathLike
from ..losses.identity import IdentitySimilarity
from ..losses.lpips import LPIPS
from .image import ms_ssim, ms_ssim_min_size, mse, psnr, resize_for_protocol, ssim

#: Every metric this package computes, in report order.
METRIC_NAMES = ("mse", "psnr", "ssim", "ms_ssim", "lpips", "id", "fid", "kid")

#: Command-line options named in the "unavailable" reasons.
OPTION_NAMES = {
    "inception": "--inception",
    "lpips_backbone": "--lpips-backbone",
    "lpips_head": "--lpips-head",
    "id": "--id",
}


@dataclass(frozen=True)
class MetricStatus:
    """Whether a metric can run; ``reason`` says why not (empty when it can)."""

    name: str
    available: bool
    reason: str = ""


def _file_problem(path: Optional[PathLike], what: str, option: str) -> Optional[str]:
    """None when ``path`` is an existing file, else the reason it cannot be used."""
    if path is None or str(path) == "":
        return f"no {what} weight file given ({option})"
    p = Path(path)
    if not p.exists():
        return f"{what} weight file not found: {p} ({option})"
    if not p.is_file():
        return f"{what} weight file is not a file: {p} ({option})"
    return None


def available_metrics(inception_path: Optional[PathLike] = None, lpips_backbone_path: Optional[PathLike] = None,
                      lpips_head_path: Optional[PathLike] = None, id_path: Optional[PathLike] = None,
                      image_size: Optional[int] = None) -> dict[str, MetricStatus]:
    """The status of every metric in :data:`METRIC_NAMES`, given the weight files at hand.

    Args:
        inception_path: FID Inception file (``pt_inception-2015-12-05-6726825d.pth``): FID and KID.
        lpips_backbone_path: torchvision AlexNet/VGG16 ImageNet file; LPIPS also needs
        lpips_head_path: the ``lpips`` package head file (uncalibrated LPIPS is not reported).
        id_path: ArcFace IR-SE-50 file (``model_ir_se50.pth``): ID similarity.
        image_size: smallest side of the images, if known: MS-SSIM needs at least 161 px.

    Only presence is checked here (a given path that does not exist makes the metric unavailable, with
    the path in the reason); whether a file holds the right tensors shows when it is loaded.
    """
    status = {name: MetricStatus(name, True) for name in ("mse", "psnr", "ssim", "ms_ssim")}
    if image_size is not None and image_size < ms_ssim_min_size():
        status["ms_ssim"] = MetricStatus("ms_ssim", False, f"images of {image_size} px are smaller than the "
                                                           f"{ms_ssim_min_size()} px MS-SSIM needs")
    problem = (_file_problem(lpips_backbone_path, "LPIPS backbone", OPTION_NAMES["lpips_backbone"])
               or _file_problem(lpips_head_path, "LPIPS head", OPTION_NAMES["lpips_head"]))
    status["lpips"] = MetricStatus("lpips", problem is None, problem or "")
    problem = _file_problem(id_path, "ArcFace IR-SE-50", OPTION_NAMES["id"])
    status["id"] = MetricStatus("id", problem is None, problem or "")
    problem = _file_problem(inception_path, "Inception", OPTION_NAMES["inception"])
    for name in ("fid", "kid"):
        status[name] = MetricStatus(name, problem is None, problem or "")
    return {name: status[name] for name in METRIC_NAMES}


class ReconstructionMetrics:
    """Per-image reconstruction metrics of a batch, with the official protocol's resolutions.

    ``metrics(reconstructions, targets)`` -> ``{name: [B] tensor}`` for ``mse`` and ``lpips`` (at 256x256,
    :func:`resize_for_protocol`), ``psnr``, ``ssim`` and ``ms_ssim`` (full resolution; MS-SSIM only when
    the images are large enough) and ``id`` (ArcFace cosine similarity), each only when it can run.
    Inputs are ``[B, 3, H, W]`` in [-1, 1], clipped to it; no gradients are recorded.

    The ID similarity here is pSp / e4e's ArcFace IR-SE-50 cosine on the fixed face crop. The official
    HyperInverter script (``calc_id_loss_parallel.py``) instead uses CurricularFace IR-101 on MTCNN-aligned
    faces, so its numbers are not directly comparable.
    """

    def __init__(self, lpips: Optional[LPIPS] = None, identity: Optional[IdentitySimilarity] = None):
        self.lpips = lpips
        self.identity = identity

    @classmethod
    def from_paths(cls, lpips_backbone_path: Optional[PathLike] = None, lpips_head_path: Optional[PathLike] = None,
                   id_path: Optional[PathLike] = None,
                   device: Union[str, torch.device] = "cpu") -> ReconstructionMetrics:
        """Load the networks whose files are given (LPIPS needs both of its files).

        Raises:
            CheckpointError: a given file is missing, unreadable or does not match its network.
            ValueError: only one of the two LPIPS files is given.
        """
        lpips = None
        if (lpips_backbone_path is None) != (lpips_head_path is None):
            raise ValueError("LPIPS needs both the backbone and the head file (uncalibrated LPIPS is not reported)")
        if lpips_backbone_path is not None:
            lpips = LPIPS.from_files(lpips_backbone_path, lpips_head_path).to(device)
        identity = IdentitySimilarity(id_path).to(device) if id_path is not None else None
        return cls(lpips, identity)

    @property
    def names(self) -> list[str]:
        """Metrics this instance can compute on large enough images."""
        have = {"lpips": self.lpips is not None, "id": self.identity is not None}
        return [n for n in METRIC_NAMES[:6] if have.get(n, True)]

    @torch.no_grad()
    def __call__(self, reconstructions: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        x, y = reconstructions.clamp(-1, 1), targets.clamp(-1, 1)
        x256, y256 = resize_for_protocol(x), resize_for_protocol(y)
        out = {"mse": mse(x256, y256), "psnr": psnr(x, y), "ssim": ssim(x, y)}
        if min(x.shape[-2:]) >= ms_ssim_min_size():
            out["ms_ssim"] = ms_ssim(x, y)
        if self.lpips is not None:
            out["lpips"] = self.lpips(x256, y256)
        if self.identity is not None:
            out["id"] = self.identity(x, y)
        return {name: out[name] for name in METRIC_NAMES if name in out}
