"""Golden references: our FID Inception-v3 and LPIPS against the published implementations' own outputs.

``tests/fixtures/golden_references.npz`` holds what pytorch-fid 0.3.0 (on torchvision's ``Inception3``) and
the ``lpips`` 0.1.4 package computed, in float64, for fixed inputs and deterministic weights
(``scripts/make_golden_fixtures.py`` made it; ``golden_references.json`` says with which versions). Here
our networks get the same weights by key name (``helpers_golden``) and must reproduce those numbers: a
miswired branch, a wrong pool, a missing layer or a changed constant shows up as a mismatch far above
float32 round-off, which the ``*_miswired_*`` tests demonstrate by breaking our port on purpose.

Needs neither torchvision nor pytorch-fid nor lpips.
"""

from __future__ import annotations

import json
from typing import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import helpers_golden as hg
from hyperinverter.losses import lpips as lpips_module
from hyperinverter.losses.lpips import LPIPS
from hyperinverter.metrics import inception as inception_module
from hyperinverter.metrics.inception import InceptionFeatures

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Allowed max |ours - reference| / max |reference| per array. The references are float64; a float32
#: run of the reference code itself deviates by <= 7e-7 (``reference_float32_error`` in the JSON), so
#: this leaves two orders of magnitude for other kernels and CPUs, and still sits orders below the
#: deviations that the miswirings below cause.
TOL = 1e-4


@pytest.fixture(scope="module")
def golden() -> tuple[dict[str, np.ndarray], dict]:
    with np.load(hg.FIXTURE_NPZ) as z:
        arrays = {k: z[k] for k in z.files}
    return arrays, json.loads(hg.FIXTURE_JSON.read_text())


@pytest.fixture(scope="module")
def inception() -> InceptionFeatures:
    """Our FID Inception with the golden weights (its keys are torchvision's, so no renaming)."""
    model = InceptionFeatures()
    model.filled = hg.fill_module_(model)  # type: ignore[attr-defined]
    return model


@pytest.fixture(scope="module")
def lpips_models() -> dict[str, LPIPS]:
    models = {}
    for net in ("alex", "vgg"):
        models[net] = LPIPS(net)
        models[net].filled = hg.fill_module_(models[net], hg.our_lpips_key)  # type: ignore[attr-defined]
    return models


def inception_outputs(model: InceptionFeatures, x01: np.ndarray) -> dict[str, np.ndarray]:
    """Our network's outputs in the fixture's terms; pytorch-fid's block outputs are read with pre-hooks
    on the modules that consume them, so our own ``forward`` runs unchanged."""
    seen: dict[str, torch.Tensor] = {}
    consumers = {"block0": model.Conv2d_3b_1x1, "block1": model.Mixed_5b, "block2": model.Mixed_7a}
    handles = [m.register_forward_pre_hook(lambda _m, args, name=name: seen.__setitem__(name, args[0].clone()))
               for name, m in consumers.items()]
    try:
        with torch.no_grad():
            pool3 = model(torch.from_numpy(x01) * 2 - 1)  # ours takes [-1, 1]; pytorch-fid [0, 1]
            logits = model.fc(pool3)
    finally:
        for h in handles:
            h.remove()
    out = {}
    for name, t in seen.items():
        out[f"inception.{name}.mean"] = hg.channel_means(t)
        out[f"inception.{name}.corner"] = hg.corner(t)
    out["inception.pool3"] = pool3.numpy()
    out["inception.logits"] = logits.numpy()
    return out


def lpips_outputs(model: LPIPS, net: str, x: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Distances from our ``forward``; the per-layer terms from forward hooks on its heads."""
    per_layer: dict[int, torch.Tensor] = {}
    handles = [getattr(model.heads, f"lin{i}").register_forward_hook(
        lambda _m, _args, out, i=i: per_layer.__setitem__(i, out.mean(dim=(1, 2, 3))))
        for i in range(model.heads.num_layers)]
    try:
        with torch.no_grad():
            total = model(torch.from_numpy(x), torch.from_numpy(y))
    finally:
        for h in handles:
            h.remove()
    return {f"lpips.{net}.distance": total.numpy(),
            f"lpips.{net}.per_layer": torch.stack([per_layer[i] for i in sorted(per_layer)]).numpy()}


def relative_errors(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> dict[str, float]:
    """Per array of ``got``: max |got - want| / max |want| (inf for a shape mismatch)."""
    errors = {}
    for k, g in got.items():
        w = want[k].astype(np.float64)
        errors[k] = (float(np.abs(g.astype(np.float64) - w).max() / np.abs(w).max())
                     if g.shape == w.shape else float("inf"))
    return errors


def worst(errors: dict[str, float]) -> tuple[str, float]:
    return max(errors.items(), key=lambda kv: kv[1])


# ------------------------------------------------------------------------------------------ the fixture
def test_fixture_matches_its_recipe(golden, inception, lpips_models):
    """The stored inputs are the recipe's, and both sides filled exactly the same tensors."""
    arrays, meta = golden
    assert hg.FIXTURE_NPZ.stat().st_size + hg.FIXTURE_JSON.stat().st_size < 1_000_000
    np.testing.assert_allclose(hg.inception_input(), arrays["inception.input"], rtol=0, atol=1e-6)
    x, y = hg.lpips_inputs()
    np.testing.assert_allclose(x, arrays["lpips.x"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(y, arrays["lpips.y"], rtol=0, atol=1e-6)
    assert inception.filled == meta["filled"]["inception"] and len(inception.filled) == 94 * 5 + 2  # 94 conv + BN, fc
    for net, model in lpips_models.items():
        assert model.filled == meta["filled"][f"lpips.{net}"]
    assert meta["versions"]["pytorch-fid"] and meta["versions"]["lpips"] and meta["versions"]["torchvision"]


def test_fill_is_a_pure_function_of_the_name():
    """Same name -> same values on any machine; the stream's first values are pinned (they are the ones a
    plain-Python SplitMix64 seeded with CRC-32("features.0.weight") * 0x9E3779B97F4A7C15 gives)."""
    u = hg.uniform01("features.0.weight", 4)
    assert u.tolist() == [0.5335139727877122, 0.828067881376383, 0.9277576340822351, 0.7642020581948867]
    assert not np.array_equal(u, hg.uniform01("features.3.weight", 4))
    assert ((u >= 0) & (u < 1)).all()
    assert hg.lpips_package_key("net.slice3.6.weight") == "features.6.weight"
    assert hg.lpips_package_key("lins.2.model.1.weight") == hg.lpips_package_key("lin2.model.1.weight")
    assert hg.our_lpips_key("heads.lin2.model.1.weight") == "lin2.model.1.weight"
    with pytest.raises(ValueError, match="no fill rule"):
        hg.fill_value("Mixed_5b.mystery", (3,))


# ------------------------------------------------------------------------------------------ Inception
def test_inception_matches_pytorch_fid(golden, inception):
    """Blocks 0-2 (means and padded corners), pool3 and the logits agree with pytorch-fid / torchvision."""
    arrays, _ = golden
    errors = relative_errors(inception_outputs(inception, arrays["inception.input"]), arrays)
    assert len(errors) == 8
    name, err = worst(errors)
    assert err <= TOL, f"{name}: {err:.2e} > {TOL:.0e} (all: {errors})"


def _count_include_pad(model, monkeypatch):
    # The TF graph's SAME average pool ignores the padding; torchvision's default does not.
    monkeypatch.setattr(inception_module, "_avg_pool_tf",
                        lambda x: F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=True))


def _mixed_7c_avg_pool(model, monkeypatch):
    # FIDInceptionE_2 (Mixed_7c) max-pools its pool branch.
    monkeypatch.setattr(model.Mixed_7c, "pool", "avg")


def _swap_e_branches(model, monkeypatch):
    # Mixed_7b's 1x3 and 3x1 outputs concatenated in the wrong order.
    a, b = model.Mixed_7b.branch3x3_2a, model.Mixed_7b.branch3x3_2b
    monkeypatch.setitem(model.Mixed_7b._modules, "branch3x3_2a", b)
    monkeypatch.setitem(model.Mixed_7b._modules, "branch3x3_2b", a)


def _drop_c_layer(model, monkeypatch):
    # Mixed_6c's 7x7 branch without its 1x7 convolution (same shapes, one layer short).
    monkeypatch.setitem(model.Mixed_6c._modules, "branch7x7_2", nn.Identity())


def _swap_a_branches(model, monkeypatch):
    # Mixed_5b's 1x1 and 5x5 branches (64 channels each) concatenated in the wrong order.
    original = inception_module.FIDInceptionA.forward

    def forward(self, x):
        out = original(self, x)
        if self is not model.Mixed_5b:
            return out
        return torch.cat([out[:, 64:128], out[:, :64], out[:, 128:]], 1)

    monkeypatch.setattr(inception_module.FIDInceptionA, "forward", forward)


def _torch_bn_eps(model, monkeypatch):
    # PyTorch's default BatchNorm eps (1e-5) instead of the TF graph's 1e-3.
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            monkeypatch.setattr(m, "eps", 1e-5)


def _align_corners(model, monkeypatch):
    # The resize to 299 with align_corners=True (pytorch-fid uses False).
    original = F.interpolate
    monkeypatch.setattr(inception_module.F, "interpolate",
                        lambda x, **kw: original(x, **{**kw, "align_corners": True}))


# Submodules are swapped through ``_modules`` with ``monkeypatch.setitem``: ``monkeypatch.setattr`` restores
# from the instance ``__dict__``, where an nn.Module keeps no submodules, and would delete them on undo.
INCEPTION_MISWIRINGS: dict[str, Callable] = {
    "avg pool counts padding": _count_include_pad,
    "Mixed_7c avg pool": _mixed_7c_avg_pool,
    "Mixed_7b 1x3/3x1 swapped": _swap_e_branches,
    "Mixed_6c 1x7 conv dropped": _drop_c_layer,
    "Mixed_5b branches swapped": _swap_a_branches,
    "BatchNorm eps 1e-5": _torch_bn_eps,
    "resize align_corners": _align_corners,
}


@pytest.mark.parametrize("miswiring", list(INCEPTION_MISWIRINGS))
def test_inception_miswired_fails_the_comparison(golden, inception, miswiring, monkeypatch):
    """Each deliberate miswiring of our port moves some output far beyond TOL."""
    arrays, _ = golden
    INCEPTION_MISWIRINGS[miswiring](inception, monkeypatch)
    name, err = worst(relative_errors(inception_outputs(inception, arrays["inception.input"]), arrays))
    assert err > 10 * TOL, f"{miswiring!r} went unnoticed: worst {name} {err:.2e}"


# ------------------------------------------------------------------------------------------ LPIPS
@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_matches_the_lpips_package(golden, lpips_models, net):
    """Distances and every layer's term agree with ``lpips.LPIPS(net)(x, y, retPerLayer=True)``."""
    arrays, _ = golden
    errors = relative_errors(lpips_outputs(lpips_models[net], net, arrays["lpips.x"], arrays["lpips.y"]), arrays)
    name, err = worst(errors)
    assert err <= TOL, f"{name}: {err:.2e} > {TOL:.0e} (all: {errors})"


def _no_input_scaling(model, monkeypatch):
    # LPIPS v0.0's bug: the trunk sees [-1, 1] images without the ImageNet-like shift and scale.
    monkeypatch.setattr(model, "_scale_input", lambda x: x)


def _normalise_along_width(model, monkeypatch):
    # Unit length along the wrong axis.
    monkeypatch.setattr(lpips_module, "_unit_normalize",
                        lambda f, eps=1e-10: f / (f.square().sum(dim=3, keepdim=True).sqrt() + eps))


def _swap_last_heads(model, monkeypatch):
    # Heads 3 and 4 (both 256 channels for AlexNet, 512 for VGG) applied to each other's layer.
    a, b = model.heads.lin3, model.heads.lin4
    monkeypatch.setitem(model.heads._modules, "lin3", b)
    monkeypatch.setitem(model.heads._modules, "lin4", a)


def _first_tap_after_pool(model, monkeypatch):
    # The first tap read after the max pool that follows it (AlexNet / VGG relu1 -> pool1; same channels).
    # (A tap moved onto the convolution before its ReLU would go unnoticed: that ReLU runs in place, so
    # the tapped tensor is rectified all the same.)
    monkeypatch.setattr(model.net, "taps", (model.net.taps[0] + 1,) + model.net.taps[1:])


LPIPS_MISWIRINGS: dict[str, Callable] = {
    "no input scaling": _no_input_scaling,
    "normalised along width": _normalise_along_width,
    "heads 3 and 4 swapped": _swap_last_heads,
    "first tap after the pool": _first_tap_after_pool,
}


@pytest.mark.parametrize("net", ["alex", "vgg"])
@pytest.mark.parametrize("miswiring", list(LPIPS_MISWIRINGS))
def test_lpips_miswired_fails_the_comparison(golden, lpips_models, net, miswiring, monkeypatch):
    """Each deliberate miswiring of our LPIPS moves the distances or a layer's term far beyond TOL."""
    arrays, _ = golden
    model = lpips_models[net]
    LPIPS_MISWIRINGS[miswiring](model, monkeypatch)
    name, err = worst(relative_errors(lpips_outputs(model, net, arrays["lpips.x"], arrays["lpips.y"]), arrays))
    assert err > 10 * TOL, f"{miswiring!r} went unnoticed for {net}: worst {name} {err:.2e}"
