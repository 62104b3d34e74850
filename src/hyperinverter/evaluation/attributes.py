"""A small CNN that reads portrait attributes off images, to measure what an edit changes.

The procedural portraits (:mod:`hyperinverter.portraits`) come with their exact attributes, so a
regressor trained on rendered portraits gives an automatic judge of edits: the change of the edited
attribute and of all the others. Continuous attributes are regressed on their range mapped to [0, 1]
(:data:`~hyperinverter.portraits.ATTRIBUTE_RANGES`); binary ones (``glasses``, ...) are classified.

* :class:`AttributeRegressor` (``save_pretrained`` / ``from_pretrained`` like the other models);
* :func:`train_attribute_regressor`: training with held-out R² / accuracy;
* :func:`load_labelled_portraits` / :func:`render_labelled_portraits`: the data.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoints import PretrainedMixin
from ..portraits import ATTRIBUTE_NAMES, ATTRIBUTE_RANGES
from ..demo.directions import DERIVED_ATTRIBUTES, attribute_values
from ..errors import HyperInverterError

PathLike = Union[str, os.PathLike]

#: Attributes a W code of a portrait GAN should capture and edits should move (the default set; it holds
#: the four of the shipped model's ``directions/``: smile, yaw, hair_lightness, glasses).
DEFAULT_ATTRIBUTES = ("smile", "yaw", "hair_lightness", "glasses", "tilt", "skin_tone", "eye_size", "eyebrow_angle",
                      "face_width", "jaw_roundness")
#: Names a regressor can predict: the label vector's entries and the derived ones (``hair_lightness``).
KNOWN_ATTRIBUTES = tuple(ATTRIBUTE_NAMES) + tuple(DERIVED_ATTRIBUTES)
#: ``name -> (low, high)`` of every known attribute.
KNOWN_RANGES = {**ATTRIBUTE_RANGES, "hair_lightness": (0.0, 1.0)}
#: Entries of ATTRIBUTE_NAMES that are 0 / 1.
BINARY_ATTRIBUTES = tuple(n for n in ATTRIBUTE_NAMES
                          if n in ("glasses", "earring") or n.startswith(("hair_style_", "collar_")))
#: Name of the training report written next to a saved regressor.
REPORT_NAME = "training_report.json"


class AttributeDataError(HyperInverterError, ValueError):
    """Labelled portraits are missing, unreadable or do not match their images."""


@dataclass
class AttributeRegressorConfig:
    """Everything needed to build an :class:`AttributeRegressor` (stored in ``config.json``)."""

    attributes: list = field(default_factory=lambda: list(DEFAULT_ATTRIBUTES))  # KNOWN_ATTRIBUTES entries read.
    input_size: int = 64  # Images are resized to this side (antialiased bilinear) before the network.
    widths: list = field(default_factory=lambda: [32, 64, 128, 128])  # Channels of each stride-2 stage.

    def __post_init__(self):
        self.attributes = [str(a) for a in self.attributes]
        unknown = [a for a in self.attributes if a not in KNOWN_ATTRIBUTES]
        if not self.attributes or unknown:
            raise ValueError(f"attributes must be a non-empty list of portrait attributes; unknown: {unknown} "
                             f"(known: {', '.join(KNOWN_ATTRIBUTES)})")
        if len(set(self.attributes)) != len(self.attributes):
            raise ValueError(f"attributes contain duplicates: {self.attributes}")
        self.widths = [int(w) for w in self.widths]
        if not self.widths or min(self.widths) < 1:
            raise ValueError(f"widths must be a non-empty list of positive integers, got {self.widths}")
        if not isinstance(self.input_size, int) or self.input_size < 2 ** len(self.widths):
            raise ValueError(f"input_size must be an integer >= {2 ** len(self.widths)} for {len(self.widths)} "
                             f"stages, got {self.input_size!r}")


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(channels, 8), channels)


class AttributeRegressor(PretrainedMixin, nn.Module):
    """Images ``[B, 3, H, W]`` in [-1, 1] -> attributes ``[B, A]`` (``config.attributes`` order)."""

    config_class = AttributeRegressorConfig

    def __init__(self, attributes: Sequence[str] = DEFAULT_ATTRIBUTES, input_size: int = 64,
                 widths: Sequence[int] = (32, 64, 128, 128)):
        """A new (untrained) regressor; :func:`train_attribute_regressor` trains one.

        The arguments are the fields of :class:`AttributeRegressorConfig` (kept as ``self.config``, the record
        that ``save_pretrained`` writes).

        Args:
            attributes: the attributes predicted, in output order: names of :data:`KNOWN_ATTRIBUTES`, no
                duplicates.
            input_size: images are resized to this side (antialiased bilinear) before the network; at least
                ``2 ** len(widths)``.
            widths: channels of each stride-2 stage (each halves the side).
        Raises:
            ValueError: values :class:`AttributeRegressorConfig` refuses (an unknown attribute, ...).
        """
        super().__init__()
        self.config = cfg = AttributeRegressorConfig(attributes=list(attributes), input_size=input_size,
                                                     widths=list(widths))
        self.attributes = list(cfg.attributes)
        layers: list[nn.Module] = []
        in_ch = 3
        for width in cfg.widths:  # each stage halves the side
            layers += [nn.Conv2d(in_ch, width, 3, stride=2, padding=1), _norm(width), nn.SiLU(),
                       nn.Conv2d(width, width, 3, padding=1), _norm(width), nn.SiLU()]
            in_ch = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(in_ch, len(self.attributes))
        # Constants of the attribute set (not weights): derived from the config, not stored.
        for name, value in self.non_persistent_buffers().items():
            self.register_buffer(name, value, persistent=False)

    def non_persistent_buffers(self) -> dict[str, torch.Tensor]:
        """``low`` and ``span`` of each attribute's range and whether it is ``binary`` (bool), each ``[A]`` on the
        default device: constants of ``config.attributes``, not stored in ``model.safetensors`` (``__init__``
        registers them; :meth:`from_pretrained`, which builds on ``meta``, computes them again on the CPU)."""
        low = torch.tensor([KNOWN_RANGES[a][0] for a in self.attributes])
        high = torch.tensor([KNOWN_RANGES[a][1] for a in self.attributes])
        binary = torch.tensor([a in BINARY_ATTRIBUTES for a in self.attributes])
        assert low.shape == binary.shape == (len(self.attributes),), (low.shape, binary.shape)
        return {"low": low, "span": high - low, "binary": binary}

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled features ``[B, widths[-1]]`` (what the head reads): a feature space for KID on portraits."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape [B, 3, H, W], got {list(images.shape)}")
        size = self.config.input_size
        if tuple(images.shape[-2:]) != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                                   antialias=images.shape[-1] > size)
        return self.features(images.to(self.head.weight.dtype)).mean(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Raw outputs ``[B, A]``: normalised values (continuous) and logits (binary)."""
        return self.head(self.embed(images))

    def predict_normalized(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, A]`` on a common scale: continuous attributes mapped from their range to [0, 1] (not clipped),
        binary ones as the probability of 1."""
        raw = self(images)
        return torch.where(self.binary, torch.sigmoid(raw), raw)

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, A]`` in attribute units (binary attributes: probability of 1)."""
        return self.denormalize(self.predict_normalized(images))

    def normalize(self, values: torch.Tensor) -> torch.Tensor:
        """Attribute units ``[..., A]`` -> the common scale of :meth:`predict_normalized`."""
        values = values.to(self.low)
        return torch.where(self.binary, values, (values - self.low) / self.span)

    def denormalize(self, values: torch.Tensor) -> torch.Tensor:
        """The common scale ``[..., A]`` -> attribute units."""
        return torch.where(self.binary, values, self.low + values * self.span)


# ------------------------------------------------------------------------------------------------ data
class LabelledPortraits(NamedTuple):
    """Portraits with their attribute vectors."""

    images: torch.Tensor  # [N, 3, S, S] float32 in [-1, 1].
    vectors: torch.Tensor  # [N, len(ATTRIBUTE_NAMES)] float32, PortraitAttributes.to_vector() order.
    files: list  # File names (or "seed:<n>" for rendered ones).

    def values(self, attributes: Sequence[str]) -> torch.Tensor:
        """``[N, len(attributes)]``: the columns of ``attributes``."""
        return attribute_columns(self.vectors, attributes)


def attribute_columns(vectors: torch.Tensor, attributes: Sequence[str]) -> torch.Tensor:
    """``[N, len(attributes)]`` float32: the values of ``attributes`` (derived ones computed) from label
    vectors ``[N, len(ATTRIBUTE_NAMES)]``."""
    unknown = [a for a in attributes if a not in KNOWN_ATTRIBUTES]
    if unknown:
        raise ValueError(f"unknown attributes {unknown}; known: {', '.join(KNOWN_ATTRIBUTES)}")
    if vectors.ndim != 2 or vectors.shape[1] != len(ATTRIBUTE_NAMES):
        raise ValueError(f"attribute vectors must be [N, {len(ATTRIBUTE_NAMES)}], got {list(vectors.shape)}")
    v = vectors.detach().cpu().double().numpy()
    return torch.from_numpy(np.stack([attribute_values(v, a) for a in attributes], axis=1)).float()


def read_labels(folder: PathLike) -> dict[str, list[float]]:
    """``{file name: attribute vector}`` from a folder's labels
    (:func:`~hyperinverter.portraits.read_portrait_labels`: ``labels.csv``, else ``labels.json``)."""
    from ..portraits import PortraitLabelError, read_portrait_labels

    try:
        return {name: v.tolist() for name, v in read_portrait_labels(folder).items()}
    except PortraitLabelError as e:
        raise AttributeDataError(str(e)) from None


def load_labelled_portraits(folder: PathLike, size: Optional[int] = None, limit: Optional[int] = None,
                            files: Optional[Sequence[str]] = None) -> LabelledPortraits:
    """Portrait files of ``folder`` with their labels (``labels.json`` / ``labels.csv`` of write_portraits).

    Args:
        size: side to load the images at (None = the size of the first image).
        limit: take at most this many labelled files (sorted by name).
        files: take exactly these file names (each must be labelled).
    """
    from ..utils.image_io import load_image, load_images

    folder = Path(folder)
    labels = read_labels(folder)
    names = sorted(labels) if files is None else list(files)
    missing = [n for n in names if n not in labels]
    if missing:
        raise AttributeDataError(f"{folder}: no labels for {missing[:5]}")
    names = [n for n in names if (folder / n).is_file()] if files is None else names
    if limit is not None:
        names = names[:limit]
    if not names:
        raise AttributeDataError(f"{folder}: none of the labelled files is there")
    if size is None:
        size = load_image(folder / names[0])[0].shape[-1]
    batch, loaded, errors, _ = load_images([folder / n for n in names], size, on_error="raise")
    vectors = torch.tensor([labels[n] for n in names], dtype=torch.float32)
    return LabelledPortraits(batch, vectors, names)


def render_labelled_portraits(split: str, count: int, size: int = 64, start: int = 0,
                              framing: Union[str, Sequence[str]] = "portrait") -> LabelledPortraits:
    """Render ``count`` portraits of ``split`` in memory (no files), with their attribute vectors.

    ``framing``: a :data:`~hyperinverter.portraits.FRAMINGS` entry, or several: the ``i``-th seed of the range is
    then drawn in ``framing[i % len(framing)]`` (one data set, hence one regressor, for all of them; the names are
    then ``seed:<seed>:<framing>``)."""
    from ..portraits import check_framing, render_seed, split_seeds

    framings = [framing] if isinstance(framing, str) else list(framing)
    if not framings:
        raise ValueError("framing: give at least one framing")
    for name in framings:
        check_framing(name)
    images, vectors, names = [], [], []
    for i, seed in enumerate(split_seeds(split, count, start)):
        drawn_in = framings[i % len(framings)]
        img, attrs = render_seed(seed, size, drawn_in)
        images.append(torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1))
        vectors.append([float(v) for v in attrs.to_vector()])
        names.append(f"seed:{seed}" if len(framings) == 1 else f"seed:{seed}:{drawn_in}")
    batch = torch.stack(images).float() / 127.5 - 1
    return LabelledPortraits(batch, torch.tensor(vectors, dtype=torch.float32), names)


# -------------------------------------------------------------------------------------------- training
@dataclass
class AttributeTrainConfig:
    """Settings of :func:`train_attribute_regressor`."""

    steps: int = 3000  # Adam steps.
    batch_size: int = 64  # Images per step.
    lr: float = 2e-3  # Peak learning rate (cosine decay to 0).
    weight_decay: float = 1e-4  # AdamW weight decay.
    holdout: float = 0.1  # Fraction of the images held out to report R² / accuracy.
    seed: int = 0  # Seed of the split, the initialisation and the batches.
    blur_prob: float = 0.3  # Probability an image is slightly blurred (GAN reconstructions are softer).
    noise_std: float = 0.02  # Std of Gaussian pixel noise added to every training image.

    def __post_init__(self):
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if not 0 <= self.holdout < 1:
            raise ValueError(f"holdout must be in [0, 1), got {self.holdout!r}")
        for name in ("blur_prob", "noise_std", "weight_decay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")


def _blur(x: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([1.0, 2.0, 1.0], device=x.device, dtype=x.dtype)
    k = (k[:, None] * k[None, :]) / 16  # [3, 3] binomial
    return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k.expand(3, 1, 3, 3), groups=3)


def _loss(model: AttributeRegressor, raw: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean of MSE (continuous, normalised) and BCE (binary) over attributes and images."""
    mse = (raw - target).square()
    bce = F.binary_cross_entropy_with_logits(raw, target.clamp(0, 1), reduction="none")
    return torch.where(model.binary, bce, mse).mean()


@torch.no_grad()
def evaluate_regressor(model: AttributeRegressor, images: torch.Tensor, values: torch.Tensor,
                       batch_size: int = 256) -> dict[str, Any]:
    """Per-attribute R² and mean absolute error (continuous) or accuracy (binary) on labelled images.

    ``values`` ``[N, A]`` are in attribute units (``model.attributes`` order).
    """
    device = model.head.weight.device
    preds = torch.cat([model.predict(images[i:i + batch_size].to(device).float()).cpu()
                       for i in range(0, images.shape[0], batch_size)])
    values = values.float().cpu()
    out: dict[str, Any] = {}
    for j, name in enumerate(model.attributes):
        y, p = values[:, j], preds[:, j]
        if bool(model.binary[j]):
            out[name] = {"kind": "binary", "accuracy": float(((p >= 0.5).float() == (y >= 0.5).float()).float().mean()),
                         "positive_rate": float((y >= 0.5).float().mean())}
        else:
            var = float((y - y.mean()).square().sum())
            r2 = 1 - float((y - p).square().sum()) / var if var > 0 else float("nan")
            out[name] = {"kind": "continuous", "r2": r2, "mae": float((y - p).abs().mean())}
    return out


def _summary(per_attribute: dict[str, Any]) -> dict[str, Optional[float]]:
    r2 = [v["r2"] for v in per_attribute.values() if v["kind"] == "continuous" and math.isfinite(v["r2"])]
    acc = [v["accuracy"] for v in per_attribute.values() if v["kind"] == "binary"]
    return {"mean_r2": float(np.mean(r2)) if r2 else None, "mean_accuracy": float(np.mean(acc)) if acc else None}


def train_attribute_regressor(images: torch.Tensor, values: torch.Tensor,
                              config: Optional[AttributeRegressorConfig] = None,
                              train: Optional[AttributeTrainConfig] = None,
                              device: Union[str, torch.device] = "cpu",
                              progress: bool = False) -> tuple[AttributeRegressor, dict[str, Any]]:
    """Train a regressor on labelled images.

    Args:
        images: ``[N, 3, S, S]`` in [-1, 1] (float, or uint8 in [0, 255] to save memory).
        values: ``[N, A]`` attribute values in attribute units, columns in ``config.attributes`` order
            (e.g. ``LabelledPortraits.values(config.attributes)``).
    Returns:
        ``(model in eval mode, report)``; the report has ``holdout`` (per attribute: R² and MAE, or
        accuracy), ``train`` (the same on up to 1024 training images), ``mean_r2``, ``mean_accuracy``
        (held out; on the training images when nothing is held out), counts and the final loss.
    """
    from tqdm import tqdm

    config = config or AttributeRegressorConfig()
    train = train or AttributeTrainConfig()
    n, a = images.shape[0], len(config.attributes)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape [N, 3, S, S], got {list(images.shape)}")
    if values.shape != (n, a):
        raise ValueError(f"values must have shape [{n}, {a}] (one column per attribute {config.attributes}), "
                         f"got {list(values.shape)}")
    if not torch.isfinite(values.float()).all():
        raise ValueError("attribute values contain NaN or infinite values")
    n_hold = int(round(n * train.holdout))
    if n - n_hold < 2:
        raise ValueError(f"{n} images with holdout {train.holdout} leave {n - n_hold} for training (need >= 2)")
    gen = torch.Generator().manual_seed(train.seed)
    order = torch.randperm(n, generator=gen)
    hold_idx, train_idx = order[:n_hold], order[n_hold:]

    torch.manual_seed(train.seed)
    model = AttributeRegressor(**dataclasses.asdict(config)).to(device).train()
    targets = model.normalize(values.float().to(device))  # [N, A]
    opt = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 + 0.5 * math.cos(math.pi * s / train.steps))

    def as_float(x: torch.Tensor) -> torch.Tensor:
        x = x.to(device)
        return x.float() / 127.5 - 1 if x.dtype == torch.uint8 else x.float()

    last = float("nan")
    with tqdm(total=train.steps, desc="attribute regressor", unit="step", disable=not progress) as bar:
        for step in range(train.steps):
            pick = train_idx[torch.randint(len(train_idx), (min(train.batch_size, len(train_idx)),), generator=gen)]
            x = as_float(images[pick])
            if train.blur_prob > 0:
                mask = (torch.rand(x.shape[0], 1, 1, 1, generator=gen) < train.blur_prob).to(device)
                x = torch.where(mask, _blur(x), x)
            if train.noise_std > 0:
                x = x + train.noise_std * torch.randn(x.shape, generator=gen).to(device)
            loss = _loss(model, model(x), targets[pick.to(device)])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            last = float(loss.detach())
            bar.update(1)
            if step % 50 == 0:
                bar.set_postfix(loss=f"{last:.4f}")
    model.eval()
    as_images = lambda idx: as_float(images[idx]).cpu()  # noqa: E731
    train_eval = train_idx[:1024]
    report: dict[str, Any] = {
        "attributes": list(config.attributes),
        "num_train": int(len(train_idx)),
        "num_holdout": int(n_hold),
        "final_loss": last,
        "train_config": dataclasses.asdict(train),
        "train": evaluate_regressor(model, as_images(train_eval), values[train_eval]),
        "holdout": evaluate_regressor(model, as_images(hold_idx), values[hold_idx]) if n_hold else None,
    }
    report.update(_summary(report["holdout"] or report["train"]))
    report["unlearned"] = unlearned_attributes(report["holdout"] or report["train"])
    return model, report


#: Below this held-out R² a continuous attribute counts as not learnt (the regressor predicts little more than
#: its mean); a binary one when its accuracy is within this of always answering the commoner class.
UNLEARNED_R2 = 0.2
UNLEARNED_ACCURACY_MARGIN = 0.02


def unlearned_attributes(metrics: dict) -> list:
    """The attributes of a report's ``holdout`` (or ``train``) metrics that the regressor did not learn: R² below
    :data:`UNLEARNED_R2`, or an accuracy no better than the majority class (+ the margin)."""
    out = []
    for name, r in metrics.items():
        if r["kind"] == "binary":
            majority = max(r["positive_rate"], 1.0 - r["positive_rate"])
            if r["accuracy"] <= majority + UNLEARNED_ACCURACY_MARGIN and majority < 1.0:
                out.append(name)
        elif not r["r2"] >= UNLEARNED_R2:
            out.append(name)
    return out


def save_regressor(model: AttributeRegressor, directory: PathLike, report: Optional[dict] = None) -> Path:
    """``save_pretrained`` plus the training report (``training_report.json``) when given; every file is
    written atomically."""
    from ..utils.outputs import write_text_atomic

    out = model.save_pretrained(directory)
    if report is not None:
        write_text_atomic(out / REPORT_NAME, json.dumps(report, indent=2, default=_json_default) + "\n")
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.generic, torch.Tensor)):
        return value.item() if getattr(value, "ndim", 0) == 0 else value.tolist()
    return str(value)
