"""Finding faces in photos and cutting out FFHQ-aligned crops (dlib detector + 68-point landmarks)."""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np
from PIL import Image, ImageFilter

from .errors import FaceError, FaceTooSmallError, MultipleFacesError, NoFaceError
from .geometry import ffhq_quad, photo_to_crop, quad_size
from .landmarks import find_landmarks_model, frontal_face_detector, import_dlib, shape_predictor
from .paste import DEFAULT_FEATHER, paste_back
from .photo import MAX_PIXELS, check_photo_size, to_rgb

PathLike = Union[str, os.PathLike]

#: Default side of the aligned crops.
DEFAULT_OUTPUT_SIZE = 256
#: Faces whose alignment square is smaller than this many pixels are refused.
MIN_FACE_SIZE = 32
#: Photos are detected on a copy whose longer side is at most this many pixels.
DETECT_SIZE = 1600
#: Default minimum detector score: dlib's HOG detector also fires (scores ~0.0-0.2) on round patterns.
DEFAULT_MIN_SCORE = 0.3
#: The landmark predictor runs on a copy in which the face box is at most this wide.
_PREDICT_BOX = 400

Box = tuple[int, int, int, int]


@dataclass
class AlignedFace:
    """One face cut out of a photo, with everything needed to paste an edited crop back.

    Attributes:
        image: the aligned crop, PIL RGB ``output_size x output_size`` (None when restored from JSON).
        quad: ``[4, 2]`` float corners of the crop in the photo (top-left, bottom-left, bottom-right,
            top-right; pixel coordinates, pixel centres at integers).
        landmarks: ``[68, 2]`` float dlib landmarks in photo pixel coordinates.
        box: the detector's box ``(left, top, right, bottom)`` in photo pixels.
        score: the detector's confidence (higher is surer).
        photo_size: ``(width, height)`` of the photo the face was found in.
    """

    image: Optional[Image.Image]
    quad: np.ndarray
    landmarks: np.ndarray
    box: Box
    score: float = float("nan")
    photo_size: tuple[int, int] = (0, 0)
    output_size: int = field(default=0)

    def __post_init__(self):
        self.quad = np.asarray(self.quad, dtype=np.float64).reshape(4, 2)
        self.landmarks = np.asarray(self.landmarks, dtype=np.float64).reshape(68, 2)
        self.box = tuple(int(v) for v in self.box)
        self.photo_size = tuple(int(v) for v in self.photo_size)
        if not self.output_size and self.image is not None:
            self.output_size = self.image.size[0]

    @property
    def quad_size(self) -> float:
        """Side of the alignment square in photo pixels."""
        return quad_size(self.quad)

    def crop_landmarks(self, size: Optional[int] = None) -> np.ndarray:
        """The landmarks ``[68, 2]`` in the coordinates of a ``size x size`` crop (default: ``output_size``)."""
        size = size or self.output_size
        return photo_to_crop(self.landmarks, self.quad, size, size)

    def paste_back(self, edited: Image.Image, photo: Image.Image, feather: float = DEFAULT_FEATHER) -> Image.Image:
        """Warp ``edited`` (an edited version of :attr:`image`, any size) back into ``photo`` with a soft
        border (``feather``: its width as a fraction of the crop); same size and mode as ``photo``, and
        pixels outside the quad unchanged. See :func:`hyperinverter.faces.paste.paste_back`."""
        return paste_back(edited, photo, self.quad, feather=feather,
                          photo_size=self.photo_size if self.photo_size != (0, 0) else None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready alignment record (everything but the crop's pixels)."""
        return {"format": "hyperinverter-face-alignment", "version": 1, "photo_size": list(self.photo_size),
                "output_size": self.output_size, "quad": self.quad.tolist(), "landmarks": self.landmarks.tolist(),
                "box": list(self.box), "score": None if math.isnan(self.score) else float(self.score)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], image: Optional[Image.Image] = None) -> "AlignedFace":
        """The inverse of :meth:`to_dict` (``image`` is optional: paste-back only needs the geometry)."""
        if not isinstance(data, dict) or data.get("format") != "hyperinverter-face-alignment":
            raise FaceError("not an alignment record written by 'hyperinverter align' (no "
                            "\"format\": \"hyperinverter-face-alignment\")")
        try:
            score = data.get("score")
            return cls(image=image, quad=np.array(data["quad"], dtype=np.float64),
                       landmarks=np.array(data["landmarks"], dtype=np.float64), box=tuple(data["box"]),
                       score=float("nan") if score is None else float(score),
                       photo_size=tuple(data["photo_size"]), output_size=int(data.get("output_size") or 0))
        except (KeyError, TypeError, ValueError) as e:
            raise FaceError(f"the alignment record is incomplete or malformed ({type(e).__name__}: {e})") from None


def _pad_region(region: Image.Image, pads: tuple[int, int, int, int], qsize: float) -> Image.Image:
    """Extend ``region`` by ``(left, top, right, bottom)`` pixels: mirror the photo, then fade the mirrored
    part into a blur and, further out, into the photo's mean colour (so no hard border shows in the crop)."""
    pl, pt, pr, pb = pads
    arr = np.asarray(region, dtype=np.float32)  # [h, w, 3]
    h, w = arr.shape[:2]
    padded = np.pad(arr, ((pt, pb), (pl, pr), (0, 0)), mode="reflect" if min(h, w) > 1 else "edge")
    ph, pw = padded.shape[:2]
    yy, xx = np.ogrid[:ph, :pw]
    dx = np.maximum(np.maximum(pl - xx, xx - (pl + w - 1)), 0)
    dy = np.maximum(np.maximum(pt - yy, yy - (pt + h - 1)), 0)
    dist = np.maximum(dx, dy).astype(np.float32)[..., None]  # [ph, pw, 1] pixels outside the photo
    radius = max(1.0, 0.02 * qsize)
    blurred = np.asarray(Image.fromarray(np.uint8(np.clip(padded + 0.5, 0, 255))).filter(
        ImageFilter.GaussianBlur(radius)), dtype=np.float32)
    t = np.clip(dist / max(0.25 * qsize, 1.0), 0.0, 1.0)
    out = padded + (blurred - padded) * np.clip(3.0 * t, 0.0, 1.0)
    out += (arr.mean(axis=(0, 1)) - out) * t
    return Image.fromarray(np.uint8(np.clip(out + 0.5, 0, 255)))


def warp_face(rgb: Image.Image, quad: np.ndarray, output_size: int) -> Image.Image:
    """Cut the square ``quad`` ``[4, 2]`` out of an RGB photo as an ``output_size x output_size`` crop.

    Large faces are first shrunk (antialiased) to about twice the output size, the quad is sampled with
    bilinear filtering at up to twice the output size and then reduced with a Lanczos filter. Parts of the
    quad outside the photo are filled by mirroring, faded into a blur (see :func:`_pad_region`).
    """
    qsize = quad_size(quad)
    render = 2 * output_size if qsize > output_size else output_size
    q = np.asarray(quad, dtype=np.float64) + 0.5  # continuous coordinates
    W, H = rgb.size
    lo = np.floor(q.min(axis=0)).astype(int) - 2
    hi = np.ceil(q.max(axis=0)).astype(int) + 2
    il, it = max(int(lo[0]), 0), max(int(lo[1]), 0)
    ir, ib = min(int(hi[0]), W), min(int(hi[1]), H)
    if ir - il < 2 or ib - it < 2:
        raise FaceError("the face's alignment square lies outside the photo")
    region = rgb.crop((il, it, ir, ib))
    q = q - [il, it]
    if qsize > render:  # shrink before sampling so that the bilinear sampling does not alias
        s = render / qsize
        size = (max(2, round(region.width * s)), max(2, round(region.height * s)))
        q = q * [size[0] / region.width, size[1] / region.height]
        region = region.resize(size, Image.Resampling.LANCZOS)
    lo = np.floor(q.min(axis=0)).astype(int) - 2
    hi = np.ceil(q.max(axis=0)).astype(int) + 2
    pads = (max(0, -int(lo[0])), max(0, -int(lo[1])), max(0, int(hi[0]) - region.width),
            max(0, int(hi[1]) - region.height))
    if any(pads):
        region = _pad_region(region, pads, quad_size(q))
        q = q + [pads[0], pads[1]]
    crop = region.transform((render, render), Image.Transform.QUAD, tuple(q.reshape(-1)), Image.Resampling.BILINEAR)
    if render != output_size:
        crop = crop.resize((output_size, output_size), Image.Resampling.LANCZOS)
    return crop


class FaceAligner:
    """Detect faces with dlib and cut out FFHQ-aligned crops.

    The dlib detector and landmark model are loaded on first use and shared by all aligners of the
    process; :meth:`align` is safe to call from several threads (calls are serialised per aligner).

    Args:
        landmarks_path: dlib's ``shape_predictor_68_face_landmarks.dat``; None looks it up (see
            :func:`~hyperinverter.faces.find_landmarks_model`). The path is resolved at construction, so a
            missing file is reported at once.
        output_size: side of the aligned crops in pixels (e.g. 256 or the model's resolution).
        min_score: detections scoring below this are ignored (dlib's HOG scores: ~0 to ~3).
        upsample: how many times dlib upsamples the detection image to find small faces; None picks
            1 for detection images up to 800 px and 0 above.
        detect_size: faces are detected on a copy whose longer side is at most this (landmarks are then
            computed near each face at a moderate resolution and mapped back to the photo).
        max_pixels: photos with more pixels than this are refused.
    """

    def __init__(self, landmarks_path: Optional[PathLike] = None, output_size: int = DEFAULT_OUTPUT_SIZE,
                 min_score: float = DEFAULT_MIN_SCORE, upsample: Optional[int] = None,
                 detect_size: int = DETECT_SIZE, max_pixels: int = MAX_PIXELS):
        _check_output_size(output_size)
        if upsample is not None and (not isinstance(upsample, int) or upsample < 0):
            raise ValueError(f"upsample must be None or an int >= 0, got {upsample!r}")
        if not isinstance(detect_size, int) or detect_size < 64:
            raise ValueError(f"detect_size must be an int >= 64, got {detect_size!r}")
        self.landmarks_path = find_landmarks_model(landmarks_path)
        self.output_size = output_size
        self.min_score = float(min_score)
        self.upsample = upsample
        self.detect_size = detect_size
        self.max_pixels = max_pixels
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (f"FaceAligner(landmarks_path={str(self.landmarks_path)!r}, output_size={self.output_size}, "
                f"min_score={self.min_score}, upsample={self.upsample}, detect_size={self.detect_size})")

    def detect(self, rgb: Image.Image) -> list[tuple[Box, float]]:
        """Faces in an RGB photo as ``((left, top, right, bottom), score)``, left to right."""
        W, H = rgb.size
        f = min(1.0, self.detect_size / max(W, H))
        small = rgb if f == 1.0 else rgb.resize((max(1, round(W * f)), max(1, round(H * f))),
                                                Image.Resampling.BILINEAR, reducing_gap=3.0)
        fx, fy = small.width / W, small.height / H
        up = self.upsample if self.upsample is not None else (1 if max(small.size) <= 800 else 0)
        rects, scores, _ = frontal_face_detector().run(np.asarray(small), up, self.min_score)
        faces = []
        for r, score in zip(rects, scores):
            if score < self.min_score:
                continue
            box = (round((r.left() + 0.5) / fx - 0.5), round((r.top() + 0.5) / fy - 0.5),
                   round((r.right() + 0.5) / fx - 0.5), round((r.bottom() + 0.5) / fy - 0.5))
            faces.append((box, float(score)))
        return sorted(faces, key=lambda fs: (fs[0][0], fs[0][1]))

    def landmarks(self, rgb: Image.Image, box: Box) -> np.ndarray:
        """The 68 landmarks ``[68, 2]`` (photo pixel coordinates) of the face in ``box``.

        The predictor runs on the box plus one box width around it, shrunk so the box is at most
        400 px wide (the predictor was trained on faces of moderate size)."""
        dlib = import_dlib()
        left, top, right, bottom = box
        bw = max(right - left, bottom - top, 1)
        cl, ct = max(left - bw, 0), max(top - bw, 0)
        cr, cb = min(right + bw + 1, rgb.width), min(bottom + bw + 1, rgb.height)
        sub = rgb.crop((cl, ct, cr, cb))
        s = min(1.0, _PREDICT_BOX / bw)
        if s < 1.0:
            sub = sub.resize((max(1, round(sub.width * s)), max(1, round(sub.height * s))), Image.Resampling.BILINEAR)
        sx, sy = sub.width / (cr - cl), sub.height / (cb - ct)

        def to_sub(v: float, origin: int, scale: float) -> int:
            return round((v - origin + 0.5) * scale - 0.5)

        rect = dlib.rectangle(to_sub(left, cl, sx), to_sub(top, ct, sy), to_sub(right, cl, sx), to_sub(bottom, ct, sy))
        shape = shape_predictor(self.landmarks_path)(np.asarray(sub), rect)
        pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)  # [68, 2] in sub
        return (pts + 0.5) / [sx, sy] - 0.5 + [cl, ct]

    def align(self, image: Image.Image, all_faces: bool = False,
              output_size: Optional[int] = None) -> list[AlignedFace]:
        """Find the face(s) in ``image`` and cut out aligned crops.

        Args:
            image: the photo (any Pillow mode; transparency is composited on white). Use
                :func:`~hyperinverter.faces.open_photo` to read a file upright (EXIF orientation).
            all_faces: False expects exactly one face; True returns every face found, left to right.
            output_size: side of the crops; default: the aligner's ``output_size``.

        Returns:
            A list of :class:`AlignedFace` (one element unless ``all_faces``).

        Raises:
            NoFaceError: no face found. MultipleFacesError: several faces and not ``all_faces``.
            PhotoTooLargeError / FaceTooSmallError: photo above the pixel limit, photo or face too small.
        """
        if not isinstance(image, Image.Image):
            raise TypeError(f"align expects a PIL.Image.Image, got {type(image).__name__}")
        size = self.output_size if output_size is None else output_size
        _check_output_size(size)
        check_photo_size(image.size, self.max_pixels)
        rgb = to_rgb(image)
        with self._lock:
            found = self.detect(rgb)
            if not found:
                raise NoFaceError(f"no face found in the {image.width}x{image.height} photo (the detector needs a "
                                  "roughly frontal face at least ~40 px wide)")
            if len(found) > 1 and not all_faces:
                raise MultipleFacesError(f"{len(found)} faces found in the photo; pass all_faces=True (command "
                                         "line: --all-faces) to align each of them", count=len(found))
            marks = [self.landmarks(rgb, box) for box, _ in found]
        faces = []
        for (box, score), lm in zip(found, marks):
            quad = ffhq_quad(lm)
            qsize = quad_size(quad)
            if qsize < MIN_FACE_SIZE:
                raise FaceTooSmallError(f"the face at {box} is too small to align: its crop would cover "
                                        f"{qsize:.0f} px of the photo, at least {MIN_FACE_SIZE} are needed")
            faces.append(AlignedFace(image=warp_face(rgb, quad, size), quad=quad, landmarks=lm, box=box,
                                     score=score, photo_size=image.size, output_size=size))
        return faces


def _check_output_size(size: Any) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ValueError(f"output_size must be an int >= 8, got {size!r}")


__all__ = ["DEFAULT_MIN_SCORE", "DEFAULT_OUTPUT_SIZE", "DETECT_SIZE", "MIN_FACE_SIZE", "AlignedFace", "FaceAligner",
           "warp_face"]
