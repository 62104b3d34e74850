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
from ..utils.distributed import Group
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


@dataclass
class _BatchRecord:
    """What one batch contributes to a :class:`MethodResult` (CPU tensors; picklable, so that a torchrun
    process can send its batches' records to process 0, which adds them up in batch order)."""

    index: int  # Batch number (global, as one process cuts the images).
    count: int  # Images in the batch.
    seconds: float
    first: Optional[float]  # history[0] * count (optimisation methods).
    last: Optional[float]  # history[-1] * count.
    values: dict[str, torch.Tensor]  # metric -> per-image values [B] (float64).
    kept: Optional[torch.Tensor]  # reconstructions kept for figures (the first batches only).
    dlib: Any = None  # DlibIdentityResult of the batch.
    features: Optional[torch.Tensor] = None  # Inception features [B, D] of the reconstructions.
    meter: Optional[EditabilityMeter] = None  # A meter that saw only this batch (model/predictor dropped).


def _record_batch(method: InversionMethod, index: int, x: torch.Tensor, batch_size: int, metrics, dlib, inception,
                  editability: Optional[EditabilitySetup], examples: int) -> _BatchRecord:
    from ..metrics.fid import extract_features

    out = method.invert(x)
    target = x.to(out.reconstructions.device)
    values = {name: v.detach().double().cpu() for name, v in metrics(out.reconstructions, target).items()}
    n = len(x)
    record = _BatchRecord(index, n, out.seconds, out.history[0] * n if out.history else None,
                          out.history[-1] * n if out.history else None, values,
                          out.reconstructions[:examples].cpu() if index * batch_size < examples else None)
    if dlib is not None:
        record.dlib = dlib(out.reconstructions, target)
    if inception is not None:
        record.features = extract_features([out.reconstructions], inception)
    if editability is not None:
        meter = EditabilityMeter(method.model, editability.predictor, editability.directions, editability.config)
        meter.update(target, out)
        if index * batch_size >= meter.config.examples:
            meter.examples = []  # only the first batches' examples can be shown
        meter.model = meter.predictor = None  # not sent between processes
        record.meter = meter
    return record


def _add_meter(total: EditabilityMeter, part: EditabilityMeter) -> None:
    """Add a one-batch meter's sums to ``total`` (exactly the additions ``update`` would have made)."""
    total.count += part.count
    for key, value in part.sums.items():
        total.sums[key] += value
    for name, acc in part.per_attr.items():
        for key, value in acc.items():
            total.per_attr[name][key] += value
    room = total.config.examples - sum(e.shape[0] for e in total.examples) // 3
    for rows in part.examples:
        take = rows[:max(0, room) * 3]
        if take.shape[0]:
            total.examples.append(take)
            room -= take.shape[0] // 3


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
    group: Optional[Group] = None,
) -> Optional[MethodResult]:
    """Invert ``images`` ``[N, 3, R, R]`` (CPU or device) in batches and measure everything requested.

    Args:
        metrics: per-image reconstruction metrics (default: those needing no weight file).
        dlib: a :class:`~hyperinverter.metrics.DlibIdentity` (or None).
        inception: a feature extractor for FID / KID; ``real_features`` ``[N, D]`` are the inputs' features.
        editability: regressor + directions (or None).
        examples: how many reconstructions to keep for figures.
        warmup: run the method once untimed (few steps) on the first batch (of this process) first.
        progress: a progress bar over the batches (process 0's, counting every process's batches).
        group: torchrun processes to share the batches with (``utils.distributed.inference_group``): the
            batches are cut as one process cuts them and go round-robin to the processes; process 0 adds up
            their numbers in batch order, so a deterministic method gives one process's numbers (seconds
            aside). Every process must call this; the result is returned on process 0, None on the others.
    """
    from tqdm import tqdm

    from ..metrics.dlib_identity import summarize
    from ..metrics.fid import fid_from_features, kid_from_features

    group = group or Group()
    metrics = metrics or ReconstructionMetrics()
    parts = batches(images, batch_size)
    mine = list(group.rounds(list(range(len(parts)))))
    if warmup and mine and mine[0] is not None:
        method.warmup(parts[mine[0]])
    records: list[_BatchRecord] = []
    with tqdm(total=len(parts), desc=method.name, unit="batch", disable=not progress or not group.is_main) as bar:
        for k in mine:
            if k is not None:
                records.append(_record_batch(method, k, parts[k], batch_size, metrics, dlib, inception, editability,
                                             examples))
            bar.update(group.sum(k is not None))
    gathered = group.gather(records)
    if gathered is None:
        return None
    records = sorted((r for part in gathered for r in part), key=lambda r: r.index)
    values: dict[str, list[torch.Tensor]] = {}
    seconds, firsts, lasts, kept = 0.0, [], [], []
    for r in records:  # the order and arithmetic of one process's loop
        seconds += r.seconds
        if r.first is not None:
            firsts.append(r.first)
            lasts.append(r.last)
        for name, v in r.values.items():
            values.setdefault(name, []).append(v)
        if r.kept is not None and sum(len(k) for k in kept) < examples:
            kept.append(r.kept[:examples - sum(len(k) for k in kept)])
    n = images.shape[0]
    means = {k: float(torch.cat(v).mean()) for k, v in values.items()}
    stds = {k: float(torch.cat(v).std()) if torch.cat(v).numel() > 1 else 0.0 for k, v in values.items()}
    result = MethodResult(method.name, method.label, method.kind, n, seconds / n, means, stds, method.describe(),
                          loss_first=sum(firsts) / n if firsts else None, loss_last=sum(lasts) / n if lasts else None,
                          examples=torch.cat(kept) if kept else None)
    if dlib is not None:
        result.dlib = summarize([r.dlib for r in records])
    if inception is not None and real_features is not None:
        fake = torch.cat([r.features for r in records])
        kid = kid_from_features(fake, real_features, subset_size=min(1000, len(fake), len(real_features)))
        result.fid = {"fid": fid_from_features(real_features, fake), "kid_mean": kid.mean, "kid_std": kid.std,
                      "num_images": len(fake), "kid_subset_size": kid.subset_size}
    if editability is not None:
        meter = EditabilityMeter(method.model, editability.predictor, editability.directions, editability.config)
        for r in records:
            _add_meter(meter, r.meter)
        result.editability = meter.summary()
        result.edit_examples = meter.example_images()
    return result


def evaluate_methods(methods: Sequence[InversionMethod], images: torch.Tensor, batch_size: int = 8,
                     metrics: Optional[ReconstructionMetrics] = None, dlib: Optional[Callable] = None,
                     inception: Optional[Callable] = None, editability: Optional[EditabilitySetup] = None,
                     examples: int = 8, runtime: bool = False, progress: bool = False,
                     log: Callable[[str], None] = lambda s: None, group: Optional[Group] = None
                     ) -> list[MethodResult]:
    """:func:`evaluate_method` for every method on the same images (+ :func:`measure_runtime` if asked).

    ``group``: torchrun processes sharing the batches (see :func:`evaluate_method`); every process calls
    this, process 0 gets the results (and times ``runtime`` alone), the others an empty list."""
    from ..metrics.fid import extract_features

    from .runtime import measure_runtime

    group = group or Group()
    real = None
    if inception is not None:
        if images.shape[0] < 2:
            log("FID/KID skipped: they need at least 2 images")
            inception = None
        else:  # the inputs' features, shared out like the batches and put together in order
            parts = batches(images, batch_size)
            mine = [(k, extract_features([parts[k]], inception)) for k in group.rounds(list(range(len(parts))))
                    if k is not None]
            gathered = group.all_gather(mine)
            real = torch.cat([f for _, f in sorted((kf for part in gathered for kf in part), key=lambda kf: kf[0])])
    results = []
    for method in methods:
        log(f"{method.name}: inverting {images.shape[0]} images")
        result = evaluate_method(method, images, batch_size, metrics, dlib, inception, real, editability, examples,
                                 progress=progress, group=group)
        if result is None:
            continue
        if runtime:
            result.runtime = measure_runtime(method, images)
        results.append(result)
    return results
