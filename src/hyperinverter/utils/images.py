"""Converting image tensors to pictures on disk."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # only tensor methods are used: callers hand in tensors (torch is already imported)
    import torch


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """``[B, C, H, W]`` in [-1, 1] -> ``[B, H, W, C]`` uint8 (``(x + 1) / 2`` clamped, times 255, truncated)."""
    if images.ndim != 4:
        raise ValueError(f"expected images [B, C, H, W], got {list(images.shape)}")
    x = ((images.detach().float().cpu() + 1) / 2).clamp(0, 1) * 255
    return x.permute(0, 2, 3, 1).byte().numpy()  # values in [0, 255]: byte() truncates as uint8 casting does


def make_grid(images: torch.Tensor, columns: Optional[int] = None, padding: int = 2) -> np.ndarray:
    """Tile ``[B, C, H, W]`` images in [-1, 1] into one ``[H', W', C]`` uint8 array."""
    arr = to_uint8(images)
    b, h, w, c = arr.shape
    columns = columns or math.ceil(math.sqrt(b))
    rows = math.ceil(b / columns)
    grid = np.full((rows * (h + padding) + padding, columns * (w + padding) + padding, c), 255, np.uint8)
    for i in range(b):
        r, col = divmod(i, columns)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        grid[y:y + h, x:x + w] = arr[i]
    return grid


def save_image(array: np.ndarray, path: Union[str, os.PathLike]) -> Path:
    """Save an ``[H, W, C]`` uint8 array (C = 1 or 3) as PNG/JPEG, creating the folder.

    Written atomically (:func:`hyperinverter.utils.outputs.atomic_write`): a failed write leaves any
    previous file intact. Whether ``path`` may be replaced is the caller's decision (``OutputPlan``).
    """
    from .outputs import atomic_write

    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: unknown image file extension {path.suffix!r} (use .png or .jpg)")
    image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    atomic_write(path, lambda tmp: image.save(tmp, format=fmt))
    return path
