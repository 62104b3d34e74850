#!/usr/bin/env python
"""Make ``tests/fixtures/golden_references.{npz,json}``: the published FID Inception and LPIPS on fixed inputs.

``tests/test_golden_references.py`` checks our ports (``hyperinverter.metrics.inception``,
``hyperinverter.losses.lpips``) against these numbers. They come from the reference implementations
themselves, not from a re-derivation:

* FID Inception-v3: pytorch-fid's ``InceptionV3(output_blocks=[0, 1, 2, 3])`` (torchvision's ``Inception3``
  patched with ``FIDInceptionA/C/E_1/E_2``), whose weight loader is handed the deterministic weights of
  ``tests/helpers_golden.py`` instead of the download; logits from the same patched torchvision network's
  own ``forward``;
* LPIPS v0.1: ``lpips.LPIPS(net=...)`` for AlexNet and VGG16 with ``retPerLayer=True``, every trunk and
  head tensor overwritten with the deterministic weights (the input scaling is the package's own).

The references run in float64, so the stored numbers carry no float32 round-off of their own; the
float32 run's largest deviation from them is written to the JSON (``reference_float32_error``) as the
scale of round-off to expect from any float32 implementation.

None of torchvision, pytorch-fid and lpips is a dependency of the project: run this once, in a separate
environment, and commit its two output files. For example (x86_64, Python 3.11)::

    python3 -m venv /tmp/golden_venv
    /tmp/golden_venv/bin/pip install torch==2.14.1 torchvision==0.29.1 pytorch-fid==0.3.0 lpips==0.1.4
    OMP_NUM_THREADS=1 /tmp/golden_venv/bin/python scripts/make_golden_fixtures.py

It needs no network access (no weight download) and takes about a minute on one core.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib.metadata import version
from pathlib import Path
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import helpers_golden as hg  # noqa: E402  (after the path set-up: the project is not installed here)

LPIPS_NETS = ("alex", "vgg")


def build_fid_inception(dtype: torch.dtype):
    """pytorch-fid's ``InceptionV3`` with all four blocks and the patched torchvision network it wraps.

    Both are built by pytorch-fid's own ``fid_inception_v3``; only the weight download is replaced by
    :func:`helpers_golden.filled_state_dict` of the torchvision key layout (loaded strictly by pytorch-fid).
    """
    import pytorch_fid.inception as fid_inception

    template = fid_inception._inception_v3(num_classes=1008, aux_logits=False, weights=None).state_dict()
    state = hg.filled_state_dict(template)
    with mock.patch.object(fid_inception, "load_state_dict_from_url", return_value=state):
        blocks = fid_inception.InceptionV3(output_blocks=[0, 1, 2, 3], resize_input=True, normalize_input=True)
        classifier = fid_inception.fid_inception_v3()
    assert not classifier.transform_input, "torchvision's ImageNet input transform must be off, as in pytorch-fid"
    filled = sorted(k for k, v in template.items() if v.is_floating_point())
    return blocks.to(dtype).eval(), classifier.to(dtype).eval(), filled


def run_inception(dtype: torch.dtype) -> tuple[dict[str, np.ndarray], list[str]]:
    """Reference Inception outputs on :func:`helpers_golden.inception_input`, and the filled key names."""
    blocks, classifier, filled = build_fid_inception(dtype)
    x = torch.from_numpy(hg.inception_input()).to(dtype)
    with torch.no_grad():
        b0, b1, b2, b3 = blocks(x)  # pytorch-fid: [0, 1] input, resize to 299, then 2x - 1
        resized = 2 * F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False) - 1
        logits = classifier(resized)  # torchvision's Inception3.forward (eval: avgpool, dropout off, fc)
    out = {}
    for i, b in enumerate((b0, b1, b2)):
        out[f"inception.block{i}.mean"] = hg.channel_means(b)
        out[f"inception.block{i}.corner"] = hg.corner(b)
    out["inception.pool3"] = b3.flatten(1).numpy().astype(np.float32)
    out["inception.logits"] = logits.numpy().astype(np.float32)
    return out, filled


def run_lpips(net: str, dtype: torch.dtype) -> tuple[dict[str, np.ndarray], list[str]]:
    """Reference LPIPS distances (total and per layer) on :func:`helpers_golden.lpips_inputs`."""
    import lpips

    # pnet_rand: no ImageNet download for the trunk; pretrained=True loads the package's head files,
    # which are then overwritten like every trunk tensor.
    model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    filled = hg.fill_module_(model, hg.lpips_package_key)
    model = model.to(dtype).eval()
    x, y = (torch.from_numpy(a).to(dtype) for a in hg.lpips_inputs())
    with torch.no_grad():
        total, per_layer = model(x, y, retPerLayer=True)
    return {
        f"lpips.{net}.distance": total.flatten().numpy().astype(np.float32),
        f"lpips.{net}.per_layer": torch.stack([r.flatten() for r in per_layer]).numpy().astype(np.float32),
    }, filled


def max_relative_error(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> dict[str, float]:
    """Per array: max |got - want| / max |want| (the measure the golden test applies)."""
    return {k: float(np.abs(got[k].astype(np.float64) - want[k]).max() / np.abs(want[k]).max()) for k in want}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out-dir", type=Path, default=hg.FIXTURE_DIR, help="where to write (default: %(default)s)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)

    arrays: dict[str, np.ndarray] = {"inception.input": hg.inception_input()}
    arrays["lpips.x"], arrays["lpips.y"] = hg.lpips_inputs()
    reference, filled_inception = run_inception(torch.float64)
    float32, _ = run_inception(torch.float32)
    errors = max_relative_error(float32, reference)
    filled_lpips = {}
    for net in LPIPS_NETS:
        ref, filled_lpips[net] = run_lpips(net, torch.float64)
        f32, _ = run_lpips(net, torch.float32)
        reference.update(ref)
        errors.update(max_relative_error(f32, ref))
    arrays.update(reference)

    meta = {
        "made_by": "scripts/make_golden_fixtures.py",
        "versions": {name: version(name) for name in ("torch", "torchvision", "pytorch-fid", "lpips", "numpy")},
        "weights": "helpers_golden.fill_value(torchvision / lpips key name, shape): SplitMix64 of (CRC-32 of "
                   "the name, element index); He-uniform convolutions, BatchNorm near the identity, "
                   "non-negative LPIPS heads",
        "inputs": {
            "inception.input": f"helpers_golden.inception_input(): {list(hg.INCEPTION_INPUT_SHAPE)} in [0, 1] "
                               "(pytorch-fid's range; our network gets 2 x - 1)",
            "lpips.x, lpips.y": f"helpers_golden.lpips_inputs(): {list(hg.LPIPS_INPUT_SHAPE)} in [-1, 1]; "
                                "pairs: unrelated, small perturbation, left-right flip",
        },
        "outputs": {
            "inception.block{0,1,2}.mean / .corner": "pytorch-fid blocks 0-2 (after the first max pool, the "
                "second max pool, Mixed_6e): spatial means [B, C] and the top-left "
                f"{hg.CORNER}x{hg.CORNER} window",
            "inception.pool3": "pytorch-fid block 3 (Mixed_7c + average pool), [B, 2048]: the FID features",
            "inception.logits": "the patched torchvision Inception3's forward, [B, 1008]",
            "lpips.{net}.distance / .per_layer": "lpips.LPIPS(net)(x, y, retPerLayer=True): [B] and [5, B]",
        },
        "computed_in": "float64 (stored as float32)",
        "reference_float32_error": errors,
        "filled": {"inception": filled_inception, **{f"lpips.{n}": v for n, v in filled_lpips.items()}},
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    npz, js = args.out_dir / hg.FIXTURE_NPZ.name, args.out_dir / hg.FIXTURE_JSON.name
    np.savez_compressed(npz, **arrays)
    js.write_text(json.dumps(meta, indent=1) + "\n")
    for k, v in sorted(errors.items()):
        print(f"float32 vs float64 reference  {k:32s} {v:.2e}")
    print(f"wrote {npz} ({npz.stat().st_size} bytes) and {js} ({js.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
