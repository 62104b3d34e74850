"""Benchmark ``G.synthesis`` of the StyleGAN2 config-f generator, with and without per-sample deltas.

What is measured
----------------
For every device (CPU, plus CUDA when available), resolution and batch size, a randomly
initialised config-f ``Generator`` renders a batch of images from random ``ws`` in three modes:

* ``auto``   -- no deltas, ``fused_modconv=None`` (activation scaling + plain batched convs);
* ``fused``  -- no deltas, ``fused_modconv=True`` (one grouped conv per layer, group = sample);
* ``deltas`` -- per-sample residuals on every conv and toRGB kernel (all 4-D synthesis
  parameters), the HyperInverter use case; every layer then runs as one grouped conv.

Everything runs under ``torch.inference_mode()`` in float32 with ``noise_mode="const"``.
``--warmup`` untimed forwards come first; the first of them runs under
``torch.utils.flop_counter.FlopCounterMode`` to count the FLOPs of one forward (convolutions
and matmuls, as PyTorch counts them). Then ``--iters`` forwards are timed with
``time.perf_counter`` (bracketed by ``torch.cuda.synchronize()`` on CUDA), stopping early once
``--max-seconds`` have been spent on timed forwards (at least one is always timed).

Reported per configuration: ms/image, images/s, GFLOP/image, achieved GFLOP/s, that rate as a
percentage of a reference convolution on the same device (``F.conv2d`` of [8, 512, 64, 64] with
[512, 512, 3, 3], timed the same way: "what this machine can do"), throughput relative to the
``auto`` mode, and peak memory:

* CUDA: ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``;
* CPU (Linux): the process's peak resident set size ``VmHWM`` from ``/proc/self/status``, reset
  before every configuration by writing ``5`` to ``/proc/self/clear_refs``; where that is not
  possible, ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (the process's peak so far, monotone).

How to run
----------
::

    python benchmarks/bench_synthesis.py --quick                 # smoke check: 256 px, batch 1 and 8
    python benchmarks/bench_synthesis.py                         # 256 and 1024 px, batch 1 and 8
    python benchmarks/bench_synthesis.py --max-seconds 60 --json synthesis.json
    python benchmarks/bench_synthesis.py --devices cuda --resolutions 1024 --batch-sizes 1,4,16
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from hyperinverter import Generator
from hyperinverter.utils.outputs import write_text_atomic

try:  # python -m benchmarks.bench_synthesis
    from ._timing import (PeakMemory, device_info, int_list, log, markdown, resolve_devices, time_calls,
                          tune_cpu_allocator, warm_up_and_count)
except ImportError:  # python benchmarks/bench_synthesis.py
    from _timing import (PeakMemory, device_info, int_list, log, markdown, resolve_devices, time_calls,
                         tune_cpu_allocator, warm_up_and_count)

MODES = {
    "auto": "no deltas (auto path)",
    "fused": "no deltas (grouped/fused path)",
    "deltas": "per-sample deltas on all conv+toRGB kernels",
}
REF_INPUT_SHAPE = (8, 512, 64, 64)
REF_WEIGHT_SHAPE = (512, 512, 3, 3)
DELTA_SCALE = 0.01  # deltas are DELTA_SCALE * N(0, 1); their size does not affect the cost


@dataclass
class Result:
    """All figures of one (device, resolution, batch, mode) configuration."""

    device: str
    resolution: int
    batch: int
    mode: str
    mode_description: str
    iters: int
    iter_seconds: list[float]
    ms_per_image: float
    images_per_s: float
    gflop_per_image: float
    gflops: float
    pct_of_reference: float
    peak_mem_mb: float
    baseline_mem_mb: float
    mem_kind: str
    ratio_vs_auto: Optional[float] = None


# ----------------------------------------------------------------------------- reference


def reference_conv(device: torch.device, args: argparse.Namespace) -> dict:
    """FLOP rate of one large plain ``F.conv2d``: the machine's attainable conv throughput."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(REF_INPUT_SHAPE, generator=gen).to(device)
    w = torch.randn(REF_WEIGHT_SHAPE, generator=gen).to(device)

    def fn():
        return F.conv2d(x, w, padding=1)

    flops = warm_up_and_count(fn, device, args.warmup)
    timing = time_calls(fn, device, args.iters, args.max_seconds)
    return {"input_shape": list(REF_INPUT_SHAPE), "weight_shape": list(REF_WEIGHT_SHAPE),
            "gflop": flops / 1e9, "iter_seconds": timing.seconds, "gflops": flops / timing.mean / 1e9}


# ----------------------------------------------------------------------------- synthesis


def kernel_deltas(G: Generator, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Random per-sample residuals ``[batch, *shape]`` for every conv and toRGB kernel."""
    gen = torch.Generator().manual_seed(1)
    return {name: (DELTA_SCALE * torch.randn([batch, *p.shape], generator=gen)).to(device)
            for name, p in G.synthesis.named_parameters() if p.ndim == 4}


def synthesis_call(G: Generator, ws: torch.Tensor, mode: str) -> Callable[[], torch.Tensor]:
    """The forward to time for ``mode`` (deltas are built here, outside the timed calls)."""
    if mode == "auto":
        return lambda: G.synthesis(ws, noise_mode="const")
    if mode == "fused":
        return lambda: G.synthesis(ws, noise_mode="const", fused_modconv=True)
    if mode == "deltas":
        deltas = kernel_deltas(G, ws.shape[0], ws.device)
        return lambda: G.synthesis(ws, noise_mode="const", weight_deltas=deltas)
    raise ValueError(f"unknown mode {mode!r}")


def build_generator(resolution: int, device: torch.device) -> Generator:
    torch.manual_seed(0)
    return Generator(img_resolution=resolution).eval().requires_grad_(False).to(device)


def random_ws(G: Generator, batch: int, device: torch.device) -> torch.Tensor:
    gen = torch.Generator().manual_seed(2)
    z = torch.randn([batch, G.z_dim], generator=gen).to(device)
    return G.mapping(z)


def bench_config(G: Generator, device: torch.device, batch: int, mode: str, ref_gflops: float,
                 args: argparse.Namespace) -> Result:
    ws = random_ws(G, batch, device)
    with PeakMemory(device) as mem:
        fn = synthesis_call(G, ws, mode)
        flops = warm_up_and_count(fn, device, args.warmup)
        timing = time_calls(fn, device, args.iters, args.max_seconds)
        del fn
    gflops = flops / timing.mean / 1e9
    return Result(
        device=device.type, resolution=G.img_resolution, batch=batch, mode=mode, mode_description=MODES[mode],
        iters=len(timing.seconds), iter_seconds=timing.seconds,
        ms_per_image=1e3 * timing.mean / batch, images_per_s=batch / timing.mean,
        gflop_per_image=flops / batch / 1e9, gflops=gflops, pct_of_reference=100 * gflops / ref_gflops,
        peak_mem_mb=mem.peak_mb, baseline_mem_mb=mem.baseline_mb, mem_kind=mem.kind,
    )


def add_ratios(results: list[Result]) -> None:
    """Set ``ratio_vs_auto`` = images/s of each mode / images/s of ``auto`` of the same configuration."""
    auto = {(r.device, r.resolution, r.batch): r.images_per_s for r in results if r.mode == "auto"}
    for r in results:
        base = auto.get((r.device, r.resolution, r.batch))
        r.ratio_vs_auto = r.images_per_s / base if base else None


def run_device(device: torch.device, args: argparse.Namespace) -> tuple[dict, list[Result]]:
    with torch.inference_mode():
        ref = reference_conv(device, args)
        info = {**device_info(device), "reference_conv": ref}
        log(f"[{device.type}] {info['name']}: reference conv {ref['gflops']:.1f} GFLOP/s")
        results = []
        for resolution in args.resolutions:
            G = build_generator(resolution, device)
            for batch in args.batch_sizes:
                for mode in args.modes:
                    r = bench_config(G, device, batch, mode, ref["gflops"], args)
                    log(f"[{device.type}] {resolution}px batch {batch} {mode}: {r.ms_per_image:.1f} ms/image "
                        f"({r.iters} iters)")
                    results.append(r)
            del G
            gc.collect()
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return info, results


# ----------------------------------------------------------------------------- output


def markdown_table(results: list[Result]) -> str:
    header = ["device", "res", "batch", "mode", "iters", "ms/image", "images/s", "GFLOP/image", "GFLOP/s",
              "% of ref conv", "vs auto", "peak mem (MB)"]
    rows = [[r.device, str(r.resolution), str(r.batch), r.mode, str(r.iters), f"{r.ms_per_image:.1f}",
             f"{r.images_per_s:.3g}", f"{r.gflop_per_image:.1f}", f"{r.gflops:.1f}",
             f"{r.pct_of_reference:.1f}%", "-" if r.ratio_vs_auto is None else f"{r.ratio_vs_auto:.2f}x",
             f"{r.peak_mem_mb:.0f}"] for r in results]
    return markdown(header, rows)


def report(devices: dict[str, dict], results: list[Result]) -> str:
    lines = ["# G.synthesis benchmark (config-f, float32, inference_mode)", "",
             f"torch {torch.__version__}, Python {platform.python_version()}", ""]
    for name, info in devices.items():
        extra = f", {info['threads']} threads" if "threads" in info else ""
        ref = info["reference_conv"]
        lines.append(f"- {name}: {info['name']}{extra}; reference conv2d {ref['input_shape']} x "
                     f"{ref['weight_shape']}: {ref['gflops']:.1f} GFLOP/s")
    lines += ["", "Modes: " + "; ".join(f"`{k}` = {v}" for k, v in MODES.items()) + ".",
              "vs auto = images/s relative to `auto` at the same device, resolution and batch.", ""]
    kinds = sorted({f"{r.device}: {r.mem_kind}" for r in results})
    lines += [markdown_table(results), "", "Peak memory: " + "; ".join(kinds) + "."]
    return "\n".join(lines)


def write_json(path: str, args: argparse.Namespace, devices: dict[str, dict], results: list[Result]) -> None:
    payload = {"torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
               "args": vars(args), "modes": MODES, "devices": devices, "results": [asdict(r) for r in results]}
    write_text_atomic(path, json.dumps(payload, indent=2) + "\n")


# ----------------------------------------------------------------------------- command line


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--resolutions", type=int_list, default="256,1024", help="comma-separated resolutions")
    parser.add_argument("--batch-sizes", type=int_list, default="1,8", help="comma-separated batch sizes")
    parser.add_argument("--devices", default="auto", help="'auto' (cpu, plus cuda if available) or e.g. 'cpu,cuda'")
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated subset of " + ", ".join(MODES))
    parser.add_argument("--warmup", type=int, default=1, help="untimed forwards (>= 1; the first counts FLOPs)")
    parser.add_argument("--iters", type=int, default=3, help="timed forwards per configuration")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="stop timing a configuration after this many seconds (at least one forward)")
    parser.add_argument("--quick", action="store_true", help="smoke check: 256 px, batch 1 and 8, 1 iteration")
    parser.add_argument("--json", metavar="PATH", help="also write all figures as JSON to PATH")
    args = parser.parse_args(argv)
    if args.quick:
        args.resolutions, args.batch_sizes, args.iters = [256], [1, 8], 1
    args.modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in args.modes if m not in MODES]
    if unknown:
        parser.error(f"unknown modes {unknown}; choose from {list(MODES)}")
    if args.warmup < 1 or args.iters < 1:
        parser.error("--warmup and --iters must be >= 1")
    return args


def main(argv: Optional[list[str]] = None) -> None:
    tune_cpu_allocator()
    args = parse_args(argv)
    devices, results = {}, []
    for device in resolve_devices(args.devices):
        info, device_results = run_device(device, args)
        devices[device.type] = info
        results += device_results
    add_ratios(results)
    print(report(devices, results))
    if args.json:
        write_json(args.json, args, devices, results)
        log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
