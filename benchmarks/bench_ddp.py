"""Step time of ``train hypernet`` on 1, 2 and 4 gloo (CPU) processes: DistributedDataParallel's cost at tiny size.

What is measured
----------------
The tiny hypernetwork configuration of the tests (``tests/test_train.py``: a 16 px StyleGAN2, a W-encoder and
E2 with an IR-SE trunk of widths 8-16, hypernetworks of width 4, encoder input 64 px, L2 loss only) trains under
``torchrun --standalone --nproc_per_node N -m hyperinverter train hypernet`` for ``--steps`` steps on the same
global batch (``--batch``, split over the N processes) with ``run.log_every = --window``. The trainer's own
``img/s`` of each log window (images of the global batch per second of wall time, data loading included) gives
the step time ``batch / (img/s)``; the first window (start-up, first allocations, DDP's bucket rebuild) is
dropped and the rest averaged. Process start-up (imports, the process group) is not in the figure.

Each process gets ``max(1, cores // N)`` intra-op threads (``OMP_NUM_THREADS``), so that N processes never
oversubscribe the machine more than one does. On a machine with fewer cores than processes the N-process runs
share cores: the figures then show the cost of the communication and of the smaller per-process batches, not a
speed-up. Other load on the machine (reported as the 1-minute load average) makes the absolute figures noisy;
compare the ratios.

Usage::

    python benchmarks/bench_ddp.py                        # 1, 2, 4 processes, batch 8, 40 steps
    python benchmarks/bench_ddp.py --worlds 1 2 --batch 16 --json out.json

Nothing is asserted: it prints a table (and writes JSON with ``--json``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hyperinverter.utils.outputs import write_text_atomic

#: The tests' tiny networks (tests/test_train.py: TINY_G, TINY_BACKBONE).
TINY_G = {"img_resolution": 16, "z_dim": 16, "w_dim": 16, "channel_base": 128, "channel_max": 16,
          "mapping_layers": 2}
TINY_BACKBONE = "{kind: ir_se, blocks: [1, 1, 1, 1], widths: [8, 8, 16, 16], stem_width: 8, se_reduction: 4}"


def prepare(root: Path) -> dict:
    """24 smooth colour images, a tiny generator and a W-encoder trained for one step -> their paths."""
    from hyperinverter import Generator
    from hyperinverter.train import get_trainer, load_train_config

    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:16, 0:16] / 15.0
    for i in range(24):
        a, b, c = rng.uniform(0, 1, 3)
        img = np.stack([a * xx + (1 - a) * yy, b * yy, c * (1 - xx)], -1)
        Image.fromarray((img * 255).astype(np.uint8)).save(images / f"{i:02d}.png")
    torch.manual_seed(0)
    G = Generator(**TINY_G)
    G.compute_w_avg(500)
    G.save_pretrained(root / "generator")
    config = load_train_config("w-encoder", None, [
        f"run.out_dir={root / 'w'}", "run.steps=1", "run.batch_size=4", "run.workers=0", "run.image_every=0",
        "run.val_every=0", "run.ckpt_every=0", f"data.train={images}", f"generator={root / 'generator'}",
        "encoder_input_size=32", f"encoder={{backbone: {TINY_BACKBONE}}}", "losses.lpips=0", "run.device=cpu"])
    trainer = get_trainer("w-encoder")(config, progress=False)
    try:
        trainer.run()
    finally:
        trainer.close()
    return {"images": images, "generator": root / "generator", "w_encoder": root / "w" / "w_encoder"}


def run(world: int, paths: dict, out: Path, batch: int, steps: int, window: int, threads: int) -> dict:
    """One torchrun job of ``world`` processes -> its step times (seconds) per log window after the first."""
    overrides = [f"run.out_dir={out}", f"run.steps={steps}", f"run.batch_size={batch}", f"run.log_every={window}",
                 "run.workers=0", "run.image_every=0", "run.val_every=0", "run.ckpt_every=0", "run.device=cpu",
                 f"data.train={paths['images']}", f"generator={paths['generator']}",
                 f"w_encoder={paths['w_encoder']}", "encoder_input_size=64", "hidden_dim=4", "losses.lpips=0",
                 f"layer_encoder={{backbone: {TINY_BACKBONE}}}"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(world),
           "-m", "hyperinverter", "train", "hypernet", "--quiet", *overrides]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    wall = time.perf_counter() - t0
    if r.returncode:
        raise SystemExit(f"{world} process(es) failed:\n{r.stderr[-3000:]}")
    rates = [float(line.split("img/s=")[1].split()[0]) for line in (out / "log.txt").read_text().splitlines()
             if "img/s=" in line]
    step_times = [batch / rate for rate in rates[1:]]
    return {"processes": world, "threads_per_process": threads, "step_s": float(np.mean(step_times)),
            "step_s_windows": step_times, "job_wall_s": wall}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, nargs="+", default=[1, 2, 4], help="process counts (default 1 2 4)")
    parser.add_argument("--batch", type=int, default=8, help="global batch, split over the processes (default 8)")
    parser.add_argument("--steps", type=int, default=40, help="steps per job (default 40)")
    parser.add_argument("--window", type=int, default=10, help="run.log_every: steps per timed window (default 10)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    bad = [w for w in args.worlds if args.batch % w]
    if bad:
        parser.error(f"--batch {args.batch} does not split over {bad} processes")
    if args.steps < 2 * args.window:
        parser.error("--steps must cover at least two windows (the first is dropped)")
    cores = os.cpu_count() or 1
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = prepare(Path(tmp))
        for world in args.worlds:
            results.append(run(world, paths, Path(tmp) / f"run{world}", args.batch, args.steps, args.window,
                               max(1, cores // world)))
    base = next((r["step_s"] for r in results if r["processes"] == 1), results[0]["step_s"])
    print(f"train hypernet, tiny config, global batch {args.batch}, gloo on {cores} CPU core(s), "
          f"torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}")
    print(f"{'processes':>9} {'threads':>7} {'step ms':>8} {'vs 1':>6} {'img/s':>7}  windows (ms)")
    for r in results:
        r["ratio_vs_first"] = r["step_s"] / base
        windows = " ".join(f"{1000 * s:.0f}" for s in r["step_s_windows"])
        print(f"{r['processes']:>9} {r['threads_per_process']:>7} {1000 * r['step_s']:>8.1f} "
              f"{r['ratio_vs_first']:>6.2f} {args.batch / r['step_s']:>7.1f}  {windows}")
    if args.json:
        write_text_atomic(args.json, json.dumps({"batch": args.batch, "steps": args.steps, "window": args.window,
                                                 "cores": cores, "torch": torch.__version__, "results": results},
                                                indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
