"""The StyleGAN2 operators against independent references (numpy loops / zero-stuffing + plain conv2d)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hyperinverter.ops import (
    ACTIVATION_GAINS,
    bias_act,
    conv2d_resample,
    downsample2d,
    modulated_conv2d,
    setup_filter,
    upfirdn2d,
    upsample2d,
)

DT = torch.float64  # the references are exact, so compare in double precision


def _randn(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=DT)


# ----------------------------------------------------------------------------------------------
# References
# ----------------------------------------------------------------------------------------------


def ref_upfirdn2d(x, f, up=1, down=1, pad=(0, 0, 0, 0), flip_filter=False, gain=1.0):
    """Per-output-pixel loop straight from the definition.

    The input is upsampled by zero insertion (x[i] lands at i*up), padded by ``pad`` = (x0, x1, y0, y1)
    (negative = crop), convolved (valid) with ``f`` -- a true convolution unless ``flip_filter``,
    where it is a correlation -- and every ``down``-th pixel is kept; everything times ``gain``.
    """
    x = np.asarray(x, dtype=np.float64)
    f = np.ones((1, 1)) if f is None else np.asarray(f, dtype=np.float64)
    n, c, h, w = x.shape
    px0, px1, py0, py1 = pad
    hu, wu = h * up, w * up
    hp, wp = hu + py0 + py1, wu + px0 + px1
    fh, fw = f.shape
    ho, wo = hp - fh + 1, wp - fw + 1

    def padded(i, j):  # value of the upsampled + padded image at (i, j)
        si, sj = i - py0, j - px0
        if not (0 <= si < hu and 0 <= sj < wu) or si % up or sj % up:
            return np.zeros((n, c))
        return x[:, :, si // up, sj // up]

    out = np.zeros((n, c, ho, wo))
    for oy in range(ho):
        for ox in range(wo):
            acc = np.zeros((n, c))
            for a in range(fh):
                for b in range(fw):
                    if flip_filter:  # correlation
                        acc += f[a, b] * padded(oy + a, ox + b)
                    else:  # convolution: out[o] = sum_k f[k] * in[o + (size - 1) - k]
                        acc += f[a, b] * padded(oy + fh - 1 - a, ox + fw - 1 - b)
            out[:, :, oy, ox] = acc
    return out[:, :, ::down, ::down] * gain


def _depthwise_true_conv(x, f):
    """Valid 2-D *convolution* (kernel flipped) of every channel with ``f``, via F.conv2d."""
    c = x.shape[1]
    k = f.flip([0, 1]).to(x.dtype)[None, None].repeat(c, 1, 1, 1)
    return F.conv2d(x, k, groups=c)


def ref_conv2d_resample(x, w, f, up=1, down=1, padding=0, groups=1, flip_weight=True):
    """Generic definition: zero-stuff, pad once, FIR-filter (gain up^2), conv2d, FIR-filter, subsample.

    All padding is applied up front to the zero-stuffed image, so the three filters act as one
    composed linear shift-invariant filter; the padding split is StyleGAN2's (output exactly
    ``H * up / down``).
    """
    n, c, h, wd = x.shape
    fh, fw = f.shape
    p0 = p1 = padding
    if up > 1:
        p0 += (fw + up - 1) // 2
        p1 += (fw - up) // 2
    if down > 1:
        p0 += (fw - down + 1) // 2
        p1 += (fw - down) // 2
    xu = x.new_zeros(n, c, h * up, wd * up)
    xu[:, :, ::up, ::up] = x
    y = F.pad(xu, [p0, p1, p0, p1])
    if up > 1:
        y = _depthwise_true_conv(y, f * up * up)
    y = F.conv2d(y, w if flip_weight else w.flip([2, 3]), groups=groups)
    if down > 1:
        y = _depthwise_true_conv(y, f)[:, :, ::down, ::down]
    return y


# ----------------------------------------------------------------------------------------------
# setup_filter / upfirdn2d
# ----------------------------------------------------------------------------------------------


def test_setup_filter_outer_product_normalised():
    f = setup_filter([1, 3, 3, 1])
    expected = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0
    assert f.dtype == torch.float32 and f.shape == (4, 4)
    np.testing.assert_allclose(f.numpy(), expected, rtol=1e-7)
    raw = setup_filter([1, 2], normalize=False)
    np.testing.assert_allclose(raw.numpy(), [[1, 2], [2, 4]])


UPFIRDN_CASES = [
    # up, down, padding (x0, x1, y0, y1), flip_filter, gain, filter shape
    (1, 1, (0, 0, 0, 0), False, 1.0, (3, 3)),
    (1, 1, (0, 0, 0, 0), True, 1.0, (3, 3)),
    (1, 1, (2, 1, 0, 3), False, 1.0, (2, 4)),
    (2, 1, (2, 1, 2, 1), False, 4.0, (4, 4)),
    (2, 1, (2, 1, 2, 1), True, 4.0, (4, 4)),
    (3, 1, (1, 2, 0, 3), False, 1.0, (3, 4)),
    (1, 2, (1, 1, 1, 1), False, 1.0, (4, 4)),
    (1, 3, (0, 2, 1, 0), True, 2.5, (3, 2)),
    (2, 1, (-1, 2, 1, -2), False, 1.0, (3, 3)),  # negative padding crops
    (1, 1, (-2, -1, -1, 0), False, 1.0, (2, 2)),
    (2, 2, (2, 1, 1, 2), False, 4.0, (4, 4)),
    (3, 2, (-1, 0, 2, -3), True, 1.5, (2, 3)),
]


@pytest.mark.parametrize("up,down,pad,flip,gain,fshape", UPFIRDN_CASES)
def test_upfirdn2d_matches_loop_reference(up, down, pad, flip, gain, fshape):
    x = _randn(2, 3, 5, 6, seed=1)
    f = _randn(*fshape, seed=2)  # asymmetric filter: flipping matters
    out = upfirdn2d(x, f, up=up, down=down, padding=list(pad), flip_filter=flip, gain=gain)
    ref = ref_upfirdn2d(x.numpy(), f.numpy(), up, down, pad, flip, gain)
    assert tuple(out.shape) == ref.shape
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10, atol=1e-10)


def test_upfirdn2d_is_a_true_convolution_unless_flipped():
    x = _randn(1, 2, 5, 5, seed=3)
    f = torch.zeros(3, 3, dtype=DT)
    f[0, 0] = 1.0  # impulse in the top-left tap
    # Convolution: out[i] = in_padded[i + 2], so padding the top/left by 2 gives back x.
    conv = upfirdn2d(x, f, padding=[2, 0, 2, 0])
    torch.testing.assert_close(conv, x, rtol=0, atol=0)
    # Correlation: out[i] = in_padded[i], so padding the bottom/right by 2 gives back x.
    corr = upfirdn2d(x, f, padding=[0, 2, 0, 2], flip_filter=True)
    torch.testing.assert_close(corr, x, rtol=0, atol=0)


def test_upfirdn2d_identity_filter_pads_and_crops():
    x = _randn(1, 1, 4, 5, seed=4)
    out = upfirdn2d(x, None, padding=[1, -2, -1, 2])  # x: +1 left, -2 right; y: -1 top, +2 bottom
    expected = F.pad(x, [1, 0, 0, 2])[:, :, 1:, : 5 + 1 - 2]
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_upfirdn2d_padding_forms_are_equivalent():
    x = _randn(1, 2, 4, 4, seed=5)
    f = _randn(3, 3, seed=6)
    torch.testing.assert_close(upfirdn2d(x, f, padding=2), upfirdn2d(x, f, padding=[2, 2, 2, 2]))
    torch.testing.assert_close(upfirdn2d(x, f, padding=[1, 2]), upfirdn2d(x, f, padding=[1, 1, 2, 2]))
    with pytest.raises(ValueError):
        upfirdn2d(x, f, padding=[1, 2, 3])


@pytest.mark.parametrize("factor,taps", [(2, [1, 3, 3, 1]), (2, [1, 2, 1]), (4, [1, 3, 3, 1]), (4, [1, 1])])
def test_resample_output_sizes(factor, taps):
    f = setup_filter(taps)
    x = torch.randn(2, 3, 8, 12)
    assert tuple(upsample2d(x, f, up=factor).shape) == (2, 3, 8 * factor, 12 * factor)
    assert tuple(downsample2d(x, f, down=factor).shape) == (2, 3, 8 // factor, 12 // factor)


@pytest.mark.parametrize("factor,taps", [(2, [1, 3, 3, 1]), (2, [1, 2, 1]), (4, [1, 1, 1, 1])])
def test_upsample2d_keeps_a_constant_image_constant_inside(factor, taps):
    f = setup_filter(taps)
    x = torch.full((1, 2, 6, 6), 0.7, dtype=DT)
    y = upsample2d(x, f, up=factor)
    m = len(taps)  # border pixels see the zero padding
    interior = y[:, :, m:-m, m:-m]
    assert interior.numel() > 0
    torch.testing.assert_close(interior, torch.full_like(interior, 0.7))
    # gain scales linearly
    torch.testing.assert_close(upsample2d(x, f, up=factor, gain=3.0), 3.0 * y)


@pytest.mark.parametrize("factor,taps", [(2, [1, 3, 3, 1]), (2, [1, 2, 1]), (4, [1, 3, 3, 1])])
def test_downsample2d_keeps_a_constant_image_constant_inside(factor, taps):
    f = setup_filter(taps)
    x = torch.full((1, 2, 16, 16), -1.3, dtype=DT)
    y = downsample2d(x, f, down=factor)
    interior = y[:, :, 1:-1, 1:-1]
    assert interior.numel() > 0
    torch.testing.assert_close(interior, torch.full_like(interior, -1.3))


def test_downsample2d_matches_loop_reference():
    f = setup_filter([1, 3, 3, 1]).to(DT)
    x = _randn(1, 2, 8, 8, seed=7)
    ref = ref_upfirdn2d(x.numpy(), f.numpy(), 1, 2, (1, 1, 1, 1))
    np.testing.assert_allclose(downsample2d(x, f).numpy(), ref, rtol=1e-10, atol=1e-12)
    ref_up = ref_upfirdn2d(x.numpy(), f.numpy(), 2, 1, (2, 1, 2, 1), gain=4.0)
    np.testing.assert_allclose(upsample2d(x, f).numpy(), ref_up, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# conv2d_resample
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("up,down", [(2, 1), (1, 2), (1, 1), (2, 2)])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("flip_weight", [True, False])
def test_conv2d_resample_matches_generic_definition(up, down, k, groups, flip_weight):
    cin, cout, h = 4, 6, 6
    x = _randn(2, cin, h, h, seed=10)
    w = _randn(cout, cin // groups, k, k, seed=11)
    f = setup_filter([1, 3, 3, 1]).to(DT)
    out = conv2d_resample(x, w, f=f, up=up, down=down, padding=k // 2, groups=groups, flip_weight=flip_weight)
    ref = ref_conv2d_resample(x, w, f, up=up, down=down, padding=k // 2, groups=groups, flip_weight=flip_weight)
    assert tuple(out.shape) == (2, cout, h * up // down, h * up // down)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("up,down", [(2, 1), (1, 2)])
@pytest.mark.parametrize("taps", [[1, 2, 1], [1, 1], [1, 4, 6, 4, 1]])
def test_conv2d_resample_other_filters(up, down, taps):
    x = _randn(1, 3, 8, 8, seed=12)
    w = _randn(5, 3, 3, 3, seed=13)
    f = setup_filter(taps).to(DT)
    for flip_weight in (True, False):
        out = conv2d_resample(x, w, f=f, up=up, down=down, padding=1, flip_weight=flip_weight)
        ref = ref_conv2d_resample(x, w, f, up=up, down=down, padding=1, flip_weight=flip_weight)
        assert out.shape == ref.shape
        torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)


def test_conv2d_resample_identity_kernel_is_plain_resampling():
    x = _randn(1, 3, 6, 6, seed=14)
    eye = torch.eye(3, dtype=DT).reshape(3, 3, 1, 1)
    f = setup_filter([1, 3, 3, 1]).to(DT)
    torch.testing.assert_close(conv2d_resample(x, eye, f=f, up=2), upsample2d(x, f))
    torch.testing.assert_close(conv2d_resample(x, eye, f=f, down=2), downsample2d(x, f))


def test_conv2d_resample_plain_and_asymmetric_padding():
    x = _randn(2, 4, 5, 7, seed=15)
    w = _randn(3, 4, 3, 3, seed=16)
    torch.testing.assert_close(conv2d_resample(x, w, padding=1), F.conv2d(x, w, padding=1))
    torch.testing.assert_close(conv2d_resample(x, w, padding=1, flip_weight=False),
                               F.conv2d(x, w.flip([2, 3]), padding=1))
    out = conv2d_resample(x, w, padding=[2, 0, 1, 1])  # (x0, x1, y0, y1)
    torch.testing.assert_close(out, F.conv2d(F.pad(x, [2, 0, 1, 1]), w))


def test_conv2d_resample_needs_a_filter_to_resample():
    x = torch.randn(1, 2, 4, 4)
    w = torch.randn(2, 2, 3, 3)
    with pytest.raises(ValueError):
        conv2d_resample(x, w, up=2, padding=1)


# ----------------------------------------------------------------------------------------------
# bias_act
# ----------------------------------------------------------------------------------------------


def _ref_bias_act(x, b, act, gain, clamp, alpha):
    y = np.asarray(x, dtype=np.float64).copy()
    if b is not None:
        b = np.asarray(b, dtype=np.float64)
        shape = (1, -1) if b.ndim == 1 else b.shape
        y = y + b.reshape(*shape, *([1] * (y.ndim - 2)))
    if act == "relu":
        y = np.maximum(y, 0)
    elif act == "lrelu":
        y = np.where(y >= 0, y, alpha * y)
    default_gain = {"linear": 1.0, "relu": math.sqrt(2), "lrelu": math.sqrt(2)}[act]
    y = y * (default_gain if gain is None else gain)
    if clamp is not None:
        y = np.clip(y, -clamp, clamp)
    return y


def test_activation_gains():
    assert ACTIVATION_GAINS["linear"] == 1.0
    assert ACTIVATION_GAINS["relu"] == pytest.approx(math.sqrt(2))
    assert ACTIVATION_GAINS["lrelu"] == pytest.approx(math.sqrt(2))


@pytest.mark.parametrize("act", ["linear", "relu", "lrelu"])
@pytest.mark.parametrize("bias_kind", ["none", "channel", "sample"])
@pytest.mark.parametrize("gain,clamp", [(None, None), (0.7, None), (None, 0.5), (2.0, 1.1)])
def test_bias_act_matches_reference(act, bias_kind, gain, clamp):
    x = _randn(3, 4, 5, 2, seed=20)
    b = {"none": None, "channel": _randn(4, seed=21), "sample": _randn(3, 4, seed=22)}[bias_kind]
    out = bias_act(x, b, act=act, gain=gain, clamp=clamp, alpha=0.3)
    ref = _ref_bias_act(x.numpy(), None if b is None else b.numpy(), act, gain, clamp, 0.3)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12, atol=1e-12)
    if clamp is not None:
        assert out.abs().max() <= clamp + 1e-12


def test_bias_act_per_sample_bias_is_per_sample():
    x = torch.zeros(2, 3, 2, 2, dtype=DT)
    b = torch.tensor([[1.0, 2.0, 3.0], [-1.0, -2.0, -3.0]], dtype=DT)
    out = bias_act(x, b, act="linear")
    assert torch.equal(out[0, :, 0, 0], b[0]) and torch.equal(out[1, :, 1, 1], b[1])


def test_bias_act_on_2d_input_and_default_alpha():
    x = _randn(4, 6, seed=23)
    b = _randn(6, seed=24)
    np.testing.assert_allclose(bias_act(x, b, act="lrelu").numpy(),
                               _ref_bias_act(x.numpy(), b.numpy(), "lrelu", None, None, 0.2), rtol=1e-12)
    with pytest.raises(ValueError):
        bias_act(x, b, act="tanh")


# ----------------------------------------------------------------------------------------------
# modulated_conv2d
# ----------------------------------------------------------------------------------------------

B, I, O, K, H = 3, 4, 5, 3, 6


def _modconv_inputs(seed=30, per_sample=False):
    x = _randn(B, I, H, H, seed=seed)
    weight = _randn(B, O, I, K, K, seed=seed + 1) if per_sample else _randn(O, I, K, K, seed=seed + 1)
    styles = _randn(B, I, seed=seed + 2) + 1.5
    return x, weight, styles


def _manual_modconv(x, weight, styles, demodulate, up=1, f=None, padding=1, flip_weight=True, noise=None):
    """Loop over samples: build the modulated (and demodulated) kernel, then the generic conv."""
    outs = []
    for b in range(x.shape[0]):
        wb = (weight[b] if weight.ndim == 5 else weight) * styles[b].reshape(1, -1, 1, 1)
        if demodulate:
            wb = wb / torch.sqrt((wb**2).sum(dim=[1, 2, 3], keepdim=True) + 1e-8)
        outs.append(ref_conv2d_resample(x[b:b + 1], wb, f if f is not None else torch.ones(1, 1, dtype=x.dtype),
                                        up=up, padding=padding, flip_weight=flip_weight))
    y = torch.cat(outs)
    return y if noise is None else y + noise


@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("up", [1, 2])
@pytest.mark.parametrize("fused", [True, False])
def test_modulated_conv2d_matches_manual(demodulate, up, fused):
    x, weight, styles = _modconv_inputs()
    f = setup_filter([1, 3, 3, 1]).to(DT)
    noise = _randn(B, 1, H * up, H * up, seed=35) * 0.3
    flip_weight = up == 1
    out = modulated_conv2d(x, weight, styles, noise=noise, up=up, padding=1, resample_filter=f,
                           demodulate=demodulate, flip_weight=flip_weight, fused_modconv=fused)
    ref = _manual_modconv(x, weight, styles, demodulate, up=up, f=f, flip_weight=flip_weight, noise=noise)
    assert tuple(out.shape) == (B, O, H * up, H * up)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("up", [1, 2])
def test_modulated_conv2d_fused_equals_non_fused(demodulate, up):
    x, weight, styles = _modconv_inputs(seed=40)
    f = setup_filter([1, 3, 3, 1]).to(DT)
    kw = dict(up=up, padding=1, resample_filter=f, demodulate=demodulate, flip_weight=(up == 1))
    a = modulated_conv2d(x, weight, styles, fused_modconv=True, **kw)
    b = modulated_conv2d(x, weight, styles, fused_modconv=False, **kw)
    c = modulated_conv2d(x, weight, styles, fused_modconv=None, **kw)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("demodulate", [True, False])
@pytest.mark.parametrize("up", [1, 2])
def test_modulated_conv2d_per_sample_weight_equals_separate_calls(demodulate, up):
    x, weight, styles = _modconv_inputs(seed=50, per_sample=True)
    f = setup_filter([1, 3, 3, 1]).to(DT)
    kw = dict(up=up, padding=1, resample_filter=f, demodulate=demodulate, flip_weight=(up == 1))
    batched = modulated_conv2d(x, weight, styles, **kw)
    for b in range(B):
        for fused in (True, False):
            single = modulated_conv2d(x[b:b + 1], weight[b], styles[b:b + 1], fused_modconv=fused, **kw)
            torch.testing.assert_close(batched[b:b + 1], single, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError):
        modulated_conv2d(x, weight, styles, fused_modconv=False, **kw)


@pytest.mark.parametrize("fused", [True, False])
def test_demodulated_kernels_have_unit_norm(fused):
    """Read the effective kernel off the op's impulse responses and check every output channel's norm."""
    _, weight, styles = _modconv_inputs(seed=60)
    size = 5
    for b in range(B):
        # one input per input channel, with a unit impulse in the centre of that channel
        x = torch.zeros(I, I, size, size, dtype=DT)
        x[torch.arange(I), torch.arange(I), size // 2, size // 2] = 1.0
        s = styles[b:b + 1].expand(I, -1)
        y = modulated_conv2d(x, weight, s, padding=1, demodulate=True, fused_modconv=fused)  # [I, O, 5, 5]
        kernel = y[:, :, 1:4, 1:4].flip([2, 3]).transpose(0, 1)  # [O, I, 3, 3], correlation kernel
        # Only the 3x3 neighbourhood of the impulse is non-zero.
        assert y.abs().sum().item() == pytest.approx(kernel.abs().sum().item(), rel=1e-12)
        norms = kernel.square().sum(dim=[1, 2, 3])
        torch.testing.assert_close(norms, torch.ones(O, dtype=DT), rtol=1e-7, atol=1e-7)
        # ... and the kernel is the style-scaled weight up to a per-output-channel positive factor.
        modulated = weight * styles[b].reshape(1, -1, 1, 1)
        ratio = kernel / modulated
        torch.testing.assert_close(ratio, ratio[:, :1, :1, :1].expand_as(ratio), rtol=1e-9, atol=1e-9)
        assert (ratio > 0).all()


def test_modulated_conv2d_without_demodulation_is_a_plain_conv():
    x, weight, styles = _modconv_inputs(seed=70)
    out = modulated_conv2d(x, weight, styles, padding=1, demodulate=False)
    for b in range(B):
        wb = weight * styles[b].reshape(1, -1, 1, 1)
        torch.testing.assert_close(out[b:b + 1], F.conv2d(x[b:b + 1], wb, padding=1), rtol=1e-10, atol=1e-10)
    # 1x1 kernel, no padding, like toRGB
    w1 = _randn(3, I, 1, 1, seed=71)
    out1 = modulated_conv2d(x, w1, styles, demodulate=False, fused_modconv=True)
    ref1 = torch.einsum("oi,bihw,bi->bohw", w1[:, :, 0, 0], x, styles)
    torch.testing.assert_close(out1, ref1, rtol=1e-10, atol=1e-10)
