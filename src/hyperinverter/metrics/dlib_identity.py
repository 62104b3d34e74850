"""Identity similarity with dlib's 128-D face descriptor (an offline alternative to ArcFace).

dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``, 99.38% on LFW) maps an
aligned face chip to a 128-D descriptor; two photos of one person are closer than 0.6 (Euclidean). The
model and the 5-point landmark model ship in the PyPI package ``face_recognition_models``; the ``dlib``
module comes from ``dlib-bin`` (or ``dlib``). Both are optional: :func:`dlib_identity_status` says whether
the metric can run and why not; nothing is ever approximated.

Protocol of :class:`DlibIdentity`: each input image is scaled up (bicubic) so its shorter side is at least
``min_side`` px, the largest face found by dlib's HOG detector in the *input* is used for both images, the
5 landmarks are located in each image separately, and each image's descriptor is computed on its own
aligned chip. Images whose input has no detected face get NaN and are counted (``num_no_face``).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import torch

from ..errors import HyperInverterError
from .suite import MetricStatus

#: Files of the PyPI package ``face_recognition_models`` (folder ``models/``).
DLIB_MODEL_NAME = "dlib_face_recognition_resnet_model_v1.dat"
DLIB_LANDMARKS_NAME = "shape_predictor_5_face_landmarks.dat"
#: dlib's threshold: descriptors of the same person are usually closer than this.
SAME_PERSON_DISTANCE = 0.6
METRIC_NAME = "dlib_id"


class DlibUnavailableError(HyperInverterError, ImportError):
    """dlib or the face_recognition_models files are not installed."""


def _package_dir(name: str) -> Optional[Path]:
    # find_spec does not import the package: face_recognition_models imports pkg_resources, which recent
    # setuptools no longer ship, so importing it may fail while its model files are all there.
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def dlib_model_files() -> tuple[Path, Path]:
    """``(descriptor model, 5-point landmark model)`` paths from ``face_recognition_models``.

    Raises:
        DlibUnavailableError: the package or one of its files is missing.
    """
    root = _package_dir("face_recognition_models")
    if root is None:
        raise DlibUnavailableError("the package face_recognition_models is not installed "
                                   "(pip install face_recognition_models); it ships " + DLIB_MODEL_NAME)
    files = (root / "models" / DLIB_MODEL_NAME, root / "models" / DLIB_LANDMARKS_NAME)
    for f in files:
        if not f.is_file():
            raise DlibUnavailableError(f"{f}: missing from the face_recognition_models package (reinstall it)")
    return files


def _import_dlib() -> Any:
    try:
        import dlib
    except ImportError as e:
        raise DlibUnavailableError(f"the dlib module is not installed (pip install dlib-bin): {e}") from None
    return dlib


def dlib_identity_status() -> MetricStatus:
    """Whether the dlib identity metric can run here, with the reason when not."""
    try:
        _import_dlib()
        dlib_model_files()
    except DlibUnavailableError as e:
        return MetricStatus(METRIC_NAME, False, str(e))
    return MetricStatus(METRIC_NAME, True)


@dataclass
class DlibIdentityResult:
    """Per-image results of :class:`DlibIdentity` (NaN where the input has no detected face)."""

    cosine: torch.Tensor  # [B] cosine similarity of the two descriptors.
    distance: torch.Tensor  # [B] Euclidean distance of the two descriptors (< 0.6: same person for dlib).
    face_found: torch.Tensor  # [B] bool: a face was detected in the input.

    @property
    def num_no_face(self) -> int:
        return int((~self.face_found).sum())


def summarize(results: list[DlibIdentityResult]) -> dict[str, Optional[float]]:
    """Means over images with a face: ``cosine``, ``distance``, ``match_rate`` (distance < 0.6) and counts."""
    cos = torch.cat([r.cosine for r in results]) if results else torch.zeros(0)
    dist = torch.cat([r.distance for r in results]) if results else torch.zeros(0)
    found = torch.cat([r.face_found for r in results]) if results else torch.zeros(0, dtype=torch.bool)
    n = int(found.sum())
    mean = lambda t: float(t[found].mean()) if n else None  # noqa: E731
    return {"cosine": mean(cos), "distance": mean(dist),
            "match_rate": float((dist[found] < SAME_PERSON_DISTANCE).float().mean()) if n else None,
            "num_images": int(found.numel()), "num_faces": n, "num_no_face": int(found.numel()) - n}


class DlibIdentity:
    """``DlibIdentity()(x, y)`` -> :class:`DlibIdentityResult` for image batches ``[B, 3, H, W]`` in [-1, 1]."""

    def __init__(
        self,
        model_path: Optional[Union[str, Path]] = None,  # Descriptor model; None = face_recognition_models' file.
        landmarks_path: Optional[Union[str, Path]] = None,  # 5-point landmark model; None = the package's file.
        min_side: int = 256,  # Images are scaled up (bicubic) to at least this side before detection.
        upsample: int = 0,  # Extra detector pyramid upsamplings (finds smaller faces, slower).
        num_jitters: int = 0,  # dlib's jittered re-sampling per descriptor (0 = one pass, deterministic).
    ):
        dlib = _import_dlib()
        if model_path is None or landmarks_path is None:
            default_model, default_landmarks = dlib_model_files()
            model_path = model_path or default_model
            landmarks_path = landmarks_path or default_landmarks
        for p in (model_path, landmarks_path):
            if not Path(p).is_file():
                raise DlibUnavailableError(f"{p}: dlib model file not found")
        if min_side < 1 or upsample < 0 or num_jitters < 0:
            raise ValueError(f"min_side must be >= 1 and upsample, num_jitters >= 0; got {min_side}, {upsample}, "
                             f"{num_jitters}")
        self.min_side, self.upsample, self.num_jitters = int(min_side), int(upsample), int(num_jitters)
        self._detector = dlib.get_frontal_face_detector()
        self._landmarks = dlib.shape_predictor(str(landmarks_path))
        self._net = dlib.face_recognition_model_v1(str(model_path))

    def _prepare(self, images: torch.Tensor) -> list[np.ndarray]:
        from PIL import Image

        from ..utils.images import to_uint8

        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape [B, 3, H, W], got {list(images.shape)}")
        out = []
        for arr in to_uint8(images):
            h, w = arr.shape[:2]
            if min(h, w) < self.min_side:
                scale = self.min_side / min(h, w)
                size = (max(1, round(w * scale)), max(1, round(h * scale)))
                arr = np.asarray(Image.fromarray(arr).resize(size, Image.Resampling.BICUBIC))
            out.append(np.ascontiguousarray(arr))
        return out

    def detect(self, image: np.ndarray) -> Optional[Any]:
        """The largest face rectangle of an ``[H, W, 3]`` uint8 image, or None."""
        faces = list(self._detector(image, self.upsample))
        return max(faces, key=lambda r: r.width() * r.height()) if faces else None

    def descriptor(self, image: np.ndarray, face: Any) -> np.ndarray:
        """The 128-D descriptor of ``face`` (a dlib rectangle) in an ``[H, W, 3]`` uint8 image."""
        shape = self._landmarks(image, face)
        return np.asarray(self._net.compute_face_descriptor(image, shape, self.num_jitters), dtype=np.float64)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> DlibIdentityResult:
        """Compare reconstructions ``x`` with inputs ``y`` (the face is detected in ``y``)."""
        if x.shape != y.shape:
            raise ValueError(f"the two image batches must have the same shape, got {list(x.shape)} and "
                             f"{list(y.shape)}")
        xs, ys = self._prepare(x), self._prepare(y)
        cos, dist, found = [], [], []
        for a, b in zip(xs, ys):
            face = self.detect(b)
            if face is None:
                cos.append(float("nan"))
                dist.append(float("nan"))
                found.append(False)
                continue
            da, db = self.descriptor(a, face), self.descriptor(b, face)
            denom = np.linalg.norm(da) * np.linalg.norm(db)
            cos.append(float(da @ db / denom) if denom > 0 else float("nan"))
            dist.append(float(np.linalg.norm(da - db)))
            found.append(True)
        return DlibIdentityResult(torch.tensor(cos, dtype=torch.float64), torch.tensor(dist, dtype=torch.float64),
                                  torch.tensor(found, dtype=torch.bool))
