"""CPU allocator tuning for large-tensor workloads (opt-in; called by the command line and benchmarks)."""

from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_tuned = False


def tune_allocator(mmap_threshold: int = 1 << 30, trim_threshold: int = 1 << 30, top_pad: int = 256 << 20) -> bool:
    """Make glibc keep freed large blocks instead of unmapping them at once.

    By default glibc serves every allocation above a few MB with a fresh ``mmap`` and unmaps it on free,
    so each activation tensor of a StyleGAN2 pass is page-faulted in anew: at 256 px, batch 8, this
    machine spent a third of the synthesis time in the kernel (946 -> 603 ms/image with this tuning).
    The price is a process that keeps up to about ``trim_threshold`` bytes of freed memory.
    Returns True when the settings took effect (Linux/glibc only; a no-op elsewhere or when the
    environment variable ``HYPERINVERTER_NO_MALLOC_TUNING`` is set).
    """
    global _tuned
    if _tuned:
        return True
    if not sys.platform.startswith("linux") or os.environ.get("HYPERINVERTER_NO_MALLOC_TUNING"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = all(mallopt(param, value) == 1 for param, value in
             ((_M_MMAP_THRESHOLD, mmap_threshold), (_M_TRIM_THRESHOLD, trim_threshold), (_M_TOP_PAD, top_pad)))
    _tuned = ok
    return ok
