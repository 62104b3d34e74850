"""The geometry of FFHQ-style face alignment, independent of any detector.

Coordinates follow dlib's convention: a point ``(x, y)`` is in pixel units and the centre of pixel
``(i, j)`` (column ``i``, row ``j``) is at ``(i, j)``. Pillow's transforms use "continuous" coordinates in
which that centre is at ``(i + 0.5, j + 0.5)``; the FFHQ script adds the 0.5 when it calls
``Image.transform`` and so do the functions here.

The oriented square ("quad") is computed from the 68 iBUG/dlib landmarks exactly as in the FFHQ data
set creation script (``recreate_aligned_images``)::

    eye_avg      = (eye_left + eye_right) / 2           # eye_left/right: means of points 36-41 / 42-47
    eye_to_eye   = eye_right - eye_left
    mouth_avg    = (mouth_left + mouth_right) / 2       # points 48 and 54
    eye_to_mouth = mouth_avg - eye_avg
    x = eye_to_eye - flipud(eye_to_mouth) * [-1, 1]     # the crop's horizontal axis
    x /= hypot(x); x *= max(hypot(eye_to_eye) * 2.0, hypot(eye_to_mouth) * 1.8)
    y = flipud(x) * [-1, 1]                             # x turned by 90 degrees (pointing down)
    c = eye_avg + eye_to_mouth * 0.1
    quad = [c - x - y, c - x + y, c + x + y, c + x - y] # top-left, bottom-left, bottom-right, top-right
    qsize = hypot(x) * 2                                # the side of the square

The crop is the square mapped onto ``size x size`` pixels: its top-left corner ``quad[0]``, its top edge
along ``quad[3] - quad[0]`` and its left edge along ``quad[1] - quad[0]``.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

#: Landmark indices (iBUG 68-point scheme, 0-based) used by the FFHQ alignment.
LEFT_EYE = slice(36, 42)  # the subject's right eye, on the left of the picture
RIGHT_EYE = slice(42, 48)
MOUTH_LEFT = 48
MOUTH_RIGHT = 54


def _check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected 68 landmarks as an array [68, 2] (dlib's 68-point model), got shape {lm.shape}")
    if not np.all(np.isfinite(lm)):
        raise ValueError("the landmarks contain NaN or infinite values")
    return lm


def _check_quad(quad: np.ndarray) -> np.ndarray:
    q = np.asarray(quad, dtype=np.float64)
    if q.shape != (4, 2):
        raise ValueError(f"expected a quad as an array [4, 2] (top-left, bottom-left, bottom-right, top-right), "
                         f"got shape {q.shape}")
    if not np.all(np.isfinite(q)):
        raise ValueError("the quad contains NaN or infinite values")
    return q


def keypoints(landmarks: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(eye_left, eye_right, mouth_left, mouth_right)``, each ``[2]``, from 68 landmarks ``[68, 2]``."""
    lm = _check_landmarks(landmarks)
    return lm[LEFT_EYE].mean(axis=0), lm[RIGHT_EYE].mean(axis=0), lm[MOUTH_LEFT].copy(), lm[MOUTH_RIGHT].copy()


def quad_from_keypoints(eye_left: np.ndarray, eye_right: np.ndarray, mouth_left: np.ndarray,
                        mouth_right: np.ndarray) -> np.ndarray:
    """The FFHQ square ``[4, 2]`` (top-left, bottom-left, bottom-right, top-right) from eye centres and
    mouth corners, each ``[2]`` in pixel coordinates (see the module docstring for the formulas)."""
    eye_left, eye_right, mouth_left, mouth_right = (np.asarray(p, dtype=np.float64).reshape(2)
                                                    for p in (eye_left, eye_right, mouth_left, mouth_right))
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (mouth_left + mouth_right) * 0.5
    eye_to_mouth = mouth_avg - eye_avg

    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    norm = np.hypot(*x)
    if not np.isfinite(norm) or norm < 1e-9:
        raise ValueError("degenerate face keypoints: the eyes and the mouth coincide")
    x = x / norm
    x = x * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def ffhq_quad(landmarks: np.ndarray) -> np.ndarray:
    """The FFHQ alignment square ``[4, 2]`` from 68 landmarks ``[68, 2]``."""
    return quad_from_keypoints(*keypoints(landmarks))


def quad_size(quad: np.ndarray) -> float:
    """Side length of the quad in pixels (``qsize`` of the FFHQ script: the mean of the top and left edges)."""
    q = _check_quad(quad)
    return float((np.hypot(*(q[3] - q[0])) + np.hypot(*(q[1] - q[0]))) * 0.5)


def homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3 x 3 projective matrix ``H`` with ``H @ [x, y, 1] ~ [x', y', 1]`` taking 4 points ``src [4, 2]``
    to ``dst [4, 2]`` (``H[2, 2] = 1``). For a parallelogram (such as the FFHQ square) it is affine."""
    s, d = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    if s.shape != (4, 2) or d.shape != (4, 2):
        raise ValueError(f"homography needs 4 source and 4 target points [4, 2], got {s.shape} and {d.shape}")
    a = np.zeros((8, 8))
    b = np.zeros(8)
    for i, ((x, y), (u, v)) in enumerate(zip(s, d)):
        a[2 * i] = [x, y, 1, 0, 0, 0, -u * x, -u * y]
        a[2 * i + 1] = [0, 0, 0, x, y, 1, -v * x, -v * y]
        b[2 * i], b[2 * i + 1] = u, v
    try:
        h = np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        raise ValueError("degenerate quad: three of its corners are on one line") from None
    return np.append(h, 1.0).reshape(3, 3)


def apply_homography(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Points ``[N, 2]`` (or ``[2]``) mapped by a 3 x 3 projective matrix; same shape out."""
    p = np.asarray(points, dtype=np.float64)
    flat = p.reshape(-1, 2)
    hom = flat @ matrix[:, :2].T + matrix[:, 2]  # [N, 3]
    return (hom[:, :2] / hom[:, 2:3]).reshape(p.shape)


def crop_corners(width: int, height: int) -> np.ndarray:
    """Corners ``[4, 2]`` of a ``width x height`` crop in continuous coordinates, in quad order."""
    return np.array([[0.0, 0.0], [0.0, height], [width, height], [width, 0.0]])


def crop_to_photo_matrix(quad: np.ndarray, width: int, height: int) -> np.ndarray:
    """3 x 3 matrix from continuous crop coordinates (``[0, width] x [0, height]``) to continuous photo
    coordinates (pixel centres at ``i + 0.5``), as used by ``Image.transform``."""
    return homography(crop_corners(width, height), _check_quad(quad) + 0.5)


def crop_to_photo(points: np.ndarray, quad: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel coordinates ``[N, 2]`` in a ``width x height`` crop -> pixel coordinates in the photo."""
    m = crop_to_photo_matrix(quad, width, height)
    return apply_homography(m, np.asarray(points, dtype=np.float64) + 0.5) - 0.5


def photo_to_crop(points: np.ndarray, quad: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel coordinates ``[N, 2]`` in the photo -> pixel coordinates in a ``width x height`` crop."""
    m = np.linalg.inv(crop_to_photo_matrix(quad, width, height))
    return apply_homography(m, np.asarray(points, dtype=np.float64) + 0.5) - 0.5


def quad_bounds(quad: np.ndarray, margin: int = 2) -> Tuple[int, int, int, int]:
    """Integer pixel box ``(left, top, right, bottom)`` (right/bottom exclusive) holding the quad plus
    ``margin`` pixels; it may extend beyond the photo."""
    q = _check_quad(quad) + 0.5
    lo = np.floor(q.min(axis=0)).astype(int) - margin
    hi = np.ceil(q.max(axis=0)).astype(int) + margin
    return int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])


__all__ = ["LEFT_EYE", "MOUTH_LEFT", "MOUTH_RIGHT", "RIGHT_EYE", "apply_homography", "crop_corners",
           "crop_to_photo", "crop_to_photo_matrix", "ffhq_quad", "homography", "keypoints", "photo_to_crop",
           "quad_bounds", "quad_from_keypoints", "quad_size"]
