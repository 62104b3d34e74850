"""Edit directions for the web page: found in folders, loaded, checked; bad files skipped with a warning.

Every direction file that :func:`hyperinverter.editing.load_direction_file` reads is accepted
(InterFaceGAN ``.npy``/``.pt`` boundaries, ``[num_ws, w_dim]`` tensors, our ``.safetensors`` + ``.json``).
GANSpace PCA files (``.npz`` from GANSpace, e4e's ``{"comp", "mean", "std"}`` ``.pt``) contribute their
first components as additive directions (one standard deviation per unit of strength).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional, Union

import torch

from ..editing.directions import Direction, DirectionError, load_direction_file, load_ganspace

PathLike = Union[str, os.PathLike]
#: File types looked at in a directions folder (``.json`` sidecars go with their ``.safetensors``).
SCAN_SUFFIXES = (".npy", ".pt", ".pth", ".safetensors", ".npz")
#: How many GANSpace components of a PCA file become sliders.
GANSPACE_COMPONENTS = 5


def direction_files(sources: Iterable[PathLike]) -> tuple[list[Path], list[str]]:
    """Direction files in ``sources`` (folders are listed, sorted by name; files kept), and warnings
    for sources that do not exist."""
    files: list[Path] = []
    warnings: list[str] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            files += sorted(p for p in path.iterdir()
                            if p.is_file() and p.suffix.lower() in SCAN_SUFFIXES and not p.name.startswith("."))
        elif path.is_file():
            files.append(path)
        else:
            warnings.append(f"{path}: no such directions folder or file; skipped")
    return files, warnings


def _ganspace_directions(path: Path, w_dim: int, components: int) -> list[Direction]:
    pca = load_ganspace(path, w_dim=w_dim)
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in path.stem) or "ganspace"
    return [pca.direction(k, name=f"{stem}_pc{k}") for k in range(min(components, pca.components.shape[0]))]


def load_file(path: Path, w_dim: int, num_ws: int, components: int = GANSPACE_COMPONENTS) -> list[Direction]:
    """The directions of one file (one, or a GANSpace file's first ``components``).

    Raises:
        DirectionError: unreadable file or wrong dimension (the message names the file and the shape needed).
    """
    if path.suffix.lower() == ".npz":
        return _ganspace_directions(path, w_dim, components)
    try:
        return [load_direction_file(path, w_dim, num_ws)]
    except DirectionError as first:
        if path.suffix.lower() in (".pt", ".pth"):  # maybe an e4e-style GANSpace dict
            try:
                return _ganspace_directions(path, w_dim, components)
            except DirectionError:
                pass
        raise first


def load_directions(sources: Iterable[PathLike], w_dim: int, num_ws: int,
                    components: int = GANSPACE_COMPONENTS) -> tuple[list[Direction], list[str]]:
    """All usable directions in ``sources`` (folders or files) for a model with ``w_dim`` and ``num_ws``.

    Files that cannot be used (wrong dimension, unreadable) are skipped with a warning; names are made
    unique by a ``_2``, ``_3`` ... suffix. Returns ``(directions, warnings)``.
    """
    files, warnings = direction_files(sources)
    out: list[Direction] = []
    seen: dict[str, int] = {}
    for path in files:
        try:
            found = [d.check(w_dim, num_ws, source=str(path)) for d in load_file(path, w_dim, num_ws, components)]
        except DirectionError as e:
            warnings.append(f"skipped direction {e}")
            continue
        for d in found:
            n = seen.get(d.name, 0) + 1
            seen[d.name] = n
            if n > 1:
                d = Direction(f"{d.name}_{n}", d.vector, d.kind, d.layers, d.strength, d.description)
            out.append(d)
    return out, warnings


def combined_offset(directions: list[Direction], strengths: Iterable[float], num_ws: int,
                    w_dim: int) -> Optional[torch.Tensor]:
    """``sum_i strengths[i] * step_i * directions[i]`` as a ``[num_ws, w_dim]`` offset of ``ws`` (each direction
    on its own rows; ``step_i`` its default step, so a strength means what ``--strength`` means in
    ``hyperinverter edit`` and ``demo``: see :data:`hyperinverter.editing.STRENGTH_HELP`), or None when
    every strength is 0."""
    strengths = [float(s or 0.0) for s in strengths]
    if len(strengths) != len(directions):
        raise ValueError(f"got {len(strengths)} strengths for {len(directions)} directions")
    if not any(strengths):
        return None
    total = torch.zeros(num_ws, w_dim)
    for d, s in zip(directions, strengths):
        if s == 0:
            continue
        total += d.step(s) * d.row_vectors(num_ws)
    return total


__all__ = ["GANSPACE_COMPONENTS", "SCAN_SUFFIXES", "combined_offset", "direction_files", "load_directions",
           "load_file"]
