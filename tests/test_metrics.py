"""Evaluation metrics: image metrics against NumPy references, FID / KID identities, the FID Inception layout."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from hyperinverter.errors import CheckpointError
from hyperinverter.metrics import (
    InceptionFeatures,
    ReconstructionMetrics,
    available_metrics,
    compute_fid_kid,
    extract_features,
    feature_statistics,
    fid_from_features,
    frechet_distance,
    kid_from_features,
    ms_ssim,
    ms_ssim_min_size,
    mse,
    psnr,
    resize_for_protocol,
    ssim,
)
from hyperinverter.metrics.fid import mmd2_unbiased

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def images(b=2, h=32, w=40, seed=0, scale=0.5, dtype=torch.float64):
    """Smooth-ish random images in [-scale, scale]: clipping never touches them, even with small noise added."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 3, h // 4 + 1, w // 4 + 1, generator=g, dtype=dtype)
    x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
    x = x + 0.2 * torch.rand(b, 3, h, w, generator=g, dtype=dtype)
    return (x - x.amin()) / (x.amax() - x.amin()) * 2 * scale - scale


# --------------------------------------------------------------------------------------------- references

def np_window(size=11, sigma=1.5):
    c = np.arange(size) - (size - 1) / 2
    g = np.exp(-c ** 2 / (2 * sigma ** 2))
    g /= g.sum()
    return np.outer(g, g)


def np_filter_valid(img, win):
    """Valid 2-D correlation of one channel [H, W] with a [k, k] window."""
    views = np.lib.stride_tricks.sliding_window_view(img, win.shape)
    return np.einsum("ijkl,kl->ij", views, win)


def np_ssim_parts(a, b, win, c1=0.01 ** 2, c2=0.03 ** 2):
    """Mean SSIM and mean cs of one channel pair on [0, 1] (Wang et al. 2004, valid window positions)."""
    mu_a, mu_b = np_filter_valid(a, win), np_filter_valid(b, win)
    s_aa = np_filter_valid(a * a, win) - mu_a ** 2
    s_bb = np_filter_valid(b * b, win) - mu_b ** 2
    s_ab = np_filter_valid(a * b, win) - mu_a * mu_b
    cs = (2 * s_ab + c2) / (s_aa + s_bb + c2)
    lum = (2 * mu_a * mu_b + c1) / (mu_a ** 2 + mu_b ** 2 + c1)
    return (lum * cs).mean(), cs.mean()


def np_ssim(x, y):
    """[B, 3, H, W] in [-1, 1] -> [B]: per-channel SSIM on (x + 1) / 2, averaged over channels."""
    win = np_window()
    x, y = (x + 1) / 2, (y + 1) / 2
    return np.array([np.mean([np_ssim_parts(x[i, c], y[i, c], win)[0] for c in range(x.shape[1])])
                     for i in range(x.shape[0])])


def np_ms_ssim(x, y, weights=(0.0448, 0.2856, 0.3001, 0.2363, 0.1333)):
    win = np_window()
    x, y = (x + 1) / 2, (y + 1) / 2
    out = []
    for i in range(x.shape[0]):
        per_channel = []
        for c in range(x.shape[1]):
            a, b = x[i, c], y[i, c]
            vals = []
            for level in range(len(weights)):
                if level > 0:
                    pad = max(a.shape[0] % 2, a.shape[1] % 2)
                    a = np.pad(a, ((pad, 0), (pad, 0)), mode="edge")
                    b = np.pad(b, ((pad, 0), (pad, 0)), mode="edge")
                    h2, w2 = a.shape[0] // 2, a.shape[1] // 2
                    a = a[:2 * h2, :2 * w2].reshape(h2, 2, w2, 2).mean(axis=(1, 3))
                    b = b[:2 * h2, :2 * w2].reshape(h2, 2, w2, 2).mean(axis=(1, 3))
                s, cs = np_ssim_parts(a, b, win)
                vals.append(s if level == len(weights) - 1 else cs)
            per_channel.append(np.prod([max(v, 0) ** w for v, w in zip(vals, weights)]))
        out.append(np.mean(per_channel))
    return np.array(out)


# --------------------------------------------------------------------------------------------- MSE / PSNR

@pytest.mark.parametrize("device", DEVICES)
def test_identical_images(device):
    x = images(h=176, w=176, dtype=torch.float32).to(device)
    assert torch.equal(mse(x, x), torch.zeros(2, device=device))
    assert torch.isinf(psnr(x, x)).all() and (psnr(x, x) > 0).all()
    assert torch.allclose(ssim(x, x), torch.ones(2, device=device), atol=1e-6)
    assert torch.allclose(ms_ssim(x, x), torch.ones(2, device=device), atol=1e-6)
    assert psnr(x, x, eps=1e-8).cpu().tolist() == pytest.approx([80.0, 80.0])  # piq's cap


def test_constant_shift():
    x = images()
    y = x + 0.1
    assert torch.allclose(mse(x, y), torch.full((2,), 0.01, dtype=torch.float64))
    # 0.1 on [-1, 1] is 0.05 on [0, 1]: 10 log10(1 / 0.05^2) = 26.02 dB
    assert torch.allclose(psnr(x, y), torch.full((2,), 10 * math.log10(1 / 0.05 ** 2), dtype=torch.float64))
    assert (ssim(x, y) < 1).all() and (ssim(x, y) > 0.9).all()  # luminance term only


def test_known_noise_level():
    x = images(b=3, h=64, w=64)
    g = torch.Generator().manual_seed(1)
    signs = torch.randint(0, 2, x.shape, generator=g, dtype=torch.float64) * 2 - 1
    for delta in (0.02, 0.1, 0.3):
        y = x + delta * signs  # |x| <= 0.5: no clipping, squared error exactly delta^2 everywhere
        assert torch.allclose(mse(x, y), torch.full((3,), delta ** 2, dtype=torch.float64))
        expected = 10 * math.log10(1 / (delta / 2) ** 2)
        assert torch.allclose(psnr(x, y), torch.full((3,), expected, dtype=torch.float64))
        assert torch.allclose(psnr(x, y), 10 * torch.log10(4 / mse(x, y)))


def test_clipping_and_input_checks():
    x = images()
    assert torch.equal(mse(x * 10, x * 10 + 5), mse((x * 10).clamp(-1, 1), (x * 10 + 5).clamp(-1, 1)))
    assert mse(x, x + 5, clamp=False).allclose(torch.full((2,), 25.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="same shape"):
        mse(x, x[:, :, :-1])
    with pytest.raises(ValueError, match="float"):
        psnr((x * 100).to(torch.uint8), (x * 100).to(torch.uint8))
    assert mse(x.half(), x.half()).dtype == torch.float32


# --------------------------------------------------------------------------------------------- SSIM

def test_ssim_matches_numpy_reference():
    x = images(h=32, w=40)
    y = x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    y = y.clamp(-1, 1)
    ours = ssim(x, y).numpy()
    assert np.allclose(ours, np_ssim(x.numpy(), y.numpy()), atol=1e-10)
    assert np.allclose(ssim(x.float(), y.float()).numpy(), ours, atol=1e-5)


def test_ssim_matches_skimage_if_installed():
    metrics = pytest.importorskip("skimage.metrics")
    x = images(b=1, h=48, w=48)
    y = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)).clamp(-1, 1)
    ref = metrics.structural_similarity(((x[0] + 1) / 2).numpy(), ((y[0] + 1) / 2).numpy(), channel_axis=0,
                                        gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0)
    assert ssim(x, y).item() == pytest.approx(ref, abs=1e-6)


def test_ssim_properties():
    x = images(b=2, h=48, w=48)
    g = torch.Generator().manual_seed(5)
    noise = torch.randn(x.shape, generator=g, dtype=torch.float64)
    values = []
    for sigma in (0.0, 0.05, 0.2, 0.8):
        y = (x + sigma * noise).clamp(-1, 1)
        s = ssim(x, y)
        assert torch.allclose(s, ssim(y, x), atol=1e-12)  # symmetric
        assert ((s >= -1) & (s <= 1)).all()
        values.append(s)
    for a, b in zip(values, values[1:]):
        assert (b < a).all()  # decreases with noise
    anti = ssim(x, -x)  # inverted contrast: negative structure term
    assert ((anti >= -1) & (anti < 0.5)).all()


def test_ssim_downsample_option():
    x = images(b=1, h=512, w=512, dtype=torch.float32)
    y = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(6))).clamp(-1, 1)
    pooled = ssim(torch.nn.functional.avg_pool2d(x, 2), torch.nn.functional.avg_pool2d(y, 2))
    assert torch.allclose(ssim(x, y, downsample=True), pooled, atol=1e-6)  # piq's default: pool by round(512/256)


# --------------------------------------------------------------------------------------------- MS-SSIM

def test_ms_ssim_matches_numpy_reference_with_odd_sizes():
    x = images(b=1, h=161, w=170)  # odd sides: replicate padding at several scales
    y = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)).clamp(-1, 1)
    assert np.allclose(ms_ssim(x, y).numpy(), np_ms_ssim(x.numpy(), y.numpy()), atol=1e-10)


def test_ms_ssim_256_and_sizes():
    x = images(b=2, h=256, w=256, dtype=torch.float32)
    g = torch.Generator().manual_seed(8)
    noise = torch.randn(x.shape, generator=g)
    prev = ms_ssim(x, x)
    assert torch.allclose(prev, torch.ones(2), atol=1e-6)
    for sigma in (0.05, 0.2, 0.6):
        v = ms_ssim(x, (x + sigma * noise).clamp(-1, 1))
        assert ((v >= 0) & (v < prev)).all()
        prev = v
    assert ms_ssim_min_size() == 161
    ms_ssim(x[:, :, :161, :161], x[:, :, :161, :161])
    with pytest.raises(ValueError, match="at least 161x161"):
        ms_ssim(x[:, :, :160], x[:, :, :160])
    # Fewer scales on purpose: one scale is plain SSIM.
    y = (x + 0.2 * noise).clamp(-1, 1)
    assert torch.allclose(ms_ssim(x[..., :64, :64], y[..., :64, :64], weights=(1.0,)),
                          ssim(x[..., :64, :64], y[..., :64, :64]), atol=1e-6)


# --------------------------------------------------------------------------------------------- resize

def test_resize_for_protocol():
    x = images(b=2, h=256, w=256, dtype=torch.float32)
    assert resize_for_protocol(x) is x
    big = images(b=1, h=512, w=384, dtype=torch.float32)
    small = resize_for_protocol(big)
    assert small.shape == (1, 3, 256, 256)
    Image = pytest.importorskip("PIL.Image")
    # Same as the official torchvision Resize on PIL images (PIL bilinear, antialiased when shrinking).
    ref = np.asarray(Image.fromarray(big[0, 0].numpy(), mode="F").resize((256, 256), Image.BILINEAR))
    assert np.abs(small[0, 0].numpy() - ref).max() < 1e-5
    assert resize_for_protocol(big, mode="area").shape == (1, 3, 256, 256)
    with pytest.raises(ValueError):
        resize_for_protocol(big, mode="nearest")


# --------------------------------------------------------------------------------------------- FID / KID

def gaussian_features(n, d, seed, shift=0.0):
    rng = np.random.RandomState(seed)
    mix = rng.randn(d, d) / math.sqrt(d)
    return rng.randn(n, d) @ mix + shift


def test_fid_identities():
    f = gaussian_features(400, 16, seed=0)
    assert abs(fid_from_features(f, f)) < 1e-8
    shift = np.linspace(-1, 1, 16)
    # Equal covariances: FID is the squared distance of the means.
    assert fid_from_features(f, f + shift) == pytest.approx(float(shift @ shift), rel=1e-8)
    other = gaussian_features(400, 16, seed=1)
    assert fid_from_features(f, other) > 0
    assert fid_from_features(torch.from_numpy(f), torch.from_numpy(other)) == pytest.approx(
        fid_from_features(f, other))


def test_frechet_distance_against_closed_forms():
    rng = np.random.RandomState(2)
    d1, d2 = rng.rand(8) + 0.1, rng.rand(8) + 0.1
    mu1, mu2 = rng.randn(8), rng.randn(8)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(d1 + d2 - 2 * np.sqrt(d1 * d2))  # commuting (diagonal) case
    assert frechet_distance(mu1, np.diag(d1), mu2, np.diag(d2), method="eigh") == pytest.approx(expected, rel=1e-10)
    # General PSD matrices: torch-fidelity's formula, sum of sqrt(eigvals(S1 S2)).
    a, b = rng.randn(8, 20), rng.randn(8, 5)
    s1, s2 = a @ a.T / 20, b @ b.T / 5  # s2 is singular (rank 5)
    tr = np.sum(np.sqrt(np.linalg.eigvals(s1 @ s2).astype(complex)).real)
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr
    assert frechet_distance(mu1, s1, mu2, s2, method="eigh") == pytest.approx(expected, rel=1e-8)
    with pytest.raises(ValueError, match="method"):
        frechet_distance(mu1, s1, mu2, s2, method="svd")
    with pytest.raises(ValueError):
        frechet_distance(mu1, s1, mu2[:4], s2)


def test_frechet_distance_scipy_agrees_if_installed():
    pytest.importorskip("scipy.linalg")
    f1, f2 = gaussian_features(300, 12, seed=3), gaussian_features(300, 12, seed=4, shift=0.3)
    (m1, s1), (m2, s2) = feature_statistics(f1), feature_statistics(f2)
    assert frechet_distance(m1, s1, m2, s2, method="scipy") == pytest.approx(
        frechet_distance(m1, s1, m2, s2, method="eigh"), rel=1e-7)


def test_feature_statistics_unbiased():
    f = gaussian_features(50, 4, seed=5)
    mu, sigma = feature_statistics(f)
    assert np.allclose(mu, f.mean(0))
    assert np.allclose(sigma, (f - mu).T @ (f - mu) / 49)
    with pytest.raises(ValueError, match="N >= 2"):
        feature_statistics(f[:1])


def test_kid_identities(caplog):
    f = gaussian_features(300, 16, seed=6)
    same = kid_from_features(f, f, subsets=20, subset_size=100)
    shifted = kid_from_features(f, f + 1.0, subsets=20, subset_size=100)
    # Unbiased: near 0 for a set against itself, and here negative (subsets drawn from one set share
    # points, whose large k(x, x) land in the subtracted K_XY term).
    assert abs(same.mean) < 0.02 * shifted.mean and shifted.std > 0
    assert kid_from_features(f, f + 0.3, subsets=20, subset_size=100).mean > 0
    # One subset of everything: the plain unbiased MMD^2 of the two sets (subsets are permutations).
    g = gaussian_features(300, 16, seed=7, shift=0.2)
    gamma = 1 / 16
    kxx, kyy, kxy = [(a @ b.T * gamma + 1) ** 3 for a, b in ((f, f), (g, g), (f, g))]
    direct = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (300 * 299) - 2 * kxy.mean()
    with caplog.at_level(logging.WARNING, logger="hyperinverter"):
        clipped = kid_from_features(f, g, subsets=3, subset_size=1000)
    assert "subset size 1000" in caplog.text
    assert clipped.subset_size == 300 and clipped.std == pytest.approx(0, abs=1e-12)
    assert clipped.mean == pytest.approx(direct, rel=1e-10)
    assert mmd2_unbiased(kxx, kxy, kyy) == pytest.approx(direct, rel=1e-12)
    # Deterministic for a seed.
    assert kid_from_features(f, g, subsets=5, subset_size=50) == kid_from_features(f, g, subsets=5, subset_size=50)


class TinyExtractor(torch.nn.Module):
    """A small random feature network standing in for Inception."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2)

    def forward(self, x):
        return torch.cat([self.conv(x).mean((2, 3)), x.mean((2, 3))], 1)  # [B, 11]


def test_compute_fid_kid_with_a_small_extractor():
    real = images(b=40, h=16, w=16, seed=1, dtype=torch.float32)
    fake = images(b=40, h=16, w=16, seed=2, dtype=torch.float32) + 0.3
    batches = lambda t: (t[i:i + 16] for i in range(0, len(t), 16))  # noqa: E731
    ext = TinyExtractor()
    same = compute_fid_kid(batches(real), batches(real), ext, kid_subsets=10, kid_subset_size=20)
    assert abs(same.fid) < 1e-6 and abs(same.kid_mean) < 1e-2 and same.num_real == same.num_fake == 40
    diff = compute_fid_kid(batches(real), batches(fake), ext, kid_subsets=10, kid_subset_size=20)
    assert diff.fid > 0.01 and diff.kid_mean > 0
    feats = extract_features(batches(real), ext)
    assert feats.shape == (40, 11) and feats.dtype == torch.float64
    assert diff.fid == pytest.approx(fid_from_features(feats, extract_features(batches(fake), ext)))
    # A plain function works as an extractor too.
    plain = compute_fid_kid([real], [fake], lambda x: x.mean((2, 3)), kid_subsets=2, kid_subset_size=40)
    assert plain.kid_subset_size == 40
    with pytest.raises(ValueError, match="no images"):
        compute_fid_kid([], [fake], ext)


# --------------------------------------------------------------------------------------------- Inception

# pytorch-fid's FID Inception = torchvision Inception3 (27,161,264 parameters with the aux head and 1000
# classes) - AuxLogits (3,326,696) + 8 more classes in fc (8 * 2049) = 23,850,960; 21,785,568 without fc.
FID_INCEPTION_PARAMS = 27_161_264 - 3_326_696 + 8 * 2049


@pytest.fixture(scope="module")
def inception():
    torch.manual_seed(0)
    net = InceptionFeatures()
    with torch.no_grad():  # non-trivial BN statistics so features are not ~0 with the default init
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.001, 0.01)
                m.running_mean.uniform_(-0.01, 0.01)
                m.num_batches_tracked.fill_(7)
    return net


def test_inception_layout(inception):
    n = sum(p.numel() for p in inception.parameters())
    assert n == FID_INCEPTION_PARAMS == 23_850_960
    assert n - inception.fc.weight.numel() - inception.fc.bias.numel() == 21_785_568
    sd = inception.state_dict()
    shapes = {
        "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
        "Conv2d_4a_3x3.bn.running_var": (192,),
        "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
        "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
        "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
        "Mixed_7a.branch7x7x3_4.conv.weight": (192, 192, 3, 3),
        "Mixed_7c.branch3x3dbl_3b.conv.weight": (384, 384, 3, 1),
        "fc.weight": (1008, 2048),
        "fc.bias": (1008,),
    }
    for k, shape in shapes.items():
        assert tuple(sd[k].shape) == shape, k
    assert not any(k.startswith("AuxLogits") for k in sd)
    assert all(not p.requires_grad for p in inception.parameters()) and not inception.training


def test_inception_round_trip_and_forward(inception, tmp_path):
    path = tmp_path / "pt_inception-2015-12-05-6726825d.pth"
    # Files from old PyTorch versions have no num_batches_tracked counters: they must load too.
    torch.save({k: v for k, v in inception.state_dict().items() if not k.endswith("num_batches_tracked")}, path)
    loaded = InceptionFeatures.from_file(path)
    got = loaded.state_dict()
    for k, v in inception.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(got[k], v), k
    x = images(b=2, h=64, w=64, dtype=torch.float32)
    with torch.no_grad():
        f = loaded(x)
    assert f.shape == (2, 2048) and torch.isfinite(f).all() and (f >= 0).all() and f.std() > 0
    assert not torch.allclose(f[0], f[1])


def test_inception_wrong_keys(inception, tmp_path):
    sd = inception.state_dict()
    bad = dict(sd)
    del bad["Mixed_6b.branch1x1.conv.weight"]
    bad["AuxLogits.fc.weight"] = torch.zeros(1000, 768)
    path = tmp_path / "bad.pth"
    torch.save(bad, path)
    with pytest.raises(CheckpointError, match="Mixed_6b.branch1x1.conv.weight") as info:
        InceptionFeatures.from_file(path)
    assert "AuxLogits.fc.weight" in str(info.value)
    shaped = dict(sd, **{"fc.weight": torch.zeros(1000, 2048)})
    torch.save(shaped, path)
    with pytest.raises(CheckpointError, match="fc.weight"):
        InceptionFeatures.from_file(path)
    with pytest.raises(CheckpointError, match="not found"):
        InceptionFeatures.from_file(tmp_path / "missing.pth")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    x = images(b=2, h=192, w=200, dtype=torch.float32)
    y = (x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(9))).clamp(-1, 1)
    for fn in (mse, psnr, ssim, ms_ssim):
        got = fn(x.cuda(), y.cuda())
        assert got.is_cuda and torch.allclose(got.cpu(), fn(x, y), rtol=1e-4, atol=1e-5), fn.__name__
    assert torch.allclose(resize_for_protocol(x.cuda()).cpu(), resize_for_protocol(x), atol=1e-5)
    ext = TinyExtractor().cuda()
    res = compute_fid_kid([x], [y], ext, kid_subsets=2, kid_subset_size=2)
    cpu = compute_fid_kid([x], [y], TinyExtractor(), kid_subsets=2, kid_subset_size=2)
    assert res.fid == pytest.approx(cpu.fid, rel=1e-3, abs=1e-6)


# --------------------------------------------------------------------------------------------- availability

def test_available_metrics(tmp_path):
    status = available_metrics()
    assert list(status) == ["mse", "psnr", "ssim", "ms_ssim", "lpips", "id", "fid", "kid"]
    assert all(status[n].available for n in ("mse", "psnr", "ssim", "ms_ssim"))
    assert not status["fid"].available and status["fid"].reason == "no Inception weight file given (--inception)"
    assert not status["kid"].available and "--inception" in status["kid"].reason
    assert not status["lpips"].available and "--lpips-backbone" in status["lpips"].reason
    assert not status["id"].available and "--id" in status["id"].reason
    files = {name: tmp_path / f"{name}.pth" for name in ("inception", "alex", "head", "id")}
    for p in files.values():
        p.write_bytes(b"x")
    status = available_metrics(inception_path=files["inception"], lpips_backbone_path=files["alex"],
                               lpips_head_path=files["head"], id_path=files["id"], image_size=128)
    assert all(status[n].available for n in ("lpips", "id", "fid", "kid"))
    assert not status["ms_ssim"].available and "161" in status["ms_ssim"].reason
    half = available_metrics(lpips_backbone_path=files["alex"], inception_path=tmp_path / "nope.pth")
    assert not half["lpips"].available and "--lpips-head" in half["lpips"].reason
    assert not half["fid"].available and "not found" in half["fid"].reason and "nope.pth" in half["fid"].reason


def test_reconstruction_metrics_without_networks():
    metrics = ReconstructionMetrics()
    assert metrics.names == ["mse", "psnr", "ssim", "ms_ssim"]
    x = images(b=2, h=64, w=64, dtype=torch.float32)
    out = metrics(x, x + 0.1)
    assert list(out) == ["mse", "psnr", "ssim"]  # 64 px: too small for MS-SSIM
    assert out["mse"].shape == (2,)
    with pytest.raises(ValueError, match="both"):
        ReconstructionMetrics.from_paths(lpips_backbone_path="alex.pth")
