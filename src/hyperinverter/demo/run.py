"""``hyperinverter demo``: invert held-out portraits (or the user's images), edit and interpolate them,
and write grids, a GIF, per-image metrics and an ``index.html`` that shows it all."""

from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from ..portraits import check_framing, render_seed, split_seeds
from ..domain import load_domain, outside_messages, portrait_framing
from ..editing import Direction, load_direction_file
from ..errors import HyperInverterError
from ..inverter import HyperInverter, InversionResult
from ..metrics.image import mse, psnr, ssim
from ..utils.image_io import load_images, pil_to_tensor
from ..utils.images import to_uint8
from ..utils.outputs import OutputPlan, atomic_write, check_writable, unique_output_names, write_text_atomic
from ..workflows import DIRECTION_SUFFIXES, write_gif
from .directions import DEMO_ATTRIBUTES
from .html import INDEX_NAME, write_index

PHASES = {"phase1": "phase I (W encoder)", "hyperinverter": "HyperInverter (W + Δθ)"}
METRICS = ("mse", "psnr", "ssim")
#: The files of one image in ``<out_dir>/images`` (``{}`` is the image's output name).
IMAGE_OUTPUTS = ("{}_input.png", "{}_phase1.png", "{}_hyperinverter.png")


@dataclass
class DemoOptions:
    """What the demo does (every field has a command-line option of the same name)."""

    count: int = 6  # Held-out portraits rendered when no images are given (test split: never trained on).
    start: int = 0  # First test-split seed index of those portraits.
    directions: Optional[Sequence[str]] = None  # Direction names from the model's directions/ (None: all, max 6).
    strength: float = 1.0  # In units of each direction's default step (editing.STRENGTH_HELP); edits use ±strength.
    interpolation_steps: int = 12  # Frames of the interpolation between the first two inversions.
    samples: int = 16  # Random generator samples in samples.png (0: none).
    truncation_psi: float = 0.8  # Truncation of those samples.
    seed: int = 0  # Seed of the samples.
    batch_size: int = 8  # Images per encoder pass.


@dataclass
class DemoReport:
    """What :func:`run_demo` wrote, with the summary figures."""

    out_dir: Path
    files: dict[str, Path] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    per_image: list[dict] = field(default_factory=list)
    summary: dict[str, dict[str, float]] = field(default_factory=dict)  # phase -> metric -> mean
    directions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # inputs far outside the model's domain (hyperinverter.domain)
    seconds: dict[str, float] = field(default_factory=dict)


def model_directions(model_dir: Optional[Path], model: HyperInverter, names: Optional[Sequence[str]] = None,
                     limit: int = 6) -> tuple[list[Direction], list[str]]:
    """Directions stored in ``<model_dir>/directions`` (all, at most ``limit``, the demo domain's own
    attributes first in :data:`DEMO_ATTRIBUTES` order; or the given ``names``),
    and notes on the files that could not be used."""
    folder = model_dir / "directions" if model_dir is not None else None
    files = {}
    if folder is not None and folder.is_dir():
        files = {p.stem: p for p in sorted(folder.iterdir()) if p.suffix in DIRECTION_SUFFIXES}
    if names:
        missing = [n for n in names if n not in files]
        if missing:
            raise HyperInverterError(f"no direction {missing} in {folder}; available: {sorted(files)}")
        chosen = [files[n] for n in names]
    else:
        rank = {name: i for i, name in enumerate(DEMO_ATTRIBUTES)}
        chosen = [files[n] for n in sorted(files, key=lambda n: (rank.get(n, len(rank)), n))][:limit]
    out, notes = [], []
    for path in chosen:
        try:
            out.append(load_direction_file(path, model.generator.w_dim, model.num_ws))
        except HyperInverterError as e:  # a wrong-dimension file: skip it, say so
            notes.append(f"skipped direction {path.name}: {e}")
    return out, notes


def held_out_portraits(count: int, start: int, size: int, framing: str = "portrait") -> tuple[torch.Tensor, list[str]]:
    """``[count, 3, size, size]`` test-split portraits (seeds the training never used) and their names, drawn in
    ``framing`` (a :data:`~hyperinverter.portraits.FRAMINGS` entry: the model's, see
    :func:`~hyperinverter.domain.portrait_framing`)."""
    check_framing(framing)
    seeds = list(split_seeds("test", count, start))
    images = torch.stack([pil_to_tensor(render_seed(s, size=size, framing=framing)[0]) for s in seeds])
    return images, [f"portrait_{s}" for s in seeds]


def per_image_metrics(target: torch.Tensor, result: InversionResult) -> dict[str, dict[str, torch.Tensor]]:
    """``phase -> metric -> [B]`` for phase I and HyperInverter against ``target``."""
    images = {"phase1": result.image_w, "hyperinverter": result.image}
    fns = {"mse": mse, "psnr": psnr, "ssim": ssim}
    return {phase: {m: fns[m](x.float(), target.float()).cpu() for m in METRICS} for phase, x in images.items()}


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: a scalable built-in font
    except TypeError:
        return ImageFont.load_default()


def labelled_grid(rows: list[list[torch.Tensor]], columns: list[str], row_labels: Optional[list[str]] = None,
                  scale: int = 2, pad: int = 4) -> Image.Image:
    """Rows of ``[3, H, W]`` images in [-1, 1] as one picture with a header per column (upscaled ``scale``x,
    nearest neighbour, so that small images stay sharp)."""
    h, w = rows[0][0].shape[-2:]
    cell_w, cell_h = w * scale, h * scale
    header = 18
    label_w = 0 if not row_labels else 120
    width = label_w + len(columns) * (cell_w + pad) + pad
    height = header + len(rows) * (cell_h + pad) + pad
    grid = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(grid)
    font = _font(11)
    for c, text in enumerate(columns):
        x = label_w + pad + c * (cell_w + pad)
        draw.text((x + 2, 3), text[: max(4, cell_w // 6)], fill=(20, 20, 20), font=font)
    for r, row in enumerate(rows):
        y = header + pad + r * (cell_h + pad)
        if row_labels:
            draw.text((4, y + cell_h // 2 - 6), row_labels[r][:20], fill=(20, 20, 20), font=font)
        for c, img in enumerate(row):
            tile = Image.fromarray(to_uint8(img[None])[0]).resize((cell_w, cell_h), Image.NEAREST)
            grid.paste(tile, (label_w + pad + c * (cell_w + pad), y))
    return grid


def _fmt_strength(s: float) -> str:
    return f"{s:+.2g}"


def _save_png(image: Image.Image, path: Path) -> Path:
    """Write a PIL image as PNG atomically (a failed write leaves an existing file as it was)."""
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))
    return path


def image_output_names(paths: Sequence[Path]) -> list[str]:
    """One output name per input image (same order), such that no two images share a file of
    :data:`IMAGE_OUTPUTS` (``a.jpg``, ``a.png`` -> ``a``, ``a_1``); the names :func:`run_demo` uses."""
    return unique_output_names([Path(p) for p in paths], IMAGE_OUTPUTS)


def plan_demo_outputs(out_dir: Path, images: Optional[Sequence[Path]] = None, options: Optional[DemoOptions] = None,
                      model_dir: Optional[Path] = None, overwrite: bool = False) -> OutputPlan:
    """Check, before any work, every file :func:`run_demo` may write into ``out_dir`` (grid, GIF, samples,
    metrics, ``index.html``, ``images/<name>_*.png``): refused in one line naming the files when one would
    replace an input image or a file of the model's folder (even with ``overwrite``), or exists already and
    ``overwrite`` is off. ``out_dir`` is then tried for writing. Returns the checked plan."""
    opts = options or DemoOptions()
    out_dir = Path(out_dir)
    inputs = [Path(p) for p in images or []]
    if model_dir is not None:
        for folder in (Path(model_dir), Path(model_dir) / "directions"):
            if folder.is_dir():
                inputs += [f for f in folder.iterdir() if f.is_file()]
    plan = OutputPlan(inputs=inputs, overwrite=overwrite)
    if images:
        names, count = image_output_names(images), len(images)
    else:
        names, count = [f"portrait_{s}" for s in split_seeds("test", opts.count, opts.start)], opts.count
    files = ["grid.png", "metrics.csv", "metrics.json", INDEX_NAME]
    if count >= 2 and opts.interpolation_steps >= 2:
        files += ["interpolation.gif", "interpolation.png"]
    if opts.samples > 0:
        files.append("samples.png")
    plan.add_folder_files(out_dir, files)
    for i, name in enumerate(names):
        plan.add_folder_files(out_dir / "images", [p.format(name) for p in IMAGE_OUTPUTS],
                              what=str(images[i]) if images else name)
    plan.check()
    check_writable(out_dir)
    return plan


@torch.no_grad()
def run_demo(model: HyperInverter, out_dir: Path, images: Optional[Sequence[Path]] = None,
             model_dir: Optional[Path] = None, options: Optional[DemoOptions] = None,
             log: Callable[[str], None] = print) -> DemoReport:
    """Invert, edit and interpolate; write the demo folder (see the module docstring). Returns the report.

    Args:
        model: the inverter (on the device to use).
        out_dir: output folder (created; only the demo's own file names are written, each atomically).
            Whether they may replace files there is the caller's decision: :func:`plan_demo_outputs` checks.
        images: the user's image files; None renders ``options.count`` held-out portraits (in the framing the
            model's ``domain.json`` records, :func:`~hyperinverter.domain.portrait_framing`).
        model_dir: the model's folder, where ``directions/`` and ``domain.json`` are looked up (None: no
            directions, portrait framing).
    """
    opts = options or DemoOptions()
    device = next(model.parameters()).device
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = DemoReport(out_dir=out_dir)
    t0 = time.perf_counter()

    # -- inputs
    if images:
        paths = [Path(p) for p in images]
        batch, ok, failed, notes = load_images(paths, model.resolution, on_error="skip")
        for path, message in failed:
            report.notes.append(f"skipped {message}")
        for path, items in notes.items():
            report.notes += [f"{path.name}: {n}" for n in items]
        if batch is None:
            raise HyperInverterError("none of the given images could be read: " +
                                     "; ".join(m for _, m in failed))
        planned: dict[Path, list[str]] = {}  # the names of all given images (plan_demo_outputs), in order
        for path, name in zip(paths, image_output_names(paths)):
            planned.setdefault(path, []).append(name)
        names = [planned[path].pop(0) for path in ok]
        source = f"{len(ok)} of your images"
    else:
        framing = portrait_framing(model_dir) if model_dir is not None else "portrait"
        batch, names = held_out_portraits(opts.count, opts.start, model.resolution, framing)
        source = f"{len(names)} held-out portraits (test seeds {names[0].split('_')[1]}.., {framing} framing)"
    report.names = names
    batch = batch.to(device)
    log(f"inverting {source} at {model.resolution}x{model.resolution}")

    # -- inversion + metrics
    t = time.perf_counter()
    result = model.invert(batch, batch_size=opts.batch_size)
    report.seconds["invert_per_image"] = (time.perf_counter() - t) / len(names)
    metrics = per_image_metrics(batch, result)
    for i, name in enumerate(names):
        row = {"image": name}
        for phase in PHASES:
            for m in METRICS:
                row[f"{m}_{phase}"] = float(metrics[phase][m][i])
        report.per_image.append(row)
    report.summary = {phase: {m: float(metrics[phase][m].mean()) for m in METRICS} for phase in PHASES}
    if model_dir is not None:  # one line per input far outside the model's domain (see hyperinverter.domain)
        labels = [p.name for p in ok] if images else names
        report.warnings += outside_messages(load_domain(model_dir), labels, metrics["phase1"]["psnr"].tolist())

    # -- edits (w moved, Δθ kept)
    directions, notes = model_directions(model_dir, model, opts.directions)
    report.notes += notes
    report.directions = [d.name for d in directions]
    columns = ["input", "phase I", "HyperInverter"]
    edited: list[torch.Tensor] = []
    for d in directions:
        for sign in (-1.0, 1.0):
            s = d.step(sign * opts.strength)
            vec = d.vector.to(device)
            edited.append(model.edit(result, vec, strength=s, layers=d.layers, batch_size=opts.batch_size).image)
            columns.append(f"{d.name} {'-' if sign < 0 else '+'}")
    rows = [[batch[i], result.image_w[i], result.image[i]] + [e[i] for e in edited] for i in range(len(names))]
    grid = labelled_grid(rows, columns, row_labels=[f"{n}" for n in names])
    report.files["grid"] = _save_png(grid, out_dir / "grid.png")

    # -- interpolation between the first two inversions (w and every Δθ blended)
    if len(names) >= 2 and opts.interpolation_steps >= 2:
        frames = model.interpolate(result[0], result[1], steps=opts.interpolation_steps,
                                   batch_size=opts.batch_size).image
        report.files["interpolation_gif"] = write_gif(frames, out_dir / "interpolation.gif", duration_ms=90)
        strip = labelled_grid([list(frames)], [f"t={k / (len(frames) - 1):.2f}" for k in range(len(frames))])
        report.files["interpolation_strip"] = _save_png(strip, out_dir / "interpolation.png")
    else:
        report.notes.append("interpolation needs two images; skipped")

    # -- what the generator makes on its own
    if opts.samples > 0:
        g = torch.Generator().manual_seed(opts.seed)
        z = torch.randn([opts.samples, model.generator.z_dim], generator=g).to(device)
        samples = model.generator(z, truncation_psi=opts.truncation_psi, noise_mode="const")
        cols = int(math.ceil(math.sqrt(opts.samples)))
        rows_s = [list(samples[i:i + cols]) for i in range(0, opts.samples, cols)]
        rows_s[-1] += [torch.ones_like(samples[0])] * (cols - len(rows_s[-1]))
        report.files["samples"] = _save_png(labelled_grid(rows_s, [""] * cols), out_dir / "samples.png")

    # -- per-image files, metrics and the page
    img_dir = out_dir / "images"
    img_dir.mkdir(exist_ok=True)
    for i, name in enumerate(names):
        for pattern, img in zip(IMAGE_OUTPUTS, (batch[i], result.image_w[i], result.image[i])):
            _save_png(Image.fromarray(to_uint8(img[None])[0]), img_dir / pattern.format(name))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(report.per_image[0]), lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(report.per_image)
    report.files["metrics_csv"] = atomic_write(out_dir / "metrics.csv",
                                               lambda tmp: Path(tmp).write_bytes(buf.getvalue().encode("utf-8")))
    report.seconds["total"] = time.perf_counter() - t0
    report.files["metrics_json"] = write_text_atomic(out_dir / "metrics.json", json.dumps({
        "source": source, "resolution": model.resolution, "mean": report.summary, "per_image": report.per_image,
        "directions": report.directions, "options": asdict(opts), "seconds": report.seconds,
        "notes": report.notes, "warnings": report.warnings}, indent=2, default=str) + "\n")
    report.files["index"] = write_index(report, source, model.resolution)
    return report


__all__ = ["DemoOptions", "DemoReport", "IMAGE_OUTPUTS", "held_out_portraits", "image_output_names", "labelled_grid",
           "model_directions", "per_image_metrics", "plan_demo_outputs", "run_demo"]
