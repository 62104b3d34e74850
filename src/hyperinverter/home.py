"""Where downloaded files and converted models live: the cache folder (``$HYPERINVERTER_HOME``).

Layout (created on first use)::

    $HYPERINVERTER_HOME/            default ~/.cache/hyperinverter ($XDG_CACHE_HOME/hyperinverter when set)
        files/<file name>           published files as downloaded and checked (official .pt/.pkl, weights)
        models/<model name>/        converted models (config.json + model.safetensors [+ domain.json, directions/])

This module only knows paths (no models, no network): the registry of shipped models
(:mod:`hyperinverter.pretrained`) looks here for names it does not ship, and ``hyperinverter download``
(:mod:`hyperinverter.convert`) fills it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

#: Environment variable naming the cache folder.
HOME_ENV = "HYPERINVERTER_HOME"
#: Sub-folder of downloaded files.
FILES = "files"
#: Sub-folder of converted models.
MODELS = "models"


def home_dir() -> Path:
    """The cache folder: ``$HYPERINVERTER_HOME``, else ``$XDG_CACHE_HOME/hyperinverter``, else
    ``~/.cache/hyperinverter`` (not created here)."""
    env = os.environ.get(HOME_ENV, "")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "hyperinverter"


def files_dir() -> Path:
    """``<home>/files``: downloaded files, by their published names."""
    return home_dir() / FILES


def models_dir() -> Path:
    """``<home>/models``: converted models, one folder per name."""
    return home_dir() / MODELS


def cached_model(name: str) -> Optional[Path]:
    """The converted model folder ``<home>/models/<name>`` when it holds a ``config.json``, else None.

    Args:
        name: a plain model name (no path separators), e.g. ``"faces-hd128"``.
    """
    if not name or "/" in name or os.sep in name or name.startswith("."):
        return None
    folder = models_dir() / name
    return folder if (folder / "config.json").is_file() else None


def cached_models() -> list[str]:
    """Names of the converted models in the cache."""
    root = models_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir()
                  if p.is_dir() and not p.name.startswith(".") and (p / "config.json").is_file())


__all__ = ["FILES", "HOME_ENV", "MODELS", "cached_model", "cached_models", "files_dir", "home_dir", "models_dir"]
