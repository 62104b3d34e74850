"""A folder of images as a training dataset: ``[3, R, R]`` float32 tensors in [-1, 1].

:class:`ImageFolderDataset` lists the image files under a folder (recursively), checks them once at
construction, and loads them one at a time through :func:`hyperinverter.utils.image_io.load_image`
(same mode conversions, EXIF rotation and antialiased bilinear resize as for inversion inputs).

Checking at construction (``check=``):

* ``"header"`` (default): reads each file's header (:func:`~hyperinverter.utils.image_io.read_image_size`, no
  pixel decode) with the same size limits as ``load_image`` (``min_size``, ``max_pixels``). Fast; catches
  non-images, empty files, corrupt headers, too small / too large images. Truncated pixel data is only found
  when loading.
* ``"full"``: also decodes every image with ``load_image``. Slow; meant for small data sets.
* ``"none"``: no check (and no notice about non-square images).

Unreadable files are excluded and reported once, in a single warning on the ``hyperinverter`` logger
(this module's logger ``hyperinverter.data.folder`` propagates to it) naming up to 10 of them and the
count. Images that are not square are resized to ``R x R`` anyway (changing their aspect ratio); one
warning at construction says how many (from the header check, without decoding).

Horizontal flips (``hflip=True``) are drawn per ``(seed, epoch, index)`` from a private
``torch.Generator``, never from the global RNG, so a resumed run and every DataLoader worker layout give
the same flips. The epoch comes either from :meth:`ImageFolderDataset.set_epoch` or, better, with each
index: ``dataset[(index, epoch)]`` (what ``ResumableSampler(..., yield_epoch=True)`` produces). Prefer the
second form with DataLoader workers: a worker holds its own copy of the dataset, made when the DataLoader
iterator starts (every ``iter(loader)`` without ``persistent_workers``, only once with them), so a
``set_epoch`` call in the main process does not reach workers that are already running, and an infinite
sampler keeps a single iterator across epochs.

Errors while training: if a file becomes unreadable after construction, ``__getitem__`` raises
:class:`DatasetImageError` (an :class:`~hyperinverter.utils.image_io.ImageLoadError`) whose message starts
with the path; ``err.path`` holds it. The trainer is expected to report it and stop (or skip the batch).
Raised in a DataLoader worker, it still arrives in the main process as a ``DatasetImageError`` with
``path`` and ``reason`` (PyTorch re-creates worker exceptions from a single message, which plain
``ImageLoadError`` cannot take; it would arrive as a ``RuntimeError``); ``err.worker_traceback`` then
holds the worker's traceback.
"""

from __future__ import annotations

import logging
import operator
import os
import re
from pathlib import Path
from typing import List, Optional, Tuple, Union

import torch

from ..errors import HyperInverterError
from ..utils.image_io import (
    DEFAULT_MAX_PIXELS,
    DEFAULT_MIN_SIZE,
    IMAGE_EXTENSIONS,
    ImageLoadError,
    load_image,
    read_image_size,
)

log = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

#: How many unreadable files the summary warning names.
MAX_LISTED = 10
_CHECKS = ("header", "full", "none")
_MASK64 = (1 << 64) - 1


class DatasetError(HyperInverterError, ValueError):
    """A dataset folder is missing, not a folder, holds no images, or holds no readable image."""


class DatasetImageError(ImageLoadError):
    """An image of a dataset could not be loaded during training (raised by ``__getitem__``).

    ``str(err)`` is ``"<path>: <reason>"`` as for :class:`ImageLoadError`. Also constructible from the
    single message PyTorch's DataLoader builds when it re-raises a worker's exception in the main process
    (``"Caught DatasetImageError in DataLoader worker process N.\\nOriginal Traceback ..."``): ``path`` and
    ``reason`` are then parsed from the traceback's last line (the path is the text before the first
    ``": "``), and the full worker traceback is kept in ``worker_traceback``.
    """

    worker_traceback: Optional[str] = None

    def __init__(self, path: PathLike, reason: Optional[str] = None):
        if reason is not None:
            super().__init__(path, reason)
            return
        message = str(path)
        first = message.split("\n", 1)[0]
        where = re.match(r"Caught \w+ (.*?)\.?$", first)
        last = next((ln for ln in reversed(message.splitlines()) if ln.strip()), "")
        m = re.match(r"^\S*DatasetImageError: (.*)$", last)
        body = m.group(1) if m else last
        p, sep, r = body.partition(": ")
        if not sep:
            p, r = "<unknown path>", body
        if where:
            r = f"{r} ({where.group(1)})"
        super().__init__(p, r)
        self.worker_traceback = message


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def flip_seed(seed: int, epoch: int, index: int) -> int:
    """The ``torch.Generator`` seed for the flip of ``index`` in ``epoch``: a hash of the three numbers.

    (A plain sum ``seed + epoch + index`` would give image i in epoch e the flip of image i + 1 in
    epoch e - 1.) Returns a value in ``[0, 2**63)``.
    """
    h = 0
    for v in (seed, epoch, index):
        h = _splitmix64(h ^ (int(v) & _MASK64))
    return h >> 1


def _list_images(root: Path) -> Tuple[List[Path], List[Tuple[Path, str]]]:
    """Image files under ``root``, recursively, sorted by their path parts; plus unlistable sub-folders.

    Hidden files and folders (``.*``) are left out; symlinked files are kept, symlinked folders are not
    followed. Extensions are those of :data:`IMAGE_EXTENSIONS`, any case.
    """
    found: List[Tuple[Tuple[str, ...], Path]] = []
    problems: List[Tuple[Path, str]] = []

    def onerror(e: OSError) -> None:
        problems.append((Path(e.filename or root), f"cannot list the folder: {e.strerror or e}"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=onerror):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.startswith(".") or os.path.splitext(name)[1].lower() not in IMAGE_EXTENSIONS:
                continue
            p = Path(dirpath) / name
            if p.is_file():
                found.append((p.relative_to(root).parts, p))
    found.sort(key=lambda t: t[0])
    return [p for _, p in found], problems


class ImageFolderDataset(torch.utils.data.Dataset):
    """Images under a folder (recursively) as float32 ``[3, R, R]`` tensors in [-1, 1].

    Args:
        root: the folder. Sub-folders are searched; hidden files/folders are ignored.
        resolution: side ``R`` of the square output; every image is resized to ``R x R``.
        hflip: flip horizontally with probability 0.5, deterministically per (seed, epoch, index).
        check: "header" (default), "full" or "none"; see the module documentation.
        max_images: keep only the first ``max_images`` readable images in sorted order (None: all).
        seed: seed of the flips (the ``seed`` attribute; may be changed before a run starts).
        resample, max_pixels, min_size: passed to :func:`load_image`.

    Attributes:
        paths: the image files used, sorted. ``skipped``: ``(path, message)`` of each excluded file.
        num_not_square: how many used images are not square (None with ``check="none"``).
        epoch: the epoch used for flips when an index comes without one (see :meth:`set_epoch`).

    Raises:
        DatasetError: ``root`` is missing or not a folder, holds no image files, or none is readable.
    """

    def __init__(
        self,
        root: PathLike,
        resolution: int,
        hflip: bool = False,
        check: str = "header",
        max_images: Optional[int] = None,
        *,
        seed: int = 0,
        resample="bilinear",
        max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
        min_size: int = DEFAULT_MIN_SIZE,
    ):
        if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
            raise ValueError(f"resolution must be a positive int, got {resolution!r}")
        if check not in _CHECKS:
            raise ValueError(f"check must be one of {_CHECKS}, got {check!r}")
        if max_images is not None and (isinstance(max_images, bool) or not isinstance(max_images, int)
                                       or max_images < 1):
            raise ValueError(f"max_images must be a positive int or None, got {max_images!r}")
        self.root = Path(root)
        self.resolution = resolution
        self.hflip = bool(hflip)
        self.check = check
        self.max_images = max_images
        self.seed = int(seed)
        self.epoch = 0
        self.resample = resample
        self.max_pixels = max_pixels
        self.min_size = min_size

        if not self.root.exists():
            raise DatasetError(f"{os.fspath(root)}: dataset folder not found")
        if not self.root.is_dir():
            raise DatasetError(f"{os.fspath(root)}: is not a folder (the dataset must be a folder of images)")
        try:
            os.listdir(self.root)
        except OSError as e:
            raise DatasetError(f"{os.fspath(root)}: cannot list the dataset folder: {e}") from e

        candidates, self.skipped = _list_images(self.root)
        if not candidates:
            raise DatasetError(
                f"{os.fspath(root)}: the dataset folder contains no image files "
                f"(searched sub-folders for {', '.join(IMAGE_EXTENSIONS)})"
            )

        self.paths: List[Path] = []
        self.num_not_square: Optional[int] = None if check == "none" else 0
        for p in candidates:
            if max_images is not None and len(self.paths) >= max_images:
                break
            if check != "none":
                try:
                    w, h = read_image_size(p, max_pixels=max_pixels, min_size=min_size)
                    if check == "full":
                        load_image(p, resolution, resample=resample, max_pixels=max_pixels, min_size=min_size)
                except ImageLoadError as e:
                    self.skipped.append((p, str(e)))
                    continue
                if w != h:
                    self.num_not_square += 1
            self.paths.append(p)

        if self.skipped:
            listed = "\n".join(f"  {msg}" for _, msg in self.skipped[:MAX_LISTED])
            more = len(self.skipped) - MAX_LISTED
            log.warning(
                "%s: skipped %d unreadable image file(s)%s:\n%s%s",
                os.fspath(root), len(self.skipped),
                f" (the first {MAX_LISTED} are listed)" if more > 0 else "",
                listed, f"\n  ... and {more} more" if more > 0 else "",
            )
        if not self.paths:
            raise DatasetError(
                f"{os.fspath(root)}: none of the {len(candidates)} image files in the dataset folder is readable "
                f"(first problem: {self.skipped[0][1]})"
            )
        if self.num_not_square:
            log.warning(
                "%s: %d images are not square; they are resized to %dx%d, changing their aspect ratio",
                os.fspath(root), self.num_not_square, resolution, resolution,
            )

    def __len__(self) -> int:
        return len(self.paths)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch used for flips of indices given without one (``dataset[i]``).

        Independent of the sampler: the trainer passes the epoch it is in (e.g. ``sampler.epoch``).
        Does not reach DataLoader workers that are already running; see the module documentation.
        """
        self.epoch = operator.index(epoch)

    def flipped(self, index: int, epoch: Optional[int] = None) -> bool:
        """Whether ``self[(index, epoch)]`` is flipped (always False without ``hflip``)."""
        if not self.hflip:
            return False
        g = torch.Generator().manual_seed(flip_seed(self.seed, self.epoch if epoch is None else epoch, index))
        return bool(torch.rand((), generator=g) < 0.5)

    def __getitem__(self, key) -> torch.Tensor:
        """``dataset[i]`` (flips from :attr:`epoch`) or ``dataset[(i, epoch)]`` -> float32 ``[3, R, R]``.

        Raises:
            DatasetImageError: the file can no longer be read (message starts with its path).
            IndexError: index out of range.
        """
        if isinstance(key, tuple):
            if len(key) != 2:
                raise TypeError(f"expected an index or (index, epoch), got {key!r}")
            index, epoch = operator.index(key[0]), operator.index(key[1])
        else:
            index, epoch = operator.index(key), self.epoch
        n = len(self.paths)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} images")
        index %= n
        path = self.paths[index]
        try:
            x, _ = load_image(
                path, self.resolution, resample=self.resample, max_pixels=self.max_pixels, min_size=self.min_size
            )
        except ImageLoadError as e:
            raise DatasetImageError(path, f"{e.reason} (dataset image {index})") from e
        if self.flipped(index, epoch):
            x = x.flip(-1)
        return x

    def describe(self) -> str:
        """One line: image count, resolution, flips, check mode, skipped and non-square counts."""
        parts = [
            f"{len(self.paths)} images from {os.fspath(self.root)} at {self.resolution}x{self.resolution}",
            f"hflip {'on (seed ' + str(self.seed) + ')' if self.hflip else 'off'}",
            f"check={self.check}",
            f"{len(self.skipped)} unreadable skipped",
        ]
        if self.num_not_square:
            parts.append(f"{self.num_not_square} not square (aspect ratio changed)")
        if self.max_images is not None:
            parts.append(f"max_images={self.max_images}")
        return "ImageFolderDataset: " + ", ".join(parts)

    def __repr__(self) -> str:
        return f"<{self.describe()}>"
