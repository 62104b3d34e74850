"""Benchmark phase-II (hypernetwork) training steps of HyperInverter at the official architectures.

What is measured
----------------
For every domain (``faces``: config-f 1024 px generator with the official IR-SE-50 E1 and E2;
``churches``: config-f 256 px generator with the official ResNet-34 E1 and E2), hypernetwork width
(``--hidden-dims``, official: 128), device (CPU, plus CUDA when available), autocast mode (CUDA
only: off, bf16, fp16; CPU: off) and batch size, a randomly initialised ``HyperInverter`` (seed 0,
float32 weights) is trained the way ``hyperinverter train hypernet`` (``train/hypernet.py``) sets
it up:

* ``model.train(); model.w_encoder.eval(); model.w_encoder.requires_grad_(False)`` (the generator
  is frozen and kept in eval mode by the model itself);
* ``torch.optim.Adam`` (lr 1e-4) over ``model.w_bar_encoder`` and ``model.hypernet`` parameters,
  created afresh for every configuration (its state is allocated by the first step, so it is in the
  peak memory);
* one training step = ``zero_grad``; under ``torch.autocast("cuda", dtype=...)`` when autocast is on:
  ``r = model(x)`` (E1, a no-grad phase-I render, E2 on the input and the phase-I image, the
  hypernetworks and a second render with the residuals) and the trainer's loss
  ``ReconstructionLoss(LossConfig(l2=1.0, lpips=0.0))(r.image.float(), x)`` (MSE on both images
  average-pooled to 256 px); ``loss.backward()``; ``opt.step()``. With fp16 the loss is scaled by a
  ``torch.amp.GradScaler`` (``scale(loss).backward()``, ``scaler.step(opt)``, ``scaler.update()``).
  x is a random batch ``[B, 3, R, R]`` in [-1, 1], the same one every step.

``--warmup`` untimed steps come first (the first of them runs under
``torch.utils.flop_counter.FlopCounterMode`` to count the FLOPs of one step, forward and backward,
as PyTorch counts them, except that the weight gradient of a grouped convolution is counted per
group: PyTorch's formula counts it ``groups`` times, and the generator's layers with per-sample
residuals are convolutions with ``groups = batch``). Then ``--iters`` steps are timed with
``time.perf_counter`` (bracketed by ``torch.cuda.synchronize()`` on CUDA), stopping early once
``--max-seconds`` have been spent on timed steps (at least one is always timed).

Reported per configuration: training images/s, s/step, GFLOP/step and achieved GFLOP/s, images/s
relative to batch 1 (same domain, width, device and autocast mode), the loss of the last step, peak
memory and the memory held when the configuration starts (the model's weights):

* CUDA: ``torch.cuda.max_memory_allocated()`` after ``reset_peak_memory_stats()``;
* CPU (Linux): the process's peak resident set size ``VmHWM`` from ``/proc/self/status``, reset
  before every configuration by writing ``5`` to ``/proc/self/clear_refs``; where that is not
  possible, ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (the process's peak so far, monotone).

A configuration that runs out of memory (``torch.OutOfMemoryError``, or a ``RuntimeError`` whose
message mentions memory, as the CPU allocator raises) is reported as ``OOM``, and the larger batch
sizes of the same device and autocast mode are then skipped; any other error is reported as
``error`` with its message. A process killed by the operating system's OOM killer cannot be caught:
on CPU, faces (1024 px) need well over 20 GB at batch 8.

The trainable parameter count (E2 + hypernetworks, what Adam updates) is printed per model, with
the frozen parts (E1, generator) next to it.

How to run
----------
::

    python benchmarks/bench_train.py --quick              # smoke check: churches, batch 1 and 2, 1 step
    python benchmarks/bench_train.py --domains churches --batch-sizes 1,2,4,8 --max-seconds 90
    python benchmarks/bench_train.py --domains faces --batch-sizes 1,2 --devices cpu
    python benchmarks/bench_train.py --devices cuda --amp off,bf16,fp16 --json train.json
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import time
import traceback
from dataclasses import asdict, dataclass
from typing import Optional

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count, get_shape

from hyperinverter import HyperInverter, config_f
from hyperinverter.encoders import official_church_encoders, official_face_encoders
from hyperinverter.train.config import LossConfig
from hyperinverter.train.recon import ReconstructionLoss
from hyperinverter.utils.outputs import write_text_atomic

try:  # python -m benchmarks.bench_train
    from ._timing import (PeakMemory, device_info, int_list, log, markdown, parse_domains, resolve_devices, synchronize,
                         time_calls, tune_cpu_allocator)
except ImportError:  # python benchmarks/bench_train.py
    from _timing import (PeakMemory, device_info, int_list, log, markdown, parse_domains, resolve_devices, synchronize,
                         time_calls, tune_cpu_allocator)

DOMAINS = {
    "faces": {"resolution": 1024, "encoders": official_face_encoders,
              "description": "FFHQ: config-f 1024 px, IR-SE-50 E1 and E2 (18 slots)"},
    "churches": {"resolution": 256, "encoders": official_church_encoders,
                 "description": "LSUN church: config-f 256 px, ResNet-34 E1 and E2 (14 slots)"},
}
AMP_DTYPES = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}
LR = 1e-4  # HypernetTrainConfig.lr


@dataclass
class Result:
    """All figures of one (domain, hidden_dim, device, autocast, batch) training configuration."""

    domain: str
    hidden_dim: int
    resolution: int
    device: str
    amp: str
    batch: int
    status: str  # "ok", "OOM", "skipped" (OOM at a smaller batch) or "error"
    iters: int = 0
    iter_seconds: list[float] = dataclasses.field(default_factory=list)
    s_per_step: Optional[float] = None
    images_per_s: Optional[float] = None
    gflop_per_step: Optional[float] = None
    gflops: Optional[float] = None
    peak_mem_mb: Optional[float] = None
    baseline_mem_mb: Optional[float] = None
    mem_kind: str = ""
    last_loss: Optional[float] = None
    fp16_skipped_steps: Optional[int] = None  # optimiser steps GradScaler skipped (inf/NaN gradients)
    message: str = ""
    ratio_vs_batch1: Optional[float] = None


# ----------------------------------------------------------------------------- model and training step


def build_model(domain: str, hidden_dim: int) -> HyperInverter:
    e1, e2 = DOMAINS[domain]["encoders"]()
    torch.manual_seed(0)
    return HyperInverter(generator=dataclasses.asdict(config_f(DOMAINS[domain]["resolution"])),
                         w_encoder=dataclasses.asdict(e1), layer_encoder=dataclasses.asdict(e2),
                         hidden_dim=hidden_dim)


def set_training_mode(model: HyperInverter) -> None:
    """As ``HypernetTrainer.build`` / ``_train_mode``: E1 frozen in eval mode, the generator frozen."""
    model.train()
    model.w_encoder.eval()
    model.w_encoder.requires_grad_(False)


def trainable_parameters(model: HyperInverter) -> list[torch.nn.Parameter]:
    """What the trainer's Adam updates: every parameter of E2 and of the hypernetworks."""
    return [p for m in (model.w_bar_encoder, model.hypernet) for p in m.parameters()]


def parameter_info(model: HyperInverter) -> dict:
    n = lambda ps: sum(p.numel() for p in ps)  # noqa: E731
    trainable = trainable_parameters(model)
    requiring_grad = [p for p in model.parameters() if p.requires_grad]
    return {
        "trainable": n(trainable),
        "trainable_by_part": {"w_bar_encoder": n(model.w_bar_encoder.parameters()),
                              "hypernet": n(model.hypernet.parameters())},
        "frozen_by_part": {"w_encoder": n(model.w_encoder.parameters()),
                           "generator": n(model.generator.parameters())},
        "requires_grad": n(requiring_grad),  # should equal "trainable"
        "trainable_not_requiring_grad": n(p for p in trainable if not p.requires_grad),
    }


def random_images(batch: int, resolution: int, device: torch.device) -> torch.Tensor:
    gen = torch.Generator().manual_seed(3)
    return (torch.rand([batch, 3, resolution, resolution], generator=gen) * 2 - 1).to(device)


class TrainStep:
    """One phase-II optimiser step, as ``HypernetTrainer.train_step`` does it (no adversarial term)."""

    def __init__(self, model: HyperInverter, loss_fn: ReconstructionLoss, x: torch.Tensor, amp: str):
        self.model, self.loss_fn, self.x = model, loss_fn, x
        self.dtype = AMP_DTYPES[amp]
        self.params = trainable_parameters(model)
        self.opt = torch.optim.Adam(self.params, lr=LR)
        self.scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None
        self.skipped = 0
        self.last_loss = float("nan")

    def autocast(self):
        if self.dtype is None:
            return torch.autocast(device_type=self.x.device.type, enabled=False)
        return torch.autocast("cuda", dtype=self.dtype)

    def __call__(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        with self.autocast():
            r = self.model(self.x)
            loss, parts = self.loss_fn(r.image.float(), self.x)
        self.last_loss = float(parts["loss"])  # a device tensor: the sync is part of the timed step
        if self.scaler is None:
            loss.backward()
            self.opt.step()
        else:
            scale = self.scaler.get_scale()
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
            self.skipped += int(self.scaler.get_scale() < scale)  # the scale drops when a step is skipped

    def release(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        self.opt.state.clear()
        self.opt = self.scaler = None


def conv_backward_flop(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                       _output_padding, groups, output_mask, out_shape=None, **kwargs) -> int:
    """``aten.convolution_backward`` FLOPs, with the weight gradient of a grouped convolution per group.

    PyTorch's own formula (``torch.utils.flop_counter.conv_backward_flop``) counts the weight-gradient
    term as if ``groups == 1``, ``groups`` times too much. The generator runs every layer with
    per-sample residuals as one convolution with ``groups = batch``, so that formula grows with the
    square of the batch; here the term is divided by ``groups`` (the input-gradient term is unchanged).
    """
    flops = 0
    if output_mask[0]:  # grad_input as conv_transpose(grad_out, weight): groups already in w_shape
        flops += conv_flop_count(grad_out_shape, w_shape, get_shape(out_shape[0]), not transposed)
    if output_mask[1]:  # grad_weight as conv(input, grad_out) with batch and channels swapped
        t = lambda shape: [shape[1], shape[0], *shape[2:]]  # noqa: E731
        a, b = (grad_out_shape, x_shape) if transposed else (x_shape, grad_out_shape)
        flops += conv_flop_count(t(a), t(b), t(get_shape(out_shape[1])), transposed=False) // groups
    return flops


def count_train_flops(fn, device: torch.device) -> int:
    """FLOPs of one call of ``fn`` (forward and backward) as ``FlopCounterMode`` counts them, with the
    grouped-convolution weight gradients counted per group (see :func:`conv_backward_flop`)."""
    counter = FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: conv_backward_flop})
    with counter:
        fn()
    synchronize(device)
    return counter.get_total_flops()


def is_oom(error: BaseException) -> bool:
    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                  getattr(torch.cuda, "OutOfMemoryError", None)) if t is not None)
    if oom_types and isinstance(error, oom_types):
        return True
    text = str(error).lower()
    return isinstance(error, (RuntimeError, MemoryError)) and (
        isinstance(error, MemoryError) or "memory" in text or "can't allocate" in text)


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def bench_config(model: HyperInverter, loss_fn: ReconstructionLoss, domain: str, device: torch.device, amp: str,
                 batch: int, args: argparse.Namespace) -> Result:
    result = Result(domain=domain, hidden_dim=model.config.hidden_dim, resolution=model.resolution,
                    device=device.type, amp=amp, batch=batch, status="ok")
    step: Optional[TrainStep] = None
    mem = PeakMemory(device)
    try:
        with mem:
            x = random_images(batch, model.resolution, device)
            step = TrainStep(model, loss_fn, x, amp)
            flops = count_train_flops(step, device) if args.flops else None  # the first warm-up step
            for _ in range(args.warmup - int(args.flops)):
                step()
            synchronize(device)
            timing = time_calls(step, device, args.iters, args.max_seconds)
    except Exception as e:  # noqa: BLE001 - reported per configuration, the run goes on
        result.status = "OOM" if is_oom(e) else "error"
        text = str(e).strip()
        result.message = f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"[:300]
        if result.status == "error":
            log(traceback.format_exc())
    result.mem_kind, result.baseline_mem_mb = mem.kind, mem.baseline_mb
    if step is not None:
        result.last_loss = step.last_loss
        result.fp16_skipped_steps = step.skipped if amp == "fp16" else None
        step.release()
    step = x = None
    free_memory(device)
    if result.status != "ok":
        return result
    result.peak_mem_mb = mem.peak_mb
    result.iters, result.iter_seconds = len(timing.seconds), timing.seconds
    result.s_per_step = timing.mean
    result.images_per_s = batch / timing.mean
    if flops is not None:
        result.gflop_per_step = flops / 1e9
        result.gflops = flops / timing.mean / 1e9
    return result


def amp_modes(device: torch.device, requested: list[str]) -> list[str]:
    if device.type != "cuda":
        return ["off"]
    modes = list(requested)
    if "bf16" in modes and not torch.cuda.is_bf16_supported():
        log("bf16 autocast is not supported on this GPU: skipped")
        modes.remove("bf16")
    return modes


def run_model(domain: str, hidden_dim: int, devices: list[torch.device],
              args: argparse.Namespace) -> tuple[dict, list[Result]]:
    start = time.perf_counter()
    model = build_model(domain, hidden_dim)
    build_s = time.perf_counter() - start
    set_training_mode(model)
    params = parameter_info(model)
    info = {"domain": domain, "hidden_dim": hidden_dim, "resolution": model.resolution,
            "description": DOMAINS[domain]["description"], "build_seconds": build_s, "parameters": params}
    log(f"{domain} hd{hidden_dim}: built in {build_s:.1f} s, {params['trainable']:,} trainable parameters")
    if params["requires_grad"] != params["trainable"] or params["trainable_not_requiring_grad"]:
        log(f"WARNING: {params['requires_grad']:,} parameters require grad, but the trainer's optimiser "
            f"holds {params['trainable']:,} ({params['trainable_not_requiring_grad']:,} of them frozen)")
    loss_fn = ReconstructionLoss(LossConfig(l2=1.0, lpips=0.0))
    results = []
    for device in devices:
        model.to(device)
        loss_fn.to(device)
        set_training_mode(model)
        for amp in amp_modes(device, args.amp):
            failed_at = None
            for batch in args.batch_sizes:
                if failed_at is not None:
                    results.append(Result(domain=domain, hidden_dim=hidden_dim, resolution=model.resolution,
                                          device=device.type, amp=amp, batch=batch, status="skipped",
                                          message=f"OOM at batch {failed_at}"))
                    continue
                r = bench_config(model, loss_fn, domain, device, amp, batch, args)
                results.append(r)
                if r.status == "ok":
                    log(f"[{device.type}, autocast {amp}] {domain} hd{hidden_dim} batch {batch}: "
                        f"{r.images_per_s:.3g} images/s, {r.s_per_step:.2f} s/step ({r.iters} iters, "
                        f"peak {r.peak_mem_mb:.0f} MB, loss {r.last_loss:.4g})")
                else:
                    log(f"[{device.type}, autocast {amp}] {domain} hd{hidden_dim} batch {batch}: "
                        f"{r.status} ({r.message})")
                    if r.status == "OOM":
                        failed_at = batch
        model.to("cpu")
        loss_fn.to("cpu")
        free_memory(device)
    del model
    gc.collect()
    return info, results


def add_ratios(results: list[Result]) -> None:
    """``ratio_vs_batch1`` = images/s / images/s at batch 1 of the same domain, width, device, autocast."""
    base = {(r.domain, r.hidden_dim, r.device, r.amp): r.images_per_s
            for r in results if r.batch == 1 and r.status == "ok"}
    for r in results:
        b = base.get((r.domain, r.hidden_dim, r.device, r.amp))
        r.ratio_vs_batch1 = r.images_per_s / b if b and r.images_per_s else None


# ----------------------------------------------------------------------------- output


def _opt(value: Optional[float], fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def results_table(results: list[Result]) -> str:
    header = ["domain", "hidden", "res", "device", "autocast", "batch", "iters", "images/s", "s/step",
              "vs batch 1", "GFLOP/step", "GFLOP/s", "peak mem (MB)", "at start (MB)", "last loss"]
    rows = []
    for r in results:
        key = [r.domain, str(r.hidden_dim), str(r.resolution), r.device, r.amp, str(r.batch)]
        if r.status != "ok":
            status = r.status if r.status != "skipped" else f"skipped ({r.message})"
            rows.append(key + ["-", status] + ["-"] * 5 + [_opt(r.baseline_mem_mb, ".0f"), "-"])
            continue
        loss = f"{r.last_loss:.4g}"
        if r.fp16_skipped_steps:
            loss += f" ({r.fp16_skipped_steps} skipped)"
        rows.append(key + [str(r.iters), f"{r.images_per_s:.3g}", f"{r.s_per_step:.3g}",
                           _opt(r.ratio_vs_batch1, ".2f") + ("x" if r.ratio_vs_batch1 is not None else ""),
                           _opt(r.gflop_per_step, ".0f"), _opt(r.gflops, ".1f"), f"{r.peak_mem_mb:.0f}",
                           f"{r.baseline_mem_mb:.0f}", loss])
    return markdown(header, rows)


def params_table(models: list[dict]) -> str:
    header = ["domain", "hidden", "trainable (E2 + hypernet)", "E2", "hypernet", "frozen E1", "frozen generator"]
    rows = []
    for m in models:
        p = m["parameters"]
        rows.append([m["domain"], str(m["hidden_dim"]), f"{p['trainable']:,}",
                     f"{p['trainable_by_part']['w_bar_encoder']:,}", f"{p['trainable_by_part']['hypernet']:,}",
                     f"{p['frozen_by_part']['w_encoder']:,}", f"{p['frozen_by_part']['generator']:,}"])
    return markdown(header, rows)


def report(devices: dict[str, dict], models: list[dict], results: list[Result], load: dict,
           args: argparse.Namespace) -> str:
    lines = ["# HyperInverter phase-II training benchmark (official architectures, random weights, "
             "float32 weights, Adam lr 1e-4, L2 loss at 256 px)", "",
             f"torch {torch.__version__}, Python {platform.python_version()}; warm-up {args.warmup} step(s) "
             f"excluded, up to {args.iters} timed step(s)"
             + (f", at most {args.max_seconds:g} s of timed steps per configuration" if args.max_seconds else "")]
    for name, info in devices.items():
        extra = f", {info['threads']} threads" if "threads" in info else ""
        lines.append(f"- {name}: {info['name']}{extra}")
    if load:
        lines.append(f"- load average (1, 5, 15 min) before: {load['before']}, after: {load['after']}")
    lines += ["", "One step = `r = model(x)`; `ReconstructionLoss(l2=1, lpips=0)(r.image.float(), x)`; backward; "
              "`Adam.step()` (fp16: GradScaler). vs batch 1 = images/s relative to batch 1 (same domain, width, "
              "device, autocast); at start = memory held when the configuration starts (the weights; "
              "the Adam state is allocated inside the configuration).", "", results_table(results), ""]
    kinds = sorted({f"{r.device}: {r.mem_kind}" for r in results if r.mem_kind})
    if kinds:
        lines += ["Peak memory: " + "; ".join(kinds) + ".", ""]
    failures = [r for r in results if r.status in ("OOM", "error")]
    if failures:
        lines += ["Failures: " + "; ".join(f"{r.domain} {r.device} {r.amp} batch {r.batch}: {r.message.rstrip('.')}"
                                          for r in failures) + ".", ""]
    lines += ["## Trainable parameters", "", params_table(models)]
    return "\n".join(lines)


def write_json(path: str, args: argparse.Namespace, devices: dict, models: list[dict], results: list[Result],
               load: dict) -> None:
    payload = {"torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
               "args": vars(args), "load_average": load, "devices": devices, "lr": LR,
               "loss": "ReconstructionLoss(LossConfig(l2=1.0, lpips=0.0))", "models": models,
               "results": [asdict(r) for r in results]}
    write_text_atomic(path, json.dumps(payload, indent=2, default=str) + "\n")


# ----------------------------------------------------------------------------- command line


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--domains", default="faces,churches", help="comma-separated subset of " + ", ".join(DOMAINS))
    parser.add_argument("--hidden-dims", type=int_list, default="128", help="comma-separated hypernetwork widths")
    parser.add_argument("--batch-sizes", type=int_list, default="1,2,4,8", help="comma-separated batch sizes")
    parser.add_argument("--devices", default="auto", help="'auto' (cpu, plus cuda if available) or e.g. 'cpu,cuda'")
    parser.add_argument("--amp", default="off,bf16,fp16",
                        help="autocast modes on CUDA (comma-separated subset of off, bf16, fp16); CPU: off only")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps (>= 1; the first counts FLOPs)")
    parser.add_argument("--iters", type=int, default=2, help="timed steps per configuration")
    parser.add_argument("--max-seconds", type=float, default=None,
                        help="stop timing a configuration after this many seconds (at least one step)")
    parser.add_argument("--no-flops", dest="flops", action="store_false",
                        help="do not count FLOPs during the first warm-up step")
    parser.add_argument("--quick", action="store_true", help="smoke check: churches, batch 1 and 2, 1 iteration")
    parser.add_argument("--json", metavar="PATH", help="also write all figures as JSON to PATH")
    args = parser.parse_args(argv)
    if args.quick:
        args.domains, args.batch_sizes, args.iters = "churches", [1, 2], 1
    args.domains = parse_domains(parser, args.domains, DOMAINS)
    args.amp = [a.strip() for a in args.amp.split(",") if a.strip()]
    if not args.amp or any(a not in AMP_DTYPES for a in args.amp):
        parser.error(f"--amp takes a comma-separated subset of {list(AMP_DTYPES)}")
    if args.warmup < 1 or args.iters < 1:
        parser.error("--warmup and --iters must be >= 1")
    if not args.batch_sizes or min(args.batch_sizes) < 1 or not args.hidden_dims or min(args.hidden_dims) < 1:
        parser.error("--batch-sizes and --hidden-dims must be positive integers")
    return args


def main(argv: Optional[list[str]] = None) -> None:
    tune_cpu_allocator()
    args = parse_args(argv)
    devices = resolve_devices(args.devices)
    load = {"before": [round(v, 2) for v in os.getloadavg()]} if hasattr(os, "getloadavg") else {}
    device_infos = {d.type: device_info(d) for d in devices}
    models, results = [], []
    for domain in args.domains:
        for hidden_dim in args.hidden_dims:
            info, r = run_model(domain, hidden_dim, devices, args)
            models.append(info)
            results += r
    if load:
        load["after"] = [round(v, 2) for v in os.getloadavg()]
    add_ratios(results)
    print(report(device_infos, models, results, load, args))
    if args.json:
        write_json(args.json, args, device_infos, models, results, load)
        log(f"wrote {args.json}")


if __name__ == "__main__":
    main()
