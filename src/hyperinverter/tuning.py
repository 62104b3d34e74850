"""Per-image generator tuning: PTI's second stage, and ``refine`` (HyperInverter, then a few tuning steps).

PTI (Roich et al. 2021) tunes a copy of the synthesis weights per image around a fixed pivot ``w``, from
``θ + 0``. :func:`refine` runs the same tuning from HyperInverter's answer instead: ``w`` from E1 and
``θ + Δθ`` from the hypernetworks, so a few steps buy what hundreds buy PTI, and ``w`` stays fixed, so an
edit of the refined result still moves a code in W with the tuned weights kept.

The tuned weights are held as dense per-image residuals ``[B, *shape]`` and rendered through the
generator's per-sample ``weight_deltas``. Adam's update is element-wise and the per-image losses are summed,
so each image's residuals see only that image's gradient: a batch is the same as tuning one generator
copy per image (PTI's own implementation deep-copies the generator), in one batched pass.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Mapping, Optional

import torch
import torch.nn.functional as F

from .inverter import HyperInverter, InversionResult

#: LPIPS inside losses sees at most this side (as PTI does for 1024 px images) and at least 32 px.
LPIPS_LOSS_MAX_SIZE = 256
LPIPS_MIN_SIZE = 32
#: PTI's locality regulariser: the distance of the sampled code from the pivot, towards a random code.
LOCALITY_ALPHA = 30.0
#: ``parameters`` values of :class:`RefineConfig`.
REFINE_PARAMETERS = ("targets", "all")


def check_steps_lr(steps, lr, steps_name: str = "steps", lr_name: str = "lr") -> None:
    """One clear ``ValueError`` for a step count that is not a positive int or a learning rate that is not > 0."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"{steps_name} must be a positive integer, got {steps!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0 or not math.isfinite(lr):
        raise ValueError(f"{lr_name} must be a positive number, got {lr!r}")


def check_weights(mse_weight: float, lpips_weight: float) -> None:
    """Both loss weights finite and >= 0, not both 0."""
    for name, value in (("mse_weight", mse_weight), ("lpips_weight", lpips_weight)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 or not math.isfinite(value):
            raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    if mse_weight == 0 and lpips_weight == 0:
        raise ValueError("mse_weight and lpips_weight are both 0: nothing to optimise")


def lpips_input(x: torch.Tensor) -> torch.Tensor:
    """``x`` resized into LPIPS's working range (area-downscaled above 256 px, bilinear-upscaled below 32)."""
    size = x.shape[-1]
    if size > LPIPS_LOSS_MAX_SIZE:
        return F.interpolate(x, size=(LPIPS_LOSS_MAX_SIZE, LPIPS_LOSS_MAX_SIZE), mode="area")
    if size < LPIPS_MIN_SIZE:
        return F.interpolate(x, size=(LPIPS_MIN_SIZE, LPIPS_MIN_SIZE), mode="bilinear", align_corners=False)
    return x


def reconstruction_loss(images: torch.Tensor, targets: torch.Tensor, mse_weight: float, lpips_weight: float,
                        lpips: Optional[torch.nn.Module]) -> torch.Tensor:
    """Per-image loss ``[B]``: ``mse_weight * MSE + lpips_weight * LPIPS`` (LPIPS skipped when None)."""
    assert images.shape == targets.shape and images.ndim == 4, (images.shape, targets.shape)
    loss = mse_weight * (images - targets).square().mean(dim=(1, 2, 3))  # [B]
    if lpips is not None and lpips_weight > 0:
        loss = loss + lpips_weight * lpips(lpips_input(images), lpips_input(targets)).reshape(-1)
    return loss


def progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm bar over ``total`` steps (a no-op object when not ``enabled``)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", leave=False, disable=not enabled)


def locality_codes(model: HyperInverter, ws: torch.Tensor, generator: Optional[torch.Generator] = None
                   ) -> torch.Tensor:
    """PTI's locality samples: for each pivot, a code :data:`LOCALITY_ALPHA` away towards a random code.

    ``ws``: ``[B, num_ws, w_dim]``; returns the same shape (one code per image, repeated over the rows)."""
    z = torch.randn([ws.shape[0], model.generator.z_dim], device=ws.device, generator=generator)
    with torch.no_grad():
        w_z = model.generator.mapping(z)[:, :1]  # [B, 1, w_dim]
    step = w_z - ws[:, :1]
    w_r = ws[:, :1] + LOCALITY_ALPHA * step / step.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return w_r.expand_as(ws)


def tune_residuals(model: HyperInverter, targets: torch.Tensor, ws: torch.Tensor,
                   start: Mapping[str, torch.Tensor], steps: int, lr: float, mse_weight: float = 1.0,
                   lpips_weight: float = 1.0, lpips: Optional[torch.nn.Module] = None, locality: float = 0.0,
                   progress: bool = False, desc: str = "tuning", seed: int = 0
                   ) -> tuple[dict[str, torch.Tensor], torch.Tensor, list[float]]:
    """Tune per-image residuals of synthesis weights with Adam, ``ws`` fixed.

    Args:
        targets: ``[B, 3, R, R]`` in [-1, 1] on the model's device.
        ws: ``[B, num_ws, w_dim]``, the fixed codes.
        start: ``{synthesis parameter name: [B, *shape]}`` initial residuals (zeros: PTI; Δθ: refine); only
            these parameters are tuned.
        steps, lr: Adam steps and learning rate (PTI: 350 steps at 3e-4).
        mse_weight, lpips_weight, lpips: the per-image loss (:func:`reconstruction_loss`).
        locality: weight of PTI's locality regulariser: the tuned and the starting generator should draw
            the same image at a code :data:`LOCALITY_ALPHA` from the pivot (MSE, + LPIPS when given); 0 = off.
        seed: seed of the locality regulariser's random codes.
    Returns:
        ``(residuals, images, history)``: the tuned residuals (detached), the images they render, and the
        mean per-image loss before each step plus the final one.
    """
    check_steps_lr(steps, lr)
    check_weights(mse_weight, lpips_weight)
    if not (isinstance(locality, (int, float)) and locality >= 0 and math.isfinite(locality)):
        raise ValueError(f"locality must be a non-negative number, got {locality!r}")
    B = targets.shape[0]
    assert ws.ndim == 3 and ws.shape[0] == B, (ws.shape, targets.shape)
    params = dict(model.generator.synthesis.named_parameters())
    for name, value in start.items():
        assert name in params and value.shape == (B, *params[name].shape), (name, value.shape)
    deltas = {k: v.detach().clone().to(params[k].dtype).requires_grad_(True) for k, v in start.items()}
    fixed = {k: v.detach() for k, v in start.items()}
    opt = torch.optim.Adam(list(deltas.values()), lr=lr)
    gen = torch.Generator(device=ws.device).manual_seed(seed) if locality > 0 else None
    history: list[torch.Tensor] = []  # kept on the device; one host sync at the end
    with torch.enable_grad(), progress_bar(steps, desc, progress) as bar:
        for _ in range(steps):
            recon = model.render(ws, deltas)
            loss = reconstruction_loss(recon, targets, mse_weight, lpips_weight, lpips)  # [B]
            if locality > 0:
                w_r = locality_codes(model, ws, gen)
                with torch.no_grad():
                    anchor = model.render(w_r, fixed)
                loss = loss + locality * reconstruction_loss(model.render(w_r, deltas), anchor, 1.0,
                                                             lpips_weight, lpips)
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()
            opt.step()
            history.append(loss.detach().mean())
            bar.update(1)
    tuned = {k: v.detach() for k, v in deltas.items()}
    with torch.no_grad():
        recon = model.render(ws, tuned)
        history.append(reconstruction_loss(recon, targets, mse_weight, lpips_weight, lpips).mean())
    return tuned, recon, torch.stack(history).tolist()


@dataclass
class RefineConfig:
    """Settings of :func:`refine` (PTI's tuning recipe, started from HyperInverter's answer)."""

    steps: int = 50  # Adam steps per image (10 already helps; PTI tunes 350 from θ + 0).
    lr: float = 3e-4  # Adam learning rate (PTI's).
    mse_weight: float = 1.0  # Weight of the per-pixel MSE (on [-1, 1]).
    lpips_weight: float = 1.0  # Weight of LPIPS (used only when an LPIPS module is given).
    locality: float = 0.0  # Weight of PTI's locality regulariser (0 = off, PTI's default; PTI uses 0.1 when on).
    parameters: str = "targets"  # "targets": the layers the hypernetworks predict Δθ for; "all": every
    #                             synthesis parameter (the others start at 0).

    def __post_init__(self):
        check_steps_lr(self.steps, self.lr)
        check_weights(self.mse_weight, self.lpips_weight)
        if not (isinstance(self.locality, (int, float)) and self.locality >= 0 and math.isfinite(self.locality)):
            raise ValueError(f"locality must be a non-negative number, got {self.locality!r}")
        if self.parameters not in REFINE_PARAMETERS:
            raise ValueError(f"parameters must be one of {REFINE_PARAMETERS}, got {self.parameters!r}")


def refine(model: HyperInverter, images: torch.Tensor, result: Optional[InversionResult] = None,
           config: Optional[RefineConfig] = None, lpips: Optional[torch.nn.Module] = None,
           progress: bool = False, **overrides) -> InversionResult:
    """HyperInverter's inversion of ``images``, then ``config.steps`` of per-image generator tuning.

    Args:
        images: ``[B, 3, R, R]`` in [-1, 1] (the model's resolution), on the model's device.
        result: ``model.invert(images)`` when already computed (computed here otherwise).
        config: :class:`RefineConfig`; keyword ``overrides`` (``steps=10``) replace its fields.
        lpips: an LPIPS module for the loss (e.g. ``hyperinverter.losses.LPIPS`` with local weights); MSE only
            without one.
    Returns:
        An :class:`InversionResult` with the same ``w``/``ws`` as ``result`` and the tuned dense residuals
        (``edit``/``interpolate`` take it as they take ``result``); ``image`` is the refined image,
        ``image_w`` the phase-I image.
    """
    return refine_with_history(model, images, result, config, lpips, progress, **overrides)[0]


def refine_with_history(model: HyperInverter, images: torch.Tensor, result: Optional[InversionResult] = None,
                        config: Optional[RefineConfig] = None, lpips: Optional[torch.nn.Module] = None,
                        progress: bool = False, **overrides) -> tuple[InversionResult, list[float]]:
    """:func:`refine`, and the mean per-image loss before each step plus the final one."""
    config = dataclasses.replace(config or RefineConfig(), **overrides)
    model.check_images(images)
    if images.shape[-1] != model.resolution or images.shape[-2] != model.resolution:
        raise ValueError(f"refine compares images at the generator's resolution {model.resolution}, got "
                         f"{tuple(images.shape[-2:])}: resize them first")
    images = images.float()
    if result is None:
        result = model.invert(images)
    if len(result) != images.shape[0]:
        raise ValueError(f"result holds {len(result)} inversions for {images.shape[0]} images")
    # clones: invert's tensors are inference tensors, which autograd may not save
    ws = result.ws.detach().float().clone()
    start = {k: result.deltas[k].float().to(images.device).clone() for k in result.deltas}  # dense [B, *shape]
    if config.parameters == "all":
        for name, p in model.generator.synthesis.named_parameters():
            start.setdefault(name, torch.zeros((images.shape[0], *p.shape), device=p.device, dtype=p.dtype))
    was_training, flags = model.training, {p: p.requires_grad for p in model.parameters()}
    model.eval().requires_grad_(False)  # gradients go to the residuals only
    try:
        tuned, recon, history = tune_residuals(model, images, ws, start, config.steps, config.lr,
                                         config.mse_weight, config.lpips_weight, lpips, config.locality,
                                         progress=progress, desc="refine")
    finally:
        model.train(was_training)
        for p, flag in flags.items():
            p.requires_grad_(flag)
    refined = InversionResult(w=result.w.detach().clone(), ws=ws, deltas=tuned, image=recon,
                              image_w=None if result.image_w is None else result.image_w.detach())
    return refined, history
