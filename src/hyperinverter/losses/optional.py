"""Turning a weighted loss on only when its weight file is configured."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Optional, TypeVar, Union

from ..errors import CheckpointError

T = TypeVar("T")
log = logging.getLogger("hyperinverter")
_warned: set[str] = set()  # names already reported as off, so a loop over steps or runs warns once


def optional_loss(name: str, path: Optional[Union[str, os.PathLike]], factory: Callable[[str], T]) -> Optional[T]:
    """``factory(path)``, or None (with a one-time warning) when no file is configured.

    Args:
        name: config name of the loss ("lpips", "id", "moco"); the setting is ``losses.<name>_path``.
        path: the weight file; None or "" means "not configured".
        factory: builds the loss from the path, e.g. ``IDLoss``; it raises CheckpointError for bad files.

    Raises:
        CheckpointError: the path is given but missing, unreadable or does not match the network.
    """
    if path is None or str(path) == "":
        if name not in _warned:
            _warned.add(name)
            log.warning("%s loss is off: no weight file given (set losses.%s_path)", name, name)
        return None
    if not Path(path).exists():
        raise CheckpointError(f"{path}: {name} loss weight file not found (losses.{name}_path)")
    return factory(str(path))
