"""Writing outputs without losing data: the one atomic writer and output naming that never overwrites.

Every command that writes files goes through here:

* :func:`atomic_write` writes through a temporary file beside the target (``.<name>.<random>.tmp``) and
  renames it over the target, so that a crash, a full disk or an unwritable folder never leaves a
  half-written file under the real name; the temporary file is removed on any failure.
  :func:`clean_stale_temporaries` removes the temporaries a ``kill -9`` left behind.
* :class:`OutputPlan` collects every path a command is about to write *before* any work is done and
  refuses, in one message naming the files, when an output would replace one of the command's inputs,
  when two outputs would go to one path, or when an output exists already and ``overwrite`` is off.
* :func:`unique_output_names` turns input file names into output base names so that the derived file
  names (``<name>.png``, ``<name>_w.png``, ...) of two inputs never collide (``x.png`` and ``x_w.png``;
  ``a.jpg``, ``a.png`` and ``a_1.png``).
* :func:`check_writable` tries a folder before the work starts.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Sequence, Tuple, Union

from ..errors import HyperInverterError

PathLike = Union[str, os.PathLike]

#: How many file names an error message lists before it says "and N more".
_LIST_LIMIT = 8
_TMP_SUFFIX = ".tmp"


class OutputError(HyperInverterError, ValueError):
    """An output cannot be written where asked (a folder that is not writable, a path that is a folder)."""


class OutputConflictError(OutputError):
    """An output would replace an input, or two outputs would be written to the same path."""


class OutputExistsError(OutputError, FileExistsError):
    """Outputs exist already and ``overwrite`` was not given; ``err.paths`` lists them."""

    def __init__(self, message: str, paths: Sequence[Path] = ()):
        super().__init__(message)
        self.paths = list(paths)


def _listed(paths: Sequence[PathLike]) -> str:
    shown = ", ".join(os.fspath(p) for p in paths[:_LIST_LIMIT])
    return shown + (f" and {len(paths) - _LIST_LIMIT} more" if len(paths) > _LIST_LIMIT else "")


def _key(path: PathLike) -> str:
    """A comparison key: the absolute, symlink-resolved, case-normalised path."""
    return os.path.normcase(os.path.realpath(os.path.abspath(os.fspath(path))))


# ------------------------------------------------------------------------------------ atomic writes
def temporary_path(path: Path) -> Tuple[int, str]:
    """``mkstemp`` beside ``path`` with the prefix :func:`clean_stale_temporaries` recognises."""
    return tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=_TMP_SUFFIX)


def atomic_write(path: PathLike, write: Callable[[str], object], *, fsync: bool = False,
                 make_parents: bool = True) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    Any failure (``OSError`` from a full disk or an unwritable folder, the ``RuntimeError`` that
    ``torch.save`` raises on a short write, anything else) removes the temporary file, leaves an existing
    ``path`` untouched and propagates. ``fsync`` flushes the data to the disk before the rename.
    """
    path = Path(path)
    tmp: Optional[str] = None
    try:
        if make_parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = temporary_path(path)
        os.close(fd)
        write(tmp)
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
        return path
    finally:
        if tmp is not None:
            try:
                os.remove(tmp)
            except OSError:
                pass


def write_text_atomic(path: PathLike, text: str, *, newline: Optional[str] = None, fsync: bool = False) -> Path:
    """:func:`atomic_write` of ``text`` in UTF-8; ``newline`` as for ``open`` (``""``: line ends as they are in
    ``text``, e.g. for CSV)."""
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline=newline) as fh:
            fh.write(text)

    return atomic_write(path, write, fsync=fsync)


def write_bytes_atomic(path: PathLike, data: bytes, *, fsync: bool = False) -> Path:
    """:func:`atomic_write` of ``data``."""
    return atomic_write(path, lambda p: Path(p).write_bytes(data), fsync=fsync)


_STALE = re.compile(r"^\..+\.[A-Za-z0-9_]{6,}" + re.escape(_TMP_SUFFIX) + "$")


def clean_stale_temporaries(folder: PathLike, recursive: bool = False) -> List[Path]:
    """Remove the temporary files an interrupted :func:`atomic_write` left in ``folder`` (``kill -9``
    during a save); returns what was removed. Only names of the form ``.<name>.<random>.tmp`` are touched.
    Call it only where no other process is writing at the same time."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    candidates = folder.rglob(".*" + _TMP_SUFFIX) if recursive else folder.glob(".*" + _TMP_SUFFIX)
    for p in candidates:
        if _STALE.match(p.name) and p.is_file() and not p.is_symlink():
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


def check_writable(folder: PathLike) -> Path:
    """Create ``folder`` if needed and write (then remove) a probe file in it; raises :class:`OutputError`
    naming the folder when that fails, so that a command can refuse before its work instead of after."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: is a file, not a folder for the outputs")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-probe.", suffix=_TMP_SUFFIX)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise OutputError(f"{folder}: cannot write outputs there ({reason})") from None
    return folder


# ------------------------------------------------------------------------------------ naming + plans
def unique_output_names(paths: Sequence[PathLike], patterns: Sequence[str] = ("{}",)) -> List[str]:
    """One output base name per input, such that the files ``pattern.format(name)`` of two inputs never
    coincide (compared case-insensitively, as on macOS and Windows).

    Each input keeps its own stem when that is free; inputs whose stem (or a derived name) is taken get
    ``<stem>_1``, ``<stem>_2``, ... (the first free one). E.g. with patterns ``{}.png``, ``{}_w.png``:
    ``x.png``, ``x_w.png`` -> ``x``, ``x_w_1``; ``a.jpg``, ``a.png``, ``a_1.png`` -> ``a``, ``a_2``, ``a_1``.
    """
    taken: set = set()
    names: List[Optional[str]] = [None] * len(paths)

    def files(name: str) -> List[str]:
        return [p.format(name).lower() for p in patterns]

    def claim(name: str) -> bool:
        fs = files(name)
        if any(f in taken for f in fs) or len(set(fs)) < len(fs):
            return False
        taken.update(fs)
        return True

    stems = [Path(p).stem or "image" for p in paths]
    for i, stem in enumerate(stems):  # first pass: every input that can keep its stem keeps it
        if claim(stem):
            names[i] = stem
    for i, stem in enumerate(stems):  # then the rest, numbered
        if names[i] is None:
            n = 1
            while not claim(f"{stem}_{n}"):
                n += 1
            names[i] = f"{stem}_{n}"
    return [n for n in names if n is not None]


class OutputPlan:
    """The paths a command will write, checked together before any work.

    >>> plan = OutputPlan(inputs=[src], overwrite=args.overwrite)
    >>> out = plan.add(folder / "result.png")
    >>> plan.check()          # raises before anything is computed or written

    ``check`` refuses (one message naming the files):

    * an output that is one of the inputs (also through a symlink or a hard link), even with ``overwrite``;
    * two outputs with the same path (also differing only in case);
    * outputs that exist already, unless ``overwrite``;
    * an output path that is a folder.
    """

    def __init__(self, inputs: Iterable[PathLike] = (), overwrite: bool = False):
        self.inputs = [Path(p) for p in inputs]
        self.overwrite = bool(overwrite)
        self.outputs: List[Path] = []
        self._keys: dict = {}

    def add(self, path: PathLike, what: str = "") -> Path:
        """Reserve ``path``; raises :class:`OutputConflictError` when it was reserved already."""
        path = Path(path)
        key = _key(path).lower()
        if key in self._keys:
            first = self._keys[key]
            detail = f" ({first} and {what})" if what and first else ""
            raise OutputConflictError(f"{path}: two outputs would be written to this path{detail}; "
                                      "nothing was written")
        self._keys[key] = what
        self.outputs.append(path)
        return path

    def add_folder_files(self, folder: PathLike, names: Iterable[str], what: str = "") -> List[Path]:
        return [self.add(Path(folder) / n, what) for n in names]

    def check(self) -> "OutputPlan":
        inputs = {}
        for p in self.inputs:
            inputs[_key(p)] = p
        existing_inputs = [p for p in self.inputs if p.exists()]
        replaced = []
        for out in self.outputs:
            src = inputs.get(_key(out))
            if src is None and out.exists():
                src = next((p for p in existing_inputs if _same_file(p, out)), None)
            if src is not None:
                replaced.append((out, src))
        if replaced:
            pairs = [f"{o} (the input {s})" if _key(o) != _key(s) else os.fspath(o) for o, s in replaced]
            raise OutputConflictError(f"refusing to overwrite inputs with outputs: {_listed(pairs)}; choose "
                                      "another output folder or name (nothing was written)")
        folders = [o for o in self.outputs if o.is_dir()]
        if folders:
            raise OutputConflictError(f"these outputs are folders, not files: {_listed(folders)}")
        exists = [o for o in self.outputs if o.exists() or o.is_symlink()]
        if exists and not self.overwrite:
            raise OutputExistsError(f"{len(exists)} output file(s) exist already: {_listed(exists)}; add "
                                    "--overwrite to replace them (nothing was written)", exists)
        return self


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


__all__ = ["OutputConflictError", "OutputError", "OutputExistsError", "OutputPlan", "atomic_write",
           "check_writable", "clean_stale_temporaries", "temporary_path", "unique_output_names",
           "write_bytes_atomic", "write_text_atomic"]
