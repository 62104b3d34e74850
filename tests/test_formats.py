"""Reading generators and discriminators from every supported file format."""

from __future__ import annotations

import argparse
import json
import math
import pickle
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers_formats import to_rosinality_state_dict, write_nvlabs_pickle
from safetensors.torch import save_file

from hyperinverter import (CheckpointError, Discriminator, Generator, UnsafePickleError, load_discriminator,
                           load_generator)
from hyperinverter.ops import upfirdn2d

REFERENCE = Path(__file__).parent / "data" / "reference"
TINY = dict(z_dim=16, w_dim=16, img_resolution=32, channel_base=512, channel_max=32, mapping_layers=3)


def _randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial values everywhere (noise strengths and biases start at zero otherwise)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("resample_filter"):
                continue
            t.copy_(torch.randn(t.shape, generator=gen) * (0.2 if "noise_strength" in name or "bias" in name else 1))
    return model.eval()


@pytest.fixture
def G():
    return _randomize(Generator(**TINY))


@pytest.fixture
def D():
    return _randomize(Discriminator(img_resolution=32, channel_base=512, channel_max=32, mbstd_group_size=2), 1)


def _render(G, seed=1, batch=2):
    z = torch.randn([batch, G.z_dim], generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return G(z, truncation_psi=0.7, noise_mode="const")


def _same_model(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# ----------------------------------------------------------------------------------------- NVIDIA pickle
def test_nvlabs_pickle_reads_g_ema_and_never_executes_source(tmp_path, G, D):
    marker = tmp_path / "marker"
    path = tmp_path / "network-snapshot.pkl"
    write_nvlabs_pickle(path, G, D, marker=marker)
    loaded = load_generator(path)
    assert not marker.exists(), "code stored in the pickle was executed"
    assert loaded.config == G.config
    _same_model(loaded, G)  # the EMA generator, not the perturbed G
    assert torch.equal(_render(loaded), _render(G))
    d = load_discriminator(path)
    _same_model(d, D)
    img = torch.randn(2, 3, 32, 32)
    assert torch.equal(d(img), D(img))


@pytest.mark.parametrize("protocol", [2, 4])
def test_nvlabs_pickle_protocols_and_fallback_to_G(tmp_path, G, protocol):
    path = tmp_path / "converted.pkl"
    write_nvlabs_pickle(path, G, G_ema=False, protocol=protocol, training_set_kwargs=False)
    loaded = load_generator(path)
    with torch.no_grad():  # without G_ema, G (perturbed by +0.5 in the writer) is taken
        for (k, a), b in zip(loaded.state_dict().items(), G.state_dict().values()):
            if not k.endswith(("resample_filter", "noise_const", "w_avg")):
                assert torch.allclose(a, b + 0.5), k


def test_nvlabs_pickle_conv_clamp_is_read(tmp_path):
    G = _randomize(Generator(**TINY, conv_clamp=0.05))
    path = tmp_path / "clamped.pkl"
    write_nvlabs_pickle(path, G)
    loaded = load_generator(path)
    assert loaded.config.conv_clamp == 0.05
    assert torch.equal(_render(loaded), _render(G))
    assert not torch.allclose(_render(loaded), _render(_randomize(Generator(**TINY))))


def test_pickle_with_other_global_is_refused_by_name(tmp_path, G):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"G_ema": Evil()}, protocol=3))
    with pytest.raises(UnsafePickleError, match=r"builtins\.print"):
        load_generator(path)

    import os
    path.write_bytes(pickle.dumps({"G_ema": os.system}, protocol=2))
    with pytest.raises(UnsafePickleError, match=r"(posix|os)\.system"):
        load_generator(path)


def test_truncated_and_corrupt_files(tmp_path, G):
    path = tmp_path / "net.pkl"
    write_nvlabs_pickle(path, G)
    data = path.read_bytes()
    (tmp_path / "trunc.pkl").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="trunc.pkl: truncated or corrupt"):
        load_generator(tmp_path / "trunc.pkl")
    pt = tmp_path / "g.pt"
    torch.save(G.state_dict(), pt)
    (tmp_path / "trunc.pt").write_bytes(pt.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="trunc.pt: truncated or corrupt"):
        load_generator(tmp_path / "trunc.pt")
    (tmp_path / "empty.pkl").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_generator(tmp_path / "empty.pkl")
    (tmp_path / "text.pt").write_text("hello, this is not a model")
    with pytest.raises(CheckpointError, match="not a recognised model file"):
        load_generator(tmp_path / "text.pt")
    with pytest.raises(CheckpointError, match="no such file"):
        load_generator(tmp_path / "missing.pkl")


# ------------------------------------------------------------------------------- NVIDIA-keyed state dicts
@pytest.mark.parametrize("container", ["bare", "G_ema", "prefixed"])
def test_nvlabs_keyed_state_dict(tmp_path, G, container):
    sd = G.state_dict()
    obj = {"bare": sd, "G_ema": {"G_ema": sd, "step": torch.tensor(3)},
           "prefixed": {f"G_ema.{k}": v for k, v in sd.items()}}[container]
    path = tmp_path / "g.pth"
    torch.save(obj, path)
    loaded = load_generator(path)
    assert loaded.config == G.config  # channel table, depth and filter inferred from the tensors
    assert torch.equal(_render(loaded), _render(G))


def test_safetensors_file_with_nvlabs_keys(tmp_path, G):
    path = tmp_path / "g.safetensors"
    save_file({k: v.contiguous() for k, v in G.state_dict().items()}, str(path))
    assert torch.equal(_render(load_generator(path)), _render(G))


def test_config_override_for_state_dicts(tmp_path, G):
    torch.save(G.state_dict(), tmp_path / "g.pt")
    assert load_generator(tmp_path / "g.pt", conv_clamp=256.0).config.conv_clamp == 256.0
    with pytest.raises(TypeError, match="clampp"):
        load_generator(tmp_path / "g.pt", conv_clampp=1)


def test_contradicting_shapes_are_reported(tmp_path, G):
    sd = dict(G.state_dict())
    sd["synthesis.b8.conv1.weight"] = sd["synthesis.b8.conv1.weight"][:, :-1]
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match=r"synthesis\.b8\.conv1\.weight"):
        load_generator(tmp_path / "bad.pt")
    # a pickle whose recorded config contradicts its tensors
    path = tmp_path / "mismatch.pkl"
    write_nvlabs_pickle(path, G, kwargs_override={"img_resolution": 64})
    with pytest.raises(CheckpointError, match=r"recorded img_resolution=64 contradicts .* img_resolution=32"):
        load_generator(path)
    write_nvlabs_pickle(path, G, kwargs_override={"w_dim": 8})
    with pytest.raises(CheckpointError, match=r"w_dim=8"):
        load_generator(path)
    # a recorded config that leaves fields out is completed from the tensors
    write_nvlabs_pickle(path, G, kwargs_override={"img_resolution": None, "z_dim": None})
    assert load_generator(path).config == G.config


def test_unrecognised_contents(tmp_path):
    torch.save({"weights": {"a": torch.zeros(3)}, "step": 5}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no StyleGAN2 generator found"):
        load_generator(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no StyleGAN2 discriminator found"):
        load_discriminator(tmp_path / "other.pt")


def test_torch_file_with_code_is_refused(tmp_path):
    torch.save({"g_ema": {}, "fn": math.sqrt}, tmp_path / "code.pt")
    with pytest.raises(UnsafePickleError, match="sqrt"):
        load_generator(tmp_path / "code.pt")


# ---------------------------------------------------------------------------------------------- rosinality
def _rosinality_reference(sd: dict, ws: torch.Tensor, size: int) -> torch.Tensor:
    """The rosinality forward pass written from its published maths (not from our modules)."""
    n_mlp = len([k for k in sd if k.startswith("style.") and k.endswith(".weight")])

    def equal_linear(x, prefix, lr_mul=1.0, act=False):
        w = sd[f"{prefix}.weight"]
        out = F.linear(x, w * (1 / math.sqrt(w.shape[1])) * lr_mul)
        b = sd[f"{prefix}.bias"] * lr_mul
        return F.leaky_relu(out + b, 0.2) * math.sqrt(2) if act else out + b

    def modconv(x, prefix, w, demod=True, up=False):
        weight = sd[f"{prefix}.conv.weight"]  # [1, O, I, k, k]
        _, o, i, k, _ = weight.shape
        style = equal_linear(w, f"{prefix}.conv.modulation").view(-1, 1, i, 1, 1)
        wt = (1 / math.sqrt(i * k * k)) * weight * style
        if demod:
            wt = wt * torch.rsqrt(wt.pow(2).sum([2, 3, 4]) + 1e-8).view(-1, o, 1, 1, 1)
        b = x.shape[0]
        x = x.reshape(1, -1, *x.shape[2:])
        if up:
            wt = wt.transpose(1, 2).reshape(b * i, o, k, k)
            out = F.conv_transpose2d(x, wt, padding=0, stride=2, groups=b)
            out = upfirdn2d(out.reshape(b, o, *out.shape[2:]), sd[f"{prefix}.conv.blur.kernel"], padding=1)
            return out
        out = F.conv2d(x, wt.reshape(b * o, i, k, k), padding=k // 2, groups=b)
        return out.reshape(b, o, *out.shape[2:])

    def styled(x, prefix, w, noise, up=False):
        out = modconv(x, prefix, w, up=up)
        out = out + sd[f"{prefix}.noise.weight"] * noise
        return F.leaky_relu(out + sd[f"{prefix}.activate.bias"].view(1, -1, 1, 1), 0.2) * math.sqrt(2)

    def to_rgb(x, prefix, w, skip=None):
        out = modconv(x, prefix, w, demod=False) + sd[f"{prefix}.bias"]
        if skip is not None:
            out = out + upfirdn2d(skip, sd[f"{prefix}.upsample.kernel"], up=2, padding=[2, 1, 2, 1])
        return out

    del n_mlp
    noise = [sd[f"noises.noise_{i}"] for i in range((int(math.log2(size)) - 2) * 2 + 1)]
    out = sd["input.input"].repeat(ws.shape[0], 1, 1, 1)
    out = styled(out, "conv1", ws[:, 0], noise[0])
    skip = to_rgb(out, "to_rgb1", ws[:, 1])
    i = 1
    for k in range(int(math.log2(size)) - 2):
        out = styled(out, f"convs.{2 * k}", ws[:, i], noise[2 * k + 1], up=True)
        out = styled(out, f"convs.{2 * k + 1}", ws[:, i + 1], noise[2 * k + 2])
        skip = to_rgb(out, f"to_rgbs.{k}", ws[:, i + 2], skip)
        i += 2
    return skip


def _rosinality_mapping(sd: dict, z: torch.Tensor) -> torch.Tensor:
    x = z * torch.rsqrt(z.pow(2).mean(dim=1, keepdim=True) + 1e-8)
    i = 1
    while f"style.{i}.weight" in sd:
        w = sd[f"style.{i}.weight"]
        x = F.leaky_relu(F.linear(x, w * (0.01 / math.sqrt(w.shape[1]))) + sd[f"style.{i}.bias"] * 0.01, 0.2)
        x = x * math.sqrt(2)
        i += 1
    return x


@pytest.mark.parametrize("container", ["checkpoint", "bare", "pSp-decoder"])
def test_rosinality_checkpoint_reproduces_original_forward(tmp_path, G, container):
    sd = to_rosinality_state_dict(G)
    latent_avg = torch.randn(G.w_dim)
    obj = {
        "checkpoint": {"g": sd, "d": {}, "g_ema": sd, "args": argparse.Namespace(size=32, n_mlp=3),
                       "latent_avg": latent_avg},
        "bare": sd,
        "pSp-decoder": {"state_dict": {**{f"decoder.{k}": v for k, v in sd.items()},
                                       "encoder.conv.weight": torch.zeros(1)}, "latent_avg": latent_avg},
    }[container]
    torch.save(obj, tmp_path / "550000.pt")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        loaded = load_generator(tmp_path / "550000.pt")
    assert loaded.config.img_resolution == 32 and loaded.config.mapping_layers == 3
    assert loaded.config.channel_base == TINY["channel_base"] and loaded.config.channel_max == 32
    if container == "bare":
        assert any("w_avg" in str(w.message) for w in caught)
    else:
        assert torch.equal(loaded.w_avg, latent_avg)

    z = torch.randn(3, G.z_dim, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        w = loaded.mapping(z)
        assert torch.allclose(w[:, 0], _rosinality_mapping(sd, z), atol=1e-5)
        ws = w + 0.3 * torch.randn_like(w)  # W+ codes, to check which w each layer reads
        ours = loaded.synthesis(ws, noise_mode="const")
        reference = _rosinality_reference(sd, ws, 32)
    assert torch.allclose(ours, reference, atol=1e-4), (ours - reference).abs().max()


def test_rosinality_key_names_match_the_published_generator():
    G = Generator(img_resolution=256)
    sd = to_rosinality_state_dict(G)
    manifest = json.loads((REFERENCE / "rosinality_G_256.json").read_text())
    expected = {e["key"]: e["shape"] for e in manifest["entries"]}
    assert {k: list(v.shape) for k, v in sd.items()} == expected


def test_rosinality_missing_tensor_is_named(tmp_path, G):
    sd = to_rosinality_state_dict(G)
    del sd["convs.1.activate.bias"]
    torch.save({"g_ema": sd}, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match=r"convs\.1\.activate\.bias"):
        load_generator(tmp_path / "broken.pt")


# ------------------------------------------------------------------------------------------- own format
def test_own_format_via_load_generator(tmp_path, G):
    G.save_pretrained(tmp_path / "g")
    loaded = load_generator(tmp_path / "g")
    _same_model(loaded, G)
    assert torch.equal(_render(loaded), _render(G))
