"""A synthetic test clip: a procedural portrait moving and scaling slightly over a textured background.

Used by the tests and ``benchmarks/bench_video.py``: the portrait's placement in every frame is known, so
masks of its parts (rendered with :func:`~hyperinverter.portraits.render_portrait` and placed the
same way) say where an edit must act and where the frame must stay as it was.
"""

from __future__ import annotations

import math
from typing import Iterator, Optional, Tuple

import numpy as np
from PIL import Image

from ..portraits import PortraitAttributes, render_portrait, sample_attributes

Placement = Tuple[int, int, int]  # (left, top, side) of the portrait in the frame


def background(width: int, height: int) -> np.ndarray:
    """A colourful uint8 ``[height, width, 3]`` background (gradients and stripes: detail a codec keeps)."""
    yy, xx = np.mgrid[:height, :width].astype(np.float64)
    return np.stack([60 + 100 * xx / max(width, 1), 80 + 60 * yy / max(height, 1),
                     140 + 40 * np.sin(xx / 5.0)], axis=-1).astype(np.uint8)


def placements(frames: int, width: int, height: int, side: int, shift: float = 3.0,
               scale: float = 0.05) -> list:
    """Per frame ``(left, top, side)``: the portrait's centre circles up to ``shift`` pixels around the frame's
    centre and its side swings by up to ``scale`` (a fraction), once over the clip."""
    out = []
    for t in range(frames):
        phase = 2 * math.pi * t / max(frames, 1)
        s = max(8, round(side * (1 + scale * math.sin(phase))))
        cx = width / 2 + shift * math.sin(1.3 * phase)
        cy = height / 2 + shift * 0.7 * math.cos(phase)
        out.append((round(cx - s / 2), round(cy - s / 2), s))
    return out


def place(image: Image.Image, placement: Placement, canvas: np.ndarray) -> np.ndarray:
    """``image`` resized to the placement's side and pasted onto a copy of ``canvas`` (uint8 ``[H, W, C]``)."""
    left, top, side = placement
    out = Image.fromarray(canvas.copy())
    out.paste(image.resize((side, side), Image.Resampling.LANCZOS), (left, top))
    return np.asarray(out)


def portrait_clip(frames: int = 24, width: int = 112, height: int = 80, side: int = 74, seed: int = 3,
                  attrs: Optional[PortraitAttributes] = None, shift: float = 3.0,
                  scale: float = 0.05) -> Iterator[Tuple[np.ndarray, Placement]]:
    """The clip's frames (uint8 ``[height, width, 3]``) with the portrait's placement in each.

    Args:
        frames: number of frames.
        width, height: frame size.
        side: the portrait's side in pixels (before the scaling swing).
        seed: which portrait (:func:`~hyperinverter.portraits.sample_attributes`), unless ``attrs``.
        attrs: the portrait's attributes.
        shift, scale: the motion (see :func:`placements`).
    """
    attrs = attrs if attrs is not None else sample_attributes(seed)
    portrait = render_portrait(attrs, size=max(64, 2 * side))
    canvas = background(width, height)
    for placement in placements(frames, width, height, side, shift, scale):
        yield place(portrait, placement, canvas), placement


__all__ = ["background", "place", "placements", "portrait_clip"]
