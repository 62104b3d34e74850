"""Editability of inversions, measured with an attribute regressor on edited reconstructions.

For each method and each attribute with an edit direction, every reconstruction's ``ws`` is moved by
``-s`` and ``+s`` times the direction (the rows the direction covers), the residuals of the method (Δθ of
HyperInverter, PTI's tuned weights) are kept, and both edits are rendered. A regressor reads all
attributes off the reconstruction and the two edits, on a common scale (continuous attributes mapped from
their range to [0, 1], binary ones as probabilities):

* **target change** ``(a_t(+s) - a_t(-s)) / 2``: how far one edit of strength ``s`` moves the edited
  attribute (higher = more editable); ``target_change_per_unit`` is the same in attribute units per unit of
  W strength (``a_t`` in attribute units divided by ``s``);
* **entanglement**: the mean over the other attributes of ``|a_j(±s) - a_j(0)|`` (lower = cleaner edits);
* **detail kept**: the correlation between the high-pass detail (image minus a Gaussian blur) of the *input*
  and of the edited images (higher = the input's fine detail survives the edit); ``detail_recon`` is the
  same for the unedited reconstruction, for reference;
* **attribute error**: mean ``|a(reconstruction) - a(input)|`` over attributes (fidelity of the inversion).

Directions come from :func:`fit_attribute_directions` (InterFaceGAN boundaries fitted on phase-I codes
of labelled portraits) or from files (:func:`load_attribute_directions`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Protocol, Sequence, Union

import torch
import torch.nn.functional as F

from ..editing import (DIRECTION_FILE_SUFFIXES, Direction, edit_change, fit_interfacegan, load_direction_file,
                       save_direction)
from ..inverter import HyperInverter
from .base import MethodOutput

#: Default edit strength, in standard deviations of the fitted codes along each direction.
DEFAULT_STRENGTH_SIGMAS = 2.0


class AttributePredictor(Protocol):
    """What the editability measure needs from a regressor (an :class:`AttributeRegressor` fits)."""

    attributes: list  # Names of the predicted attributes, in output order.

    def predict_normalized(self, images: torch.Tensor) -> torch.Tensor:  # [B, 3, H, W] -> [B, A]
        ...


# ------------------------------------------------------------------------------------------ directions
@torch.no_grad()
def encode_codes(model: HyperInverter, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """Phase-I codes ``w`` ``[N, w_dim]`` (on the CPU) of ``images`` ``[N, 3, H, W]``."""
    device = model.generator.w_avg.device
    return torch.cat([model.encode_w(images[i:i + batch_size].to(device)).cpu()
                      for i in range(0, images.shape[0], batch_size)])


def fit_attribute_directions(model: HyperInverter, images: torch.Tensor, values: torch.Tensor,
                             attributes: Sequence[str], method: str = "svm", batch_size: int = 32,
                             strength_sigmas: float = DEFAULT_STRENGTH_SIGMAS,
                             codes: Optional[torch.Tensor] = None) -> tuple[dict[str, Direction], dict[str, Any]]:
    """InterFaceGAN directions in W from the phase-I codes of labelled images.

    Args:
        images: ``[N, 3, H, W]`` in [-1, 1] (ignored when ``codes`` is given).
        values: ``[N, len(attributes)]`` attribute values (binary 0/1 or continuous scores).
        method: ``"svm"`` or ``"logistic"`` (see :func:`~hyperinverter.editing.fit_interfacegan`).
        strength_sigmas: each direction's default ``strength``: this many standard deviations of the codes'
            projections on it.
        codes: precomputed ``[N, w_dim]`` codes.
    Returns:
        ``(directions, reports)``; an attribute whose labels do not split into two classes gets no direction
        and its report is ``{"skipped": reason}``.
    """
    if values.ndim != 2 or values.shape[1] != len(attributes):
        raise ValueError(f"values must be [N, {len(attributes)}] (one column per attribute), got {list(values.shape)}")
    codes = encode_codes(model, images, batch_size) if codes is None else codes.detach().cpu()
    if codes.shape[0] != values.shape[0]:
        raise ValueError(f"{codes.shape[0]} codes but {values.shape[0]} label rows")
    directions: dict[str, Direction] = {}
    reports: dict[str, Any] = {}
    for j, name in enumerate(attributes):
        try:
            direction, report = fit_interfacegan(codes, values[:, j], method=method, name=name)
        except ValueError as e:
            reports[name] = {"skipped": str(e)}
            continue
        spread = float((codes.double() @ direction.vector.double()).std())
        direction.strength = strength_sigmas * spread if spread > 0 else 1.0
        direction.description["projection_std"] = spread
        direction.description["strength_sigmas"] = strength_sigmas
        directions[name] = direction
        reports[name] = {"holdout_accuracy": report["holdout_accuracy"], "train_accuracy": report["train_accuracy"],
                         "projection_std": spread, "strength": direction.strength}
    return directions, reports


def save_attribute_directions(directions: dict[str, Direction], folder: Union[str, Path]) -> list[Path]:
    """``<attribute>.safetensors`` + ``.json`` per direction in ``folder``."""
    return [save_direction(d, Path(folder) / f"{name}.safetensors") for name, d in directions.items()]


def load_attribute_directions(folder: Union[str, Path], attributes: Sequence[str], w_dim: int,
                              num_ws: int) -> tuple[dict[str, Direction], list[str]]:
    """``(directions found, attributes without a file)`` from ``folder/<attribute>.<suffix>``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such directions folder")
    found, missing = {}, []
    for name in attributes:
        path = next((folder / f"{name}{s}" for s in DIRECTION_FILE_SUFFIXES if s != ".json"
                     and (folder / f"{name}{s}").is_file()), None)
        if path is None:
            missing.append(name)
        else:
            found[name] = load_direction_file(path, w_dim, num_ws)
    return found, missing


# ------------------------------------------------------------------------------------------ detail
def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    pad = min(radius, x.shape[-1] - 1, x.shape[-2] - 1)
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect" if pad == radius else "replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def highpass(x: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Fine detail of ``[B, C, H, W]``: the image minus its Gaussian blur."""
    return x - _gaussian_blur(x, sigma)


def detail_correlation(a: torch.Tensor, b: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """Per-image Pearson correlation ``[B]`` of the high-pass detail of two image batches (0 if flat)."""
    ha, hb = highpass(a.float(), sigma).flatten(1), highpass(b.float(), sigma).flatten(1)
    ha, hb = ha - ha.mean(1, keepdim=True), hb - hb.mean(1, keepdim=True)
    denom = ha.norm(dim=1) * hb.norm(dim=1)
    return torch.where(denom > 0, (ha * hb).sum(1) / denom.clamp_min(1e-12), torch.zeros_like(denom))


# ------------------------------------------------------------------------------------------ measure
@dataclass
class EditabilityConfig:
    """Settings of :class:`EditabilityMeter`."""

    strength: Optional[float] = None  # Edit strength in W units; None = each direction's own ``strength``.
    detail_sigma: float = 1.0  # Sigma (px) of the blur whose residual is the "detail".
    examples: int = 4  # Images whose edits (first direction: -s, 0, +s) are kept for a figure.

    def __post_init__(self):
        if self.strength is not None and (not math.isfinite(self.strength) or self.strength == 0):
            raise ValueError(f"strength must be a finite non-zero number or None, got {self.strength!r}")
        if not self.detail_sigma > 0:
            raise ValueError(f"detail_sigma must be positive, got {self.detail_sigma!r}")


class EditabilityMeter:
    """Accumulates editability numbers of one method over batches: ``update(inputs, output)``, ``summary()``."""

    def __init__(
        self,
        model: HyperInverter,  # Renders the edited codes (its generator, with each method's residuals).
        predictor: AttributePredictor,  # Reads attributes off images (e.g. an AttributeRegressor).
        directions: dict[str, Direction],  # attribute name -> direction in W; every name must be predicted.
        config: Optional[EditabilityConfig] = None,  # Strength, detail blur, kept examples.
    ):
        self.model, self.predictor = model, predictor
        self.config = config or EditabilityConfig()
        attrs = list(predictor.attributes)
        unknown = [n for n in directions if n not in attrs]
        if unknown:
            raise ValueError(f"directions for {unknown} but the regressor predicts only {attrs}")
        if not directions:
            raise ValueError("editability needs at least one direction")
        for name, d in directions.items():
            d.check(model.generator.w_dim, model.num_ws, source=f"direction {name!r}")
        self.directions = directions
        self.index = {n: attrs.index(n) for n in directions}
        span = getattr(predictor, "span", None)
        binary = getattr(predictor, "binary", None)
        units = torch.ones(len(attrs)) if span is None else span.detach().float().cpu().clone()
        if binary is not None:
            units[binary.cpu()] = 1.0
        self.units = units  # attribute units per step of the common scale
        self.count = 0
        self.sums: dict[str, float] = {"attribute_error": 0.0, "detail_recon": 0.0}
        self.per_attr = {n: {"target_change": 0.0, "entanglement": 0.0, "detail_kept": 0.0} for n in directions}
        self.examples: list[torch.Tensor] = []

    def strength_of(self, name: str) -> float:
        s = self.config.strength
        return float(self.directions[name].strength if s is None else s)

    @torch.no_grad()
    def update(self, inputs: torch.Tensor, output: MethodOutput) -> None:
        """Add a batch: ``inputs`` ``[B, 3, R, R]`` and the method's output for them."""
        recon = output.reconstructions
        inputs = inputs.to(recon.device)
        ws, deltas = output.ws, output.deltas()
        batch = recon.shape[0]
        predict = lambda x: self.predictor.predict_normalized(x).float().cpu()  # noqa: E731  [B, A]
        p_in, p_rec = predict(inputs), predict(recon)
        self.sums["attribute_error"] += float((p_rec - p_in).abs().mean(dim=1).sum())
        self.sums["detail_recon"] += float(detail_correlation(inputs, recon, self.config.detail_sigma).sum())
        keep = max(0, min(self.config.examples - sum(e.shape[0] for e in self.examples) // 3, batch))
        for k, (name, direction) in enumerate(self.directions.items()):
            s, t = self.strength_of(name), self.index[name]
            edits = [self.model.render(direction.apply(ws, sign * s), deltas or None) for sign in (1.0, -1.0)]
            p_plus, p_minus = predict(edits[0]), predict(edits[1])
            acc = self.per_attr[name]
            change, moved = edit_change(p_plus, p_minus, p_rec, t)
            acc["target_change"] += float(change.sum())
            acc["entanglement"] += float(moved.sum())
            acc["detail_kept"] += float(sum(detail_correlation(inputs, e, self.config.detail_sigma)
                                            for e in edits).sum() / 2)
            if k == 0 and keep:
                rows = torch.stack([edits[1][:keep], recon[:keep], edits[0][:keep]], dim=1)  # [keep, 3, C, R, R]
                self.examples.append(rows.flatten(0, 1).cpu())
        self.count += batch

    def example_images(self) -> Optional[torch.Tensor]:
        """``[3k, 3, R, R]``: per kept image, its first-direction edit at ``-s``, the reconstruction, ``+s``."""
        return torch.cat(self.examples) if self.examples else None

    def summary(self) -> dict[str, Any]:
        """Means over images (and over attributes for the overall numbers); see the module docstring."""
        if self.count == 0:
            raise ValueError("no batch was added")
        n = self.count
        per = {}
        for name, acc in self.per_attr.items():
            s, t = self.strength_of(name), self.index[name]
            change = acc["target_change"] / n
            per[name] = {"strength": s, "target_change": change,
                         "target_change_per_unit": change * float(self.units[t]) / s,
                         "entanglement": acc["entanglement"] / n if len(self.units) > 1 else None,
                         "detail_kept": acc["detail_kept"] / n}

        def mean(key: str) -> Optional[float]:
            vals = [v[key] for v in per.values() if v[key] is not None]
            return sum(vals) / len(vals) if vals else None

        return {"num_images": n, "target_change": mean("target_change"), "entanglement": mean("entanglement"),
                "detail_kept": mean("detail_kept"), "detail_recon": self.sums["detail_recon"] / n,
                "attribute_error": self.sums["attribute_error"] / n, "per_attribute": per}
