"""The shipped demo model against its quality bar, on held-out portraits (test-split seeds, never trained on).

Measures, with an attribute regressor trained on rendered portraits (``hyperinverter train-attributes``):

* reconstruction: phase I and HyperInverter MSE / PSNR / SSIM on ``--count`` test portraits
  (bar: HyperInverter PSNR >= 30 dB and MSE <= 0.4x phase I's);
* fidelity of what matters: the regressor's glasses accuracy and smile / yaw R^2 read off the inputs and off
  the reconstructions (bar: the reconstructions within 0.05 of the inputs);
* directions: the model's ``directions/`` hold at least smile, yaw, tilt, glasses, hair_lightness and
  skin_tone; the held-out accuracy each was fitted with (bar: smile and yaw >= 0.90); at each default
  strength, on the HyperInverter inversions with their residuals kept: the regressor's target change
  (bar >= 0.10), entanglement (bar <= 0.05), and the mean pixel difference between the - and + edits
  against the mean reconstruction error (bar: >= 2x);
* the generator's sweep response: per attribute one latent entry decides, how much of the renders' change
  between that entry at -1.6 and +1.6 the generator draws (1 = all of it);
* realism: KID between ``--kid-count`` generator samples and as many renders (val split), in the
  regressor's feature space; with ``--baseline MODEL``, the same for that model and the ratio (bar <= 0.25).

Every portrait is rendered in the framing the model was trained on (``framing`` in its ``domain.json``; portrait
when it records none; ``--framing`` overrides it), and the baseline's KID renders in the baseline's.

Writes ``samples.png`` (generator samples), ``inversions.png`` (input | phase I | HyperInverter),
``edits.png`` (reconstruction, then each direction at - and +) and ``quality.json`` with ``--out``.
Exit status 0 when every bar is met.

    python benchmarks/bench_demo_quality.py --attributes runs/attributes64 --baseline OLD_MODEL --out docs
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hyperinverter import HyperInverter
from hyperinverter.demo.run import labelled_grid, model_directions, per_image_metrics
from hyperinverter.domain import load_domain, portrait_framing
from hyperinverter.evaluation.attributes import AttributeRegressor, attribute_columns, render_labelled_portraits
from hyperinverter.evaluation.base import MethodOutput
from hyperinverter.evaluation.editability import EditabilityConfig, EditabilityMeter
from hyperinverter.metrics.fid import kid_from_features
from hyperinverter.portraits import FRAMINGS
from hyperinverter.pretrained import DEFAULT_MODEL, resolve
from hyperinverter.utils.outputs import write_text_atomic

REQUIRED_DIRECTIONS = ("smile", "yaw", "tilt", "glasses", "hair_lightness", "skin_tone")
BARS = {
    "psnr_db": 30.0,  # HyperInverter PSNR >= this
    "mse_ratio": 0.4,  # HyperInverter MSE / phase-I MSE <= this
    "read_gap": 0.05,  # regressor score on reconstructions >= score on inputs - this
    "holdout_accuracy": 0.90,  # smile and yaw directions
    "target_change": 0.10,  # per direction, at its default strength
    "entanglement": 0.05,  # per direction
    "visible_ratio": 2.0,  # mean |edit(+) - edit(-)| / mean |reconstruction - input|
    "kid_ratio": 0.25,  # KID / the baseline's KID
}


#: Attributes one latent entry decides (portraits.latent_entry), for the sweep response.
SWEEP_ATTRIBUTES = ("smile", "yaw", "tilt", "skin_tone")


def sweep_response(model, attributes, framing: str, count: int = 64) -> dict:
    """Per attribute: the mean absolute difference between the generator's images of ``count`` random z with
    the attribute's latent entry set to -1.6 and to +1.6, that of the renders of the same z, and their ratio
    (1 = the generator draws the whole change; only meaningful for a generator taught by the renderer,
    whose z is the renderer's latent). Both are averaged over the pixels the renders change (mean change over
    a tenth of its largest): what the generator changes elsewhere is entanglement, not response."""
    from hyperinverter.portraits import attributes_from_latent, render_portrait, sweep_latents
    from hyperinverter.utils.image_io import pil_to_tensor

    G = model.generator
    base = np.random.default_rng(123).standard_normal([count, G.z_dim])
    out = {}
    for a in attributes:
        z = sweep_latents(base, a, [-1.6, 1.6])
        fake = G(torch.from_numpy(z), noise_mode="const").clamp(-1, 1).float()
        real = torch.stack([pil_to_tensor(render_portrait(attributes_from_latent(v), model.resolution,
                                                          framing=framing)) for v in z])
        d_fake = (fake[1::2] - fake[0::2]).abs().mean(1)  # [count, R, R]
        d_real = (real[1::2] - real[0::2]).abs().mean(1)
        where = d_real.mean(0) > 0.1 * d_real.mean(0).max()  # the pixels the attribute changes in the renders
        g, r = float(d_fake[:, where].mean()), float(d_real[:, where].mean())
        out[a] = {"generator": g, "renders": r, "ratio": g / r, "pixels": int(where.sum())}
    return out


def r2(pred: torch.Tensor, true: torch.Tensor) -> float:
    true = true.double()
    return float(1 - (pred.double() - true).square().sum() / (true - true.mean()).square().sum())


@torch.no_grad()
def in_batches(fn, x: torch.Tensor, batch: int = 100) -> torch.Tensor:
    return torch.cat([fn(x[i:i + batch]) for i in range(0, x.shape[0], batch)])


@torch.no_grad()
def generator_samples(model: HyperInverter, count: int, seed: int = 0, batch: int = 100) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn([count, model.generator.z_dim], generator=g)
    return in_batches(lambda zz: model.generator(zz, noise_mode="const").clamp(-1, 1), z, batch)


def kid(regressor: AttributeRegressor, fake: torch.Tensor, real_features: np.ndarray) -> float:
    f = in_batches(regressor.embed, fake).double().numpy()
    return float(kid_from_features(f, real_features).mean)


def render_features(regressor: AttributeRegressor, count: int, size: int, framing: str) -> np.ndarray:
    """The regressor's features of ``count`` val-split renders in ``framing`` (the real side of KID)."""
    real = render_labelled_portraits("val", count, size=size, framing=framing).images
    return in_batches(regressor.embed, real).double().numpy()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model name or folder (default: the shipped one)")
    parser.add_argument("--attributes", type=Path, required=True,
                        help="attribute regressor folder ('hyperinverter train-attributes'); it must predict "
                             "glasses, smile, yaw and the directions' attributes")
    parser.add_argument("--baseline", default=None, help="a model whose generator's KID is the reference")
    parser.add_argument("--count", type=int, default=200, help="held-out test portraits")
    parser.add_argument("--split", choices=("test", "val"), default="test",
                        help="the portraits' seeds: test (the reported figures) or val (to choose between candidate "
                             "models, e.g. checkpoints, without looking at the test portraits)")
    parser.add_argument("--kid-count", type=int, default=2000, help="generator samples and renders for KID")
    parser.add_argument("--framing", choices=list(FRAMINGS), default=None,
                        help="render the test and KID portraits in this framing (default: the model's, from its "
                             "domain.json; the baseline's KID renders keep the baseline's)")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--out", type=Path, default=None, help="write the figures and quality.json here")
    parser.add_argument("--reconstruction-only", action="store_true",
                        help="only the reconstruction and the regressor's reads (about a minute: for a training run's "
                             "model folder, which `train hypernet` rewrites at every checkpoint); no directions, sweep "
                             "or KID")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    t_start = time.perf_counter()

    model_dir = resolve(args.model)
    model = HyperInverter.from_pretrained(model_dir).eval()
    regressor = AttributeRegressor.from_pretrained(args.attributes).eval()
    R = model.resolution
    framing = args.framing or portrait_framing(model_dir)
    if args.framing is None and load_domain(model_dir) is None:  # a training run's folder: no domain.json yet
        print(f"note: {model_dir} has no domain.json: rendering the {framing} framing (--framing to choose; faces64 "
              f"is aligned)")
    data = render_labelled_portraits(args.split, args.count, size=R, framing=framing)
    x = data.images
    report: dict = {"model": str(args.model), "framing": framing, "split": args.split, "count": args.count,
                    "bars": BARS}
    met: dict[str, bool] = {}

    # Reconstruction.
    t = time.perf_counter()
    result = model.invert(x, batch_size=args.batch_size)
    report["ms_per_image"] = (time.perf_counter() - t) / args.count * 1000
    m = per_image_metrics(x, result)
    mean = {phase: {k: float(v.mean()) for k, v in d.items()} for phase, d in m.items()}
    report["reconstruction"] = mean
    ratio = mean["hyperinverter"]["mse"] / mean["phase1"]["mse"]
    report["mse_ratio"] = ratio
    met["psnr"] = mean["hyperinverter"]["psnr"] >= BARS["psnr_db"]
    met["mse_ratio"] = ratio <= BARS["mse_ratio"]
    print(f"model {args.model}: {args.count} held-out {R}px portraits ({args.split} split, {framing} framing), "
          f"{report['ms_per_image']:.1f} ms/image")
    print("| | MSE | PSNR (dB) | SSIM |\n|---|---|---|---|")
    for phase, label in (("phase1", "phase I (W encoder)"), ("hyperinverter", "HyperInverter")):
        print(f"| {label} | {mean[phase]['mse']:.4f} | {mean[phase]['psnr']:.2f} | {mean[phase]['ssim']:.4f} |")
    print(f"MSE ratio {ratio:.3f}")

    # What the regressor reads off inputs and reconstructions.
    names = regressor.attributes
    p_in = in_batches(regressor.predict, x)
    p_rec = in_batches(regressor.predict, result.image.clamp(-1, 1))
    reads = {}
    for a in ("glasses", "smile", "yaw"):
        if a not in names:
            raise SystemExit(f"{args.attributes}: the regressor does not predict {a!r}")
        true = attribute_columns(data.vectors, [a])[:, 0]
        j = names.index(a)
        if a == "glasses":
            score = lambda p: float(((p[:, j] > 0.5).float() == true).float().mean())  # noqa: E731
            metric = "accuracy"
        else:
            score = lambda p: r2(p[:, j], true)  # noqa: E731
            metric = "R2"
        reads[a] = {"metric": metric, "inputs": score(p_in), "reconstructions": score(p_rec)}
        met[f"read_{a}"] = reads[a]["reconstructions"] >= reads[a]["inputs"] - BARS["read_gap"]
        print(f"regressor {a} {metric}: inputs {reads[a]['inputs']:.3f}, reconstructions "
              f"{reads[a]['reconstructions']:.3f}")
    report["reads"] = reads

    rows = [[x[i], result.image_w[i], result.image[i]] for i in range(min(8, args.count))]
    grids = {"inversions.png": labelled_grid(rows, ["input", "phase I", "HyperInverter"])}
    if args.reconstruction_only:
        return finish(args, report, met, grids, t_start)

    # Directions and edits.
    directions, notes = model_directions(model_dir, model, limit=100)
    by_name = {d.name: d for d in directions}
    missing = [n for n in REQUIRED_DIRECTIONS if n not in by_name]
    met["six_directions"] = not missing
    if missing:
        print(f"directions missing: {missing} (have {sorted(by_name)})")
    usable = {n: d for n, d in by_name.items() if n in names}
    output = MethodOutput(result.image, {"ws": result.ws, "w": result.w,
                                         **{f"delta.{k}": v for k, v in result.deltas.items()}}, 0.0)
    meter = EditabilityMeter(model, regressor, usable, EditabilityConfig(examples=0))
    for i in range(0, args.count, args.batch_size):
        sl = slice(i, i + args.batch_size)
        part = MethodOutput(output.reconstructions[sl], {k: v[sl] for k, v in output.codes.items()}, 0.0)
        meter.update(x[sl], part)
    edit = meter.summary()["per_attribute"]
    recon_err = float((result.image - x).abs().mean())
    report["reconstruction_mean_abs_error"] = recon_err
    report["directions"] = {}
    print(f"| direction | held-out acc. | strength | target change | entanglement | mean abs(edit+ - edit-) / "
          f"recon. error |\n|---|---|---|---|---|---|")
    edit_rows = {}
    for name, d in usable.items():
        plus = model.render(d.apply(result.ws, d.strength), result.deltas, batch_size=args.batch_size)
        minus = model.render(d.apply(result.ws, -d.strength), result.deltas, batch_size=args.batch_size)
        edit_rows[name] = (minus, plus)
        visible = float((plus - minus).abs().mean()) / recon_err
        acc = d.description.get("holdout_accuracy")
        row = {"holdout_accuracy": acc, "strength": d.strength, "target_change": edit[name]["target_change"],
               "entanglement": edit[name]["entanglement"], "visible_ratio": visible}
        report["directions"][name] = row
        ok = (row["target_change"] >= BARS["target_change"] and row["entanglement"] <= BARS["entanglement"]
              and visible >= BARS["visible_ratio"])
        if name in ("smile", "yaw"):
            ok = ok and acc is not None and acc >= BARS["holdout_accuracy"]
        met[f"direction_{name}"] = ok
        acc_s = "-" if acc is None else f"{acc:.3f}"
        print(f"| {name} | {acc_s} | {d.strength:.3g} | {row['target_change']:.3f} | {row['entanglement']:.3f} | "
              f"{visible:.2f} |")

    # What the generator draws of each attribute: the teacher-trained generator reads the renderer's latent map,
    # so G(z) with one attribute's latent entry at -1.6 and +1.6 should differ as the renders of those z do.
    response = sweep_response(model, [n for n in REQUIRED_DIRECTIONS if n in SWEEP_ATTRIBUTES], framing)
    report["sweep_response"] = response
    print("generator / renderer mean |image(+1.6) - image(-1.6)| per latent entry: "
          + ", ".join(f"{a} {v['ratio']:.2f}" for a, v in response.items()))

    # Realism: KID in the regressor's feature space.
    real_f = render_features(regressor, args.kid_count, R, framing)
    samples = generator_samples(model, args.kid_count)
    report["kid"] = kid(regressor, samples, real_f)
    line = f"KID (regressor features, {args.kid_count} samples vs renders): {report['kid']:.5f}"
    if args.baseline:
        base_dir = resolve(args.baseline)
        base = HyperInverter.from_pretrained(base_dir).eval()
        base_framing = portrait_framing(base_dir)  # its samples are compared with renders of its own domain
        report["baseline_framing"] = base_framing
        base_f = real_f if base_framing == framing else render_features(regressor, args.kid_count, R, base_framing)
        report["kid_baseline"] = kid(regressor, generator_samples(base, args.kid_count), base_f)
        report["kid_ratio"] = report["kid"] / report["kid_baseline"]
        met["kid_ratio"] = report["kid_ratio"] <= BARS["kid_ratio"]
        line += f"; baseline {args.baseline}: {report['kid_baseline']:.5f}; ratio {report['kid_ratio']:.3f}"
    print(line)

    order = [n for n in REQUIRED_DIRECTIONS if n in edit_rows] + [n for n in edit_rows if n not in REQUIRED_DIRECTIONS]
    columns = ["input", "HyperInv."] + [f"{n[:7]}{s}" for n in order for s in ("-", "+")]
    rows = [[x[i], result.image[i]] + [edit_rows[n][k][i] for n in order for k in (0, 1)]
            for i in range(min(6, args.count))]
    grids["edits.png"] = labelled_grid(rows, columns)
    grids["samples.png"] = labelled_grid([list(samples[i:i + 8]) for i in range(0, 32, 8)], [""] * 8)
    return finish(args, report, met, grids, t_start)


def finish(args, report: dict, met: dict, grids: dict, t_start: float) -> int:
    """Print which bars failed, write the grids and quality.json under --out; exit status 1 when a bar failed."""
    report["met"] = met
    report["seconds"] = time.perf_counter() - t_start
    failed = [k for k, v in met.items() if not v]
    print(("reconstruction bars met" if args.reconstruction_only else "all bars met") if not failed
          else f"bars NOT met: {failed}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, image in grids.items():
            image.save(args.out / name)
        write_text_atomic(args.out / "quality.json", json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.out}/{', '.join(sorted(grids))}, quality.json")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
