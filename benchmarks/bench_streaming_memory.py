"""Peak memory of inverting many images: ``HyperInverter.invert_iter`` (streaming) against keeping every result.

Images are made on the fly (a seeded generator of batches), so the inputs themselves are never all in
memory; the figure is the process's peak resident set size (``ru_maxrss``) after each checkpoint. A flat
streaming curve means memory does not grow with the number of images.

    python benchmarks/bench_streaming_memory.py --model portraits64 --count 1000 --mode stream
    python benchmarks/bench_streaming_memory.py --model portraits64 --count 1000 --mode keep
    python benchmarks/bench_streaming_memory.py --model portraits64 --count 1000 --mode files --work /tmp/x

``--mode files`` writes the images as PNG first (not measured: a child process) and then runs
``invert_files`` (what ``hyperinverter invert`` does) with compact codes, reporting the peak and the codes
size per image. One JSON line per checkpoint: ``{"images": n, "peak_rss_mb": ...}``.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB: ``VmHWM`` of ``/proc/self/status`` on Linux (the peak of
    this address space; ``ru_maxrss`` would also count the parent's memory at the ``fork`` before ``exec``),
    else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)


def reset_peak() -> bool:
    """Reset the peak (``VmHWM``) to the current resident size (Linux ``/proc/self/clear_refs``); False where
    that is not possible (then peaks include what came before)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def image_batches(count: int, size: int, batch: int, seed: int = 0):
    """``count`` random images ``[b, 3, size, size]`` in [-1, 1], made batch by batch."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    for start in range(0, count, batch):
        n = min(batch, count - start)
        yield torch.rand(n, 3, size, size, generator=gen) * 2 - 1


def run(model, count: int, batch: int, mode: str, checkpoints, emit=print, work=None) -> list:
    """Invert ``count`` images in ``mode`` (``stream``: drop each chunk; ``keep``: hold every result, as
    ``invert`` does; ``files``: ``invert_files`` on PNGs in ``work``), reporting at each checkpoint."""
    import torch

    rows = []
    done = 0
    kept = []
    start = time.perf_counter()
    marks = sorted(set(checkpoints))

    def report():
        row = {"mode": mode, "images": done, "peak_rss_mb": round(peak_rss_mb(), 1),
               "seconds": round(time.perf_counter() - start, 1)}
        rows.append(row)
        emit(json.dumps(row))

    if mode in ("stream", "keep"):
        for result in model.invert_iter(image_batches(count, model.resolution, batch), batch_size=batch):
            done += len(result)
            if mode == "keep":
                kept.append(result)
            del result
            while marks and done >= marks[0]:
                marks.pop(0)
                report()
        return rows
    from hyperinverter.workflows import invert_files

    paths = sorted(Path(work, "images").glob("*.png"))[:count]
    out = Path(work, "out")
    seen = 0
    for mark in marks:  # invert_files per slice: the peak after each checkpoint
        invert_files(model, paths[seen:mark], out, batch_size=batch, codes_format="compact")
        done = seen = mark
        report()
    codes = sorted(out.glob("*.codes.safetensors"))
    emit(json.dumps({"codes_bytes_per_image": sum(p.stat().st_size for p in codes) / max(1, len(codes))}))
    return rows


def write_pngs(folder: Path, count: int, size: int) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"img{i:05d}.png")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="portraits64", help="model name or folder")
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--mode", choices=["stream", "keep", "files"], default="stream")
    p.add_argument("--checkpoints", default=None, help="comma-separated image counts (default: count/4, count)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", type=Path, default=None, help="folder for --mode files (PNGs and outputs)")
    p.add_argument("--reset-peak", action="store_true", help="measure from the warm-up on (reset the peak after it)")
    args = p.parse_args(argv)
    import torch

    from hyperinverter import HyperInverter

    torch.set_num_threads(args.threads)
    checkpoints = [int(c) for c in args.checkpoints.split(",")] if args.checkpoints else [args.count // 4, args.count]
    model = HyperInverter.from_pretrained(args.model)
    if args.mode == "files":
        if args.work is None:
            p.error("--mode files needs --work FOLDER")
        import subprocess

        subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                        f"from bench_streaming_memory import write_pngs; from pathlib import Path; "
                        f"write_pngs(Path({str(args.work / 'images')!r}), {args.count}, {model.resolution})"],
                       check=True)
    list(model.invert_iter(next(image_batches(args.batch_size, model.resolution, args.batch_size)),
                           batch_size=args.batch_size))  # warm-up: allocator, lazy inits
    if args.reset_peak and not reset_peak():
        print("warning: cannot reset the peak here (no /proc/self/clear_refs); peaks include the start-up")
    print(json.dumps({"mode": args.mode, "images": 0, "peak_rss_mb": round(peak_rss_mb(), 1)}))
    run(model, args.count, args.batch_size, args.mode, checkpoints, work=args.work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
