"""Errors of the face tools (detection, alignment, paste-back).

All of them subclass :class:`FaceError`, itself a :class:`~hyperinverter.errors.HyperInverterError`
and a ``ValueError``, so the command line prints their message and exits with status 2.
"""

from __future__ import annotations

from ..errors import HyperInverterError


class FaceError(HyperInverterError, ValueError):
    """A photo cannot be aligned or pasted back into (no face, several faces, too small, too large, ...)."""


class NoFaceError(FaceError):
    """The face detector found no face in the photo."""


class MultipleFacesError(FaceError):
    """Exactly one face was expected but the detector found several.

    ``err.count`` is the number of faces found.
    """

    def __init__(self, message: str, count: int = 0):
        super().__init__(message)
        self.count = count

    def __reduce__(self):  # picklable despite the extra argument
        return type(self), (str(self), self.count)


class FaceTooSmallError(FaceError):
    """The photo, or the face in it, is too small to align."""


class PhotoTooLargeError(FaceError):
    """The photo has more pixels than the aligner accepts."""


class LandmarksModelError(FaceError):
    """The dlib 68-point landmark model file is missing or unreadable."""


class FaceDependencyError(HyperInverterError, ImportError):
    """An optional package needed by the face tools (dlib) is not installed."""
