"""What the web page does, without the web page: invert an upload, edit it, interpolate, export files.

A :class:`ServeSession` holds one loaded model, its edit directions and an optional face aligner. Its
methods take and return plain Python objects (PIL images, :class:`Reconstruction`, paths), so they can be
tested and scripted without Gradio; :mod:`hyperinverter.serve.app` only wires them to widgets.

Editing never re-encodes: :meth:`ServeSession.edit` moves the cached ``ws`` of a :class:`Reconstruction`
and renders with its cached residuals Δθ (one generator pass), and records how long that took.

What a page session keeps between requests is small and bounded (:class:`SessionStore`): the codes of its
last upload (``w``, ``ws`` and the hypernetwork's per-layer codes ``h`` in float16, not images), and for an
aligned face the photo downscaled to ``keep_photo_pixels`` (for paste-back); records idle for ``idle_s``
are released, and at most ``max_sessions`` are kept (the least recently used go first).
"""

from __future__ import annotations

import dataclasses
import math
import os
import secrets
import shutil
import statistics
import tempfile
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Sequence, Union

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

from ..domain import DomainRecord, load_domain
from ..editing.directions import Direction
from ..inverter import HyperInverter, InversionResult
from ..metrics.image import mse, psnr, ssim
from ..stylegan2.residuals import LowRankResidual, Residuals, raw_items
from ..utils.image_io import tensor_to_pil
from ..utils.images import make_grid, to_uint8
from .defaults import (DEFAULT_IDLE_S, DEFAULT_KEEP_PHOTO_PIXELS, DEFAULT_MAX_SESSIONS, DEFAULT_REFINE_STEPS,
                       MAX_REFINE_STEPS)
from .directions import combined_offset, load_directions
from .images import ImageLimits, PreparedImage, make_aligner, prepare_image

PathLike = Union[str, os.PathLike]
CODE_FORMATS = ("safetensors", "pt")
#: The dtype of the per-layer codes ``h`` (Δθ's per-image factor) a page session keeps.
KEPT_CODES_DTYPE = torch.float16


# ---------------------------------------------------------------------------------------------- helpers
class LatencyLog:
    """Recent latencies in milliseconds per kind of work (``"invert"``, ``"edit"``, ...); thread-safe.

    Args:
        keep: how many recent values per kind are kept for the summary.
    """

    def __init__(self, keep: int = 200):
        self._values: dict[str, deque] = {}
        self._keep = keep
        self._lock = threading.Lock()

    def add(self, kind: str, ms: float) -> float:
        """Record ``ms`` under ``kind``; returns ``ms``."""
        with self._lock:
            self._values.setdefault(kind, deque(maxlen=self._keep)).append(float(ms))
        return ms

    def values(self, kind: str) -> list[float]:
        """The recorded values of ``kind``, oldest first."""
        with self._lock:
            return list(self._values.get(kind, ()))

    def summary(self, kind: str) -> Optional[dict[str, float]]:
        """``{"count", "last", "median", "min", "max"}`` of ``kind`` in ms, or None when nothing was recorded."""
        values = self.values(kind)
        if not values:
            return None
        return {"count": len(values), "last": values[-1], "median": statistics.median(values),
                "min": min(values), "max": max(values)}


class OutputStore:
    """Folders for downloadable files, one per request, keeping only the ``keep`` most recent.

    Args:
        root: where the folders go; None makes a fresh temporary folder (removed by :meth:`close`).
        keep: the number of request folders kept; older ones are deleted.
    """

    def __init__(self, root: Optional[PathLike] = None, keep: int = 64, keep_shown: int = 256):
        self._owned = root is None
        self.root = Path(tempfile.mkdtemp(prefix="hyperinverter-serve-")) if root is None else Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.keep = max(1, int(keep))
        self.keep_shown = max(1, int(keep_shown))
        self._made: deque = deque()
        self._shown: deque = deque()
        self._count = 0
        self._lock = threading.Lock()

    def new_folder(self, tag: str) -> Path:
        """A new empty folder ``<root>/<unique name>-<tag>``; the oldest folders this store made beyond ``keep``
        are removed (nothing else in ``root`` is touched)."""
        with self._lock:
            folder = Path(tempfile.mkdtemp(prefix=f"{len(self._made):06d}-", suffix=f"-{tag}", dir=self.root))
            self._made.append(folder)
            while len(self._made) > self.keep:
                shutil.rmtree(self._made.popleft(), ignore_errors=True)
        return folder

    def image_file(self, image: Image.Image, name: str = "image") -> Path:
        """``image`` as a PNG file of its own, ``<root>/shown/<n>_<name>.png``, for a widget of the page to show.

        A page widget given a PIL image is written by Gradio to a cache path named by the hash of its bytes,
        with a plain truncate-and-write: two requests with the same picture (the same upload twice, a reset to
        the reconstruction) rewrite one file while the browser may be downloading it, and the download comes
        out short (h11 "Too little data for declared Content-Length"). A path is copied into the cache
        under a temporary name and renamed into place instead, and never rewritten once there. So every
        picture goes out as a file of its own, written whole and then renamed; the ``keep_shown`` most
        recent are kept (Gradio has copied older ones into its cache by then). These files are only shown, so
        they are written with fast compression (level 1: a 1-megapixel photo in a quarter of the time of
        Pillow's default, about 20 % larger).
        """
        from ..utils.outputs import atomic_write

        with self._lock:
            self._count += 1
            path = self.root / "shown" / f"{self._count:08d}_{name}.png"
            self._shown.append(path)
            old = [self._shown.popleft() for _ in range(max(0, len(self._shown) - self.keep_shown))]
        atomic_write(path, lambda tmp: image.save(tmp, format="PNG", compress_level=1))
        for stale in old:
            stale.unlink(missing_ok=True)
        return path

    def close(self) -> None:
        """Remove the root folder if this store created it."""
        if self._owned:
            shutil.rmtree(self.root, ignore_errors=True)


_libc_trim: Optional[Callable[[int], int]] = None
_M_ARENA_MAX = -8  # glibc's mallopt parameter


def _libc():
    import ctypes

    return ctypes.CDLL("libc.so.6")


def release_freed_memory() -> bool:
    """Hand the memory freed by a request back to the system (glibc's ``malloc_trim(0)``).

    The command line keeps freed blocks mapped for speed (``utils.cpu.tune_allocator``): without this, the
    server would keep the peak of the largest upload it decoded (tens of MB for a 16-megapixel photo) for good.
    Called after each upload is handled; under a millisecond once the memory is back. Only the main allocator
    arena is trimmed whole (see :func:`use_one_allocator_arena`). Returns False where there is no glibc.
    """
    global _libc_trim
    if _libc_trim is None:
        try:
            _libc_trim = _libc().malloc_trim
        except (OSError, AttributeError):
            _libc_trim = lambda pad: 0  # noqa: E731 - no glibc
            return False
    _libc_trim(0)
    return True


def use_one_allocator_arena() -> bool:
    """Make every thread allocate from glibc's main arena (``mallopt(M_ARENA_MAX, 1)``), for a server.

    ``malloc_trim`` never shrinks the top of the other arenas, and with the command line's allocator tuning
    each worker thread that handled an upload would keep its peak in an arena of its own (measured: 46 MB per
    thread after a trim; glibc makes up to 8 arenas per core). With one arena, :func:`release_freed_memory`
    hands it all back. Call it before the server's threads start (``hyperinverter serve`` does). Returns False
    where there is no glibc.
    """
    try:
        return _libc().mallopt(_M_ARENA_MAX, 1) == 1
    except (OSError, AttributeError):
        return False


def _ms_since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def _pil(images: torch.Tensor) -> Image.Image:
    """The first image of ``[B, 3, H, W]`` in [-1, 1] as PIL RGB."""
    return tensor_to_pil(images[0].detach().float().cpu())


def image_metrics(target: torch.Tensor, image: torch.Tensor) -> dict[str, float]:
    """``{"mse", "psnr", "ssim"}`` of ``image`` against ``target`` (``[1, 3, H, W]`` in [-1, 1]); SSIM is NaN
    for images smaller than its 11-pixel window."""
    target, image = target.detach().float().cpu(), image.detach().float().cpu()
    out = {"mse": float(mse(image, target)[0]), "psnr": float(psnr(image, target)[0])}
    try:
        out["ssim"] = float(ssim(image, target)[0])
    except ValueError:
        out["ssim"] = float("nan")
    return out


def save_codes(result: InversionResult, path: PathLike, fmt: str = "safetensors",
               metadata: Optional[dict[str, str]] = None) -> Path:
    """Write ``result.codes()`` (``w``, ``ws``, ``delta.<layer>``) as ``.safetensors`` or a ``.pt`` dict.

    The safetensors file is what ``hyperinverter invert`` writes and ``workflows.load_codes`` reads.

    Args:
        result: a single inversion (or edit).
        path: the file, written as ``<name>.codes.<fmt>`` (an ending ``.codes``, ``.pt`` or ``.safetensors``
            of ``path`` is replaced; other dots are kept).
        fmt: ``"safetensors"`` or ``"pt"``.
        metadata: string pairs stored in the safetensors header (ignored for ``.pt``).
    """
    if fmt not in CODE_FORMATS:
        raise ValueError(f"codes format must be one of {CODE_FORMATS}, got {fmt!r}")
    path = Path(path)
    name = path.name
    for ending in (".codes.safetensors", ".codes.pt", ".safetensors", ".pt", ".codes"):
        if name.endswith(ending) and len(name) > len(ending):
            name = name[:-len(ending)]
            break
    path = path.with_name(f"{name}.codes.{fmt}")
    path.parent.mkdir(parents=True, exist_ok=True)
    codes = {k: v.clone() for k, v in result.codes().items()}  # an edit's w is a view of its ws
    if fmt == "safetensors":
        save_file(codes, str(path), metadata={str(k): str(v) for k, v in (metadata or {}).items()})
    else:
        torch.save(codes, path)
    return path


def compact_codes(result: InversionResult, dtype: torch.dtype = KEPT_CODES_DTYPE) -> InversionResult:
    """The codes of ``result`` as a page session keeps them: ``w`` and ``ws`` in float32 and Δθ's per-layer
    codes ``h`` in ``dtype``, all copies on the CPU, no images.

    Factored residuals keep their ``W2``/``b2`` (the model's own tensors, not copied); dense ones (other
    models) are kept whole in ``dtype``. :meth:`ServeSession.edit` and :meth:`ServeSession.interpolate` turn
    them back into float32 on the model's device.
    """
    deltas = {}
    for name, value in raw_items(result.deltas).items():
        if isinstance(value, LowRankResidual):
            deltas[name] = value.with_h(value.h.detach().to("cpu", dtype, copy=True))
        else:
            deltas[name] = value.detach().to("cpu", dtype, copy=True)
    return InversionResult(w=result.w.detach().to("cpu", torch.float32, copy=True),
                           ws=result.ws.detach().to("cpu", torch.float32, copy=True), deltas=Residuals(deltas))


def _to_uint8_tensor(x: torch.Tensor) -> torch.Tensor:
    """``[B, 3, R, R]`` in [-1, 1] -> uint8 on the CPU (kept input of a compact record)."""
    if x.dtype == torch.uint8:
        return x.cpu()
    return torch.from_numpy(to_uint8(x)).permute(0, 3, 1, 2).contiguous()  # the pixels the PNGs hold


def _from_kept_tensor(x: torch.Tensor) -> torch.Tensor:
    """A record's input as float32 in [-1, 1] (a compact record keeps it as uint8)."""
    return x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x.float()  # inverse of utils.images.to_uint8


def _picture_bytes(image: Optional[Image.Image]) -> int:
    return 0 if image is None else image.width * image.height * len(image.getbands())


def _tensor_bytes(tensor: Optional[torch.Tensor]) -> int:
    return 0 if tensor is None else tensor.numel() * tensor.element_size()


def _kept_photo(photo: Image.Image, face: Any, max_pixels: int) -> tuple[Optional[Image.Image], Any, Optional[str]]:
    """``(photo, face, note)`` for paste-back within ``max_pixels``: the photo downscaled and an ``AlignedFace``'s
    geometry rescaled to it (its crop dropped). A face of another type is kept with a photo within the limit,
    else both are dropped with a note."""
    w, h = photo.size
    is_aligned_face = all(hasattr(face, a) for a in ("quad", "landmarks", "box", "photo_size")) and \
        dataclasses.is_dataclass(face)
    if w * h <= max_pixels:
        return photo, (dataclasses.replace(face, image=None) if is_aligned_face else face), None
    if not is_aligned_face:
        return None, None, f"paste-back is off for this upload (its photo is over {max_pixels / 1e6:g} megapixels)"
    scale = math.sqrt(max_pixels / (w * h))
    size = (max(1, int(w * scale)), max(1, int(h * scale)))
    sx, sy = size[0] / w, size[1] / h
    # Pixel centres sit at integer coordinates: a point x of the photo is (x + 0.5) * s - 0.5 in the smaller one.
    to_small = lambda pts: (np.asarray(pts, dtype=np.float64) + 0.5) * (sx, sy) - 0.5  # noqa: E731
    left, top, right, bottom = face.box
    face = dataclasses.replace(face, image=None, quad=to_small(face.quad), landmarks=to_small(face.landmarks),
                               box=(round(left * sx), round(top * sy), round(right * sx), round(bottom * sy)),
                               photo_size=size)
    return photo.resize(size, Image.Resampling.BILINEAR, reducing_gap=3.0), face, None


# ---------------------------------------------------------------------------------------------- records
@dataclass
class Reconstruction:
    """One inverted upload. A page session keeps its :meth:`compact` form between requests (in a
    :class:`SessionStore`) so that edits need no encoder pass.

    Attributes:
        prepared: the upload, its crop and notes (in a compact record: no crop, no tensor, and the photo
            only for an aligned face, downscaled).
        result: the inversion (batch of 1) with ``w``, ``ws``, Δθ and both images (in a compact record: the
            codes only, see :func:`compact_codes`).
        images: ``{"input", "phase1", "hyperinverter"}`` PIL images at the model's resolution (empty in a
            compact record: the page has shown and saved them).
        metrics: ``{"phase1": {...}, "hyperinverter": {...}}`` with ``mse``, ``psnr``, ``ssim`` against the input.
        latency_ms: time of the inversion (encoders + two renders).
    """

    prepared: PreparedImage
    result: InversionResult
    images: dict[str, Image.Image]
    metrics: dict[str, dict[str, float]]
    latency_ms: float

    @property
    def notes(self) -> list[str]:
        return self.prepared.notes

    @property
    def aligned(self) -> bool:
        """Whether the crop is an aligned face (so edits can be pasted back into the photo)."""
        return self.prepared.face is not None

    def compact(self, keep_photo_pixels: int = DEFAULT_KEEP_PHOTO_PIXELS) -> "Reconstruction":
        """What a page session keeps: the codes (:func:`compact_codes`), name, notes and metrics, and for an
        aligned face the photo downscaled to at most ``keep_photo_pixels`` (with the face's geometry rescaled
        to it); no images, no crop, and no photo for a centre crop.

        Edits of the compact record differ from those of the full one only by the float16 rounding of ``h``
        (at most a level or so of 255); an edit pasted back goes into the downscaled photo.
        """
        if not isinstance(keep_photo_pixels, int) or keep_photo_pixels < 1:
            raise ValueError(f"keep_photo_pixels must be a positive integer, got {keep_photo_pixels!r}")
        prepared, notes = self.prepared, list(self.prepared.notes)
        photo, face = None, None
        if prepared.face is not None:
            photo, face, note = _kept_photo(prepared.photo, prepared.face, keep_photo_pixels)
            notes += [note] if note else []
        # the input at the model's resolution as uint8 (12 KB at 64 px, 3 MB at 1024): what "refine" tunes towards
        target = None if prepared.tensor is None else _to_uint8_tensor(prepared.tensor)
        kept = PreparedImage(crop=None, tensor=target, photo=photo, face=face, notes=notes, name=prepared.name)
        return Reconstruction(kept, compact_codes(self.result), {}, {k: dict(v) for k, v in self.metrics.items()},
                              self.latency_ms)

    def nbytes(self) -> int:
        """About how many bytes this record holds: its tensors (not the factors shared with the model) and
        decoded pictures."""
        r, p = self.result, self.prepared
        total = sum(_tensor_bytes(t) for t in (r.w, r.ws, r.image, r.image_w, p.tensor))
        for value in raw_items(r.deltas).values():
            total += _tensor_bytes(value.h if isinstance(value, LowRankResidual) else value)
        pictures = [p.crop, p.photo, getattr(p.face, "image", None), *self.images.values()]
        return total + sum(_picture_bytes(im) for im in pictures)


@dataclass
class EditOutcome:
    """An edit of a :class:`Reconstruction`.

    Attributes:
        image: the edited crop (PIL RGB).
        result: the edited codes (``ws`` moved, Δθ unchanged) and image.
        latency_ms: time of the edit (offset, one generator pass, conversion to PIL).
        strengths: ``{direction name: strength}`` of the non-zero sliders.
        pasted: the edited crop pasted back into the photo (only when asked for and the face was aligned).
        paste_ms: time of the paste-back, if any.
    """

    image: Image.Image
    result: InversionResult
    latency_ms: float
    strengths: dict[str, float] = field(default_factory=dict)
    pasted: Optional[Image.Image] = None
    paste_ms: Optional[float] = None


@dataclass
class Interpolation:
    """Frames from one reconstruction to another.

    Attributes:
        frames: PIL images, first = A, last = B.
        strip: the frames side by side in one image.
        gif: an endlessly looping GIF of the frames (forth and back).
        latency_ms: time of the interpolation render (without the inversion of B and file writing).
    """

    frames: list[Image.Image]
    strip: Image.Image
    gif: Path
    latency_ms: float


# ------------------------------------------------------------------------------------------ page sessions
class SessionStore:
    """The records page sessions keep between requests, under a key, with bounded memory. Thread-safe.

    A page session holds only its key (a random token, in its ``gr.State``); the record lives here. A record
    goes when its session stores another one in its place (a new upload), when it has not been used for
    ``idle_s`` seconds (checked at every call), when more than ``max_sessions`` records are kept (the least
    recently used goes first), or when Gradio drops the session (:meth:`drop`, its ``gr.State`` delete callback).

    Args:
        max_sessions: the most records kept at once (the global cap).
        idle_s: a record unused for this many seconds is released.
        clock: the time in seconds (``time.monotonic``; tests pass a fake one).
    """

    def __init__(self, max_sessions: int = DEFAULT_MAX_SESSIONS, idle_s: float = DEFAULT_IDLE_S,
                 clock: Callable[[], float] = time.monotonic):
        if isinstance(max_sessions, bool) or not isinstance(max_sessions, int) or max_sessions < 1:
            raise ValueError(f"max_sessions must be a positive integer, got {max_sessions!r}")
        if isinstance(idle_s, bool) or not isinstance(idle_s, (int, float)) or not idle_s > 0 or \
                not math.isfinite(idle_s):
            raise ValueError(f"idle_s must be a positive number of seconds, got {idle_s!r}")
        self.max_sessions, self.idle_s, self._clock = max_sessions, float(idle_s), clock
        self._records: OrderedDict[str, tuple[Any, float]] = OrderedDict()  # key -> (record, last use), LRU first
        self._lock = threading.Lock()
        #: How many records went, by cause: ``replaced``, ``idle``, ``evicted`` (over the cap), ``dropped``.
        self.released = {"replaced": 0, "idle": 0, "evicted": 0, "dropped": 0}

    def _expire(self, now: float) -> None:  # under the lock
        while self._records:
            key, (_, used) = next(iter(self._records.items()))
            if now - used < self.idle_s:
                break
            del self._records[key]
            self.released["idle"] += 1

    def put(self, record: Any, replace: Optional[str] = None) -> str:
        """Keep ``record`` under a new key (returned); the record under ``replace`` (the session's previous
        one), idle records and, beyond ``max_sessions``, the least recently used ones are released."""
        key = secrets.token_urlsafe(16)
        with self._lock:
            now = self._clock()
            if isinstance(replace, str) and self._records.pop(replace, None) is not None:
                self.released["replaced"] += 1
            self._expire(now)
            self._records[key] = (record, now)
            while len(self._records) > self.max_sessions:
                self._records.popitem(last=False)
                self.released["evicted"] += 1
        return key

    def get(self, key: Optional[str]) -> Optional[Any]:
        """The record under ``key`` (now counted as used), or None when there is none (never stored, or released)."""
        with self._lock:
            now = self._clock()
            self._expire(now)
            item = self._records.get(key) if isinstance(key, str) else None
            if item is None:
                return None
            self._records[key] = (item[0], now)
            self._records.move_to_end(key)
            return item[0]

    def drop(self, key: Optional[str]) -> None:
        """Release the record under ``key`` now (nothing happens when there is none)."""
        with self._lock:
            if isinstance(key, str) and self._records.pop(key, None) is not None:
                self.released["dropped"] += 1

    def expire(self) -> None:
        """Release the records idle for ``idle_s`` or longer (every other call does this too)."""
        with self._lock:
            self._expire(self._clock())

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def nbytes(self) -> int:
        """About how many bytes the kept records hold (the sum of their ``nbytes()``)."""
        with self._lock:
            records = [record for record, _ in self._records.values()]
        return sum(r.nbytes() for r in records if hasattr(r, "nbytes"))

    def clear(self) -> None:
        """Release every record."""
        with self._lock:
            self._records.clear()


# ---------------------------------------------------------------------------------------------- session
class ServeSession:
    """One model, its directions and an optional face aligner, shared by every page visitor.

    Args:
        model: a :class:`HyperInverter` (evaluation mode is set here).
        directions: edit directions (their size is checked against the model).
        aligner: a ``hyperinverter.faces.FaceAligner`` or None (centre crops).
        limits: upload size limits.
        output_dir: where downloadable files go (None: a temporary folder removed by :meth:`close`).
        name: the model's name, shown in the page.
        notes: startup messages shown in the page (skipped direction files, alignment status).
        domain: what the model was trained on (:class:`hyperinverter.domain.DomainRecord`); uploads far
            outside it get a note. None: no such notes.
        max_sessions: the most page sessions whose reconstruction is kept at once (:class:`SessionStore`;
            the least recently used is released first).
        idle_s: a page session's reconstruction is released after this many seconds without a request.
        keep_photo_pixels: the photo kept for pasting edits back (aligned faces only) is downscaled to at most
            this many pixels (:meth:`Reconstruction.compact`).
    """

    def __init__(self, model: HyperInverter, directions: Sequence[Direction] = (), aligner=None,
                 limits: ImageLimits = ImageLimits(), output_dir: Optional[PathLike] = None, name: str = "model",
                 notes: Iterable[str] = (), domain: Optional[DomainRecord] = None,
                 max_sessions: int = DEFAULT_MAX_SESSIONS, idle_s: float = DEFAULT_IDLE_S,
                 keep_photo_pixels: int = DEFAULT_KEEP_PHOTO_PIXELS):
        if isinstance(keep_photo_pixels, bool) or not isinstance(keep_photo_pixels, int) or keep_photo_pixels < 1:
            raise ValueError(f"keep_photo_pixels must be a positive integer, got {keep_photo_pixels!r}")
        self.store = SessionStore(max_sessions, idle_s)
        self.keep_photo_pixels = keep_photo_pixels
        self.model = model.eval()
        self.device = next(model.parameters()).device
        w_dim, num_ws = model.generator.w_dim, model.num_ws
        for d in directions:
            d.check(w_dim, num_ws)
        self.directions = list(directions)
        self.aligner = aligner
        self.limits = limits
        self.outputs = OutputStore(output_dir)
        self.name = name
        self.notes = list(notes)
        self.domain = domain
        self.latency = LatencyLog()
        self._lock = threading.Lock()  # one model pass at a time, whoever calls

    @classmethod
    def from_folder(cls, model: PathLike, directions: Iterable[PathLike] = (), device: Union[str, torch.device] = "cpu",
                    align: bool = True, landmarks: Optional[PathLike] = None, limits: ImageLimits = ImageLimits(),
                    output_dir: Optional[PathLike] = None, **store: Any) -> "ServeSession":
        """Load a ``save_pretrained`` folder (or a shipped model's name) with the directions of its
        ``directions/`` folder and of ``directions`` (folders or files).

        ``store``: ``max_sessions``, ``idle_s``, ``keep_photo_pixels`` (see the class). Direction files of the
        wrong size are skipped with a note (also printed by the command line). Raises ``CheckpointError`` when
        the model cannot be loaded.
        """
        unknown = sorted(set(store) - {"max_sessions", "idle_s", "keep_photo_pixels"})
        if unknown:
            raise TypeError(f"from_folder() got unexpected keyword arguments {unknown}")
        from ..pretrained import resolve

        model_dir = resolve(model)
        net = HyperInverter.from_pretrained(model_dir, device=device)
        sources = ([model_dir / "directions"] if (model_dir / "directions").is_dir() else []) + list(directions)
        found, notes = load_directions(sources, net.generator.w_dim, net.num_ws)
        aligner, align_note = make_aligner(align, net.resolution, landmarks)
        domain = load_domain(model_dir)
        if aligner is not None and domain is not None and domain.align_message():
            notes.append(f"face photos are aligned, but this model was trained on {domain.kind}, not on "
                         "FFHQ-aligned faces: they are outside its domain (--no-align turns alignment off)")
        return cls(net, found, aligner=aligner, limits=limits, output_dir=output_dir,
                   name=Path(model_dir).name, notes=[align_note] + notes, domain=domain, **store)

    # ------------------------------------------------------------------------------------- properties
    @property
    def resolution(self) -> int:
        return self.model.resolution

    @property
    def direction_names(self) -> list[str]:
        return [d.name for d in self.directions]

    def slider_range(self, direction: Direction) -> float:
        """The slider goes from ``-3`` to ``3``: strengths in units of each direction's default step, as
        ``--strength`` in ``hyperinverter edit`` and ``demo`` (1 = the direction's recommended edit)."""
        return 3.0

    # ------------------------------------------------------------------------------------------ work
    def prepare(self, path: PathLike) -> PreparedImage:
        """Load and crop (or align) an upload; raises ``UploadError`` with a message for the user."""
        return prepare_image(path, self.resolution, self.aligner, self.limits)

    def invert(self, prepared: PreparedImage) -> Reconstruction:
        """Invert a prepared upload: phase I and HyperInverter images, metrics, codes, latency."""
        x = prepared.tensor.to(self.device)
        with self._lock:
            start = time.perf_counter()
            result = self.model.invert(x)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            ms = self.latency.add("invert", _ms_since(start))
        images = {"input": prepared.crop, "phase1": _pil(result.image_w), "hyperinverter": _pil(result.image)}
        metrics = {"phase1": image_metrics(x, result.image_w), "hyperinverter": image_metrics(x, result.image)}
        if self.domain is not None:  # one note when the upload is far outside what the model knows
            outside = self.domain.outside_message("this image", metrics["phase1"]["psnr"])
            if outside and outside not in prepared.notes:
                prepared.notes.append(outside)
        return Reconstruction(prepared, result, images, metrics, ms)

    def invert_file(self, path: PathLike) -> Reconstruction:
        """:meth:`prepare` then :meth:`invert`."""
        return self.invert(self.prepare(path))

    # ------------------------------------------------------------------------------- page sessions
    def remember(self, recon: Reconstruction, replace: Optional[str] = None) -> tuple[str, Reconstruction]:
        """Keep the compact form of ``recon`` (:meth:`Reconstruction.compact`) for a page session, in place of
        its record under ``replace``; returns ``(key, compact record)``."""
        kept = recon.compact(self.keep_photo_pixels)
        return self.store.put(kept, replace=replace), kept

    def recall(self, key: Optional[str]) -> Optional[Reconstruction]:
        """The record a page session keeps under ``key``, or None (no upload yet, or released)."""
        return self.store.get(key)

    def forget(self, key: Optional[str]) -> None:
        """Release a page session's record (Gradio calls this when it drops the session)."""
        self.store.drop(key)

    def released_message(self) -> str:
        """What the page says when a session's record was released."""
        minutes = self.store.idle_s / 60
        return (f"this page's image was released (after {minutes:g} minutes without use, or because more than "
                f"{self.store.max_sessions} pages are open): upload it again")

    def _on_model(self, result: InversionResult) -> InversionResult:
        """``result``'s codes as the model renders them: float32 on its device (a fresh inversion as it is)."""
        ready = lambda t: t.device == self.device and t.dtype == torch.float32  # noqa: E731
        raw = raw_items(result.deltas)
        factors = [v.h if isinstance(v, LowRankResidual) else v for v in raw.values()]
        if all(ready(t) for t in (result.w, result.ws, *factors)):
            return result
        move = lambda t: t.to(self.device, torch.float32)  # noqa: E731
        deltas = {k: v.with_h(move(v.h)) if isinstance(v, LowRankResidual) else move(v) for k, v in raw.items()}
        return InversionResult(move(result.w), move(result.ws), Residuals(deltas), result.image, result.image_w)

    def refine(self, recon: Reconstruction, steps: int = DEFAULT_REFINE_STEPS) -> Reconstruction:
        """``steps`` of per-image tuning from the record's w and Δθ (:func:`hyperinverter.tuning.refine`, MSE):
        a full record with the refined image (as ``images["refined"]``) and ``metrics["refined"]``; ``w`` is
        unchanged, so the sliders edit the refined weights. Its compact form keeps the tuned Δθ densely in
        float16 (the size of the target layers' weights, e.g. 1.8 MB for portraits64)."""
        from ..tuning import refine

        if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_REFINE_STEPS:
            raise ValueError(f"refine steps must be a whole number from 1 to {MAX_REFINE_STEPS}, got {steps!r}")
        if recon.prepared.tensor is None:
            raise ValueError("this record has no input image to refine towards: upload it again")
        x = _from_kept_tensor(recon.prepared.tensor).to(self.device)
        start = self._on_model(recon.result)
        with self._lock:
            t0 = time.perf_counter()
            refined = refine(self.model, x, start, steps=steps)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            ms = self.latency.add("refine", _ms_since(t0))
        metrics = {k: dict(v) for k, v in recon.metrics.items()}
        metrics["refined"] = {**image_metrics(x, refined.image), "steps": steps}
        images = {**recon.images, "refined": _pil(refined.image)}
        return Reconstruction(recon.prepared, refined, images, metrics, recon.latency_ms + ms)

    def strengths_of(self, values: Sequence[Optional[float]]) -> dict[str, float]:
        """Slider values (one per direction, in order) -> ``{name: strength}`` of the non-zero ones."""
        if len(values) != len(self.directions):
            raise ValueError(f"got {len(values)} slider values for {len(self.directions)} directions")
        return {d.name: float(v) for d, v in zip(self.directions, values) if v}

    def edit(self, recon: Reconstruction, values: Sequence[Optional[float]], paste: bool = False) -> EditOutcome:
        """Move the cached ``ws`` by ``sum(values[i] * direction[i])`` and render with the cached Δθ.

        Args:
            recon: a reconstruction from :meth:`invert`.
            values: one strength per direction, in the order of :attr:`directions` (0 or None: unused).
            paste: also paste the edited crop back into the photo (only when the face was aligned).
        """
        strengths = self.strengths_of(values)
        offset = combined_offset(self.directions, values, self.model.num_ws, self.model.generator.w_dim)
        with self._lock:
            start = time.perf_counter()
            if offset is None:  # all sliders at 0: the reconstruction itself, rendered the same way
                offset = torch.zeros(self.model.num_ws, self.model.generator.w_dim)
            edited = self.model.edit(self._on_model(recon.result), offset.to(self.device), 1.0)
            image = _pil(edited.image)
            ms = self.latency.add("edit", _ms_since(start))
        outcome = EditOutcome(image=image, result=edited, latency_ms=ms, strengths=strengths)
        if paste:
            start = time.perf_counter()
            outcome.pasted = self.paste_back(recon, image)
            if outcome.pasted is not None:
                outcome.paste_ms = self.latency.add("paste", _ms_since(start))
        return outcome

    def paste_back(self, recon: Reconstruction, image: Image.Image) -> Optional[Image.Image]:
        """``image`` (an edit of the aligned crop) warped back into the photo; None for a centre crop."""
        face = recon.prepared.face
        if face is None:
            return None
        return face.paste_back(image, recon.prepared.photo)

    def interpolate(self, a: Reconstruction, b: Reconstruction, steps: int = 8, frame_ms: int = 100) -> Interpolation:
        """``steps`` frames from ``a`` to ``b`` (``ws`` and every Δθ interpolated), a strip and a GIF."""
        if not isinstance(steps, int) or not 2 <= steps <= 64:
            raise ValueError(f"steps must be an integer from 2 to 64, got {steps!r}")
        from ..workflows import write_gif

        with self._lock:
            start = time.perf_counter()
            frames = self.model.interpolate(self._on_model(a.result), self._on_model(b.result),
                                            steps=steps).image.detach().cpu()
            ms = self.latency.add("interpolate", _ms_since(start))
        folder = self.outputs.new_folder("interpolation")
        gif = write_gif(frames, folder / f"{a.prepared.name}_to_{b.prepared.name}.gif", duration_ms=frame_ms)
        strip = Image.fromarray(make_grid(frames, columns=steps, padding=2))
        return Interpolation([tensor_to_pil(f) for f in frames], strip, gif, ms)

    # ------------------------------------------------------------------------------------ downloads
    def save_reconstruction(self, recon: Reconstruction, fmt: str = "safetensors") -> list[Path]:
        """Write the crop, phase I and HyperInverter PNGs and the codes; returns the paths."""
        folder = self.outputs.new_folder("inversion")
        name = recon.prepared.name
        paths = []
        for key, suffix in (("hyperinverter", ""), ("phase1", "_phase1"), ("input", "_input")):
            path = folder / f"{name}{suffix}.png"
            recon.images[key].save(path)
            paths.append(path)
        paths.append(save_codes(recon.result, folder / name, fmt, {"source": name, "model": self.name}))
        return paths

    def save_edit(self, recon: Reconstruction, values: Sequence[Optional[float]],
                  fmt: str = "safetensors") -> list[Path]:
        """Render the edit for ``values`` and write its PNG, its codes and (for an aligned face) the photo
        with the edit pasted back; returns the paths."""
        outcome = self.edit(recon, values, paste=True)
        folder = self.outputs.new_folder("edit")
        tag = "_".join(f"{k}{v:+g}" for k, v in outcome.strengths.items())[:80] or "unedited"
        name = f"{recon.prepared.name}_{tag}"
        paths = [folder / f"{name}.png"]
        outcome.image.save(paths[0])
        if outcome.pasted is not None:
            paths.append(folder / f"{name}_photo.png")
            outcome.pasted.save(paths[-1])
        meta = {"source": recon.prepared.name, "model": self.name,
                "edit": ", ".join(f"{k}={v:g}" for k, v in outcome.strengths.items())}
        paths.append(save_codes(outcome.result, folder / name, fmt, meta))
        return paths

    # ------------------------------------------------------------------------------------------- text
    def latency_text(self) -> str:
        """One line on the recent edit latencies (for the page)."""
        s = self.latency.summary("edit")
        if s is None:
            return "no edits yet"
        return (f"edit latency {s['last']:.1f} ms (median {s['median']:.1f} ms over the last {s['count']} edits, "
                f"{self.device.type})")

    def describe(self) -> str:
        """A Markdown paragraph on the model, its directions and the alignment mode."""
        cfg = self.model.generator
        dirs = ", ".join(f"`{n}`" for n in self.direction_names) or "none (add some with --directions DIR)"
        return (f"**Model** `{self.name}`: {self.resolution}x{self.resolution} px, w_dim {cfg.w_dim}, "
                f"{self.model.num_ws} ws rows, on {self.device}. **Directions:** {dirs}.")

    def close(self) -> None:
        """Release every page session's record and remove the temporary download folder (if this session made it)."""
        self.store.clear()
        self.outputs.close()


def format_metrics(metrics: dict[str, dict[str, float]]) -> str:
    """A Markdown table of ``Reconstruction.metrics``."""
    rows = ["| | MSE ↓ | PSNR (dB) ↑ | SSIM ↑ |", "|---|---:|---:|---:|"]
    for key, label in (("phase1", "Phase I (W only)"), ("hyperinverter", "HyperInverter"),
                       ("refined", "HyperInverter + refine")):
        if key not in metrics:
            continue
        m = metrics[key]
        if key == "refined":
            label += f" {m['steps']} steps"
        rows.append(f"| {label} | {m['mse']:.4f} | {m['psnr']:.2f} | {m['ssim']:.4f} |")
    return "\n".join(rows)


__all__ = ["CODE_FORMATS", "DEFAULT_IDLE_S", "DEFAULT_KEEP_PHOTO_PIXELS", "DEFAULT_MAX_SESSIONS", "EditOutcome",
           "Interpolation", "KEPT_CODES_DTYPE", "LatencyLog", "OutputStore", "Reconstruction", "ServeSession",
           "SessionStore", "compact_codes", "format_metrics", "image_metrics", "release_freed_memory", "save_codes",
           "use_one_allocator_arena"]
