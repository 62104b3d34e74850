"""HyperInverter: targets and slots, forward semantics, batching, edit/interpolate, save/load, official files."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers_official import write_official_files

from hyperinverter import CheckpointError, Discriminator, Generator, HyperInverter, InversionResult, config_f
from hyperinverter.convert.official import load_official
from hyperinverter.inverter import DIFFERENCE_GAIN
from hyperinverter.encoders import BackboneConfig, official_church_encoders, official_face_encoders
from hyperinverter.hypernet import target_layers

REFERENCE = Path(__file__).parent / "data" / "reference"
G_TINY = dict(z_dim=16, w_dim=32, img_resolution=32, channel_base=512, channel_max=32, mapping_layers=2)


def _backbone(kind):
    # Distinct widths per stage so that the stage layout can be read back from the tensors.
    return dataclasses.asdict(BackboneConfig(kind=kind, blocks=[1, 2, 1, 1], widths=[8, 16, 24, 32], stem_width=8,
                                             se_reduction=4))


def _randomize(module, seed):
    """Non-trivial values for every tensor that starts at a constant (biases, BN statistics, noise strengths)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in module.state_dict().items():
            if not t.is_floating_point() or name.endswith("resample_filter"):
                continue
            noise = torch.randn(t.shape, generator=gen)
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5)
            elif t.ndim <= 1:  # biases, BN affine, PReLU slopes, noise strengths, running means
                t.copy_(t * (1 + 0.1 * noise) + 0.1 * noise)
    return module


def make_model(kind="ir_se", seed=0, hidden_dim=8, targets="conv") -> HyperInverter:
    torch.manual_seed(seed)
    G = _randomize(Generator(**G_TINY), seed)
    G.compute_w_avg(num_samples=500)
    model = HyperInverter.from_generator(
        G, w_encoder={"backbone": _backbone(kind), "w_dim": 32},
        layer_encoder={"backbone": _backbone(kind), "num_slots": G.num_ws}, hidden_dim=hidden_dim, targets=targets,
        encoder_input_size=64)
    _randomize(model.w_encoder, seed + 1)
    _randomize(model.w_bar_encoder, seed + 2)
    with torch.no_grad():  # make the residuals matter
        for r in model.hypernet.weight_regressors.values():
            r.w2.mul_(100)
    return model.eval()


@pytest.fixture(scope="module")
def model():
    return make_model()


@pytest.fixture(scope="module")
def images():
    return torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(7)) * 2 - 1


# ------------------------------------------------------------------------------------- targets and slots
def test_official_target_table_and_slots():
    G = Generator(**{**G_TINY, "img_resolution": 1024, "channel_base": 32768, "channel_max": 512})
    t = target_layers(G.synthesis)
    assert [x.name for x in t][:5] == ["b4.conv1.weight", "b4.torgb.weight", "b8.conv0.weight", "b8.conv1.weight",
                                       "b8.torgb.weight"]
    assert [x.slot for x in t] == [0, 1, 2, 3, 3, 4, 5, 5, 6, 7, 7, 8, 9, 9, 10, 11, 11, 12, 13, 13, 14, 15, 15,
                                   16, 17, 17]
    assert t[-1].shape == (3, 32, 1, 1) and t[23].shape == (32, 64, 3, 3)
    assert sorted({x.slot for x in t}) == list(range(G.num_ws))  # every slot used
    assert len(target_layers(G.synthesis, max_resolution=256)) == 20
    assert all("torgb" not in x.name for x in target_layers(G.synthesis, "conv_no_torgb"))
    affine = [x for x in target_layers(G.synthesis, "conv_affine") if "affine" in x.name]
    assert len(affine) == 26 and affine[0].shape == (512, 32)  # [in_channels, w_dim]
    with pytest.raises(ValueError, match="targets"):
        target_layers(G.synthesis, "everything")


@pytest.mark.parametrize("domain,res,hd", [("faces", 1024, 128), ("faces", 1024, 256), ("churches", 256, 128),
                                           ("churches", 256, 256)])
def test_official_architectures_match_manifests(domain, res, hd):
    """All four released variants build with the official key names, shapes and element counts."""
    manifest = json.loads((REFERENCE / f"hypernet_{domain}_hd{hd}.json").read_text())
    e2_manifest = json.loads((REFERENCE / f"w_bar_encoder_{domain}_hd128.json").read_text())
    e1, e2 = official_face_encoders() if domain == "faces" else official_church_encoders()
    with torch.device("meta"):
        model = HyperInverter(generator=dataclasses.asdict(config_f(res)), w_encoder=dataclasses.asdict(e1),
                              layer_encoder=dataclasses.asdict(e2), hidden_dim=hd)
    sd = model.hypernet.state_dict()
    expected = [(e["key"][len("hypernet."):], e["shape"]) for e in manifest["entries"]]
    assert [(k, list(v.shape)) for k, v in sd.items()] == expected
    e2_expected = [(e["key"][len("w_bar_encoder."):], e["shape"]) for e in e2_manifest["entries"]]
    assert [(k, list(v.shape)) for k, v in model.w_bar_encoder.state_dict().items()] == e2_expected
    counts = model.parameter_counts()
    assert counts["hypernet"] == manifest["header"]["counts_by_prefix"]["hypernet"]["num_elements"]


# ------------------------------------------------------------------------------------------ forward
def test_forward_shapes_and_semantics(model, images):
    r = model.invert(images)
    assert r.w.shape == (3, 32) and r.ws.shape == (3, model.num_ws, 32)
    assert torch.equal(r.ws, r.w[:, None].expand_as(r.ws))  # one code in W
    assert r.image.shape == r.image_w.shape == (3, 3, 32, 32)
    assert set(r.deltas) == {t.name for t in model.targets}
    params = dict(model.generator.synthesis.named_parameters())
    assert all(v.shape == (3, *params[k].shape) for k, v in r.deltas.items())
    # phase I is the generator at w without residuals; phase II uses the residuals
    assert torch.allclose(r.image_w, model.generator.synthesis(r.ws), atol=1e-5)
    assert torch.allclose(r.image, model.generator.synthesis(r.ws, weight_deltas=r.deltas), atol=1e-5)
    assert (r.image - r.image_w).abs().mean() > 1e-3
    # w includes w_avg
    x = F.interpolate(images, size=64, mode="bilinear", align_corners=False)
    assert torch.allclose(r.w, model.w_encoder(x) + model.generator.w_avg, atol=1e-5)


def test_batch_equals_single_runs_and_is_deterministic(model, images):
    batch = model.invert(images)
    again = model.invert(images)
    assert torch.equal(batch.image, again.image)
    for i in range(3):
        single = model.invert(images[i:i + 1])
        assert torch.allclose(single.image, batch.image[i:i + 1], atol=1e-4)
        for k in single.deltas:
            assert torch.allclose(single.deltas[k], batch.deltas[k][i:i + 1], atol=1e-5)
    chunked = model.invert(images, batch_size=2)
    assert torch.allclose(chunked.image, batch.image, atol=1e-4)


def test_training_mode_gradients(images):
    model = make_model(seed=3).train()
    r = model(images)
    (r.image.square().mean() + r.w.square().mean()).backward()
    for name, module in (("hypernet", model.hypernet), ("w_bar_encoder", model.w_bar_encoder)):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), name
    assert all(p.grad is None for p in model.generator.parameters())  # frozen
    assert not model.generator.training


def test_bad_inputs(model):
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        model.invert(torch.zeros(1, 4, 32, 32))
    with pytest.raises(ValueError, match="NaN"):
        model.invert(torch.full((1, 3, 32, 32), float("nan")))


# ---------------------------------------------------------------------------------- edit, interpolate
def test_edit_moves_w_only_and_keeps_residuals(model, images):
    r = model.invert(images[:2])
    direction = torch.randn(32)
    e = model.edit(r, direction, strength=1.5)
    assert torch.allclose(e.ws, r.ws + 1.5 * direction, atol=1e-6)
    assert e.deltas is r.deltas
    assert torch.allclose(e.image, model.generator.synthesis(e.ws, weight_deltas=r.deltas), atol=1e-5)
    zero = model.edit(r, direction, strength=0.0)
    assert torch.allclose(zero.image, r.image, atol=1e-5)
    part = model.edit(r, direction, 1.0, layers=(2, 5))
    moved = (part.ws - r.ws).abs().sum(dim=-1) > 0
    assert moved[:, 2:5].all() and not moved[:, :2].any() and not moved[:, 5:].any()
    per_layer = torch.randn(model.num_ws, 32)
    assert torch.allclose(model.edit(r, per_layer, 1.0).ws, r.ws + per_layer, atol=1e-6)
    with pytest.raises(ValueError, match="direction must have shape"):
        model.edit(r, torch.randn(31), 1.0)
    with pytest.raises(ValueError, match="layers"):
        model.edit(r, direction, 1.0, layers=(3, 99))


def test_interpolate_lerps_w_and_every_residual(model, images):
    r = model.invert(images[:2])
    a, b = r[0], r[1]
    frames = model.interpolate(a, b, steps=5)
    assert frames.image.shape == (5, 3, 32, 32)
    assert torch.allclose(frames.image[0], a.image[0], atol=1e-4)
    assert torch.allclose(frames.image[-1], b.image[0], atol=1e-4)
    mid = {k: (a.deltas[k] + b.deltas[k]) / 2 for k in a.deltas}
    expected = model.generator.synthesis((a.ws + b.ws) / 2, weight_deltas=mid)
    assert torch.allclose(frames.image[2:3], expected, atol=1e-4)
    with pytest.raises(ValueError, match="single"):
        model.interpolate(r, b)


def test_codes_round_trip(model, images):
    r = model.invert(images[:2])
    back = InversionResult.from_codes(r.codes())
    assert torch.equal(back.ws, r.ws) and set(back.deltas) == set(r.deltas)
    assert torch.allclose(model.render(back.ws, back.deltas), r.image, atol=1e-5)


# ----------------------------------------------------------------------------------- refinement passes
def _with_refiner(model: HyperInverter, zero: bool) -> HyperInverter:
    """``model`` with one refinement pass: a copy of its hypernetwork, with a zero output factor when ``zero``."""
    cfg = {**dataclasses.asdict(model.config), "refinement_passes": 1}
    two = HyperInverter(**cfg)
    state = model.state_dict()
    for k, v in model.hypernet.state_dict().items():
        v = v.clone()
        if zero and k.endswith((".w2", ".b2")):
            v.zero_()
        elif k.endswith(".w2"):
            v.mul_(0.5)
        state[f"refiners.0.{k}"] = v
    two.load_state_dict(state)
    return two.eval()


def test_a_zero_refinement_pass_is_the_single_pass_model(model, images):
    assert not any(k.startswith("refiners.") for k in model.state_dict())  # the paper's model: no new keys
    two = _with_refiner(model, zero=True)
    one, both = model.invert(images), two.invert(images)
    assert torch.allclose(both.image, one.image, atol=1e-5)
    assert both.layer_codes[model.targets[0].name].shape == (3, 2 * model.config.hidden_dim)
    assert two.parameter_counts()["refiners"] == model.parameter_counts()["hypernet"]


def test_a_refinement_pass_adds_the_residual_of_its_hypernetwork_on_the_first_pass_image(model, images):
    two = _with_refiner(model, zero=False)
    r = two.invert(images)
    first = model.invert(images)  # the same E1, E2 and first hypernetwork
    assert torch.equal(r.image_w, first.image_w)
    # by hand: E2 of the first pass's image and of the input, the refiner's dense residual added to the first one
    x = F.interpolate(images, size=64, mode="bilinear", align_corners=False)
    with torch.no_grad():
        img1 = F.interpolate(first.image, size=64, mode="bilinear", align_corners=False)
        codes = two.refiners[0](two.w_bar_encoder(img1), two.w_bar_encoder(x))
        total = {k: first.deltas[k] + codes[k] for k in codes}
        expected = model.generator.synthesis(r.ws, weight_deltas=total)
    assert torch.allclose(r.image, expected, atol=1e-4)
    assert (r.image - first.image).abs().mean() > 1e-3
    for k in total:
        assert torch.allclose(r.deltas[k], total[k], atol=1e-5)
    # the stored per-layer codes rebuild the residuals of both passes; a model without the pass refuses them
    assert torch.allclose(two.render(r.ws, two.expand_layer_codes(r.layer_codes)), r.image, atol=1e-5)
    back = InversionResult.from_codes(r.codes("compact"), two)
    assert torch.allclose(two.render(back.ws, back.deltas), r.image, atol=1e-5)
    with pytest.raises(ValueError, match=r"\[B, 8\]"):
        model.expand_layer_codes(r.layer_codes)
    # predict_deltas renders between passes, so it needs ws
    with pytest.raises(ValueError, match="pass ws="):
        two.predict_deltas(images, first.image_w)
    deltas = two.predict_deltas(images, first.image_w, r.ws)
    assert torch.allclose(two.render(r.ws, deltas), r.image, atol=1e-5)
    # edits keep both passes' residuals
    e = two.edit(r, torch.zeros(32), 1.0)
    assert torch.allclose(e.image, r.image, atol=1e-5)
    # every inference shares the stacked factors (interpolation and batch concatenation stay factored)
    again = two.invert(images[:1])
    name = model.targets[0].name
    w2 = lambda result: result.deltas.raw()[name].w2  # noqa: E731
    assert w2(again).data_ptr() == w2(r).data_ptr()  # the same memory
    assert not w2(r).is_inference()
    frames = two.interpolate(r[0], r[1], steps=3)
    assert w2(frames).data_ptr() == w2(r).data_ptr()
    assert torch.allclose(frames.image[-1:], r.image[1:2], atol=1e-4)
    with torch.no_grad():  # a changed weight is seen at once
        two.refiners[0].weight_regressors[model.targets[0].key].w2.mul_(2)
    changed = two.invert(images[:1])
    assert w2(changed).data_ptr() != w2(r).data_ptr()
    assert not torch.allclose(changed.image, again.image, atol=1e-4)


def test_refinement_pass_training_gradients_and_limits(model, images):
    two = _with_refiner(model, zero=False).train()
    two(images).image.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in two.refiners.parameters())
    for bad in (-1, 9, 1.5, True):
        with pytest.raises(ValueError, match="refinement_passes"):
            HyperInverter(**{**dataclasses.asdict(model.config), "refinement_passes": bad})


def test_a_refined_model_saves_and_loads(tmp_path, model, images):
    two = _with_refiner(model, zero=False)
    two.save_pretrained(tmp_path / "m")
    back = HyperInverter.from_pretrained(tmp_path / "m")
    assert back.config.refinement_passes == 1 and len(back.refiners) == 1
    assert torch.allclose(back.invert(images).image, two.invert(images).image, atol=1e-5)


def test_e2_that_reads_the_difference(tmp_path, model, images):
    """layer_encoder.backbone.in_channels=6: E2 reads every image next to the input's difference from it (the input
    next to zeros), in the first pass and in a refinement pass; E1 stays RGB; other channel counts are refused."""
    two = _with_refiner(model, zero=False)
    cfg = dataclasses.asdict(two.config)
    cfg["layer_encoder"]["backbone"]["in_channels"] = 6
    six = HyperInverter(**cfg)
    state = two.state_dict()
    stem = "w_bar_encoder.input_layer.0.weight"
    state[stem] = torch.cat([state[stem], torch.randn_like(state[stem])], dim=1)
    six.load_state_dict(state)
    six.eval()
    r = six.invert(images)
    x = F.interpolate(images, size=64, mode="bilinear", align_corners=False)
    up = lambda im: F.interpolate(im, size=64, mode="bilinear", align_corners=False)  # noqa: E731
    with torch.no_grad():
        e2 = lambda im: six.w_bar_encoder(torch.cat([im, DIFFERENCE_GAIN * (x - im)], dim=1))  # noqa: E731
        first = six.hypernet(e2(up(r.image_w)), e2(x))
        img1 = six.generator.synthesis(r.ws, weight_deltas=first)
        second = six.refiners[0](e2(up(img1)), e2(x))
        expected = six.generator.synthesis(r.ws, weight_deltas={k: first[k] + second[k] for k in first})
    assert torch.allclose(r.image, expected, atol=1e-4)
    assert (r.image - two.invert(images).image).abs().mean() > 1e-3  # the difference channels are read
    six.save_pretrained(tmp_path / "six")
    back = HyperInverter.from_pretrained(tmp_path / "six")
    assert back.config.layer_encoder.backbone.in_channels == 6
    assert torch.allclose(back.invert(images).image, r.image, atol=1e-5)
    for part, value, match in (("layer_encoder", 4, "3 .images. or 6"), ("w_encoder", 6, "must be 3")):
        bad = dataclasses.asdict(model.config)
        bad[part]["backbone"]["in_channels"] = value
        with pytest.raises(ValueError, match=match):
            HyperInverter(**bad)


# ------------------------------------------------------------------------------------------- save/load
def test_save_pretrained_round_trip(tmp_path, model, images):
    model.save_pretrained(tmp_path / "m")
    loaded = HyperInverter.from_pretrained(tmp_path / "m")
    assert loaded.config == model.config
    # equal weights (checked below); the outputs agree to float rounding, not bit for bit: with one thread, E1 on
    # the loaded tensors differed by 1e-7 (their memory placement picks other vectorised paths)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in loaded.state_dict().items())
    torch.testing.assert_close(loaded.invert(images).image, model.invert(images).image, rtol=0, atol=1e-5)
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["class"] == "HyperInverter" and meta["config"]["hidden_dim"] == 8


# -------------------------------------------------------------------------------------- official files
def _official_reference(model, x):
    """The official forward pass, written from the reference description: per-sample generator copies."""
    G = model.generator
    x256 = F.interpolate(x, size=(64, 64), mode="bilinear", align_corners=False)
    w = model.w_encoder(x256) + G.w_avg
    ws = w.unsqueeze(1).repeat(1, G.num_ws, 1)
    image_w = G.synthesis(ws, noise_mode="const")
    w_bar = model.w_bar_encoder(x256)
    w_img = model.w_bar_encoder(F.interpolate(image_w, size=(64, 64), mode="bilinear", align_corners=False))
    outputs = []
    for i in range(x.shape[0]):
        g = copy.deepcopy(G)
        params = dict(g.synthesis.named_parameters())
        for t in model.targets:
            reg = model.hypernet.weight_regressors[t.key].state_dict()
            h = torch.cat([w_img[i:i + 1, t.slot], w_bar[i:i + 1, t.slot]], dim=1)
            h = F.conv2d(h, reg["fusion.0.weight"], reg["fusion.0.bias"])
            h = F.relu(F.instance_norm(h, eps=1e-5))
            h = F.relu(F.conv2d(h, reg["feature_extractor.0.weight"], reg["feature_extractor.0.bias"], padding=1))
            j = 2
            while f"feature_extractor.{j}.weight" in reg:
                h = F.relu(F.conv2d(h, reg[f"feature_extractor.{j}.weight"], reg[f"feature_extractor.{j}.bias"],
                                    stride=2, padding=1))
                j += 2
            code = h.view(1, -1)
            inp = t.shape[1]
            k = (code @ reg["w1"] + reg["b1"]).view(1, inp, -1)
            k = (k @ reg["w2"] + reg["b2"]).view(*t.shape)  # plain view of [in, out*k*k] as [out, in, k, k]
            with torch.no_grad():
                params[t.name].add_(k)
        outputs.append(g.synthesis(ws[i:i + 1], noise_mode="const"))
    return image_w, torch.cat(outputs)


@pytest.mark.parametrize("kind,dataset", [("ir_se", "ffhq_encode"), ("resnet", "church_encode")])
def test_official_checkpoint_reproduces_official_forward(tmp_path, kind, dataset, images):
    source = make_model(kind, seed=11)
    D = _randomize(Discriminator(img_resolution=32, channel_base=512, channel_max=32), 5)
    hi, we = write_official_files(source, D, tmp_path, dataset_type=dataset)
    loaded = load_official(hi, we, source.generator)
    model = loaded.model
    assert loaded.opts["dataset_type"] == dataset
    assert model.config.hidden_dim == 8 and model.config.encoder_input_size == 64  # from the regressors' convs
    for part in ("hypernet", "w_bar_encoder", "w_encoder"):  # every tensor read back (w_encoder from its own file)
        a, b = getattr(model, part).state_dict(), getattr(source, part).state_dict()
        assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a), part
    d = loaded.discriminator.state_dict()
    assert all(torch.equal(d[k], v) for k, v in D.state_dict().items())

    x = images[:2]
    with torch.no_grad():
        ours = model.invert(x)
        ref_w, ref = _official_reference(model, x)
    assert torch.allclose(ours.image_w, ref_w, atol=1e-5)
    assert torch.allclose(ours.image, ref, atol=1e-4), (ours.image - ref).abs().max()


def test_official_checkpoint_mismatches(tmp_path):
    source = make_model("ir_se", seed=2)
    hi, we = write_official_files(source, None, tmp_path / "faces", dataset_type="ffhq_encode")
    other_g = Generator(**{**G_TINY, "img_resolution": 64})
    with pytest.raises(CheckpointError, match="32px outputs but the generator is 64px"):
        load_official(hi, we, other_g)
    church = make_model("resnet", seed=3)
    _, church_we = write_official_files(church, None, tmp_path / "church", dataset_type="church_encode")
    with pytest.raises(CheckpointError, match="W-encoder for another domain"):
        load_official(hi, church_we, source.generator)
    bigger = make_model("ir_se", seed=2, hidden_dim=16)
    hi16, _ = write_official_files(bigger, None, tmp_path / "hd16")
    ckpt = torch.load(hi16, weights_only=True)
    ckpt["opts"]["hidden_dim"] = 8
    torch.save(ckpt, hi16)
    with pytest.raises(CheckpointError, match="hidden_dim=8 but the tensors have 16"):
        load_official(hi16, we, source.generator)
    with pytest.raises(CheckpointError, match="no such file"):
        load_official(tmp_path / "missing.pt", we, source.generator)
    with pytest.raises(CheckpointError, match="not an official W-encoder checkpoint"):
        torch.save({"weights": {}}, tmp_path / "junk.pt")
        load_official(hi, tmp_path / "junk.pt", source.generator)
    ckpt = torch.load(hi, weights_only=True)
    ckpt["state_dict"]["extra.thing"] = torch.zeros(1)
    torch.save(ckpt, tmp_path / "extra.pt")
    with pytest.raises(CheckpointError, match="extra.thing"):
        load_official(tmp_path / "extra.pt", we, source.generator)
    ckpt = torch.load(hi, weights_only=True)
    del ckpt["state_dict"]["hypernet.weight_regressors.b8_conv0_weight.b2"]
    torch.save(ckpt, tmp_path / "missing_key.pt")
    with pytest.raises(CheckpointError, match="b8_conv0_weight.b2"):
        load_official(tmp_path / "missing_key.pt", we, source.generator)


@pytest.mark.slow
@pytest.mark.parametrize("domain", ["churches", "faces"])
def test_full_size_official_files_load_and_run(tmp_path, domain):
    """Released architectures at full size: files with the official names load and every tensor is consumed."""
    res, (e1, e2) = (256, official_church_encoders()) if domain == "churches" else (1024, official_face_encoders())
    torch.manual_seed(0)
    G = Generator(**dataclasses.asdict(config_f(res)))
    source = HyperInverter.from_generator(G, e1, e2, hidden_dim=128).eval()
    D = Discriminator(img_resolution=res)
    hi, we = write_official_files(source, D, tmp_path, dataset_type=f"{domain}_encode", with_optimizers=False)
    loaded = load_official(hi, we, G)
    manifest = json.loads((REFERENCE / f"hypernet_{domain}_hd128.json").read_text())
    assert loaded.model.parameter_counts()["hypernet"] == manifest["header"]["counts_by_prefix"]["hypernet"][
        "num_elements"]
    for part in ("hypernet", "w_bar_encoder", "w_encoder"):
        a, b = getattr(loaded.model, part).state_dict(), getattr(source, part).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in b), part
    assert loaded.model.config.encoder_input_size == 256
    del source
    x = torch.rand(1, 3, res, res) * 2 - 1
    r = loaded.model.invert(x)
    assert r.image.shape == (1, 3, res, res) and torch.isfinite(r.image).all()
