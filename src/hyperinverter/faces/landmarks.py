"""dlib face detection and 68-point landmarks: finding the model file and loading dlib lazily."""

from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import Any, Optional, Union

from .errors import FaceDependencyError, LandmarksModelError

PathLike = Union[str, os.PathLike]

#: File name of dlib's 68-point landmark model.
LANDMARKS_FILE = "shape_predictor_68_face_landmarks.dat"
#: Environment variable naming the landmark model file.
LANDMARKS_ENV = "HYPERINVERTER_DLIB_LANDMARKS"
#: Where Debian/Ubuntu's ``libdlib-data`` (and local installs) put the model.
SYSTEM_LOCATIONS = (Path("/usr/share/dlib") / LANDMARKS_FILE, Path("/usr/local/share/dlib") / LANDMARKS_FILE)

HOW_TO_GET = ("get it with pip install 'hyperinverter[faces]' (the face_recognition_models package ships it), "
              "hyperinverter download dlib-landmarks, "
              "or apt install libdlib-data (/usr/share/dlib), or download it from dlib.net, decompress it "
              f"(bunzip2) and pass --landmarks PATH or set {LANDMARKS_ENV}")

_lock = threading.Lock()
_predictors: dict[str, Any] = {}
_detector: Any = None


def _checked_file(path: PathLike, origin: str) -> Path:
    p = Path(path).expanduser()
    if p.suffix == ".bz2":
        raise LandmarksModelError(f"{p} ({origin}) is compressed: decompress it first (bunzip2 {p}) and use the "
                                  ".dat file")
    if not p.is_file():
        raise LandmarksModelError(f"{p} ({origin}): landmark model file not found; {HOW_TO_GET}")
    return p


def _package_model() -> Optional[Path]:
    """The model shipped in the ``face_recognition_models`` package, found without importing it (its
    ``__init__`` needs ``pkg_resources``, which recent setuptools no longer provide)."""
    try:
        spec = importlib.util.find_spec("face_recognition_models")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(folder) / "models" / LANDMARKS_FILE
        if candidate.is_file():
            return candidate
    return None


def find_landmarks_model(path: Optional[PathLike] = None) -> Path:
    """Locate ``shape_predictor_68_face_landmarks.dat``.

    Order: ``path`` (e.g. the ``--landmarks`` option), the ``HYPERINVERTER_DLIB_LANDMARKS`` environment
    variable, the ``face_recognition_models`` package, the cache (``hyperinverter download dlib-landmarks``),
    then ``/usr/share/dlib`` and ``/usr/local/share/dlib``.
    A path given explicitly (argument or environment) must exist; it never falls through to the others.

    Raises:
        LandmarksModelError: the file is not found (the message says how to get it).
    """
    if path is not None and str(path) != "":
        return _checked_file(path, "given landmark model path")
    env = os.environ.get(LANDMARKS_ENV, "")
    if env:
        return _checked_file(env, f"from ${LANDMARKS_ENV}")
    found = _package_model()
    if found is not None:
        return found
    from ..home import files_dir

    for candidate in (files_dir() / LANDMARKS_FILE,) + SYSTEM_LOCATIONS:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(p) for p in (files_dir() / LANDMARKS_FILE,) + SYSTEM_LOCATIONS)
    raise LandmarksModelError(f"dlib's 68-point landmark model ({LANDMARKS_FILE}) was not found (looked at "
                              f"${LANDMARKS_ENV}, the face_recognition_models package, {tried}); {HOW_TO_GET}")


def import_dlib():
    """The ``dlib`` module, or :class:`FaceDependencyError` saying which extra to install."""
    try:
        import dlib
    except ImportError as e:
        raise FaceDependencyError(
            "face detection needs dlib: pip install 'hyperinverter[faces]' (installs dlib-bin and "
            f"face_recognition_models) ({e})") from e
    return dlib


def frontal_face_detector():
    """dlib's HOG frontal face detector, created once per process."""
    global _detector
    with _lock:
        if _detector is None:
            _detector = import_dlib().get_frontal_face_detector()
        return _detector


def shape_predictor(path: PathLike):
    """A ``dlib.shape_predictor`` for the model file at ``path``, loaded once per process and path."""
    key = str(Path(path).resolve())
    with _lock:
        if key not in _predictors:
            dlib = import_dlib()
            try:
                _predictors[key] = dlib.shape_predictor(key)
            except RuntimeError as e:  # dlib: "Unexpected version found while deserializing ..."
                raise LandmarksModelError(f"{path}: not a dlib shape predictor model file ({e}); {HOW_TO_GET}") from e
        return _predictors[key]


__all__ = ["LANDMARKS_ENV", "LANDMARKS_FILE", "SYSTEM_LOCATIONS", "find_landmarks_model", "frontal_face_detector",
           "import_dlib", "shape_predictor"]
