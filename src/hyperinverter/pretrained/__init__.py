"""Models shipped inside the package, loadable by name: ``HyperInverter.from_pretrained("portraits64")``.

Each shipped model is a sub-folder of this package folder written by ``save_pretrained`` (``config.json``
+ ``model.safetensors``, usually float16) with an optional ``directions/`` folder and a ``README.md``
saying how it was trained. Names are the folder names; nothing is downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

from ..errors import CheckpointError

PathLike = Union[str, os.PathLike]
ROOT = Path(__file__).resolve().parent
#: The model ``hyperinverter demo`` and ``hyperinverter serve`` use when none is given.
DEFAULT_MODEL = "portraits64"


def available() -> list[str]:
    """Names of the shipped models (folders here holding a ``config.json``)."""
    return sorted(p.name for p in ROOT.iterdir() if p.is_dir() and (p / "config.json").is_file())


def resolve(name_or_path: PathLike) -> Path:
    """A model folder: ``name_or_path`` itself when it exists on disk, else the shipped model of that name.

    Raises :class:`CheckpointError` naming the shipped models when it is neither.
    """
    path = Path(name_or_path)
    if path.exists():
        return path
    text = str(name_or_path)
    if text and "/" not in text and os.sep not in text and (ROOT / text / "config.json").is_file():
        return ROOT / text
    names = available()
    shipped = f"shipped models: {', '.join(names)}" if names else "no model is shipped with this installation"
    raise CheckpointError(f"{text}: no such folder, and not the name of a shipped model ({shipped})")


__all__ = ["DEFAULT_MODEL", "ROOT", "available", "resolve"]
