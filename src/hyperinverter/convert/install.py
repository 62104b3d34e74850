"""``hyperinverter download``: fetch published files into the cache, check them, convert the zoo models.

A file is fetched into ``files/<name>.part`` (resumable), checked (:mod:`.checks`), and only then renamed
to ``files/<name>``. A model of the zoo is converted once from its three files with the official loader
(:func:`hyperinverter.convert.official.load_official`) into a temporary folder that is renamed to
``models/<model name>`` when complete, with ``domain.json`` (what it was trained on and the paper's
phase-I PSNR), ``directions/`` (the official face directions) and ``source.json`` (where it came from).
``HyperInverter.from_pretrained("<model name>")`` and ``--model <model name>`` then find it by name.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional

from .. import home
from ..errors import CheckpointError
from ..utils.outputs import OutputPlan, check_writable, write_text_atomic
from .catalog import Catalog, RemoteFile, ZooModel, default_catalog
from .checks import check_file
from .fetch import FetchOptions, download_to_part, part_path, source_of

#: Default strength of the official InterFaceGAN directions (unit normals): e4e's examples edit by ±3.
INTERFACEGAN_STRENGTH = 3.0


@dataclass
class DownloadReport:
    """What :func:`download` did.

    Attributes:
        files: the checked files in the cache, by name.
        models: the converted model folders, by name.
        cached: names that were already in the cache (nothing fetched).
    """

    files: dict[str, Path] = field(default_factory=dict)
    models: dict[str, Path] = field(default_factory=dict)
    cached: list[str] = field(default_factory=list)


def fetch_file(remote: RemoteFile, options: Optional[FetchOptions] = None, force: bool = False,
               log: Callable[[str], None] = print) -> Path:
    """The checked file ``remote`` in the cache (``<home>/files/<filename>``), downloaded if needed.

    ``force``: fetch again from zero; the file in the cache is replaced only once the new one is complete and
    checked (a failed download leaves it as it was).

    Raises:
        DownloadError: it could not be downloaded (a partial download stays as ``.part`` for resuming).
        CheckpointError: it downloaded but is not the file it should be; it is deleted, nothing is installed.
    """
    dest = home.files_dir() / remote.filename
    if dest.is_file() and not force:
        return dest
    if force:
        part_path(dest).unlink(missing_ok=True)
    options = options or FetchOptions()
    resumed = part_path(dest).is_file()
    log(f"{remote.name}: {'resuming' if resumed else 'fetching'} {remote.filename} from {source_of(remote, options)}")
    part = download_to_part(remote, dest, options)
    try:
        check_file(part, remote)
    except CheckpointError as e:
        part.unlink(missing_ok=True)
        raise CheckpointError(f"{e}; the download was deleted and nothing was installed") from None
    os.replace(part, dest)
    return dest


def convert_model(model: ZooModel, files: dict[str, Path], catalog: Catalog, fp16: bool = False,
                  log: Callable[[str], None] = print) -> Path:
    """Convert the zoo model ``model`` from its checked ``files`` into ``<home>/models/<name>`` (replacing
    an earlier conversion only once the new one is complete). Returns the folder."""
    import torch

    from .official import load_official

    out = home.models_dir() / model.name
    tmp = out.with_name(f".{model.name}.converting-{os.getpid()}")
    old = out.with_name(f".{model.name}.replaced-{os.getpid()}")
    for stale in (tmp, old):
        if stale.exists():
            shutil.rmtree(stale)
    log(f"{model.name}: converting (HyperInverter {files[model.checkpoint].name} + W-encoder "
        f"{files[model.w_encoder].name} + generator {files[model.generator].name})")
    try:
        loaded = load_official(files[model.checkpoint], files[model.w_encoder], files[model.generator])
        loaded.model.save_pretrained(tmp, dtype=torch.float16 if fp16 else None)
        _write_extras(model, files, catalog, tmp)
        if out.exists():  # the earlier conversion stays whole until the new one is in place
            os.replace(out, old)
        try:
            os.replace(tmp, out)
        except OSError:
            if old.exists() and not out.exists():
                os.replace(old, out)
            raise
    finally:
        for leftover in (tmp, old):
            if leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)
    return out


def _write_extras(model: ZooModel, files: dict[str, Path], catalog: Catalog, folder: Path) -> None:
    """``domain.json``, ``directions/`` and ``source.json`` of a converted zoo model."""
    from ..domain import DomainRecord, save_domain
    from ..editing import Direction, load_direction_file, save_direction

    paper = dict(model.paper)
    save_domain(DomainRecord(kind=model.domain_kind, aligned_faces=model.aligned_faces, psnr_mean=model.phase1_psnr,
                             source="the paper's phase-I (W-encoder) figure on its test set"), folder)
    for name in model.directions:
        remote = catalog.files[name]
        loaded = load_direction_file(files[name], int(remote.option("w_dim", 512)), int(remote.option("num_ws", 18)))
        short = name.split("-", 1)[-1]
        save_direction(Direction(short, loaded.vector, kind="interfacegan", strength=INTERFACEGAN_STRENGTH,
                                 description={"source": remote.source, "file": remote.filename,
                                              "note": "official InterFaceGAN normal; strength 1 = 3 units of w"}),
                       folder / "directions")
    record = {"model": model.name, "description": model.description, "paper": paper,
              "files": {catalog.files[f].filename: catalog.files[f].source for f in model.files}}
    write_text_atomic(folder / "source.json", json.dumps(record, indent=2) + "\n")


def _local_source(remote: RemoteFile, options: FetchOptions) -> Optional[Path]:
    """The file a ``file://`` source (a mirror on this machine) names; None for a remote address."""
    url = urllib.parse.urlsplit(source_of(remote, options))
    if url.scheme != "file":
        return None
    return Path(urllib.request.url2pathname(url.path))


def plan_downloads(remotes: Iterable[RemoteFile], options: FetchOptions, force: bool = False) -> None:
    """Check what a download will write before anything is fetched: no file in the cache may be its own source
    (a ``file://`` mirror pointing into the cache), even with ``force``; files already in the cache are
    kept unless ``force`` (they are not fetched at all)."""
    remotes = list(remotes)
    plan = OutputPlan(inputs=[p for p in (_local_source(r, options) for r in remotes) if p is not None],
                      overwrite=force)
    fetching = False
    for remote in remotes:
        dest = home.files_dir() / remote.filename
        if force or not dest.is_file():
            plan.add(dest, remote.name)
            fetching = True
    plan.check()
    if fetching:
        check_writable(home.files_dir())


def download(names: Iterable[str], catalog: Optional[Catalog] = None, options: Optional[FetchOptions] = None,
             force: bool = False, fp16: bool = False, log: Callable[[str], None] = print) -> DownloadReport:
    """Fetch, check and (for zoo models) convert everything ``names`` stands for.

    Args:
        names: model, file or group names of ``catalog`` (see ``hyperinverter download --list``).
        catalog: what can be downloaded (default: the official files, :func:`default_catalog`).
        options: where from and how (mirror, Drive endpoint, retries, progress bar).
        force: fetch and convert again even what is in the cache.
        fp16: store converted models in float16 (half the size; float32 reproduces the official numbers).
        log: where progress lines go.

    Raises:
        KeyError: an unknown name (nothing is fetched).
        DownloadError / CheckpointError: see :func:`fetch_file`; files fetched before stay in the cache.
    """
    catalog = catalog or default_catalog()
    models, remotes = catalog.expand(names)
    plan_downloads(remotes, options or FetchOptions(), force)
    report = DownloadReport()
    for remote in remotes:
        was_there = (home.files_dir() / remote.filename).is_file() and not force
        report.files[remote.name] = fetch_file(remote, options, force=force, log=log)
        if was_there:
            report.cached.append(remote.name)
    for model in models:
        out = home.models_dir() / model.name
        if (out / "config.json").is_file() and not force:
            report.cached.append(model.name)
        else:
            convert_model(model, report.files, catalog, fp16=fp16, log=log)
        report.models[model.name] = out
    return report


def list_rows(catalog: Optional[Catalog] = None, options: Optional[FetchOptions] = None) -> list[dict]:
    """One row per model, group and file: ``name``, ``what``, ``source`` and ``status`` (in the cache or not)."""
    catalog = catalog or default_catalog()
    options = options or FetchOptions()
    rows = []
    for model in catalog.models.values():
        there = (home.models_dir() / model.name / "config.json").is_file()
        rows.append({"section": "models", "name": model.name, "what": model.description,
                     "source": " + ".join(model.files[:3]), "status": "converted" if there else ""})
    for name, members in catalog.groups.items():
        rows.append({"section": "groups", "name": name, "what": f"{len(members)} files", "source": " + ".join(members),
                     "status": ""})
    for remote in catalog.files.values():
        there = (home.files_dir() / remote.filename).is_file()
        partial = part_path(home.files_dir() / remote.filename).is_file()
        rows.append({"section": "files", "name": remote.name, "what": f"{remote.filename}: {remote.use}",
                     "source": source_of(remote, options),
                     "status": "downloaded" if there else ("partial" if partial else "")})
    return rows


__all__ = ["DownloadReport", "INTERFACEGAN_STRENGTH", "convert_model", "download", "fetch_file", "list_rows",
           "plan_downloads"]
