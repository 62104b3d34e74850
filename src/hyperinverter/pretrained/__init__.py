"""Models shipped inside the package, loadable by name: ``HyperInverter.from_pretrained("portraits64")``.

Each shipped model is a sub-folder of this package folder written by ``save_pretrained`` (``config.json``
+ ``model.safetensors``, usually float16) with an optional ``directions/`` folder and a ``README.md``
saying how it was trained. Names are the folder names; nothing is downloaded here. Names that are not
shipped are looked up among the models ``hyperinverter download`` converted into the cache
(:mod:`hyperinverter.home`, e.g. ``"faces-hd128"``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from ..errors import CheckpointError

PathLike = Union[str, os.PathLike]
ROOT = Path(__file__).resolve().parent
#: The model ``hyperinverter demo`` and ``hyperinverter serve`` use when none is given.
DEFAULT_MODEL = "faces64"


def available() -> list[str]:
    """Names of the shipped models (folders here holding a ``config.json``)."""
    return sorted(p.name for p in ROOT.iterdir() if p.is_dir() and (p / "config.json").is_file())


def resolve(name_or_path: PathLike) -> Path:
    """A model folder: ``name_or_path`` itself when it exists on disk, else the shipped model of that name,
    else the downloaded (converted) model of that name in the cache (``hyperinverter download``).

    Raises :class:`CheckpointError` naming the shipped and downloaded models when it is none of these
    (and the command that fetches it, for a model of the official zoo not downloaded yet).
    """
    from ..home import cached_model, cached_models, models_dir

    path = Path(name_or_path)
    if path.exists():
        return path
    text = str(name_or_path)
    if text and "/" not in text and os.sep not in text and (ROOT / text / "config.json").is_file():
        return ROOT / text
    cached = cached_model(text)
    if cached is not None:
        return cached
    if _downloadable(text):
        raise CheckpointError(f"{text}: not downloaded yet; run: hyperinverter download {text}  "
                              f"(it goes to {models_dir()})")
    names = available() + [f"{n} (downloaded)" for n in cached_models()]
    known = f"models: {', '.join(names)}" if names else "no model is shipped with this installation"
    raise CheckpointError(f"{text}: no such file or folder, and not the name of a shipped or downloaded model "
                          f"({known}; 'hyperinverter download --list' shows the official ones)")


def _downloadable(name: str) -> bool:
    """Whether ``name`` is a model of the official zoo that ``hyperinverter download`` fetches."""
    try:
        from ..convert.catalog import default_catalog

        return name in default_catalog().models
    except Exception:  # noqa: BLE001 - only improves a message
        return False


__all__ = ["DEFAULT_MODEL", "ROOT", "available", "resolve"]
