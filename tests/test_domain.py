"""Honest answers: out-of-domain inputs are named (``domain.json``), ``--align`` with a model not trained on
aligned faces says so, ``generate``/``info``/``directions`` take model names, ``--strength`` means one thing."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_inverter import make_model

from hyperinverter import HyperInverter
from hyperinverter.cli import main
from hyperinverter.domain import DomainRecord, load_domain, outside_messages, record_domain_stats, save_domain
from hyperinverter.editing import Direction, save_direction

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    return make_model(seed=4)


@pytest.fixture()
def model_dir(tmp_path, model):
    path = tmp_path / "tiny"
    model.save_pretrained(path)
    return path


def _images(folder, model, count=6):
    """Images the model's own generator draws (inside its domain) and one flat, saturated square (outside)."""
    folder.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        z = torch.randn(count, model.generator.z_dim, generator=torch.Generator().manual_seed(0))
        drawn = model.generator(z, noise_mode="const")
    for i, x in enumerate(drawn):
        arr = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        Image.fromarray(arr).save(folder / f"drawn{i}.png")
    return folder


def _odd(path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
    return path


def test_record_threshold_messages_and_file(model, tmp_path):
    images = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    record = record_domain_stats(model, images, kind="tiny things", batch_size=2)
    assert record.count == 5 and record.resolution == 32 and record.kind == "tiny things"
    assert record.psnr_min <= record.psnr_p05 <= record.psnr_mean and record.psnr_std > 0
    assert record.threshold() == pytest.approx(min(record.psnr_p05, record.psnr_mean - 2 * record.psnr_std) - 3)
    assert record.outside_message("a.png", record.psnr_mean) is None
    low = record.threshold() - 0.5
    assert record.outside_message("a.png", low) == (
        f"a.png looks outside this model's domain (tiny things): phase-I PSNR {low:.1f} dB, typical "
        f"{record.psnr_mean:.1f} dB")
    save_domain(record, tmp_path / "m")
    assert load_domain(tmp_path / "m") == record
    assert load_domain(tmp_path) is None  # no record: nothing to say
    assert outside_messages(None, ["a"], [0.0]) == []
    published = DomainRecord(kind="FFHQ-aligned faces", aligned_faces=True, psnr_mean=18.65)
    assert published.threshold() == pytest.approx(12.65) and published.align_message() is None
    assert "not on FFHQ-aligned face crops" in DomainRecord(kind="procedural portraits").align_message()
    with pytest.raises(ValueError, match="at least 2"):
        record_domain_stats(model, images[:1])


def test_export_records_the_domain_and_domain_stats_rewrites_it(model, model_dir, tmp_path, capsys):
    val = _images(tmp_path / "val", model)
    out = tmp_path / "exported"
    assert main(["export", str(model_dir), "-o", str(out), "--dtype", "float32", "--validation", str(val),
                 "--domain-kind", "tiny things", "--batch-size", "4"]) == 0
    record = load_domain(out)
    assert record.kind == "tiny things" and record.count == 6 and not record.aligned_faces
    assert "inputs below" in capsys.readouterr().out
    # export without --validation keeps the record; domain-stats measures again in place
    assert main(["export", str(out), "-o", str(tmp_path / "again"), "--dtype", "float32"]) == 0
    assert load_domain(tmp_path / "again") == record
    assert main(["domain-stats", str(out), str(val / "drawn0.png"), str(val / "drawn1.png"), "--aligned-faces"]) == 2
    assert "domain.json" in capsys.readouterr().err and load_domain(out) == record  # replaced only when asked
    assert main(["domain-stats", str(out), str(val / "drawn0.png"), str(val / "drawn1.png"), "--aligned-faces",
                 "--overwrite"]) == 0
    again = load_domain(out)
    assert again.count == 2 and again.kind == "tiny things" and again.aligned_faces
    assert main(["export", str(out), "-o", str(tmp_path / "x"), "--domain-kind", "y"]) == 2  # kind without images


def test_the_record_keeps_the_portrait_framing_and_old_records_load(model_dir, tmp_path):
    from hyperinverter.domain import portrait_framing

    assert portrait_framing(model_dir) == "portrait"  # no domain.json
    record = DomainRecord(kind="procedural portraits", psnr_mean=30.0, framing="face")
    assert DomainRecord.from_dict(json.loads(json.dumps(record.to_dict()))) == record
    save_domain(record, model_dir)
    assert json.loads((model_dir / "domain.json").read_text())["framing"] == "face"
    assert load_domain(model_dir) == record and portrait_framing(model_dir) == "face"
    old = {k: v for k, v in record.to_dict().items() if k != "framing"}  # written before framings existed
    (model_dir / "domain.json").write_text(json.dumps(old))
    assert load_domain(model_dir).framing == "" and portrait_framing(model_dir) == "portrait"
    assert portrait_framing("portraits64") == "portrait"  # the shipped model says so


def test_export_records_the_framing(model, model_dir, tmp_path, capsys):
    from hyperinverter.portraits import write_portraits

    save_domain(DomainRecord(kind="procedural portraits", psnr_mean=30.0, psnr_std=1.0, count=9), model_dir)
    # --framing without --validation: the source's record with the framing set
    assert main(["export", str(model_dir), "-o", str(tmp_path / "a"), "--framing", "face"]) == 0
    assert load_domain(tmp_path / "a") == DomainRecord(kind="procedural portraits", psnr_mean=30.0, psnr_std=1.0,
                                                       count=9, framing="face")
    assert "procedural portraits, face framing" in capsys.readouterr().out
    # a record-less source: a record that holds only the framing
    model.save_pretrained(tmp_path / "bare")
    assert main(["export", str(tmp_path / "bare"), "-o", str(tmp_path / "b"), "--framing", "portrait"]) == 0
    assert load_domain(tmp_path / "b") == DomainRecord(framing="portrait")
    assert "no phase-I figures" in capsys.readouterr().out
    # --validation: the framing its labels.json records, else the source's; --framing wins
    val = write_portraits(tmp_path / "val", 3, split="val", size=32, framing="face")
    assert main(["export", str(tmp_path / "bare"), "-o", str(tmp_path / "c"), "--validation", str(val)]) == 0
    assert load_domain(tmp_path / "c").framing == "face" and load_domain(tmp_path / "c").count == 3
    assert main(["export", str(tmp_path / "a"), "-o", str(tmp_path / "d"), "--validation", str(val / "1000000.png"),
                 str(val / "1000001.png"), "--framing", "portrait"]) == 0
    assert load_domain(tmp_path / "d").framing == "portrait"
    other = _images(tmp_path / "drawn", model)  # no labels: the source's framing stays
    assert main(["export", str(tmp_path / "a"), "-o", str(tmp_path / "e"), "--validation", str(other)]) == 0
    assert load_domain(tmp_path / "e").framing == "face"
    # domain-stats measures again and keeps the framing; mixed labels are refused in one line
    assert main(["domain-stats", str(tmp_path / "e"), str(other), "--overwrite", "--device", "cpu"]) == 0
    assert load_domain(tmp_path / "e").framing == "face"
    write_portraits(tmp_path / "val2", 2, split="val", size=32, framing="portrait")
    capsys.readouterr()
    assert main(["export", str(tmp_path / "bare"), "-o", str(tmp_path / "f"), "--validation", str(val),
                 str(tmp_path / "val2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "several framings (face, portrait)" in err and "--framing" in err
    with pytest.raises(SystemExit):
        main(["export", str(tmp_path / "bare"), "-o", str(tmp_path / "g"), "--framing", "wide"])


def test_invert_edit_and_demo_name_inputs_outside_the_domain(model, model_dir, tmp_path, capsys):
    odd = _odd(tmp_path / "odd.png")
    np.save(tmp_path / "d.npy", np.ones(32, np.float32))
    args = ["--model", str(model_dir), "--device", "cpu"]
    # No record: not a word.
    assert main(["invert", str(odd), *args, "-o", str(tmp_path / "i0"), "--quiet"]) == 0
    assert "outside" not in capsys.readouterr().out
    save_domain(DomainRecord(kind="tiny things", psnr_mean=60.0, psnr_std=1.0, psnr_p05=58.0, count=10), model_dir)
    assert main(["invert", str(odd), *args, "-o", str(tmp_path / "i1"), "--quiet"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "outside" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: odd.png looks outside this model's domain (tiny "
                                                   "things): phase-I PSNR ") and lines[0].endswith("typical 60.0 dB")
    assert main(["edit", str(odd), *args, "--direction", str(tmp_path / "d.npy"), "-o", str(tmp_path / "e")]) == 0
    assert sum("odd.png looks outside" in line for line in capsys.readouterr().out.splitlines()) == 1
    _odd(tmp_path / "odd2.png")
    assert main(["demo", "--images", str(odd), str(tmp_path / "odd2.png"), *args, "--samples", "0",
                 "--interpolation-steps", "2", "-o", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "warning: odd.png looks outside" in out and "warning: odd2.png looks outside" in out
    assert len(json.loads((tmp_path / "demo" / "metrics.json").read_text())["warnings"]) == 2
    # A record whose figures the input matches: quiet again.
    save_domain(DomainRecord(kind="tiny things", threshold_db=-100.0, psnr_mean=0.0), model_dir)
    assert main(["invert", str(odd), *args, "-o", str(tmp_path / "i2"), "--quiet"]) == 0
    assert "outside" not in capsys.readouterr().out


def test_the_web_page_notes_an_upload_outside_the_domain(model_dir, tmp_path):
    from hyperinverter.serve import ServeSession

    save_domain(DomainRecord(kind="tiny things", psnr_mean=60.0, psnr_std=1.0, psnr_p05=58.0, count=10), model_dir)
    session = ServeSession.from_folder(model_dir, align=False, output_dir=tmp_path / "out")
    try:
        recon = session.invert_file(_odd(tmp_path / "odd.png"))
        assert sum("this image looks outside this model's domain (tiny things)" in n for n in recon.notes) == 1
    finally:
        session.close()


def test_align_with_a_model_not_trained_on_aligned_faces_says_so(model_dir, tmp_path, capsys):
    skimage = pytest.importorskip("skimage")
    from hyperinverter.faces.errors import FaceError
    from hyperinverter.faces.landmarks import find_landmarks_model, import_dlib

    try:
        import_dlib()
        find_landmarks_model()
    except FaceError as e:
        pytest.skip(f"no dlib or landmark model: {e}")
    Image.fromarray(skimage.data.astronaut()).save(tmp_path / "astronaut.png")
    save_domain(DomainRecord(kind="procedural portraits", psnr_mean=22.0, psnr_std=1.0, psnr_p05=20.0), model_dir)
    assert main(["invert", str(tmp_path / "astronaut.png"), "--model", str(model_dir), "--align", "--quiet",
                 "--device", "cpu", "-o", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert ("warning: --align: this model was trained on procedural portraits, not on FFHQ-aligned face crops"
            in out)
    assert "astronaut.png looks outside this model's domain (procedural portraits)" in out


def test_generate_info_and_directions_take_a_model(model_dir, tmp_path, capsys):
    assert main(["generate", "-o", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no generator given" in err and not (tmp_path / "g.png").exists()
    assert main(["generate", "--model", str(model_dir), "--seeds", "0-3", "--device", "cpu", "-o",
                 str(tmp_path / "g.png")]) == 0
    assert Image.open(tmp_path / "g.png").size == (2 * 34 + 2, 2 * 34 + 2)
    assert main(["generate", "-m", "portraits64", "--seeds", "0", "--device", "cpu", "-o",
                 str(tmp_path / "p.png")]) == 0
    assert "the generator of model portraits64" in capsys.readouterr().out
    assert main(["generate", "-m", "nope-model", "-o", str(tmp_path / "n.png")]) == 2
    assert "nope-model: no such file or folder" in capsys.readouterr().err
    save_domain(DomainRecord(kind="tiny things"), model_dir)
    assert main(["info", str(model_dir)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["class"] == "HyperInverter" and info["generator"]["num_ws"] == 8
    assert info["domain"]["kind"] == "tiny things"
    assert main(["info", "portraits64"]) == 0
    assert json.loads(capsys.readouterr().out)["generator"]["resolution"] == 64
    assert main(["directions", "sefa", "--model", str(model_dir), "--num", "2", "-o", str(tmp_path / "d")]) == 0
    assert (tmp_path / "d" / "sefa01.safetensors").is_file()
    assert main(["directions", "pca", "-m", str(model_dir), "--num", "2", "--samples", "500", "-o",
                 str(tmp_path / "d")]) == 0


def test_strength_means_the_same_in_edit_demo_and_the_web_page(model_dir, tmp_path, monkeypatch):
    from hyperinverter.demo import DemoOptions, run_demo
    from hyperinverter.serve.directions import combined_offset

    vector = torch.randn(32, generator=torch.Generator().manual_seed(2))
    direction = Direction("d", vector, kind="interfacegan", layers=(0, 4), strength=2.0)
    save_direction(direction, model_dir / "directions")
    calls = []
    original = HyperInverter.edit

    def spy(self, result, vec, strength=1.0, layers=None, batch_size=8):
        calls.append((float(strength), None if layers is None else tuple(layers), torch.as_tensor(vec).cpu()))
        return original(self, result, vec, strength, layers=layers, batch_size=batch_size)

    monkeypatch.setattr(HyperInverter, "edit", spy)
    # edit: --strength 1.5 moves w by 1.5 x the direction's step (2) on its own rows
    assert main(["edit", str(_odd(tmp_path / "a.png")), "--model", str(model_dir), "--direction", "d",
                 "--strength", "1.5", "--device", "cpu", "-o", str(tmp_path / "e")]) == 0
    assert calls[-1][:2] == (3.0, (0, 4)) and torch.allclose(calls[-1][2], vector)
    # demo: the same strength gives the same multiplier (both signs)
    calls.clear()
    model = HyperInverter.from_pretrained(model_dir)
    run_demo(model, tmp_path / "demo", images=[tmp_path / "a.png"], model_dir=model_dir,
             options=DemoOptions(strength=1.5, samples=0, interpolation_steps=0), log=lambda _: None)
    assert sorted(c[0] for c in calls) == [-3.0, 3.0]
    # the web page: a slider at 1.5 adds the same offset; its range is ±3 for every direction
    offset = combined_offset([direction], [1.5], 8, 32)
    assert torch.allclose(offset[:4], 3.0 * vector.expand(4, 32)) and offset[4:].abs().max() == 0
    from hyperinverter.serve import ServeSession

    session = ServeSession.from_folder(model_dir, align=False, output_dir=tmp_path / "out")
    try:
        assert [session.slider_range(d) for d in session.directions] == [3.0]
    finally:
        session.close()
