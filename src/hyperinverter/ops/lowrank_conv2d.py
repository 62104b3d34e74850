"""Modulated convolution with a per-sample *low-rank* kernel residual, without per-sample kernels.

The hypernetwork predicts, for a target kernel θ ``[O, I, k, k]`` with ``I = m·O``, the residual

    Δθ_b[o, q·O + c, s] = Σ_e G_b[o, q, e] · V[e, c, s]        (q < m, c < O, s < k·k)

where ``V`` ``[E, O, k, k]`` stacks the hypernetwork's ``E = D + 1`` shared kernels (the rows of its
``W2`` and ``b2``) and ``G_b`` ``[O, m, E]`` holds sample b's mixing coefficients (its ``H_b`` rows and
a 1 for ``b2``). Because modulation scales input channels and convolution is linear,

    conv(x_b·s_b, θ + Δθ_b)[o] = conv(x_b·s_b, θ)[o] + Σ_{q,e} G_b[o, q, e] · conv(x_b,q·s_b,q, V[e])

is one dense batched convolution with θ, one with the ``E`` shared kernels (``m`` channel groups) and a
per-sample channel mix (``bmm``). Demodulation needs ``Σ_{i,s} (s_i K_b[o,i,s])²`` for
``K_b = θ + Δθ_b``; expanding the square gives three terms built from small Gram products
(see :func:`lowrank_demodulation`). No ``[B, O, I, k, k]`` tensor is ever formed.

Costs are compared with the grouped per-sample path by :func:`lowrank_is_cheaper`.
"""

from __future__ import annotations

from typing import Optional

import torch

from .conv2d_resample import conv2d_resample

#: Relative cost of one element of an elementwise pass over a per-sample kernel, in multiply-adds
#: of a large convolution (memory-bound passes: building θ+Δθ, modulating, demodulating, casting).
ELEMENTWISE_MACS = 8.0
#: Passes over the ``[B, O, I, k, k]`` kernels that the grouped path makes (θ+Δθ, norm, scale, copy).
GROUPED_KERNEL_PASSES = 4


def lowrank_demodulation(theta: torch.Tensor, kernels: torch.Tensor, mix: torch.Tensor, styles: torch.Tensor,
                         eps: float = 1e-8) -> torch.Tensor:
    """Demodulation coefficients ``rsqrt(Σ_{i,s} (s_b,i · K_b[o,i,s])² + eps)`` of ``K_b = θ + Δθ_b``.

    With ``t = s²``, ``K_b[o, qc, s] = θ[o, qc, s] + Σ_e G_b[o,q,e] V[e,c,s]``:
    ``Σ = t·Σ_s θ²  +  2 Σ_{q,e} G[o,q,e] Σ_c t[q,c] M[q,c,o,e]  +  Σ_q G[o,q]ᵀ (Σ_c t[q,c] N[c]) G[o,q]``
    with ``M[q,c,o,e] = Σ_s θ[o,qc,s] V[e,c,s]`` and ``N[c,e,f] = Σ_s V[e,c,s] V[f,c,s]``.
    Computed in float32 (float64 stays float64) whatever the activations' dtype.

    Args:
        theta: ``[O, I, k, k]`` shared kernel.
        kernels: ``V`` ``[E, C, k, k]`` with ``I = m·C``.
        mix: ``G`` ``[B, O, m, E]``.
        styles: ``[B, I]``.
    Returns:
        ``[B, O]``.
    """
    out_ch, in_ch = theta.shape[:2]
    num_e, group_ch = kernels.shape[:2]
    m = in_ch // group_ch
    batch = styles.shape[0]
    assert in_ch == m * group_ch and kernels.shape[2:] == theta.shape[2:], \
        f"θ {tuple(theta.shape)}, V {tuple(kernels.shape)}"
    assert mix.shape == (batch, out_ch, m, num_e), f"mix {tuple(mix.shape)}, expected {(batch, out_ch, m, num_e)}"
    dtype = torch.promote_types(theta.dtype, torch.float32)
    th = theta.to(dtype).reshape(out_ch, m, group_ch, -1)  # [O, m, C, kk]
    v = kernels.to(dtype).reshape(num_e, group_ch, -1)  # [E, C, kk]
    g = mix.to(dtype)
    t = styles.to(dtype).square()  # [B, I]
    t1 = t @ th.square().sum(-1).reshape(out_ch, in_ch).t()  # [B, O]
    # M[q, c, o, e] = Σ_s θ[o, qc, s] V[e, c, s]: one [O, kk] @ [kk, E] product per input channel.
    prod = torch.bmm(th.permute(1, 2, 0, 3).reshape(in_ch, out_ch, -1),
                     v.permute(1, 2, 0).unsqueeze(0).expand(m, -1, -1, -1).reshape(in_ch, -1, num_e))  # [I, O, E]
    p = torch.einsum("bqc,qcoe->boqe", t.reshape(batch, m, group_ch), prod.reshape(m, group_ch, out_ch, num_e))
    t2 = (p * g).sum(dim=[2, 3])  # [B, O]
    gram = torch.einsum("ecs,fcs->cef", v, v).reshape(group_ch, -1)  # [C, E*E]
    q = (t.reshape(batch * m, group_ch) @ gram).reshape(batch, m, num_e, num_e)  # [B, m, E, E]
    t3 = (torch.einsum("boqe,bqef->boqf", g, q) * g).sum(dim=[2, 3])  # [B, O]
    return (t1 + 2 * t2 + t3).clamp_min(0).add(eps).rsqrt()


def lowrank_modulated_conv2d(
    x: torch.Tensor,
    theta: torch.Tensor,
    kernels: torch.Tensor,
    mix: torch.Tensor,
    styles: torch.Tensor,
    noise: Optional[torch.Tensor] = None,
    up: int = 1,
    padding: int = 0,
    resample_filter: Optional[torch.Tensor] = None,
    demodulate: bool = True,
    flip_weight: bool = True,
) -> torch.Tensor:
    """``modulated_conv2d(x, θ + Δθ_b, styles)`` for ``Δθ_b = reinterpret(G_b V)`` without forming ``Δθ_b``.

    Args:
        x: ``[B, I, H, W]``.
        theta: ``[O, I, k, k]`` shared kernel.
        kernels: ``V`` ``[E, C, k, k]``, ``I = m·C`` (see the module docstring).
        mix: ``G`` ``[B, O, m, E]``.
        styles: ``[B, I]``.
        noise, up, padding, resample_filter, demodulate, flip_weight: as in :func:`modulated_conv2d`.
    Returns:
        ``[B, O, H', W']`` in ``x.dtype``.
    """
    batch, in_ch = x.shape[:2]
    out_ch = theta.shape[0]
    num_e, group_ch = kernels.shape[:2]
    m = in_ch // group_ch
    assert theta.shape[1] == in_ch and in_ch == m * group_ch, \
        f"x {tuple(x.shape)}, θ {tuple(theta.shape)}, V {tuple(kernels.shape)}"
    assert styles.shape == (batch, in_ch), f"styles {tuple(styles.shape)}, expected {(batch, in_ch)}"
    assert mix.shape == (batch, out_ch, m, num_e), f"mix {tuple(mix.shape)}, expected {(batch, out_ch, m, num_e)}"
    s = styles
    th, v = theta, kernels
    if x.dtype == torch.float16:  # keep fp16 partial sums in range (as NVlabs does); cancelled by demodulation
        s = s / s.abs().amax(dim=1, keepdim=True).clamp_min(1e-8)
        scale = 1 / (theta.abs().amax().clamp_min(1e-8) * theta[0].numel() ** 0.5)
        th, v = theta * scale, kernels * scale
    dcoefs = lowrank_demodulation(th, v, mix, s) if demodulate else None
    x = x * s.to(x.dtype).reshape(batch, in_ch, 1, 1)
    conv = dict(f=resample_filter, up=up, padding=padding, flip_weight=flip_weight)
    if m == 1:  # one convolution with θ and the E shared kernels side by side
        y = conv2d_resample(x, torch.cat([th, v]).to(x.dtype), **conv)
        base, z = y[:, :out_ch], y[:, out_ch:]
    else:  # input-channel group q meets the shared kernels alone
        base = conv2d_resample(x, th.to(x.dtype), **conv)
        z = conv2d_resample(x, v.repeat(m, 1, 1, 1).to(x.dtype), groups=m, **conv)  # [B, m*E, H', W']
    h, w = base.shape[2:]
    y = torch.baddbmm(base.reshape(batch, out_ch, h * w), mix.reshape(batch, out_ch, m * num_e).to(x.dtype),
                      z.reshape(batch, m * num_e, h * w)).reshape(batch, out_ch, h, w)
    if dcoefs is not None:
        y = y * dcoefs.to(y.dtype).reshape(batch, out_ch, 1, 1)
    if noise is not None:
        y = y + noise.to(y.dtype)
    return y


def lowrank_is_cheaper(batch: int, out_ch: int, in_ch: int, kernel_numel: int, num_e: int, conv_pixels: int,
                       out_pixels: int) -> bool:
    """Cost model (multiply-adds, elementwise passes weighted by :data:`ELEMENTWISE_MACS`).

    Grouped path: expand ``H_b W2`` (``B·I·D·O·kk``), the kernel passes, and the convolution
    ``B·px·O·I·kk``. Low-rank path: the convolution with ``O + E`` output channels (``m`` groups for
    the shared kernels), the mix ``B·px'·O·m·E`` and the Gram products.

    Args:
        conv_pixels: positions at which the kernel is applied (output pixels; input pixels for a
            2x transposed up-sampling conv).
        out_pixels: output pixels (where the mix runs).
    """
    m = in_ch // out_ch
    kernel = out_ch * in_ch * kernel_numel
    grouped = batch * kernel * (conv_pixels + (num_e - 1) + GROUPED_KERNEL_PASSES * ELEMENTWISE_MACS)
    lowrank = (batch * conv_pixels * in_ch * kernel_numel * (out_ch + num_e)
               + batch * out_pixels * out_ch * m * num_e
               + kernel * num_e + batch * in_ch * out_ch * num_e  # M and t·M
               + in_ch // m * num_e * num_e * kernel_numel + batch * in_ch * num_e * num_e  # N and t·N
               + batch * out_ch * m * num_e * num_e)  # Gᵀ Q G
    return lowrank < grouped
