"""Finding edit directions: InterFaceGAN boundaries, GANSpace PCA of W, SeFa closed-form factorisation.

No scikit-learn: the linear classifiers are fitted in float64 with L-BFGS in torch.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from .directions import Direction, GanSpacePCA

ArrayLike = Union[torch.Tensor, np.ndarray, Sequence[float]]


# ------------------------------------------------------------------------------------------ InterFaceGAN
def _to_float64(value: ArrayLike, what: str) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    elif not isinstance(value, torch.Tensor):
        try:
            value = torch.as_tensor(np.asarray(value))
        except (TypeError, ValueError) as e:
            raise ValueError(f"{what} must be a tensor or array: {e}") from None
    if value.dtype == torch.bool:
        value = value.to(torch.uint8)
    if not (value.is_floating_point() or value.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32,
                                                          torch.int64)):
        raise ValueError(f"{what} must hold real numbers, got dtype {value.dtype}")
    return value.detach().to("cpu", torch.float64)


def _fit_linear(x: torch.Tensor, y: torch.Tensor, method: str, C: float, max_iter: int) -> tuple[torch.Tensor, float]:
    """Primal linear classifier on ``x [n, d]`` (float64), ``y`` in {-1, +1} -> (normal [d], bias).

    ``svm``: L2-regularised squared-hinge loss (liblinear's L2-loss SVM),
    ``0.5 |w|^2 + C * sum(max(0, 1 - y (w.x + b))^2)``; ``logistic``: ``0.5 |w|^2 + C * sum(log(1 + e^-m))``.
    The bias is not regularised; features are centred internally for conditioning.
    """
    center = x.mean(dim=0)
    xc = x - center
    scale = xc.square().sum(dim=1).mean().sqrt().clamp_min(1e-12)  # overall scale only: keeps the geometry
    xs = xc / scale
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9, tolerance_change=1e-14,
                            history_size=20, line_search_fn="strong_wolfe")
    # In scaled coordinates, w_s = w * scale: same objective as the unscaled problem with reg. 0.5 |w_s|^2 / scale^2.
    reg = 0.5 / float(scale) ** 2

    def closure():
        opt.zero_grad()
        margin = y * (xs @ w + b)
        if method == "svm":
            loss = (1 - margin).clamp_min(0).square().sum()
        else:
            loss = nn.functional.softplus(-margin).sum()
        total = reg * w.square().sum() + C * loss
        total.backward()
        return total

    with torch.enable_grad():
        opt.step(closure)
    normal = w.detach() / scale
    bias = float(b.detach()) - float(normal @ center)
    return normal, bias


def _accuracy(x: torch.Tensor, y: torch.Tensor, normal: torch.Tensor, bias: float) -> Optional[float]:
    if x.shape[0] == 0:
        return None
    pred = torch.where(x @ normal + bias >= 0, 1.0, -1.0).to(y.dtype)
    return float((pred == y).double().mean())


def fit_interfacegan(codes: ArrayLike, labels: ArrayLike, holdout: float = 0.2, seed: int = 0,
                     method: str = "svm", ratio: float = 0.3, name: str = "interfacegan", C: float = 1.0,
                     max_iter: int = 500) -> tuple[Direction, dict[str, Any]]:
    """Fit an InterFaceGAN boundary: a linear classifier in W whose unit normal is the edit direction.

    Args:
        codes: ``[N, w_dim]`` latent codes (e.g. ``G.mapping(z)[:, 0]`` or inverted ``w``).
        labels: ``[N]``. Two distinct values (bool / 0-1 / any pair): binary, the larger value is the
            positive class. More values: scores, treated as InterFaceGAN does: samples sorted by score,
            the top ``ratio`` are positives, the bottom ``ratio`` negatives, the middle is left out of the
            fit (``ratio=0.5`` splits at the median).
        holdout: fraction of each class held out (random, stratified) to measure accuracy.
        seed: seed of the holdout split.
        method: ``"svm"`` (linear L2-loss SVM) or ``"logistic"`` (L2-regularised logistic regression).
        ratio: fraction (0, 0.5] of the samples taken as each class for score labels; ignored for binary.
        C: inverse regularisation strength (losses summed over samples, as scikit-learn's SVC/LinearSVC).

    Returns:
        ``(direction, report)``: a ``kind="interfacegan"`` :class:`Direction` with a unit-norm ``[w_dim]``
        vector pointing towards the positive class, and a dict with ``train_accuracy``,
        ``holdout_accuracy`` (None if nothing was held out), ``remaining_accuracy`` (score labels: the left-out
        middle, labelled by the mid-score as InterFaceGAN does; else None), ``intercept`` (the boundary is
        ``n . w + intercept = 0``) and the counts ``num_train_positive`` ... ``num_remaining``.
    """
    if method not in ("svm", "logistic"):
        raise ValueError(f"method must be 'svm' or 'logistic', got {method!r}")
    x = _to_float64(codes, "codes")
    y_raw = _to_float64(labels, "labels")
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        hint = " (for ws [N, num_ws, w_dim] pass ws[:, 0])" if x.ndim == 3 else ""
        raise ValueError(f"codes must have shape [N, w_dim], got {list(x.shape)}{hint}")
    if y_raw.ndim == 2 and y_raw.shape[1] == 1:
        y_raw = y_raw.reshape(-1)
    if y_raw.ndim != 1 or y_raw.shape[0] != x.shape[0]:
        raise ValueError(f"labels must have shape [{x.shape[0]}] (one per code), got {list(y_raw.shape)}")
    if not torch.isfinite(x).all():
        raise ValueError("codes contain NaN or infinite values")
    if not torch.isfinite(y_raw).all():
        raise ValueError("labels contain NaN or infinite values")
    if not 0 <= holdout < 1:
        raise ValueError(f"holdout must be in [0, 1), got {holdout}")
    if not 0 < ratio <= 0.5:
        raise ValueError(f"ratio must be in (0, 0.5], got {ratio}")

    n = x.shape[0]
    values = torch.unique(y_raw)
    if values.numel() < 2:
        raise ValueError(f"labels hold a single value ({float(values[0]) if values.numel() else 'none'}); "
                         "a boundary needs two classes")
    remaining = torch.zeros(0, dtype=torch.long)
    remaining_y = torch.zeros(0, dtype=torch.float64)
    if values.numel() == 2:
        label_type = "binary"
        pos_idx = torch.nonzero(y_raw == values[1]).reshape(-1)
        neg_idx = torch.nonzero(y_raw == values[0]).reshape(-1)
        thresholds = {"positive_value": float(values[1]), "negative_value": float(values[0])}
    else:
        label_type = "scores"
        order = torch.argsort(y_raw, descending=True, stable=True)
        chosen = min(int(n * ratio), n // 2)
        if chosen < 1:
            raise ValueError(f"ratio {ratio} of {n} samples leaves no sample per class")
        pos_idx, neg_idx = order[:chosen], order[n - chosen:]
        lo_pos, hi_neg = float(y_raw[pos_idx].min()), float(y_raw[neg_idx].max())
        if lo_pos <= hi_neg:
            raise ValueError(f"the top and bottom {ratio:.0%} of the scores overlap (both contain {lo_pos}); "
                             "too many tied scores to split into two classes")
        remaining = order[chosen:n - chosen]
        decision = (float(y_raw[order[0]]) + float(y_raw[order[-1]])) / 2  # InterFaceGAN's mid-score
        remaining_y = torch.where(y_raw[remaining] >= decision, 1.0, -1.0).to(torch.float64)
        thresholds = {"positive_min_score": lo_pos, "negative_max_score": hi_neg, "remaining_decision": decision}

    gen = torch.Generator().manual_seed(seed)
    splits = []
    for idx in (pos_idx, neg_idx):
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        n_hold = int(round(idx.numel() * holdout))
        n_hold = min(n_hold, idx.numel() - 1)  # keep at least one training sample per class
        splits.append((idx[n_hold:], idx[:n_hold]))
    (pos_train, pos_hold), (neg_train, neg_hold) = splits
    train_idx = torch.cat([pos_train, neg_train])
    hold_idx = torch.cat([pos_hold, neg_hold])
    y_train = torch.cat([torch.ones(pos_train.numel()), -torch.ones(neg_train.numel())]).double()
    y_hold = torch.cat([torch.ones(pos_hold.numel()), -torch.ones(neg_hold.numel())]).double()

    normal, bias = _fit_linear(x[train_idx], y_train, method, C, max_iter)
    norm = float(normal.norm())
    if not math.isfinite(norm) or norm == 0:
        raise ValueError("the classifier found no direction (all codes identical?)")
    report = {
        "method": method,
        "label_type": label_type,
        "train_accuracy": _accuracy(x[train_idx], y_train, normal, bias),
        "holdout_accuracy": _accuracy(x[hold_idx], y_hold, normal, bias),
        "remaining_accuracy": _accuracy(x[remaining], remaining_y, normal, bias) if remaining.numel() else None,
        "num_train_positive": int(pos_train.numel()),
        "num_train_negative": int(neg_train.numel()),
        "num_holdout_positive": int(pos_hold.numel()),
        "num_holdout_negative": int(neg_hold.numel()),
        "num_remaining": int(remaining.numel()),
        "intercept": bias / norm,
        "holdout": holdout,
        "ratio": ratio if label_type == "scores" else None,
        "seed": seed,
        "C": C,
        **thresholds,
    }
    direction = Direction(name=name, vector=(normal / norm).float(), kind="interfacegan",
                          description={"source": f"fit_interfacegan on {n} codes", **report})
    return direction, report


# ------------------------------------------------------------------------------------------ GANSpace
def _sign_fix(rows: torch.Tensor) -> torch.Tensor:
    """Deterministic signs: the entry of largest magnitude of every row is positive."""
    idx = rows.abs().argmax(dim=1, keepdim=True)
    signs = torch.sign(rows.gather(1, idx))
    signs[signs == 0] = 1
    return rows * signs


@torch.no_grad()
def compute_ganspace(G, num_samples: int = 100_000, num_components: int = 32, seed: int = 0,
                     batch_size: int = 10_000) -> GanSpacePCA:
    """GANSpace: PCA of ``w = G.mapping(z)[:, 0]`` for ``num_samples`` z ~ N(0, I) (seeded).

    The covariance is accumulated over batches in float64 and diagonalised with ``torch.linalg.eigh``
    (the same principal axes as an SVD of the centred samples, without holding them all).
    Returns ``components [k, w_dim]`` (unit rows, sorted by decreasing variance, sign: largest entry
    positive), ``mean [w_dim]`` and ``stdev [k]`` (sample standard deviation along each component),
    all float32 on the CPU. Sampling matches :meth:`Generator.compute_w_avg` for equal seeds and batch sizes.
    """
    w_dim, z_dim = G.w_dim, G.z_dim
    if not 1 <= num_components <= w_dim:
        raise ValueError(f"num_components must be in 1..{w_dim}, got {num_components}")
    if num_samples < 2 or num_samples <= num_components:
        raise ValueError(f"num_samples ({num_samples}) must exceed num_components ({num_components})")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    gen = torch.Generator().manual_seed(seed)
    device = G.mapping.w_avg.device
    total = torch.zeros(w_dim, dtype=torch.float64)
    outer = torch.zeros(w_dim, w_dim, dtype=torch.float64)
    shift = None  # first batch mean, subtracted for numerically stable accumulation
    for start in range(0, num_samples, batch_size):
        count = min(batch_size, num_samples - start)
        z = torch.randn([count, z_dim], generator=gen).to(device)
        w = G.mapping(z)[:, 0].double().cpu()
        if shift is None:
            shift = w.mean(dim=0)
        w = w - shift
        total += w.sum(dim=0)
        outer += w.T @ w
    mean_shifted = total / num_samples
    cov = (outer - num_samples * torch.outer(mean_shifted, mean_shifted)) / (num_samples - 1)
    cov = (cov + cov.T) / 2
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    order = torch.argsort(evals, descending=True)[:num_components]
    comps = _sign_fix(evecs[:, order].T)
    comps = comps / comps.norm(dim=1, keepdim=True)
    stdev = evals[order].clamp_min(0).sqrt()
    mean = mean_shifted + shift
    return GanSpacePCA(comps.float(), mean.float(), stdev.float())


# ------------------------------------------------------------------------------------------ SeFa
def _style_layers(G) -> list[tuple[int, str, nn.Module]]:
    """``(ws row, name, layer)`` of every conv layer (row i is read by conv layer i) plus the last toRGB
    (row num_ws - 1), in the order of the rows."""
    synthesis = G.synthesis
    out = []
    w_idx = 0
    blocks = list(zip(synthesis.blocks(), synthesis.block_resolutions))
    for block, res in blocks:
        for k, conv in enumerate(("conv0", "conv1") if block.num_conv == 2 else ("conv1",)):
            out.append((w_idx + k, f"synthesis.b{res}.{conv}", getattr(block, conv)))
        w_idx += block.num_conv
    last_block, last_res = blocks[-1]
    out.append((w_idx, f"synthesis.b{last_res}.torgb", last_block.torgb))
    return out


def _parse_rows(layers, num_ws: int) -> list[int]:
    if layers is None:
        return list(range(num_ws - 1))  # every conv layer
    if isinstance(layers, tuple) and len(layers) == 2 and all(isinstance(v, int) for v in layers):
        rows = list(range(layers[0], layers[1]))
    elif isinstance(layers, slice):
        rows = list(range(num_ws))[layers]
    elif isinstance(layers, int):
        rows = [layers]
    else:
        rows = [int(v) for v in layers]
    bad = [r for r in rows if not 0 <= r < num_ws]
    if not rows or bad or len(set(rows)) != len(rows):
        raise ValueError(f"layers {layers!r} select rows {rows}; give distinct rows of ws in 0..{num_ws - 1} "
                         f"(rows 0..{num_ws - 2}: conv layers, {num_ws - 1}: the last toRGB)")
    return sorted(rows)


def sefa_matrix(G, layers=None) -> torch.Tensor:
    """The matrix SeFa factorises: the effective style (modulation) matrices ``affine.weight * weight_gain``
    (``[in_channels, w_dim]``) of the selected layers stacked along rows, every row scaled to unit norm
    (SeFa's ``weight / norm(weight, axis=0)`` on the transposed ``[w_dim, channels]`` matrix). float64.

    ``layers``: rows of ws (``(first, stop)``, a slice, an int, or a list); row i is conv layer i and
    row ``num_ws - 1`` the last toRGB, as in the official SeFa (``layer_idx``). None = every conv layer
    (the official "all" also includes the last toRGB: pass ``range(G.num_ws)`` for that).
    """
    table = _style_layers(G)
    rows = _parse_rows(layers, G.num_ws)
    by_row = {r: (name, layer) for r, name, layer in table}
    mats = []
    for r in rows:
        name, layer = by_row[r]
        fc = layer.affine
        a = fc.weight.detach().double().cpu() * fc.weight_gain  # [in_ch, w_dim]
        if name.endswith("torgb"):  # toRGB styles are scaled once more (no demodulation there)
            a = a * layer.weight_gain
        mats.append(a)
    A = torch.cat(mats, dim=0)
    return A / A.norm(dim=1, keepdim=True).clamp_min(1e-30)


class SefaDirections(NamedTuple):
    """``directions [num, w_dim]`` (unit, orthogonal, by decreasing eigenvalue), ``eigenvalues [num]``
    of ``A^T A``, the ``layers`` (rows of ws) they were computed from, and the generator's ``num_ws``."""

    directions: torch.Tensor
    eigenvalues: torch.Tensor
    layers: list
    num_ws: int

    def direction(self, index: int, strength: float = 1.0, name: Optional[str] = None) -> Direction:
        """Direction ``index`` as a :class:`Direction` that moves exactly the rows it was found for
        (``layers=(first, stop)`` when they are contiguous, else a ``[num_ws, w_dim]`` vector, zero elsewhere)."""
        if not 0 <= index < self.directions.shape[0]:
            raise ValueError(f"index {index} out of range 0..{self.directions.shape[0] - 1}")
        rows = list(self.layers)
        vector = self.directions[index]
        layers = (rows[0], rows[-1] + 1)
        if rows != list(range(rows[0], rows[-1] + 1)):
            full = torch.zeros(self.num_ws, vector.shape[0])
            full[rows] = vector
            vector, layers = full, None
        return Direction(name=name or f"sefa_{index}", vector=vector, kind="sefa", layers=layers,
                         strength=strength, description={"index": index, "eigenvalue": float(self.eigenvalues[index]),
                                                         "layers": rows, "source": "sefa_directions"})


@torch.no_grad()
def sefa_directions(G, layers=None, num: int = 16) -> SefaDirections:
    """Closed-form factorisation (SeFa, Shen & Zhou 2021): the top ``num`` eigenvectors of ``A^T A`` for the
    row-normalised style matrix ``A`` of :func:`sefa_matrix` — the unit directions ``n`` that maximise
    ``|A n|``, i.e. change the selected layers' modulation the most. Eigendecomposition in float64
    (``eigh``, sorted by decreasing eigenvalue; sign: largest entry positive). Returns
    :class:`SefaDirections` (unpacks as ``directions, eigenvalues, layers, num_ws``).
    """
    w_dim = G.w_dim
    if not 1 <= num <= w_dim:
        raise ValueError(f"num must be in 1..{w_dim}, got {num}")
    rows = _parse_rows(layers, G.num_ws)
    A = sefa_matrix(G, rows)
    evals, evecs = torch.linalg.eigh(A.T @ A)
    order = torch.argsort(evals, descending=True)[:num]
    dirs = _sign_fix(evecs[:, order].T)
    dirs = dirs / dirs.norm(dim=1, keepdim=True)
    return SefaDirections(dirs.float(), evals[order], rows, G.num_ws)


__all__ = ["SefaDirections", "compute_ganspace", "fit_interfacegan", "sefa_directions", "sefa_matrix"]
