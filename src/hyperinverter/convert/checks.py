"""Checks a downloaded file must pass before it is used (and before it gets its final name).

Every check reads the file without executing anything in it (``weights_only`` torch loads, our
restricted NVIDIA unpickler) and compares what it holds with what the file should be: the keys and
shapes of the official manifests for the model zoo, the project's own loaders for the auxiliary
networks (LPIPS, ArcFace, MoCo, Inception), the direction readers for directions.
"""

from __future__ import annotations

import bz2
import os
import shutil
import zipfile
from pathlib import Path
from typing import Callable, Mapping

import torch

from ..errors import CheckpointError
from .catalog import RemoteFile
from .manifests import check_against_manifest, load_manifest

_HTML_STARTS = (b"<!doctype html", b"<html", b"<!--", b"<head")


def check_file(path: Path, remote: RemoteFile) -> None:
    """Raise :class:`CheckpointError` (one line naming the file and the problem) unless ``path`` is what
    ``remote`` describes. A bzip2-compressed dlib model is decompressed in place first."""
    if not path.is_file() or path.stat().st_size == 0:
        raise CheckpointError(f"{remote.filename}: the downloaded file is empty")
    with open(path, "rb") as fh:
        head = fh.read(512).lstrip().lower()
    if head.startswith(_HTML_STARTS):
        raise CheckpointError(f"{remote.filename}: the download is a web page, not the file (the link may have "
                              "changed, or Google Drive's quota is exceeded)")
    _CHECKS[remote.check](path, remote)


def _label(remote: RemoteFile) -> str:
    return remote.use.split(";")[0] if remote.use else remote.name


def _state_dict(obj, remote: RemoteFile, key: str = "state_dict") -> Mapping[str, torch.Tensor]:
    if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
        return obj[key]
    found = list(obj)[:6] if isinstance(obj, Mapping) else type(obj).__name__
    raise CheckpointError(f"{remote.filename}: not {_label(remote)} (expected a dict with '{key}'; found {found})")


def _read(path: Path, remote: RemoteFile):
    from ..stylegan2.formats import read_model_file

    try:
        return read_model_file(path)
    except CheckpointError as e:
        raise CheckpointError(f"{remote.filename}: {str(e).replace(str(path) + ': ', '')}") from None


def _hyperinverter(path: Path, remote: RemoteFile) -> None:
    state = _state_dict(_read(path, remote), remote)
    manifest = load_manifest(remote.manifest)
    if not any(k.startswith("discriminator.") for k in state):  # trained without the adversarial term: no D
        kept = [e for e in manifest["entries"] if not e["key"].startswith("discriminator.")]
        manifest = {**manifest, "entries": kept}
    check_against_manifest(state, manifest, remote.filename, exact=True, what=_label(remote))


def _w_encoder(path: Path, remote: RemoteFile) -> None:
    state = _state_dict(_read(path, remote), remote)
    check_against_manifest(state, load_manifest(remote.manifest), remote.filename, exact=False, what=_label(remote))


def _generator(path: Path, remote: RemoteFile) -> None:
    from ..stylegan2.formats.safe_pickle import PersistentObject
    from ..utils.limits import describe_all

    obj = _read(path, remote)
    net = obj.get("G_ema") if isinstance(obj, Mapping) else None
    if not isinstance(net, PersistentObject):
        found = describe_all(obj, 6) if isinstance(obj, Mapping) else type(obj).__name__
        raise CheckpointError(f"{remote.filename}: not an NVIDIA network pickle with G_ema (found {found})")
    check_against_manifest(net.state_dict(), load_manifest(remote.manifest), f"{remote.filename}[G_ema]",
                           exact=True, what=_label(remote))


def _direction(path: Path, remote: RemoteFile) -> None:
    from ..editing import load_direction_file

    w_dim = int(remote.option("w_dim", 512))
    try:
        load_direction_file(path, w_dim, int(remote.option("num_ws", 18)))
    except CheckpointError:
        raise
    except Exception as e:  # noqa: BLE001 - DirectionError and torch errors: one line either way
        raise CheckpointError(f"{remote.filename}: not a W direction of size {w_dim} "
                              f"({str(e).replace(str(path) + ': ', '')})") from None


def _ganspace(path: Path, remote: RemoteFile) -> None:
    from ..editing import load_ganspace

    try:
        load_ganspace(path, w_dim=int(remote.option("w_dim", 512)))
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{remote.filename}: not a GANSpace PCA file ({str(e).replace(str(path) + ': ', '')})"
                              ) from None


def _loader(load: Callable[[Path, RemoteFile], None]) -> Callable[[Path, RemoteFile], None]:
    """A check that loads the file into the project's own network (strict keys and shapes)."""

    def check(path: Path, remote: RemoteFile) -> None:
        try:
            load(path, remote)
        except CheckpointError as e:
            raise CheckpointError(f"{remote.filename}: not {_label(remote)}: {str(e).replace(str(path) + ': ', '')}"
                                  ) from None

    return check


def _lpips_head(path: Path, remote: RemoteFile) -> None:
    from ..losses.lpips import LPIPS

    LPIPS(remote.option("net", "alex")).load_heads(path)


def _lpips_backbone(path: Path, remote: RemoteFile) -> None:
    from ..losses.lpips import LPIPS

    LPIPS(remote.option("net", "alex")).load_backbone(path)


def _arcface(path: Path, remote: RemoteFile) -> None:
    from ..losses.identity import IdentitySimilarity

    IdentitySimilarity(path)


def _moco(path: Path, remote: RemoteFile) -> None:
    from ..losses.moco import MocoLoss

    MocoLoss(path)


def _inception(path: Path, remote: RemoteFile) -> None:
    from ..metrics.inception import InceptionFeatures

    InceptionFeatures(path)


def _torch_state(path: Path, remote: RemoteFile) -> dict:
    from ..losses._common import as_state_dict, read_weight_file

    try:
        return as_state_dict(read_weight_file(path, _label(remote)), path, _label(remote))
    except CheckpointError as e:
        raise CheckpointError(f"{remote.filename}: {str(e).replace(str(path) + ': ', '')}") from None


def _torch(path: Path, remote: RemoteFile) -> None:
    _torch_state(path, remote)


def _torch_keys(path: Path, remote: RemoteFile) -> None:
    state = _torch_state(path, remote)
    missing = [k for k in remote.keys if k not in state]
    if missing:
        raise CheckpointError(f"{remote.filename}: not {_label(remote)} (no tensor {', '.join(missing[:3])})")


def _dlib(path: Path, remote: RemoteFile) -> None:
    with open(path, "rb") as fh:
        compressed = fh.read(3) == b"BZh"
    if compressed:  # dlib.net publishes it as .bz2
        tmp = path.with_name(path.name + ".unpacked")
        try:
            with bz2.open(path, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except (OSError, EOFError) as e:
            tmp.unlink(missing_ok=True)
            raise CheckpointError(f"{remote.filename}: a broken bzip2 file ({e})") from None
        os.replace(tmp, path)
    if path.stat().st_size < 1 << 20:
        raise CheckpointError(f"{remote.filename}: {path.stat().st_size} bytes is too small for dlib's landmark model "
                              "(about 95 MB)")


def _zip(path: Path, remote: RemoteFile) -> None:
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{remote.filename}: not a zip archive")
    with zipfile.ZipFile(path) as archive:
        bad = archive.testzip()
    if bad is not None:
        raise CheckpointError(f"{remote.filename}: the archive member {bad} is corrupt")


_CHECKS: dict[str, Callable[[Path, RemoteFile], None]] = {
    "hyperinverter": _hyperinverter, "w_encoder": _w_encoder, "generator": _generator, "direction": _direction,
    "ganspace": _ganspace, "lpips_head": _loader(_lpips_head), "lpips_backbone": _loader(_lpips_backbone),
    "arcface": _loader(_arcface), "moco": _loader(_moco), "inception": _loader(_inception), "torch": _torch,
    "torch_keys": _torch_keys, "dlib": _dlib, "zip": _zip,
}

__all__ = ["check_file"]
