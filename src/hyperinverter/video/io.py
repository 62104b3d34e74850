"""Reading and writing video files through the ffmpeg binary that ``imageio-ffmpeg`` ships.

* :func:`probe_video` reads a file's size, frame rate, frame count and audio, or raises
  :class:`VideoError` with one line naming the problem (no such file, not a video, no video stream);
* :func:`iter_frames` decodes the first video stream frame by frame (uint8 ``[H, W, 3]``), streaming: only
  one frame is held at a time, whatever the video's length;
* :class:`SegmentWriter` encodes frames into an H.264 file (one resumable chunk of the output);
* :func:`join_segments` concatenates the chunks without re-encoding them and copies the input's audio.

Needs ``imageio`` and ``imageio-ffmpeg`` (``pip install 'hyperinverter[media]'``).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

import numpy as np

from ..errors import HyperInverterError

PathLike = Union[str, os.PathLike]

#: Output containers by file extension (ffmpeg's muxer names).
CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
#: Default number of frames per resumable chunk of an output (see :mod:`.pipeline`).
DEFAULT_CHUNK = 120
#: Default H.264 constant rate factor of the output (0 = lossless .. 51 = worst; 18 is visually lossless).
DEFAULT_CRF = 18
#: x264 speed preset of the output.
PRESET = "fast"
#: Frame rates a probed rate close to them is snapped to (NTSC rates are stored as rounded decimals).
_STANDARD_RATES = (Fraction(24000, 1001), Fraction(30000, 1001), Fraction(60000, 1001), Fraction(120000, 1001))


class VideoError(HyperInverterError, ValueError):
    """A video cannot be read or written (missing, corrupt, unsupported, or ffmpeg failed)."""


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`probe_video` found in a video file.

    Attributes:
        path: the file.
        width, height: frame size in pixels, as decoded (after the file's rotation flag is applied).
        frame_rate: frames per second as an exact fraction (``30000/1001`` for NTSC's 29.97).
        frames: number of video frames (None when ffmpeg could not count them).
        codec: the video codec's name (e.g. ``h264``).
        audio: the audio codec's name, or None without an audio stream.
        duration: the container's duration in seconds (None when unknown).
    """

    path: Path
    width: int
    height: int
    frame_rate: Fraction
    frames: Optional[int]
    codec: str = ""
    audio: Optional[str] = None
    duration: Optional[float] = None

    @property
    def fps(self) -> float:
        """The frame rate as a float."""
        return float(self.frame_rate)


def _imageio_ffmpeg():
    try:
        import imageio_ffmpeg
    except ImportError as e:
        raise VideoError("video files need imageio and imageio-ffmpeg: pip install 'hyperinverter[media]' "
                         f"({e})") from e
    return imageio_ffmpeg


def ffmpeg_exe() -> str:
    """The path of the ffmpeg binary (imageio-ffmpeg's own, or ``$IMAGEIO_FFMPEG_EXE``)."""
    try:
        return _imageio_ffmpeg().get_ffmpeg_exe()
    except RuntimeError as e:  # no binary for this platform and none on the PATH
        raise VideoError(f"no ffmpeg binary found ({e}); install imageio-ffmpeg or set IMAGEIO_FFMPEG_EXE") from None


def _last_lines(text: str, limit: int = 300) -> str:
    """The last meaningful line of ffmpeg's messages, cut to ``limit`` characters."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(("At least one output file", "Conversion failed"))]
    line = lines[-1] if lines else "no message from ffmpeg"
    line = re.sub(r"^\[[^\]]*@ 0x[0-9a-f]+\]\s*", "", line)  # "[in#0 @ 0x55...] " prefixes
    return line if len(line) <= limit else line[:limit] + "..."


def _run_ffmpeg_probe(path: PathLike) -> subprocess.CompletedProcess:
    """ffmpeg decoding the first frame of the first video stream to raw RGB (thrown away): its messages
    describe the input and the decoded frame size (after the file's rotation flag is applied)."""
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", os.fspath(path), "-map", "0:v:0", "-frames:v", "1",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-y", os.devnull]
    try:
        return subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=120)
    except subprocess.TimeoutExpired:
        raise VideoError(f"{path}: ffmpeg took more than 2 minutes to read the first frame") from None
    except OSError as e:
        raise VideoError(f"ffmpeg did not run ({e})") from None


def _problem(text: str) -> str:
    """Why ffmpeg could not read an input, in a few words, from its messages."""
    match = re.search(r"Error opening input(?: file)?: (.+)", text)
    if match:
        return match.group(1).strip()
    if not re.search(r"Stream #0:\S*.*: Video: ", text):
        return "no video stream"
    return _last_lines(text)


def ffmpeg_problem(path: PathLike) -> str:
    """Why ffmpeg cannot read ``path``, in a few words (e.g. "Invalid data found when processing input",
    "no video stream")."""
    return _problem(_run_ffmpeg_probe(path).stderr)


def _rate(fps: float) -> Fraction:
    rate = Fraction(fps).limit_denominator(1001)
    for standard in _STANDARD_RATES:
        if abs(float(standard) - fps) < 0.006:
            return standard
    return rate


def probe_video(path: PathLike) -> VideoInfo:
    """Size, frame rate, frame count and audio of a video file.

    Raises:
        VideoError: one line naming the problem: the file is missing, not a video ffmpeg can read,
            has no video stream, no frames, or no usable frame rate.
    """
    path = Path(path)
    if not path.exists():
        raise VideoError(f"{path}: no such file")
    if path.is_dir():
        raise VideoError(f"{path}: is a folder, not a video file")
    run = _run_ffmpeg_probe(path)
    text = run.stderr
    head, _, tail = text.partition("\nOutput #0")
    video = re.search(r"Stream #0:\S*.*: Video: (\w+)(.*)", head)
    if run.returncode != 0 or video is None:
        raise VideoError(f"{path}: not a readable video ({_problem(text)})")
    size = re.search(r"Video: rawvideo.*?, (\d+)x(\d+)[, \[]", tail)
    if size is None:
        raise VideoError(f"{path}: the video has no frames")
    rate = re.search(r" (\d+(?:\.\d+)?) fps", video.group(2)) or re.search(r" (\d+(?:\.\d+)?) tbr", video.group(2))
    fps = float(rate.group(1)) if rate else 0.0
    if not 0 < fps <= 1000:
        raise VideoError(f"{path}: the video has no usable frame rate")
    audio = re.search(r"Stream #0:\S*.*: Audio: (\w+)", head)
    duration = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", head)
    seconds = None
    if duration:
        h, m, sec = duration.groups()
        seconds = int(h) * 3600 + int(m) * 60 + float(sec)
    try:
        frames, _ = _imageio_ffmpeg().count_frames_and_secs(str(path))
    except (OSError, RuntimeError, ValueError):
        frames = None
    if frames == 0:
        raise VideoError(f"{path}: the video has no frames")
    return VideoInfo(path=path, width=int(size.group(1)), height=int(size.group(2)), frame_rate=_rate(fps),
                     frames=frames, codec=video.group(1), audio=audio.group(1) if audio else None, duration=seconds)


def iter_frames(info: VideoInfo, start: int = 0) -> Iterator[np.ndarray]:
    """The frames of the first video stream as uint8 ``[height, width, 3]`` RGB arrays, from frame ``start``
    (the frames before it are decoded and dropped, so that the numbering is exact). One frame is held at
    a time; closing the iterator stops ffmpeg.

    Raises:
        VideoError: decoding failed part-way (names the frame and ffmpeg's reason).
    """
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(info.path),
           "-map", "0:v:0", "-fps_mode", "passthrough", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    size = info.width * info.height * 3
    index = 0
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log)
        try:
            while True:
                raw = process.stdout.read(size)
                if len(raw) < size:
                    break
                if index >= start:
                    yield np.frombuffer(raw, np.uint8).reshape(info.height, info.width, 3)
                index += 1
            code = process.wait()
            if code != 0 or raw:
                log.seek(0)
                reason = _last_lines(log.read().decode("utf-8", "replace"))
                what = f"ffmpeg exit {code}: {reason}" if code else f"a partial frame of {len(raw)} bytes"
                raise VideoError(f"{info.path}: decoding stopped at frame {index} ({what})")
        finally:
            if process.poll() is None:
                process.kill()
            process.stdout.close()
            process.wait()


class SegmentWriter:
    """Encode RGB frames into one H.264 video file (no audio) at a fixed frame rate.

    Without B-frames: the decoding delay they bring depends on a chunk's length, and chunks of different
    delays do not join into evenly spaced timestamps (a short last chunk would stretch a frame).

    Args:
        path: the file to write; its container is picked with ``container`` (the name may end in ``.tmp``).
        width, height: frame size; odd sizes are kept exactly (then the chroma is not subsampled:
            ``yuv444p``, which some players do not show; even sizes use the common ``yuv420p``).
        frame_rate: frames per second.
        crf: x264's constant rate factor (0 lossless .. 51 worst).
        container: ffmpeg muxer name (``mp4``, ``mov``, ``matroska``).
    """

    def __init__(self, path: PathLike, width: int, height: int, frame_rate: Fraction, crf: int = DEFAULT_CRF,
                 container: str = "mp4"):
        self.path = Path(path)
        self.width, self.height = int(width), int(height)
        self.count = 0
        pix_fmt = "yuv420p" if self.width % 2 == 0 and self.height % 2 == 0 else "yuv444p"
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{self.width}x{self.height}",
               "-r", str(Fraction(frame_rate)), "-i", "-", "-an",
               "-c:v", "libx264", "-preset", PRESET, "-crf", str(int(crf)), "-pix_fmt", pix_fmt,
               "-bf", "0"]  # no B-frames: chunks then join with exact timestamps (B-frames shift the last ones)
        if container in ("mp4", "mov"):
            cmd += ["-movflags", "+faststart"]
        cmd += ["-f", container, str(self.path)]
        self._log = tempfile.TemporaryFile()
        self._process = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=self._log)

    def _error(self) -> str:
        self._log.seek(0)
        return _last_lines(self._log.read().decode("utf-8", "replace"))

    def write(self, frame: np.ndarray) -> None:
        """Append one uint8 ``[height, width, 3]`` frame."""
        if frame.shape != (self.height, self.width, 3) or frame.dtype != np.uint8:
            raise ValueError(f"expected a uint8 frame [{self.height}, {self.width}, 3], got {frame.dtype} "
                             f"{list(frame.shape)}")
        try:
            self._process.stdin.write(np.ascontiguousarray(frame).tobytes())
        except (BrokenPipeError, OSError):
            self._process.wait()
            raise VideoError(f"{self.path}: ffmpeg stopped encoding ({self._error()})") from None
        self.count += 1

    def close(self) -> Path:
        """Finish the file; raises :class:`VideoError` when ffmpeg failed."""
        try:
            self._process.stdin.close()
        except OSError:
            pass
        code = self._process.wait()
        try:
            if code != 0:
                raise VideoError(f"{self.path}: ffmpeg could not encode the video (exit {code}: {self._error()})")
        finally:
            self._log.close()
        return self.path

    def abort(self) -> None:
        """Stop ffmpeg and remove the unfinished file."""
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        try:
            self._process.stdin.close()
        except OSError:
            pass
        self._log.close()
        try:
            self.path.unlink()
        except OSError:
            pass


def _concat_list(segments: Sequence[Path], folder: Path) -> Path:
    listing = folder / "segments.txt"
    lines = []
    for seg in segments:
        quoted = str(Path(seg).resolve()).replace("'", "'\\''")
        lines.append(f"file '{quoted}'")
    listing.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return listing


def join_segments(segments: Sequence[Path], target: PathLike, container: str, audio_from: Optional[Path] = None,
                  work: Optional[Path] = None) -> str:
    """Concatenate the H.264 files ``segments`` (same size and rate) into ``target`` without re-encoding,
    adding the audio streams of ``audio_from`` (copied; re-encoded to AAC when the container cannot hold
    them; left out, with the reason returned, when that fails as well).

    Returns:
        What happened to the audio: ``"none"``, ``"copied"``, ``"re-encoded to AAC"`` or ``"dropped (...)"``.

    Raises:
        VideoError: ffmpeg could not join the video.
    """
    if not segments:
        raise VideoError("no video frames were written")
    work = Path(work) if work is not None else Path(segments[0]).parent
    listing = _concat_list(segments, work)
    base = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y",
            "-f", "concat", "-safe", "0", "-i", str(listing)]
    tail = (["-movflags", "+faststart"] if container in ("mp4", "mov") else []) + ["-f", container, os.fspath(target)]
    attempts = [("none", base + ["-map", "0:v:0", "-c:v", "copy"] + tail)]
    if audio_from is not None:
        with_audio = base + ["-i", os.fspath(audio_from), "-map", "0:v:0", "-map", "1:a", "-c:v", "copy"]
        attempts = [("copied", with_audio + ["-c:a", "copy"] + tail),
                    ("re-encoded to AAC", with_audio + ["-c:a", "aac"] + tail)] + attempts
    reasons = []
    try:
        for outcome, cmd in attempts:
            run = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
            if run.returncode == 0:
                if outcome == "none" and audio_from is not None:
                    return f"dropped ({'; '.join(reasons)})"
                return outcome
            reasons.append(_last_lines(run.stderr, 200))
    finally:
        listing.unlink(missing_ok=True)
    raise VideoError(f"{target}: ffmpeg could not join the encoded chunks ({reasons[-1]})")


__all__ = ["CONTAINERS", "DEFAULT_CHUNK", "DEFAULT_CRF", "SegmentWriter", "VideoError", "VideoInfo", "ffmpeg_exe",
           "ffmpeg_problem", "iter_frames", "join_segments", "probe_video"]
