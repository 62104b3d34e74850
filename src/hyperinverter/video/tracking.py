"""Where the face is in each frame: pluggable landmark sources, one tracked face, a steady crop.

A *landmark source* is any callable ``frame -> list[FaceObservation]`` (a frame is a uint8 ``[H, W, 3]``
RGB array). Two come with the package:

* :class:`DlibLandmarks`: dlib's detector and 68 landmarks, then the FFHQ square
  (:func:`hyperinverter.faces.ffhq_quad`), for models trained on FFHQ-aligned faces;
* :class:`FixedCrop`: the same rectangle in every frame (``--crop x,y,w,h``, by default the centred
  square), for models trained on anything else, such as the shipped demo model.

:class:`FaceTracker` follows one face through the frames (the largest when it is first seen, or the
``face_index``-th from the left) and smooths its crop over time with a :class:`OneEuroFilter` on the
quad's centre and edge vectors, so that the crop does not jitter with the landmarks' noise but still
follows fast moves without lag. Frames in which the tracked face is not found give ``None``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..faces.geometry import ffhq_quad, quad_size

PathLike = Union[str, os.PathLike]
Box = Tuple[int, int, int, int]

#: Default minimum cutoff frequency (Hz) of the crop's one-euro filter: lower is steadier, with more lag.
DEFAULT_CUTOFF = 1.0
#: Default speed coefficient of the one-euro filter: how fast the cutoff rises with the face's speed
#: (in face sizes per second), so that fast moves are followed without lag.
DEFAULT_BETA = 2.0
#: Frames the tracked face may be missing before the tracker gives it up and picks a face afresh.
DEFAULT_PATIENCE = 12
#: A face further than this many face sizes from the tracked one is another face.
MAX_JUMP = 0.5


@dataclass
class FaceObservation:
    """One face found in one frame.

    Attributes:
        quad: ``[4, 2]`` corners of its crop in frame pixels (top-left, bottom-left, bottom-right, top-right;
            pixel centres at integers, as in :mod:`hyperinverter.faces.geometry`).
        box: the detector's box ``(left, top, right, bottom)`` (for a fixed crop: the crop's bounds).
        landmarks: ``[68, 2]`` dlib landmarks, when the source has them.
        score: the detector's confidence (NaN when the source has none).
    """

    quad: np.ndarray
    box: Box = (0, 0, 0, 0)
    landmarks: Optional[np.ndarray] = None
    score: float = float("nan")

    def __post_init__(self):
        self.quad = np.asarray(self.quad, dtype=np.float64).reshape(4, 2)
        if not np.all(np.isfinite(self.quad)):
            raise ValueError("a face quad contains NaN or infinite values")

    @property
    def size(self) -> float:
        """Side of the crop in pixels."""
        return quad_size(self.quad)

    @property
    def centre(self) -> np.ndarray:
        """``[2]`` centre of the crop."""
        return self.quad.mean(axis=0)


#: A landmark source: frame (uint8 ``[H, W, 3]``) -> the faces in it.
LandmarkSource = Callable[[np.ndarray], List[FaceObservation]]


# ------------------------------------------------------------------------------------------- crops
def rect_quad(x: float, y: float, w: float, h: float) -> np.ndarray:
    """The quad ``[4, 2]`` covering the pixels ``x .. x + w - 1``, ``y .. y + h - 1`` exactly."""
    left, top, right, bottom = x - 0.5, y - 0.5, x + w - 0.5, y + h - 0.5
    return np.array([[left, top], [left, bottom], [right, bottom], [right, top]], dtype=np.float64)


def centred_square(width: int, height: int) -> Tuple[int, int, int, int]:
    """``(x, y, w, h)`` of the largest square centred in a ``width x height`` frame."""
    side = min(width, height)
    return (width - side) // 2, (height - side) // 2, side, side


def parse_crop(text: str, width: int, height: int) -> Tuple[int, int, int, int]:
    """``"x,y,w,h"`` (pixels) or ``"center"`` -> ``(x, y, w, h)`` within a ``width x height`` frame.

    Raises:
        ValueError: not four whole numbers, a side under 8 pixels, or a rectangle reaching outside the frame.
    """
    text = str(text).strip()
    if text.lower() in ("center", "centre"):
        return centred_square(width, height)
    try:
        x, y, w, h = (int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--crop must be x,y,w,h in pixels (e.g. 0,0,256,256) or 'center', got {text!r}") from None
    if w < 8 or h < 8:
        raise ValueError(f"--crop {text}: the crop must be at least 8x8 pixels")
    if x < 0 or y < 0 or x + w > width or y + h > height:
        raise ValueError(f"--crop {text}: the rectangle reaches outside the {width}x{height} frame")
    return x, y, w, h


class FixedCrop:
    """A landmark source that reports the same rectangle in every frame.

    Args:
        x, y, w, h: the rectangle in pixels (a non-square one is stretched to the model's square crop
            and back).
    """

    def __init__(self, x: int, y: int, w: int, h: int):
        self.rect = (int(x), int(y), int(w), int(h))
        self.quad = rect_quad(*self.rect)

    def __repr__(self) -> str:
        return "FixedCrop({}, {}, {}, {})".format(*self.rect)

    def __call__(self, frame: np.ndarray) -> List[FaceObservation]:
        x, y, w, h = self.rect
        return [FaceObservation(self.quad.copy(), box=(x, y, x + w - 1, y + h - 1))]


class DlibLandmarks:
    """A landmark source with dlib: HOG face detection, 68 landmarks per face, the FFHQ quad from them.

    Args:
        landmarks_path: dlib's ``shape_predictor_68_face_landmarks.dat`` (None: looked up, see
            :func:`hyperinverter.faces.find_landmarks_model`); a missing file is reported at construction.
        min_score: detections scoring below this are ignored.
        detect_size: frames are searched on a copy whose longer side is at most this many pixels.

    Raises:
        FaceDependencyError, LandmarksModelError: dlib or its landmark model is missing.
    """

    def __init__(self, landmarks_path: Optional[PathLike] = None, min_score: Optional[float] = None,
                 detect_size: Optional[int] = None):
        from ..faces.align import DEFAULT_MIN_SCORE, DETECT_SIZE, FaceAligner
        from ..faces.landmarks import import_dlib

        import_dlib()  # a missing dlib is named before any work
        self.aligner = FaceAligner(landmarks_path, min_score=DEFAULT_MIN_SCORE if min_score is None else min_score,
                                   detect_size=detect_size or DETECT_SIZE)

    def __repr__(self) -> str:
        return f"DlibLandmarks({self.aligner!r})"

    def __call__(self, frame: np.ndarray) -> List[FaceObservation]:
        from PIL import Image

        rgb = Image.fromarray(np.ascontiguousarray(frame))
        faces = []
        for box, score in self.aligner.detect(rgb):
            landmarks = self.aligner.landmarks(rgb, box)
            try:
                quad = ffhq_quad(landmarks)
            except ValueError:  # degenerate keypoints
                continue
            faces.append(FaceObservation(quad, box=box, landmarks=landmarks, score=score))
        return faces


# --------------------------------------------------------------------------------------- smoothing
def _alpha(cutoff: float, dt: float) -> float:
    """Smoothing factor of an exponential filter with ``cutoff`` Hz at time step ``dt`` seconds."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """The one-euro filter (Casiez, Roussel and Vogel, CHI 2012) on a vector, with one cutoff for all of
    its entries (so that a quad stays a parallelogram).

    An exponential low-pass filter whose cutoff rises with the signal's speed: ``cutoff = min_cutoff +
    beta * |dx/dt| / scale``. Slow, jittery signals are smoothed strongly; fast moves pass with little lag.

    Args:
        min_cutoff: cutoff in Hz at rest (lower: steadier, more lag).
        beta: how much the cutoff rises per unit of speed (speed in ``scale`` units per second).
        d_cutoff: cutoff in Hz of the filter on the speed estimate.
    """

    def __init__(self, min_cutoff: float = DEFAULT_CUTOFF, beta: float = DEFAULT_BETA, d_cutoff: float = 1.0):
        for name, value in (("min_cutoff", min_cutoff), ("d_cutoff", d_cutoff)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of Hz, got {value!r}")
        if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
            raise ValueError(f"beta must be a number >= 0, got {beta!r}")
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next value passes unchanged."""
        self.x: Optional[np.ndarray] = None
        self.dx: Optional[np.ndarray] = None
        self.t: Optional[float] = None

    def __call__(self, x: np.ndarray, t: float, scale: float = 1.0) -> np.ndarray:
        """The filtered value of ``x`` observed at time ``t`` (seconds, increasing)."""
        x = np.asarray(x, dtype=np.float64)
        if self.x is None or self.t is None:
            self.x, self.dx, self.t = x.copy(), np.zeros_like(x), float(t)
            return x.copy()
        dt = float(t) - self.t
        if dt <= 0:
            raise ValueError(f"the filter's times must increase (got {t} after {self.t})")
        dx = (x - self.x) / dt
        self.dx = self.dx + _alpha(self.d_cutoff, dt) * (dx - self.dx)
        speed = float(np.linalg.norm(self.dx)) / max(float(scale), 1e-12)
        a = _alpha(self.min_cutoff + self.beta * speed, dt)
        self.x = self.x + a * (x - self.x)
        self.t = float(t)
        return self.x.copy()

    def state_dict(self) -> dict:
        """A JSON-ready snapshot (:meth:`load_state_dict` restores it)."""
        return {"x": None if self.x is None else self.x.tolist(), "dx": None if self.dx is None else self.dx.tolist(),
                "t": self.t}

    def load_state_dict(self, state: dict) -> None:
        self.x = None if state.get("x") is None else np.asarray(state["x"], dtype=np.float64)
        self.dx = None if state.get("dx") is None else np.asarray(state["dx"], dtype=np.float64)
        self.t = state.get("t")


def quad_params(quad: np.ndarray) -> np.ndarray:
    """``[6]``: the centre and the half top and left edge vectors of a parallelogram quad."""
    q = np.asarray(quad, dtype=np.float64).reshape(4, 2)
    return np.concatenate([q.mean(axis=0), (q[3] - q[0]) / 2, (q[1] - q[0]) / 2])


def quad_from_params(params: np.ndarray) -> np.ndarray:
    """The inverse of :func:`quad_params`: ``[6]`` -> quad ``[4, 2]``."""
    c, ex, ey = np.asarray(params, dtype=np.float64).reshape(3, 2)
    return np.stack([c - ex - ey, c - ex + ey, c + ex + ey, c + ex - ey])


class FaceTracker:
    """Follow one face through a video and give its temporally smoothed crop per frame.

    The face is picked when first seen (and again after it was lost for more than ``patience`` frames):
    the largest one, or with ``face_index`` the ``face_index``-th from the left (0 = leftmost, the
    numbering of ``hyperinverter align --all-faces``). In later frames the face nearest the tracked one
    (within half a face size) is taken; frames where there is none give ``None``.

    Args:
        face_index: which face to pick (None: the largest).
        min_cutoff, beta: the crop's :class:`OneEuroFilter` (speed measured in face sizes per second).
        patience: frames the face may be missing before the tracker picks a face afresh (and restarts
            the smoothing).
    """

    def __init__(self, face_index: Optional[int] = None, min_cutoff: float = DEFAULT_CUTOFF,
                 beta: float = DEFAULT_BETA, patience: int = DEFAULT_PATIENCE):
        if face_index is not None and (isinstance(face_index, bool) or not isinstance(face_index, int)
                                       or face_index < 0):
            raise ValueError(f"--face must be a whole number >= 0 (0 = the leftmost face), got {face_index!r}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience must be a whole number >= 0, got {patience!r}")
        self.face_index = face_index
        self.patience = patience
        self.filter = OneEuroFilter(min_cutoff, beta)
        self.reset()

    def reset(self) -> None:
        """Forget the tracked face."""
        self.tracking = False
        self.missing = 0
        self.centre: Optional[np.ndarray] = None
        self.size = 0.0
        self.filter.reset()

    def _pick(self, faces: Sequence[FaceObservation]) -> Optional[FaceObservation]:
        if not faces:
            return None
        if self.face_index is None:
            return max(faces, key=lambda f: f.size)
        ordered = sorted(faces, key=lambda f: (f.box[0], f.box[1], float(f.centre[0])))
        return ordered[self.face_index] if self.face_index < len(ordered) else None

    def _follow(self, faces: Sequence[FaceObservation]) -> Optional[FaceObservation]:
        assert self.centre is not None
        near = [(float(np.linalg.norm(f.centre - self.centre)), i) for i, f in enumerate(faces)]
        near = [(d, i) for d, i in near if d <= MAX_JUMP * max(self.size, 1.0)]
        return faces[min(near)[1]] if near else None

    def update(self, faces: Sequence[FaceObservation], t: float) -> Optional[np.ndarray]:
        """The smoothed quad ``[4, 2]`` of the tracked face in the frame at time ``t`` (seconds), given the
        faces found in it; None when the tracked face is not among them."""
        face = self._follow(faces) if self.tracking else None
        if face is None and self.tracking:
            self.missing += 1
            if self.missing <= self.patience:
                return None
            self.reset()
        if face is None:
            face = self._pick(faces)
            if face is None:
                return None
            self.filter.reset()
        self.tracking, self.missing = True, 0
        self.centre, self.size = face.centre, face.size
        return quad_from_params(self.filter(quad_params(face.quad), t, scale=face.size))

    def state_dict(self) -> dict:
        """A JSON-ready snapshot of the tracker (:meth:`load_state_dict` restores it)."""
        return {"tracking": self.tracking, "missing": self.missing,
                "centre": None if self.centre is None else self.centre.tolist(), "size": self.size,
                "filter": self.filter.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.tracking, self.missing = bool(state["tracking"]), int(state["missing"])
        self.centre = None if state.get("centre") is None else np.asarray(state["centre"], dtype=np.float64)
        self.size = float(state["size"])
        self.filter.load_state_dict(state["filter"])


__all__ = ["DEFAULT_BETA", "DEFAULT_CUTOFF", "DEFAULT_PATIENCE", "DlibLandmarks", "FaceObservation", "FaceTracker",
           "FixedCrop", "LandmarkSource", "OneEuroFilter", "centred_square", "parse_crop", "quad_from_params",
           "quad_params", "rect_quad"]
