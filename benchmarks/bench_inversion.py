"""Benchmark one full HyperInverter inversion (E1, E2, hypernetworks, two generator passes).

What is measured
----------------
For every domain (``faces``: config-f 1024 px generator with the official IR-SE-50 E1 and E2;
``churches``: config-f 256 px generator with the official ResNet-34 E1 and E2), hypernetwork width
(``--hidden-dims``), device (CPU, plus CUDA when available) and batch size, a randomly initialised
``HyperInverter`` (seed 0, float32, ``eval()``) inverts a batch of random images
``[B, 3, R, R]`` in [-1, 1] (R = the generator resolution) with ``model.invert(x, batch_size=B)``:
phase I ``w = E1(x) + w_avg`` and a generator render, phase II E2 over the input and the phase-I
image, the hypernetworks' per-sample residuals and a second render with them.

Everything runs under ``torch.inference_mode()``. ``--warmup`` untimed inversions come first; the
first of them runs under ``torch.utils.flop_counter.FlopCounterMode`` to count the FLOPs of one
inversion (convolutions and matmuls, as PyTorch counts them). Then ``--iters`` inversions are timed
with ``time.perf_counter`` (bracketed by ``torch.cuda.synchronize()`` on CUDA), stopping early once
``--max-seconds`` have been spent on timed calls (at least one is always timed).

Reported per configuration: ms/image, images/s, GFLOP/image, achieved GFLOP/s, throughput relative
to batch 1 of the same domain, width and device, and peak memory (with the memory held when the
configuration starts, mostly the model's weights):

* CUDA: ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``;
* CPU (Linux): the process's peak resident set size ``VmHWM`` from ``/proc/self/status``, reset
  before every configuration by writing ``5`` to ``/proc/self/clear_refs``; where that is not
  possible, ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (the process's peak so far, monotone).

Stage breakdown (at ``--breakdown-batch``, by default the largest batch size): the model's own
methods are timed one by one, the same way (warm-up, ``--iters``, ``--max-seconds`` per stage), on
inputs made by an untimed inversion: E1 = ``encode_w(x)``; generator phase I = ``render(ws)``;
E2 = ``w_bar_encoder`` on the input and the phase-I image (both at the encoder input size, one
concatenated pass as ``predict_deltas`` does in eval mode); hypernet = ``predict_deltas(x, image_w)``
minus E2; generator phase II = ``render(ws, deltas)``. ``hypernetwork`` called directly on the E2
codes is also timed (``hypernet_direct`` in the JSON). "other" is the full inversion minus the sum
of the stages (input checks, resizing, the repeat of ``w``).

Parameter counts per part (``model.parameter_counts()``: parameters and buffers) are printed next
to the official ones: the ``counts_by_prefix`` of the reference manifests
``hyperinverter_{faces,churches}_hd{128,256}.json`` (``--reference-dir``) for E1, E2 and the
hypernetwork, with built-in hd128 values when a manifest is missing, and ``num_float_elements`` of
``nvlabs_G_ema_config-f_{1024,256}.json`` for the generator.

Each model holds 1.2-1.5 GB (hd128) or 2.9-3.2 GB (hd256) of float32 weights; on a small CPU a faces
batch of 8 takes minutes.
Other processes on the machine change CPU timings: the load average before and after is printed.

How to run
----------
::

    python benchmarks/bench_inversion.py --quick                 # smoke check: churches, batch 1 and 2
    python benchmarks/bench_inversion.py                         # faces and churches, batch 1 and 8
    python benchmarks/bench_inversion.py --domains churches --batch-sizes 1,8 --max-seconds 120
    python benchmarks/bench_inversion.py --hidden-dims 128,256 --devices cuda --json inversion.json
    python benchmarks/bench_inversion.py --hidden-dims 128,256 --counts-only   # parameter counts only
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from hyperinverter import HyperInverter, config_f
from hyperinverter.encoders import official_church_encoders, official_face_encoders
from hyperinverter.utils.outputs import write_text_atomic

try:  # python -m benchmarks.bench_inversion
    from ._timing import (PeakMemory, device_info, int_list, log, markdown, parse_domains, resolve_devices, time_calls,
                          tune_cpu_allocator, warm_up_and_count)
except ImportError:  # python benchmarks/bench_inversion.py
    from _timing import (PeakMemory, device_info, int_list, log, markdown, parse_domains, resolve_devices, time_calls,
                         tune_cpu_allocator, warm_up_and_count)

DOMAINS = {
    "faces": {"resolution": 1024, "encoders": official_face_encoders,
              "description": "FFHQ: config-f 1024 px, IR-SE-50 E1 and E2 (18 slots)"},
    "churches": {"resolution": 256, "encoders": official_church_encoders,
                 "description": "LSUN church: config-f 256 px, ResNet-34 E1 and E2 (14 slots)"},
}
PARTS = ("w_encoder", "w_bar_encoder", "hypernet", "generator")
# Official element counts (parameters + buffers) from the reference manifests, used when the
# manifest files are not at hand (hd256 values are only read from the files).
OFFICIAL_FALLBACK = {
    ("faces", 128): {"hypernet": 184_665_563, "w_encoder": 31_237_108, "w_bar_encoder": 135_003_636},
    ("churches", 128): {"hypernet": 171_608_213, "w_encoder": 21_564_452, "w_bar_encoder": 97_013_284},
}
DEFAULT_REFERENCE_DIRS = (Path("/work/shared/reference"), Path(__file__).resolve().parents[1] / "shared" / "reference")
STAGES = {
    "E1": "encode_w(x)",
    "generator I": "render(ws)",
    "E2": "w_bar_encoder(cat[x, image_w])",
    "hypernet": "predict_deltas(x, image_w) - E2",
    "generator II": "render(ws, deltas)",
}


@dataclass
class Result:
    """All figures of one (domain, hidden_dim, device, batch) full-inversion configuration."""

    domain: str
    hidden_dim: int
    resolution: int
    device: str
    batch: int
    iters: int
    iter_seconds: list[float]
    ms_per_image: float
    images_per_s: float
    gflop_per_image: float
    gflops: float
    peak_mem_mb: float
    baseline_mem_mb: float
    mem_kind: str
    ratio_vs_batch1: Optional[float] = None


@dataclass
class Stage:
    """One timed stage of the breakdown (``measured`` False for the derived hypernet row)."""

    domain: str
    hidden_dim: int
    device: str
    batch: int
    stage: str
    call: str
    measured: bool
    iters: int
    iter_seconds: list[float]
    ms_per_image: float
    gflop_per_image: float
    peak_mem_mb: float
    baseline_mem_mb: float
    pct_of_inversion: Optional[float] = None


@dataclass
class Breakdown:
    domain: str
    hidden_dim: int
    device: str
    batch: int
    stages: list[Stage]
    hypernet_direct: Stage
    predict_deltas: Stage
    inversion_ms_per_image: Optional[float]
    stages_ms_per_image: float
    other_ms_per_image: Optional[float]


# ----------------------------------------------------------------------------- models and counts


def build_model(domain: str, hidden_dim: int) -> HyperInverter:
    e1, e2 = DOMAINS[domain]["encoders"]()
    torch.manual_seed(0)
    model = HyperInverter(generator=dataclasses.asdict(config_f(DOMAINS[domain]["resolution"])),
                          w_encoder=dataclasses.asdict(e1), layer_encoder=dataclasses.asdict(e2),
                          hidden_dim=hidden_dim)
    return model.eval().requires_grad_(False)


def find_reference_dir(text: Optional[str]) -> Optional[Path]:
    candidates = [Path(text)] if text else list(DEFAULT_REFERENCE_DIRS)
    return next((p for p in candidates if p.is_dir()), None)


def _header(path: Path) -> Optional[dict]:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def official_counts(domain: str, hidden_dim: int, ref_dir: Optional[Path]) -> dict[str, dict]:
    """``{part: {"count": int, "source": str}}`` for the parts with a known official count."""
    out = {}
    manifest = _header(ref_dir / f"hyperinverter_{domain}_hd{hidden_dim}.json") if ref_dir else None
    if manifest is not None:
        by_prefix = manifest["header"]["counts_by_prefix"]
        for part in ("w_encoder", "w_bar_encoder", "hypernet"):
            if part in by_prefix:
                out[part] = {"count": by_prefix[part]["num_elements"],
                             "source": f"hyperinverter_{domain}_hd{hidden_dim}.json counts_by_prefix"}
    else:
        for part, count in OFFICIAL_FALLBACK.get((domain, hidden_dim), {}).items():
            out[part] = {"count": count, "source": "built-in (reference manifest not found)"}
    resolution = DOMAINS[domain]["resolution"]
    g = _header(ref_dir / f"nvlabs_G_ema_config-f_{resolution}.json") if ref_dir else None
    if g is not None:
        out["generator"] = {"count": g["num_float_elements"],
                            "source": f"nvlabs_G_ema_config-f_{resolution}.json num_float_elements"}
    return out


# ----------------------------------------------------------------------------- measurements


def random_images(batch: int, resolution: int, device: torch.device) -> torch.Tensor:
    gen = torch.Generator().manual_seed(3)
    return (torch.rand([batch, 3, resolution, resolution], generator=gen) * 2 - 1).to(device)


def measure(fn: Callable[[], object], device: torch.device, args: argparse.Namespace):
    """(flops, timing, memory) of ``fn``: warm-up (the first counts FLOPs), then timed calls."""
    with PeakMemory(device) as mem:
        flops = warm_up_and_count(fn, device, args.warmup)
        timing = time_calls(fn, device, args.iters, args.max_seconds)
    return flops, timing, mem


def bench_inversion(model: HyperInverter, domain: str, device: torch.device, batch: int,
                    args: argparse.Namespace) -> Result:
    x = random_images(batch, model.resolution, device)
    flops, timing, mem = measure(lambda: model.invert(x, batch_size=batch), device, args)
    return Result(
        domain=domain, hidden_dim=model.config.hidden_dim, resolution=model.resolution, device=device.type,
        batch=batch, iters=len(timing.seconds), iter_seconds=timing.seconds,
        ms_per_image=1e3 * timing.mean / batch, images_per_s=batch / timing.mean,
        gflop_per_image=flops / batch / 1e9, gflops=flops / timing.mean / 1e9,
        peak_mem_mb=mem.peak_mb, baseline_mem_mb=mem.baseline_mb, mem_kind=mem.kind,
    )


def encoder_input(model: HyperInverter, images: torch.Tensor) -> torch.Tensor:
    """Images at the encoder input size, resized as the model does (bilinear, no antialias)."""
    size = model.config.encoder_input_size
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


def bench_stages(model: HyperInverter, domain: str, device: torch.device, batch: int,
                 inversion: Optional[Result], args: argparse.Namespace) -> Breakdown:
    x = random_images(batch, model.resolution, device)
    ref = model.invert(x, batch_size=batch)  # untimed: the intermediates each stage takes
    ws, image_w, deltas = ref.ws, ref.image_w, ref.deltas
    e2_input = torch.cat([encoder_input(model, x), encoder_input(model, image_w)])
    input_codes, image_codes = model.w_bar_encoder(e2_input).chunk(2)
    calls = {
        "E1": lambda: model.encode_w(x),
        "generator I": lambda: model.render(ws),
        "E2": lambda: model.w_bar_encoder(e2_input),
        "predict_deltas": lambda: model.predict_deltas(x, image_w),
        "hypernet_direct": lambda: model.hypernet(image_codes, input_codes),
        "generator II": lambda: model.render(ws, deltas),
    }
    descriptions = {**STAGES, "predict_deltas": "predict_deltas(x, image_w)",
                    "hypernet_direct": "hypernet(image_codes, input_codes)"}
    measured = {}
    for name, fn in calls.items():
        flops, timing, mem = measure(fn, device, args)
        measured[name] = Stage(
            domain=domain, hidden_dim=model.config.hidden_dim, device=device.type, batch=batch, stage=name,
            call=descriptions[name], measured=True, iters=len(timing.seconds), iter_seconds=timing.seconds,
            ms_per_image=1e3 * timing.mean / batch, gflop_per_image=flops / batch / 1e9,
            peak_mem_mb=mem.peak_mb, baseline_mem_mb=mem.baseline_mb,
        )
        log(f"  [{device.type}] {domain} hd{model.config.hidden_dim} batch {batch} stage {name}: "
            f"{measured[name].ms_per_image:.1f} ms/image ({len(timing.seconds)} iters)")
    pd, e2 = measured["predict_deltas"], measured["E2"]
    hypernet = Stage(
        domain=domain, hidden_dim=model.config.hidden_dim, device=device.type, batch=batch, stage="hypernet",
        call=STAGES["hypernet"], measured=False, iters=min(pd.iters, e2.iters), iter_seconds=[],
        ms_per_image=pd.ms_per_image - e2.ms_per_image, gflop_per_image=pd.gflop_per_image - e2.gflop_per_image,
        peak_mem_mb=pd.peak_mem_mb, baseline_mem_mb=pd.baseline_mem_mb,
    )
    stages = [measured["E1"], measured["generator I"], e2, hypernet, measured["generator II"]]
    total = sum(s.ms_per_image for s in stages)
    full = inversion.ms_per_image if inversion is not None else None
    for s in stages + [pd, measured["hypernet_direct"]]:
        s.pct_of_inversion = 100 * s.ms_per_image / full if full else None
    return Breakdown(domain=domain, hidden_dim=model.config.hidden_dim, device=device.type, batch=batch,
                     stages=stages, hypernet_direct=measured["hypernet_direct"], predict_deltas=pd,
                     inversion_ms_per_image=full, stages_ms_per_image=total,
                     other_ms_per_image=None if full is None else full - total)


def add_ratios(results: list[Result]) -> None:
    """``ratio_vs_batch1`` = images/s / images/s at batch 1 of the same domain, width and device."""
    base = {(r.domain, r.hidden_dim, r.device): r.images_per_s for r in results if r.batch == 1}
    for r in results:
        b = base.get((r.domain, r.hidden_dim, r.device))
        r.ratio_vs_batch1 = r.images_per_s / b if b else None


def run_model(domain: str, hidden_dim: int, devices: list[torch.device], ref_dir: Optional[Path],
              args: argparse.Namespace) -> tuple[dict, list[Result], list[Breakdown]]:
    start = time.perf_counter()
    model = build_model(domain, hidden_dim)
    build_s = time.perf_counter() - start
    counts = model.parameter_counts()
    info = {"domain": domain, "hidden_dim": hidden_dim, "resolution": model.resolution,
            "description": DOMAINS[domain]["description"], "build_seconds": build_s,
            "float32_mb": 4 * sum(counts.values()) / 2**20, "counts": counts,
            "official": official_counts(domain, hidden_dim, ref_dir)}
    log(f"{domain} hd{hidden_dim}: built in {build_s:.1f} s, {sum(counts.values()):,} elements "
        f"({info['float32_mb']:.0f} MB float32)")
    results, breakdowns = [], []
    for device in [] if args.counts_only else devices:
        model.to(device)
        with torch.inference_mode():
            by_batch = {}
            for batch in args.batch_sizes:
                r = bench_inversion(model, domain, device, batch, args)
                log(f"[{device.type}] {domain} hd{hidden_dim} batch {batch}: {r.ms_per_image:.1f} ms/image "
                    f"({r.iters} iters, peak {r.peak_mem_mb:.0f} MB)")
                results.append(r)
                by_batch[batch] = r
            if args.breakdown_batch:
                b = args.breakdown_batch
                breakdowns.append(bench_stages(model, domain, device, b, by_batch.get(b), args))
        model.to("cpu")
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    del model
    gc.collect()
    return info, results, breakdowns


# ----------------------------------------------------------------------------- output


def _opt(value: Optional[float], fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _ratio(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f}x"


def results_table(results: list[Result]) -> str:
    header = ["domain", "hidden", "res", "device", "batch", "iters", "ms/image", "images/s", "vs batch 1",
              "GFLOP/image", "GFLOP/s", "peak mem (MB)", "at start (MB)"]
    rows = [[r.domain, str(r.hidden_dim), str(r.resolution), r.device, str(r.batch), str(r.iters),
             f"{r.ms_per_image:.1f}", f"{r.images_per_s:.3g}", _ratio(r.ratio_vs_batch1),
             f"{r.gflop_per_image:.1f}", f"{r.gflops:.1f}", f"{r.peak_mem_mb:.0f}",
             f"{r.baseline_mem_mb:.0f}"] for r in results]
    return markdown(header, rows)


def breakdown_table(breakdowns: list[Breakdown]) -> str:
    header = ["domain", "hidden", "device", "batch", "stage", "call", "iters", "ms/image", "% of inversion",
              "GFLOP/image", "peak mem (MB)"]
    rows = []
    for b in breakdowns:
        key = [b.domain, str(b.hidden_dim), b.device, str(b.batch)]
        for s in b.stages:
            rows.append(key + [s.stage, f"`{s.call}`", str(s.iters) if s.measured else "(derived)",
                               f"{s.ms_per_image:.1f}", _opt(s.pct_of_inversion, ".1f"),
                               f"{s.gflop_per_image:.2f}", f"{s.peak_mem_mb:.0f}"])
        h = b.hypernet_direct
        rows.append(key + ["(hypernet direct)", f"`{h.call}`", str(h.iters), f"{h.ms_per_image:.1f}",
                           _opt(h.pct_of_inversion, ".1f"), f"{h.gflop_per_image:.2f}", f"{h.peak_mem_mb:.0f}"])
        full = b.inversion_ms_per_image
        rows.append(key + ["sum of stages", "", "", f"{b.stages_ms_per_image:.1f}",
                           _opt(100 * b.stages_ms_per_image / full if full else None, ".1f"), "", ""])
        rows.append(key + ["other", "inversion - sum", "", _opt(b.other_ms_per_image, ".1f"),
                           _opt(100 * b.other_ms_per_image / full if full else None, ".1f"), "", ""])
    return markdown(header, rows)


def counts_table(models: list[dict]) -> str:
    header = ["domain", "hidden", "part", "ours", "official", "ours - official"]
    rows = []
    for m in models:
        key = [m["domain"], str(m["hidden_dim"])]
        for part in PARTS:
            ours, off = m["counts"][part], m["official"].get(part, {}).get("count")
            rows.append(key + [part, f"{ours:,}", _opt(off, ","), "-" if off is None else f"{ours - off:+,}"])
        total = sum(m["counts"].values())
        rows.append(key + ["total", f"{total:,}", "", ""])
    return markdown(header, rows)


def report(devices: dict[str, dict], models: list[dict], results: list[Result], breakdowns: list[Breakdown],
           load: dict, ref_dir: Optional[Path]) -> str:
    lines = ["# HyperInverter inversion benchmark (official architectures, random weights, float32, "
             "inference_mode)", "",
             f"torch {torch.__version__}, Python {platform.python_version()}"]
    for name, info in devices.items():
        extra = f", {info['threads']} threads" if "threads" in info else ""
        lines.append(f"- {name}: {info['name']}{extra}")
    if load:
        lines.append(f"- load average (1, 5, 15 min) before: {load['before']}, after: {load['after']}")
    lines.append("")
    if results:
        lines += ["Full inversion = `model.invert(x, batch_size=B)`, x random [B, 3, R, R] in [-1, 1]; "
                  "vs batch 1 = images/s relative to batch 1 (same domain, width, device); "
                  "at start = memory held when the configuration starts (mostly the weights).", "",
                  results_table(results), ""]
        kinds = sorted({f"{r.device}: {r.mem_kind}" for r in results})
        lines += ["Peak memory: " + "; ".join(kinds) + ".", ""]
    if breakdowns:
        lines += ["## Stage breakdown", "",
                  "Each stage timed on its own (warm-up, then timed calls); hypernet = `predict_deltas` "
                  "minus E2; % of the full inversion at the same batch.", "", breakdown_table(breakdowns), ""]
    lines += ["## Parameter counts (elements, parameters + buffers)", "",
              f"Official: reference manifests in {ref_dir}" if ref_dir else
              "Official: built-in hd128 values (no reference manifests found)", "", counts_table(models)]
    sources = sorted({v["source"] for m in models for v in m["official"].values()})
    if sources:
        lines += ["", "Sources: " + "; ".join(sources) + "."]
    return "\n".join(lines)


def write_json(path: str, args: argparse.Namespace, devices: dict, models: list[dict], results: list[Result],
               breakdowns: list[Breakdown], load: dict) -> None:
    payload = {"torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
               "args": vars(args), "load_average": load, "devices": devices, "stages": STAGES, "models": models,
               "results": [asdict(r) for r in results], "breakdowns": [asdict(b) for b in breakdowns]}
    write_text_atomic(path, json.dumps(payload, indent=2, default=str) + "\n")


# ----------------------------------------------------------------------------- command line


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--domains", default="faces,churches", help="comma-separated subset of " + ", ".join(DOMAINS))
    parser.add_argument("--hidden-dims", type=int_list, default="128", help="comma-separated hypernetwork widths")
    parser.add_argument("--batch-sizes", type=int_list, default="1,8", help="comma-separated batch sizes")
    parser.add_argument("--devices", default="auto", help="'auto' (cpu, plus cuda if available) or e.g. 'cpu,cuda'")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls (>= 1; the first counts FLOPs)")
    parser.add_argument("--iters", type=int, default=3, help="timed calls per configuration and per stage")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="stop timing a configuration (or a stage) after this many seconds (at least one call)")
    parser.add_argument("--breakdown-batch", type=int, default=None,
                        help="batch size of the stage breakdown (default: the largest batch size; 0: none)")
    parser.add_argument("--reference-dir", default=None,
                        help="folder of the reference manifests (default: the first of "
                             + ", ".join(str(p) for p in DEFAULT_REFERENCE_DIRS) + " that exists)")
    parser.add_argument("--quick", action="store_true", help="smoke check: churches, batch 1 and 2, 1 iteration")
    parser.add_argument("--counts-only", action="store_true", help="only build the models and print parameter counts")
    parser.add_argument("--json", metavar="PATH", help="also write all figures as JSON to PATH")
    args = parser.parse_args(argv)
    if args.quick:
        args.domains, args.batch_sizes, args.iters = "churches", [1, 2], 1
    args.domains = parse_domains(parser, args.domains, DOMAINS)
    if args.warmup < 1 or args.iters < 1:
        parser.error("--warmup and --iters must be >= 1")
    if not args.batch_sizes or min(args.batch_sizes) < 1 or not args.hidden_dims or min(args.hidden_dims) < 1:
        parser.error("--batch-sizes and --hidden-dims must be positive integers")
    if args.breakdown_batch is None:
        args.breakdown_batch = max(args.batch_sizes)
    if args.breakdown_batch < 0:
        parser.error("--breakdown-batch must be >= 0")
    return args


def main(argv: Optional[list[str]] = None) -> None:
    tune_cpu_allocator()
    args = parse_args(argv)
    devices = resolve_devices(args.devices)
    ref_dir = find_reference_dir(args.reference_dir)
    if ref_dir is None:
        log("reference manifests not found: official counts are the built-in hd128 values")
    load = {"before": [round(v, 2) for v in os.getloadavg()]} if hasattr(os, "getloadavg") else {}
    device_infos = {d.type: device_info(d) for d in devices}
    models, results, breakdowns = [], [], []
    for domain in args.domains:
        for hidden_dim in args.hidden_dims:
            info, r, b = run_model(domain, hidden_dim, devices, ref_dir, args)
            models.append(info)
            results += r
            breakdowns += b
    if load:
        load["after"] = [round(v, 2) for v in os.getloadavg()]
    add_ratios(results)
    print(report(device_infos, models, results, breakdowns, load, ref_dir))
    if args.json:
        write_json(args.json, args, device_infos, models, results, breakdowns, load)
        log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
