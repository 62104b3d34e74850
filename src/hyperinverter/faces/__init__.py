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

from __future__ import annotations

from ..lazy import lazy_exports

#: public name -> module that defines it (imported on first use: see hyperinverter.lazy)
_EXPORTS = {
    **dict.fromkeys(('DEFAULT_OUTPUT_SIZE', 'AlignedFace', 'FaceAligner', 'warp_face'), '.align'),
    **dict.fromkeys((
        'FaceDependencyError', 'FaceError', 'FaceTooSmallError', 'LandmarksModelError', 'MultipleFacesError',
        'NoFaceError', 'PhotoTooLargeError'
    ), '.errors'),
    **dict.fromkeys((
        'crop_to_photo', 'ffhq_quad', 'photo_to_crop', 'quad_from_keypoints', 'quad_size'
    ), '.geometry'),
    **dict.fromkeys(('LANDMARKS_ENV', 'find_landmarks_model'), '.landmarks'),
    **dict.fromkeys(('DEFAULT_FEATHER', 'feather_mask', 'paste_back'), '.paste'),
    **dict.fromkeys(('MAX_PIXELS', 'open_photo'), '.photo'),
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
