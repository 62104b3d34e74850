"""Evaluation metrics of the HyperInverter paper, per image and on batches, on CPU or CUDA.

Images are ``[B, 3, H, W]`` floats in [-1, 1].

* Reconstruction: :func:`mse` and LPIPS at 256x256 (:func:`resize_for_protocol`), :func:`psnr`,
  :func:`ssim`, :func:`ms_ssim` at full resolution, ID similarity (ArcFace cosine); together in
  :class:`ReconstructionMetrics`.
* Identity without downloads: dlib's 128-D face descriptor (:class:`DlibIdentity`; needs the optional
  ``dlib`` and ``face_recognition_models`` packages, :func:`dlib_identity_status` says why not).
* Realism: FID and KID on Inception pool3 features (:class:`InceptionFeatures`, :func:`compute_fid_kid`).

The networks (:class:`~hyperinverter.losses.LPIPS`, :class:`~hyperinverter.losses.IdentitySimilarity`,
:class:`InceptionFeatures`) read their standard weight files with ``torch.load(weights_only=True)``;
nothing is downloaded. A metric whose file is not given is unavailable (:func:`available_metrics`).
"""

from ..losses.identity import IdentitySimilarity
from ..losses.lpips import LPIPS
from .dlib_identity import DlibIdentity, DlibIdentityResult, DlibUnavailableError, dlib_identity_status
from .fid import (
    FeatureExtractor,
    FidKidResult,
    KIDResult,
    compute_fid_kid,
    extract_features,
    feature_statistics,
    fid_from_features,
    frechet_distance,
    kid_from_features,
)
from .image import MS_SSIM_WEIGHTS, PROTOCOL_SIZE, ms_ssim, ms_ssim_min_size, mse, psnr, resize_for_protocol, ssim
from .inception import InceptionFeatures
from .suite import METRIC_NAMES, MetricStatus, ReconstructionMetrics, available_metrics

__all__ = [
    "LPIPS",
    "METRIC_NAMES",
    "MS_SSIM_WEIGHTS",
    "PROTOCOL_SIZE",
    "DlibIdentity",
    "DlibIdentityResult",
    "DlibUnavailableError",
    "FeatureExtractor",
    "FidKidResult",
    "IdentitySimilarity",
    "InceptionFeatures",
    "KIDResult",
    "MetricStatus",
    "ReconstructionMetrics",
    "available_metrics",
    "compute_fid_kid",
    "dlib_identity_status",
    "extract_features",
    "feature_statistics",
    "fid_from_features",
    "frechet_distance",
    "kid_from_features",
    "ms_ssim",
    "ms_ssim_min_size",
    "mse",
    "psnr",
    "resize_for_protocol",
    "ssim",
]
