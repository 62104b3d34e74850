"""The frame-stream core of ``hyperinverter video``: frames in, edited frames out, in order.

Per frame: the landmark source finds the faces, the :class:`~.tracking.FaceTracker` keeps one and gives its
smoothed crop, the crop is cut out at the model's resolution (:func:`hyperinverter.faces.warp_face`).
Crops are inverted in batches (``w`` and Δθ); optionally the codes are smoothed over time with a centred
Gaussian (``smooth`` frames; the frames of one uninterrupted stretch of the face only, so no code is mixed
across a cut or a gap); ``w`` is moved along the direction with Δθ kept (:meth:`HyperInverter.edit`) and
the edited crop is pasted back with a feathered border (:func:`hyperinverter.faces.paste_back`). Frames
without the face come out unchanged.

Memory is bounded: at most about ``2 * batch_size + radius`` frames are held at once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np
import torch
from PIL import Image

from ..faces.align import warp_face
from ..faces.errors import FaceError
from ..faces.paste import DEFAULT_FEATHER, paste_back
from ..inverter import InversionResult
from ..utils.images import to_uint8
from .codes import Factors, FrameCodes, blend, gaussian_radius
from .tracking import FaceTracker, LandmarkSource


@dataclass
class EditedFrame:
    """One output frame.

    Attributes:
        index: the frame's number in the video (0-based).
        image: the output frame, uint8 ``[H, W, 3]`` (the input itself when there was no face).
        source: the input frame, uint8 ``[H, W, 3]``.
        quad: the crop ``[4, 2]`` that was edited, or None when the frame had no (tracked) face.
    """

    index: int
    image: np.ndarray
    source: np.ndarray
    quad: Optional[np.ndarray]

    @property
    def has_face(self) -> bool:
        return self.quad is not None


@dataclass
class _Item:
    index: int
    frame: np.ndarray
    quad: Optional[np.ndarray]
    crop: Optional[np.ndarray]
    run: Optional[int]  # the uninterrupted stretch of face frames this frame belongs to (None: no face)
    state: dict  # the per-frame sequential state after this frame (tracker, runs)
    codes: Optional[FrameCodes] = None


class FaceVideoEditor:
    """Edit one face through a stream of frames (see the module docstring).

    Args:
        model: a :class:`~hyperinverter.HyperInverter` (its device is used).
        direction: the edit direction, ``[w_dim]`` or ``[num_ws, w_dim]``.
        step: how far ``w`` moves along ``direction`` (``Direction.step(strength)``).
        source: the landmark source (:class:`~.tracking.DlibLandmarks`, :class:`~.tracking.FixedCrop`, or
            any callable ``frame -> list[FaceObservation]``).
        fps: the video's frame rate (the tracker's filter works in seconds).
        tracker: the :class:`~.tracking.FaceTracker` (default: a new one, largest face).
        layers: rows of ``ws`` to move (None: all); see :meth:`HyperInverter.edit`.
        smooth: sigma in frames of the Gaussian over time applied to ``w`` and Δθ (0: off).
        feather: width of the pasted crop's soft border, as a fraction of its side.
        batch_size: frames per inversion and render batch.
    """

    def __init__(self, model, direction: torch.Tensor, step: float, source: LandmarkSource, fps: float,
                 tracker: Optional[FaceTracker] = None, layers=None, smooth: float = 0.0,
                 feather: float = DEFAULT_FEATHER, batch_size: int = 8):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"--batch-size must be a positive whole number, got {batch_size!r}")
        if not (isinstance(smooth, (int, float)) and 0 <= smooth <= 50):
            raise ValueError(f"--smooth must be a number of frames in [0, 50], got {smooth!r}")
        if not (isinstance(fps, (int, float)) and fps > 0):
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        self.model = model
        self.device = model.generator.w_avg.device
        self.direction = torch.as_tensor(direction, dtype=torch.float32, device=self.device)
        self.step = float(step)
        self.layers = layers
        self.source = source
        self.tracker = tracker if tracker is not None else FaceTracker()
        self.fps = float(fps)
        self.smooth = float(smooth)
        self.radius = gaussian_radius(self.smooth)
        self.feather = feather
        self.batch_size = batch_size
        self.factors = Factors()
        self.reset()

    # ------------------------------------------------------------------------------------- state
    def reset(self) -> None:
        """Start a new video."""
        self.tracker.reset()
        self._run = -1
        self._prev_face = False
        self._next_index = 0
        self._last_state: Optional[dict] = None
        self._history: Deque[Tuple[int, int, FrameCodes]] = deque(maxlen=max(self.radius, 1))

    def _snapshot(self) -> dict:
        return {"tracker": self.tracker.state_dict(), "run": self._run, "prev_face": self._prev_face}

    def state_dict(self) -> Tuple[dict, Dict[str, torch.Tensor]]:
        """What a resumed run needs after the last frame that came out: a JSON-ready dict and tensors (the
        codes of the last ``radius`` face frames, for the smoothing)."""
        history = [[index, run] for index, run, _ in self._history] if self.radius else []
        tensors = {}
        for index, _, codes in (self._history if self.radius else []):
            tensors.update(codes.to_tensors(f"frame{index}."))
        return {"next_index": self._next_index, "sequential": self._last_state, "history": history}, tensors

    def load_state_dict(self, state: dict, tensors: Dict[str, torch.Tensor]) -> None:
        """Continue after the frame :meth:`state_dict` was taken at (the next frame given to :meth:`run`
        must be frame ``state["next_index"]``)."""
        self.reset()
        seq = state["sequential"]
        if seq is not None:
            self.tracker.load_state_dict(seq["tracker"])
            self._run, self._prev_face = int(seq["run"]), bool(seq["prev_face"])
        self._last_state = seq
        self._next_index = int(state["next_index"])
        if self.radius:
            for index, run in state["history"]:
                self._history.append((int(index), int(run),
                                      FrameCodes.from_tensors(tensors, f"frame{index}.", self.device)))

    # -------------------------------------------------------------------------------------- stream
    def run(self, frames: Iterable[np.ndarray]) -> Iterator[EditedFrame]:
        """Edit ``frames`` (uint8 ``[H, W, 3]``, numbered from the state's ``next_index``, 0 after
        :meth:`reset`); yields one :class:`EditedFrame` per frame, in order."""
        pending: List[_Item] = []
        fresh = 0
        index = self._next_index
        for frame in frames:
            frame = np.asarray(frame)
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise ValueError(f"frames must be uint8 [H, W, 3] arrays, got {frame.dtype} {list(frame.shape)}")
            pending.append(self._observe(index, frame))
            index += 1
            fresh += 1
            if fresh >= self.batch_size:
                fresh = 0
                self._encode(pending)
                yield from self._emit(pending, final=False)
        self._encode(pending)
        yield from self._emit(pending, final=True)

    def _observe(self, index: int, frame: np.ndarray) -> _Item:
        quad = self.tracker.update(self.source(frame), index / self.fps)
        crop = None
        if quad is not None:
            try:
                crop = np.asarray(warp_face(Image.fromarray(frame), quad, self.model.resolution))
            except FaceError:  # the crop lies outside the frame
                quad = None
        if quad is None:
            self._prev_face, run = False, None
        else:
            if not self._prev_face:
                self._run += 1
            self._prev_face, run = True, self._run
        return _Item(index, frame, quad, crop, run, self._snapshot())

    @torch.inference_mode()
    def _encode(self, pending: List[_Item]) -> None:
        todo = [it for it in pending if it.quad is not None and it.codes is None]
        for start in range(0, len(todo), self.batch_size):
            part = todo[start:start + self.batch_size]
            x = torch.from_numpy(np.stack([it.crop for it in part])).to(self.device)
            x = x.permute(0, 3, 1, 2).float() / 127.5 - 1
            w = self.model.encode_w(x)
            ws = w.unsqueeze(1).repeat(1, self.model.num_ws, 1)
            image_w = self.model.render(ws)
            deltas = self.model.predict_deltas(x, image_w, ws)
            for it, codes in zip(part, self.factors.split(ws, deltas)):
                it.codes, it.crop = codes, None

    def _ready(self, pending: List[_Item], final: bool) -> int:
        """How many items at the head of ``pending`` can be finished (their smoothing window is known)."""
        if final:
            return len(pending)
        last = pending[-1].index if pending else -1
        count = 0
        for k, it in enumerate(pending):
            if it.quad is not None:
                if it.codes is None:
                    break
                if it.index + self.radius > last and all(later.run == it.run for later in pending[k + 1:]):
                    break
            count += 1
        return count

    def _smoothed(self, item: _Item, table: Dict[int, Tuple[Optional[int], FrameCodes]]) -> FrameCodes:
        if not self.radius:
            return item.codes
        offsets, codes = [], []
        for k in range(-self.radius, self.radius + 1):
            entry = table.get(item.index + k)
            if entry is not None and entry[0] == item.run:
                offsets.append(k)
                codes.append(entry[1])
        return blend(codes, offsets, self.smooth)

    def _emit(self, pending: List[_Item], final: bool) -> Iterator[EditedFrame]:
        n = self._ready(pending, final)
        if n == 0:
            return
        items = pending[:n]
        table = {i: (r, c) for i, r, c in self._history}
        table.update({it.index: (it.run, it.codes) for it in pending if it.codes is not None})
        faces = [it for it in items if it.quad is not None]
        edited: Dict[int, np.ndarray] = {}
        for start in range(0, len(faces), self.batch_size):
            part = faces[start:start + self.batch_size]
            ws, deltas = self.factors.residuals([self._smoothed(it, table) for it in part])
            result = InversionResult(w=ws[:, 0], ws=ws, deltas=deltas)
            images = to_uint8(self.model.edit(result, self.direction, self.step, layers=self.layers,
                                              batch_size=self.batch_size).image)
            for it, image in zip(part, images):
                pasted = paste_back(Image.fromarray(image), Image.fromarray(it.frame), it.quad, feather=self.feather)
                edited[it.index] = np.asarray(pasted)
        del pending[:n]
        for it in items:
            if it.quad is not None and self.radius:
                self._history.append((it.index, it.run, it.codes))
            self._last_state = it.state
            self._next_index = it.index + 1
            yield EditedFrame(it.index, edited.get(it.index, it.frame), it.frame, it.quad)


__all__ = ["EditedFrame", "FaceVideoEditor"]
