"""Fréchet Inception Distance (FID) and Kernel Inception Distance (KID) from feature sets.

Both compare two sets of feature vectors ``[N, D]`` (Inception pool3 features, ``D = 2048``, for the
real metrics; any :class:`FeatureExtractor` works). Statistics are computed in float64 with NumPy.

* FID (Heusel et al. 2017): ``||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))`` with the unbiased
  (N - 1) covariances, as pytorch-fid and torch-fidelity.
* KID (Binkowski et al. 2018), as torch-fidelity (the official HyperInverter evaluation): unbiased
  MMD^2 with the kernel ``k(a, b) = (a.b / D + 1)^3``, averaged over ``subsets`` random pairs of
  subsets of ``subset_size`` samples each (drawn without replacement by ``numpy.random.RandomState(seed)``,
  default seed 2020 as torch-fidelity). The estimator is unbiased, so for two samples of the same
  distribution (or a set against itself) it scatters around 0 and may be slightly negative; the
  official tables print KID x 10^3.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from typing import Iterable, NamedTuple, Optional, Protocol, Union, runtime_checkable

import numpy as np
import torch

log = logging.getLogger("hyperinverter")

ArrayLike = Union[np.ndarray, torch.Tensor]

#: Defaults of torch-fidelity (and of the official HyperInverter ``realistic_metrics.py``).
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
KID_SEED = 2020


def _as_float64(a: ArrayLike, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().to("cpu", torch.float64).numpy()
    out = np.asarray(a, dtype=np.float64)
    if not np.isfinite(out).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return out


def _features(f: ArrayLike, name: str) -> np.ndarray:
    f = _as_float64(f, name)
    if f.ndim != 2 or f.shape[0] < 2 or f.shape[1] < 1:
        raise ValueError(f"{name} must be features [N, D] with N >= 2, got shape {list(f.shape)}")
    return f


def _has_scipy() -> bool:
    try:
        importlib.import_module("scipy.linalg")
    except ImportError:
        return False
    return True


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative eigenvalues -> 0)."""
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def _trace_sqrt_product_eigh(s1: np.ndarray, s2: np.ndarray) -> float:
    # S1 S2 is similar to A S2 A with A = S1^(1/2) (symmetric PSD), so Tr (S1 S2)^(1/2) is the sum of the
    # square roots of the eigenvalues of A S2 A. Unlike a general sqrtm this stays real and needs no eps
    # for the singular covariances of sets smaller than D.
    a = _sqrt_psd(s1)
    m = a @ s2 @ a
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(ev, 0, None)).sum())


def _trace_sqrt_product_scipy(s1: np.ndarray, s2: np.ndarray, eps: float) -> float:
    # pytorch-fid's calculate_frechet_distance, step for step.
    from scipy import linalg

    covmean = linalg.sqrtm(s1.dot(s2))  # (``disp=False`` of pytorch-fid is deprecated in SciPy 1.16)
    if not np.isfinite(covmean).all():
        log.warning("FID: singular product of covariances; adding %g to their diagonals", eps)
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"FID: matrix square root has a large imaginary part ({np.max(np.abs(covmean.imag)):g})")
        covmean = covmean.real
    return float(np.trace(covmean))


def frechet_distance(mu1: ArrayLike, sigma1: ArrayLike, mu2: ArrayLike, sigma2: ArrayLike,
                     method: str = "auto", eps: float = 1e-6) -> float:
    """Fréchet distance of two Gaussians ``N(mu1, sigma1)``, ``N(mu2, sigma2)`` (float64).

    ``d = ||mu1 - mu2||^2 + Tr(sigma1) + Tr(sigma2) - 2 Tr((sigma1 sigma2)^(1/2))``.

    Args:
        method: how ``Tr((sigma1 sigma2)^(1/2))`` is found. ``"eigh"``: from the eigenvalues of the
            symmetric ``A sigma2 A`` with ``A = sigma1^(1/2)`` (exact for covariance matrices, always real).
            ``"scipy"``: ``scipy.linalg.sqrtm`` of the product, as pytorch-fid, retrying with ``eps`` on the
            diagonals if it is singular. ``"auto"``: scipy when installed, else eigh. Both agree to
            numerical precision on covariance matrices.
        eps: diagonal offset of the scipy retry.
    """
    m1, m2 = _as_float64(mu1, "mu1"), _as_float64(mu2, "mu2")
    s1, s2 = _as_float64(sigma1, "sigma1"), _as_float64(sigma2, "sigma2")
    m1, m2 = np.atleast_1d(m1), np.atleast_1d(m2)
    s1, s2 = np.atleast_2d(s1), np.atleast_2d(s2)
    d = m1.shape[0]
    if m1.shape != (d,) or m2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"expected means [D] and covariances [D, D] of one D, got {list(m1.shape)}, "
                         f"{list(s1.shape)}, {list(m2.shape)}, {list(s2.shape)}")
    if method == "auto":
        method = "scipy" if _has_scipy() else "eigh"
    if method == "eigh":
        tr_covmean = _trace_sqrt_product_eigh(s1, s2)
    elif method == "scipy":
        tr_covmean = _trace_sqrt_product_scipy(s1, s2, eps)
    else:
        raise ValueError(f"method must be 'auto', 'eigh' or 'scipy', got {method!r}")
    diff = m1 - m2
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)


def feature_statistics(features: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and unbiased covariance ``[D, D]`` (float64) of features ``[N, D]``, N >= 2."""
    f = _features(features, "features")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def fid_from_features(features1: ArrayLike, features2: ArrayLike, method: str = "auto") -> float:
    """FID between two feature sets ``[N1, D]`` and ``[N2, D]`` (0 for a set against itself, up to rounding).

    Fewer samples than dimensions give singular covariances; the value is then still defined but
    strongly biased (the official protocol uses thousands of images for D = 2048).
    """
    f1, f2 = _features(features1, "features1"), _features(features2, "features2")
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature dimensions differ: {f1.shape[1]} and {f2.shape[1]}")
    mu1, s1 = feature_statistics(f1)
    mu2, s2 = feature_statistics(f2)
    return frechet_distance(mu1, s1, mu2, s2, method=method)


def _polynomial_kernel(a: np.ndarray, b: np.ndarray, degree: int, gamma: float, coef0: float) -> np.ndarray:
    return (a @ b.T * gamma + coef0) ** degree


def mmd2_unbiased(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> float:
    """torch-fidelity's unbiased MMD^2 of m x m kernel matrices: off-diagonal means of K_XX and K_YY,
    minus twice the full mean of K_XY."""
    m = k_xx.shape[0]
    t_xx = k_xx.sum() - np.trace(k_xx)
    t_yy = k_yy.sum() - np.trace(k_yy)
    return float((t_xx + t_yy) / (m * (m - 1)) - 2 * k_xy.sum() / (m * m))


class KIDResult(NamedTuple):
    """KID over random subsets: ``mean`` and population ``std`` of the per-subset MMD^2 values."""

    mean: float
    std: float
    subset_size: int  # the size actually used (after clipping to the smaller set)
    subsets: int


def kid_from_features(features1: ArrayLike, features2: ArrayLike, subsets: int = KID_SUBSETS,
                      subset_size: int = KID_SUBSET_SIZE, degree: int = 3, gamma: Optional[float] = None,
                      coef0: float = 1.0, seed: int = KID_SEED) -> KIDResult:
    """KID between two feature sets ``[N1, D]``, ``[N2, D]`` -> :class:`KIDResult` (mean, std, ...).

    As torch-fidelity's ``kid_features_to_metric`` (degree 3, ``gamma = 1 / D``, coef 1, seed 2020), with
    two differences: kernels are evaluated in float64 (torch-fidelity: float32), and a ``subset_size``
    larger than the smaller set is clipped to it with a warning instead of raising. With the clipped size
    equal to both set sizes, every subset is a permutation of the whole set and all ``subsets`` values are
    identical (std 0).

    The unbiased estimate can be slightly negative for equal distributions (e.g. a set against itself).
    """
    f1, f2 = _features(features1, "features1"), _features(features2, "features2")
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature dimensions differ: {f1.shape[1]} and {f2.shape[1]}")
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1, got {subsets}")
    if subset_size < 2:
        raise ValueError(f"subset_size must be >= 2, got {subset_size}")
    n1, n2 = len(f1), len(f2)
    if subset_size > min(n1, n2):
        log.warning("KID: subset size %d is larger than the feature sets (%d and %d); using %d. "
                    "Values from different subset sizes are not comparable.", subset_size, n1, n2, min(n1, n2))
        subset_size = min(n1, n2)
    if gamma is None:
        gamma = 1.0 / f1.shape[1]
    rng = np.random.RandomState(seed)
    values = np.zeros(subsets)
    for i in range(subsets):
        a = f1[rng.choice(n1, subset_size, replace=False)]
        b = f2[rng.choice(n2, subset_size, replace=False)]
        values[i] = mmd2_unbiased(_polynomial_kernel(a, a, degree, gamma, coef0),
                                  _polynomial_kernel(a, b, degree, gamma, coef0),
                                  _polynomial_kernel(b, b, degree, gamma, coef0))
    return KIDResult(float(values.mean()), float(values.std()), subset_size, subsets)


@runtime_checkable
class FeatureExtractor(Protocol):
    """Anything that maps images ``[B, 3, H, W]`` in [-1, 1] to features ``[B, D]``.

    :class:`~hyperinverter.metrics.inception.InceptionFeatures` is the real one (D = 2048); tests plug in
    small random networks.
    """

    def __call__(self, images: torch.Tensor) -> torch.Tensor: ...


def _device_of(extractor: FeatureExtractor) -> Optional[torch.device]:
    if isinstance(extractor, torch.nn.Module):
        for t in extractor.parameters():
            return t.device
        for t in extractor.buffers():
            return t.device
    return None


@torch.no_grad()
def extract_features(images: Iterable[torch.Tensor], extractor: FeatureExtractor,
                     device: Optional[Union[str, torch.device]] = None) -> torch.Tensor:
    """Features ``[N, D]`` (float64, CPU) of every batch ``[B, 3, H, W]`` of ``images``.

    Batches go to ``device``, or to the extractor's device when it is a module with tensors, else they
    stay where they are.
    """
    target = torch.device(device) if device is not None else _device_of(extractor)
    out = []
    for i, batch in enumerate(images):
        if not isinstance(batch, torch.Tensor) or batch.ndim != 4:
            raise ValueError(f"batch {i}: expected an image tensor [B, 3, H, W], got "
                             f"{list(batch.shape) if isinstance(batch, torch.Tensor) else type(batch).__name__}")
        if target is not None:
            batch = batch.to(target)
        feats = extractor(batch)
        if feats.ndim != 2 or feats.shape[0] != batch.shape[0]:
            raise ValueError(f"batch {i}: the extractor returned {list(feats.shape)} for {batch.shape[0]} images; "
                             f"expected [B, D]")
        out.append(feats.detach().to("cpu", torch.float64))
    if not out:
        raise ValueError("no images: the iterable yielded no batches")
    return torch.cat(out)


@dataclass(frozen=True)
class FidKidResult:
    """FID and KID between a real and a generated image set (KID as mean and std over subsets)."""

    fid: float
    kid_mean: float
    kid_std: float
    num_real: int
    num_fake: int
    kid_subset_size: int  # after clipping to the smaller set
    kid_subsets: int


def compute_fid_kid(real_images: Iterable[torch.Tensor], fake_images: Iterable[torch.Tensor],
                    extractor: FeatureExtractor, device: Optional[Union[str, torch.device]] = None,
                    kid_subsets: int = KID_SUBSETS, kid_subset_size: int = KID_SUBSET_SIZE, seed: int = KID_SEED,
                    fid_method: str = "auto") -> FidKidResult:
    """FID and KID of two iterables of image batches ``[B, 3, H, W]`` in [-1, 1] (e.g. DataLoaders).

    ``extractor`` is normally ``InceptionFeatures.from_file(...)`` (on the wanted device); every image is
    passed through it once under ``torch.no_grad``. Both sets need at least 2 images; for meaningful
    numbers use thousands (FID is biased upwards for small sets).
    """
    real = extract_features(real_images, extractor, device)
    fake = extract_features(fake_images, extractor, device)
    fid = fid_from_features(real, fake, method=fid_method)
    # (fake, real): torch-fidelity's order (input1 = generated), which fixes the subsets a seed draws.
    kid = kid_from_features(fake, real, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
    return FidKidResult(fid=fid, kid_mean=kid.mean, kid_std=kid.std, num_real=len(real), num_fake=len(fake),
                        kid_subset_size=kid.subset_size, kid_subsets=kid.subsets)
