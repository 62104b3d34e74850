"""Faces in real photos: FFHQ-style alignment (dlib detection + 68 landmarks) and paste-back of edited crops.

::

    from hyperinverter.faces import FaceAligner, open_photo

    photo = open_photo("portrait.jpg")                  # upright (EXIF), size-checked
    face = FaceAligner(output_size=256).align(photo)[0]  # exactly one face expected
    edited = my_edit(face.image)                        # any size, RGB
    face.paste_back(edited, photo).save("edited.jpg")   # same size and mode as the photo

dlib and the landmark model come with ``pip install 'hyperinverter[faces]'`` (``dlib-bin`` and
``face_recognition_models``); importing this package does not need them, only :class:`FaceAligner` does.
The geometry (:mod:`.geometry`) and paste-back (:mod:`.paste`) work without dlib.
"""

from .align import DEFAULT_OUTPUT_SIZE, AlignedFace, FaceAligner, warp_face
from .errors import (
    FaceDependencyError,
    FaceError,
    FaceTooSmallError,
    LandmarksModelError,
    MultipleFacesError,
    NoFaceError,
    PhotoTooLargeError,
)
from .geometry import crop_to_photo, ffhq_quad, photo_to_crop, quad_from_keypoints, quad_size
from .landmarks import LANDMARKS_ENV, find_landmarks_model
from .paste import DEFAULT_FEATHER, feather_mask, paste_back
from .photo import MAX_PIXELS, open_photo

__all__ = [
    "DEFAULT_FEATHER",
    "DEFAULT_OUTPUT_SIZE",
    "LANDMARKS_ENV",
    "MAX_PIXELS",
    "AlignedFace",
    "FaceAligner",
    "FaceDependencyError",
    "FaceError",
    "FaceTooSmallError",
    "LandmarksModelError",
    "MultipleFacesError",
    "NoFaceError",
    "PhotoTooLargeError",
    "crop_to_photo",
    "feather_mask",
    "ffhq_quad",
    "find_landmarks_model",
    "open_photo",
    "paste_back",
    "photo_to_crop",
    "quad_from_keypoints",
    "quad_size",
    "warp_face",
]
