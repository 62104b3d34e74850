"""Opening photos for face alignment: size limits, EXIF orientation and conversion to 8-bit RGB."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..utils.image_io import ImageLoadError
from .errors import FaceError, FaceTooSmallError, PhotoTooLargeError

PathLike = Union[str, os.PathLike]

#: Photos with more pixels than this (width * height) are refused (40 megapixels).
MAX_PIXELS = 40_000_000
#: Photos narrower or lower than this are refused: no face detector finds a face in fewer pixels.
MIN_PHOTO_SIZE = 32

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def check_photo_size(size: tuple[int, int], max_pixels: int = MAX_PIXELS, what: str = "the photo",
                     min_size: int = MIN_PHOTO_SIZE) -> None:
    """Raise :class:`PhotoTooLargeError` / :class:`FaceTooSmallError` for a ``(width, height)`` out of bounds
    (more than ``max_pixels`` pixels, None for no limit; narrower or lower than ``min_size``)."""
    w, h = size
    if max_pixels is not None and w * h > max_pixels:
        raise PhotoTooLargeError(
            f"{what} is too large for face alignment: {w}x{h} = {w * h:,} pixels, more than the limit of "
            f"{max_pixels:,} ({max_pixels / 1e6:g} megapixels); downscale it first")
    if w < min_size or h < min_size:
        raise FaceTooSmallError(
            f"{what} is too small for face alignment: {w}x{h} pixels, at least {min_size}x{min_size} are needed")


def to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB version of ``image``: transparency composited on white (as ``utils.image_io`` does),
    16-bit gray divided by 257, other modes through Pillow's ``convert("RGB")``.

    Raises:
        FaceError: 32-bit integer or float images (ambiguous value ranges; convert them to 8-bit first).
    """
    mode = image.mode
    if mode == "RGB" and "transparency" not in image.info:
        return image
    if mode.startswith("I;16"):
        arr = np.asarray(image)
        gray = ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8) if arr.dtype.kind == "u" else None
        if gray is None:
            raise FaceError(f"unsupported pixel mode {mode} (signed 16-bit); convert the photo to 8-bit RGB first")
        return Image.fromarray(gray).convert("RGB")
    if mode in ("I", "F"):
        raise FaceError(f"unsupported pixel mode {mode} (32-bit {'float' if mode == 'F' else 'integer'}); "
                        "convert the photo to 8-bit RGB first")
    if mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint32)
        rgb, alpha = rgba[..., :3], rgba[..., 3:]
        return Image.fromarray(((rgb * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8))
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as e:
        raise FaceError(f"cannot convert pixel mode {mode} to RGB ({e})") from e


def open_photo(path: PathLike, max_pixels: int = MAX_PIXELS, min_size: int = MIN_PHOTO_SIZE) -> Image.Image:
    """Open a photo file fully decoded and turned upright by its EXIF orientation, in its own pixel mode.

    Args:
        path: any image file Pillow reads (the first frame of an animation).
        max_pixels: refuse images with more pixels than this before decoding them (None: no limit of ours).
        min_size: refuse images narrower or lower than this.

    Raises:
        ImageLoadError: missing, unreadable, non-image, truncated or corrupt file (message starts with the path).
        PhotoTooLargeError, FaceTooSmallError: the image is larger than ``max_pixels`` or smaller than ``min_size``.
    """
    p = Path(path)
    if not p.is_file():
        raise ImageLoadError(path, "is a folder, not an image file" if p.is_dir() else "file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(p)
    except Image.DecompressionBombError as e:
        raise ImageLoadError(path, f"the image is too large ({e})") from e
    except UnidentifiedImageError as e:
        raise ImageLoadError(path, "not an image Pillow can read (unknown format or corrupt header)") from e
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise ImageLoadError(path, f"cannot open the image: {e}") from e
    with img:
        check_photo_size(img.size, max_pixels, what=str(path), min_size=min_size)
        try:
            img.load()
            out = ImageOps.exif_transpose(img)
        except Exception as e:  # truncated data, decoder errors, broken EXIF
            raise ImageLoadError(path, f"the image data is truncated or corrupt: {e}") from e
        if out is img:
            out = img.copy()
    return out


__all__ = ["MAX_PIXELS", "MIN_PHOTO_SIZE", "check_photo_size", "open_photo", "to_rgb"]
