"""The StyleGAN2 (resnet) discriminator: shapes, an independent forward, minibatch std, gradients, checkpoints."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from hyperinverter import CheckpointError, Discriminator, Generator
from hyperinverter.checkpoints import CONFIG_NAME
from hyperinverter.stylegan2.layers import MinibatchStdLayer

from conftest import REFERENCE_DIR, TINY_D, TINY_G, make_discriminator
from test_ops import ref_conv2d_resample

SQRT2 = math.sqrt(2)


def _img(batch, res=16, seed=0, channels=3):
    return torch.randn(batch, channels, res, res, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------------------------
# Independent reference forward (NVlabs resnet discriminator, written out op by op)
# ----------------------------------------------------------------------------------------------


def _ref_mbstd(x, group_size):
    n = x.shape[0]
    g = n if group_size is None else min(group_size, n)
    m = n // g
    stats = []
    for i in range(n):
        members = x[i % m::m]  # groups are {j, j+m, j+2m, ...}
        assert members.shape[0] == g
        std = torch.sqrt(members.var(dim=0, unbiased=False) + 1e-8)
        stats.append(std.mean())
    feat = torch.stack(stats).reshape(n, 1, 1, 1).expand(n, 1, *x.shape[2:])
    return torch.cat([x, feat], dim=1)


def _ref_conv_layer(layer, x, gain=1.0):
    k = layer.weight.shape[-1]
    w = layer.weight / math.sqrt(layer.weight[0].numel())
    f = layer.resample_filter.to(x.dtype)
    y = ref_conv2d_resample(x, w, f, down=layer.down, padding=k // 2, flip_weight=True)
    if layer.bias is not None:
        y = y + layer.bias.reshape(1, -1, 1, 1)
    if layer.activation == "lrelu":
        return F.leaky_relu(y, 0.2) * SQRT2 * gain
    return y * gain


def _ref_fc(layer, x):
    y = x @ (layer.weight / math.sqrt(layer.in_features)).t() + layer.bias
    return F.leaky_relu(y, 0.2) * SQRT2 if layer.activation == "lrelu" else y


def _ref_discriminator(D, img, group_size):
    x = None
    for res in D.block_resolutions:
        blk = getattr(D, f"b{res}")
        if x is None:
            x = _ref_conv_layer(blk.fromrgb, img)
        y = _ref_conv_layer(blk.skip, x, gain=math.sqrt(0.5))
        x = _ref_conv_layer(blk.conv1, _ref_conv_layer(blk.conv0, x), gain=math.sqrt(0.5))
        x = x + y
    if x is None:
        x = _ref_conv_layer(D.fromrgb, img)
    x = _ref_mbstd(x, group_size)
    x = _ref_conv_layer(D.b4.conv, x)
    return _ref_fc(D.b4.out, _ref_fc(D.b4.fc, x.flatten(1)))


@pytest.mark.parametrize("res", [4, 8, 16])
def test_forward_matches_reference(res):
    D = make_discriminator(img_resolution=res, mbstd_group_size=2).double()
    img = _img(4, res).double()
    with torch.no_grad():
        torch.testing.assert_close(D(img), _ref_discriminator(D, img, 2), rtol=1e-9, atol=1e-9)


# ----------------------------------------------------------------------------------------------
# Shapes, minibatch std, errors
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("res,batch", [(4, 2), (16, 4), (32, 2)])
def test_output_shape(res, batch):
    D = make_discriminator(img_resolution=res)
    out = D(_img(batch, res))
    assert tuple(out.shape) == (batch, 1) and torch.isfinite(out).all()


@pytest.mark.parametrize("n,group", [(4, 2), (6, 3), (4, 4), (3, None), (2, 4), (4, 1)])
def test_minibatch_std_matches_reference(n, group):
    x = torch.randn(n, 5, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(MinibatchStdLayer(group)(x), _ref_mbstd(x, group), rtol=1e-12, atol=1e-12)


def test_minibatch_std_groups_are_strided_over_the_batch(tiny_D):
    """Group size 2, batch 4: samples {0, 2} and {1, 3} see each other, nothing else."""
    img = _img(4)
    with torch.no_grad():
        base = tiny_D(img)
        img2 = img.clone()
        img2[2] += 1.0
        out = tiny_D(img2)
    assert not torch.allclose(out[0], base[0])  # same group as sample 2
    torch.testing.assert_close(out[1], base[1], rtol=0, atol=0)
    torch.testing.assert_close(out[3], base[3], rtol=0, atol=0)


@pytest.mark.parametrize("batch", [6, 5, 7])  # min(4, batch) does not divide batch
def test_mbstd_group_size_must_divide_batch(batch):
    D = make_discriminator(mbstd_group_size=4)
    with pytest.raises(ValueError, match="group size"):
        D(_img(batch))


def test_mbstd_group_larger_than_batch_uses_whole_batch():
    D = make_discriminator(mbstd_group_size=4)
    assert tuple(D(_img(2)).shape) == (2, 1)
    assert tuple(D(_img(3)).shape) == (3, 1)  # group = min(4, 3) = 3
    assert tuple(D(_img(8)).shape) == (8, 1)


def test_wrong_image_shape():
    D = make_discriminator()
    with pytest.raises(ValueError, match="images must have shape"):
        D(_img(2, res=32))
    with pytest.raises(ValueError, match="images must have shape"):
        D(_img(2, channels=1))


@pytest.mark.parametrize("res", [48, 2])
def test_config_rejects_bad_resolution(res):
    with pytest.raises(ValueError, match="img_resolution"):
        Discriminator(**{**TINY_D, "img_resolution": res})


# ----------------------------------------------------------------------------------------------
# Gradients
# ----------------------------------------------------------------------------------------------


def test_gradients_flow_to_image_and_every_parameter():
    D = make_discriminator().train()
    img = _img(4).requires_grad_(True)
    F.softplus(D(img)).sum().backward()
    assert img.grad is not None and torch.isfinite(img.grad).all() and img.grad.abs().sum() > 0
    for name, p in D.named_parameters():
        assert p.grad is not None, f"{name}: no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name}: zero gradient"


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------


def test_round_trip(tmp_path, tiny_D):
    tiny_D.save_pretrained(tmp_path / "d")
    D2 = Discriminator.from_pretrained(tmp_path / "d")
    sd, sd2 = tiny_D.state_dict(), D2.state_dict()
    assert list(sd) == list(sd2)
    for k in sd:
        assert torch.equal(sd[k], sd2[k]), k
    img = _img(4)
    assert torch.equal(tiny_D(img), D2(img))
    meta = json.loads((tmp_path / "d" / CONFIG_NAME).read_text())
    assert meta["class"] == "Discriminator"
    for k, v in TINY_D.items():
        assert meta["config"][k] == v


def test_load_errors(tmp_path, tiny_D):
    with pytest.raises(CheckpointError):
        Discriminator.from_pretrained(tmp_path / "missing")
    tiny_D.save_pretrained(tmp_path / "d")
    with pytest.raises(CheckpointError):  # a discriminator folder is not a generator
        Generator.from_pretrained(tmp_path / "d")
    Generator(**TINY_G).save_pretrained(tmp_path / "g")
    with pytest.raises(CheckpointError):
        Discriminator.from_pretrained(tmp_path / "g")
    meta = json.loads((tmp_path / "d" / CONFIG_NAME).read_text())
    meta["config"]["channel_max"] = 64
    (tmp_path / "d" / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError):
        Discriminator.from_pretrained(tmp_path / "d")


@pytest.mark.parametrize("res", [256, 1024])
def test_config_f_state_dict_matches_official_manifest(res):
    manifest = json.loads((REFERENCE_DIR / f"nvlabs_D_config-f_{res}.json").read_text())
    D = Discriminator(img_resolution=res)
    expected = [(e["key"], tuple(e["shape"])) for e in manifest["entries"]]
    got = [(k, tuple(v.shape)) for k, v in D.state_dict().items()]
    assert got == expected
    assert len(got) == manifest["num_entries"]
