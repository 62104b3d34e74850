"""CUDA against CPU numerics of a full inversion (the first part of ``gpu_suite.sh``).

For each domain (the official architecture with filled random weights, as in ``bench_vs_baseline.py``)
one batch is inverted on the CPU in float32 (the reference) and on CUDA:

* fp32 with TF32 off: phase-I and phase-II images within ``--rel-tol`` (1e-4) relative
  (max |difference| / max |reference|), both residual paths (grouped and low-rank);
* bf16 (``precision="bf16"``): PSNR against the CPU reference >= ``--min-psnr`` (40 dB);
* fp16 likewise, reported.

Exit status 1 when a check fails. ``--json`` writes every figure.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from hyperinverter.utils.outputs import write_text_atomic

try:
    from .bench_vs_baseline import build_model
except ImportError:
    from bench_vs_baseline import build_model


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return (10 * torch.log10(4 / (a.float() - b.float()).square().mean().clamp_min(1e-20))).item()


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).abs().max() / b.float().abs().max()).item()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--domains", default="churches,faces")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--rel-tol", type=float, default=1e-4)
    parser.add_argument("--min-psnr", type=float, default=40.0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to compare")
        return 1
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    results, ok = [], True
    for domain in args.domains.split(","):
        model = build_model(domain, 128, torch.device("cpu"))
        x = torch.rand(args.batch, 3, model.resolution, model.resolution, generator=torch.Generator().manual_seed(0))
        x = x * 2 - 1
        ref = model.invert(x, batch_size=args.batch)
        model.cuda()
        xc = x.cuda()
        row = {"domain": domain}
        for path in ("grouped", "lowrank", "auto"):
            model.residual_path = path
            out = model.invert(xc, batch_size=args.batch)
            row[f"fp32_{path}_rel_image"] = rel(out.image.cpu(), ref.image)
            row[f"fp32_{path}_rel_image_w"] = rel(out.image_w.cpu(), ref.image_w)
            ok &= max(row[f"fp32_{path}_rel_image"], row[f"fp32_{path}_rel_image_w"]) <= args.rel_tol
        model.residual_path = "auto"
        for precision in ("bf16", "fp16"):
            model.precision = precision
            out = model.invert(xc, batch_size=args.batch)
            row[f"{precision}_psnr_image"] = psnr(out.image.cpu(), ref.image)
            row[f"{precision}_psnr_image_w"] = psnr(out.image_w.cpu(), ref.image_w)
            ok &= min(row[f"{precision}_psnr_image"], row[f"{precision}_psnr_image_w"]) >= args.min_psnr
        model.precision = None
        results.append(row)
        print(json.dumps(row))
        del model
        torch.cuda.empty_cache()
    print("numerics:", "PASS" if ok else "FAIL", f"(fp32 TF32-off <= {args.rel_tol:g} relative, bf16/fp16 PSNR >= "
          f"{args.min_psnr:g} dB)")
    if args.json:
        write_text_atomic(args.json, json.dumps({"ok": ok, "rows": results, "gpu": torch.cuda.get_device_name()},
                                                indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
