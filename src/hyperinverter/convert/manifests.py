"""Key-and-shape manifests of the official checkpoints, and checking a state dict against one.

A manifest is ``{"header": {...}, "num_entries", "num_float_elements", "entries": [{"key", "shape",
"dtype"}, ...]}``: the ``state_dict()`` of the official module built with the released constructor
arguments (copied from the project's reference folder into ``data/manifests/``, read with
:mod:`importlib.resources` so that an installed wheel has them too).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Mapping, Optional

import torch

from ..checkpoints.pretrained import compare_state
from ..errors import CheckpointError

FOLDER = "manifests"


@lru_cache(maxsize=None)
def load_manifest(name: str) -> dict:
    """The packaged manifest ``data/manifests/<name>.json``, or the manifest file ``name`` when it is the
    path of a ``.json`` file (your own catalogue entries).

    Raises:
        KeyError: there is no manifest of that name.
    """
    if name.endswith(".json") and Path(name).is_file():
        return json.loads(Path(name).read_text(encoding="utf-8"))
    path = resources.files(__package__).joinpath("data", FOLDER, f"{name}.json")
    if not path.is_file():
        raise KeyError(f"no packaged manifest {name!r}")
    return json.loads(path.read_text(encoding="utf-8"))


def available_manifests() -> list[str]:
    """Names of the packaged manifests."""
    folder = resources.files(__package__).joinpath("data", FOLDER)
    return sorted(p.name[:-len(".json")] for p in folder.iterdir() if p.name.endswith(".json"))


def manifest_of(state: Mapping[str, torch.Tensor], header: Optional[dict] = None) -> dict:
    """A manifest (same layout as the packaged ones) describing ``state``."""
    entries = [{"key": k, "shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", "")}
               for k, v in state.items()]
    floats = sum(v.numel() for v in state.values() if v.is_floating_point())
    return {"header": dict(header or {}), "num_entries": len(entries), "num_float_elements": floats,
            "entries": entries}


def check_against_manifest(state: Mapping[str, torch.Tensor], manifest: dict, source: str,
                           exact: bool = True, what: str = "the official checkpoint") -> None:
    """Raise :class:`CheckpointError` unless ``state`` has every key of ``manifest`` with its shape
    (and, with ``exact``, no other key).

    Args:
        state: the tensors found in the file (name -> tensor).
        manifest: a manifest (see :func:`load_manifest`).
        source: the file, for the message.
        exact: refuse keys the manifest does not list (False: extra entries are allowed, e.g. the
            decoder a pSp W-encoder file also carries).
        what: what the file should be, for the message.
    """
    expected = {e["key"]: tuple(e["shape"]) for e in manifest["entries"]}
    missing, extra, mismatched = compare_state(state, expected)
    shapes = [f"{k} {list(state[k].shape)} instead of {list(expected[k])}" for k in mismatched]
    extra = extra if exact else []
    problems = []
    if missing:
        problems.append(f"{len(missing)} of its {len(expected)} tensors missing (e.g. {', '.join(missing[:3])})")
    if shapes:
        problems.append(f"{len(shapes)} of another shape (e.g. {'; '.join(shapes[:2])})")
    if extra:
        problems.append(f"{len(extra)} unexpected (e.g. {', '.join(extra[:3])})")
    if problems:
        raise CheckpointError(f"{source}: not {what}: " + "; ".join(problems))


__all__ = ["available_manifests", "check_against_manifest", "load_manifest", "manifest_of"]
