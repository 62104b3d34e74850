"""Nothing lost, command by command (issue 15, item 1): every command that writes files refuses, before any work
and in one line naming the files, an output that would replace one of its inputs (even with --overwrite), two
outputs to one path, and an existing output without --overwrite; a refused command changes nothing (bytes and
modification times compared) and exits with status 2.

``invert``, ``edit``, ``interpolate``, ``generate``, ``convert`` are in test_outputs.py, ``video`` in
test_video.py, training runs in test_train.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_inverter import make_model

from hyperinverter.cli import main

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------------------------------------ helpers
def _png(path: Path, seed: int = 0, size: int = 32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="PNG")  # PNG whatever the name
    return path


def _state(*folders: Path) -> dict:
    """Every file under ``folders``: its bytes and modification time (a refused command changes neither)."""
    out = {}
    for folder in folders:
        for p in sorted(Path(folder).rglob("*")):
            if p.is_file():
                out[str(p)] = (p.read_bytes(), p.stat().st_mtime_ns)
    return out


def _refused(argv: list, capsys, *expected: str) -> str:
    """Run the command, expect exit status 2 and one error line holding ``expected``; returns that line."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, err
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


EXISTS = "exist already"
INPUT = "refusing to overwrite inputs"
TWICE = "two outputs would be written"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny HyperInverter folder (32 px) with two direction files."""
    folder = tmp_path_factory.mktemp("model") / "tiny"
    make_model(seed=7).save_pretrained(folder)
    directions = folder / "directions"
    directions.mkdir()
    for name in ("smile", "yaw"):
        (directions / f"{name}.safetensors").write_bytes(b"tensor " + name.encode())
        (directions / f"{name}.json").write_text(json.dumps({"name": name}))
    return folder


# ------------------------------------------------------------------------------------------------ align
class FakeAligner:
    """Stands in for dlib: the whole photo is 'the face' (twice with all_faces)."""

    def __init__(self, landmarks=None, output_size=256, min_score=None):
        self.output_size = output_size

    def align(self, photo, all_faces=False, output_size=None):
        from hyperinverter.faces import AlignedFace

        size = output_size or self.output_size
        w, h = photo.size
        face = AlignedFace(image=photo.convert("RGB").resize((size, size)),
                           quad=np.array([[0, 0], [0, h], [w, h], [w, 0]], float), landmarks=np.zeros((68, 2)),
                           box=(0, 0, w, h), photo_size=photo.size)
        return [face, face] if all_faces else [face]


@pytest.fixture
def fake_dlib(monkeypatch):
    from hyperinverter.faces import align as align_module

    monkeypatch.setattr(align_module, "FaceAligner", FakeAligner)


def test_align_refuses_existing_crops_inputs_and_keeps_two_photos_apart(tmp_path, capsys, fake_dlib):
    photos = tmp_path / "photos"
    _png(photos / "d1" / "a.png", seed=1)
    _png(photos / "d2" / "a.png", seed=2)
    out = tmp_path / "out"
    # two photos named alike: four distinct files, none written over another
    assert main(["align", str(photos / "d1" / "a.png"), str(photos / "d2" / "a.png"), "-o", str(out),
                 "--size", "16"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.json", "a.png", "a_1.json", "a_1.png"]
    assert json.loads((out / "a_1.json").read_text())["photo"] == str(photos / "d2" / "a.png")
    capsys.readouterr()
    before = _state(out, photos)
    # again: the crops exist -> refused (before dlib is even loaded), nothing changed
    _refused(["align", str(photos / "d1" / "a.png"), str(photos / "d2" / "a.png"), "-o", str(out)], capsys,
             EXISTS, "a.png", "--overwrite")
    assert _state(out, photos) == before
    # a crop that would be one of the photos: refused even with --overwrite
    _refused(["align", str(photos / "d1"), "-o", str(photos / "d1"), "--overwrite"], capsys, INPUT, "a.png")
    assert _state(out, photos) == before
    # with --all-faces every existing <name>_face<i> counts as an output (the number of faces is not known yet)
    (out / "a_face7.png").write_bytes(b"mine")
    _refused(["align", str(photos / "d1" / "a.png"), "-o", str(out), "--all-faces"], capsys, EXISTS, "a_face7.png")
    assert (out / "a_face7.png").read_bytes() == b"mine" and not (out / "a_face0.png").exists()
    # --overwrite replaces the earlier crops
    assert main(["align", str(photos / "d2" / "a.png"), "-o", str(out), "--size", "8", "--overwrite"]) == 0
    assert Image.open(out / "a.png").size == (8, 8)


def test_invert_align_never_writes_a_crop_over_its_photo(tmp_path, capsys):
    photo = _png(tmp_path / "out" / "aligned" / "x.png")
    before = _state(tmp_path)
    # the crop of x.png would be <out>/aligned/x.png: the photo itself (checked before the model is loaded)
    line = _refused(["invert", str(photo), "--align", "-o", str(tmp_path / "out"), "--overwrite", "--device", "cpu",
                     "--quiet"], capsys, INPUT)
    assert "x.png" in line
    assert _state(tmp_path) == before


def test_paste_back_refuses_its_inputs_and_an_existing_output(tmp_path, capsys):
    photo, edited = _png(tmp_path / "photo.png", 1, 64), _png(tmp_path / "edited.png", 2, 16)
    alignment = tmp_path / "a.json"
    alignment.write_text("{}")
    result = tmp_path / "result.png"
    result.write_bytes(b"earlier result")
    before = _state(tmp_path)
    args = ["paste-back", "--photo", str(photo), "--alignment", str(alignment), "--edited", str(edited)]
    _refused(args + ["-o", str(result)], capsys, EXISTS, "result.png", "--overwrite")
    for target in (photo, edited, alignment):  # any input as the output: refused even with --overwrite
        _refused(args + ["-o", str(target), "--overwrite"], capsys, INPUT, target.name)
    _refused(args + ["-o", str(tmp_path / "result.xyz")], capsys, "unknown image file extension")
    assert _state(tmp_path) == before  # two outputs to one path: paste-back writes one file


# ------------------------------------------------------------------------------------------- demo, export
def test_demo_refuses_an_earlier_demo_and_its_input_images(tmp_path, model_dir, capsys):
    import shutil

    plain = tmp_path / "model"  # the model without its placeholder direction files: no edits
    plain.mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy2(model_dir / f, plain / f)
    a1, a2 = _png(tmp_path / "d1" / "a.png", 1), _png(tmp_path / "d2" / "a.png", 2)
    out = tmp_path / "demo"
    args = ["demo", "--model", str(plain), "--samples", "0", "--interpolation-steps", "2", "--device", "cpu"]
    assert main(args + ["--images", str(a1), str(a2), "-o", str(out)]) == 0
    # two images named alike: their files do not collide
    assert sorted(p.name for p in (out / "images").iterdir()) == [
        "a_1_hyperinverter.png", "a_1_input.png", "a_1_phase1.png", "a_hyperinverter.png", "a_input.png",
        "a_phase1.png"]
    assert [r["image"] for r in json.loads((out / "metrics.json").read_text())["per_image"]] == ["a", "a_1"]
    capsys.readouterr()
    before = _state(out, tmp_path / "d1", tmp_path / "d2", plain)
    _refused(args + ["--images", str(a1), str(a2), "-o", str(out)], capsys, EXISTS, "grid.png", "--overwrite")
    # an input image that is one of the demo's files: refused even with --overwrite
    _refused(args + ["--images", str(out / "grid.png"), str(a1), "-o", str(out), "--overwrite"], capsys, INPUT,
             "grid.png")
    assert _state(out, tmp_path / "d1", tmp_path / "d2", plain) == before
    assert main(args + ["--images", str(a2), str(a1), "-o", str(out), "--overwrite"]) == 0
    assert (out / "images" / "a_input.png").read_bytes() != before[str(out / "images" / "a_input.png")][0]


def test_export_refuses_existing_files_its_inputs_and_two_copies_to_one_name(tmp_path, model_dir, capsys):
    out = tmp_path / "half"
    assert main(["export", str(model_dir), "-o", str(out)]) == 0
    assert (out / "directions" / "smile.safetensors").read_bytes() == b"tensor smile"
    capsys.readouterr()
    before = _state(out, model_dir)
    _refused(["export", str(model_dir), "-o", str(out)], capsys, EXISTS, "config.json", "--overwrite")
    assert _state(out, model_dir) == before
    # --directions is the output's own directions folder: copying a file onto itself is refused
    own = tmp_path / "own"
    (own / "directions").mkdir(parents=True)
    (own / "directions" / "extra.json").write_text("{}")
    _refused(["export", str(model_dir), "-o", str(own), "--directions", str(own / "directions"), "--overwrite"],
             capsys, INPUT, "extra.json")
    assert sorted(p.name for p in own.rglob("*")) == ["directions", "extra.json"]
    # two direction folders with a file of one name: one would be written over the other
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "yaw.json").write_text("{}")
    _refused(["export", str(model_dir), "-o", str(tmp_path / "third"), "--directions", str(extra)], capsys,
             TWICE, "yaw.json")
    assert not (tmp_path / "third").exists()
    assert _state(out, model_dir) == before
    assert main(["export", str(model_dir), "-o", str(out), "--overwrite", "--dtype", "float32"]) == 0


def test_domain_stats_replaces_a_record_only_when_asked_and_never_an_input(tmp_path, model_dir, capsys):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    (model / "domain.json").write_text(json.dumps({"kind": "mine"}))
    val = tmp_path / "val"
    for i in range(2):
        _png(val / f"v{i}.png", i)
    before = _state(model, val)
    _refused(["domain-stats", str(model), str(val), "--device", "cpu"], capsys, EXISTS, "domain.json", "--overwrite")
    # a validation image that is where the record would go: refused even with --overwrite
    image_named_like_the_record = _png(tmp_path / "odd" / "domain.json", 3)
    _refused(["domain-stats", str(model), str(val / "v0.png"), str(image_named_like_the_record), "-o",
              str(tmp_path / "odd"), "--overwrite", "--device", "cpu"], capsys, INPUT, "domain.json")
    assert _state(model, val) == before  # domain-stats writes one file: no two outputs can meet
    assert main(["domain-stats", str(model), str(val), "--device", "cpu", "--overwrite"]) == 0
    assert json.loads((model / "domain.json").read_text())["count"] == 2


# ------------------------------------------------------------------------------------- evaluation commands
def test_evaluate_refuses_earlier_results_inputs_and_duplicate_directions(tmp_path, model_dir, capsys):
    data = tmp_path / "data"
    _png(data / "img0.png", 0)
    _png(data / "examples.png", 1)  # an input image with the name of an output grid
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.md").write_text("earlier results")
    before = _state(out, data)
    args = ["evaluate", "-m", str(model_dir), "--data", str(data), "--methods", "w_encoder", "--device", "cpu",
            "--quiet"]
    _refused(args + ["-o", str(out)], capsys, EXISTS, "results.md", "--overwrite")
    _refused(args + ["-o", str(data), "--overwrite"], capsys, INPUT, "examples.png")
    # --edit-attributes smile,smile would write directions/smile.* twice
    _refused(args + ["-o", str(tmp_path / "new"), "--attributes", str(tmp_path / "reg"), "--fit-directions",
                     str(data), "--edit-attributes", "smile,smile"], capsys, TWICE, "smile.safetensors")
    assert _state(out, data) == before and not (tmp_path / "new").exists()
    assert main(args + ["-o", str(out), "--overwrite", "--examples", "1"]) == 0
    assert (out / "results.md").read_text() != "earlier results"


def test_train_attributes_refuses_an_existing_regressor_and_its_data(tmp_path, capsys):
    from hyperinverter.portraits import write_portraits

    data = write_portraits(tmp_path / "portraits", 4, split="val", size=32)
    (data / "config.json").write_text("{}")  # a file of --data that the regressor's config would replace
    out = tmp_path / "reg"
    out.mkdir()
    (out / "model.safetensors").write_bytes(b"an earlier regressor")
    before = _state(out, data)
    args = ["train-attributes", "--data", str(data), "--steps", "1", "--batch-size", "2", "--input-size", "32",
            "--widths", "4,8", "--attributes", "smile", "--device", "cpu", "--quiet"]
    _refused(args + ["-o", str(out)], capsys, EXISTS, "model.safetensors", "--overwrite")
    _refused(args + ["-o", str(data), "--overwrite"], capsys, INPUT, "config.json")
    assert _state(out, data) == before  # three fixed names: no two outputs can meet
    assert main(args + ["-o", str(out), "--overwrite"]) == 0
    assert (out / "model.safetensors").read_bytes() != b"an earlier regressor"


# ---------------------------------------------------------------------------------------- data, directions
def test_data_portraits_refuses_an_existing_set(tmp_path, capsys):
    out = tmp_path / "p"
    args = ["data", "portraits", "--count", "2", "--split", "val", "--size", "32", "-o", str(out), "--quiet"]
    assert main(args) == 0
    before = _state(out)
    _refused(args, capsys, EXISTS, "1000000.png", "labels.json", "--overwrite")
    _refused(args[:3] + ["3"] + args[4:], capsys, EXISTS)  # one more portrait: the first two exist
    assert _state(out) == before and not (out / "1000002.png").exists()
    (tmp_path / "q" / "1000000.png").mkdir(parents=True)  # a folder where a portrait would go
    _refused(args[:-3] + ["-o", str(tmp_path / "q"), "--quiet", "--overwrite"], capsys, "are folders")
    assert main(args + ["--overwrite"]) == 0  # data portraits has no input files to protect


def test_fit_portraits_refuses_existing_directions_the_model_and_duplicates(tmp_path, model_dir, capsys):
    before = _state(model_dir)
    args = ["directions", "fit-portraits", "--model", str(model_dir), "--count", "8", "--device", "cpu"]
    _refused(args + ["--attributes", "smile"], capsys, EXISTS, "smile.safetensors", "--overwrite")
    # an attribute named 'model' written into the model's folder would replace its weights
    _refused(args + ["--attributes", "model", "-o", str(model_dir), "--overwrite"], capsys, INPUT,
             "model.safetensors")
    _refused(args + ["--attributes", "smile", "smile", "-o", str(tmp_path / "d")], capsys, TWICE)
    assert _state(model_dir) == before and not (tmp_path / "d").exists()


def test_convert_official_refuses_existing_files_and_its_inputs(tmp_path, capsys):
    # the checks come before the files are read: placeholders stand in for the official checkpoints
    hi, we = tmp_path / "hi.pt", tmp_path / "we.pt"
    hi.write_bytes(b"checkpoint")
    we.write_bytes(b"encoder")
    gen = tmp_path / "g"
    gen.mkdir()
    (gen / "config.json").write_text("{}")
    (gen / "model.safetensors").write_bytes(b"weights")
    out = tmp_path / "converted"
    out.mkdir()
    (out / "config.json").write_text("an earlier conversion")
    before = _state(tmp_path)
    args = ["convert-official", str(hi), "--w-encoder", str(we), "--generator", str(gen)]
    _refused(args + [str(out)], capsys, EXISTS, "config.json", "--overwrite")
    _refused(args + [str(gen), "--overwrite"], capsys, INPUT, "model.safetensors")
    assert _state(tmp_path) == before  # fixed names per folder: no two outputs can meet


# ------------------------------------------------------------------------------------------------ download
@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "home"
    monkeypatch.setenv("HYPERINVERTER_HOME", str(folder))
    monkeypatch.delenv("HYPERINVERTER_DOWNLOAD_BASE", raising=False)
    monkeypatch.delenv("HYPERINVERTER_DRIVE_URL", raising=False)
    return folder


def test_download_keeps_the_cache_and_never_fetches_a_file_onto_itself(tmp_path, cache, capsys):
    from hyperinverter.convert import default_catalog

    remote = default_catalog().files["lpips-alex-head"]
    cached = cache / "files" / remote.filename
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"the cached file")
    before = _state(cache)
    # a mirror that is the cache itself: the file would be its own source
    _refused(["download", "lpips-alex-head", "--base", (cache / "files").as_uri(), "--force", "--quiet"], capsys,
             INPUT, remote.filename)
    assert _state(cache) == before
    # without --force what is in the cache is kept and nothing is fetched
    assert main(["download", "lpips-alex-head", "--base", (tmp_path / "nowhere").as_uri(), "--quiet"]) == 0
    assert "already in the cache" in capsys.readouterr().out and _state(cache) == before
    # --force with a failing source: the cached file stays until a new copy is complete and checked
    assert main(["download", "lpips-alex-head", "--base", (tmp_path / "nowhere").as_uri(), "--force", "--quiet",
                 "--retries", "0"]) == 2
    assert cached.read_bytes() == b"the cached file"


def test_a_failed_conversion_keeps_the_earlier_model(cache, monkeypatch):
    from hyperinverter.convert import ZooModel, official
    from hyperinverter.convert.install import convert_model

    folder = cache / "models" / "tiny-hd8"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("the earlier conversion")

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(official, "load_official", broken)
    zoo = ZooModel("tiny-hd8", checkpoint="c", w_encoder="w", generator="g", domain_kind="x", aligned_faces=True,
                   phase1_psnr=20.0, description="tiny")
    with pytest.raises(OSError):
        convert_model(zoo, {"c": Path("c.pt"), "w": Path("w.pt"), "g": Path("g.pkl")}, None, log=lambda s: None)
    assert (folder / "config.json").read_text() == "the earlier conversion"
    assert sorted(os.listdir(cache / "models")) == ["tiny-hd8"]  # no temporary folder left
