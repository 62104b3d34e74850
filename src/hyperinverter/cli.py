"""The ``hyperinverter`` command line."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from . import __version__


def parse_seeds(text: str) -> list[int]:
    """``"0-3,7"`` -> ``[0, 1, 2, 3, 7]``."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1) if not part.startswith("-") else (part, part)
                seeds.extend(range(int(lo), int(hi) + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid seed list {text!r} (use e.g. 0-7 or 1,5,9)") from None
    if not seeds:
        raise argparse.ArgumentTypeError("the seed list is empty")
    return seeds


def _device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"error: --device {name}: CUDA is not available on this machine")
    return torch.device(name)


def _tiny_generator(resolution: int, seed: int):
    """A freshly initialised small generator (random weights), for trying things without a model file."""
    import torch

    from .stylegan2 import Generator

    torch.manual_seed(seed)
    G = Generator(z_dim=64, w_dim=64, img_resolution=resolution, channel_base=16 * resolution, channel_max=64,
                  mapping_layers=4)
    with torch.no_grad():  # a little noise and colour so that the random network's output is not flat
        for name, p in G.synthesis.named_parameters():
            if name.endswith("noise_strength"):
                p.fill_(0.1)
    return G.eval()


def cmd_generate(args: argparse.Namespace) -> int:
    import torch

    from .stylegan2.formats import load_generator
    from .utils.images import make_grid, save_image

    device = _device(args.device)
    if args.generator:
        G = load_generator(args.generator, device=device)
        source = str(args.generator)
    else:
        G = _tiny_generator(args.resolution, args.init_seed).to(device)
        source = f"a freshly initialised {args.resolution}px generator (random weights, seed {args.init_seed})"
    print(f"generator: {source}; {G.img_resolution}px, num_ws={G.num_ws}, "
          f"{sum(p.numel() for p in G.parameters()) / 1e6:.2f} M parameters, device {device}")
    z = torch.stack([torch.randn(G.z_dim, generator=torch.Generator().manual_seed(s)) for s in args.seeds]).to(device)
    start = time.perf_counter()
    images = []
    with torch.inference_mode():
        for chunk in z.split(args.batch_size):
            images.append(G(chunk, truncation_psi=args.truncation, noise_mode=args.noise_mode).cpu())
    seconds = time.perf_counter() - start
    out = save_image(make_grid(torch.cat(images)), args.output)
    print(f"wrote {out} ({len(args.seeds)} images, seeds {args.seeds[0]}..{args.seeds[-1]}, "
          f"truncation {args.truncation}, {seconds:.2f} s)")
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    import torch

    from .stylegan2.formats import load_discriminator, load_generator

    loader = load_discriminator if args.network == "discriminator" else load_generator
    model = loader(args.source)
    out = model.save_pretrained(args.output, dtype=torch.float16 if args.fp16 else None)
    print(f"wrote {out} ({type(model).__name__}, {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params)")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import dataclasses

    from .stylegan2.formats import load_discriminator, load_generator

    loader = load_discriminator if args.network == "discriminator" else load_generator
    model = loader(args.source)
    info = {"class": type(model).__name__, "parameters": sum(p.numel() for p in model.parameters()),
            "config": dataclasses.asdict(model.config)}
    if hasattr(model, "num_ws"):
        info["num_ws"] = model.num_ws
    print(json.dumps(info, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hyperinverter", description=__doc__)
    parser.add_argument("--version", action="version", version=f"hyperinverter {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate", help="render a grid of images from a StyleGAN2 generator")
    p.add_argument("--generator", "-g", type=Path, default=None,
                   help="generator file or folder (NVIDIA .pkl, .pt/.pth, .safetensors, save_pretrained folder); "
                        "default: a freshly initialised tiny generator")
    p.add_argument("--seeds", type=parse_seeds, default=parse_seeds("0-15"), help="latent seeds, e.g. 0-15 or 1,4,9")
    p.add_argument("--truncation", type=float, default=1.0, help="truncation psi (1 = off)")
    p.add_argument("--noise-mode", choices=["const", "random", "none"], default="const")
    p.add_argument("--resolution", type=int, default=64, help="resolution of the freshly initialised generator")
    p.add_argument("--init-seed", type=int, default=0, help="seed of the freshly initialised generator's weights")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    p.add_argument("--output", "-o", type=Path, default=Path("out/generate/grid.png"))
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("convert", help="convert a generator/discriminator file to our format (config.json + safetensors)")
    p.add_argument("source", type=Path)
    p.add_argument("output", type=Path)
    p.add_argument("--network", choices=["generator", "discriminator"], default="generator")
    p.add_argument("--fp16", action="store_true", help="store tensors in float16 (half the size)")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("info", help="print the configuration of a generator/discriminator file")
    p.add_argument("source", type=Path)
    p.add_argument("--network", choices=["generator", "discriminator"], default="generator")
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    from .errors import HyperInverterError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HyperInverterError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
