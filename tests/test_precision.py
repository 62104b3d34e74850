"""Inference in bf16 / fp16: models loaded in reduced precision run, and the outputs stay close to fp32."""

from __future__ import annotations

import warnings

import pytest
import torch
from test_inverter import G_TINY, _randomize, make_model

from hyperinverter import Generator, HyperInverter
from hyperinverter.precision import default_precision, fp16_supported, resolve_precision


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of images in [-1, 1] (peak-to-peak 2)."""
    return (10 * torch.log10(4 / (a.float() - b.float()).square().mean().clamp_min(1e-20))).item()


@pytest.fixture(scope="module")
def shipped():
    return HyperInverter.from_pretrained("portraits64")


@pytest.fixture(scope="module")
def images():
    return torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(5)) * 2 - 1


@pytest.fixture(scope="module")
def reference(shipped, images):
    return shipped.invert(images)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_shipped_model_reduced_precision_close_to_fp32(shipped, images, reference, precision):
    shipped.precision = precision
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # fp16 may fall back to bf16 on this CPU build (tested below)
            r = shipped.invert(images)
    finally:
        shipped.precision = None
    assert r.image.dtype == r.image_w.dtype == r.w.dtype == torch.float32
    assert psnr(r.image_w, reference.image_w) >= 40
    assert psnr(r.image, reference.image) >= 40
    assert psnr(r.image, reference.image) < 200  # it did run in reduced precision


def test_model_loaded_in_bf16_runs(images, reference):
    model = HyperInverter.from_pretrained("portraits64", dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16 and model.effective_precision() == "bf16"
    r = model.invert(images)
    assert psnr(r.image, reference.image) >= 40
    e = model.edit(r, torch.ones(model.generator.w_dim) * 0.1)
    assert e.image.dtype == torch.float32 and torch.isfinite(e.image).all()
    model.precision = "fp32"  # bf16 weights with fp32 activations in the generator; encoders still autocast
    assert psnr(model.invert(images).image, reference.image) >= 40


@pytest.mark.parametrize("kind", ["ir_se", "resnet"])
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_official_layout_models_reduced_precision(kind, precision):
    model = make_model(kind, seed=12)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    ref = model.invert(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with default_precision(precision):  # the process default (what --precision sets)
            r = model.invert(x)
    assert psnr(r.image_w, ref.image_w) >= 40
    assert psnr(r.image, ref.image) >= 40


def test_reduced_synthesis_blocks_and_clamp():
    torch.manual_seed(0)
    G = _randomize(Generator(**G_TINY), 0).eval()
    ws = G.mapping(torch.randn(2, G.z_dim)).detach()
    seen = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: seen.__setitem__(n, o.dtype))
             for n, m in G.synthesis.named_modules() if n.endswith("conv1")]
    with torch.no_grad():
        ref = G.synthesis(ws)
        out = G.synthesis(ws, reduced_dtype=torch.bfloat16, reduced_blocks=2)
    for h in hooks:
        h.remove()
    assert seen == {"b4.conv1": torch.float32, "b8.conv1": torch.float32, "b16.conv1": torch.bfloat16,
                    "b32.conv1": torch.bfloat16}
    assert out.dtype == torch.float32 and psnr(out, ref) >= 40
    with torch.no_grad():  # activations beyond ±256 are clamped in reduced blocks (NVlabs conv_clamp)
        G.synthesis.b32.conv1.bias.fill_(1000.0)
        hooks = [G.synthesis.b32.conv1.register_forward_hook(lambda m, i, o: seen.__setitem__("max", o.abs().max()))]
        G.synthesis(ws, reduced_dtype=torch.bfloat16, reduced_blocks=1)
        assert seen["max"] <= 256
        G.synthesis(ws)
        assert seen["max"] > 1000
    hooks[0].remove()
    with pytest.raises(ValueError, match="reduced_dtype"):
        G.synthesis(ws, reduced_dtype=torch.int8)


def test_precision_names_and_fp16_fallback(monkeypatch):
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp8", "cpu")
    assert resolve_precision("bf16", "cpu") == "bf16"
    monkeypatch.setattr("hyperinverter.precision._fp16_ok", {"cpu": False})
    assert not fp16_supported("cpu")
    with pytest.warns(UserWarning, match="fp16 is not supported.*using bf16"):
        assert resolve_precision("fp16", "cpu") == "bf16"
