"""What the web page does, without the web page: invert an upload, edit it, interpolate, export files.

A :class:`ServeSession` holds one loaded model, its edit directions and an optional face aligner. Its
methods take and return plain Python objects (PIL images, :class:`Reconstruction`, paths), so they can be
tested and scripted without Gradio; :mod:`hyperinverter.serve.app` only wires them to widgets.

Editing never re-encodes: :meth:`ServeSession.edit` moves the cached ``ws`` of a :class:`Reconstruction`
and renders with its cached residuals Δθ (one generator pass), and records how long that took.
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence, Union

import torch
from PIL import Image
from safetensors.torch import save_file

from ..domain import DomainRecord, load_domain
from ..editing.directions import Direction
from ..inverter import HyperInverter, InversionResult
from ..metrics.image import mse, psnr, ssim
from ..utils.image_io import tensor_to_pil
from ..utils.images import make_grid
from .directions import combined_offset, load_directions
from .images import ImageLimits, PreparedImage, make_aligner, prepare_image

PathLike = Union[str, os.PathLike]
CODE_FORMATS = ("safetensors", "pt")


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
        recent are kept (Gradio has copied older ones into its cache by then).
        """
        from ..utils.outputs import atomic_write

        with self._lock:
            self._count += 1
            path = self.root / "shown" / f"{self._count:08d}_{name}.png"
            self._shown.append(path)
            old = [self._shown.popleft() for _ in range(max(0, len(self._shown) - self.keep_shown))]
        atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))
        for stale in old:
            stale.unlink(missing_ok=True)
        return path

    def close(self) -> None:
        """Remove the root folder if this store created it."""
        if self._owned:
            shutil.rmtree(self.root, ignore_errors=True)


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


# ---------------------------------------------------------------------------------------------- records
@dataclass
class Reconstruction:
    """One inverted upload, kept between requests (in ``gr.State``) so that edits need no encoder pass.

    Attributes:
        prepared: the upload, its crop and notes.
        result: the inversion (batch of 1) with ``w``, ``ws``, Δθ and both images.
        images: ``{"input", "phase1", "hyperinverter"}`` PIL images at the model's resolution.
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
    """

    def __init__(self, model: HyperInverter, directions: Sequence[Direction] = (), aligner=None,
                 limits: ImageLimits = ImageLimits(), output_dir: Optional[PathLike] = None, name: str = "model",
                 notes: Iterable[str] = (), domain: Optional[DomainRecord] = None):
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
                    output_dir: Optional[PathLike] = None) -> "ServeSession":
        """Load a ``save_pretrained`` folder (or a shipped model's name) with the directions of its
        ``directions/`` folder and of ``directions`` (folders or files).

        Direction files of the wrong size are skipped with a note (also printed by the command line).
        Raises ``CheckpointError`` when the model cannot be loaded.
        """
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
                   name=Path(model_dir).name, notes=[align_note] + notes, domain=domain)

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
            edited = self.model.edit(recon.result, offset.to(self.device), 1.0)
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
            frames = self.model.interpolate(a.result, b.result, steps=steps).image.detach().cpu()
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
        """Remove the temporary download folder (if this session made it)."""
        self.outputs.close()


def format_metrics(metrics: dict[str, dict[str, float]]) -> str:
    """A Markdown table of ``Reconstruction.metrics``."""
    rows = ["| | MSE ↓ | PSNR (dB) ↑ | SSIM ↑ |", "|---|---:|---:|---:|"]
    for key, label in (("phase1", "Phase I (W only)"), ("hyperinverter", "HyperInverter")):
        m = metrics[key]
        rows.append(f"| {label} | {m['mse']:.4f} | {m['psnr']:.2f} | {m['ssim']:.4f} |")
    return "\n".join(rows)


__all__ = ["CODE_FORMATS", "EditOutcome", "Interpolation", "LatencyLog", "OutputStore", "Reconstruction",
           "ServeSession", "format_metrics", "image_metrics", "save_codes"]
