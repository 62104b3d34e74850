"""Training checkpoints: atomic writes, full state (models, optimisers, RNG, data position), checked resume."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ..errors import CheckpointError
from ..utils.outputs import atomic_write


def rng_state() -> dict:
    """Python, numpy, torch (and CUDA) generator states, in a form ``torch.load(weights_only=True)`` reads."""
    np_state = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()),
                                                    int(np_state[2]), int(np_state[3]), float(np_state[4])],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def write_checkpoint(obj: Any, path: Path) -> Optional[str]:
    """``torch.save`` to a temporary file beside ``path``, flush it to the disk, then rename it over ``path``.

    Returns None when written, else one line saying what failed (a full disk, an unwritable folder, ...);
    any previous ``path`` is then intact and no temporary file is left behind. ``torch.save`` reports a
    short write as ``RuntimeError`` (not ``OSError``): both are caught, and so is a folder that cannot be
    created.
    """
    try:
        atomic_write(path, lambda tmp: torch.save(obj, tmp), fsync=True)
        return None
    except (OSError, RuntimeError) as e:
        if isinstance(e, OSError):
            reason = e.strerror or type(e).__name__
            where = e.filename or path
            return f"{where}: {reason}"
        text = str(e).splitlines()[0] if str(e) else type(e).__name__
        return f"{path}: {text} (is the disk full?)"


def save_atomic(obj: Any, path: Path) -> bool:
    """:func:`write_checkpoint`, True when written."""
    return write_checkpoint(obj, path) is None


def peek_step(path: Path) -> Optional[int]:
    """The step recorded in a training checkpoint, read without loading its tensors (None if unreadable)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return int(state["step"])
    except Exception:  # noqa: BLE001 - any unreadable file
        return None


def load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint to resume from")
    from ..utils.safe_load import load_error_reason

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - corrupt or foreign file
        raise CheckpointError(f"{path}: unreadable training checkpoint ({load_error_reason(e)})") from None


def check_same_architecture(saved: dict, current: dict, path: Path) -> None:
    """Refuse to resume from a checkpoint of another model configuration (names the differing fields)."""
    diffs = [f"{k}: checkpoint {saved.get(k)!r} vs now {current.get(k)!r}"
             for k in sorted(set(saved) | set(current)) if saved.get(k) != current.get(k)]
    if diffs:
        raise CheckpointError(f"{path}: written by a run with another configuration; cannot resume:\n  "
                              + "\n  ".join(diffs[:8]))
