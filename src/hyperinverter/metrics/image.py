"""Full-reference image metrics: MSE, PSNR, SSIM and MS-SSIM, per image, on batches.

Inputs are image batches ``[B, 3, H, W]`` in [-1, 1] (the generator's range), on any device; every
function returns one value per image, ``[B]``. Half-precision inputs are computed in float32, float64
inputs in float64.

Conventions (those of the official HyperInverter evaluation, which measured saved image files):

* Values outside [-1, 1] are clipped first (``clamp=True``), as writing a PNG does. The 8-bit
  quantisation of the files is not simulated.
* **MSE** is on [-1, 1] (the pSp ``calc_losses_on_images.py --mode l2`` protocol), at 256x256:
  call :func:`resize_for_protocol` first for larger images, as for LPIPS.
* **PSNR** and **MS-SSIM** follow ``piq`` with ``data_range=1.0`` on images mapped to [0, 1] by
  ``(x + 1) / 2``, at full resolution (``scripts/other_metrics.py`` of the official code).
* **SSIM** (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, on [0, 1],
  statistics over the "valid" window positions only (no padding), population (biased) local
  variances, mean over channels and positions. This is ``piq.ssim(..., downsample=False)`` and
  ``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=1)`` averaged over channels.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from ..losses._common import check_pair

#: MS-SSIM scale weights of Wang, Simoncelli & Bovik (2003), finest scale first.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
#: SSIM window and constants.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
#: Side length at which the official evaluation measures LPIPS and MSE.
PROTOCOL_SIZE = 256


def ms_ssim_min_size(levels: int = len(MS_SSIM_WEIGHTS), window: int = SSIM_WINDOW) -> int:
    """Smallest side length MS-SSIM accepts: ``(window - 1) * 2**(levels - 1) + 1`` (161 for 5 scales).

    Between scales an odd side is first padded by one replicated row/column, so each halving rounds
    *up* (as piq does): a side of 161 becomes 81, 41, 21 and 11, exactly one window at the last scale.
    (The often-quoted ``11 * 2**4 = 176`` is the bound for halvings that round down.)
    """
    return (window - 1) * 2 ** (levels - 1) + 1


def _prepare(x: torch.Tensor, y: torch.Tensor, clamp: bool, min_size: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    check_pair(x, y, min_size=min_size)
    for name, t in (("x", x), ("y", y)):
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a float tensor in [-1, 1], got {t.dtype}")
    dtype = torch.float64 if torch.float64 in (x.dtype, y.dtype) else torch.float32
    x, y = x.to(dtype), y.to(dtype)
    if clamp:
        x, y = x.clamp(-1, 1), y.clamp(-1, 1)
    return x, y


def _to_unit(x: torch.Tensor) -> torch.Tensor:
    return (x + 1) * 0.5


def mse(x: torch.Tensor, y: torch.Tensor, clamp: bool = True) -> torch.Tensor:
    """Mean squared error per image on [-1, 1]: ``[B, 3, H, W]`` x2 -> ``[B]`` (mean over C, H, W).

    The official protocol measures it at 256x256 (use :func:`resize_for_protocol`). A difference of
    ``d`` on [-1, 1] is ``d / 2`` on [0, 1], so this value is 4x the MSE of [0, 1] images.
    """
    x, y = _prepare(x, y, clamp)
    return (x - y).square().mean(dim=(1, 2, 3))


def psnr(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, clamp: bool = True,
         eps: float = 0.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image: ``[B, 3, H, W]`` x2 in [-1, 1] -> ``[B]``.

    The images are mapped to [0, 1] by ``(x + 1) / 2`` and ``psnr = 10 log10(data_range**2 / (mse01 + eps))``
    with ``mse01`` their mean squared error over C, H, W; ``data_range`` is the peak of that [0, 1]
    scale (1.0, as the official ``piq.psnr(..., data_range=1.0)``), so ``psnr = 10 log10(4 / mse(x, y))``.

    Identical images give ``inf`` (``eps = 0``). ``piq`` adds ``eps = 1e-8``, which caps the value at
    80 dB and changes values below ~60 dB by less than 0.0005 dB; pass ``eps=1e-8`` to reproduce it
    exactly. Note that the mean of a set containing an exact reconstruction is then ``inf``.
    """
    if data_range <= 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    x, y = _prepare(x, y, clamp)
    err = (_to_unit(x) - _to_unit(y)).square().mean(dim=(1, 2, 3))
    return 10 * torch.log10(data_range ** 2 / (err + eps))


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA, dtype: torch.dtype = torch.float32,
                    device: Optional[torch.device] = None) -> torch.Tensor:
    """Normalised 1-D Gaussian taps ``[size]``; the 2-D SSIM window is their outer product (as piq's)."""
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-coords.square() / (2 * sigma ** 2))
    return (g / g.sum()).to(device=device, dtype=dtype)


def _ssim_components(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor, k1: float,
                     k2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean SSIM and mean contrast-structure term per image and channel: [B, C, H, W] on [0, 1] -> [B, C] x2.

    Local statistics use the separable window over valid positions only ([H - k + 1, W - k + 1]).
    """
    b, c, h, w = x.shape
    k = window.numel()
    if h < k or w < k:
        raise ValueError(f"images must be at least {k}x{k} for an {k}x{k} SSIM window, got {h}x{w}")
    # One grouped, separable blur of the five maps: x, y, x^2, y^2, xy  -> [B, 5C, h', w'].
    maps = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    n = maps.shape[1]
    wv = window.to(maps.dtype).view(1, 1, k, 1).expand(n, 1, k, 1)
    wh = window.to(maps.dtype).view(1, 1, 1, k).expand(n, 1, 1, k)
    blurred = F.conv2d(F.conv2d(maps, wv, groups=n), wh, groups=n)
    mu_x, mu_y, e_xx, e_yy, e_xy = blurred.split(c, dim=1)
    mu_xx, mu_yy, mu_xy = mu_x * mu_x, mu_y * mu_y, mu_x * mu_y
    sigma_xx, sigma_yy, sigma_xy = e_xx - mu_xx, e_yy - mu_yy, e_xy - mu_xy
    c1, c2 = k1 ** 2, k2 ** 2  # data range 1
    cs = (2 * sigma_xy + c2) / (sigma_xx + sigma_yy + c2)
    ss = (2 * mu_xy + c1) / (mu_xx + mu_yy + c1) * cs
    return ss.mean(dim=(2, 3)), cs.mean(dim=(2, 3))


def ssim(x: torch.Tensor, y: torch.Tensor, window_size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA,
         k1: float = SSIM_K1, k2: float = SSIM_K2, downsample: bool = False, clamp: bool = True) -> torch.Tensor:
    """Structural similarity per image: ``[B, 3, H, W]`` x2 in [-1, 1] -> ``[B]`` in [-1, 1] (1 = identical).

    Computed on ``(x + 1) / 2`` (data range 1) with a ``window_size`` Gaussian window of std ``sigma``
    over valid positions; the per-channel means are averaged. Symmetric in ``x`` and ``y``.

    ``downsample=True`` first average-pools by ``f = max(1, round(min(H, W) / 256))`` — the default of
    ``piq.ssim`` (``downsample=True``), not of skimage or the SSIM paper.
    """
    if window_size % 2 != 1:
        raise ValueError(f"window_size must be odd, got {window_size}")
    x, y = _prepare(x, y, clamp, min_size=window_size)
    x, y = _to_unit(x), _to_unit(y)
    if downsample:
        f = max(1, round(min(x.shape[-2:]) / 256))
        if f > 1:
            x, y = F.avg_pool2d(x, f), F.avg_pool2d(y, f)
    window = gaussian_window(window_size, sigma, x.dtype, x.device)
    return _ssim_components(x, y, window, k1, k2)[0].mean(dim=1)


def ms_ssim(x: torch.Tensor, y: torch.Tensor, weights: Sequence[float] = MS_SSIM_WEIGHTS,
            window_size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA, k1: float = SSIM_K1, k2: float = SSIM_K2,
            clamp: bool = True) -> torch.Tensor:
    """Multi-scale SSIM per image: ``[B, 3, H, W]`` x2 in [-1, 1] -> ``[B]`` in [0, 1] (1 = identical).

    As ``piq.multi_scale_ssim`` (the official HyperInverter metric, ``data_range=1.0``): on
    ``(x + 1) / 2``, at each of ``len(weights)`` scales the mean contrast-structure term ``cs`` is taken
    per channel (the full SSIM at the last, coarsest scale); between scales an odd-sized image gets one
    replicated row and column on top / left, then a 2x2 average pool. Per channel
    ``prod_j relu(v_j) ** w_j``, then the mean over channels. Weights are used as given (the default
    five sum to 1).

    Raises:
        ValueError: H or W is below :func:`ms_ssim_min_size` (161 px for 5 scales and an 11 px window).
            Scales are never dropped silently: resize the images or pass fewer ``weights`` on purpose.
    """
    levels = len(weights)
    if levels < 1:
        raise ValueError("weights must hold at least one scale weight")
    if window_size % 2 != 1:
        raise ValueError(f"window_size must be odd, got {window_size}")
    need = ms_ssim_min_size(levels, window_size)
    if min(x.shape[-2:]) < need or min(y.shape[-2:]) < need:
        raise ValueError(f"MS-SSIM with {levels} scales and an {window_size} px window needs images of at least "
                         f"{need}x{need}, got {list(x.shape[-2:])}; resize the images (or pass fewer weights)")
    x, y = _prepare(x, y, clamp, min_size=need)
    x, y = _to_unit(x), _to_unit(y)
    window = gaussian_window(window_size, sigma, x.dtype, x.device)
    values = []
    for level in range(levels):
        if level > 0:
            pad = max(x.shape[2] % 2, x.shape[3] % 2)
            if pad:
                x = F.pad(x, [pad, 0, pad, 0], mode="replicate")
                y = F.pad(y, [pad, 0, pad, 0], mode="replicate")
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        s, cs = _ssim_components(x, y, window, k1, k2)  # [B, C] each
        values.append(s if level == levels - 1 else cs)
    stacked = torch.relu(torch.stack(values, dim=0))  # [levels, B, C]
    w = torch.as_tensor(weights, dtype=stacked.dtype, device=stacked.device).view(-1, 1, 1)
    return torch.prod(stacked ** w, dim=0).mean(dim=1)


def resize_for_protocol(x: torch.Tensor, size: int = PROTOCOL_SIZE, mode: str = "bilinear") -> torch.Tensor:
    """Resize ``[B, C, H, W]`` images to ``size x size`` as the official LPIPS / MSE evaluation (256 px).

    The official scripts resize PIL images with ``torchvision.transforms.Resize((256, 256))``, i.e. PIL's
    bilinear filter, which widens its support when shrinking (antialiasing). ``mode="bilinear"`` is
    ``F.interpolate(..., mode="bilinear", antialias=True, align_corners=False)``, which reproduces it up to
    float rounding; ``mode="area"`` is a plain box average (identical for integer factors only to
    ``avg_pool2d``, not to PIL). Images already ``size x size`` are returned unchanged.
    """
    if x.ndim != 4:
        raise ValueError(f"expected images [B, C, H, W], got {list(x.shape)}")
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    if tuple(x.shape[-2:]) == (size, size):
        return x
    if mode == "bilinear":
        return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    if mode == "area":
        return F.interpolate(x, size=(size, size), mode="area")
    raise ValueError(f"mode must be 'bilinear' or 'area', got {mode!r}")

