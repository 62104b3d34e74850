"""Command-line entries of the demo: ``hyperinverter demo``, ``export`` and ``domain-stats``."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

DEFAULT_OUT = Path("out/demo")


def cmd_demo(args: argparse.Namespace) -> int:
    import torch

    from ..devices import choose_device
    from ..inverter import HyperInverter
    from ..pretrained import resolve
    from .run import DemoOptions, plan_demo_outputs, run_demo

    model_dir = resolve(args.model)
    options = DemoOptions(count=args.count, start=args.start, directions=args.directions, strength=args.strength,
                          interpolation_steps=args.interpolation_steps, samples=args.samples, seed=args.seed,
                          batch_size=args.batch_size)
    plan_demo_outputs(args.output, args.images, options, model_dir, args.overwrite)  # before any work
    device = choose_device(args.device)
    model = HyperInverter.from_pretrained(model_dir, device=device)
    print(f"model: {args.model} ({model.resolution}px), device {device}")
    with torch.no_grad():  # scoped: the CLI may run inside another program (tests, notebooks)
        report = run_demo(model, args.output, images=args.images, model_dir=model_dir, options=options)
    for note in report.notes:
        print(f"note: {note}")
    for warning in report.warnings:
        print(f"warning: {warning}")
    p1, p2 = report.summary["phase1"], report.summary["hyperinverter"]
    print(f"{'':16}{'MSE':>9}{'PSNR dB':>9}{'SSIM':>8}")
    print(f"{'phase I':16}{p1['mse']:9.4f}{p1['psnr']:9.2f}{p1['ssim']:8.4f}")
    print(f"{'HyperInverter':16}{p2['mse']:9.4f}{p2['psnr']:9.2f}{p2['ssim']:8.4f}")
    print(f"MSE ratio {p2['mse'] / max(p1['mse'], 1e-12):.2f}, PSNR gain {p2['psnr'] - p1['psnr']:+.2f} dB over "
          f"{len(report.names)} images; edits: {', '.join(report.directions) or 'none'}; "
          f"{report.seconds['total']:.1f} s")
    print(f"wrote {report.out_dir}/: index.html, grid.png, interpolation.gif, samples.png, metrics.csv/json, images/")
    print(f"open {report.files['index'].resolve()}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Re-save a HyperInverter folder (e.g. in float16 to halve it) with its directions and notes."""
    import torch

    from ..domain import DOMAIN_FILE, save_domain
    from ..inverter import HyperInverter
    from ..pretrained import resolve

    source = resolve(args.source)
    if Path(args.output).resolve() == source.resolve():
        raise ValueError("export: the output folder must differ from the source")
    if args.directions is not None and not Path(args.directions).is_dir():
        raise ValueError(f"{args.directions}: no such folder (--directions)")
    copies = _plan_export(source, Path(args.output), args)  # before any work: nothing replaced unasked
    if args.validation and not (args.domain_kind or (source / DOMAIN_FILE).is_file()):
        print("note: no --domain-kind given: out-of-domain messages will say 'its training images'")
    model = HyperInverter.from_pretrained(source)
    dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": None}[args.dtype]
    record = _domain_record(model, source, args.validation, args.domain_kind, args.aligned_faces, args.batch_size,
                            args.framing)
    out = model.save_pretrained(args.output, dtype=dtype)
    copied = []
    for f, target in copies:
        _copy_atomic(f, target)
        if target.parent == out / "directions":
            copied.append(f.name)
    if record is not None:
        save_domain(record, out)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    extra = f", directions: {len(copied)} files" if copied else ""
    print(f"wrote {out} ({args.dtype}, {size / 2 ** 20:.1f} MiB{extra})")
    if record is not None:
        print(_describe_record(record, out))
    return 0


def _files_of(paths) -> list:
    """The given files, and the files directly inside the given folders (what a command reads from them)."""
    out = []
    for p in paths or []:
        p = Path(p)
        out += sorted(q for q in p.iterdir() if q.is_file()) if p.is_dir() else [p]
    return out


def _copy_atomic(src: Path, target: Path) -> Path:
    """Copy ``src`` (with its times) through a temporary file renamed over ``target``."""
    from ..utils.outputs import atomic_write

    return atomic_write(target, lambda tmp: shutil.copy2(src, tmp))


def _plan_export(source: Path, out: Path, args: argparse.Namespace) -> list:
    """Check every file ``export`` writes before any work: ``config.json``, ``model.safetensors``, each
    direction file copied to ``directions/`` (from the source's ``directions/`` and ``--directions``) and
    ``domain.json``. Refused in one line naming the files: an output that is one of the inputs (the source's
    files, the direction files, the validation images; even with ``--overwrite``), two files copied to one
    name, outputs that exist unless ``--overwrite``. Returns the ``(source file, target)`` copies to make."""
    from ..checkpoints import CONFIG_NAME, WEIGHTS_NAME
    from ..domain import DOMAIN_FILE
    from ..utils.outputs import OutputPlan, check_writable

    folders = [source / "directions"]
    if args.directions and Path(args.directions).resolve() != folders[0].resolve():  # the same folder: once
        folders.append(Path(args.directions))
    inputs = _files_of([source, *folders]) + _files_of(args.validation)
    plan = OutputPlan(inputs=inputs, overwrite=args.overwrite)
    plan.add_folder_files(out, [CONFIG_NAME, WEIGHTS_NAME])
    copies = []
    for folder in folders:
        for f in _files_of([folder]) if folder.is_dir() else []:
            copies.append((f, plan.add(out / "directions" / f.name, str(f))))
    if args.validation or args.framing:
        plan.add(out / DOMAIN_FILE, "the measured domain record" if args.validation else "the domain record with "
                 "--framing")
    elif (source / DOMAIN_FILE).is_file():
        copies.append((source / DOMAIN_FILE, plan.add(out / DOMAIN_FILE, str(source / DOMAIN_FILE))))
    plan.check()
    check_writable(out)
    return copies


def _domain_record(model, source: Path, images, kind, aligned_faces, batch_size, framing=None):
    """The :class:`DomainRecord` to write: a fresh one from validation ``images``; without images, the source's
    (or an empty one) with ``framing`` set when it is given, else None (nothing to write). The kind and the
    aligned-faces flag default to the source's record, the framing as :func:`_framing_of` says."""
    import dataclasses

    from ..domain import DomainRecord, load_domain, record_domain_stats

    previous = load_domain(source)
    if not images:
        if kind is not None or aligned_faces is not None:
            raise ValueError("--domain-kind/--aligned-faces need validation images (--validation DIR)")
        return None if framing is None else dataclasses.replace(previous or DomainRecord(), framing=framing)
    kind = kind if kind is not None else (previous.kind if previous else "")
    aligned = aligned_faces if aligned_faces is not None else (previous.aligned_faces if previous else False)
    return record_domain_stats(model, images, kind=kind, aligned_faces=aligned, batch_size=batch_size,
                               framing=_framing_of(framing, images, previous))


def _framing_of(framing, images, previous) -> str:
    """The portrait framing to record: ``framing`` when given, else the one the validation ``images``' labels
    record (:func:`_labelled_framing`), else the ``previous`` record's, else ``""`` (unknown)."""
    if framing is not None:
        return framing
    return _labelled_framing(images or []) or (previous.framing if previous else "")


def _labelled_framing(images) -> str:
    """The framing recorded in the ``labels.json`` (``hyperinverter data portraits``) of the given folders and
    of the folders of the given files; ``""`` when none records one (no labels, unreadable ones, labels written
    before framings existed). Raises ValueError when they record several."""
    import json

    from .names import FRAMING_NAMES

    folders = {p if p.is_dir() else p.parent for p in map(Path, images)}
    found = set()
    for folder in sorted(folders):
        try:
            records = json.loads((folder / "labels.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(records, list):
            found |= {r["framing"] for r in records if isinstance(r, dict) and isinstance(r.get("framing"), str)}
    unknown = sorted(found - set(FRAMING_NAMES))
    if unknown:
        raise ValueError(f"the validation images' labels.json record an unknown framing {unknown[0]!r}; expected one "
                         f"of {', '.join(FRAMING_NAMES)}")
    if len(found) > 1:
        raise ValueError(f"the validation images' labels.json record several framings ({', '.join(sorted(found))}); "
                         "say which the model was trained on with --framing")
    return found.pop() if found else ""


def _describe_record(record, path: Path) -> str:
    """One line on a domain record: kind, framing and the phase-I figures (those it has)."""
    head = f"domain of {path}: {record.kind or '(kind not given)'}" + (f", {record.framing} framing"
                                                                       if record.framing else "")
    if record.psnr_mean is None:
        return f"{head}; no phase-I figures (inputs are not checked against the domain)"
    spread = ", ".join(f"{name} {value:.2f}" for name, value in (("std", record.psnr_std),
                                                                 ("5th percentile", record.psnr_p05))
                       if value is not None)
    return (f"{head}, phase-I PSNR {record.psnr_mean:.2f} dB{f' ({spread})' if spread else ''} on {record.count} "
            f"validation images; inputs below {record.threshold():.1f} dB are called outside the domain")


def cmd_domain_stats(args: argparse.Namespace) -> int:
    """Measure a model's phase-I PSNR on validation images and write ``domain.json`` into its folder."""
    from ..devices import choose_device
    from ..domain import save_domain
    from ..inverter import HyperInverter
    from ..pretrained import resolve

    from ..checkpoints import CONFIG_NAME, WEIGHTS_NAME
    from ..domain import DOMAIN_FILE
    from ..utils.outputs import OutputPlan, check_writable

    folder = resolve(args.model)
    target = Path(args.output or folder)
    # The record replaces the model's own domain.json only with --overwrite; never a weight or an image.
    plan = OutputPlan(inputs=[folder / CONFIG_NAME, folder / WEIGHTS_NAME, *_files_of(args.images)],
                      overwrite=args.overwrite)
    plan.add(target / DOMAIN_FILE)
    plan.check()
    check_writable(target)
    model = HyperInverter.from_pretrained(folder, device=choose_device(args.device))
    aligned = True if args.aligned_faces else (False if args.not_aligned_faces else None)
    record = _domain_record(model, folder, args.images, args.kind, aligned, args.batch_size, args.framing)
    out = save_domain(record, target)
    print(f"wrote {out}")
    print(_describe_record(record, folder))
    return 0


def add_commands(sub) -> None:
    """Register ``demo``, ``export`` and ``domain-stats`` on the top-level sub-parsers."""
    from ..editing.strength import STRENGTH_HELP
    from ..pretrained import DEFAULT_MODEL
    from .names import FRAMING_NAMES

    p = sub.add_parser("demo", help="the main job: invert held-out portraits (or --images), edit, interpolate, "
                                    "and write grids, a GIF, metrics and index.html")
    p.add_argument("--model", "-m", default=DEFAULT_MODEL,
                   help=f"model folder or shipped name (default {DEFAULT_MODEL})")
    p.add_argument("--images", nargs="+", type=Path, default=None, help="your own images instead of portraits")
    p.add_argument("--output", "-o", type=Path, default=DEFAULT_OUT, help="folder for index.html and the figures")
    p.add_argument("--count", type=int, default=6, help="held-out portraits to render (without --images)")
    p.add_argument("--start", type=int, default=0, help="first test-split seed index of those portraits")
    p.add_argument("--directions", nargs="+", default=None, help="direction names (default: the model's own)")
    p.add_argument("--strength", type=float, default=1.0,
                   help="edits at -strength and +strength (default 1): " + STRENGTH_HELP)
    p.add_argument("--interpolation-steps", type=int, default=12, help="frames of the interpolation GIF")
    p.add_argument("--samples", type=int, default=16, help="random generator samples to show (0: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the generator samples (samples.png)")
    p.add_argument("--batch-size", type=int, default=8, help="images per encoder pass")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the files of an earlier demo in the output folder (default: refuse, listing them; "
                        "an input image or a model file is never replaced)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("export", help="re-save a HyperInverter folder (float16 by default) with its directions")
    p.add_argument("source", help="a HyperInverter folder (save_pretrained) or a shipped model name")
    p.add_argument("--output", "-o", type=Path, required=True, help="folder to write the model to")
    p.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default="float16",
                   help="dtype of the stored weights (float16 halves the folder; results stay float32)")
    p.add_argument("--directions", type=Path, default=None, help="also copy the direction files of this folder")
    p.add_argument("--validation", nargs="+", type=Path, default=None, metavar="IMAGES",
                   help="validation image files or folders: record the typical phase-I PSNR in OUT_DIR/domain.json "
                        "(inputs far below it are then called outside the model's domain); without it the "
                        "source's domain.json is copied (with --framing set, when given)")
    p.add_argument("--domain-kind", default=None, metavar="TEXT",
                   help="what the model was trained on, in words (e.g. 'procedural portraits'); default: the "
                        "source's record")
    p.add_argument("--aligned-faces", action="store_true", default=None,
                   help="the model takes FFHQ-aligned face crops (what --align makes)")
    p.add_argument("--framing", choices=FRAMING_NAMES, default=None,
                   help="the portrait framing the model was trained on ('data portraits --framing'), recorded in "
                        "domain.json for whatever renders portraits for it (demo, directions fit-portraits); "
                        "default: the one the --validation folder's labels.json records, else the source's")
    p.add_argument("--batch-size", type=int, default=16, help="images per pass when measuring --validation")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing files in the output folder (default: refuse, listing them; the source's "
                        "files are never replaced)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("domain-stats", help="measure a model's typical phase-I PSNR on validation images and write "
                                            "its domain.json (what out-of-domain warnings compare with)")
    p.add_argument("model", help="a HyperInverter folder or a shipped/downloaded model name (written in place)")
    p.add_argument("images", nargs="+", type=Path, help="validation image files or folders (not training images)")
    p.add_argument("--kind", default=None, metavar="TEXT",
                   help="what the model was trained on, in words (e.g. 'procedural portraits'); default: the "
                        "model's current record")
    q = p.add_mutually_exclusive_group()
    q.add_argument("--aligned-faces", action="store_true", help="the model takes FFHQ-aligned face crops")
    q.add_argument("--not-aligned-faces", action="store_true", help="the model does not take aligned face crops")
    p.add_argument("--output", "-o", type=Path, default=None, help="folder to write domain.json to (default: the "
                                                                   "model's folder)")
    p.add_argument("--framing", choices=FRAMING_NAMES, default=None,
                   help="the portrait framing the model was trained on ('data portraits --framing'); default: the "
                        "one the images' labels.json records, else the model's current record")
    p.add_argument("--batch-size", type=int, default=16, help="images per encoder pass")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing domain.json (default: refuse; the model's weights and the images are "
                        "never replaced)")
    p.set_defaults(func=cmd_domain_stats)


__all__ = ["add_commands"]
