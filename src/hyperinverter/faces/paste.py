"""Pasting an edited aligned crop back into the photo it came from, with a feathered seam."""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
from PIL import Image

from .errors import FaceError
from .geometry import crop_to_photo_matrix, quad_bounds, quad_size
from .photo import to_rgb

#: Default width of the soft border, as a fraction of the crop's side.
DEFAULT_FEATHER = 0.1

_SAME_MODE = ("RGB", "L", "CMYK", "YCbCr")  # composited directly in the photo's own mode
_ALPHA = {"RGBA": "RGB", "LA": "L"}  # colour composited, the photo's alpha kept as it is


def feather_mask(width: int, height: int, feather: float = DEFAULT_FEATHER) -> np.ndarray:
    """Blending weights ``[height, width]`` in [0, 1] for a crop: 0 at its border, rising smoothly
    (smoothstep of the distance to the border) to 1 at ``feather * min(width, height)`` pixels inside.

    This is the analytic form of an eroded-then-blurred rectangle, but exactly 0 on the border so the
    pasted crop meets the photo without a seam. ``feather = 0`` gives a hard-edged mask of ones.
    """
    if not (isinstance(feather, (int, float)) and 0 <= feather <= 0.5):
        raise ValueError(f"feather must be a number in [0, 0.5] (a fraction of the crop's side), got {feather!r}")
    if feather == 0:
        return np.ones((height, width), np.float32)
    band = feather * min(width, height)
    x = np.arange(width, dtype=np.float64) + 0.5  # pixel centres
    y = np.arange(height, dtype=np.float64) + 0.5
    d = np.minimum.outer(np.minimum(y, height - y), np.minimum(x, width - x))  # [H, W] distance to the border
    t = np.clip(d / band, 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(np.float32)


def _composite(region: Image.Image, warped: Image.Image, alpha: Image.Image) -> Image.Image:
    """``warped`` (RGB) over ``region`` (any supported mode) where ``alpha`` (L) is > 0; same mode out."""
    mode = region.mode
    if mode in _SAME_MODE:
        return Image.composite(warped.convert(mode), region, alpha)
    if mode in _ALPHA:
        base = _ALPHA[mode]
        out = Image.composite(warped.convert(base), region.convert(base), alpha)
        out.putalpha(region.getchannel("A"))
        return out
    if mode == "P" and "transparency" not in region.info:
        out = Image.composite(warped, region.convert("RGB"), alpha)
        return out.quantize(palette=region, dither=Image.Dither.NONE)
    raise FaceError(f"paste-back supports photos in modes {', '.join(_SAME_MODE + tuple(_ALPHA))} and P (without "
                    f"transparency), not {mode}; convert the photo to RGB first")


def paste_back(edited: Image.Image, photo: Image.Image, quad: np.ndarray, feather: float = DEFAULT_FEATHER,
               photo_size: Optional[Tuple[int, int]] = None) -> Image.Image:
    """Warp an (edited) aligned crop back onto ``quad`` in ``photo`` and blend it in with a soft border.

    Args:
        edited: the crop, any size (it is stretched onto the quad), any mode Pillow converts to RGB.
        photo: the photo the face was aligned from, in the same orientation and size.
        quad: the alignment square ``[4, 2]`` in photo pixel coordinates (top-left, bottom-left,
            bottom-right, top-right), as in :class:`~hyperinverter.faces.AlignedFace`.
        feather: width of the soft border as a fraction of the crop's side (see :func:`feather_mask`).
        photo_size: ``(width, height)`` of the photo at alignment time; checked against ``photo`` when given.

    Returns:
        A new image with the photo's size and mode. Pixels outside the quad are exactly those of ``photo``.

    Raises:
        FaceError: the photo's size differs from ``photo_size``, the quad lies outside the photo, or the
            photo's mode is not supported.
    """
    if photo_size is not None and tuple(photo.size) != tuple(photo_size):
        raise FaceError(f"the photo is {photo.size[0]}x{photo.size[1]} but the face was aligned in a "
                        f"{photo_size[0]}x{photo_size[1]} photo; paste back into the photo that was aligned")
    crop = to_rgb(edited)
    ew, eh = crop.size
    qsize = quad_size(quad)
    if qsize < 1:
        raise FaceError(f"the quad is degenerate (side {qsize:.2g} px)")
    if max(ew, eh) > 1.5 * qsize:  # much larger than its footprint: shrink first (antialiased) to avoid aliasing
        s = qsize / max(ew, eh)
        crop = crop.resize((max(2, math.ceil(ew * s)), max(2, math.ceil(eh * s))), Image.Resampling.LANCZOS)
    w, h = crop.size

    W, H = photo.size
    left, top, right, bottom = quad_bounds(quad, margin=2)
    left, top, right, bottom = max(left, 0), max(top, 0), min(right, W), min(bottom, H)
    if right <= left or bottom <= top:
        raise FaceError("the face's quad lies entirely outside this photo; paste back into the photo that was aligned")

    mask = Image.fromarray(np.round(feather_mask(w, h, feather) * 255).astype(np.uint8), "L")
    rgba = crop.copy()
    rgba.putalpha(mask)
    # region pixel (continuous) -> photo (continuous) -> crop (continuous)
    to_region = np.array([[1.0, 0.0, left], [0.0, 1.0, top], [0.0, 0.0, 1.0]])
    m = np.linalg.inv(crop_to_photo_matrix(quad, w, h)) @ to_region
    m = m / m[2, 2]
    warped = rgba.transform((right - left, bottom - top), Image.Transform.PERSPECTIVE, tuple(m.reshape(-1)[:8]),
                            Image.Resampling.BICUBIC, fillcolor=(0, 0, 0, 0))
    region = photo.crop((left, top, right, bottom))
    out_region = _composite(region, warped.convert("RGB"), warped.getchannel("A"))
    result = photo.copy()
    result.paste(out_region, (left, top))
    return result


__all__ = ["DEFAULT_FEATHER", "feather_mask", "paste_back"]
