"""(z, image) pairs: a folder of images with the latent each one was drawn from (``latents.npy``).

``hyperinverter data portraits --latents Z_DIM`` writes such a folder: file ``{i:07d}.png`` is the portrait of
row ``i`` of ``latents.npy`` (:func:`~hyperinverter.portraits.attributes_from_latent`). The demo
generator learns that map (``train gan-teacher``) and the W encoder can be told the true code of each
training image.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Tuple, Union

import numpy as np
import torch

from .folder import DatasetError, ImageFolderDataset

PathLike = Union[str, os.PathLike]

#: Name of the latent file in a pairs folder.
LATENTS_FILE = "latents.npy"


def read_pair_labels(root: PathLike, files) -> np.ndarray:
    """float32 ``[len(files), A]``: the attribute vectors of ``root``'s labels
    (:func:`~hyperinverter.portraits.read_portrait_labels`) for ``files``, in that order. One clear
    :class:`DatasetError` for missing, unreadable or incomplete labels."""
    from ..portraits import PortraitLabelError, read_portrait_labels

    try:
        rows = read_portrait_labels(root)
    except PortraitLabelError as e:
        raise DatasetError(str(e)) from None
    names = [Path(p).name for p in files]
    missing = [n for n in names if n not in rows]
    if missing:
        raise DatasetError(f"{os.fspath(root)}: no label row for {missing[:3]}")
    return np.stack([rows[n] for n in names]).astype(np.float32)


class LatentPairsDataset(torch.utils.data.Dataset):
    """``dataset[i]`` or ``dataset[(i, epoch)]`` -> ``(image [3, R, R] in [-1, 1], z [z_dim] float32)``, and
    the pair's renderer attributes ``[A]`` (``labels.csv``) third when ``with_attributes``.

    Args:
        root: a folder holding ``latents.npy`` (float32 ``[N, z_dim]``) and ``{i:07d}.png`` for each row used.
        resolution: side of the returned images.
        check: how image files are checked up front (see :class:`ImageFolderDataset`).
        with_attributes: also read ``labels.csv`` and return each pair's attribute row (``self.attributes``).

    Images are never flipped: a flipped image is no longer the picture of its latent.
    """

    def __init__(self, root: PathLike, resolution: int, check: str = "header", with_attributes: bool = False):
        self.root = Path(root)
        path = self.root / LATENTS_FILE
        if not path.is_file():
            raise DatasetError(f"{os.fspath(root)}: no {LATENTS_FILE}; a pairs folder is written by "
                               f"'hyperinverter data portraits --latents Z_DIM'")
        try:
            latents = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as e:
            raise DatasetError(f"{path}: not a readable .npy array ({e})") from None
        if latents.ndim != 2 or latents.dtype != np.float32:
            raise DatasetError(f"{path}: expected float32 [N, z_dim], got {latents.dtype} {list(latents.shape)}")
        self.images = ImageFolderDataset(root, resolution, hflip=False, check=check)
        rows = []
        for p in self.images.paths:
            if not (p.stem.isdigit() and p.parent == self.root and int(p.stem) < latents.shape[0]):
                raise DatasetError(f"{p}: not a {{row:07d}} image of {path} ({latents.shape[0]} rows)")
            rows.append(int(p.stem))
        self.latents = torch.from_numpy(np.ascontiguousarray(latents[rows]))
        self.resolution = resolution
        self.z_dim = int(latents.shape[1])
        self.attributes = (torch.from_numpy(read_pair_labels(self.root, self.images.paths)) if with_attributes
                           else None)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key) -> Tuple[torch.Tensor, ...]:
        index = key[0] if isinstance(key, tuple) else key
        if self.attributes is not None:
            return self.images[key], self.latents[index], self.attributes[index]
        return self.images[key], self.latents[index]

    def describe(self) -> str:
        return f"LatentPairsDataset: {len(self)} (z[{self.z_dim}], image) pairs; " + self.images.describe()
