"""Modulated (and demodulated) convolution, with optional per-sample weights.

StyleGAN2's core operation: scale the kernel's input channels by a per-sample style, optionally
renormalise each output channel to unit norm ("demodulation"), then convolve. HyperInverter adds
a per-sample residual to the kernel, so ``weight`` may carry a batch dimension; the batch then
runs as one grouped convolution (group = sample), never as a loop over samples.
"""

from __future__ import annotations

import torch

from .conv2d_resample import conv2d_resample


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    noise: torch.Tensor | None = None,
    up: int = 1,
    down: int = 1,
    padding: int = 0,
    resample_filter: torch.Tensor | None = None,
    demodulate: bool = True,
    flip_weight: bool = True,
    fused_modconv: bool | None = None,
) -> torch.Tensor:
    """Compute ``conv(x, weight * styles [/ ||weight * styles||]) + noise``.

    Args:
        x: ``[B, I, H, W]`` input.
        weight: ``[O, I, k, k]`` shared kernel, or ``[B, O, I, k, k]`` one kernel per sample.
        styles: ``[B, I]`` per-sample input-channel scales.
        noise: broadcastable to the output ``[B, O, H', W']``, added after demodulation.
        up, down, padding, resample_filter, flip_weight: see :func:`conv2d_resample`.
        demodulate: normalise every output channel of the modulated kernel (eps 1e-8).
        fused_modconv: ``True`` runs one grouped conv with per-sample kernels, ``False`` scales the
            activations instead and runs a plain batched conv (only possible with a shared kernel).
            ``None`` picks grouped for per-sample kernels and whenever autograd is off (inference: one
            grouped conv measured faster than scaling twice), activation scaling otherwise (training:
            the grouped conv's weight gradient is the slow part).
    Returns:
        ``[B, O, H', W']``.
    """
    batch = x.shape[0]
    per_sample = weight.ndim == 5
    out_ch, in_ch, kh, kw = weight.shape[-4:]
    assert x.ndim == 4 and x.shape[1] == in_ch, f"x {tuple(x.shape)} vs weight {tuple(weight.shape)}"
    assert styles.shape == (batch, in_ch), f"styles {tuple(styles.shape)}, expected {(batch, in_ch)}"
    if per_sample:
        assert weight.shape[0] == batch, f"per-sample weight {tuple(weight.shape)} for batch {batch}"
    if fused_modconv is None:
        fused_modconv = per_sample or not torch.is_grad_enabled()
    if per_sample and not fused_modconv:
        raise ValueError("per-sample weights need fused_modconv=True")

    if not fused_modconv:
        # Shared kernel: modulate the activations, convolve, then demodulate the outputs.
        x = x * styles.to(x.dtype).reshape(batch, -1, 1, 1)
        x = conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, down=down, padding=padding,
                            flip_weight=flip_weight)
        if demodulate:
            x = x * demodulation(weight, styles).to(x.dtype).reshape(batch, -1, 1, 1)  # [B, O, 1, 1]
        if noise is not None:
            x = x + noise.to(x.dtype)
        return x

    w = weight if per_sample else weight.unsqueeze(0)
    if _reference_order(weight, styles):
        w = w * styles.reshape(batch, 1, -1, 1, 1)  # [B, O, I, k, k]
        if demodulate:
            w = w * (w.square().sum(dim=[2, 3, 4], keepdim=True) + 1e-8).rsqrt()
    else:  # one kernel per sample: θ_b · s_b · d_b as one [B, O, I, 1, 1] scale of the kernel
        scale = styles.reshape(batch, 1, -1)  # [B, 1, I]
        if demodulate:
            scale = scale * demodulation(weight, styles).unsqueeze(2)  # [B, O, I]
        w = w * scale.unsqueeze(-1).unsqueeze(-1)  # [B, O, I, k, k]
    x = x.reshape(1, -1, *x.shape[2:])  # [1, B*I, H, W]
    w = w.reshape(-1, in_ch, kh, kw).to(x.dtype)  # [B*O, I, k, k]
    x = conv2d_resample(x, w, f=resample_filter, up=up, down=down, padding=padding, groups=batch,
                        flip_weight=flip_weight)
    x = x.reshape(batch, -1, *x.shape[2:])  # [B, O, H', W']
    if noise is not None:
        x = x + noise.to(x.dtype)
    return x


def demodulation(weight: torch.Tensor, styles: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``rsqrt(Σ_{i,k} (weight[o,i,k] · styles[b,i])² + eps)`` as ``styles² @ Σ_k weight²``: ``[B, O]``.

    ``weight`` is ``[O, I, k, k]`` or ``[B, O, I, k, k]``; in inference no ``[B, O, I, k, k]`` temporary is
    formed for a shared kernel (with autograd the reference product is kept, see below).
    """
    batch = styles.shape[0]
    if _reference_order(weight, styles):
        w = (weight if weight.ndim == 5 else weight.unsqueeze(0)) * styles.reshape(batch, 1, -1, 1, 1)
        return (w.square().sum(dim=[2, 3, 4]) + eps).rsqrt()
    dtype = torch.promote_types(weight.dtype, styles.dtype)
    sq = torch.linalg.vector_norm(weight, dim=(-2, -1), dtype=dtype).square()  # [O, I] or [B, O, I]
    t = styles.square().to(dtype).unsqueeze(1)  # [B, 1, I]
    return ((sq * t).sum(dim=-1) + eps).rsqrt()


def _reference_order(weight: torch.Tensor, styles: torch.Tensor) -> bool:
    """With autograd, keep the reference order of operations: its gradients give every sample the same
    numbers whatever the batch (per-image optimisation such as PTI and W/W+ fitting relies on it)."""
    return torch.is_grad_enabled() and (weight.requires_grad or styles.requires_grad)
