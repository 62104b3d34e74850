"""Factored residuals: the low-rank modulated conv equals the grouped per-sample path (ops, synthesis, inverter)."""

from __future__ import annotations

import pytest
import torch
from test_inverter import G_TINY, _randomize, make_model

from hyperinverter import Generator
from hyperinverter.ops import modulated_conv2d, setup_filter
from hyperinverter.ops.lowrank_conv2d import lowrank_demodulation, lowrank_is_cheaper, lowrank_modulated_conv2d
from hyperinverter.ops.modulated_conv2d import demodulation
from hyperinverter.stylegan2.residuals import LowRankResidual, Residuals, cat_residuals, lerp_residuals


def _rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def _factored(batch, out_ch, in_ch, k, d, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return LowRankResidual(torch.randn(batch, in_ch, d, generator=g, dtype=dtype),
                           0.1 * torch.randn(d, out_ch * k * k, generator=g, dtype=dtype),
                           0.1 * torch.randn(out_ch * k * k, generator=g, dtype=dtype), (out_ch, in_ch, k, k))


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("out_ch,in_ch", [(8, 8), (8, 16), (5, 15)])
@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("demodulate", [True, False])
def test_lowrank_conv_equals_grouped_per_sample_kernels(dtype, tol, out_ch, in_ch, up, demodulate):
    g = torch.Generator().manual_seed(1)
    delta = _factored(3, out_ch, in_ch, 3, 6, dtype)
    theta = torch.randn(out_ch, in_ch, 3, 3, generator=g, dtype=dtype)
    x = torch.randn(3, in_ch, 6, 6, generator=g, dtype=dtype)
    styles = torch.randn(3, in_ch, generator=g, dtype=dtype)
    noise = torch.randn(6 * up, 6 * up, generator=g, dtype=dtype)
    f = setup_filter([1, 3, 3, 1]).to(dtype)
    ref = modulated_conv2d(x, theta + delta.dense(), styles, noise=noise, up=up, padding=1, resample_filter=f,
                           flip_weight=(up == 1), demodulate=demodulate)
    out = lowrank_modulated_conv2d(x, theta, delta.kernels(), delta.mix(), styles, noise=noise, up=up, padding=1,
                                   resample_filter=f, flip_weight=(up == 1), demodulate=demodulate)
    assert out.shape == ref.shape == (3, out_ch, 6 * up, 6 * up)
    assert _rel(out, ref) <= tol


def test_lowrank_demodulation_is_the_norm_of_the_modulated_kernel():
    delta = _factored(2, 4, 8, 3, 5, torch.float64)
    theta = torch.randn(4, 8, 3, 3, dtype=torch.float64)
    styles = torch.randn(2, 8, dtype=torch.float64)
    kernel = (theta + delta.dense()) * styles[:, None, :, None, None]
    direct = kernel.square().sum(dim=[2, 3, 4]).add(1e-8).rsqrt()
    assert _rel(lowrank_demodulation(theta, delta.kernels(), delta.mix(), styles), direct) < 1e-12
    assert _rel(demodulation(theta + delta.dense(), styles), direct) < 1e-12  # styles² @ Σw², per-sample
    shared = (theta[None] * styles[:, None, :, None, None]).square().sum(dim=[2, 3, 4]).add(1e-8).rsqrt()
    assert _rel(demodulation(theta, styles), shared) < 1e-12


def test_factored_residual_dense_form_is_the_official_reinterpretation():
    delta = _factored(2, 4, 8, 3, 5)
    official = (delta.h @ delta.w2 + delta.b2).view(2, 4, 8, 3, 3)  # [B, in, out*k*k] read as [B, out, in, k, k]
    assert torch.equal(delta.dense(), official)
    assert delta.shape == (2, 4, 8, 3, 3) and delta.groups == 2
    assert _factored(1, 3, 8, 1, 4).groups is None  # toRGB-like: 8 is not a multiple of 3


def _tiny_generator():
    torch.manual_seed(3)
    return _randomize(Generator(**G_TINY), 3).eval()


def _synthesis_deltas(G, batch):
    """Factored residuals on every conv and toRGB kernel (b32.conv0: in = 2·out, an up-sampling conv)."""
    out = {}
    for i, (name, p) in enumerate(G.synthesis.named_parameters()):
        if p.ndim == 4:
            out[name] = _factored(batch, p.shape[0], p.shape[1], p.shape[2], 4, seed=i)
    return out


def test_synthesis_lowrank_and_grouped_paths_agree():
    G = _tiny_generator()
    deltas = _synthesis_deltas(G, 3)
    ws = G.mapping(torch.randn(3, G.z_dim, generator=torch.Generator().manual_seed(0)))
    layers = {n: m for n, m in G.synthesis.named_modules() if hasattr(m, "use_lowrank")}
    taken = [n for n, m in layers.items() if m.use_lowrank(deltas[f"{n}.weight"], "lowrank")]
    assert "b8.conv0" in taken and "b32.conv0" in taken and layers["b32.conv0"].up == 2  # up-sampling, m = 2
    with torch.no_grad():
        grouped = G.synthesis(ws, weight_deltas=deltas, residual_path="grouped")
        lowrank = G.synthesis(ws, weight_deltas=deltas, residual_path="lowrank")
        auto = G.synthesis(ws, weight_deltas=Residuals(deltas))
        dense = G.synthesis(ws, weight_deltas={k: v.dense() for k, v in deltas.items()})
    assert torch.equal(grouped, dense)
    assert _rel(lowrank, grouped) <= 1e-5 and _rel(auto, grouped) <= 1e-5
    assert _rel(lowrank, G.synthesis(ws).detach()) > 1e-2  # the residuals matter


def test_gradients_flow_through_the_factors():
    G = _tiny_generator()
    deltas = _synthesis_deltas(G, 2)
    ws = G.mapping(torch.randn(2, G.z_dim))
    grads = {}
    for path in ("grouped", "lowrank"):
        h = deltas["b8.conv1.weight"].h.clone().requires_grad_(True)
        d = {**deltas, "b8.conv1.weight": deltas["b8.conv1.weight"].with_h(h)}
        G.synthesis(ws.detach(), weight_deltas=d, residual_path=path).square().mean().backward()
        grads[path] = h.grad
    assert _rel(grads["lowrank"], grads["grouped"]) < 1e-4


def test_inverter_paths_agree_and_official_layout_is_kept():
    model = make_model(seed=4)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    model.residual_path = "grouped"
    grouped = model.invert(x)
    model.residual_path = "lowrank"
    lowrank = model.invert(x)
    model.residual_path = "auto"
    assert _rel(lowrank.image, grouped.image) <= 1e-5
    assert isinstance(lowrank.deltas, Residuals)
    for t in model.targets:  # reading an entry gives the regressor's dense Δθ
        assert lowrank.deltas[t.name].shape == (2, *t.shape)
    # what edit / interpolate / sub-batches do to factored residuals equals doing it to the dense tensors
    raw = lowrank.deltas.raw()
    assert all(isinstance(v, LowRankResidual) for v in raw.values())
    one = lowrank[1]
    assert all(isinstance(v, LowRankResidual) for v in one.deltas.raw().values())
    name = model.targets[0].name
    assert torch.equal(one.deltas[name], lowrank.deltas[name][1:2])
    both = cat_residuals([lowrank[0].deltas, lowrank[1].deltas])
    assert torch.equal(both[name], lowrank.deltas[name])
    t = torch.tensor([0.0, 0.25, 1.0])
    mid = lerp_residuals(lowrank[0].deltas, lowrank[1].deltas, t)
    dense_mid = lowrank.deltas[name][:1] + (lowrank.deltas[name][1:] - lowrank.deltas[name][:1]) * 0.25
    assert isinstance(mid.raw()[name], LowRankResidual)
    assert torch.allclose(mid[name][1], dense_mid[0], atol=1e-5)
    frames = model.interpolate(lowrank[0], lowrank[1], steps=3)
    assert torch.allclose(frames.image[-1], lowrank.image[1], atol=1e-4)


def test_cost_model_prefers_lowrank_at_low_resolution_only():
    # config-f, D = 128, batch 8: 512-channel convs at 4-16 px, the grouped path for 32-channel convs at 1024 px
    assert lowrank_is_cheaper(8, 512, 512, 9, 129, 4 * 4, 4 * 4)
    assert lowrank_is_cheaper(8, 512, 512, 9, 129, 8 * 8, 8 * 8)
    assert not lowrank_is_cheaper(8, 32, 32, 9, 129, 1024 * 1024, 1024 * 1024)
    assert not lowrank_is_cheaper(8, 512, 512, 9, 129, 64 * 64, 64 * 64)


@pytest.mark.parametrize("taps,up,pad", [([1, 3, 3, 1], 2, [2, 1, 2, 1]), ([1, 2, 1], 2, [1, 1, 0, 2]),
                                         ([1, 3, 3, 1], 4, [3, 0, 1, 2])])
def test_polyphase_upsampling_equals_the_zero_insertion_reference(taps, up, pad):
    from hyperinverter.ops import upfirdn2d

    f = setup_filter(taps).double()
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    fast = upfirdn2d(x, f, up=up, padding=pad, gain=up * up)  # no autograd: polyphase / transposed conv
    reference = upfirdn2d(x.clone().requires_grad_(True), f, up=up, padding=pad, gain=up * up)  # zero insertion
    assert torch.allclose(fast, reference.detach(), atol=1e-12)


def test_batched_regressor_heads_equal_the_loop():
    model = make_model(seed=8)
    g = torch.Generator().manual_seed(0)
    shape = (2, model.num_ws, model.w_bar_encoder.style_channels, 2, 2)
    image_codes, input_codes = torch.randn(*shape, generator=g), torch.randn(*shape, generator=g)
    hyper = model.hypernet
    with torch.no_grad():
        batched = hyper(image_codes, input_codes)  # eval: one grouped conv per layer for all heads
        hyper.train()
        looped = hyper(image_codes, input_codes)  # training: the official loop over heads
        hyper.eval()
    assert set(batched) == set(looped)
    for name in looped:
        assert _rel(batched[name], looped[name]) < 1e-5, name
