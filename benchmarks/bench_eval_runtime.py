"""Seconds per image at batch 8 of HyperInverter, W+ optimisation and PTI at their default (paper-sized)
step counts: W+ 500 Adam steps; PTI 450 W-optimisation pivot steps + 350 generator-tuning steps.

    python benchmarks/bench_eval_runtime.py [--model portraits64] [--data data/portraits64/test] [--out FILE.json]

The timings are ``hyperinverter.evaluation.measure_runtime`` (untimed warm-up, then one timed call,
device-synchronised), the same as ``hyperinverter evaluate --runtime``.
"""

from __future__ import annotations

import argparse
import json

from hyperinverter import HyperInverter
from hyperinverter.evaluation import build_method, measure_runtime
from hyperinverter.utils.image_io import iter_image_paths, load_images
from hyperinverter.utils.outputs import write_text_atomic


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="portraits64")
    parser.add_argument("--data", default="data/portraits64/test")
    parser.add_argument("--methods", default="hyperinverter,wplus_opt,pti")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    model = HyperInverter.from_pretrained(args.model)
    images, *_ = load_images(iter_image_paths([args.data])[:8], model.resolution)
    out = {}
    for name in args.methods.split(","):
        method = build_method(name, model)
        out[name] = {"config": str(method.config), "seconds_per_image_batch8": measure_runtime(method, images, (8,))[8]}
        print(f"{name:14} {out[name]['seconds_per_image_batch8']:.4f} s/img   {out[name]['config']}", flush=True)
    if "hyperinverter" in out:
        base = out["hyperinverter"]["seconds_per_image_batch8"]
        for name, r in out.items():
            print(f"{name}: {r['seconds_per_image_batch8'] / base:.0f}x HyperInverter's time")
    if args.out:
        write_text_atomic(args.out, json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
