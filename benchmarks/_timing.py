"""Shared pieces of the benchmark scripts: devices, peak memory, timed calls, tables, options.

Imported by ``bench_synthesis.py`` and ``bench_inversion.py`` (run as scripts, this folder is on
``sys.path``; run as ``python -m benchmarks.<name>``, it is imported relative to the package).
"""

from __future__ import annotations

import gc
import platform
import re
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode


@dataclass
class Timing:
    """Seconds of every timed call of one function."""

    seconds: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return sum(self.seconds) / len(self.seconds)


# ----------------------------------------------------------------------------- devices and memory


def cpu_name() -> str:
    """A readable CPU model name (``platform.processor()`` is often empty on Linux)."""
    name = platform.processor()
    if name:
        return name
    try:
        with open("/proc/cpuinfo") as f:
            match = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.MULTILINE)
        if match:
            return match.group(1).strip()
    except OSError:
        pass
    return platform.machine() or "unknown CPU"


def device_info(device: torch.device) -> dict:
    if device.type == "cuda":
        return {"name": torch.cuda.get_device_name(device), "cuda": torch.version.cuda}
    return {"name": cpu_name(), "threads": torch.get_num_threads()}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _read_vm_hwm_mb() -> Optional[float]:
    try:
        with open("/proc/self/status") as f:
            match = re.search(r"^VmHWM:\s+(\d+)\s+kB", f.read(), re.MULTILINE)
        return int(match.group(1)) / 1024 if match else None
    except OSError:
        return None


def _reset_vm_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _ru_maxrss_mb() -> float:
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale / 1024


class PeakMemory:
    """Peak memory over a ``with`` block: CUDA allocator peak, or the process's peak RSS on CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.kind = ""
        self.baseline_mb = self.peak_mb = float("nan")

    def __enter__(self) -> "PeakMemory":
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            self.kind = "CUDA max_memory_allocated"
            self.baseline_mb = torch.cuda.memory_allocated(self.device) / 2**20
        elif _reset_vm_hwm() and _read_vm_hwm_mb() is not None:
            self.kind = "peak RSS (VmHWM, reset per configuration)"
            self.baseline_mb = _read_vm_hwm_mb()
        else:
            self.kind = "process peak RSS (ru_maxrss, monotone)"
            self.baseline_mb = _ru_maxrss_mb()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.peak_mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self.kind.startswith("peak RSS (VmHWM"):
            self.peak_mb = _read_vm_hwm_mb()
        else:
            self.peak_mb = _ru_maxrss_mb()


# ----------------------------------------------------------------------------- timing


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` as ``FlopCounterMode`` counts them (the call is not timed)."""
    counter = FlopCounterMode(display=False)
    with counter:
        fn()
    return counter.get_total_flops()


def time_calls(fn: Callable[[], object], device: torch.device, iters: int, max_seconds: Optional[float]) -> Timing:
    """Time up to ``iters`` calls, stopping once ``max_seconds`` are spent (at least one call)."""
    timing = Timing()
    for _ in range(iters):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        timing.seconds.append(time.perf_counter() - start)
        if max_seconds is not None and sum(timing.seconds) >= max_seconds:
            break
    return timing


def warm_up_and_count(fn: Callable[[], object], device: torch.device, warmup: int) -> int:
    """Run ``warmup`` untimed calls (at least one, which counts the FLOPs); return the FLOPs."""
    flops = count_flops(fn)
    for _ in range(warmup - 1):
        fn()
    synchronize(device)
    return flops


# ----------------------------------------------------------------------------- output and options


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def int_list(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def resolve_devices(text: str) -> list[torch.device]:
    if text == "auto":
        return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    devices = [torch.device(t.strip()) for t in text.split(",") if t.strip()]
    if any(d.type == "cuda" for d in devices) and not torch.cuda.is_available():
        raise SystemExit("--devices asks for cuda, but torch.cuda.is_available() is False")
    return devices


def tune_cpu_allocator() -> bool:
    """Apply the allocator setting the command line uses, and say so (HYPERINVERTER_NO_MALLOC_TUNING=1 to compare)."""
    from hyperinverter.utils.cpu import tune_allocator

    tuned = tune_allocator()
    print(f"glibc allocator tuning: {'on' if tuned else 'off'}")
    return tuned


def parse_domains(parser, text: str, known: Sequence[str]) -> list[str]:
    """``"faces,churches"`` -> list, with a parser error naming unknown entries."""
    domains = [d.strip() for d in text.split(",") if d.strip()]
    unknown = [d for d in domains if d not in known]
    if unknown:
        parser.error(f"unknown domains {unknown}; choose from {list(known)}")
    return domains
