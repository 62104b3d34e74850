"""Edit directions for the portrait domain, fitted from labelled portraits (their attributes are exact).

Each portrait is rendered from its seed, inverted to ``w`` by the model's phase-I encoder (the codes
that edits move), and an InterFaceGAN boundary is fitted per attribute on those codes
(:func:`encode_portraits`). For a generator taught by the renderer, the generator's own codes ``mapping(z)``
of renderer latents serve as well, with exact labels and no rendering (:func:`latent_codes`). Besides the
attributes of :data:`~hyperinverter.portraits.ATTRIBUTE_NAMES`, a few derived ones are offered
(``hair_lightness``: the mean of the hair colour's channels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ..portraits import ATTRIBUTE_NAMES, check_framing, render_seed, split_seeds
from ..editing import Direction, fit_interfacegan
from ..utils.image_io import pil_to_tensor
from .names import DEMO_ATTRIBUTES

#: Attributes computed from others: ``name -> (description, function of the label vector [N, A])``.
DERIVED_ATTRIBUTES: dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]] = {
    "hair_lightness": ("mean of hair_r, hair_g, hair_b",
                       lambda v: v[:, [ATTRIBUTE_NAMES.index(c) for c in ("hair_r", "hair_g", "hair_b")]].mean(1)),
}
#: The label entries a derived attribute is made of: a conditional direction keeps the others unchanged, not these.
DERIVED_FROM: dict[str, tuple[str, ...]] = {"hair_lightness": ("hair_r", "hair_g", "hair_b")}
#: The directions the shipped demo model carries (``benchmarks/bench_demo_quality.py`` measures each: held-out
#: accuracy of the fit, the attribute change at the default strength, entanglement with the others).


def attribute_values(labels: np.ndarray, attribute: str) -> np.ndarray:
    """The ``[N]`` values of ``attribute`` from label vectors ``[N, len(ATTRIBUTE_NAMES)]``."""
    if attribute in DERIVED_ATTRIBUTES:
        return DERIVED_ATTRIBUTES[attribute][1](labels)
    if attribute not in ATTRIBUTE_NAMES:
        known = ATTRIBUTE_NAMES + list(DERIVED_ATTRIBUTES)
        raise ValueError(f"unknown portrait attribute {attribute!r}; known: {', '.join(known)}")
    return labels[:, ATTRIBUTE_NAMES.index(attribute)]


@dataclass
class LabelledCodes:
    """Phase-I codes of rendered portraits with their attribute vectors."""

    w: torch.Tensor  # [N, w_dim]
    labels: np.ndarray  # [N, len(ATTRIBUTE_NAMES)]
    seeds: list[int]  # The portraits' seeds (codes="phase1"), or the z rows' indices (codes="generator").
    framing: str = "portrait"  # The portraits.FRAMINGS entry they were rendered in.
    source: str = "phase1"  # "phase1": E1's codes of rendered portraits; "generator": mapping(z) (latent_codes).


@torch.no_grad()
def encode_portraits(model, count: int, split: str = "train", start: int = 0, batch_size: int = 64,
                     progress: Optional[Callable[[int], None]] = None, framing: str = "portrait") -> LabelledCodes:
    """Render ``count`` portraits of ``split`` at the model's resolution, in ``framing`` (a
    :data:`~hyperinverter.portraits.FRAMINGS` entry: the one the model was trained on, see
    :func:`~hyperinverter.domain.portrait_framing`), and encode them to ``w``."""
    check_framing(framing)
    device = next(model.parameters()).device
    seeds = list(split_seeds(split, count, start))
    codes, labels = [], []
    for i in range(0, len(seeds), batch_size):
        images, vectors = [], []
        for seed in seeds[i:i + batch_size]:
            image, attrs = render_seed(seed, size=model.resolution, framing=framing)
            images.append(pil_to_tensor(image))
            vectors.append(attrs.to_vector())
        codes.append(model.encode_w(torch.stack(images).to(device)).float().cpu())
        labels.append(np.stack(vectors))
        if progress is not None:
            progress(len(images))
    return LabelledCodes(torch.cat(codes), np.concatenate(labels).astype(np.float64), seeds, framing)


def attribute_readouts(w: torch.Tensor, labels: np.ndarray, ridge: float = 1e-3) -> torch.Tensor:
    """``[A, w_dim]`` float64: per label entry, the weights of a ridge regression of its standardised value
    on the centred codes ``w [N, w_dim]`` (a constant entry gets zeros). Row ``k`` is the direction along
    which the linear prediction of attribute ``k`` from ``w`` changes; ``ridge`` is relative to the codes'
    mean variance."""
    x = w.double() - w.double().mean(0)
    y = torch.from_numpy(labels).double()
    std = y.std(0)
    y = torch.where(std > 0, (y - y.mean(0)) / std.clamp_min(1e-12), torch.zeros_like(y))
    gram = x.T @ x
    gram += ridge * float(gram.diagonal().mean()) * torch.eye(gram.shape[0], dtype=gram.dtype)
    return torch.linalg.solve(gram, x.T @ y).T


def condition_direction(vector: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """``vector [w_dim]`` with its component in the span of the rows of ``others [K, w_dim]`` removed, unit
    norm: moving ``w`` along it leaves the linear read-outs ``others @ w`` unchanged (InterFaceGAN's
    conditional manipulation, generalised from one or two conditions to any number)."""
    v = vector.double()
    if others.shape[0] == 0:
        return (v / v.norm()).to(vector.dtype)
    u, sv, _ = torch.linalg.svd(others.double().T, full_matrices=False)  # orthonormal basis of their span
    q = u[:, sv > 1e-9 * float(sv.max())] if float(sv.max()) > 0 else u[:, :0]  # zero / dependent rows add nothing
    v = v - q @ (q.T @ v)
    norm = float(v.norm())
    if norm < 1e-6:
        raise ValueError("the direction lies in the span of the conditions: nothing is left to edit")
    return (v / norm).to(vector.dtype)


@torch.no_grad()
def latent_codes(generator, count: int, seed: int = 0, framing: str = "portrait",
                 batch_size: int = 1024) -> LabelledCodes:
    """The generator's own codes ``w = mapping(z)`` of ``count`` Gaussian ``z`` (``torch`` seed ``seed``), labelled
    with :func:`~hyperinverter.portraits.attributes_from_latent` of the same ``z``: exact labels without
    rendering or encoding, as InterFaceGAN fits on sampled codes. Only meaningful for a generator taught by the
    renderer (``train gan-teacher``), whose ``z`` is the renderer's latent; ``framing`` is recorded only."""
    from ..portraits import LATENT_DRAWS, attributes_from_latent

    if generator.z_dim < LATENT_DRAWS:
        raise ValueError(f"the generator's z has {generator.z_dim} entries, the renderer's latent {LATENT_DRAWS}: "
                         "not a generator taught by the renderer (use the phase-I codes of rendered portraits)")
    device = next(generator.parameters()).device
    z = torch.randn([count, generator.z_dim], generator=torch.Generator().manual_seed(seed))
    w = torch.cat([generator.mapping(z[i:i + batch_size].to(device))[:, 0].float().cpu()
                   for i in range(0, count, batch_size)])
    labels = np.stack([attributes_from_latent(v).to_vector() for v in z.double().numpy()])
    return LabelledCodes(w, labels.astype(np.float64), list(range(count)), framing, source="generator")


def fit_portrait_directions(data: LabelledCodes, attributes: Sequence[str] = DEMO_ATTRIBUTES,
                            method: str = "svm", strength_sigmas: float = 2.0,
                            conditional: bool = False) -> list[tuple[Direction, dict]]:
    """One InterFaceGAN direction per attribute; its default strength moves ``w`` by ``strength_sigmas``
    standard deviations of the codes' projection on it (a visible but in-distribution edit).

    With ``conditional``, each direction is made orthogonal to the linear read-outs
    (:func:`attribute_readouts`) of every other label entry (all of
    :data:`~hyperinverter.portraits.ATTRIBUTE_NAMES` but the attribute itself or the entries it is derived
    from): the edit then moves what W predicts of the other attributes as little as a linear model can say,
    at the cost of some of its own reach. The report gains ``conditioned_cosine``: the cosine between the
    plain and the conditional direction."""
    if not strength_sigmas > 0:
        raise ValueError(f"strength_sigmas must be > 0, got {strength_sigmas}")
    readouts = attribute_readouts(data.w, data.labels) if conditional else None
    out = []
    for attribute in attributes:
        values = attribute_values(data.labels, attribute)
        if np.unique(values).size < 2:
            raise ValueError(f"attribute {attribute!r} has a single value in these {len(values)} portraits")
        direction, report = fit_interfacegan(data.w, torch.from_numpy(values), method=method, name=attribute)
        source = (f"InterFaceGAN ({method}) on phase-I codes of {len(values)} rendered portraits"
                  if data.source == "phase1" else
                  f"InterFaceGAN ({method}) on the generator's codes mapping(z) of {len(values)} renderer latents")
        if readouts is not None:
            own = DERIVED_FROM.get(attribute, (attribute,))
            rows = [k for k, name in enumerate(ATTRIBUTE_NAMES) if name not in own]
            plain = direction.vector
            direction.vector = condition_direction(plain, readouts[rows])
            report["conditioned_cosine"] = float(plain.double() @ direction.vector.double())
            # the held-out accuracy stays that of the boundary (the normal before conditioning)
            source += f", conditioned on the other {len(rows)} label entries' linear read-outs"
        spread = float((data.w.double() @ direction.vector.double()).std())
        direction.strength = strength_sigmas * spread
        direction.description.update({
            "source": source,
            "framing": data.framing,
            "codes": data.source,
            "attribute": attribute,
            "attribute_definition": DERIVED_ATTRIBUTES.get(attribute, (attribute,))[0],
            "projection_std": spread,
            "strength_sigmas": strength_sigmas,
            **{k: v for k, v in report.items() if isinstance(v, (int, float)) or v is None},
        })
        out.append((direction, report))
    return out


__all__ = ["DEMO_ATTRIBUTES", "DERIVED_ATTRIBUTES", "DERIVED_FROM", "LabelledCodes", "attribute_readouts",
           "attribute_values", "condition_direction", "encode_portraits",
           "fit_portrait_directions", "latent_codes"]
