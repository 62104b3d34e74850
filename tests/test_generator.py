"""The StyleGAN2 generator: shapes, noise, truncation, per-sample weight deltas, gradients, checkpoints."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re

import pytest
import torch

from hyperinverter import CheckpointError, Generator, GeneratorConfig, config_f
from hyperinverter.checkpoints import CONFIG_NAME

from conftest import REFERENCE_DIR, TINY_G, make_generator


def _ws(G, batch, seed=1):
    """Random ws with a different w in every row (so that the routing of rows matters)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, G.num_ws, G.w_dim, generator=g)


def _random_deltas(G, batch, seed=2, scale=0.3):
    """A delta for every synthesis parameter (weights, biases, affines, noise strengths, const)."""
    g = torch.Generator().manual_seed(seed)
    return {name: scale * torch.randn(batch, *p.shape, generator=g) for name, p in G.synthesis.named_parameters()}


def _shifted_copy(G, deltas, b):
    """An independent generator whose parameters are ``param + delta[b]`` (no deltas needed to run it)."""
    G2 = copy.deepcopy(G)
    with torch.no_grad():
        params = dict(G2.synthesis.named_parameters())
        for name, d in deltas.items():
            params[name].add_(d[b] if d.shape[0] > 1 else d[0])
    return G2


def _close(a, b, atol=1e-5, rtol=1e-5):
    torch.testing.assert_close(a, b, atol=atol, rtol=rtol)


# ----------------------------------------------------------------------------------------------
# Shapes and config
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("res", [4, 16, 64])
def test_output_shapes(res):
    G = Generator(z_dim=8, w_dim=8, img_resolution=res, channel_base=512, channel_max=16, mapping_layers=2)
    assert G.num_ws == 2 * int(math.log2(res)) - 2
    assert G.config.num_ws == G.num_ws
    z = torch.randn(2, 8)
    ws = G.mapping(z)
    assert tuple(ws.shape) == (2, G.num_ws, 8)
    img = G.synthesis(ws)
    assert tuple(img.shape) == (2, 3, res, res) and img.dtype == torch.float32
    assert torch.isfinite(img).all()
    assert tuple(G(z).shape) == (2, 3, res, res)


def test_img_channels_and_w_avg_shape():
    G = make_generator(img_channels=1)
    assert tuple(G.synthesis(_ws(G, 2)).shape) == (2, 1, 32, 32)
    assert tuple(G.w_avg.shape) == (G.w_dim,)
    assert G.w_avg is G.mapping.w_avg


@pytest.mark.parametrize("res", [48, 2, 0, 3])
def test_config_rejects_bad_resolution(res):
    with pytest.raises(ValueError, match="img_resolution"):
        GeneratorConfig(img_resolution=res)
    with pytest.raises(ValueError, match="img_resolution"):
        Generator(**{**TINY_G, "img_resolution": res})


def test_channels_follow_channel_base_and_max():
    cfg = GeneratorConfig(img_resolution=64, channel_base=512, channel_max=32)
    assert cfg.channels() == {4: 32, 8: 32, 16: 32, 32: 16, 64: 8}
    G = Generator(**dataclasses.asdict(cfg))
    assert tuple(G.synthesis.b4.const.shape) == (32, 4, 4)
    assert tuple(G.synthesis.b32.conv0.weight.shape) == (16, 32, 3, 3)
    assert tuple(G.synthesis.b64.torgb.weight.shape) == (3, 8, 1, 1)


def test_every_ws_row_is_used(tiny_G):
    ws = _ws(tiny_G, 1)
    ref = tiny_G.synthesis(ws)
    for i in range(tiny_G.num_ws):
        ws2 = ws.clone()
        ws2[:, i] += 1.0
        assert not torch.allclose(tiny_G.synthesis(ws2), ref), f"row {i} of ws has no effect"


# ----------------------------------------------------------------------------------------------
# Noise modes
# ----------------------------------------------------------------------------------------------


def test_const_noise_is_deterministic(tiny_G):
    ws = _ws(tiny_G, 2)
    a = tiny_G.synthesis(ws, noise_mode="const")
    b = tiny_G.synthesis(ws, noise_mode="const")
    assert torch.equal(a, b)


def test_random_noise_differs_but_is_reproducible(tiny_G):
    ws = _ws(tiny_G, 2)
    torch.manual_seed(5)
    a = tiny_G.synthesis(ws, noise_mode="random")
    b = tiny_G.synthesis(ws, noise_mode="random")
    assert not torch.allclose(a, b)
    torch.manual_seed(5)
    c = tiny_G.synthesis(ws, noise_mode="random")
    assert torch.equal(a, c)
    # the two samples of one batch get different noise: identical ws rows give different images
    same = ws[:1].expand(2, -1, -1)
    d = tiny_G.synthesis(same, noise_mode="random")
    assert not torch.allclose(d[0], d[1])


def test_none_noise_differs_from_const_when_strengths_are_nonzero(tiny_G):
    ws = _ws(tiny_G, 2)
    assert not torch.allclose(tiny_G.synthesis(ws, noise_mode="none"), tiny_G.synthesis(ws, noise_mode="const"))


def test_noise_has_no_effect_with_zero_strength():
    G = make_generator(nonzero_noise=False)  # StyleGAN2 initialises noise_strength to 0
    ws = _ws(G, 2)
    none = G.synthesis(ws, noise_mode="none")
    assert torch.equal(G.synthesis(ws, noise_mode="const"), none)
    assert torch.equal(G.synthesis(ws, noise_mode="random"), none)


def test_use_noise_false_has_no_noise_parameters():
    G = make_generator(nonzero_noise=False, use_noise=False)
    names = list(G.state_dict())
    assert not any("noise" in n for n in names)
    ws = _ws(G, 2)
    assert torch.equal(G.synthesis(ws, noise_mode="random"), G.synthesis(ws, noise_mode="const"))


def test_bad_noise_mode(tiny_G):
    with pytest.raises(ValueError, match="noise_mode.*'bogus'"):
        tiny_G.synthesis(_ws(tiny_G, 1), noise_mode="bogus")


# ----------------------------------------------------------------------------------------------
# Mapping: truncation and w_avg
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def G_with_w_avg():
    G = make_generator()
    with torch.no_grad():
        G.mapping.w_avg.copy_(torch.randn(G.w_dim, generator=torch.Generator().manual_seed(9)))
    return G


def test_mapping_broadcasts_w_to_all_rows(tiny_G):
    ws = tiny_G.mapping(torch.randn(3, tiny_G.z_dim))
    assert torch.equal(ws, ws[:, :1].expand_as(ws))


def test_truncation_psi_zero_gives_w_avg(G_with_w_avg):
    G = G_with_w_avg
    ws = G.mapping(torch.randn(3, G.z_dim), truncation_psi=0.0)
    _close(ws, G.w_avg.expand_as(ws), atol=1e-6, rtol=0)


def test_truncation_psi_half_is_halfway(G_with_w_avg):
    G = G_with_w_avg
    z = torch.randn(3, G.z_dim)
    full = G.mapping(z)
    half = G.mapping(z, truncation_psi=0.5)
    _close(half, 0.5 * (full + G.w_avg), atol=1e-6, rtol=1e-6)
    # psi = 1 is the identity, psi = 2 extrapolates
    _close(G.mapping(z, truncation_psi=2.0), 2 * full - G.w_avg, atol=1e-5, rtol=1e-6)


def test_truncation_cutoff_only_changes_first_rows(G_with_w_avg):
    G = G_with_w_avg
    z = torch.randn(2, G.z_dim)
    full = G.mapping(z)
    cut = G.mapping(z, truncation_psi=0.0, truncation_cutoff=3)
    _close(cut[:, :3], G.w_avg.expand(2, 3, -1), atol=1e-6, rtol=0)
    assert torch.equal(cut[:, 3:], full[:, 3:])
    assert not torch.allclose(cut[:, 3:], G.w_avg.expand(2, G.num_ws - 3, -1))


@pytest.mark.parametrize("beta", [0.995, 0.5])
def test_update_w_avg_moves_toward_batch_mean(beta):
    G = make_generator(w_avg_beta=beta)
    with torch.no_grad():
        G.mapping.w_avg.copy_(torch.randn(G.w_dim))
    old = G.w_avg.clone()
    z = torch.randn(5, G.z_dim)
    ws = G.mapping(z)
    assert torch.equal(G.w_avg, old)  # no update by default
    batch_mean = ws[:, 0].mean(dim=0)
    ws_updated = G.mapping(z, update_w_avg=True)
    assert torch.equal(ws_updated, ws)  # psi = 1: the update does not change the returned ws
    _close(G.w_avg, old + (1 - beta) * (batch_mean - old), atol=1e-6, rtol=1e-6)


def test_mapping_rejects_bad_z(tiny_G):
    with pytest.raises(ValueError, match="z"):
        tiny_G.mapping(torch.randn(2, tiny_G.z_dim + 1))


# ----------------------------------------------------------------------------------------------
# Per-sample weight deltas
# ----------------------------------------------------------------------------------------------


def test_batched_deltas_equal_single_sample_runs(tiny_G):
    """B=3 with different deltas on every synthesis parameter == 3 generators with shifted parameters."""
    G = tiny_G
    ws = _ws(G, 3)
    deltas = _random_deltas(G, 3)
    assert set(deltas) == {n for n, _ in G.synthesis.named_parameters()}
    assert any(n.endswith("const") for n in deltas) and any(n.endswith("noise_strength") for n in deltas)
    batched = G.synthesis(ws, noise_mode="const", weight_deltas=deltas)
    for b in range(3):
        single = _shifted_copy(G, deltas, b).synthesis(ws[b:b + 1], noise_mode="const")
        _close(batched[b:b + 1], single)
        # the same through the delta path with a batch of one
        one = G.synthesis(ws[b:b + 1], weight_deltas={k: v[b:b + 1] for k, v in deltas.items()})
        _close(batched[b:b + 1], one)


@pytest.mark.parametrize("group", ["weight", "bias", "affine.weight", "affine.bias", "noise_strength", "const"])
def test_each_kind_of_delta_matches_shifted_parameters(tiny_G, group):
    G = tiny_G
    ws = _ws(G, 2, seed=3)
    deltas = {k: v for k, v in _random_deltas(G, 2, seed=4).items()
              if k.endswith("." + group) and (group != "weight" or "affine" not in k)
              and (group != "bias" or "affine" not in k)}
    assert deltas
    out = G.synthesis(ws, weight_deltas=deltas)
    assert not torch.allclose(out, G.synthesis(ws)), "deltas had no effect"
    for b in range(2):
        _close(out[b:b + 1], _shifted_copy(G, deltas, b).synthesis(ws[b:b + 1]))


def test_zero_deltas_equal_no_deltas(tiny_G):
    ws = _ws(tiny_G, 3)
    zeros = {k: torch.zeros_like(v) for k, v in _random_deltas(tiny_G, 3).items()}
    _close(tiny_G.synthesis(ws, weight_deltas=zeros), tiny_G.synthesis(ws))
    _close(tiny_G.synthesis(ws, weight_deltas={}), tiny_G.synthesis(ws), atol=0, rtol=0)


def test_shared_deltas_broadcast(tiny_G):
    ws = _ws(tiny_G, 3)
    shared = _random_deltas(tiny_G, 1)
    expanded = {k: v.expand(3, *v.shape[1:]).clone() for k, v in shared.items()}
    out = tiny_G.synthesis(ws, weight_deltas=shared)
    _close(out, tiny_G.synthesis(ws, weight_deltas=expanded))
    for b in range(3):
        _close(out[b:b + 1], _shifted_copy(tiny_G, shared, 0).synthesis(ws[b:b + 1]))
    # mixing [1, ...] and [B, ...] entries
    mixed = {k: (shared[k] if i % 2 else expanded[k]) for i, k in enumerate(shared)}
    _close(tiny_G.synthesis(ws, weight_deltas=mixed), out)


def test_deltas_change_the_output_per_sample(tiny_G):
    ws = _ws(tiny_G, 2)
    name = "b16.conv1.weight"
    d = torch.zeros(2, *tiny_G.synthesis.b16.conv1.weight.shape)
    d[1] = 0.5 * torch.randn(d.shape[1:])
    base = tiny_G.synthesis(ws)
    out = tiny_G.synthesis(ws, weight_deltas={name: d})
    _close(out[0], base[0])
    assert not torch.allclose(out[1], base[1], atol=1e-3)


def test_deltas_through_generator_forward(tiny_G):
    z = torch.randn(2, tiny_G.z_dim)
    deltas = _random_deltas(tiny_G, 2, scale=0.1)
    ws = tiny_G.mapping(z, truncation_psi=0.7)
    _close(tiny_G(z, truncation_psi=0.7, weight_deltas=deltas), tiny_G.synthesis(ws, weight_deltas=deltas))


@pytest.mark.parametrize("fused", [True, False])
def test_fused_modconv_settings_agree(tiny_G, fused):
    ws = _ws(tiny_G, 3)
    _close(tiny_G.synthesis(ws, fused_modconv=fused), tiny_G.synthesis(ws, fused_modconv=None))


def test_fused_modconv_true_with_deltas(tiny_G):
    ws = _ws(tiny_G, 2)
    deltas = _random_deltas(tiny_G, 2)
    _close(tiny_G.synthesis(ws, weight_deltas=deltas, fused_modconv=True),
           tiny_G.synthesis(ws, weight_deltas=deltas))


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape_fn", [
    lambda G: (2, G.num_ws - 1, G.w_dim),
    lambda G: (2, G.num_ws, G.w_dim + 1),
    lambda G: (G.num_ws, G.w_dim),
    lambda G: (1, 2, G.num_ws, G.w_dim),
])
def test_ws_of_wrong_shape(tiny_G, shape_fn):
    with pytest.raises(ValueError, match=r"ws must have shape"):
        tiny_G.synthesis(torch.randn(*shape_fn(tiny_G)))


def test_unknown_delta_name(tiny_G):
    ws = _ws(tiny_G, 2)
    for name in ["b16.conv1.wieght", "synthesis.b16.conv1.weight", "b4.conv0.weight", "b16.resample_filter"]:
        with pytest.raises(ValueError, match=re.escape(repr(name))):
            tiny_G.synthesis(ws, weight_deltas={name: torch.zeros(2, 16, 16, 3, 3)})


def test_delta_with_wrong_shape(tiny_G):
    ws = _ws(tiny_G, 2)
    name = "b16.conv1.weight"
    for bad in [torch.zeros(2, 16, 16, 1, 1), torch.zeros(16, 16, 3, 3), torch.zeros(2, 16, 16, 3)]:
        with pytest.raises(ValueError, match=re.escape(repr(name))):
            tiny_G.synthesis(ws, weight_deltas={name: bad})
    # scalar parameter: a delta for noise_strength is [B]
    with pytest.raises(ValueError, match=re.escape(repr("b8.conv1.noise_strength"))):
        tiny_G.synthesis(ws, weight_deltas={"b8.conv1.noise_strength": torch.zeros(2, 1)})


def test_delta_with_wrong_batch(tiny_G):
    ws = _ws(tiny_G, 3)
    name = "b32.torgb.affine.bias"
    with pytest.raises(ValueError, match=re.escape(repr(name))):
        tiny_G.synthesis(ws, weight_deltas={name: torch.zeros(2, 8)})


def test_delta_of_integer_dtype(tiny_G):
    name = "b32.torgb.bias"
    with pytest.raises(ValueError, match=re.escape(repr(name))):
        tiny_G.synthesis(_ws(tiny_G, 1), weight_deltas={name: torch.zeros(1, 3, dtype=torch.long)})


# ----------------------------------------------------------------------------------------------
# Gradients
# ----------------------------------------------------------------------------------------------


def test_gradients_reach_every_parameter():
    G = make_generator().train()
    z = torch.randn(3, G.z_dim)
    img = G(z, noise_mode="const")
    weights = torch.randn(img.shape, generator=torch.Generator().manual_seed(3))
    (img * weights).sum().backward()
    for name, p in G.named_parameters():
        assert p.grad is not None, f"{name}: no gradient"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name}: zero gradient"


def test_gradients_reach_deltas(tiny_G):
    ws = _ws(tiny_G, 2).requires_grad_(True)
    deltas = {k: v.requires_grad_(True) for k, v in _random_deltas(tiny_G, 2, scale=0.1).items()}
    img = tiny_G.synthesis(ws, weight_deltas=deltas)
    (img * torch.randn(img.shape, generator=torch.Generator().manual_seed(4))).sum().backward()
    assert ws.grad is not None and ws.grad.abs().sum() > 0
    for name, d in deltas.items():
        assert d.grad is not None, f"{name}: no gradient"
        assert torch.isfinite(d.grad).all(), f"{name}: non-finite gradient"
        for b in range(2):  # every sample's delta gets its own gradient
            assert d.grad[b].abs().sum() > 0, f"{name}[{b}]: zero gradient"


def test_delta_gradient_equals_parameter_gradient(tiny_G):
    """d loss / d delta[b] == d loss_b / d param of the shifted copy (a finite-difference-free check)."""
    G = tiny_G
    ws = _ws(G, 2)
    deltas = {k: v.requires_grad_(True) for k, v in _random_deltas(G, 2, scale=0.1).items()}
    img = G.synthesis(ws, weight_deltas=deltas)
    img.square().sum().backward()
    for b in range(2):
        G2 = _shifted_copy(G, {k: v.detach() for k, v in deltas.items()}, b)
        G2.synthesis(ws[b:b + 1]).square().sum().backward()
        for name, p in G2.synthesis.named_parameters():
            scale = p.grad.abs().max().item()  # float32 gradients reach a few hundred
            _close(deltas[name].grad[b], p.grad, atol=1e-5 * scale + 1e-6, rtol=1e-4)


# ----------------------------------------------------------------------------------------------
# save_pretrained / from_pretrained
# ----------------------------------------------------------------------------------------------


@pytest.fixture
def saved_G(tmp_path, G_with_w_avg):
    G_with_w_avg.save_pretrained(tmp_path / "g")
    return G_with_w_avg, tmp_path / "g"


def test_round_trip(saved_G):
    G, folder = saved_G
    assert (folder / CONFIG_NAME).is_file() and (folder / "model.safetensors").is_file()
    G2 = Generator.from_pretrained(folder)
    sd, sd2 = G.state_dict(), G2.state_dict()
    assert list(sd) == list(sd2)
    assert any(k.endswith("noise_const") for k in sd) and "mapping.w_avg" in sd
    for k in sd:
        assert torch.equal(sd[k], sd2[k]), k
    assert G2.w_avg.abs().sum() > 0
    z = torch.randn(2, G.z_dim)
    assert torch.equal(G(z, truncation_psi=0.5), G2(z, truncation_psi=0.5))
    ws = _ws(G, 2)
    deltas = _random_deltas(G, 2)
    assert torch.equal(G.synthesis(ws, weight_deltas=deltas), G2.synthesis(ws, weight_deltas=deltas))
    assert not G2.training


def test_config_json_holds_the_config(saved_G):
    G, folder = saved_G
    meta = json.loads((folder / CONFIG_NAME).read_text())
    assert meta["class"] == "Generator"
    assert meta["config"] == json.loads(json.dumps(dataclasses.asdict(G.config)))
    for k, v in TINY_G.items():
        assert meta["config"][k] == v
    assert Generator.read_config(folder) == G.config


def test_tampered_config_raises(saved_G):
    _, folder = saved_G
    meta = json.loads((folder / CONFIG_NAME).read_text())
    meta["config"]["img_resolution"] = 64
    (folder / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError):
        Generator.from_pretrained(folder)


@pytest.mark.parametrize("change", [
    lambda m: m["config"].update(img_resolution=48),
    lambda m: m["config"].update(not_a_field=1),
    lambda m: m.update({"class": "Discriminator"}),
    lambda m: m.pop("config"),
])
def test_invalid_config_raises(saved_G, change):
    _, folder = saved_G
    meta = json.loads((folder / CONFIG_NAME).read_text())
    change(meta)
    (folder / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError):
        Generator.from_pretrained(folder)


def test_missing_folder_or_files_raise(tmp_path, saved_G):
    with pytest.raises(CheckpointError):
        Generator.from_pretrained(tmp_path / "does-not-exist")
    _, folder = saved_G
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError):
        Generator.from_pretrained(folder)


def test_corrupt_weights_raise(saved_G):
    _, folder = saved_G
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError):
        Generator.from_pretrained(folder)


# ----------------------------------------------------------------------------------------------
# Official layout
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("res", [256, 1024])
def test_config_f_state_dict_matches_official_manifest(res):
    manifest = json.loads((REFERENCE_DIR / f"nvlabs_G_ema_config-f_{res}.json").read_text())
    G = Generator.from_config(config_f(res))
    expected = [(e["key"], tuple(e["shape"])) for e in manifest["entries"]]
    got = [(k, tuple(v.shape)) for k, v in G.state_dict().items()]
    assert got == expected
    assert all(v.dtype == torch.float32 for v in G.state_dict().values())
    assert G.num_ws == manifest["header"]["num_ws"]
    assert len(got) == manifest["num_entries"]


# ----------------------------------------------------------------------------------------------
# CPU / CUDA parity
# ----------------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_cuda_parity_with_deltas(tiny_G):
    ws = _ws(tiny_G, 3)
    deltas = _random_deltas(tiny_G, 3)
    cpu = tiny_G.synthesis(ws, weight_deltas=deltas)
    Gc = copy.deepcopy(tiny_G).cuda()
    gpu = Gc.synthesis(ws.cuda(), weight_deltas={k: v.cuda() for k, v in deltas.items()})
    assert gpu.device.type == "cuda"
    _close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)
    z = torch.randn(2, tiny_G.z_dim)
    _close(Gc(z.cuda(), truncation_psi=0.7).cpu(), tiny_G(z, truncation_psi=0.7), atol=1e-4, rtol=1e-4)
