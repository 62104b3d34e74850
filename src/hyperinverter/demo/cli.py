"""Command-line entries of the demo: ``hyperinverter demo`` and ``hyperinverter export``."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

DEFAULT_OUT = Path("out/demo")


def cmd_demo(args: argparse.Namespace) -> int:
    import torch

    from ..cli import _device
    from ..inverter import HyperInverter
    from ..pretrained import resolve
    from .run import DemoOptions, run_demo

    device = _device(args.device)
    model_dir = resolve(args.model)
    model = HyperInverter.from_pretrained(model_dir, device=device)
    print(f"model: {args.model} ({model.resolution}px), device {device}")
    options = DemoOptions(count=args.count, start=args.start, directions=args.directions, strength=args.strength,
                          interpolation_steps=args.interpolation_steps, samples=args.samples, seed=args.seed,
                          batch_size=args.batch_size)
    with torch.no_grad():  # scoped: the CLI may run inside another program (tests, notebooks)
        report = run_demo(model, args.output, images=args.images, model_dir=model_dir, options=options)
    for note in report.notes:
        print(f"note: {note}")
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

    from ..inverter import HyperInverter
    from ..pretrained import resolve

    source = resolve(args.source)
    if Path(args.output).resolve() == source.resolve():
        raise ValueError("export: the output folder must differ from the source")
    model = HyperInverter.from_pretrained(source)
    dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": None}[args.dtype]
    out = model.save_pretrained(args.output, dtype=dtype)
    copied = []
    for folder in [source / "directions"] + ([Path(args.directions)] if args.directions else []):
        if folder.is_dir():
            target = out / "directions"
            target.mkdir(exist_ok=True)
            for f in sorted(folder.iterdir()):
                if f.is_file():
                    shutil.copy2(f, target / f.name)
                    copied.append(f.name)
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"wrote {out} ({args.dtype}, {size / 2 ** 20:.1f} MiB{', directions: ' + str(len(copied)) + ' files' if copied else ''})")
    return 0


def add_commands(sub) -> None:
    """Register ``demo`` and ``export`` on the top-level sub-parsers."""
    from ..pretrained import DEFAULT_MODEL

    p = sub.add_parser("demo", help="the main job: invert held-out portraits (or --images), edit, interpolate, "
                                    "and write grids, a GIF, metrics and index.html")
    p.add_argument("--model", "-m", default=DEFAULT_MODEL, help=f"model folder or shipped name (default {DEFAULT_MODEL})")
    p.add_argument("--images", nargs="+", type=Path, default=None, help="your own images instead of portraits")
    p.add_argument("--output", "-o", type=Path, default=DEFAULT_OUT)
    p.add_argument("--count", type=int, default=6, help="held-out portraits to render (without --images)")
    p.add_argument("--start", type=int, default=0, help="first test-split seed index of those portraits")
    p.add_argument("--directions", nargs="+", default=None, help="direction names (default: the model's own)")
    p.add_argument("--strength", type=float, default=1.0, help="multiple of each direction's default strength")
    p.add_argument("--interpolation-steps", type=int, default=12)
    p.add_argument("--samples", type=int, default=16, help="random generator samples to show (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("export", help="re-save a HyperInverter folder (float16 by default) with its directions")
    p.add_argument("source", help="a HyperInverter folder (save_pretrained) or a shipped model name")
    p.add_argument("--output", "-o", type=Path, required=True)
    p.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default="float16")
    p.add_argument("--directions", type=Path, default=None, help="also copy the direction files of this folder")
    p.set_defaults(func=cmd_export)


__all__ = ["add_commands"]
