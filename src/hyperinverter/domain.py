"""What a model was trained on, and whether an input looks like it: ``domain.json`` beside ``config.json``.

A model folder may hold a :class:`DomainRecord`: the kind of images it was trained on, in words
("procedural portraits", "FFHQ-aligned faces"), whether those are FFHQ-aligned face crops, and the
typical phase-I (W-encoder) reconstruction quality on validation images (PSNR mean, spread and low
percentile). An input whose phase-I PSNR falls far below that is almost certainly outside the domain:
the generator cannot draw anything like it, and the residuals Δθ of phase II then paint the input
into a picture of the domain rather than reconstruct it. The front ends (``invert``, ``edit``,
``demo --images``, the web page) say so in one line (:meth:`DomainRecord.outside_message`); a model
without the record says nothing.

``record_domain_stats(model, images)`` measures the figures (``hyperinverter export --validation`` and
``hyperinverter domain-stats`` write them); ``load_domain`` reads them back. A model trained on the procedural
portraits also records their framing (:data:`~hyperinverter.portraits.FRAMINGS`): whatever renders portraits
for it (the demo, ``directions fit-portraits``, the quality benchmark) reads it with :func:`portrait_framing`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Union

import torch

from .errors import CheckpointError

PathLike = Union[str, os.PathLike]
DOMAIN_FILE = "domain.json"
FORMAT = "hyperinverter.domain/1"
#: How far below the low end of the validation figures (dB) an input must fall to be called outside.
MARGIN_DB = 3.0
#: Without a spread (a single published mean), how far below the mean (dB).
MEAN_ONLY_MARGIN_DB = 6.0


@dataclass
class DomainRecord:
    """What a model was trained on and how well phase I reconstructs its validation images.

    Attributes:
        kind: the training images in words (e.g. ``"procedural portraits"``, ``"FFHQ-aligned faces"``).
        aligned_faces: whether the model takes FFHQ-aligned face crops (what ``--align`` produces).
        psnr_mean: mean phase-I PSNR (dB) on the validation images (None: not measured).
        psnr_std: its standard deviation (None: unknown).
        psnr_p05: its 5th percentile (None: unknown).
        psnr_min: the lowest value.
        count: how many validation images the figures come from (0 for published figures).
        resolution: the image size they were measured at.
        threshold_db: inputs whose phase-I PSNR is below this are called outside the domain (None: derived
            from the figures, see :meth:`threshold`).
        source: where the figures come from (a folder, or a paper's table).
        framing: for a model trained on the procedural portraits, the
            :data:`~hyperinverter.portraits.FRAMINGS` entry it was trained on (``"portrait"``, ``"face"``);
            ``""``: not a portrait model, or unknown (portrait code reads it as ``"portrait"``, what models made
            before framings existed were trained on; see :func:`portrait_framing`).
    """

    kind: str = ""
    aligned_faces: bool = False
    psnr_mean: Optional[float] = None
    psnr_std: Optional[float] = None
    psnr_p05: Optional[float] = None
    psnr_min: Optional[float] = None
    count: int = 0
    resolution: Optional[int] = None
    threshold_db: Optional[float] = None
    source: str = ""
    framing: str = ""

    def threshold(self) -> Optional[float]:
        """The phase-I PSNR below which an input is called outside the domain (None: no figures).

        ``min(p05, mean - 2 std) - 3 dB`` from measured figures; ``mean - 6 dB`` from a mean alone.
        """
        if self.threshold_db is not None:
            return float(self.threshold_db)
        if self.psnr_mean is None:
            return None
        if self.psnr_std is None and self.psnr_p05 is None:
            return self.psnr_mean - MEAN_ONLY_MARGIN_DB
        low = [v for v in (self.psnr_p05, None if self.psnr_std is None else self.psnr_mean - 2 * self.psnr_std)
               if v is not None]
        return min(low) - MARGIN_DB

    def is_outside(self, psnr: float) -> bool:
        """Whether a phase-I PSNR of ``psnr`` dB is far below this domain's (False without figures)."""
        limit = self.threshold()
        return limit is not None and math.isfinite(psnr) and psnr < limit

    def outside_message(self, name: str, psnr: float) -> Optional[str]:
        """One line when ``psnr`` (phase I, dB) is outside the domain, else None. ``name``: the input."""
        if not self.is_outside(psnr):
            return None
        return (f"{name} looks outside this model's domain ({self.kind or 'its training images'}): "
                f"phase-I PSNR {psnr:.1f} dB, typical {self.psnr_mean:.1f} dB")

    def align_message(self) -> Optional[str]:
        """One line when the model was not trained on FFHQ-aligned face crops (for ``--align``), else None."""
        if self.aligned_faces or not self.kind:
            return None
        return (f"--align: this model was trained on {self.kind}, not on FFHQ-aligned face crops; an aligned "
                "face is outside its domain")

    def to_dict(self) -> dict:
        return {"format": FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, values: dict, source: str = "domain record") -> "DomainRecord":
        fields = {f.name for f in dataclasses.fields(cls)}
        try:
            return cls(**{k: v for k, v in values.items() if k in fields})
        except TypeError as e:
            raise CheckpointError(f"{source}: invalid domain record ({e})") from None


# ------------------------------------------------------------------------------------------- files
def save_domain(record: DomainRecord, folder: PathLike) -> Path:
    """Write ``<folder>/domain.json`` atomically (:func:`~hyperinverter.utils.outputs.write_text_atomic`);
    returns its path. Whether it may replace an existing record is the caller's decision."""
    from .utils.outputs import write_text_atomic

    return write_text_atomic(Path(folder) / DOMAIN_FILE, json.dumps(record.to_dict(), indent=2) + "\n")


def load_domain(model: PathLike) -> Optional[DomainRecord]:
    """The record of a model folder or model name (None when it has none, or when it cannot be read:
    the record only adds messages, it never stops a command)."""
    from .pretrained import resolve

    try:
        path = resolve(model) / DOMAIN_FILE
    except CheckpointError:
        return None
    if not path.is_file():
        return None
    try:
        return DomainRecord.from_dict(json.loads(path.read_text()), str(path))
    except (OSError, ValueError, CheckpointError, AttributeError):
        return None


def portrait_framing(model: PathLike) -> str:
    """The portrait framing of a model folder or model name: the ``framing`` of its record, ``"portrait"``
    when it has none (no ``domain.json``, an unreadable one, or one without the field)."""
    record = load_domain(model)
    return record.framing if record is not None and record.framing else "portrait"


# --------------------------------------------------------------------------------------- measuring
def phase1_psnr(images: torch.Tensor, image_w: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of the phase-I images ``image_w`` against the inputs ``images`` (both ``[B, 3, R, R]`` in
    [-1, 1]; the inputs are resized to ``R`` first if needed) -> ``[B]``."""
    from .metrics.image import psnr

    if images.shape[-2:] != image_w.shape[-2:]:
        images = torch.nn.functional.interpolate(images, size=image_w.shape[-2:], mode="bilinear",
                                                 align_corners=False, antialias=True)
    return psnr(image_w.float(), images.to(image_w.device).float())


def outside_messages(record: Optional[DomainRecord], names: Iterable[str], psnrs: Iterable[float]) -> list[str]:
    """One line per input that is outside ``record``'s domain (none without a record)."""
    if record is None:
        return []
    return [m for m in (record.outside_message(n, float(p)) for n, p in zip(names, psnrs)) if m]


@torch.no_grad()
def record_domain_stats(model, images: Union[torch.Tensor, PathLike, Iterable[PathLike]], kind: str = "",
                        aligned_faces: bool = False, batch_size: int = 8, source: str = "",
                        framing: str = "") -> DomainRecord:
    """Measure the phase-I PSNR of ``model`` on validation images and return the record to save.

    Args:
        model: a :class:`~hyperinverter.HyperInverter` (only its W-encoder and generator run).
        images: ``[N, 3, H, W]`` in [-1, 1], or image files / folders (read at the model's resolution;
            unreadable files are skipped).
        kind: the training images in words (e.g. ``"procedural portraits"``).
        aligned_faces: whether the model takes FFHQ-aligned face crops.
        batch_size: images per encoder pass.
        source: where the images come from (default: the folder or "a tensor").
        framing: the portrait framing the model was trained on (``""``: not a portrait model / unknown).

    Raises:
        ValueError: fewer than 2 usable images.
    """
    device = next(model.parameters()).device
    batches = []
    if isinstance(images, torch.Tensor):
        batches = list(images.split(batch_size))
        source = source or f"{images.shape[0]} images given as a tensor"
    else:
        from .utils.image_io import iter_image_paths, load_images

        paths = iter_image_paths(images)
        for start in range(0, len(paths), batch_size):
            batch, _, _, _ = load_images(paths[start:start + batch_size], model.resolution, on_error="skip")
            if batch is not None:
                batches.append(batch)
        given = [images] if isinstance(images, (str, os.PathLike)) else list(images)
        source = source or ", ".join(str(p) for p in given[:3]) + (" ..." if len(given) > 3 else "")
    values = []
    for batch in batches:
        batch = batch.to(device)
        w = model.encode_w(batch)
        image_w = model.render(w.unsqueeze(1).repeat(1, model.num_ws, 1))
        values.append(phase1_psnr(batch, image_w).cpu())
    psnrs = torch.cat(values).double() if values else torch.zeros(0, dtype=torch.float64)
    psnrs = psnrs[torch.isfinite(psnrs)]
    if psnrs.numel() < 2:
        raise ValueError(f"domain statistics need at least 2 readable validation images, got {psnrs.numel()} "
                         f"({source})")
    return DomainRecord(kind=kind, aligned_faces=aligned_faces, psnr_mean=round(float(psnrs.mean()), 3),
                        psnr_std=round(float(psnrs.std()), 3), psnr_p05=round(float(torch.quantile(psnrs, 0.05)), 3),
                        psnr_min=round(float(psnrs.min()), 3), count=int(psnrs.numel()), resolution=model.resolution,
                        source=source, framing=framing)


__all__ = ["DOMAIN_FILE", "DomainRecord", "MARGIN_DB", "load_domain", "outside_messages", "phase1_psnr",
           "portrait_framing", "record_domain_stats", "save_domain"]
