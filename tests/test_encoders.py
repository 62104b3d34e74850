"""E1 (W-encoder) and E2 (layer-wise encoder): official key names, shapes, an independent forward,
batching, gradients, input checks and configs."""

from __future__ import annotations

import dataclasses
import functools
import json

import pytest
import torch
import torch.nn.functional as F

from hyperinverter.encoders import (
    Backbone,
    BackboneConfig,
    LayerWiseEncoder,
    LayerWiseEncoderConfig,
    WEncoder,
    WEncoderConfig,
    ir_se50,
    official_church_encoders,
    official_face_encoders,
    resnet34,
    tiny_backbone,
    tiny_encoders,
)

from conftest import REFERENCE_DIR

KINDS = ["ir_se", "ir", "resnet"]


def _img(batch, res=64, seed=0, channels=3, width=None):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, channels, res, width or res, generator=g) * 2 - 1


def _manifest(name: str, prefix: str) -> tuple[list[tuple[str, list[int], str]], dict]:
    """(key without prefix, shape, dtype) entries of a reference manifest, and its header counts."""
    data = json.loads((REFERENCE_DIR / name).read_text())
    entries = [(e["key"][len(prefix):], e["shape"], e["dtype"]) for e in data["entries"] if e["key"].startswith(prefix)]
    assert len(entries) == len(data["entries"]) == data["num_entries"]
    return entries, data["header"]["counts"]


@functools.lru_cache(maxsize=None)
def _official(which: str):
    """Official-size modules, built once per test session (IR-SE-50 E2 is 135 M elements)."""
    torch.manual_seed(0)
    e1, e2 = official_face_encoders() if which.startswith("faces") else official_church_encoders()
    if which.endswith("e1"):
        return WEncoder.from_config(e1).eval()
    return LayerWiseEncoder.from_config(e2).eval()


def _randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial BatchNorm running stats / affine and PReLU slopes, so eval mode is really tested."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(1 + 0.2 * torch.randn(n, generator=g))
                m.bias.copy_(0.2 * torch.randn(n, generator=g))
            elif isinstance(m, torch.nn.PReLU):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5)
            elif isinstance(m, (torch.nn.Conv2d,)) and m.bias is not None:
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
        if hasattr(model, "linear"):
            model.linear.bias.copy_(torch.randn(model.linear.bias.shape, generator=g))
    return model


def _tiny(cls, kind="ir_se", num_slots=10, seed=0):
    torch.manual_seed(seed)
    e1, e2 = tiny_encoders(kind, num_slots=num_slots)
    return _randomize(cls.from_config(e1 if cls is WEncoder else e2), seed).eval()


# ----------------------------------------------------------------------------------------------
# (a) Official key names, shapes, order and element counts
# ----------------------------------------------------------------------------------------------

OFFICIAL = [
    ("faces_e1", "w_encoder_faces.json", "encoder."),
    ("churches_e1", "w_encoder_churches.json", "encoder."),
    ("faces_e2", "w_bar_encoder_faces_hd128.json", "w_bar_encoder."),
    ("churches_e2", "w_bar_encoder_churches_hd128.json", "w_bar_encoder."),
]


@pytest.mark.parametrize("which,manifest,prefix", OFFICIAL)
def test_official_state_dict_keys(which, manifest, prefix):
    entries, counts = _manifest(manifest, prefix)
    sd = _official(which).state_dict()
    ours = [(k, list(v.shape), str(v.dtype).replace("torch.", "")) for k, v in sd.items()]
    assert ours == entries  # same keys, shapes, dtypes and order
    # Header counts are over the whole state_dict, the int64 num_batches_tracked buffers included.
    assert len(sd) == counts["num_keys"]
    assert sum(v.numel() for v in sd.values()) == counts["num_elements"]


def test_official_checkpoint_loads_by_stripping_prefix():
    """A state dict laid out as the official W-encoder file loads strictly after removing ``encoder.``."""
    src = _randomize(WEncoder.from_config(official_church_encoders()[0]), seed=3)
    file_sd = {"encoder." + k: v.clone() for k, v in src.state_dict().items()}
    dst = WEncoder.from_config(official_church_encoders()[0])
    dst.load_state_dict({k[len("encoder."):]: v for k, v in file_sd.items() if k.startswith("encoder")}, strict=True)
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))


def test_stage_ends_and_widths():
    a, b = Backbone(ir_se50()), Backbone(resnet34())
    assert a.stage_ends == [2, 6, 20, 23] and len(a.body) == 24
    assert b.stage_ends == [2, 6, 12, 15] and len(b.body) == 16
    assert a.out_channels == b.out_channels == [64, 128, 256, 512]
    assert a.reduction == b.reduction == 16
    # SE bottleneck keeps at least one channel for tiny widths.
    tiny = Backbone(BackboneConfig(blocks=[1, 1, 1, 1], widths=[8, 8, 16, 16], stem_width=8, se_reduction=16))
    assert tiny.body[0].res_layer[5].fc1.weight.shape == (1, 8, 1, 1)
    assert not any("res_layer.5" in k for k in Backbone(tiny_backbone("ir")).state_dict())


# ----------------------------------------------------------------------------------------------
# (b) Output shapes
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("res", [64, 256])
def test_tiny_output_shapes(kind, res):
    e1, e2 = _tiny(WEncoder, kind), _tiny(LayerWiseEncoder, kind, num_slots=18)
    x = _img(2, res)
    with torch.no_grad():
        assert e1(x).shape == (2, 16)
        assert e2(x).shape == (2, 18, 16, res // 32, res // 32)


@pytest.mark.parametrize("num_slots", [1, 3, 5, 7, 8, 14])
def test_slot_counts_and_conv_depths(num_slots):
    e2 = _tiny(LayerWiseEncoder, num_slots=num_slots)
    depths = [len(s.convs) // 2 for s in e2.styles]
    assert depths == [1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3][:num_slots]
    assert hasattr(e2, "latlayer1") == (num_slots > 3) and hasattr(e2, "latlayer2") == (num_slots > 7)
    with torch.no_grad():
        assert e2(_img(1, 64, width=96)).shape == (1, num_slots, 16, 2, 3)  # non-square works too


def test_official_output_shapes():
    x = _img(1, 64)
    with torch.no_grad():
        assert _official("faces_e1")(x).shape == (1, 512)
        assert _official("churches_e1")(x).shape == (1, 512)
        assert _official("faces_e2")(x).shape == (1, 18, 512, 2, 2)
        # The one full-size forward: the official E2 input size.
        assert _official("churches_e2")(_img(1, 256)).shape == (1, 14, 512, 8, 8)


def test_features():
    bb = _randomize(Backbone(tiny_backbone("resnet"))).eval()
    x = _img(2, 64)
    with torch.no_grad():
        stem, u0, last, c2 = bb.features(x, [-1, 0, 3, 2])
        assert stem.shape == (2, 8, 32, 32) and u0.shape == (2, 8, 32, 32)
        assert c2.shape == (2, 16, 8, 8) and last.shape == (2, 16, 4, 4)
        assert torch.equal(last, bb(x))
    with pytest.raises(IndexError):
        bb.features(x, [4])


# ----------------------------------------------------------------------------------------------
# (c) Independent functional reference forward (from the README description)
# ----------------------------------------------------------------------------------------------


def _bn(sd, p, x):
    return F.batch_norm(x, sd[p + ".running_mean"], sd[p + ".running_var"], sd[p + ".weight"], sd[p + ".bias"],
                        training=False, eps=1e-5)


def _ref_trunk(sd, kind, blocks):
    """Returns a function image -> list of the outputs of every body unit."""
    firsts = {sum(blocks[:s]): s for s in range(len(blocks))}  # body index of each stage's first unit

    def run(x):
        if kind == "resnet":
            x = F.prelu(_bn(sd, "bn1", F.conv2d(x, sd["conv1.weight"], stride=2, padding=3)), sd["relu.weight"])
        else:
            x = F.conv2d(x, sd["input_layer.0.weight"], padding=1)
            x = F.prelu(_bn(sd, "input_layer.1", x), sd["input_layer.2.weight"])
        outs = []
        for i in range(sum(blocks)):
            p = f"body.{i}."
            if kind == "resnet":
                s = (1 if firsts[i] == 0 else 2) if i in firsts else 1
                y = F.relu(_bn(sd, p + "bn1", F.conv2d(x, sd[p + "conv1.weight"], stride=s, padding=1)))
                y = _bn(sd, p + "bn2", F.conv2d(y, sd[p + "conv2.weight"], padding=1))
                idn = x
                if p + "downsample.0.weight" in sd:
                    idn = _bn(sd, p + "downsample.1", F.conv2d(x, sd[p + "downsample.0.weight"], stride=s))
                x = F.relu(y + idn)
            else:
                s = 2 if i in firsts else 1
                if p + "shortcut_layer.0.weight" in sd:
                    short = _bn(sd, p + "shortcut_layer.1", F.conv2d(x, sd[p + "shortcut_layer.0.weight"], stride=s))
                else:
                    short = x[:, :, ::s, ::s]  # MaxPool2d(1, s) only subsamples
                r = F.conv2d(_bn(sd, p + "res_layer.0", x), sd[p + "res_layer.1.weight"], padding=1)
                r = F.prelu(r, sd[p + "res_layer.2.weight"])
                r = _bn(sd, p + "res_layer.4", F.conv2d(r, sd[p + "res_layer.3.weight"], stride=s, padding=1))
                if kind == "ir_se":
                    g = F.relu(F.conv2d(r.mean(dim=(2, 3), keepdim=True), sd[p + "res_layer.5.fc1.weight"]))
                    r = r * torch.sigmoid(F.conv2d(g, sd[p + "res_layer.5.fc2.weight"]))
                x = r + short
            outs.append(x)
        return outs

    return run


def _ref_w_encoder(sd, kind, blocks, x):
    feat = _ref_trunk(sd, kind, blocks)(x)[-1].mean(dim=(2, 3))
    w = sd["linear.weight"]
    return feat @ (w / w.shape[1] ** 0.5).t() + sd["linear.bias"]


def _ref_layer_encoder(sd, kind, blocks, num_slots, x):
    outs = _ref_trunk(sd, kind, blocks)(x)
    ends = [sum(blocks[:s + 1]) - 1 for s in range(len(blocks))]
    c1, c2, c3 = outs[ends[1]], outs[ends[2]], outs[ends[3]]

    def up_add(a, b):
        return F.interpolate(a, size=b.shape[-2:], mode="bilinear", align_corners=True) + b

    p2 = up_add(c3, F.conv2d(c2, sd["latlayer1.weight"], sd["latlayer1.bias"]))
    p1 = up_add(p2, F.conv2d(c1, sd["latlayer2.weight"], sd["latlayer2.bias"]))
    codes = []
    for j in range(num_slots):
        src, n = (c3, 1) if j < 3 else (p2, 2) if j < 7 else (p1, 3)
        for k in range(n):
            p = f"styles.{j}.convs.{2 * k}."
            src = F.leaky_relu(F.conv2d(src, sd[p + "weight"], sd[p + "bias"], stride=2, padding=1), 0.01)
        codes.append(src)
    return torch.stack(codes, dim=1)


@pytest.mark.parametrize("kind", KINDS)
def test_w_encoder_matches_reference(kind):
    e1 = _tiny(WEncoder, kind).double()
    x = _img(2, 64).double()
    with torch.no_grad():
        ref = _ref_w_encoder(e1.state_dict(), kind, e1.backbone_config.blocks, x)
        torch.testing.assert_close(e1(x), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("size", [(64, 64), (96, 64)])
def test_layer_encoder_matches_reference(kind, size):
    e2 = _tiny(LayerWiseEncoder, kind, num_slots=12).double()
    x = _img(2, size[0], width=size[1]).double()
    with torch.no_grad():
        ref = _ref_layer_encoder(e2.state_dict(), kind, e2.backbone_config.blocks, 12, x)
        torch.testing.assert_close(e2(x), ref, rtol=1e-10, atol=1e-10)


def test_multi_unit_stages_match_reference():
    """Two units per stage (identity shortcuts inside a stage), both trunk families."""
    for kind in ("ir_se", "resnet"):
        torch.manual_seed(1)
        bb = BackboneConfig(kind=kind, blocks=[2, 2, 3, 2], widths=[8, 12, 16, 16], stem_width=4, se_reduction=4)
        e2 = _randomize(LayerWiseEncoder(backbone=bb, num_slots=9), 1).eval().double()
        x = _img(1, 64).double()
        with torch.no_grad():
            ref = _ref_layer_encoder(e2.state_dict(), kind, bb.blocks, 9, x)
            torch.testing.assert_close(e2(x), ref, rtol=1e-10, atol=1e-10)


# ----------------------------------------------------------------------------------------------
# (d) Determinism and batching, (e) gradients
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [WEncoder, LayerWiseEncoder])
@pytest.mark.parametrize("kind", ["ir_se", "resnet"])
def test_eval_deterministic_and_batch_independent(cls, kind):
    model = _tiny(cls, kind)
    x = _img(3, 64, seed=5)
    with torch.no_grad():
        y = model(x)
        assert torch.equal(y, model(x))
        singles = torch.cat([model(x[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(y, singles, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [WEncoder, LayerWiseEncoder])
@pytest.mark.parametrize("kind", KINDS)
def test_gradients_reach_all_parameters(cls, kind):
    # se_reduction 1: with only 2-4 SE channels, a unit's SE ReLU can be off for the whole batch.
    bb = dataclasses.replace(tiny_backbone(kind), se_reduction=1)
    torch.manual_seed(0)
    model = cls(backbone=bb, w_dim=16) if cls is WEncoder else cls(backbone=bb, num_slots=10)
    _randomize(model).train()
    out = model(_img(2, 64, seed=2))
    (out * torch.randn_like(out)).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


# ----------------------------------------------------------------------------------------------
# (f) Bad inputs, configs
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 4, 64, 64), (1, 1, 64, 64), (3, 64, 64), (1, 3, 72, 64), (1, 3, 64, 250)])
@pytest.mark.parametrize("cls", [WEncoder, LayerWiseEncoder])
def test_bad_inputs(cls, shape):
    model = _tiny(cls)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\].*got \[" + ", ".join(map(str, shape))):
        model(torch.zeros(shape))


def test_size_multiples():
    e1, e2 = _tiny(WEncoder), _tiny(LayerWiseEncoder)
    with torch.no_grad():
        assert e1(_img(1, 48)).shape == (1, 16)  # the W-encoder only needs the trunk's reduction (16)
    with pytest.raises(ValueError, match="multiples of 32"):
        e2(_img(1, 48))


def test_configs_round_trip_and_validate():
    for cfg in (*official_face_encoders(), *official_church_encoders(), *tiny_encoders("ir")):
        d = json.loads(json.dumps(dataclasses.asdict(cfg)))
        assert type(cfg)(**d) == cfg
    assert WEncoderConfig(backbone=resnet34()) == WEncoderConfig(backbone=dataclasses.asdict(resnet34()))
    assert LayerWiseEncoderConfig(backbone=tiny_backbone()).style_channels == 16
    assert official_face_encoders()[1].style_channels == 512
    with pytest.raises(ValueError, match="style_channels"):
        LayerWiseEncoderConfig(backbone=tiny_backbone(), style_channels=512)
    with pytest.raises(ValueError, match="kind"):
        BackboneConfig(kind="vit")
    with pytest.raises(ValueError, match="equal length"):
        BackboneConfig(blocks=[1, 1], widths=[8])
    with pytest.raises(ValueError, match="last 3 stages"):
        LayerWiseEncoderConfig(backbone=BackboneConfig(blocks=[1, 1], widths=[8, 8]))
    with pytest.raises(ValueError, match="num_slots"):
        LayerWiseEncoderConfig(backbone=tiny_backbone(), num_slots=0)


@pytest.mark.parametrize("cls", [WEncoder, LayerWiseEncoder])
def test_save_and_load_pretrained(cls, tmp_path):
    model = _tiny(cls, "resnet")
    model.save_pretrained(tmp_path)
    loaded = cls.from_pretrained(tmp_path)
    assert loaded.config == model.config
    x = _img(1, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
