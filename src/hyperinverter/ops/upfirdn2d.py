"""Upsample, FIR-filter, downsample (``upfirdn2d``) in plain PyTorch.

The resampling used by StyleGAN2: insert zeros to upsample, pad, convolve with a 2-D FIR filter
(by default the normalised outer product of ``[1, 3, 3, 1]``), then keep every ``down``-th pixel.
The filter is flipped before the correlation so that the operation is a true convolution,
as in the published implementation (irrelevant for the symmetric default filter, kept for exactness).
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
import torch.nn.functional as F

Padding = Union[int, Sequence[int]]


def setup_filter(f: Sequence[float] | torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Turn a 1-D list of taps into the 2-D filter StyleGAN2 stores as ``resample_filter``.

    Args:
        f: 1-D taps (e.g. ``[1, 3, 3, 1]``) or an already 2-D filter.
        normalize: divide by the sum so that the filter preserves the mean.
    Returns:
        ``[fh, fw]`` float32 tensor.
    """
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim == 0:
        f = f.reshape(1)
    if f.ndim == 1:
        f = torch.outer(f, f)
    if f.ndim != 2:
        raise ValueError(f"a resampling filter must be 1-D or 2-D, got shape {tuple(f.shape)}")
    if normalize:
        f = f / f.sum()
    return f


def _parse_padding(padding: Padding) -> tuple[int, int, int, int]:
    """Return ``(x0, x1, y0, y1)`` from an int, ``[x, y]`` or ``[x0, x1, y0, y1]``."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    padding = [int(p) for p in padding]
    if len(padding) == 2:
        px, py = padding
        return px, px, py, py
    if len(padding) == 4:
        return padding[0], padding[1], padding[2], padding[3]
    raise ValueError(f"padding must have 1, 2 or 4 entries, got {padding}")


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor | None,
    up: int = 1,
    down: int = 1,
    padding: Padding = 0,
    flip_filter: bool = False,
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample by zero insertion, pad, convolve with ``f`` (depthwise) and downsample.

    In inference (no autograd on ``x``) ``up > 1`` is computed in polyphase form, without the
    zero-stuffed temporary (the same numbers, 2-3x faster).

    Args:
        x: ``[N, C, H, W]``.
        f: ``[fh, fw]`` filter, or ``None`` for the identity filter.
        up, down: integer factors, the same on both axes.
        padding: applied after upsampling, negative values crop.
        flip_filter: ``False`` computes a convolution, ``True`` a correlation.
        gain: overall scale; the filter is multiplied by ``gain`` (spread over its two axes).
    """
    assert x.ndim == 4, f"expected [N, C, H, W], got {tuple(x.shape)}"
    if f is None:
        f = torch.ones(1, 1, dtype=x.dtype, device=x.device)
    n, c, h, w = x.shape
    px0, px1, py0, py1 = _parse_padding(padding)

    if up > 1 and not (x.requires_grad and torch.is_grad_enabled()):
        # inference: polyphase, no zero-stuffed image (with autograd the reference below is kept: its
        # backward pass gives every sample the same numbers whatever the batch, which PTI relies on)
        return _upfirdn2d_polyphase(x, f, up, down, (px0, px1, py0, py1), flip_filter, gain)

    if up > 1:  # zero insertion: [N, C, H, 1, W, 1] -> pad -> [N, C, H*up, W*up]
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)

    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]

    f = (f * gain).to(dtype=x.dtype, device=x.device)
    if not flip_filter:
        f = f.flip([0, 1])
    weight = f[None, None].expand(c, 1, *f.shape)
    x = F.conv2d(x, weight, groups=c)

    if down > 1:
        x = x[:, :, ::down, ::down]
    return x


def _upfirdn2d_polyphase(x: torch.Tensor, f: torch.Tensor, up: int, down: int, padding: tuple,
                          flip_filter: bool, gain: float) -> torch.Tensor:
    """:func:`upfirdn2d` for ``up > 1`` without a zero-stuffed image: a strided transposed convolution.

    With ``x`` at positions ``i·up`` of the upsampled image, the true convolution with ``f`` gives
    ``out[o] = Σ_i x[i] f[o + fh - 1 - py0 - i·up]``, which is the transposed convolution
    ``t[j] = Σ_i x[i] f[j - i·up]`` read at ``j = o + fh - 1 - py0`` (zero outside ``t``). ``t`` is
    computed in polyphase form: phase ``r`` of ``t`` convolves ``x`` with the taps ``f[r::up]``, i.e. one
    depthwise ``conv2d`` with ``up²`` small filters per channel and a pixel shuffle (a plain
    ``conv_transpose2d`` when the filter size is not a multiple of ``up``).
    """
    n, c, h, w = x.shape
    px0, px1, py0, py1 = padding
    fh, fw = f.shape
    k = (f * gain).to(dtype=x.dtype, device=x.device)
    if flip_filter:  # a correlation is the convolution with the flipped filter
        k = k.flip([0, 1])
    if fh % up == 0 and fw % up == 0:
        lh, lw = fh // up, fw // up
        phases = k.reshape(lh, up, lw, up).permute(1, 3, 0, 2).flip([2, 3])  # [up, up, lh, lw], flipped taps
        weight = phases.reshape(1, up * up, lh, lw).expand(c, -1, -1, -1).reshape(c * up * up, 1, lh, lw)
        t = F.conv2d(F.pad(x, [lw - 1, lw - 1, lh - 1, lh - 1]), weight, groups=c)  # [N, C*up*up, H+lh-1, W+lw-1]
        t = F.pixel_shuffle(t, up)  # [N, C, (H+lh-1)*up, (W+lw-1)*up]
    else:
        t = F.conv_transpose2d(x, k[None, None].expand(c, 1, fh, fw), stride=up, groups=c)
    out_h, out_w = h * up + py0 + py1 - fh + 1, w * up + px0 + px1 - fw + 1
    y0, x0 = fh - 1 - py0, fw - 1 - px0  # where output row/column 0 sits in t
    t = F.pad(t, [-x0, out_w + x0 - t.shape[3], -y0, out_h + y0 - t.shape[2]])  # negative = crop
    return t[:, :, ::down, ::down] if down > 1 else t


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2, gain: float = 1.0) -> torch.Tensor:
    """Upsample ``x`` by ``up`` with filter ``f``; output is exactly ``up`` times larger."""
    fh, fw = f.shape
    p = [(fw + up - 1) // 2, (fw - up) // 2, (fh + up - 1) // 2, (fh - up) // 2]
    return upfirdn2d(x, f, up=up, padding=p, gain=gain * up * up)


def downsample2d(x: torch.Tensor, f: torch.Tensor, down: int = 2, gain: float = 1.0) -> torch.Tensor:
    """Filter ``x`` with ``f`` and downsample by ``down``; output is exactly ``down`` times smaller."""
    fh, fw = f.shape
    p = [(fw - down + 1) // 2, (fw - down) // 2, (fh - down + 1) // 2, (fh - down) // 2]
    return upfirdn2d(x, f, down=down, padding=p, gain=gain)
