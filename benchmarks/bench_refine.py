"""HyperInverter + refine (N steps of per-image tuning from its answer) against PTI, in one process.

Rows: HyperInverter, HyperInverter + refine at each ``--refine`` step count, PTI at each ``--pti`` step count
(PTI's own recipe: W-optimisation pivot, then generator tuning from θ + 0). Columns: MSE, PSNR, SSIM, seconds
per image (warm-up excluded; all rows measured in this one run, so their ratios hold on a busy machine), and,
with ``--attributes``, editability (the regressor's change of the edited attribute and of the others) along
the model's shipped directions.

    python benchmarks/bench_refine.py --model portraits64 --data data/portraits64/test --count 32 \
        --refine 10,50 --pti 100,350 --attributes runs/attributes64 --json docs/refine_vs_pti.json

The goal of ``--refine``: PTI-level MSE/PSNR at >= 5x less time, with editability at least HyperInverter's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from hyperinverter.utils.outputs import write_text_atomic


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="portraits64", help="model folder or shipped name (default portraits64)")
    p.add_argument("--data", required=True, help="folder of test images (labelled portraits for editability)")
    p.add_argument("--count", type=int, default=32, help="images (default 32)")
    p.add_argument("--batch-size", type=int, default=8, help="images per call (default 8)")
    p.add_argument("--refine", default="10,50", help="refine step counts (default 10,50)")
    p.add_argument("--refine-lr", type=float, default=3e-4, help="refine's Adam learning rate (default 3e-4, PTI's)")
    p.add_argument("--pti", default="100,350", help="PTI tuning step counts (default 100,350; empty: no PTI rows)")
    p.add_argument("--pti-pivot-steps", type=int, default=450, help="PTI's W-optimisation pivot steps (default 450)")
    p.add_argument("--attributes", default=None, help="attribute regressor folder: measure editability")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--json", default=None, help="write the figures here")
    args = p.parse_args(argv)

    from hyperinverter import HyperInverter
    from hyperinverter.evaluation import build_method, evaluate_methods
    from hyperinverter.evaluation.runner import EditabilitySetup
    from hyperinverter.pretrained import resolve
    from hyperinverter.utils.image_io import load_images

    if args.threads:
        torch.set_num_threads(args.threads)
    model_dir = resolve(args.model)
    model = HyperInverter.from_pretrained(model_dir).eval()
    files = sorted(f for f in Path(args.data).iterdir() if f.suffix.lower() in (".png", ".jpg", ".jpeg"))
    files = files[:args.count]
    images = load_images(files, size=model.resolution, on_error="raise")[0]

    methods = [build_method("hyperinverter", model)]
    methods += [build_method("hyperinverter+refine", model, {"steps": int(n), "lr": args.refine_lr})
                for n in args.refine.split(",") if n]
    methods += [build_method("pti", model, {"steps": int(n), "pivot_steps": args.pti_pivot_steps})
                for n in args.pti.split(",") if n]
    editability = None
    if args.attributes:
        from hyperinverter.evaluation import AttributeRegressor
        from hyperinverter.evaluation.editability import EditabilityConfig, load_attribute_directions

        regressor = AttributeRegressor.from_pretrained(args.attributes)
        directions, _ = load_attribute_directions(model_dir / "directions", list(regressor.attributes),
                                                  model.generator.w_dim, model.num_ws)
        editability = EditabilitySetup(regressor, directions, EditabilityConfig())
    results = evaluate_methods(methods, images, args.batch_size, editability=editability, progress=True,
                               log=lambda s: print(s, file=sys.stderr))
    rows = []
    base = results[0].seconds_per_image
    for method, r in zip(methods, results):
        steps = getattr(method.config, "steps", 0) if method.name != "hyperinverter" else 0
        row = {"method": r.label, "steps": steps, "lr": getattr(method.config, "lr", None), "mse": r.metrics["mse"],
               "psnr": r.metrics["psnr"],
               "ssim": r.metrics["ssim"], "seconds_per_image": r.seconds_per_image,
               "time_vs_hyperinverter": r.seconds_per_image / base}
        if r.editability:
            row["edit_target_change"] = r.editability.get("target_change")
            row["edit_entanglement"] = r.editability.get("entanglement")
        rows.append(row)
    print("| method | steps | MSE | PSNR | SSIM | s/image | edit Δ target | edit Δ others |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        edit = (f"{r['edit_target_change']:.3f} | {r['edit_entanglement']:.3f}" if r.get("edit_target_change")
                is not None else "– | –")
        print(f"| {r['method']} | {r['steps']} | {r['mse']:.5f} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
              f"{r['seconds_per_image']:.3f} | {edit} |")
    if args.json:
        write_text_atomic(args.json, json.dumps({"model": str(args.model), "count": len(files), "rows": rows},
                                                indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
