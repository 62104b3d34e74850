"""Evaluation: baselines behind one interface, attribute regressor, editability, dlib identity, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_inverter import make_model

from hyperinverter.cli import main
from hyperinverter.portraits import ATTRIBUTE_NAMES, write_portraits
from hyperinverter.editing import Direction
from hyperinverter.evaluation import (METHOD_NAMES, AttributeRegressor, AttributeRegressorConfig,
                                     AttributeTrainConfig, EditabilityConfig, EditabilityMeter, LatentOptConfig,
                                     PTIConfig, attribute_columns, build_method, detail_correlation,
                                     fit_attribute_directions, load_labelled_portraits, measure_runtime,
                                     parse_method_names, parse_overrides, render_labelled_portraits, save_regressor,
                                     train_attribute_regressor)
from hyperinverter.losses import LPIPS

#: Few steps and large learning rates: enough for the losses to fall on the tiny generator.
FAST = {"w_encoder": {}, "hyperinverter": {}, "w_opt": {"steps": 12, "lr": 0.05},
        "wplus_opt": {"steps": 12, "lr": 0.05}, "pti": {"pivot_steps": 6, "pivot_lr": 0.05, "steps": 12, "lr": 3e-3},
        "hyperinverter+refine": {"steps": 12, "lr": 3e-3}}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    return make_model(seed=5)


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1


def _mse(a, b):
    return float((a - b).square().mean())


# ---------------------------------------------------------------------------------------------- methods
@pytest.mark.parametrize("name", METHOD_NAMES)
def test_interface_shapes_codes_and_seconds(model, images, name):
    method = build_method(name, model, FAST[name])
    out = method.invert(images)
    assert out.reconstructions.shape == (2, 3, 32, 32) and len(out) == 2
    assert out.ws.shape == (2, model.num_ws, 32)
    assert ("w" in out.codes) == (name != "wplus_opt")
    if "w" in out.codes:  # a W code: every row of ws is w
        assert torch.equal(out.ws, out.codes["w"][:, None].expand_as(out.ws))
    assert bool(out.deltas()) == (name in ("hyperinverter", "pti", "hyperinverter+refine"))
    assert out.seconds > 0
    assert bool(out.history) == (name in ("w_opt", "wplus_opt", "pti", "hyperinverter+refine"))
    # the codes reproduce the reconstructions, whatever the method
    again = model.render(out.ws, out.deltas() or None)
    assert torch.allclose(again, out.reconstructions, atol=1e-4)
    assert method.describe()["name"] == name


@pytest.mark.parametrize("name", ["w_opt", "wplus_opt", "pti", "hyperinverter+refine"])
@pytest.mark.parametrize("with_lpips", [False, True])
def test_optimisation_baselines_lower_their_loss(model, images, name, with_lpips):
    lpips = LPIPS("alex") if with_lpips else None  # random weights: only the mechanics are tested
    out = build_method(name, model, FAST[name], lpips=lpips).invert(images)
    assert out.history[-1] < 0.8 * out.history[0]
    assert all(np.isfinite(out.history))


def _first_step_gradients(method, images) -> list[list[torch.Tensor]]:
    """The gradients each Adam optimiser of ``method.invert(images)`` sees at its first step, before any update."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    seen: dict = {}

    def record(optimizer, args, kwargs):
        if optimizer not in seen:
            seen[optimizer] = [p.grad.detach().clone() for g in optimizer.param_groups for p in g["params"]]

    handle = register_optimizer_step_pre_hook(record)
    try:
        method.invert(images)
    finally:
        handle.remove()
    return list(seen.values())


@pytest.mark.parametrize("name, config", [("w_opt", FAST["w_opt"]), ("wplus_opt", FAST["wplus_opt"]),
                                          ("pti", {**FAST["pti"], "pivot": "w_encoder"}),
                                          ("hyperinverter+refine", FAST["hyperinverter+refine"])])
def test_each_image_gets_only_its_own_gradient(model, images, name, config):
    """Per-image codes (and PTI's per-image weight copies) get only their own image's gradient.

    Compared at the first step, where a batch and each image alone start from the same point: image i's gradient
    in the batch equals its gradient alone (a summed loss, no mixing between images). Later steps are not
    compared: Adam moves every parameter by about ±lr whatever its gradient's size, so a round-off sign flip of a
    near-zero gradient becomes an lr-sized difference (3e-3 after 12 PTI steps) that says nothing about mixing.
    PTI's pivot comes from E1 here, the same for a batch and alone (its W optimisation is ``w_opt``'s)."""
    method = build_method(name, model, config)
    batch = _first_step_gradients(method, images)
    assert len(batch) == 1, "one optimiser per run"
    for i in range(images.shape[0]):
        alone = _first_step_gradients(method, images[i:i + 1])
        assert len(alone) == 1 and len(alone[0]) == len(batch[0])
        for in_batch, single in zip(batch[0], alone[0]):
            assert single.shape[0] == 1 and in_batch.shape[1:] == single.shape[1:]
            scale = float(single.abs().max())
            assert scale > 0
            torch.testing.assert_close(in_batch[i:i + 1], single, rtol=1e-3, atol=1e-4 * scale)


@pytest.mark.parametrize("pivot", ["w_opt", "w_encoder"])
def test_pti_beats_its_pivot_and_leaves_the_generator_alone(model, images, pivot):
    before = {k: v.clone() for k, v in model.generator.state_dict().items()}
    out = build_method("pti", model, {**FAST["pti"], "pivot": pivot}).invert(images[:1])
    pivot_image = model.render(out.ws)  # the pivot with the original weights
    assert _mse(out.reconstructions, images[:1]) < 0.8 * _mse(pivot_image, images[:1])
    tuned = out.deltas()
    assert set(tuned) == {n for n, _ in model.generator.synthesis.named_parameters()}
    assert any(float(v.abs().max()) > 0 for v in tuned.values())
    if pivot == "w_encoder":
        assert torch.allclose(out.codes["w"], model.encode_w(images[:1]), atol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.generator.state_dict().items())


def test_pti_can_tune_a_target_subset(model, images):
    out = build_method("pti", model, {**FAST["pti"], "pivot": "w_encoder", "steps": 2,
                                      "parameters": "conv"}).invert(images[:1])
    assert set(out.deltas()) == {t.name for t in model.targets}


def test_method_input_checks_and_configs(model, images):
    with pytest.raises(ValueError, match="32x32"):
        build_method("w_encoder", model).invert(torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match=r"\[B, 3"):
        build_method("w_encoder", model).invert(torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match="steps"):
        LatentOptConfig(steps=0)
    with pytest.raises(ValueError, match="nothing to optimise"):
        LatentOptConfig(mse_weight=0, lpips_weight=0)
    with pytest.raises(ValueError, match="pivot"):
        PTIConfig(pivot="e4e")
    with pytest.raises(ValueError, match="unknown method"):
        build_method("restyle", model)
    with pytest.raises(TypeError, match="PTIConfig"):
        type(build_method("pti", model))(model, LatentOptConfig())


def test_method_names_and_overrides():
    from hyperinverter.evaluation.registry import METHODS

    assert tuple(METHODS) == METHOD_NAMES  # the torch-free list the command line's help shows
    assert parse_method_names("pti, w_opt,pti") == ["pti", "w_opt"]
    with pytest.raises(ValueError, match="unknown method 'psp'"):
        parse_method_names("w_opt,psp")
    got = parse_overrides(["pti.pivot=w_encoder", "w_opt.lr=0.05", "hyperinverter.chunk_size=none"],
                          ["w_opt=7,pti.pivot=3", "pti=4"])
    assert got == {"w_opt": {"steps": 7, "lr": 0.05}, "pti": {"pivot_steps": 3, "steps": 4, "pivot": "w_encoder"},
                   "hyperinverter": {"chunk_size": None}}
    assert parse_overrides([], ["refine=10"]) == {"hyperinverter+refine": {"steps": 10}}
    for bad, match in ((["pti.speed=3"], "no setting 'speed'"), (["w_opt.steps=many"], "not a valid int"),
                       (["steps=3"], "METHOD.FIELD=VALUE")):
        with pytest.raises(ValueError, match=match):
            parse_overrides(bad)
    with pytest.raises(ValueError, match="NAME=N"):
        parse_overrides([], ["e4e=3"])


def test_runtime_at_batch_1_and_8(model, images):
    times = measure_runtime(build_method("w_encoder", model), images)
    assert set(times) == {1, 8} and all(t > 0 for t in times.values())


def test_evaluate_methods_api_with_lpips_and_fid(model, images):
    from hyperinverter.evaluation import evaluate_methods, markdown_table
    from hyperinverter.metrics import ReconstructionMetrics

    features = lambda x: torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)  # noqa: E731  stand-in Inception
    methods = [build_method(n, model, FAST[n]) for n in ("w_encoder", "w_opt")]
    x = torch.cat([images, images.flip(-1)])  # 4 images in batches of 3 and 1
    results = evaluate_methods(methods, x, batch_size=3, metrics=ReconstructionMetrics(LPIPS("alex")),
                               inception=features, examples=3)
    for r in results:
        assert {"mse", "psnr", "ssim", "lpips"} <= set(r.metrics) and r.num_images == 4
        assert r.fid["fid"] >= 0 and r.fid["num_images"] == 4
        assert r.examples.shape == (3, 3, 32, 32)
    assert results[0].loss_first is None and results[1].loss_last < results[1].loss_first
    table = markdown_table(results)
    assert "| LPIPS ↓ |" in table and "| FID ↓ |" in table and "| W optimisation | optimisation |" in table


# ---------------------------------------------------------------------------------------------- attributes
def _trivial_set(n, seed=0):
    """Brightness encodes "smile" (continuous), a dark square in the corner encodes "glasses"."""
    gen = torch.Generator().manual_seed(seed)
    smile = torch.rand(n, generator=gen) * 2 - 1
    glasses = (torch.rand(n, generator=gen) < 0.5).float()
    images = smile.view(n, 1, 1, 1).expand(n, 3, 32, 32).clone() * 0.8
    images += 0.05 * torch.randn(images.shape, generator=gen)
    images[:, :, 4:14, 4:14] = torch.where(glasses.view(n, 1, 1, 1) > 0, -1.0, images[:, :, 4:14, 4:14])
    vectors = torch.zeros(n, len(ATTRIBUTE_NAMES))
    vectors[:, ATTRIBUTE_NAMES.index("smile")] = smile
    vectors[:, ATTRIBUTE_NAMES.index("glasses")] = glasses
    return images, vectors


def test_attribute_regressor_learns_a_trivial_set_and_round_trips(tmp_path):
    images, vectors = _trivial_set(160)
    config = AttributeRegressorConfig(attributes=["smile", "glasses"], input_size=32, widths=[8, 16])
    model, report = train_attribute_regressor(images, attribute_columns(vectors, config.attributes), config,
                                              AttributeTrainConfig(steps=150, batch_size=32, lr=5e-3, holdout=0.25))
    assert report["num_holdout"] == 40
    assert report["holdout"]["smile"]["r2"] > 0.8, report["holdout"]
    assert report["holdout"]["glasses"]["accuracy"] > 0.9, report["holdout"]
    assert report["unlearned"] == []
    out = save_regressor(model, tmp_path / "reg", report)
    assert json.loads((out / "training_report.json").read_text())["mean_r2"] == report["mean_r2"]
    loaded = AttributeRegressor.from_pretrained(out)
    assert loaded.attributes == ["smile", "glasses"]
    with torch.no_grad():
        assert torch.allclose(loaded.predict(images[:4]), model.predict(images[:4]), atol=1e-6)
        p = loaded.predict(images[:4])
    assert p.shape == (4, 2) and bool(((p[:, 1] >= 0) & (p[:, 1] <= 1)).all())  # glasses: a probability


def test_regressor_config_and_data_checks():
    with pytest.raises(ValueError, match="unknown"):
        AttributeRegressorConfig(attributes=["smile", "beard"])
    with pytest.raises(ValueError, match="values must have shape"):
        train_attribute_regressor(torch.zeros(4, 3, 32, 32), torch.zeros(4, 3),
                                  AttributeRegressorConfig(attributes=["smile"], input_size=32, widths=[4]))


def test_labelled_portraits_from_files_and_rendered(tmp_path):
    write_portraits(tmp_path / "p", 3, split="val", size=32)
    data = load_labelled_portraits(tmp_path / "p")
    assert data.images.shape == (3, 3, 32, 32) and data.vectors.shape == (3, len(ATTRIBUTE_NAMES))
    rendered = render_labelled_portraits("val", 3, size=32)
    assert torch.allclose(rendered.vectors, data.vectors)
    assert (rendered.images - data.images).abs().max() <= 2 / 255 + 1e-6
    light = data.values(["hair_lightness"])[:, 0]  # a derived attribute
    hair = data.values(["hair_r", "hair_g", "hair_b"]).mean(dim=1)
    assert torch.allclose(light, hair)


def test_rendered_labelled_portraits_in_several_framings():
    from hyperinverter.portraits import render_seed

    mixed = render_labelled_portraits("val", 4, size=32, framing=["portrait", "face"])
    assert mixed.files == ["seed:1000000:portrait", "seed:1000001:face", "seed:1000002:portrait", "seed:1000003:face"]
    for i, name in enumerate(mixed.files):
        seed, framing = int(name.split(":")[1]), name.split(":")[2]
        expected = torch.from_numpy(np.asarray(render_seed(seed, 32, framing)[0], np.float32)).permute(2, 0, 1)
        assert torch.allclose((mixed.images[i] + 1) * 127.5, expected, atol=1e-3)
    single = render_labelled_portraits("val", 4, size=32)
    assert torch.equal(single.vectors, mixed.vectors) and torch.equal(single.images[0], mixed.images[0])
    assert not torch.equal(single.images[1], mixed.images[1])
    face = render_labelled_portraits("val", 2, size=32, framing="face")
    assert face.files == ["seed:1000000", "seed:1000001"] and torch.equal(face.images[1], mixed.images[1])
    with pytest.raises(ValueError, match="unknown framing 'wide'"):
        render_labelled_portraits("val", 2, size=32, framing="portrait,wide".split(","))


def test_train_attributes_splits_the_rendered_portraits_between_framings(tmp_path, monkeypatch, capsys):
    from hyperinverter import portraits

    calls, original = [], portraits.render_seed

    def spy(seed, size=64, framing="portrait"):
        calls.append((seed, framing))
        return original(seed, size, framing)

    monkeypatch.setattr(portraits, "render_seed", spy)
    args = ["train-attributes", "--render", "6", "--size", "32", "--input-size", "32", "--widths", "4",
            "--attributes", "smile", "--steps", "2", "--batch-size", "4", "--device", "cpu", "--quiet"]
    capsys.readouterr()
    assert main(args + ["--framing", "portrait,face", "-o", str(tmp_path / "r")]) == 0
    # two steps learn nothing: the command says so (and the report lists it) instead of a silent useless regressor
    err = capsys.readouterr().err
    assert "warning: the regressor did not learn smile (R² " in err and err.count("warning:") == 1
    assert calls == [(i, "portrait" if i % 2 == 0 else "face") for i in range(6)]
    report = json.loads((tmp_path / "r" / "training_report.json").read_text())
    assert report["framings"] == ["portrait", "face"] and "portrait, face framing" in report["data"]
    assert report["unlearned"] == ["smile"]
    calls.clear()
    assert main(args + ["-o", str(tmp_path / "p")]) == 0  # default: the portrait framing
    assert {f for _, f in calls} == {"portrait"}
    every = args[:args.index("smile")] + ["all"] + args[args.index("smile") + 1:]  # --attributes all
    assert main(every + ["-o", str(tmp_path / "all")]) == 0
    from hyperinverter.evaluation.attributes import KNOWN_ATTRIBUTES
    assert AttributeRegressor.read_config(tmp_path / "all").attributes == list(KNOWN_ATTRIBUTES)
    data = write_portraits(tmp_path / "data", 2, split="val", size=32)
    capsys.readouterr()
    assert main(["train-attributes", "--data", str(data), "--framing", "face", "-o", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--framing is for --render" in err and not (tmp_path / "d").exists()
    for bad in ("wide", "face,face", ","):
        with pytest.raises(SystemExit):
            main(args + ["--framing", bad, "-o", str(tmp_path / "x")])


# ---------------------------------------------------------------------------------------------- editability
class _RedGreen:
    """A stand-in regressor: "smile" = mean red, "yaw" = mean green (already on a common scale)."""

    attributes = ["smile", "yaw"]

    def predict_normalized(self, images):
        return images[:, :2].mean(dim=(2, 3))


def _redness_direction(model):
    w = model.generator.w_avg.clone().requires_grad_(True)
    red = model.render(w.expand(1, model.num_ws, -1))[:, 0].mean()
    (grad,) = torch.autograd.grad(red, w)
    return grad / grad.norm()


@pytest.mark.parametrize("name", ["w_encoder", "hyperinverter"])
def test_editability_responds_in_the_right_direction(model, images, name):
    up = _redness_direction(model)
    output = build_method(name, model).invert(images)
    results = {}
    for sign in (1, -1):
        meter = EditabilityMeter(model, _RedGreen(), {"smile": Direction("smile", sign * up, strength=0.5)},
                                 EditabilityConfig(examples=2))
        meter.update(images, output)
        results[sign] = meter.summary()
    assert results[1]["target_change"] > 0 > results[-1]["target_change"]
    per = results[1]["per_attribute"]["smile"]
    assert per["strength"] == 0.5 and per["target_change_per_unit"] == pytest.approx(per["target_change"] / 0.5)
    assert results[1]["entanglement"] >= 0 and -1 <= results[1]["detail_kept"] <= 1
    assert results[1]["num_images"] == 2
    assert meter.example_images().shape == (6, 3, 32, 32)
    with pytest.raises(ValueError, match="predicts only"):
        EditabilityMeter(model, _RedGreen(), {"glasses": Direction("glasses", up)})


def test_fit_directions_from_codes(model):
    gen = torch.Generator().manual_seed(0)
    codes = torch.randn(200, 32, generator=gen)
    axis = torch.zeros(32)
    axis[3] = 1
    values = torch.stack([codes @ axis, (codes[:, 5] > 0).float(), torch.ones(200)], dim=1)
    directions, reports = fit_attribute_directions(model, None, values, ["smile", "glasses", "earring"],
                                                   codes=codes)
    assert float(directions["smile"].vector @ axis) > 0.9
    assert float(directions["glasses"].vector[5]) > 0.9
    assert "skipped" in reports["earring"] and "earring" not in directions
    assert directions["smile"].strength == pytest.approx(2 * float((codes @ directions["smile"].vector).std()))


def test_detail_correlation():
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(detail_correlation(x, x), torch.ones(2))
    assert float(detail_correlation(x, torch.zeros_like(x)).abs().max()) == 0
    assert float(detail_correlation(x, x.flip(0))[0]) < 0.5


# ---------------------------------------------------------------------------------------------- dlib identity
def _dlib_or_skip():
    pytest.importorskip("dlib")
    from hyperinverter.metrics import dlib_identity_status

    status = dlib_identity_status()
    if not status.available:
        pytest.skip(status.reason)


def test_dlib_identity_on_a_real_face():
    _dlib_or_skip()
    data = pytest.importorskip("skimage.data")
    from hyperinverter.metrics import DlibIdentity
    from hyperinverter.metrics.dlib_identity import summarize

    face = torch.from_numpy(data.astronaut()).permute(2, 0, 1)[None].float() / 127.5 - 1  # [1, 3, 512, 512]
    noisy = (face + 0.5 * torch.randn(face.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)
    grey = torch.zeros_like(face)
    metric = DlibIdentity()
    same = metric(face, face)
    assert bool(same.face_found.all()) and float(same.cosine[0]) == pytest.approx(1.0, abs=1e-9)
    assert float(same.distance[0]) == pytest.approx(0.0, abs=1e-9)
    other = metric(noisy, face)
    assert float(other.cosine[0]) < 0.99 and float(other.distance[0]) > 0.05
    none = metric(grey, grey)
    assert none.num_no_face == 1 and bool(torch.isnan(none.cosine).all())
    summary = summarize([same, other, none])
    assert summary["num_images"] == 3 and summary["num_no_face"] == 1 and summary["num_faces"] == 2
    assert summary["match_rate"] is not None


def test_dlib_identity_reports_why_it_is_unavailable(monkeypatch):
    from hyperinverter.metrics import dlib_identity

    def missing():
        raise dlib_identity.DlibUnavailableError("the dlib module is not installed (pip install dlib-bin)")

    monkeypatch.setattr(dlib_identity, "_import_dlib", missing)
    status = dlib_identity.dlib_identity_status()
    assert not status.available and "dlib-bin" in status.reason
    with pytest.raises(dlib_identity.DlibUnavailableError):
        dlib_identity.DlibIdentity()
    monkeypatch.setattr(dlib_identity, "_package_dir", lambda name: None)
    with pytest.raises(dlib_identity.DlibUnavailableError, match="face_recognition_models"):
        dlib_identity.dlib_model_files()


# ---------------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("evalmodel") / "tiny"
    make_model(seed=6).save_pretrained(path)
    return path


def _write_images(folder, sizes=(32, 32, 32)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, size in enumerate(sizes):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    return folder


def test_evaluate_cli_end_to_end(tmp_path, model_dir, capsys):
    data = _write_images(tmp_path / "data", sizes=(32, 32, 48))
    out = tmp_path / "out"
    code = main(["evaluate", "--model", str(model_dir), "--data", str(data), "--batch-size", "2", "--device", "cpu",
                 "--steps", "w_opt=3,wplus_opt=3,pti=3,pti.pivot=3,refine=3", "--set", "w_opt.lr=0.05",
                 "--lpips-backbone", str(tmp_path / "missing_alexnet.pth"), "--lpips-head", str(tmp_path / "x.pth"),
                 "--dlib-id", "--runtime", "--quiet", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "warning:" in captured.err and "img2.png" in captured.err  # 48 px -> resized to 32
    assert "skipped lpips" in captured.out and "not found" in captured.out
    md = (out / "results.md").read_text()
    for label in ("W encoder (phase I)", "HyperInverter", "HyperInverter + refine", "W optimisation",
                  "W+ optimisation", "PTI"):
        assert f"| {label} |" in md
    assert "MSE ↓" in md and "PSNR ↑" in md and "s/img @8" in md and "LPIPS" not in md.split("\n## Notes")[0]
    payload = json.loads((out / "results.json").read_text())
    rows = {m["name"]: m for m in payload["methods"]}
    assert list(rows) == list(METHOD_NAMES) and payload["meta"]["num_images"] == 3
    for row in rows.values():
        assert row["metrics"]["mse"] >= 0 and row["seconds_per_image"] > 0 and set(row["runtime"]) == {"1", "8"}
    assert rows["w_opt"]["config"]["config"]["lr"] == 0.05 and rows["pti"]["config"]["config"]["pivot_steps"] == 3
    from hyperinverter.metrics import dlib_identity_status

    if dlib_identity_status().available:  # random images have no face: counted, no value
        assert rows["pti"]["dlib"]["num_no_face"] == 3 and rows["pti"]["dlib"]["cosine"] is None
    else:
        assert "skipped dlib_id" in captured.out
    csv_lines = (out / "results.csv").read_text().splitlines()
    assert csv_lines[0].startswith("method,label,kind,num_images,mse") and len(csv_lines) == 7
    assert rows["hyperinverter+refine"]["config"]["config"]["steps"] == 3
    assert Image.open(out / "examples.png").size == (7 * 34 + 2, 3 * 34 + 2)  # input + 6 methods, 3 rows
    assert (out / "examples_pti.png").is_file()


def test_evaluate_cli_bad_inputs(tmp_path, model_dir, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    assert main(["evaluate", "-m", str(model_dir), "--data", str(tmp_path / "empty"), "-o", str(tmp_path / "o")]) == 2
    assert "no image files" in capsys.readouterr().err
    assert main(["evaluate", "-m", str(model_dir), "--data", str(tmp_path / "nowhere"), "-o", str(tmp_path / "o")]) == 2
    assert "no such folder" in capsys.readouterr().err
    data = _write_images(tmp_path / "data", sizes=(32,))
    assert main(["evaluate", "-m", str(model_dir), "--data", str(data), "--methods", "w_opt,e4e",
                 "-o", str(tmp_path / "o")]) == 2
    assert "unknown method 'e4e'" in capsys.readouterr().err


def test_train_attributes_and_evaluate_editability_cli(tmp_path, model_dir, capsys):
    reg = tmp_path / "reg"
    assert main(["train-attributes", "--render", "24", "--size", "32", "--input-size", "32", "--widths", "8,16",
                 "--attributes", "smile", "yaw", "glasses", "--steps", "5", "--batch-size", "8", "--holdout", "0.25",
                 "--device", "cpu", "--quiet", "-o", str(reg)]) == 0
    assert "smile" in capsys.readouterr().out
    assert AttributeRegressor.from_pretrained(reg).attributes == ["smile", "yaw", "glasses"]
    portraits = write_portraits(tmp_path / "portraits", 12, split="val", size=32)
    out = tmp_path / "out"
    code = main(["evaluate", "-m", str(model_dir), "--data", str(portraits), "--count", "3",
                 "--methods", "w_encoder,hyperinverter", "--attributes", str(reg), "--fit-directions", str(portraits),
                 "--edit-attributes", "smile,yaw", "--device", "cpu", "--quiet", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert {p.name for p in (out / "directions").glob("*.safetensors")} == {"smile.safetensors", "yaw.safetensors"}
    payload = json.loads((out / "results.json").read_text())
    edit = payload["methods"][1]["editability"]
    assert set(edit["per_attribute"]) == {"smile", "yaw"} and edit["num_images"] == 3
    md = (out / "results.md").read_text()
    assert "Edit Δ ↑" in md and "Entangl. ↓" in md and "Editability per attribute" in md
    assert (out / "edits_hyperinverter.png").is_file()
    # the saved directions are found again with --directions
    code = main(["evaluate", "-m", str(model_dir), "--data", str(portraits), "--count", "2", "--methods", "w_encoder",
                 "--attributes", str(reg), "--directions", str(out / "directions"), "--device", "cpu", "--quiet",
                 "-o", str(tmp_path / "out2")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "no direction for glasses" in captured.out
