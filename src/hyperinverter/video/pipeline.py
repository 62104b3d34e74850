"""Video file in, edited video file out: chunks, resuming, preview, audio (``hyperinverter video``).

The output is encoded in chunks of ``chunk`` frames, each its own H.264 file in a hidden folder beside
the output (``.<output name>.parts/``), together with ``state.json``: the settings, how many frames are
finished, and the state the frame editor needs to continue (the tracker's filter, the codes of the last
frames for the temporal smoothing). An interrupted run started again with the same input and settings
continues after the last finished chunk; the result is the same as that of an uninterrupted run. When
all frames are done, the chunks are joined without re-encoding, the input's audio is copied in, the
result is renamed onto the output path in one step, and the folder is removed.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Tuple, Union

import numpy as np

from ..utils.outputs import atomic_write, clean_stale_temporaries, write_text_atomic
from .editor import FaceVideoEditor
from .io import CONTAINERS, DEFAULT_CHUNK, DEFAULT_CRF, SegmentWriter, VideoError, VideoInfo, iter_frames, join_segments

PathLike = Union[str, os.PathLike]

PROGRESS_FORMAT = "hyperinverter.video-progress/1"
_STATE = "state.json"


@dataclass
class VideoReport:
    """What :func:`edit_video` did.

    Attributes:
        output: the edited video.
        preview: the side-by-side video (input | edited), or None.
        frames: frames written (all of the video's).
        without_face: frames in which the tracked face was not found (passed through unchanged).
        resumed_from: frames that an earlier, interrupted run had finished (0 for a fresh run).
        seconds: the time this run spent on its frames (decoding, editing, encoding; joining excluded).
        width, height, frame_rate: the output's frame size and rate (the input's).
        audio: what happened to the input's audio (``none``, ``copied``, ``re-encoded to AAC``, ``dropped (...)``).
    """

    output: Path
    preview: Optional[Path]
    frames: int
    without_face: int
    resumed_from: int
    seconds: float
    width: int
    height: int
    frame_rate: Fraction
    audio: str

    @property
    def frames_per_second(self) -> float:
        """Frames this run processed per second."""
        done = self.frames - self.resumed_from
        return done / self.seconds if self.seconds > 0 else float("nan")


def container_for(path: PathLike) -> str:
    """The ffmpeg muxer for an output file name, or :class:`VideoError` for an unsupported extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in CONTAINERS:
        raise VideoError(f"{path}: unsupported output video type {suffix or '(no extension)'!r}; use "
                         f"{', '.join(sorted(CONTAINERS))}")
    return CONTAINERS[suffix]


def parts_folder(output: PathLike) -> Path:
    """The folder holding the finished chunks of an unfinished run for ``output``."""
    output = Path(output)
    return output.parent / f".{output.name}.parts"


def _normal(settings: dict) -> dict:
    return json.loads(json.dumps(settings, sort_keys=True, default=str))


def read_progress(output: PathLike) -> Optional[dict]:
    """The saved progress of an unfinished run for ``output`` (None when there is none or it is unreadable)."""
    path = parts_folder(output) / _STATE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and state.get("format") == PROGRESS_FORMAT else None


def _clear(parts: Path) -> None:
    """Remove this module's files from ``parts`` (and the folder when it is then empty)."""
    if not parts.is_dir():
        return
    clean_stale_temporaries(parts)
    for pattern in ("video_*.mp4", "preview_*.mp4", "*.partial", "codes_*.safetensors", _STATE, "segments.txt"):
        for p in parts.glob(pattern):
            p.unlink(missing_ok=True)
    try:
        parts.rmdir()
    except OSError:
        pass


def _resumable(output: Path, settings: dict) -> Tuple[Optional[dict], str]:
    """The saved progress when it belongs to these settings and its files are all there, with a reason
    when there is progress that cannot be used."""
    state = read_progress(output)
    if state is None:
        return None, ""
    parts = parts_folder(output)
    if state.get("settings") != _normal(settings):
        return None, f"the unfinished run in {parts} used another input or other settings"
    names = list(state.get("segments", [])) + list(state.get("previews", [])) + (
        [state["codes"]] if state.get("codes") else [])
    missing = [n for n in names if not (parts / n).is_file()]
    if missing:
        return None, f"the unfinished run in {parts} lacks {', '.join(missing[:3])}"
    return state, ""


def _frame_writers(parts: Path, k: int, info: VideoInfo, crf: int, preview: bool) -> List[SegmentWriter]:
    writers = [SegmentWriter(parts / f"video_{k:05d}.partial", info.width, info.height, info.frame_rate, crf)]
    if preview:
        writers.append(SegmentWriter(parts / f"preview_{k:05d}.partial", 2 * info.width, info.height,
                                     info.frame_rate, crf))
    return writers


def edit_video(editor: FaceVideoEditor, info: VideoInfo, output: PathLike, settings: dict,
               preview: Optional[PathLike] = None, chunk: int = DEFAULT_CHUNK, crf: int = DEFAULT_CRF,
               restart: bool = False, progress: Optional[Callable[[int], None]] = None,
               on_start: Optional[Callable[[int], None]] = None,
               notify: Callable[[str], None] = lambda line: None) -> VideoReport:
    """Edit the face through the video ``info`` (see :func:`~.io.probe_video`) and write ``output``.

    Args:
        editor: the frame editor (model, direction, landmark source, tracker, smoothing).
        info: the input video.
        output: the edited video (``.mp4``, ``.m4v``, ``.mov`` or ``.mkv``); same size, frame rate and audio.
        settings: everything that decides the output (input, model, direction, options), JSON-ready; a
            saved unfinished run is continued only when its settings are equal.
        preview: also write this side-by-side video (input | edited).
        chunk: frames per resumable chunk.
        crf: x264's constant rate factor of the output (0 lossless .. 51 worst).
        restart: ignore the finished chunks of an interrupted run.
        progress: called with the number of frames finished, after every frame.
        on_start: called once before the first frame with the number of frames an interrupted run finished.
        notify: called with one line for things the user should know (resuming, starting over).

    Whether ``output`` may be written (not the input, existing only with overwrite) is the caller's
    decision (:class:`~hyperinverter.utils.outputs.OutputPlan`); this function replaces it.

    Raises:
        VideoError: the video cannot be decoded, encoded or joined.
    """
    output = Path(output)
    container = container_for(output)
    preview_container = container_for(preview) if preview is not None else None
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"--chunk must be a positive whole number of frames, got {chunk!r}")
    if isinstance(crf, bool) or not isinstance(crf, int) or not 0 <= crf <= 51:
        raise ValueError(f"--crf must be a whole number from 0 to 51, got {crf!r}")
    settings = _normal({**settings, "chunk": chunk, "crf": crf, "preview": preview is not None,
                        "size": [info.width, info.height], "frame_rate": str(info.frame_rate)})
    parts = parts_folder(output)
    state, reason = (None, "") if restart else _resumable(output, settings)
    if state is None:
        if reason:
            notify(f"{reason}: starting over")
        _clear(parts)
        parts.mkdir(parents=True, exist_ok=True)
        editor.reset()
        state = {"format": PROGRESS_FORMAT, "settings": settings, "frames_done": 0, "segments": [], "previews": [],
                 "without_face": 0, "editor": None, "codes": None}
    else:
        from safetensors.torch import load_file

        tensors = load_file(str(parts / state["codes"])) if state.get("codes") else {}
        editor.load_state_dict(state["editor"], tensors)
        notify(f"resuming after frame {state['frames_done']} ({len(state['segments'])} finished chunks in {parts})")
    resumed_from = done = int(state["frames_done"])
    without_face = int(state["without_face"])
    writers: List[SegmentWriter] = []
    if on_start is not None:
        on_start(done)
    started = time.perf_counter()

    def finish_chunk() -> None:
        nonlocal writers
        names = []
        for w in writers:
            w.close()
            final = w.path.with_suffix(".mp4")
            os.replace(w.path, final)
            names.append(final.name)
        writers = []
        state["segments"].append(names[0])
        if len(names) > 1:
            state["previews"].append(names[1])
        editor_state, tensors = editor.state_dict()
        old = state.get("codes")
        state["codes"] = None
        if tensors:
            from safetensors.torch import save_file

            name = f"codes_{done:09d}.safetensors"
            atomic_write(parts / name, lambda tmp: save_file(tensors, tmp))
            state["codes"] = name
        state.update(frames_done=done, without_face=without_face, editor=editor_state)
        write_text_atomic(parts / _STATE, json.dumps(state, indent=1))
        if old and old != state["codes"]:
            (parts / old).unlink(missing_ok=True)

    try:
        for out in editor.run(iter_frames(info, start=done)):
            if not writers:
                writers = _frame_writers(parts, len(state["segments"]), info, crf, preview is not None)
            writers[0].write(out.image)
            if preview is not None:
                writers[1].write(np.concatenate([out.source, out.image], axis=1))
            done += 1
            without_face += not out.has_face
            if progress is not None:
                progress(1)
            if done % chunk == 0:
                finish_chunk()
        if writers:
            finish_chunk()
    except BaseException:
        for w in writers:
            w.abort()
        raise
    seconds = time.perf_counter() - started
    if done == 0:
        raise VideoError(f"{info.path}: no frames could be decoded")
    audio_from = info.path if info.audio else None
    results = {}
    for target, names, kind in ((output, state["segments"], container),
                                (preview, state["previews"], preview_container)):
        if target is None:
            continue
        segments = [parts / n for n in names]
        atomic_write(target, lambda tmp: results.__setitem__(target, join_segments(segments, tmp, kind, audio_from,
                                                                                   work=parts)))
    _clear(parts)
    return VideoReport(output=output, preview=None if preview is None else Path(preview), frames=done,
                       without_face=without_face, resumed_from=resumed_from, seconds=seconds, width=info.width,
                       height=info.height, frame_rate=info.frame_rate, audio=results[output])


def temporal_flicker(frames: Iterable[np.ndarray], region: Optional[Tuple[int, int, int, int]] = None) -> float:
    """Mean absolute difference between consecutive frames (in 0..255 levels, averaged over pixels and
    channels of ``region`` = ``(x, y, w, h)``, default the whole frame, then over the frame pairs).

    Measured on an edited video and on its input over the face region, the excess is the flicker the
    editing adds (the input's own value is its motion).
    """
    previous = None
    total, pairs = 0.0, 0
    for frame in frames:
        a = np.asarray(frame)
        if region is not None:
            x, y, w, h = region
            a = a[y:y + h, x:x + w]
        a = a.astype(np.float32)
        if previous is not None:
            total += float(np.abs(a - previous).mean())
            pairs += 1
        previous = a
    if pairs == 0:
        raise ValueError("temporal_flicker needs at least two frames")
    return total / pairs


__all__ = ["DEFAULT_CHUNK", "VideoReport", "container_for", "edit_video", "parts_folder", "read_progress",
           "temporal_flicker"]
