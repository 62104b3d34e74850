"""Running methods on the same images and collecting the paper's numbers: :func:`evaluate_methods`.

Each method inverts the images in batches; per batch the reconstruction metrics, the optional dlib
identity, Inception features (FID / KID against the inputs) and editability are accumulated, then only
a few reconstructions are kept for figures. Seconds per image are the methods' own device-synchronised
wall times summed over batches (after an untimed warm-up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch

from ..metrics import ReconstructionMetrics
from .base import InversionMethod
from .editability import EditabilityConfig, EditabilityMeter


@dataclass
class EditabilitySetup:
    """A regressor and directions: what editability needs."""

    predictor: Any  # AttributePredictor (e.g. AttributeRegressor) on the methods' device.
    directions: dict  # attribute name -> Direction in W.
    config: EditabilityConfig = field(default_factory=EditabilityConfig)  # Strength, detail blur, examples.


@dataclass
class MethodResult:
    """The numbers of one method over all images (means; ``metric_std`` the standard deviations)."""

    name: str  # --methods key.
    label: str  # Row name in tables.
    kind: str  # encoder / optimisation / hybrid.
    num_images: int
    seconds_per_image: float  # Mean wall time per image while evaluating (warm-up excluded).
    metrics: dict[str, float]  # mse, psnr, ssim, ms_ssim, lpips, id: means over images.
    metric_std: dict[str, float]  # Their standard deviations over images.
    config: dict  # The method's description (config, LPIPS loss on/off).
    loss_first: Optional[float] = None  # Optimisation methods: mean loss before the first step ...
    loss_last: Optional[float] = None  # ... and of the returned result (means over batches).
    dlib: Optional[dict] = None  # summarize() of the dlib identity results.
    fid: Optional[dict] = None  # {"fid", "kid_mean", "kid_std", ...} against the inputs.
    editability: Optional[dict] = None  # EditabilityMeter.summary().
    runtime: Optional[dict] = None  # {batch size: seconds per image} from measure_runtime.
    examples: Optional[torch.Tensor] = field(default=None, repr=False)  # [k, 3, R, R] first reconstructions.
    edit_examples: Optional[torch.Tensor] = field(default=None, repr=False)  # [3k, 3, R, R] (-s, 0, +s).

    def to_dict(self) -> dict:
        """JSON-able (tensors left out)."""
        out = {k: v for k, v in self.__dict__.items() if k not in ("examples", "edit_examples")}
        return _finite(out)


def _finite(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def batches(images: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return list(images.split(batch_size))


def evaluate_method(
    method: InversionMethod,
    images: torch.Tensor,
    batch_size: int = 8,
    metrics: Optional[ReconstructionMetrics] = None,
    dlib: Optional[Callable] = None,
    inception: Optional[Callable] = None,
    real_features: Optional[torch.Tensor] = None,
    editability: Optional[EditabilitySetup] = None,
    examples: int = 8,
    warmup: bool = True,
    progress: bool = False,
) -> MethodResult:
    """Invert ``images`` ``[N, 3, R, R]`` (CPU or device) in batches and measure everything requested.

    Args:
        metrics: per-image reconstruction metrics (default: those needing no weight file).
        dlib: a :class:`~hyperinverter.metrics.DlibIdentity` (or None).
        inception: a feature extractor for FID / KID; ``real_features`` ``[N, D]`` are the inputs' features.
        editability: regressor + directions (or None).
        examples: how many reconstructions to keep for figures.
        warmup: run the method once untimed (few steps) on the first batch first.
    """
    from tqdm import tqdm

    from ..metrics.dlib_identity import summarize
    from ..metrics.fid import extract_features, fid_from_features, kid_from_features

    metrics = metrics or ReconstructionMetrics()
    parts = batches(images, batch_size)
    if warmup:
        method.warmup(parts[0])
    values: dict[str, list[torch.Tensor]] = {}
    dlib_results, fake_features, kept = [], [], []
    seconds, firsts, lasts = 0.0, [], []
    meter = EditabilityMeter(method.model, editability.predictor, editability.directions, editability.config) \
        if editability is not None else None
    for x in tqdm(parts, desc=method.name, unit="batch", disable=not progress):
        out = method.invert(x)
        seconds += out.seconds
        if out.history:
            firsts.append(out.history[0] * len(x))
            lasts.append(out.history[-1] * len(x))
        target = x.to(out.reconstructions.device)
        for name, v in metrics(out.reconstructions, target).items():
            values.setdefault(name, []).append(v.detach().double().cpu())
        if dlib is not None:
            dlib_results.append(dlib(out.reconstructions, target))
        if inception is not None:
            fake_features.append(extract_features([out.reconstructions], inception))
        if meter is not None:
            meter.update(target, out)
        if sum(len(k) for k in kept) < examples:
            kept.append(out.reconstructions[:examples - sum(len(k) for k in kept)].cpu())
        del out
    n = images.shape[0]
    means = {k: float(torch.cat(v).mean()) for k, v in values.items()}
    stds = {k: float(torch.cat(v).std()) if torch.cat(v).numel() > 1 else 0.0 for k, v in values.items()}
    result = MethodResult(method.name, method.label, method.kind, n, seconds / n, means, stds, method.describe(),
                          loss_first=sum(firsts) / n if firsts else None, loss_last=sum(lasts) / n if lasts else None,
                          examples=torch.cat(kept) if kept else None)
    if dlib is not None:
        result.dlib = summarize(dlib_results)
    if inception is not None and real_features is not None:
        fake = torch.cat(fake_features)
        kid = kid_from_features(fake, real_features, subset_size=min(1000, len(fake), len(real_features)))
        result.fid = {"fid": fid_from_features(real_features, fake), "kid_mean": kid.mean, "kid_std": kid.std,
                      "num_images": len(fake), "kid_subset_size": kid.subset_size}
    if meter is not None:
        result.editability = meter.summary()
        result.edit_examples = meter.example_images()
    return result


def evaluate_methods(methods: Sequence[InversionMethod], images: torch.Tensor, batch_size: int = 8,
                     metrics: Optional[ReconstructionMetrics] = None, dlib: Optional[Callable] = None,
                     inception: Optional[Callable] = None, editability: Optional[EditabilitySetup] = None,
                     examples: int = 8, runtime: bool = False, progress: bool = False,
                     log: Callable[[str], None] = lambda s: None) -> list[MethodResult]:
    """:func:`evaluate_method` for every method on the same images (+ :func:`measure_runtime` if asked)."""
    from ..metrics.fid import extract_features

    from .runtime import measure_runtime

    real = None
    if inception is not None:
        if images.shape[0] < 2:
            log("FID/KID skipped: they need at least 2 images")
            inception = None
        else:
            real = extract_features(batches(images, batch_size), inception)
    results = []
    for method in methods:
        log(f"{method.name}: inverting {images.shape[0]} images")
        result = evaluate_method(method, images, batch_size, metrics, dlib, inception, real, editability, examples,
                                 progress=progress)
        if runtime:
            result.runtime = measure_runtime(method, images)
        results.append(result)
    return results
