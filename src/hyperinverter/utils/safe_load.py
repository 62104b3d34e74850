"""The one weights-only ``torch.load``: our messages instead of torch's (which suggest ``weights_only=False``,
the one setting that would run code stored in the file), and sizes checked before torch allocates them.

Before ``torch.load`` runs, the file's pickle is walked without running it
(:func:`~hyperinverter.utils.limits.check_pickle_expansion`) and every storage it declares is compared with
the bytes the file carries for it (a zip record, or what follows a legacy file's pickles): torch allocates
a storage at its declared size before reading it, so a 7 KB file could otherwise ask for 16 GiB. After it,
every tensor returned must lie inside its storage (:func:`~hyperinverter.utils.limits.check_loaded_tensors`).
"""

from __future__ import annotations

import io
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import torch

from ..errors import CheckpointError, DeclaredSizeError, UnsafePickleError
from .limits import check_loaded_tensors, check_pickle_expansion, exception_text, storage_element_size

PathLike = Union[str, os.PathLike]

_ADVICE = re.compile(r"weights_only|trusted source|file an issue|Check the documentation|pytorch\.org", re.I)


def load_error_reason(e: BaseException) -> str:
    """One line saying why a weights-only load failed, without torch's advice to turn the check off."""
    parts = [a[:8000] for a in e.args if isinstance(a, str)] if not isinstance(e, OSError) else []
    text = "\n".join(parts) if parts else exception_text(e, 2000)  # never the repr of a value from the file
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
        DeclaredSizeError: a storage or tensor declares more than the file holds, or the pickle expands
            without end (checked before torch allocates; see :func:`check_declared_storages`).
        CheckpointError: anything else (truncated, corrupt, not a torch file), one line naming ``path``.
    """
    label = os.fspath(path)
    if data is None and _is_legacy(path):
        data = Path(path).read_bytes()  # torch reads a legacy file whole anyway (it cannot mmap one)
    check_declared_storages(label, data if data is not None else path)
    source = io.BytesIO(data) if data is not None else path
    try:
        with torch.serialization.safe_globals(list(safe_globals)):
            obj = torch.load(source, map_location="cpu", weights_only=True, mmap=mmap and data is None)
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
    check_loaded_tensors(obj, label)
    return obj


#: Uncompressed bytes a torch zip file may hold beyond twice its own size (torch writes records uncompressed;
#: a deflated record of zeros would otherwise expand a thousandfold into memory).
_ZIP_SLACK = 64 << 20


def _is_legacy(path: PathLike) -> bool:
    """True for a file that is not a zip (torch.save's legacy format, or not a torch file at all)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(4) != b"PK\x03\x04"
    except OSError:
        return False  # torch.load reports it


def check_declared_storages(label: str, source: Union[bytes, PathLike]) -> None:
    """Refuse a torch file whose pickle expands without end or whose storages declare more bytes than the
    file holds for them, before ``torch.load`` allocates anything (``source``: the file's bytes or its path).

    Raises:
        DeclaredSizeError: naming ``label``, the storage and both sizes. A file this cannot parse is left
            to ``torch.load``, which reports it.
    """
    is_bytes = isinstance(source, (bytes, bytearray))
    head = bytes(source[:4]) if is_bytes else b""
    if not is_bytes:
        try:
            with open(source, "rb") as fh:
                head = fh.read(4)
        except OSError:
            return
    if head == b"PK\x03\x04":
        _check_zip(label, io.BytesIO(source) if is_bytes else source)
    elif is_bytes:
        _check_legacy(label, bytes(source))


def _check_zip(label: str, source: Any) -> None:
    try:
        archive = zipfile.ZipFile(source)
    except (zipfile.BadZipFile, OSError, ValueError):
        return  # torch.load says why
    with archive:
        infos = archive.infolist()
        size = source.getbuffer().nbytes if isinstance(source, io.BytesIO) else os.path.getsize(source)
        unpacked = sum(i.file_size for i in infos)
        if unpacked > 2 * size + _ZIP_SLACK:
            raise DeclaredSizeError(f"{label}: its records unpack to {unpacked:,} bytes from a {size:,}-byte file "
                                    "(a compression bomb); refusing it before reading")
        pickles = [i for i in infos if i.filename == "data.pkl" or i.filename.endswith("/data.pkl")]
        if len(pickles) != 1:
            return
        prefix = pickles[0].filename[: -len("data.pkl")]
        records = {i.filename[len(prefix) + len("data/"):]: i.file_size for i in infos
                   if i.filename.startswith(prefix + "data/")}
        try:
            scan = check_pickle_expansion(archive.read(pickles[0]), f"{label}[data.pkl]")
        except DeclaredSizeError:
            raise
        except (CheckpointError, zipfile.BadZipFile, OSError, ValueError, EOFError):
            return  # torch.load says why
    for type_name, key, numel in scan.storages:
        declared = numel * storage_element_size(type_name)
        held = records.get(key, 0)
        if declared > held:
            raise DeclaredSizeError(f"{label}: storage {key!s:.40} declares {declared:,} bytes but its record holds "
                                    f"{held:,}; refusing it before allocating")


def _check_legacy(label: str, data: bytes) -> None:
    """Legacy torch.save: pickles of the magic number, protocol, system info, the object and the storage keys,
    then each storage as an 8-byte element count and its bytes."""
    try:
        pos = 0
        for _ in range(3):
            pos = check_pickle_expansion(data, label, pos).end
        scan = check_pickle_expansion(data, label, pos)
        keys_end = check_pickle_expansion(data, label, scan.end).end
    except DeclaredSizeError:
        raise
    except CheckpointError:
        return  # not a legacy torch file: torch.load says why
    declared: dict[str, int] = {}
    for type_name, key, numel in scan.storages:
        declared[key] = max(declared.get(key, 0), numel * storage_element_size(type_name) + 8)
    held = len(data) - keys_end
    if sum(declared.values()) > held:
        raise DeclaredSizeError(f"{label}: its storages declare {sum(declared.values()):,} bytes but the file holds "
                                f"{max(held, 0):,} after its pickles; refusing it before allocating")


__all__ = ["check_declared_storages", "load_error_reason", "weights_only_load"]
