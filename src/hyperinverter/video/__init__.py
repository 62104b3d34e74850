"""Editing a face through a whole video (``hyperinverter video``).

::

    from hyperinverter import HyperInverter
    from hyperinverter.editing import load_direction_file
    from hyperinverter.video import FaceVideoEditor, FixedCrop, edit_video, probe_video

    model = HyperInverter.from_pretrained("portraits64")
    direction = load_direction_file("skin_tone.safetensors", model.generator.w_dim, model.num_ws)
    info = probe_video("in.mp4")
    editor = FaceVideoEditor(model, direction.vector, direction.step(1.0), FixedCrop(0, 0, 256, 256), info.fps,
                             smooth=1.0)
    edit_video(editor, info, "out.mp4", settings={"note": "what decides the output"})

* :mod:`.io`: probing, streaming decoding and chunked encoding with ffmpeg (``hyperinverter[media]``);
* :mod:`.tracking`: landmark sources (dlib, a fixed crop, or any callable), the one-face tracker and
  the one-euro filter that keeps the crop steady;
* :mod:`.codes`: per-frame codes and their temporal smoothing;
* :mod:`.editor`: the frame-stream core (track, invert in batches, edit, paste back);
* :mod:`.pipeline`: files, resumable chunks, preview and audio; :func:`temporal_flicker`.

Importing this package needs neither torch, dlib nor ffmpeg: its names are imported on first use (PEP 562),
so that ``hyperinverter --help`` stays quick.
"""

from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {
    **{name: ".codes" for name in ("Factors", "FrameCodes", "blend", "gaussian_radius")},
    **{name: ".editor" for name in ("EditedFrame", "FaceVideoEditor")},
    **{name: ".io" for name in ("SegmentWriter", "VideoError", "VideoInfo", "iter_frames", "join_segments",
                                "probe_video")},
    **{name: ".pipeline" for name in ("DEFAULT_CHUNK", "VideoReport", "edit_video", "parts_folder", "read_progress",
                                      "temporal_flicker")},
    **{name: ".tracking" for name in ("DlibLandmarks", "FaceObservation", "FaceTracker", "FixedCrop", "OneEuroFilter",
                                      "centred_square", "parse_crop", "rect_quad")},
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
