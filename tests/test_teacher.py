"""The demo generator's recipe: latents -> portraits, (z, image) pairs, ``train gan-teacher``, W-encoder code loss."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from hyperinverter import Generator
from hyperinverter.data.folder import DatasetError
from hyperinverter.data.pairs import LatentPairsDataset
from hyperinverter.portraits import (LATENT_DRAWS, LatentDraws, attributes_from_latent, normalize_latent,
                                          render_portrait, sample_attributes, write_portraits)
from hyperinverter.losses import gradient_loss, l1_loss
from hyperinverter.train import ConfigError, load_train_config
from hyperinverter.utils.image_io import pil_to_tensor

from test_train import TINY_BACKBONE, _run_cfg, _train

Z_DIM = 40  # >= LATENT_DRAWS
TINY_G = {"img_resolution": 32, "z_dim": Z_DIM, "w_dim": 16, "channel_base": 256, "channel_max": 16,
          "mapping_layers": 2, "mapping_lr_multiplier": 0.1}
SMILE, GLASSES = 26, 27  # the entries of z that smile and glasses are drawn from


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    z = np.random.default_rng(3).standard_normal([24, Z_DIM]).astype(np.float32)
    write_portraits(root, 24, size=32, latents=z)
    return root, z


def test_latent_draws_give_the_seed_distribution():
    rng = np.random.default_rng(0)
    a = [attributes_from_latent(rng.standard_normal(64)) for _ in range(1500)]
    b = [sample_attributes(s) for s in range(1500)]
    for name in ("smile", "yaw", "tilt", "skin_tone", "glasses", "hair_style", "freckles"):
        va, vb = (np.array([float(getattr(x, name)) for x in s]) for s in (a, b))
        se = np.sqrt(va.var() / len(va) + vb.var() / len(vb))
        assert abs(va.mean() - vb.mean()) < 4 * se, name
        assert 0.85 < va.std() / vb.std() < 1.15, name


def test_each_attribute_follows_its_own_entry():
    z = np.random.default_rng(1).standard_normal(64)
    smiles = []
    for v in np.linspace(-2.5, 2.5, 11):
        z[SMILE] = v
        smiles.append(attributes_from_latent(z).smile)
    assert np.all(np.diff(smiles) > 0) and smiles[0] < -0.3 and smiles[-1] > 0.8
    z[GLASSES] = -2.0  # Phi(-2) < 0.3: glasses
    assert attributes_from_latent(z).glasses
    z[GLASSES] = 2.0
    assert not attributes_from_latent(z).glasses
    # The portrait depends on the direction of z only (the generator's mapping normalises z).
    assert np.allclose(attributes_from_latent(z).to_vector(), attributes_from_latent(3.0 * z).to_vector())
    assert np.allclose(np.sqrt(np.mean(normalize_latent(z) ** 2)), 1.0)


def test_latent_draw_count_and_bad_latents():
    lengths = set()
    for seed in range(300):
        d = LatentDraws(np.random.default_rng(seed).standard_normal(64))
        from hyperinverter.portraits.attributes import _draw_attributes

        _draw_attributes(d)
        lengths.add(d.k)
    assert max(lengths) == LATENT_DRAWS and min(lengths) == LATENT_DRAWS - 1  # with / without freckles
    with pytest.raises(ValueError, match="at least 38"):
        attributes_from_latent(np.zeros(20))
    with pytest.raises(ValueError, match="finite"):
        attributes_from_latent(np.full(64, np.nan))


def test_pairs_folder_round_trip(pairs, tmp_path):
    root, z = pairs
    ds = LatentPairsDataset(root, 32)
    assert len(ds) == 24 and ds.z_dim == Z_DIM
    image, latent = ds[(5, 3)]
    assert torch.equal(latent, torch.from_numpy(z[5]))
    expected = pil_to_tensor(render_portrait(attributes_from_latent(z[5]), 32))
    assert torch.allclose(image, expected, atol=1e-6)
    # A folder without latents, or latents that do not cover the files, is refused with one line.
    with pytest.raises(DatasetError, match="no latents.npy"):
        LatentPairsDataset(tmp_path, 32)
    bad = tmp_path / "bad"
    write_portraits(bad, 3, size=32, latents=z[:3])
    np.save(bad / "latents.npy", z[:2])
    with pytest.raises(DatasetError, match="not a .row:07d. image"):
        LatentPairsDataset(bad, 32)
    with pytest.raises(ValueError, match="latents must be"):
        write_portraits(tmp_path / "x", 4, size=32, latents=z[:3])


def test_pixel_losses():
    a = torch.rand(2, 3, 8, 8)
    assert float(l1_loss(a + 0.25, a)) == pytest.approx(0.25)
    assert float(gradient_loss(a + 0.25, a)) == pytest.approx(0.0, abs=1e-7)  # a constant shift has no edges
    b = a.clone()
    b[..., 4, 4] += 1.0  # one bright pixel in 6 planes: 2 horizontal + 2 vertical differences of 1 each
    assert float(gradient_loss(b, a)) == pytest.approx(0.5 * (12 / (2 * 3 * 8 * 7) + 12 / (2 * 3 * 7 * 8)), rel=1e-5)


def test_gan_teacher_learns_the_pairs(pairs, tmp_path):
    root, _ = pairs
    overrides = _run_cfg(tmp_path / "gt", 40) + [f"data.train={root}", f"generator={TINY_G}".replace("'", ""),
                                                 "data.hflip=false", "g_lr=0.01", "betas=[0.9, 0.99]",
                                                 "discriminator={channel_base: 256, channel_max: 16}"]
    trainer, _ = _train("gan-teacher", overrides)
    lines = (tmp_path / "gt" / "log.txt").read_text().splitlines()
    l1 = [float(line.split("l1=")[1].split()[0]) for line in lines]
    assert len(l1) == 40 and np.mean(l1[-5:]) < 0.7 * np.mean(l1[:5])
    assert not any("d_loss" in line for line in lines)  # adv = 0: no discriminator step
    G = Generator.from_pretrained(tmp_path / "gt" / "generator")
    assert G.z_dim == Z_DIM and torch.isfinite(G(torch.randn(2, Z_DIM))).all()
    # A warm start from that generator (e.g. continuing on another machine) starts where it ended.
    warm = [o for o in overrides if not o.startswith(("run.out_dir", "run.steps"))]
    _train("gan-teacher", warm + [f"run.out_dir={tmp_path / 'warm'}", "run.steps=3",
                                  f"init={tmp_path / 'gt' / 'generator'}"])
    first = float((tmp_path / "warm" / "log.txt").read_text().splitlines()[0].split("l1=")[1].split()[0])
    assert first < np.mean(l1[:5])
    with pytest.raises(Exception, match="another architecture"):
        other = tmp_path / "other"
        Generator(**{**TINY_G, "w_dim": 8}).save_pretrained(other)
        _train("gan-teacher", warm + [f"run.out_dir={tmp_path / 'w2'}", "run.steps=1", f"init={other}"])
    # A learning-rate schedule sets g_lr from each listed step on.
    t, _ = _train("gan-teacher", warm + [f"run.out_dir={tmp_path / 'sched'}", "run.steps=3",
                                         "g_lr_schedule=[[1, 0.004], [2, 0.002]]"])
    assert t.g_opt.param_groups[0]["lr"] == 0.002
    with pytest.raises(ConfigError, match="g_lr_schedule"):
        load_train_config("gan-teacher", None, [f"data.train={root}", "data.hflip=false",
                                                "g_lr_schedule=[[5, 0.1], [2, 0.1]]"])
    # With the adversarial term on, the discriminator trains too.
    overrides = [o for o in overrides if not o.startswith(("run.out_dir", "run.steps"))]
    _train("gan-teacher", overrides + [f"run.out_dir={tmp_path / 'gt2'}", "run.steps=2", "adv=0.1"])
    assert "d_loss" in (tmp_path / "gt2" / "log.txt").read_text()
    # Fresh random fakes for the adversarial terms instead of the pairs' G(z), the face-box and squared terms.
    _train("gan-teacher", overrides + [f"run.out_dir={tmp_path / 'gt3'}", "run.steps=2", "adv=0.1",
                                       "adv_on_pairs=false", "recon_face=2", "recon_mse=5"])
    log = (tmp_path / "gt3" / "log.txt").read_text()
    assert "d_loss" in log and "face=" in log and "mse=" in log
    for name in ("recon_mse", "recon_face"):
        with pytest.raises(ConfigError, match=name):
            load_train_config("gan-teacher", None, [f"data.train={root}", "data.hflip=false", f"{name}=-1"])


def test_attribute_read_out_puts_the_attributes_in_w(pairs, tmp_path):
    """attr_probe: a linear read-out of the pairs' labels from w. The warm-up (mapping alone) brings its loss
    well below the variance of the standardised labels; the read-out is saved with the checkpoints and the
    exported generator stays a plain StyleGAN2."""
    root, z = pairs
    base = [f"data.train={root}", f"generator={TINY_G}".replace("'", ""), "data.hflip=false", "g_lr=0.01",
            "betas=[0.9, 0.99]", "discriminator={channel_base: 256, channel_max: 16}"]
    ds = LatentPairsDataset(root, 32, with_attributes=True)
    assert ds.attributes.shape[0] == 24 and len(ds[3]) == 3
    assert torch.equal(ds[3][2], torch.from_numpy(attributes_from_latent(z[3]).to_vector()))

    def first_probe(run):
        return float((tmp_path / run / "log.txt").read_text().splitlines()[0].split("probe=")[1].split()[0])

    _train("gan-teacher", base + _run_cfg(tmp_path / "cold", 1) + ["attr_probe=1"])
    t, _ = _train("gan-teacher", base + _run_cfg(tmp_path / "warm", 2) + ["attr_probe=1", "attr_probe_warmup=60"])
    assert first_probe("warm") < 0.5 * first_probe("cold")
    assert "probe" in torch.load(tmp_path / "warm" / "checkpoints" / "latest.pt", weights_only=True)["modules"]
    G = Generator.from_pretrained(tmp_path / "warm" / "generator")
    assert set(G.state_dict()) == set(Generator(**TINY_G).state_dict())
    # After a warm start (init) the warm-up fits the read-out alone: the mapping's codes stay where they were.
    t, _ = _train("gan-teacher", base + _run_cfg(tmp_path / "init", 1) +
                  ["attr_probe=1", "attr_probe_warmup=5", f"init={tmp_path / 'warm' / 'generator'}"])
    mapping = {k: v.clone() for k, v in t.G.mapping.state_dict().items()}
    probe = {k: v.clone() for k, v in t.probe.state_dict().items()}
    t.warm_up_mapping()
    assert all(torch.equal(v, t.G.mapping.state_dict()[k]) for k, v in mapping.items() if "w_avg" not in k)
    assert not torch.equal(probe["weight"], t.probe.weight)
    with pytest.raises(DatasetError, match="no labels.csv"):
        bare = tmp_path / "bare"
        write_portraits(bare, 2, size=32, latents=z[:2])
        (bare / "labels.csv").unlink(), (bare / "labels.json").unlink()
        LatentPairsDataset(bare, 32, with_attributes=True)


def test_face_box_holds_the_features():
    """The face crop is where the renderer draws eyes and mouth: the crop differs between a portrait and
    the same portrait with another smile / glasses, and the rest of the image does not."""
    from hyperinverter.portraits import attributes_from_latent, render_portrait
    from hyperinverter.train.gan_teacher import face_crop

    base = attributes_from_latent(np.random.default_rng(3).standard_normal(Z_DIM))
    for change in ({"smile": -base.smile}, {"glasses": not base.glasses}):
        a = torch.tensor(np.asarray(render_portrait(base, 64), np.float32))[None].permute(0, 3, 1, 2)
        other = dataclasses.replace(base, **change)
        b = torch.tensor(np.asarray(render_portrait(other, 64), np.float32))[None].permute(0, 3, 1, 2)
        inside = (face_crop(a) - face_crop(b)).abs().sum()
        assert inside > 0 and inside == pytest.approx((a - b).abs().sum()), change


def test_gan_teacher_refuses_flips_and_wrong_latents(pairs, tmp_path):
    root, _ = pairs
    with pytest.raises(ConfigError, match="hflip must be false"):
        load_train_config("gan-teacher", None, [f"data.train={root}"])
    from hyperinverter.train import TrainingError

    wrong = {**TINY_G, "z_dim": 48}
    with pytest.raises(TrainingError, match="latents have 40 entries"):
        _train("gan-teacher", _run_cfg(tmp_path / "g", 1) + [f"data.train={root}", "data.hflip=false",
                                                               f"generator={wrong}".replace("'", "")])


def test_attribute_readout_recovers_linear_attributes():
    from hyperinverter.train.w_encoder import attribute_readout

    g = torch.Generator().manual_seed(0)
    w = torch.randn(800, 16, generator=g) + 3.0
    mix = torch.randn(16, 3, generator=g)
    attrs = torch.cat([w @ mix, torch.full((800, 1), 7.0), torch.randn(800, 1, generator=g)], dim=1)
    readout, r2 = attribute_readout(w, attrs, ridge=1e-6)
    assert readout.shape == (16, 5) and r2.shape == (4,)  # the constant column has no R^2
    assert (r2[:3] > 0.999).all() and r2[3] < 0.05  # linear attributes read out; noise does not
    assert readout[:, 3].abs().max() == 0  # a constant attribute reads out as zero
    # a code difference reads out as the attribute difference in standard deviations
    diff = (w[1] - w[0]) @ readout[:, :3]
    assert torch.allclose(diff, (attrs[1, :3] - attrs[0, :3]) / attrs[:, :3].std(0), atol=1e-3)


def _w_encoder_options(root, tmp_path) -> list:
    """A tiny generator saved under tmp_path, and the options of a 30-step w-encoder run on pairs ``root``
    told the true codes."""
    torch.manual_seed(0)
    G = Generator(**TINY_G)
    G.compute_w_avg(500)
    G.save_pretrained(tmp_path / "generator")
    return _run_cfg(tmp_path / "w", 30) + [f"data.train={root}", f"generator={tmp_path / 'generator'}",
                                           "encoder_input_size=32", "data.hflip=false", "lr=0.003", "w_loss=1",
                                           f"encoder={{backbone: {TINY_BACKBONE}}}".replace("'", "")]


def test_w_encoder_attribute_weighted_code_loss(pairs, tmp_path):
    _train("w-encoder", _w_encoder_options(pairs[0], tmp_path) + ["w_attr_loss=1", "losses.l2=0", "losses.lpips=0"])
    lines = (tmp_path / "w" / "log.txt").read_text().splitlines()
    attr_err = [float(line.split(" w_attr=")[1].split()[0]) for line in lines]
    assert len(attr_err) == len(lines) and np.mean(attr_err[-5:]) < 0.8 * np.mean(attr_err[:5])


def test_w_encoder_learns_true_codes(pairs, tmp_path):
    base = _w_encoder_options(pairs[0], tmp_path)
    _train("w-encoder", base + ["losses.l2=0", "losses.lpips=0"])  # codes only: no synthesis
    lines = (tmp_path / "w" / "log.txt").read_text().splitlines()
    w_err = [float(line.split(" w=")[1].split()[0]) for line in lines]
    assert np.mean(w_err[-5:]) < 0.8 * np.mean(w_err[:5])
    assert not any(" l2=" in line for line in lines)
    _train("w-encoder", [o for o in base if not o.startswith("run.steps")] + ["run.steps=33", "losses.lpips=0"],
           resume=True)
    last = (tmp_path / "w" / "log.txt").read_text().splitlines()[-1]
    assert " l2=" in last and " w=" in last
    with pytest.raises(Exception, match="hflip=false"):
        _train("w-encoder", [o for o in base if o != "data.hflip=false"] + ["data.hflip=true",
                                                                             f"run.out_dir={tmp_path / 'w3'}"])
