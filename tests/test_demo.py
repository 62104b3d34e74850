"""The demo: shipped-model names, portrait directions, `hyperinverter demo` / `export` end to end on a tiny model."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_inverter import make_model

from hyperinverter import CheckpointError, HyperInverter
from hyperinverter import pretrained
from hyperinverter.cli import main
from hyperinverter.portraits import ATTRIBUTE_NAMES
from hyperinverter.demo import (DemoOptions, LabelledCodes, attribute_values, encode_portraits,
                                fit_portrait_directions, labelled_grid, run_demo)
from hyperinverter.demo.directions import attribute_readouts, condition_direction, latent_codes
from hyperinverter.editing import load_direction_file


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("model")
    make_model(seed=3).save_pretrained(d)
    return d


def test_resolve_paths_and_names(tmp_path, model_dir):
    assert pretrained.resolve(model_dir) == model_dir
    with pytest.raises(CheckpointError, match="not the name of a shipped or downloaded model"):
        pretrained.resolve(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="not the name of a shipped or downloaded model"):
        HyperInverter.from_pretrained("no-such-model")
    for name in pretrained.available():  # every shipped model loads by name, float16 weights cast to float32
        model = HyperInverter.from_pretrained(name)
        assert next(model.parameters()).dtype == torch.float32
        assert pretrained.resolve(name) == pretrained.ROOT / name


def test_attribute_values_and_derived():
    labels = np.random.default_rng(0).random((5, len(ATTRIBUTE_NAMES)))
    np.testing.assert_allclose(attribute_values(labels, "smile"), labels[:, ATTRIBUTE_NAMES.index("smile")])
    hair = [ATTRIBUTE_NAMES.index(c) for c in ("hair_r", "hair_g", "hair_b")]
    np.testing.assert_allclose(attribute_values(labels, "hair_lightness"), labels[:, hair].mean(1))
    with pytest.raises(ValueError, match="unknown portrait attribute"):
        attribute_values(labels, "beard")


def test_fit_portrait_directions_finds_a_planted_direction():
    # Codes whose first axis carries the attribute: the fitted direction must point along +e0.
    g = torch.Generator().manual_seed(0)
    w = torch.randn(400, 8, generator=g)
    labels = np.zeros((400, len(ATTRIBUTE_NAMES)))
    labels[:, ATTRIBUTE_NAMES.index("smile")] = w[:, 0].numpy() + 0.1 * np.random.default_rng(0).standard_normal(400)
    labels[:, ATTRIBUTE_NAMES.index("glasses")] = (w[:, 1] > 0).numpy()
    data = LabelledCodes(w, labels, list(range(400)))
    (smile, report), (glasses, _) = fit_portrait_directions(data, ["smile", "glasses"])
    assert smile.vector[0] > 0.9 and glasses.vector[1] > 0.9
    assert report["holdout_accuracy"] > 0.9
    assert smile.strength == pytest.approx(2 * float((w.double() @ smile.vector.double()).std()), rel=1e-5)
    with pytest.raises(ValueError, match="single value"):
        fit_portrait_directions(data, ["earring"])


def test_conditional_direction_leaves_the_other_attributes_read_outs_unchanged():
    # smile is carried by axis 0, but its labels also follow axis 1, which drives glasses: the plain boundary
    # leans towards axis 1 (moving glasses too); the conditional one must not move the glasses read-out.
    g = torch.Generator().manual_seed(1)
    w = torch.randn(2000, 8, generator=g, dtype=torch.float64).float()
    labels = np.ones((2000, len(ATTRIBUTE_NAMES)))  # entries that never vary have no read-out
    labels[:, ATTRIBUTE_NAMES.index("smile")] = (w[:, 0] + 0.8 * w[:, 1]).numpy()
    labels[:, ATTRIBUTE_NAMES.index("glasses")] = w[:, 1].numpy()
    labels[:, ATTRIBUTE_NAMES.index("hair_r")] = w[:, 2].numpy()
    data = LabelledCodes(w, labels, list(range(2000)))
    (plain, _), = fit_portrait_directions(data, ["smile"])
    (cond, report), (hair, _) = fit_portrait_directions(data, ["smile", "hair_lightness"], conditional=True)
    readouts = attribute_readouts(w, labels)
    glasses = readouts[ATTRIBUTE_NAMES.index("glasses")]
    assert abs(float(plain.vector.double() @ glasses)) > 0.3 * float(glasses.norm())  # the plain one leans
    assert abs(float(cond.vector.double() @ glasses)) < 1e-6 * float(glasses.norm())  # the conditional one not
    assert float(cond.vector.norm()) == pytest.approx(1.0, abs=1e-6) and cond.vector[0] > 0.9
    assert report["conditioned_cosine"] == pytest.approx(float(plain.vector @ cond.vector), abs=1e-5)
    # a derived attribute is not conditioned on what it is made of: hair_lightness keeps following hair_r
    assert hair.vector[2] > 0.9
    assert "conditioned on the other 35 label entries" in cond.description["source"]
    with pytest.raises(ValueError, match="span of the conditions"):
        condition_direction(torch.tensor([1.0, 0.0]), torch.tensor([[2.0, 0.0], [1.0, 0.0]]))
    assert torch.allclose(condition_direction(torch.tensor([3.0, 4.0]), torch.zeros(2, 2)), torch.tensor([0.6, 0.8]))


def test_latent_codes_are_the_generators_codes_with_exact_labels(model_dir, capsys, tmp_path):
    from hyperinverter import Generator
    from hyperinverter.portraits import attributes_from_latent

    torch.manual_seed(0)
    G = Generator(img_resolution=16, z_dim=64, w_dim=16, channel_base=128, channel_max=16, mapping_layers=2).eval()
    data = latent_codes(G, 20, seed=5, framing="aligned")
    z = torch.randn([20, 64], generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.allclose(data.w, G.mapping(z)[:, 0])
    np.testing.assert_allclose(data.labels[3], attributes_from_latent(z[3].double().numpy()).to_vector(), rtol=1e-6)
    assert data.source == "generator" and data.framing == "aligned" and data.labels.shape == (20, len(ATTRIBUTE_NAMES))
    (d, _), = fit_portrait_directions(data, ["yaw"])
    assert d.description["codes"] == "generator" and "mapping(z)" in d.description["source"]
    # a generator whose z cannot be the renderer's latent is refused, in one line on the command line
    with pytest.raises(ValueError, match="not a generator taught by the renderer"):
        latent_codes(HyperInverter.from_pretrained(model_dir).generator, 4)
    capsys.readouterr()
    assert main(["directions", "fit-portraits", "--model", str(model_dir), "--count", "20", "--attributes", "yaw",
                 "--codes", "generator", "--device", "cpu", "-o", str(tmp_path / "g")]) == 2
    assert "not a generator taught by the renderer" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()


def test_fit_portraits_strength_sigmas(tmp_path, model_dir, capsys):
    base = ["directions", "fit-portraits", "--model", str(model_dir), "--count", "20", "--attributes", "yaw",
            "--device", "cpu", "-o"]
    assert main(base + [str(tmp_path / "s2")]) == 0
    assert main(base + [str(tmp_path / "s3"), "--strength-sigmas", "3"]) == 0
    s2, s3 = (json.loads((tmp_path / f / "yaw.json").read_text()) for f in ("s2", "s3"))
    assert s3["strength"] == pytest.approx(1.5 * s2["strength"], rel=1e-6)
    assert s3["description"]["strength_sigmas"] == 3 and s2["description"]["strength_sigmas"] == 2
    capsys.readouterr()
    assert main(base + [str(tmp_path / "s0"), "--strength-sigmas", "0"]) == 2
    err = capsys.readouterr().err
    assert "--strength-sigmas must be > 0" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "s0").exists()


def test_encode_portraits_shapes(model_dir):
    model = HyperInverter.from_pretrained(model_dir)
    data = encode_portraits(model, 5, batch_size=2)
    assert data.w.shape == (5, model.generator.w_dim) and data.labels.shape == (5, len(ATTRIBUTE_NAMES))
    assert data.seeds == list(range(5))


def test_labelled_grid_size():
    rows = [[torch.zeros(3, 8, 8)] * 3] * 2
    grid = labelled_grid(rows, ["a", "b", "c"], scale=2, pad=4)
    assert grid.size == (3 * (16 + 4) + 4, 18 + 2 * (16 + 4) + 4)


def _fit_directions(model_dir):
    assert main(["directions", "fit-portraits", "--model", str(model_dir), "--count", "40", "--attributes", "smile",
                 "yaw", "--device", "cpu", "--overwrite"]) == 0  # called by several tests: replaces its own files
    return model_dir / "directions"


def test_demo_end_to_end(tmp_path, model_dir, capsys):
    directions = _fit_directions(model_dir)
    assert sorted(p.name for p in directions.iterdir()) == ["smile.json", "smile.safetensors", "yaw.json",
                                                            "yaw.safetensors"]
    # --min-accuracy: a direction fitted below it is named and not written (nothing reaches 1.01).
    capsys.readouterr()
    assert main(["directions", "fit-portraits", "--model", str(model_dir), "--count", "40", "--attributes",
                 "yaw", "--device", "cpu", "-o", str(tmp_path / "strict"), "--min-accuracy", "1.01"]) == 0
    assert "yaw: held-out accuracy" in capsys.readouterr().out and not list((tmp_path / "strict").glob("*"))
    # with --overwrite, an earlier file of a direction now refused goes (it would be offered as if it passed)
    strict = tmp_path / "strict"
    for name in ("yaw.safetensors", "yaw.json"):
        (strict / name).write_bytes((directions / name).read_bytes())
    (strict / "notes.txt").write_text("mine")
    assert main(["directions", "fit-portraits", "--model", str(model_dir), "--count", "40", "--attributes",
                 "yaw", "--device", "cpu", "-o", str(strict), "--min-accuracy", "1.01", "--overwrite"]) == 0
    assert "removed the earlier yaw files" in capsys.readouterr().out
    assert sorted(p.name for p in strict.iterdir()) == ["notes.txt"]
    capsys.readouterr()
    out = tmp_path / "demo"
    assert main(["demo", "--model", str(model_dir), "-o", str(out), "--count", "3", "--samples", "4",
                 "--interpolation-steps", "4", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "HyperInverter" in printed and "index.html" in printed
    for name in ("index.html", "grid.png", "interpolation.gif", "interpolation.png", "samples.png", "metrics.csv",
                 "metrics.json"):
        assert (out / name).is_file(), name
    meta = json.loads((out / "metrics.json").read_text())
    assert meta["directions"] == ["smile", "yaw"] and len(meta["per_image"]) == 3
    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 3 and {"mse_phase1", "psnr_hyperinverter", "ssim_phase1"} <= set(rows[0])
    # The figures are those of the model on the rendered test portraits, recomputed here.
    model = HyperInverter.from_pretrained(model_dir)
    from hyperinverter.demo.run import held_out_portraits, per_image_metrics
    x, names = held_out_portraits(3, 0, model.resolution)
    m = per_image_metrics(x, model.invert(x))
    assert float(rows[1]["mse_hyperinverter"]) == pytest.approx(float(m["hyperinverter"]["mse"][1]), rel=1e-4)
    assert rows[0]["image"] == names[0] == "portrait_2000000"
    # The grid: 3 rows, input | phase I | HyperInverter | 2 directions x (-, +).
    grid = Image.open(out / "grid.png")
    assert grid.width == 120 + 7 * (2 * model.resolution + 4) + 4
    html = (out / "index.html").read_text()
    assert "grid.png" in html and "interpolation.gif" in html and "portrait_2000002" in html
    # An edit moves the picture; strength 0 gives back the HyperInverter image.
    report = run_demo(model, tmp_path / "zero", model_dir=model_dir, log=lambda s: None,
                      options=DemoOptions(count=2, strength=0.0, samples=0, interpolation_steps=0))
    assert report.directions == ["smile", "yaw"] and "interpolation_gif" not in report.files


@pytest.fixture()
def face_model_dir(tmp_path):
    """A tiny model whose domain.json says it was trained on face-framed portraits."""
    from hyperinverter.domain import DomainRecord, save_domain

    folder = tmp_path / "faces"
    make_model(seed=3).save_pretrained(folder)
    save_domain(DomainRecord(kind="procedural portraits", framing="face"), folder)
    return folder


def _spy_framings(monkeypatch, module) -> list:
    """Record the framing of every ``render_seed`` call made through ``module``."""
    calls, original = [], module.render_seed

    def spy(seed, size=64, framing="portrait"):
        calls.append(framing)
        return original(seed, size, framing)

    monkeypatch.setattr(module, "render_seed", spy)
    return calls


def test_the_demo_renders_held_out_portraits_in_the_models_framing(tmp_path, face_model_dir, monkeypatch):
    from hyperinverter.demo import run
    from hyperinverter.portraits import render_seed
    from hyperinverter.utils.image_io import pil_to_tensor

    x, names = run.held_out_portraits(2, 0, 32, framing="face")
    assert torch.equal(x[1], pil_to_tensor(render_seed(2_000_001, 32, "face")[0])) and names[1] == "portrait_2000001"
    assert not torch.equal(x, run.held_out_portraits(2, 0, 32)[0])
    with pytest.raises(ValueError, match="unknown framing"):
        run.held_out_portraits(2, 0, 32, framing="wide")
    calls = _spy_framings(monkeypatch, run)
    report = run_demo(HyperInverter.from_pretrained(face_model_dir), tmp_path / "demo", model_dir=face_model_dir,
                      log=lambda s: None, options=DemoOptions(count=2, samples=0, interpolation_steps=0))
    assert calls == ["face", "face"]
    assert "face framing" in json.loads(report.files["metrics_json"].read_text())["source"]
    calls.clear()
    run_demo(HyperInverter.from_pretrained(face_model_dir), tmp_path / "demo2", model_dir=None, log=lambda s: None,
             options=DemoOptions(count=2, samples=0, interpolation_steps=0))
    assert calls == ["portrait", "portrait"]  # no model folder: no record, the portrait framing


def test_fit_portraits_renders_in_the_models_framing(face_model_dir, monkeypatch, capsys):
    from hyperinverter.demo import directions

    calls = _spy_framings(monkeypatch, directions)
    assert main(["directions", "fit-portraits", "--model", str(face_model_dir), "--count", "30", "--attributes",
                 "smile", "--device", "cpu"]) == 0
    assert calls == ["face"] * 30 and "face framing" in capsys.readouterr().out
    saved = json.loads((face_model_dir / "directions" / "smile.json").read_text())
    assert saved["description"]["framing"] == "face"
    with pytest.raises(ValueError, match="unknown framing"):
        encode_portraits(HyperInverter.from_pretrained(face_model_dir), 2, framing="wide")


def test_demo_with_user_images_and_bad_files(tmp_path, model_dir, capsys):
    good = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 50, 3), dtype=np.uint8)).save(good)
    gray = tmp_path / "b.png"
    Image.new("L", (40, 40), 128).save(gray)
    bad = tmp_path / "c.png"
    bad.write_bytes(b"not an image")
    out = tmp_path / "demo"
    assert main(["demo", "--model", str(model_dir), "-o", str(out), "--images", str(good), str(gray), str(bad),
                 "--samples", "0", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "c.png" in printed and "skipped" in printed  # the unreadable file is named, the rest goes on
    meta = json.loads((out / "metrics.json").read_text())
    assert [r["image"] for r in meta["per_image"]] == ["a", "b"]
    other = tmp_path / "other"  # a fresh folder: `out` holds the demo above (refused without --overwrite)
    assert main(["demo", "--model", str(model_dir), "-o", str(other), "--images", str(bad)]) == 2
    assert "could be read" in capsys.readouterr().err
    assert main(["demo", "--model", str(tmp_path / "missing"), "-o", str(other)]) == 2
    assert main(["demo", "--model", str(model_dir), "-o", str(other), "--directions", "nope"]) == 2
    assert "no direction ['nope']" in capsys.readouterr().err


def test_export_float16_keeps_outputs_close(tmp_path, model_dir):
    _fit_directions(model_dir)
    out = tmp_path / "half"
    assert main(["export", str(model_dir), "-o", str(out)]) == 0
    assert (out / "directions" / "smile.safetensors").is_file()
    full, half = HyperInverter.from_pretrained(model_dir), HyperInverter.from_pretrained(out)
    assert (out / "model.safetensors").stat().st_size < 0.6 * (model_dir / "model.safetensors").stat().st_size
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    a, b = full.invert(x), half.invert(x)
    assert (a.image - b.image).abs().max() < 0.05
    direction = load_direction_file(out / "directions" / "yaw.safetensors", 32, full.num_ws)
    assert direction.name == "yaw"
    assert main(["export", str(model_dir), "-o", str(model_dir)]) == 2


@pytest.mark.parametrize("name, framing, directions, ratio", [
    ("portraits64", "portrait", ["glasses", "hair_lightness", "skin_tone", "tilt"], 0.6),
    ("faces64", "aligned", ["glasses", "hair_lightness", "skin_tone", "smile", "tilt", "yaw"], 0.5),
])
def test_shipped_models_load_by_name_and_beat_phase_one(name, framing, directions, ratio):
    # The models the package ships: within the size budget, float16 on disk, loadable by name, their
    # directions match them, and on held-out portraits in their framing phase II clearly improves on phase I.
    from hyperinverter.demo.run import held_out_portraits, per_image_metrics
    from hyperinverter.domain import portrait_framing

    assert name in pretrained.available()
    folder = pretrained.resolve(name)
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert size <= 30 * 2 ** 20
    assert json.loads((folder / "config.json").read_text())
    assert portrait_framing(folder) == framing
    model = HyperInverter.from_pretrained(name)
    assert model.resolution == 64
    names = sorted(p.stem for p in (folder / "directions").glob("*.safetensors"))
    assert names == directions
    for d_name in names:
        d = load_direction_file(folder / "directions" / f"{d_name}.safetensors", model.generator.w_dim, model.num_ws)
        assert torch.isfinite(d.vector).all()
    x, _ = held_out_portraits(8, 100, model.resolution, framing=framing)
    with torch.no_grad():
        m = per_image_metrics(x, model.invert(x))
    assert float(m["hyperinverter"]["mse"].mean()) < ratio * float(m["phase1"]["mse"].mean())


def test_the_default_model_is_faces64():
    assert pretrained.DEFAULT_MODEL == "faces64" and pretrained.DEFAULT_MODEL in pretrained.available()


def test_bench_demo_quality_reconstruction_only(tmp_path):
    """benchmarks/bench_demo_quality.py --reconstruction-only (a training run's model folder in about a minute): the
    reconstruction and the regressor's reads, their bars, the inversions grid; no directions, sweep or KID. A tiny
    random model misses the PSNR bar, so the script exits 1 and names it."""
    import subprocess
    import sys
    from pathlib import Path

    from hyperinverter.evaluation.attributes import (AttributeRegressorConfig, AttributeTrainConfig, save_regressor,
                                                     train_attribute_regressor)

    make_model(seed=5).save_pretrained(tmp_path / "m")
    config = AttributeRegressorConfig(attributes=["glasses", "smile", "yaw"], input_size=32, widths=[4])
    reg, report = train_attribute_regressor(torch.rand(8, 3, 32, 32) * 2 - 1, torch.rand(8, 3), config,
                                            AttributeTrainConfig(steps=1, batch_size=4, holdout=0.25))
    save_regressor(reg, tmp_path / "r", report)
    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_demo_quality.py"
    done = subprocess.run([sys.executable, str(bench), "--model", str(tmp_path / "m"), "--attributes",
                           str(tmp_path / "r"), "--count", "6", "--batch-size", "3", "--reconstruction-only",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "has no domain.json: rendering the portrait framing (--framing to choose" in done.stdout
    assert "bars NOT met: ['psnr'" in done.stdout and "KID" not in done.stdout and "direction" not in done.stdout
    quality = json.loads((tmp_path / "out" / "quality.json").read_text())
    assert set(quality["reads"]) == {"glasses", "smile", "yaw"} and "directions" not in quality and "kid" not in quality
    assert quality["reconstruction"]["hyperinverter"]["psnr"] < 30 and quality["met"]["psnr"] is False
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["inversions.png", "quality.json"]
    # --split val: other portraits (to choose between checkpoints without looking at the test ones)
    done = subprocess.run([sys.executable, str(bench), "--model", str(tmp_path / "m"), "--attributes",
                           str(tmp_path / "r"), "--count", "6", "--batch-size", "3", "--reconstruction-only",
                           "--split", "val", "--out", str(tmp_path / "val")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "(val split, portrait framing)" in done.stdout, done.stderr[-2000:]
    val = json.loads((tmp_path / "val" / "quality.json").read_text())
    assert quality["split"] == "test" and val["split"] == "val"
    assert val["reconstruction"]["hyperinverter"]["psnr"] != quality["reconstruction"]["hyperinverter"]["psnr"]
