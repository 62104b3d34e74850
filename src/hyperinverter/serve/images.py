"""Turning an uploaded file into the square crop the model inverts (face alignment or centre crop).

:func:`load_upload` reads any image Pillow can open with clear errors for non-images and for images that
are too small or too large; images above :attr:`ImageLimits.downscale_pixels` are shrunk (with a note).
:func:`prepare_image` then aligns the face (when a :class:`FaceAligner` is given and finds one) or falls
back to a centre crop, and resizes the crop to the model's resolution.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import torch
from PIL import Image

from ..errors import HyperInverterError
from ..utils.image_io import ImageConversionError, ImageLoadError, open_image, pil_to_tensor, to_rgb8

PathLike = Union[str, os.PathLike]


class UploadError(HyperInverterError, ValueError):
    """An upload cannot be used: not an image, too small, too large, or unreadable."""


@dataclass(frozen=True)
class ImageLimits:
    """Size limits for uploads.

    Attributes:
        min_size: narrower or lower images are refused.
        downscale_pixels: larger images (width * height) are shrunk to about this many pixels.
        max_pixels: larger images are refused before they are decoded.
    """

    min_size: int = 16
    downscale_pixels: int = 16_000_000
    max_pixels: int = 40_000_000

    def __post_init__(self):
        if not (0 < self.min_size and 0 < self.downscale_pixels <= self.max_pixels):
            raise ValueError(f"limits must satisfy 0 < min_size and 0 < downscale_pixels <= max_pixels, got {self}")


@dataclass
class PreparedImage:
    """An upload ready for inversion.

    Attributes:
        crop: PIL RGB ``resolution x resolution``: what the model inverts (None in the compact record a page
            session keeps, see ``Reconstruction.compact``).
        tensor: ``[1, 3, R, R]`` float32 in [-1, 1] (the crop; None in a compact record).
        photo: the whole upload as PIL RGB (after any downscale), for paste-back (in a compact record: only for
            an aligned face, downscaled; else None).
        face: the ``AlignedFace`` the crop came from, or None for a centre crop.
        notes: what was done to the upload, in sentences.
        name: a file-name stem for downloads.
    """

    crop: Optional[Image.Image]
    tensor: Optional[torch.Tensor]
    photo: Optional[Image.Image]
    face: Optional[Any] = None
    notes: list[str] = field(default_factory=list)
    name: str = "image"


def _read_rgb(path: Path, max_pixels: int, min_size: int, notes: list[str]) -> Image.Image:
    """Open, check and decode ``path`` into 8-bit RGB (``utils.image_io.open_image`` and ``to_rgb8``, with notes)."""
    try:
        return to_rgb8(open_image(path, max_pixels=max_pixels, min_size=min_size, notes=notes), notes)
    except ImageLoadError as e:
        raise UploadError(_friendly(e.reason)) from None
    except ImageConversionError as e:
        raise UploadError(str(e)) from None


def _friendly(reason: str) -> str:
    if reason.startswith("not an image"):
        return "this file is not an image (use a PNG, JPEG, WebP, BMP, TIFF or GIF file)"
    return reason


def load_upload(path: PathLike, limits: ImageLimits = ImageLimits()) -> tuple[Image.Image, list[str]]:
    """An uploaded file as an upright 8-bit RGB image, plus notes about every change made to it.

    Raises:
        UploadError: missing or empty file, not an image, corrupt data, smaller than ``limits.min_size`` or
            larger than ``limits.max_pixels`` (all with a message fit to show to the user).
    """
    notes: list[str] = []
    img = _read_rgb(Path(path), limits.max_pixels, limits.min_size, notes)
    w, h = img.size
    if w * h > limits.downscale_pixels:
        scale = math.sqrt(limits.downscale_pixels / (w * h))
        size = (max(limits.min_size, int(w * scale)), max(limits.min_size, int(h * scale)))
        img = img.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0)
        notes.append(f"downscaled the {w}x{h} image to {size[0]}x{size[1]} (limit "
                     f"{limits.downscale_pixels / 1e6:g} megapixels)")
    return img, notes


def centre_crop(img: Image.Image, size: int) -> tuple[Image.Image, str]:
    """The largest centred square of ``img`` resized to ``size x size`` (antialiased bilinear), and a note."""
    w, h = img.size
    side = min(w, h)
    if w != h:
        left, top = (w - side) // 2, (h - side) // 2
        img = img.crop((left, top, left + side, top + side))
    note = (f"centre-cropped {w}x{h} to {side}x{side} and resized to {size}x{size}" if w != h
            else f"resized {w}x{h} to {size}x{size}")
    if side != size:
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    elif w == h:
        note = f"used the {w}x{h} image as it is"
    return img, note


def make_aligner(enabled: bool, output_size: int, landmarks: Optional[PathLike] = None) -> tuple[Optional[Any], str]:
    """A ``hyperinverter.faces.FaceAligner`` or None, and a sentence saying which and why.

    Face alignment is optional: when the faces package, dlib or its landmark model is missing, uploads
    are centre-cropped instead.
    """
    if not enabled:
        return None, "face alignment is off (--no-align): uploads are centre-cropped"
    try:
        from ..faces import FaceAligner
        from ..faces.landmarks import import_dlib

        aligner = FaceAligner(landmarks_path=landmarks, output_size=output_size)
        import_dlib()  # fail now, not at the first upload
    except (ImportError, HyperInverterError, ValueError, OSError) as e:
        return None, f"face alignment is unavailable ({e}); uploads are centre-cropped"
    return aligner, "faces are aligned automatically (dlib); other images are centre-cropped"


def _align(aligner: Any, photo: Image.Image, size: int,
           notes: list[str]) -> tuple[Optional[Any], Optional[Image.Image]]:
    """Align the face of ``photo`` (the largest when several); (None, None) with a note when none is usable."""
    from ..faces import FaceError, MultipleFacesError, NoFaceError

    try:
        try:
            face = aligner.align(photo, output_size=size)[0]
        except MultipleFacesError as e:
            faces = aligner.align(photo, all_faces=True, output_size=size)
            face = max(faces, key=lambda f: getattr(f, "quad_size", 0))
            notes.append(f"{getattr(e, 'count', len(faces))} faces found: used the largest")
    except NoFaceError:
        notes.append("no face found: centre-cropped instead")
        return None, None
    except (FaceError, ImportError, HyperInverterError) as e:
        notes.append(f"face alignment failed ({e}): centre-cropped instead")
        return None, None
    notes.append("aligned the face (FFHQ alignment)")
    crop = face.image.convert("RGB")
    if crop.size != (size, size):
        crop = crop.resize((size, size), Image.Resampling.BILINEAR)
    return face, crop


def prepare_image(path: PathLike, resolution: int, aligner: Optional[Any] = None,
                  limits: ImageLimits = ImageLimits()) -> PreparedImage:
    """Load an upload and cut the ``resolution x resolution`` crop to invert.

    Args:
        path: the uploaded file.
        resolution: the model's image size.
        aligner: a ``FaceAligner`` (or anything with its ``align`` method), or None for a centre crop.
        limits: size limits (see :class:`ImageLimits`).

    Raises:
        UploadError: the file cannot be used (see :func:`load_upload`).
    """
    photo, notes = load_upload(path, limits)
    face, crop = (None, None)
    if aligner is not None:
        face, crop = _align(aligner, photo, resolution, notes)
    if crop is None:
        crop, note = centre_crop(photo, resolution)
        notes.append(note)
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(path).stem)[:60] or "image"
    return PreparedImage(crop=crop, tensor=pil_to_tensor(crop)[None], photo=photo, face=face, notes=notes, name=name)


__all__ = ["ImageLimits", "PreparedImage", "UploadError", "centre_crop", "load_upload", "make_aligner",
           "prepare_image"]
