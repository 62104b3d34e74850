"""HyperInverter inference: the official per-sample-copy algorithm against this package, side by side.

What is compared
----------------
One model per domain with the official architecture and filled random weights (seed 0; every bias,
BatchNorm statistic and noise strength non-trivial): ``churches`` (config-f 256 px, ResNet-34 E1/E2),
``faces`` (config-f 1024 px, IR-SE-50 E1/E2), hidden_dim ``--hidden-dim``; ``tiny64`` / ``tiny128``
are small stand-ins for checking the script. The same inputs ``[B, 3, R, R]`` go to:

* **official**: the official ``HyperInverter.forward`` algorithm: E1, the phase-I render of the batch,
  E2 on the input and then on the phase-I image (two passes), the regressors one after the other, the
  dense ``Δθ`` ``[B, out, in, k, k]``, then for every sample its own deep copy of the generator (the
  official code keeps one per batch element, made once) gets ``θ + Δθ_b`` written into its weights and
  renders that sample at batch 1. The generator modules are this package's (same kernels for both);
  what differs is the algorithm.
* **ours**: ``model.invert(x, batch_size=B)``: one batched pass, factored residuals (low-rank path where
  the cost model picks it, one grouped conv elsewhere), in the precision of the row.

Timing: each method is warmed up (the first call under ``FlopCounterMode`` counts FLOPs; one more on
CUDA), then
``--reps`` repetitions alternate the methods (official first on even repetitions, last on odd ones);
the median is reported. A plain ``conv2d`` ``[8, 512, 32, 32] x [512, 512, 3, 3]`` is timed in the same
run before and after, and "% conv" is the method's achieved GFLOP/s over that rate. Peak memory is
measured in a separate process per (method, batch): peak RSS (``VmHWM``, reset before the measured
call) on CPU, ``max_memory_allocated`` on CUDA, over one inversion after a warm-up, with the model (and
the official side's generator copies) resident.

CUDA rows (when ``--devices`` includes cuda): ours in fp32, TF32, bf16 and bf16 + ``torch.compile``.

How to run
----------
::

    python benchmarks/bench_vs_baseline.py --domains tiny64 --batch-sizes 1,2 --reps 2       # a check (1 min)
    python benchmarks/bench_vs_baseline.py --domains churches,faces --batch-sizes 1,8,32 --reps 3 \\
        --json vs_baseline.json                                                               # the README table
    python benchmarks/bench_vs_baseline.py --devices cuda --domains churches,faces               # GPU rows
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from hyperinverter import HyperInverter, config_f
from hyperinverter.encoders import official_church_encoders, official_face_encoders, tiny_encoders
from hyperinverter.precision import default_precision
from hyperinverter.utils.outputs import write_text_atomic

try:  # python -m benchmarks.bench_vs_baseline
    from ._timing import PeakMemory, count_flops, device_info, int_list, log, markdown, synchronize, tune_cpu_allocator
except ImportError:  # python benchmarks/bench_vs_baseline.py
    from _timing import PeakMemory, count_flops, device_info, int_list, log, markdown, synchronize, tune_cpu_allocator

DOMAINS = ("churches", "faces", "tiny64", "tiny128")
CPU_VARIANTS = ("official", "ours")
CUDA_VARIANTS = ("official", "ours", "ours-tf32", "ours-bf16", "ours-bf16-compiled")


# ----------------------------------------------------------------------------- models and the two algorithms


def build_model(domain: str, hidden_dim: int, device: torch.device) -> HyperInverter:
    """The domain's architecture with filled random weights (seed 0), eval mode."""
    torch.manual_seed(0)
    if domain in ("churches", "faces"):
        res = 256 if domain == "churches" else 1024
        e1, e2 = official_church_encoders() if domain == "churches" else official_face_encoders()
        g = config_f(res)
        extra = {}
    else:
        res = int(domain[4:])
        g = config_f(res, z_dim=128, w_dim=128, channel_base=8192, channel_max=256)
        e1, e2 = tiny_encoders("resnet", num_slots=g.num_ws, w_dim=128)
        extra = {"encoder_input_size": 128}
    from dataclasses import asdict as _asdict

    model = HyperInverter(generator=_asdict(g), w_encoder=_asdict(e1), layer_encoder=_asdict(e2),
                          hidden_dim=hidden_dim, **extra)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point() or name.endswith("resample_filter"):
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            elif t.ndim <= 1:
                t.add_(0.05 * torch.randn(t.shape, generator=gen))
        model.generator.w_avg.copy_(0.1 * torch.randn(model.generator.w_dim, generator=gen))
        for r in model.hypernet.weight_regressors.values():  # residuals of a trained model's size
            r.w2.mul_(30)
    return model.to(device).eval()


def official_copies(model: HyperInverter, batch: int) -> list:
    """One deep copy of the generator's synthesis per batch element, as the official model keeps them."""
    return [copy.deepcopy(model.generator.synthesis) for _ in range(batch)]


@torch.no_grad()
def official_invert(model: HyperInverter, copies: list, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The official forward algorithm (see the module docstring); returns (phase-I images, images)."""
    size = model.config.encoder_input_size
    G = model.generator
    xr = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False) if x.shape[-1] != size else x
    w = model.w_encoder(xr) + G.w_avg
    ws = w.unsqueeze(1).repeat(1, model.num_ws, 1)
    image_w = G.synthesis(ws, noise_mode="const")
    w_bar_codes = model.w_bar_encoder(xr)
    image_w_r = F.interpolate(image_w, size=(size, size), mode="bilinear", align_corners=False) \
        if image_w.shape[-1] != size else image_w
    w_image_codes = model.w_bar_encoder(image_w_r)
    weights = {t.name: model.hypernet.weight_regressors[t.key](w_image_codes[:, t.slot], w_bar_codes[:, t.slot])
               for t in model.targets}  # dense [B, out, in, k, k] each
    base = dict(G.synthesis.named_parameters())
    images = []
    for i, g in enumerate(copies[:x.shape[0]]):
        params = dict(g.named_parameters())
        for name, delta in weights.items():
            torch.add(base[name], delta[i], out=params[name].data)  # θ + Δθ_i in this sample's copy
        images.append(g(ws[i:i + 1], noise_mode="const"))
    return image_w, torch.cat(images)


_COMPILED: dict = {}


def method(name: str, model: HyperInverter, x: torch.Tensor) -> tuple[Callable[[], object], Callable[[], None]]:
    """(call, cleanup) for a variant name."""
    if name == "official":
        copies = official_copies(model, x.shape[0])
        return (lambda: official_invert(model, copies, x)), copies.clear
    precision = "bf16" if "bf16" in name else "fp32"
    if name.endswith("compiled"):  # a compiled copy, so that the other variants stay eager
        if id(model) not in _COMPILED:
            _COMPILED[id(model)] = copy.deepcopy(model).optimize(compile=True)
        model = _COMPILED[id(model)]

    def call():
        tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = "tf32" in name
        try:
            with default_precision(precision):
                return model.invert(x, batch_size=x.shape[0])
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32

    return call, (lambda: None)


# ----------------------------------------------------------------------------- measurements


def plain_conv_rate(device: torch.device, seconds: float = 2.0) -> float:
    """GFLOP/s of one large plain conv2d (the machine's reference rate in this run)."""
    x = torch.randn(8, 512, 32, 32, device=device)
    w = torch.randn(512, 512, 3, 3, device=device)
    flops = 2 * 8 * 512 * 512 * 9 * 32 * 32
    F.conv2d(x, w, padding=1)
    rates, start = [], time.perf_counter()
    while time.perf_counter() - start < seconds or len(rates) < 2:
        synchronize(device)
        t = time.perf_counter()
        F.conv2d(x, w, padding=1)
        synchronize(device)
        rates.append(flops / (time.perf_counter() - t) / 1e9)
    return statistics.median(rates)


@dataclass
class Row:
    """One (domain, device, batch, variant) result."""

    domain: str
    device: str
    batch: int
    variant: str
    ms_per_image: float
    images_per_s: float
    gflop_per_image: float
    gflops: float
    seconds: list = field(default_factory=list)
    peak_mb: Optional[float] = None


def time_domain(domain: str, device: torch.device, batches: list, variants: tuple, reps: int,
                hidden_dim: int) -> tuple[list, float]:
    model = build_model(domain, hidden_dim, device)
    res = model.resolution
    rates = [plain_conv_rate(device)]
    rows = []
    for batch in batches:
        x = (torch.rand(batch, 3, res, res, generator=torch.Generator().manual_seed(batch)) * 2 - 1).to(device)
        calls, cleanups, flops = {}, [], {}
        ours_flops = count_flops(lambda: model.invert(x, batch_size=batch))  # every "ours" variant: same algorithm
        for v in variants:
            call, cleanup = method(v, model, x)
            calls[v] = call
            cleanups.append(cleanup)
            flops[v] = count_flops(call) if v == "official" else ours_flops  # also the first warm-up
            if device.type == "cuda":
                call()  # warm-up (compilation, cuDNN autotuning, allocator)
        seconds = {v: [] for v in variants}
        for rep in range(reps):
            order = list(variants) if rep % 2 == 0 else list(reversed(variants))
            for v in order:
                synchronize(device)
                start = time.perf_counter()
                calls[v]()
                synchronize(device)
                seconds[v].append(time.perf_counter() - start)
                log(f"{domain} {device.type} batch {batch} {v}: {seconds[v][-1]:.2f} s")
        for v in variants:
            t = statistics.median(seconds[v])
            rows.append(Row(domain, device.type, batch, v, 1000 * t / batch, batch / t, flops[v] / batch / 1e9,
                            flops[v] / t / 1e9, seconds[v]))
        for c in cleanups:
            c()
    rates.append(plain_conv_rate(device))
    return rows, statistics.median(rates)


def peak_memory_in_subprocess(domain: str, device: str, batch: int, variant: str, hidden_dim: int) -> Optional[float]:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--domains", domain, "--devices", device,
           "--batch-sizes", str(batch), "--variants", variant, "--hidden-dim", str(hidden_dim)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        log(f"memory worker failed ({' '.join(cmd[2:])}): {out.stderr.strip().splitlines()[-1:]}")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]


def worker(args) -> None:
    """One inversion after a warm-up, peak memory over it; prints {"peak_mb": ...}."""
    device = torch.device(args.devices)
    model = build_model(args.domains, args.hidden_dim, device)
    batch = int_list(args.batch_sizes)[0]
    x = (torch.rand(batch, 3, model.resolution, model.resolution) * 2 - 1).to(device)
    call, _ = method(args.variants, model, x)
    for _ in range(2 if device.type == "cuda" else 1):  # warm-up
        call()
    with PeakMemory(device) as peak:
        call()
    print(json.dumps({"peak_mb": peak.peak_mb, "kind": peak.kind}))


# ----------------------------------------------------------------------------- report


def table(rows: list, conv_rates: dict) -> str:
    base = {(r.domain, r.device, r.batch): r for r in rows if r.variant == "official"}
    header = ["model", "device", "batch", "method", "ms/image", "images/s", "speed-up", "GFLOP/s (% conv)",
              "peak memory", "memory / official"]
    out = []
    for r in rows:
        b = base.get((r.domain, r.device, r.batch))
        rate = conv_rates.get((r.domain, r.device))
        mem = "-" if r.peak_mb is None else f"{r.peak_mb / 1024:.2f} GB"
        ratio = "-" if r.peak_mb is None or b is None or not b.peak_mb else f"{r.peak_mb / b.peak_mb:.2f}"
        out.append([r.domain, r.device, str(r.batch), r.variant, f"{r.ms_per_image:.0f}", f"{r.images_per_s:.2f}",
                    f"{b.ms_per_image / r.ms_per_image:.2f}x" if b else "-",
                    f"{r.gflops:.0f} ({100 * r.gflops / rate:.0f}%)" if rate else f"{r.gflops:.0f}", mem, ratio])
    return markdown(header, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--domains", default="churches,faces", help=f"comma-separated, from {DOMAINS}")
    parser.add_argument("--devices", default="cpu", help="cpu, cuda or cpu,cuda")
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--reps", type=int, default=3, help="timed repetitions per method (alternating)")
    parser.add_argument("--hidden-dim", type=int, default=128)
    parser.add_argument("--variants", default=None, help="default: official,ours (+ tf32/bf16/compiled on CUDA)")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-process peak memory runs")
    parser.add_argument("--memory-batches", default=None, help="batch sizes with a peak-memory run (default: all)")
    parser.add_argument("--memory-variants", default=None, help="methods with a peak-memory run (default: all)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: PyTorch's)")
    parser.add_argument("--json", default=None, help="also write every figure to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tune_cpu_allocator()
    if args.worker:
        return worker(args)
    domains = [d for d in args.domains.split(",") if d]
    if any(d not in DOMAINS for d in domains):
        parser.error(f"unknown domain in {domains}; choose from {DOMAINS}")
    batches = int_list(args.batch_sizes)
    rows, conv_rates, info = [], {}, {}
    for dev_name in args.devices.split(","):
        device = torch.device(dev_name)
        if device.type == "cuda" and not torch.cuda.is_available():
            parser.error("--devices cuda, but no CUDA device is available")
        variants = tuple(args.variants.split(",")) if args.variants else (
            CUDA_VARIANTS if device.type == "cuda" else CPU_VARIANTS)
        info[device.type] = device_info(device)
        for domain in domains:
            log(f"load before {domain} on {device}: {os.getloadavg()}")
            domain_rows, conv_rates[(domain, device.type)] = time_domain(domain, device, batches, variants,
                                                                         args.reps, args.hidden_dim)
            mem_batches = int_list(args.memory_batches) if args.memory_batches else batches
            mem_variants = args.memory_variants.split(",") if args.memory_variants else variants
            if not args.no_memory:
                for r in domain_rows:
                    if r.batch not in mem_batches or r.variant not in mem_variants:
                        continue
                    r.peak_mb = peak_memory_in_subprocess(domain, dev_name, r.batch, r.variant, args.hidden_dim)
            rows += domain_rows
    print(f"devices: {info}; torch {torch.__version__}; plain conv2d GFLOP/s: "
          + ", ".join(f"{d}/{k}: {v:.0f}" for (d, k), v in conv_rates.items()))
    print(table(rows, conv_rates))
    if args.json:
        write_text_atomic(args.json, json.dumps({
            "devices": info, "torch": torch.__version__,
            "conv_gflops": {f"{d}/{k}": v for (d, k), v in conv_rates.items()},
            "rows": [asdict(r) for r in rows]}, indent=2) + "\n")


if __name__ == "__main__":
    main()
