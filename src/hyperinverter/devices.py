"""The one place a ``--device`` / ``run.device`` name becomes a ``torch.device``.

The command line, the web page, inference under ``torchrun`` and the trainers all call
:func:`choose_device`, so ``auto``, ``cuda`` and a process's GPU mean the same thing everywhere.
"""

from __future__ import annotations

from typing import Optional

import torch

from .errors import HyperInverterError


class DeviceError(HyperInverterError, ValueError):
    """A device that this machine does not have (one line, no traceback on the command line)."""


def choose_device(name: str = "auto", local_rank: Optional[int] = None) -> torch.device:
    """The device for ``name``.

    Args:
        name: ``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N`` (any ``torch.device``
            string). An explicit index is used as given.
        local_rank: under ``torchrun``, this process's ``LOCAL_RANK``: ``auto`` and ``cuda`` then mean GPU
            ``local_rank`` of this node (one process per GPU). None: a single process (GPU 0 / the current one).
    Raises:
        DeviceError: CUDA asked for but not available, or a ``local_rank`` beyond this node's GPUs.
    """
    if not isinstance(name, str) or not name:
        raise DeviceError(f"device must be a name such as auto, cpu, cuda or cuda:1, got {name!r}"[:200])
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise DeviceError(f"--device {name[:80]!r}: not a device name (use auto, cpu, cuda or cuda:1)") from None
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise DeviceError(f"--device {name}: CUDA is not available on this machine")
    if device.index is None:
        index = local_rank if local_rank is not None else 0
        if index >= torch.cuda.device_count():
            raise DeviceError(f"process with LOCAL_RANK {index} but this node has {torch.cuda.device_count()} GPU(s); "
                              f"start at most that many processes per node")
        device = torch.device("cuda", index)
    elif device.index >= torch.cuda.device_count():
        raise DeviceError(f"--device {name}: this machine has {torch.cuda.device_count()} GPU(s)")
    torch.cuda.set_device(device)
    return device
