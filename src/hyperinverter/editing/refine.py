"""Refining an edit direction on inversions, through the generator with their residuals kept.

An InterFaceGAN boundary separates codes; it does not see what the generator, with each inversion's
residuals Δθ kept, draws from a moved code. Δθ fits the input, and it can hold the input's attribute against
the edit (a glasses edit that barely removes the input's glasses), or the move can change other attributes as
well. :func:`refine_direction` starts from a direction and takes gradient steps on it, on inversions of
*training* images, through the generator and a differentiable attribute predictor:

* the edit is ``±s·u`` on every row of ``ws`` (``u`` unit norm), with the default strength of the shipped
  directions: ``s = k·std(codes·u)``, ``k`` standard deviations of the codes' projection on ``u``, so the edit
  stays as far inside the codes' distribution as the direction it replaces;
* loss ``μ·max(0, goal − target change) + entanglement``, both as :func:`edit_change` defines them (the
  measures of ``evaluation.EditabilityMeter``): keep (or reach) a target change, then move the other attributes
  as little as possible. The goal is the start's own target change unless one is given. A reward for the target
  change itself would not do: the direction can turn towards axes along which the codes spread more, so that
  its default strength, and with it every change, grows without bound;
* a share of the inversions is held out of the steps; the direction is measured on them every few steps and
  the best one is kept (the start included: refinement never returns a direction that scores worse there).

Use a predictor other than the one that judges the result (the demo model: the attribute regressor of the
hypernetworks' loss refines, the benchmark's regressor judges).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Optional

import torch

from .directions import Direction

#: ``render(ws [B, num_ws, w_dim], index [B]) -> images [B, 3, R, R]``: the generator with the residuals of
#: inversions ``index`` (differentiable in ``ws``).
Render = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: ``predict(images [B, 3, R, R]) -> [B, A]``: attributes on a common scale (differentiable in the images).
Predict = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class DirectionRefineConfig:
    """Settings of :func:`refine_direction`."""

    steps: int = 300  # Adam steps on the direction.
    batch_size: int = 16  # Inversions per step.
    lr: float = 0.003  # Adam learning rate of the direction's (unnormalised) vector; it starts at unit norm.
    target_change: Optional[float] = None  # Goal of the target change (None: the start's, on the held-out images).
    shortfall_weight: float = 10.0  # μ of the loss μ·max(0, goal - target change) + entanglement.
    strength_sigmas: float = 2.0  # Default strength: this many standard deviations of the codes along it.
    holdout: float = 0.25  # Share of the inversions kept out of the steps; the best direction is chosen on them.
    eval_every: int = 25  # Steps between measurements on the held-out inversions.
    seed: int = 0  # Seed of the split and of the batches.

    def check(self) -> "DirectionRefineConfig":
        problems = []
        if self.steps < 0:
            problems.append(f"steps must be >= 0, got {self.steps}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if self.target_change is not None and not 0 < self.target_change <= 1:
            problems.append(f"target_change must be in (0, 1] (the predictor's common scale), got {self.target_change}")
        if not self.shortfall_weight > 0:
            problems.append(f"shortfall_weight must be > 0, got {self.shortfall_weight}")
        if not self.strength_sigmas > 0:
            problems.append(f"strength_sigmas must be > 0, got {self.strength_sigmas}")
        if not 0 < self.holdout < 1:
            problems.append(f"holdout must be in (0, 1), got {self.holdout}")
        if self.eval_every < 1:
            problems.append(f"eval_every must be >= 1, got {self.eval_every}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


def edit_change(p_plus: torch.Tensor, p_minus: torch.Tensor, p_base: torch.Tensor,
                target: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, from predictions ``[B, A]`` on the ``+s`` edit, the ``-s`` edit and the unedited image:

    * target change ``(a_t(+s) - a_t(-s)) / 2`` ``[B]``;
    * entanglement: the mean over the other attributes of ``(|a_j(+s) - a_j(0)| + |a_j(-s) - a_j(0)|) / 2``
      ``[B]`` (zeros when the predictor has no other attribute).
    """
    assert p_plus.shape == p_minus.shape == p_base.shape and p_plus.ndim == 2, (p_plus.shape, p_base.shape)
    assert 0 <= target < p_plus.shape[1], (target, p_plus.shape)
    change = (p_plus[:, target] - p_minus[:, target]) / 2
    keep = torch.ones(p_plus.shape[1], dtype=torch.bool, device=p_plus.device)
    keep[target] = False
    if not bool(keep.any()):
        return change, torch.zeros_like(change)
    moved = ((p_plus - p_base).abs() + (p_minus - p_base).abs())[:, keep] / 2
    return change, moved.mean(dim=1)


def default_strength(unit: torch.Tensor, codes: torch.Tensor, sigmas: float) -> torch.Tensor:
    """``sigmas`` standard deviations of the projections ``codes [N, w_dim] @ unit`` (differentiable)."""
    return sigmas * (codes @ unit).std()


def _scores(vector, strength, ws, index, render, predict, base, target):
    edit = strength * vector
    p_plus = predict(render(ws + edit, index))
    p_minus = predict(render(ws - edit, index))
    return edit_change(p_plus, p_minus, base, target)


def refine_direction(direction: Direction, ws: torch.Tensor, codes: torch.Tensor, render: Render,
                     predict: Predict, target: int, config: Optional[DirectionRefineConfig] = None,
                     progress: Optional[Callable[[int, dict], None]] = None) -> tuple[Direction, dict]:
    """``direction`` refined on inversions (see the module docstring).

    Args:
        direction: the start, a ``[w_dim]`` vector on every row of ``ws`` (``layers`` None).
        ws: ``[N, num_ws, w_dim]`` codes of the inversions (rows equal for W codes).
        codes: ``[M, w_dim]`` codes the default strength is measured on (phase-I codes of training images).
        render: the generator with the residuals of inversions ``index`` (:data:`Render`).
        predict: attribute predictor (:data:`Predict`); ``target`` is the column of the edited attribute.
        config: :class:`DirectionRefineConfig`.
        progress: called as ``progress(step, measurement)`` after each held-out measurement.

    Returns:
        The refined direction (same name and kind, unit vector, default strength from ``codes``) and a report:
        held-out target change and entanglement of the start and of the result, the goal, the step it was kept
        at, the cosine between them, and the settings.
    """
    cfg = (config or DirectionRefineConfig()).check()
    if direction.vector.ndim != 1 or direction.layers is not None:
        raise ValueError(f"direction {direction.name!r}: only a [w_dim] direction on every row of ws can be refined")
    n, num_ws, w_dim = ws.shape
    assert direction.vector.shape == (w_dim,), (direction.vector.shape, ws.shape)
    assert codes.ndim == 2 and codes.shape[1] == w_dim, (codes.shape, w_dim)
    n_hold = max(1, round(n * cfg.holdout))
    if n - n_hold < 1:
        raise ValueError(f"{n} inversions: too few to hold {cfg.holdout:.0%} out and train on the rest")
    device = ws.device
    gen = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(n, generator=gen)
    held, train = order[:n_hold], order[n_hold:]
    codes = codes.to(device=device, dtype=torch.float32)
    with torch.no_grad():
        base = torch.cat([predict(render(ws[i], i)) for i in held.split(cfg.batch_size)])  # unedited, held out
        base_train = torch.zeros(n, base.shape[1], device=device)
        for i in train.split(cfg.batch_size):
            base_train[i] = predict(render(ws[i], i))

    def loss_of(change: torch.Tensor, ent: torch.Tensor) -> torch.Tensor:
        return cfg.shortfall_weight * (goal - change).clamp_min(0) + ent

    @torch.no_grad()
    def measure(unit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Held-out means: target change, entanglement, and the default strength they were measured at."""
        s = default_strength(unit, codes, cfg.strength_sigmas)
        parts = [_scores(unit, s, ws[i], i, render, predict, base[k:k + len(i)], target)
                 for k, i in zip(range(0, n_hold, cfg.batch_size), held.split(cfg.batch_size))]
        return torch.cat([p[0] for p in parts]).mean(), torch.cat([p[1] for p in parts]).mean(), s

    def record(change: torch.Tensor, ent: torch.Tensor, s: torch.Tensor) -> dict:  # host sync: measurements only
        return {"target_change": float(change), "entanglement": float(ent), "strength": float(s),
                "loss": float(loss_of(change, ent))}

    start = (direction.vector.float() / direction.vector.float().norm()).to(device)
    param = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([param], lr=cfg.lr)
    measured = measure(start)
    goal = cfg.target_change if cfg.target_change is not None else float(measured[0])
    if not goal > 0:
        raise ValueError(f"direction {direction.name!r} does not raise its attribute (held-out target change "
                         f"{float(measured[0]):.4f}): give a positive goal (target_change) or flip it")
    first = record(*measured)
    best, best_unit, best_step = first, start.clone(), 0
    history = [{"step": 0, **first}]
    if progress is not None:
        progress(0, first)
    for step in range(1, cfg.steps + 1):
        pick = train[torch.randint(len(train), (min(cfg.batch_size, len(train)),), generator=gen)]
        unit = param / param.norm()
        s = default_strength(unit, codes, cfg.strength_sigmas)
        change, ent = _scores(unit, s, ws[pick], pick, render, predict, base_train[pick], target)
        loss = loss_of(change.mean(), ent.mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % cfg.eval_every == 0 or step == cfg.steps:
            unit = (param / param.norm()).detach()
            m = record(*measure(unit))
            history.append({"step": step, **m})
            if progress is not None:
                progress(step, m)
            if m["loss"] < best["loss"]:
                best, best_unit, best_step = m, unit.clone(), step
    refined = Direction(direction.name, best_unit.cpu(), kind=direction.kind, layers=None,
                        strength=best["strength"], description=dict(direction.description))
    report = {
        "start": first, "result": best, "goal": goal, "kept_step": best_step, "history": history,
        "cosine_to_start": float(best_unit.double() @ start.double()),
        "inversions": n, "held_out": n_hold, "settings": asdict(cfg),
    }
    return refined, report


__all__ = ["Predict", "DirectionRefineConfig", "Render", "default_strength", "edit_change", "refine_direction"]
