"""Opening photos for face alignment: size limits, EXIF orientation and conversion to 8-bit RGB."""

from __future__ import annotations

import os
from typing import Union

import numpy as np
from PIL import Image

from ..utils.image_io import ImageConversionError, open_image, to_rgb8
from .errors import FaceError, FaceTooSmallError, PhotoTooLargeError

PathLike = Union[str, os.PathLike]

#: Photos with more pixels than this (width * height) are refused (40 megapixels).
MAX_PIXELS = 40_000_000
#: Photos narrower or lower than this are refused: no face detector finds a face in fewer pixels.
MIN_PHOTO_SIZE = 32


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
    """An 8-bit RGB version of ``image`` (:func:`hyperinverter.utils.image_io.to_rgb8`: transparency composited
    on white, 16-bit gray divided by 257, other modes through Pillow's ``convert("RGB")``).

    Raises:
        FaceError: 32-bit integer or float and signed 16-bit images (ambiguous value ranges; convert them to
            8-bit first), or a mode Pillow cannot convert.
    """
    mode = image.mode
    if mode in ("I", "F"):
        raise FaceError(f"unsupported pixel mode {mode} (32-bit {'float' if mode == 'F' else 'integer'}); "
                        "convert the photo to 8-bit RGB first")
    if mode.startswith("I;16") and np.asarray(image).dtype.kind != "u":
        raise FaceError(f"unsupported pixel mode {mode} (signed 16-bit); convert the photo to 8-bit RGB first")
    try:
        return to_rgb8(image)
    except ImageConversionError as e:
        raise FaceError(str(e)) from e


def open_photo(path: PathLike, max_pixels: int = MAX_PIXELS, min_size: int = MIN_PHOTO_SIZE) -> Image.Image:
    """Open a photo file fully decoded and turned upright by its EXIF orientation, in its own pixel mode
    (:func:`hyperinverter.utils.image_io.open_image` with the limits of face alignment).

    Args:
        path: any image file Pillow reads (the first frame of an animation).
        max_pixels: refuse images with more pixels than this before decoding them (None: no limit of ours).
        min_size: refuse images narrower or lower than this.

    Raises:
        ImageLoadError: missing, unreadable, non-image, truncated or corrupt file (message starts with the path).
        PhotoTooLargeError, FaceTooSmallError: the image is larger than ``max_pixels`` or smaller than ``min_size``.
    """
    return open_image(path, max_pixels=None, min_size=1,
                      check_size=lambda size: check_photo_size(size, max_pixels, what=str(path), min_size=min_size))


__all__ = ["MAX_PIXELS", "MIN_PHOTO_SIZE", "check_photo_size", "open_photo", "to_rgb"]
