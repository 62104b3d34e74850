"""Reconstruction quality of the shipped demo model on held-out portraits: phase I vs HyperInverter.

The issue's bar: on 200 held-out portraits (test-split seeds, never used in training) at 64x64,
HyperInverter's MSE at most half of phase I's and its PSNR at least 3 dB higher. Also writes a grid
of generator samples and of inversions for the README.

    python benchmarks/bench_demo_quality.py                       # the shipped portraits64
    python benchmarks/bench_demo_quality.py --model runs/hypernet_demo64/model --count 200 --out docs
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from hyperinverter import HyperInverter
from hyperinverter.demo.run import held_out_portraits, labelled_grid, per_image_metrics
from hyperinverter.pretrained import DEFAULT_MODEL, resolve

TARGET_MSE_RATIO = 0.5  # HyperInverter MSE / phase-I MSE must not exceed this
TARGET_PSNR_GAIN = 3.0  # dB


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--start", type=int, default=0, help="first test-split seed index")
    parser.add_argument("--batch-size", type=int, default=25)
    parser.add_argument("--out", type=Path, default=None, help="also write samples.png, inversions.png, "
                                                               "quality.json here")
    args = parser.parse_args(argv)

    model_dir = resolve(args.model)
    model = HyperInverter.from_pretrained(model_dir)
    torch.set_grad_enabled(False)
    x, names = held_out_portraits(args.count, args.start, model.resolution)
    t = time.perf_counter()
    result = model.invert(x, batch_size=args.batch_size)
    seconds = time.perf_counter() - t
    m = per_image_metrics(x, result)
    mean = {phase: {k: float(v.mean()) for k, v in d.items()} for phase, d in m.items()}
    ratio = mean["hyperinverter"]["mse"] / mean["phase1"]["mse"]
    gain = mean["hyperinverter"]["psnr"] - mean["phase1"]["psnr"]
    wins = float((m["hyperinverter"]["mse"] < m["phase1"]["mse"]).float().mean())
    print(f"model {args.model}: {args.count} held-out portraits (test seeds {names[0]}..{names[-1]}), "
          f"{model.resolution}px, {seconds / args.count * 1000:.1f} ms/image on {torch.get_num_threads()} threads")
    print("| method | MSE | PSNR (dB) | SSIM |\n|---|---|---|---|")
    for phase, label in (("phase1", "phase I (W encoder)"), ("hyperinverter", "HyperInverter")):
        print(f"| {label} | {mean[phase]['mse']:.4f} | {mean[phase]['psnr']:.2f} | {mean[phase]['ssim']:.4f} |")
    ok_mse, ok_psnr = ratio <= TARGET_MSE_RATIO, gain >= TARGET_PSNR_GAIN
    print(f"MSE ratio {ratio:.3f} (target <= {TARGET_MSE_RATIO}: {'met' if ok_mse else 'NOT met'}); "
          f"PSNR gain {gain:+.2f} dB (target >= {TARGET_PSNR_GAIN}: {'met' if ok_psnr else 'NOT met'}); "
          f"HyperInverter better on {wins:.0%} of the images")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        g = torch.Generator().manual_seed(0)
        z = torch.randn([32, model.generator.z_dim], generator=g)
        samples = model.generator(z, truncation_psi=0.8, noise_mode="const")
        labelled_grid([list(samples[i:i + 8]) for i in range(0, 32, 8)], [""] * 8).save(args.out / "samples.png")
        columns = ["input", "phase I", "HyperInverter"]
        rows = [[x[i], result.image_w[i], result.image[i]] for i in range(8)]
        labelled_grid(rows, columns).save(args.out / "inversions.png")
        (args.out / "quality.json").write_text(json.dumps({
            "model": str(args.model), "count": args.count, "mean": mean, "mse_ratio": ratio, "psnr_gain_db": gain,
            "hyperinverter_better_fraction": wins, "targets_met": {"mse_ratio": ok_mse, "psnr_gain": ok_psnr},
        }, indent=2) + "\n")
        print(f"wrote {args.out}/samples.png, inversions.png, quality.json")
    return 0 if ok_mse and ok_psnr else 1


if __name__ == "__main__":
    sys.exit(main())
