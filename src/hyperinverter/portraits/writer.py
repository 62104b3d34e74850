"""Data sets of portraits: disjoint seed splits, and folders of PNG files with their labels.

:data:`SPLITS` gives disjoint seed ranges; :func:`write_portraits` writes ``{seed:07d}.png`` files with
``labels.json`` and ``labels.csv`` (and, for portraits drawn from Gaussian latents, ``latents.npy``), the
label files written atomically (:func:`hyperinverter.utils.outputs.atomic_write`);
:func:`read_portrait_labels` reads them back (the one reader of both).
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np
from PIL import Image, PngImagePlugin

from ..errors import HyperInverterError
from ..utils.outputs import atomic_write, write_text_atomic
from .attributes import ATTRIBUTE_NAMES, LATENT_DRAWS, attributes_from_latent
from .painter import check_framing, render_portrait, render_seed

PathLike = Union[str, os.PathLike]

#: Disjoint seed ranges ``[first, end)`` of the data splits.
SPLITS: Dict[str, Tuple[int, int]] = {
    "train": (0, 1_000_000),
    "val": (1_000_000, 1_010_000),
    "test": (2_000_000, 2_010_000),
}


class PortraitOutputError(HyperInverterError, FileExistsError):
    """:func:`write_portraits` would overwrite a file that it did not write itself."""


class PortraitLabelError(HyperInverterError, ValueError):
    """A folder's portrait labels are missing, unreadable, or not one vector of every attribute per file."""


def read_portrait_labels(folder: PathLike) -> Dict[str, np.ndarray]:
    """``{file name: float64 [len(ATTRIBUTE_NAMES)] vector}`` from the labels :func:`write_portraits` wrote:
    ``labels.csv`` (its columns picked by name, so their order does not matter), or ``labels.json`` when a
    folder has only that. Raises one :class:`PortraitLabelError` naming the folder and the problem (no label
    file, a missing column, a short row, a value that is not a finite number)."""
    folder = Path(folder)
    csv_path, json_path = folder / "labels.csv", folder / "labels.json"
    rows: Dict[str, np.ndarray] = {}
    width = len(ATTRIBUTE_NAMES)
    try:
        if csv_path.is_file():
            with open(csv_path, newline="") as fh:
                reader = csv.reader(fh)
                header = next(reader, [])
                missing = [a for a in ("file", *ATTRIBUTE_NAMES) if a not in header]
                if missing:
                    raise PortraitLabelError(f"{csv_path}: missing columns {missing[:5]}")
                cols = [header.index(a) for a in ATTRIBUTE_NAMES]
                file_col = header.index("file")
                for row in reader:
                    if len(row) != len(header):
                        raise PortraitLabelError(f"{csv_path}: a row of {len(row)} entries under {len(header)} "
                                                 "columns")
                    rows[row[file_col]] = np.array([float(row[c]) for c in cols])
        elif json_path.is_file():
            for record in json.loads(json_path.read_text()):
                vector = np.asarray(record["vector"], dtype=np.float64)
                if vector.shape != (width,):
                    raise PortraitLabelError(f"{json_path}: the vector of {record['file']} has {vector.size} "
                                             f"entries, expected {width}")
                rows[str(record["file"])] = vector
        else:
            raise PortraitLabelError(f"{folder}: no labels.csv or labels.json (write labelled portraits with "
                                     "'hyperinverter data portraits')")
    except PortraitLabelError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise PortraitLabelError(f"{folder}: unreadable labels ({type(e).__name__}: {e})") from None
    bad = [name for name, v in rows.items() if not np.isfinite(v).all()]
    if bad:
        raise PortraitLabelError(f"{folder}: non-finite label values for {bad[:3]}")
    return rows


def split_seeds(split: str, count: int, start: int = 0) -> range:
    """Seeds ``start .. start + count - 1`` of ``split`` (offsets into its range in :data:`SPLITS`)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    for name, value in (("count", count), ("start", start)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{name} must be an integer, got {value!r}")
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    first, end = SPLITS[split]
    if first + start + count > end:
        raise ValueError(f"split {split!r} holds {end - first} seeds; start {start} + count {count} "
                         f"= {start + count} runs past its end")
    return range(first + start, first + start + count)


_PNG_MARK = "hyperinverter-portrait"  # a PNG text key: marks files write_portraits may overwrite
_LABEL_FILES = ("labels.json", "labels.csv")


def _png_info(seed: int) -> PngImagePlugin.PngInfo:
    info = PngImagePlugin.PngInfo()
    info.add_text(_PNG_MARK, str(seed))
    return info


def _is_portrait_png(path: Path) -> bool:
    try:
        with Image.open(path) as im:
            return im.format == "PNG" and _PNG_MARK in getattr(im, "text", {})
    except Exception:
        return False


def _is_label_file(path: Path) -> bool:
    """Whether ``path`` looks like a labels file written by write_portraits (so overwriting it is safe)."""
    try:
        if path.suffix == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False).dtype == np.float32
        if path.suffix == ".json":
            data = json.loads(path.read_text())
            return isinstance(data, list) and all(isinstance(r, dict) and {"file", "seed"} <= r.keys() for r in data)
        with open(path, newline="") as f:
            return next(csv.reader(f), [])[:2] == ["file", "seed"]
    except Exception:
        return False


def _render_job(job: Tuple[int, int, str, Optional[np.ndarray], str]) -> Tuple[int, dict, List[float]]:
    seed, size, path, latent, framing = job
    if latent is None:
        img, attrs = render_seed(seed, size, framing)
    else:
        attrs = attributes_from_latent(latent)
        img = render_portrait(attrs, size, framing=framing)
    img.save(path, format="PNG", pnginfo=_png_info(seed))
    return seed, attrs.to_dict(), [float(x) for x in attrs.to_vector()]


def _save_npy(path: str, array: np.ndarray) -> None:
    """``np.save`` to exactly ``path`` (given a name, numpy would append ``.npy`` to a temporary file's)."""
    with open(path, "wb") as fh:
        np.save(fh, array)


def write_portraits(
    out_dir: PathLike,
    count: int,
    split: str = "train",
    size: int = 64,
    start: int = 0,
    workers: int = 1,
    progress: Optional[Callable[[int], None]] = None,
    latents: Optional[np.ndarray] = None,
    framing: str = "portrait",
) -> Path:
    """Render seeds ``split_seeds(split, count, start)`` into ``out_dir``; returns ``out_dir`` as a Path.

    Writes ``{seed:07d}.png`` per seed and, once all are done, ``labels.json`` (a list of
    ``{"file", "seed", "split", "attributes": to_dict(), "vector": to_vector()}``) and ``labels.csv``
    (``file, seed`` then one column per :data:`ATTRIBUTE_NAMES` entry). Other files in ``out_dir`` are
    left alone; a target name held by something this function did not write (a PNG without its marker,
    a folder, a foreign ``labels.*``) raises :class:`PortraitOutputError` before anything is written.
    ``workers > 1`` renders in a process pool. ``progress(n)`` is called after each image with the
    number of images written so far.

    ``latents`` (``[count, z_dim]``, see :func:`attributes_from_latent`): draw portrait ``i`` from
    ``latents[i]`` instead of a seed; files are then named by the index ``i`` (the ``seed`` column holds
    it, ``split`` is ``"latent"``) and the latents are written to ``latents.npy`` (float32, row ``i`` =
    file ``{i:07d}.png``), which makes the folder a set of (z, image) pairs.

    ``framing``: an entry of :data:`~hyperinverter.portraits.painter.FRAMINGS` (recorded in every
    ``labels.json`` record).
    """
    check_framing(framing)
    if latents is not None:
        latents = np.asarray(latents, dtype=np.float32)
        if latents.ndim != 2 or latents.shape[0] != count or latents.shape[1] < LATENT_DRAWS:
            raise ValueError(f"latents must be [count={count}, >= {LATENT_DRAWS}], got {list(latents.shape)}")
        seeds, split = range(count), "latent"
    else:
        seeds = split_seeds(split, count, start)
    if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 32:
        raise ValueError(f"size must be an integer >= 32, got {size!r}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise PortraitOutputError(f"{out}: exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)

    conflicts = []
    for seed in seeds:
        p = out / f"{seed:07d}.png"
        if (p.exists() or p.is_symlink()) and not (p.is_file() and _is_portrait_png(p)):
            conflicts.append(p.name)
    for name in _LABEL_FILES + (("latents.npy",) if latents is not None else ()):
        p = out / name
        if (p.exists() or p.is_symlink()) and not (p.is_file() and _is_label_file(p)):
            conflicts.append(name)
    if conflicts:
        listed = ", ".join(conflicts[:5]) + (f" and {len(conflicts) - 5} more" if len(conflicts) > 5 else "")
        raise PortraitOutputError(f"{out}: refusing to overwrite files not written by write_portraits: {listed}")

    jobs = [(seed, int(size), str(out / f"{seed:07d}.png"), None if latents is None else latents[i], framing)
            for i, seed in enumerate(seeds)]
    results = []

    def collect(it):
        for r in it:
            results.append(r)
            if progress is not None:
                progress(len(results))

    if workers > 1 and len(jobs) > 1:
        with multiprocessing.Pool(min(int(workers), len(jobs))) as pool:
            collect(pool.imap(_render_job, jobs, chunksize=max(1, min(64, len(jobs) // (4 * workers)))))
    else:
        collect(map(_render_job, jobs))

    records = [{"file": f"{seed:07d}.png", "seed": seed, "split": split, "framing": framing, "attributes": d,
                "vector": vec}
               for seed, d, vec in results]
    if latents is not None:
        atomic_write(out / "latents.npy", lambda tmp: _save_npy(tmp, latents))
    write_text_atomic(out / "labels.json", json.dumps(records, indent=1), newline="")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["file", "seed", *ATTRIBUTE_NAMES])
    for r in records:
        writer.writerow([r["file"], r["seed"], *(repr(x) for x in r["vector"])])
    write_text_atomic(out / "labels.csv", buf.getvalue(), newline="")
    return out


__all__ = ["PortraitLabelError", "PortraitOutputError", "SPLITS", "read_portrait_labels", "split_seeds",
           "write_portraits"]
