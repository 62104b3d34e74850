"""The one weights-only ``torch.load``: our messages instead of torch's (which suggest ``weights_only=False``,
the one setting that would run code stored in the file)."""

from __future__ import annotations

import io
import os
import pickle
import re
import zipfile
from typing import Any, Optional, Sequence, Union

import torch

from ..errors import CheckpointError, UnsafePickleError

PathLike = Union[str, os.PathLike]

_ADVICE = re.compile(r"weights_only|trusted source|file an issue|Check the documentation|pytorch\.org", re.I)


def load_error_reason(e: BaseException) -> str:
    """One line saying why a weights-only load failed, without torch's advice to turn the check off."""
    text = str(e)
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\s*\n|Check the documentation|$)", text, re.S)
    if found:
        reason = " ".join(found.group(1).split())
    else:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not _ADVICE.search(ln)]
        reason = lines[0] if lines else type(e).__name__
    reason = re.sub(r"\s*Please file an issue.*$", "", reason)
    return reason[:300] + ("..." if len(reason) > 300 else "")


def weights_only_load(path: PathLike, data: Optional[bytes] = None, *, what: str = "torch file",
                      safe_globals: Sequence[Any] = (), mmap: bool = False) -> Any:
    """``torch.load(weights_only=True)`` on ``path`` (or on ``data``, its bytes), on the CPU.

    Raises:
        UnsafePickleError: the file asks for a global outside torch's weights-only allow-list (named).
        CheckpointError: anything else (truncated, corrupt, not a torch file), one line naming ``path``.
    """
    source = io.BytesIO(data) if data is not None else path
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            return torch.load(source, map_location="cpu", weights_only=True, mmap=mmap and data is None)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if found:
            raise UnsafePickleError(f"{os.fspath(path)}: the file asks for the global '{found.group(1)}', which is "
                                    "not allowed for weights; refusing to load it (nothing was executed)") from None
        raise CheckpointError(f"{os.fspath(path)}: not a {what} this package reads: {load_error_reason(e)} "
                              "(refused without running anything from it)") from None
    except (RuntimeError, EOFError, ValueError, TypeError, AttributeError, KeyError, IndexError, zipfile.BadZipFile,
            OSError, RecursionError, MemoryError, OverflowError) as e:
        raise CheckpointError(f"{os.fspath(path)}: truncated or corrupt {what} ({load_error_reason(e)})") from None


__all__ = ["load_error_reason", "weights_only_load"]
