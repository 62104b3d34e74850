"""The command line end to end on tiny models (in-process through hyperinverter.cli.main)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers_official import write_official_files
from PIL import Image
from safetensors.torch import load_file
from test_inverter import make_model

from hyperinverter import HyperInverter
from hyperinverter.cli import main
from hyperinverter.portraits import ATTRIBUTE_NAMES


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny"
    make_model(seed=4).save_pretrained(path)
    return path


def _write_images(folder):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(folder / "rgb.png")
    Image.fromarray(rng.integers(0, 255, (48, 32), dtype=np.uint8), "L").save(folder / "gray.jpg")
    Image.fromarray(rng.integers(0, 255, (32, 32, 4), dtype=np.uint8), "RGBA").save(folder / "alpha.png")
    (folder / "broken.png").write_text("this is not an image")
    return folder


def test_generate_from_a_generator_folder(tmp_path, model_dir, capsys):
    HyperInverter.from_pretrained(model_dir).generator.save_pretrained(tmp_path / "g")
    assert main(["generate", "--generator", str(tmp_path / "g"), "--seeds", "0-3", "-o",
                 str(tmp_path / "grid.png")]) == 0
    assert Image.open(tmp_path / "grid.png").size == (2 * 34 + 2, 2 * 34 + 2)
    assert "wrote" in capsys.readouterr().out


def test_invert_folder_skips_bad_file_and_writes_the_rest(tmp_path, model_dir, capsys):
    images = _write_images(tmp_path / "in")
    code = main(["invert", str(images), "--model", str(model_dir), "-o", str(tmp_path / "out"), "--batch-size", "2",
                 "--quiet"])
    captured = capsys.readouterr()
    assert code == 1  # one file failed
    assert "broken.png" in captured.err
    assert "aspect ratio" in captured.out  # gray.jpg is 32x48
    for name in ("rgb", "gray", "alpha"):
        assert Image.open(tmp_path / "out" / f"{name}.png").size == (32, 32)
        assert (tmp_path / "out" / f"{name}_w.png").is_file()
        codes = load_file(str(tmp_path / "out" / f"{name}.codes.safetensors"))
        assert codes["w"].shape == (1, 32) and any(k.startswith("code.") for k in codes)  # compact by default
    assert not (tmp_path / "out" / "broken.png").exists()


def test_edit_and_interpolate(tmp_path, model_dir):
    images = _write_images(tmp_path / "in")
    np.save(tmp_path / "smile.npy", np.random.default_rng(1).standard_normal(32).astype(np.float32))
    assert main(["edit", str(images / "rgb.png"), "--model", str(model_dir), "--direction",
                 str(tmp_path / "smile.npy"), "--strength", "-2", "2", "--layers", "0:4", "-o",
                 str(tmp_path / "edit")]) == 0
    assert (tmp_path / "edit" / "rgb_smile_+2.png").is_file() and (tmp_path / "edit" / "rgb_smile_-2.png").is_file()
    strip = Image.open(tmp_path / "edit" / "rgb_smile_strip.png")
    assert strip.size[0] > 5 * 32
    assert main(["interpolate", str(images / "rgb.png"), str(images / "alpha.png"), "--model", str(model_dir),
                 "--steps", "4", "-o", str(tmp_path / "interp")]) == 0
    gif = Image.open(tmp_path / "interp" / "interpolation.gif")
    assert gif.n_frames == 6  # 4 frames forth, 2 back
    assert len(list((tmp_path / "interp").glob("frame_*.png"))) == 4


def test_named_direction_from_model_folder_and_bad_direction(tmp_path, model_dir, capsys):
    images = _write_images(tmp_path / "in")
    model_copy = tmp_path / "m"
    HyperInverter.from_pretrained(model_dir).save_pretrained(model_copy)
    (model_copy / "directions").mkdir()
    torch.save(torch.randn(1, 32), model_copy / "directions" / "age.pt")
    assert main(["edit", str(images / "rgb.png"), "--model", str(model_copy), "--direction", "age",
                 "-o", str(tmp_path / "e")]) == 0
    np.save(tmp_path / "bad.npy", np.zeros(31, np.float32))
    assert main(["edit", str(images / "rgb.png"), "--model", str(model_copy), "--direction",
                 str(tmp_path / "bad.npy")]) == 2
    assert "needs [32]" in capsys.readouterr().err
    assert main(["edit", str(images / "rgb.png"), "--model", str(model_copy), "--direction", "nope"]) == 2
    assert "['age']" in capsys.readouterr().err
    assert main(["edit", str(images / "broken.png"), "--model", str(model_copy), "--direction", "age"]) == 2
    assert "broken.png" in capsys.readouterr().err


def test_missing_model_is_a_clear_error(tmp_path, capsys):
    assert main(["invert", str(tmp_path), "--model", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err


def test_convert_official(tmp_path):
    source = make_model("resnet", seed=9)
    hi, we = write_official_files(source, None, tmp_path / "zoo", dataset_type="church_encode")
    source.generator.save_pretrained(tmp_path / "g")
    assert main(["convert-official", str(hi), "--w-encoder", str(we), "--generator", str(tmp_path / "g"),
                 str(tmp_path / "converted")]) == 0
    converted = HyperInverter.from_pretrained(tmp_path / "converted")
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert torch.allclose(converted.invert(x).image, source.invert(x).image, atol=1e-4)


def test_python_dash_m_entry_point():
    out = subprocess.run([sys.executable, "-m", "hyperinverter", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("hyperinverter ")


def test_directions_commands(tmp_path, model_dir, capsys):
    from hyperinverter.editing import load_direction_file

    model = HyperInverter.from_pretrained(model_dir)
    model.generator.save_pretrained(tmp_path / "g")
    assert main(["directions", "sefa", "-g", str(tmp_path / "g"), "--num", "3", "-o", str(tmp_path / "d")]) == 0
    assert main(["directions", "pca", "-g", str(tmp_path / "g"), "--num", "2", "--samples", "2000", "-o",
                 str(tmp_path / "d")]) == 0
    d = load_direction_file(tmp_path / "d" / "sefa00.safetensors", 32, model.num_ws)
    assert d.kind == "sefa" and abs(float(d.vector.norm()) - 1) < 1e-4
    assert (tmp_path / "d" / "ganspace.npz").is_file() and (tmp_path / "d" / "pc01.json").is_file()
    # fit: codes of 12 images whose label is the sign of a hidden direction of w
    codes = tmp_path / "codes"
    codes.mkdir()
    hidden = torch.randn(32)
    rows = ["file,smile"]
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(0)
    for i in range(40):
        w = torch.randn(1, 32, generator=gen)
        save_file({"w": w, "ws": w[:, None].repeat(1, model.num_ws, 1)}, str(codes / f"img{i}.codes.safetensors"))
        rows.append(f"img{i}.png,{int(float(w[0] @ hidden) > 0)}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    assert main(["directions", "fit", "--codes", str(codes), "--labels", str(tmp_path / "labels.csv"),
                 "--attribute", "smile", "-o", str(tmp_path / "d")]) == 0
    fitted = load_direction_file(tmp_path / "d" / "smile.safetensors", 32, model.num_ws)
    assert float(torch.nn.functional.cosine_similarity(fitted.vector, hidden, dim=0)) > 0.6
    assert main(["directions", "fit", "--codes", str(codes), "--labels", str(tmp_path / "labels.csv"),
                 "--attribute", "age"]) == 2
    assert "no column 'age'" in capsys.readouterr().err


def test_data_portraits_command(tmp_path):
    assert main(["data", "portraits", "--count", "3", "--split", "val", "-o", str(tmp_path / "p"), "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "p").glob("*.png")) == ["1000000.png", "1000001.png", "1000002.png"]
    assert (tmp_path / "p" / "labels.csv").read_text().startswith("file,seed,")
    assert main(["data", "portraits", "--count", "0", "-o", str(tmp_path / "q"), "--quiet"]) == 2


def test_data_portraits_sweep_writes_pairs_that_differ_in_one_attribute(tmp_path, capsys):
    import numpy as np

    from hyperinverter.portraits import latent_entry, read_portrait_labels

    out = tmp_path / "s"
    assert main(["data", "portraits", "--count", "2", "--latents", "64", "--start", "3", "--size", "32",
                 "--sweep", "smile=-1.5,1.5", "--sweep-bases", "2", "-o", str(out), "--quiet"]) == 0
    assert "then 2 bases" in capsys.readouterr().out
    z = np.load(out / "latents.npy")
    k = latent_entry("smile", 64)
    assert z.shape == (6, 64) and len(list(out.glob("*.png"))) == 6
    np.testing.assert_array_equal(z[:2], np.random.default_rng(3).standard_normal([2, 64]).astype(np.float32))
    assert list(z[2:, k]) == [-1.5, 1.5, -1.5, 1.5]
    np.testing.assert_array_equal(np.delete(z[2], k), np.delete(z[3], k))  # a pair shares its base
    labels = read_portrait_labels(out)
    smile = ATTRIBUTE_NAMES.index("smile")
    low, high = labels["0000002.png"], labels["0000003.png"]
    assert high[smile] > low[smile] + 0.5
    others = [j for j in range(len(ATTRIBUTE_NAMES)) if j != smile]
    assert np.abs(high[others] - low[others]).max() < 0.05  # only the smile moves (z's length moves the rest a bit)
    for bad in (["--sweep", "smile=1"], ["--sweep", "skin=a,b"], ["--sweep", "hair_r=0,1"], ["--sweep-bases", "3"]):
        extra = [] if "--sweep-bases" in bad else ["--sweep-bases", "2"]
        assert main(["data", "portraits", "--count", "1", "--latents", "64", "-o", str(tmp_path / "bad"),
                     "--quiet", *bad, *extra]) == 2
        assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "bad").exists()


def test_help_does_not_import_torch():
    """``hyperinverter --help`` (and every sub-command's parser) is built without importing torch: the help
    comes back at once instead of after the seconds torch takes to import."""
    import subprocess
    import sys

    code = ("import sys; from hyperinverter.cli import build_parser; p = build_parser(); p.format_help(); "
            "heavy = sorted(m for m in ('torch', 'numpy.linalg', 'safetensors.torch') if m in sys.modules); "
            "print(','.join(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "torch" not in out.stdout.strip().split(","), f"building the parser imported {out.stdout.strip()}"


def _all_parsers(parser, prefix=()):
    import argparse

    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _all_parsers(sub, prefix + (name,))


def test_every_option_explains_itself_and_shows_its_default():
    import argparse

    from hyperinverter.cli import build_parser

    problems = []
    for prefix, parser in _all_parsers(build_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if not action.option_strings or isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                continue
            name = " ".join(prefix) + " " + action.option_strings[0]
            if not action.help:
                problems.append(f"{name}: no help")
                continue
            shown = formatter._get_help_string(action)
            if action.default not in (None, False, argparse.SUPPRESS) and "default" not in shown:
                problems.append(f"{name}: default {action.default!r} not shown")
            if any(mark in action.help for mark in ("``", ":func:", ":class:", ":meth:", ":data:")):
                problems.append(f"{name}: RST markup in help")
    assert not problems, "\n".join(problems)


def test_missing_inputs_are_named_before_any_model_is_loaded(tmp_path, capsys, monkeypatch):
    """``invert``/``edit``/``interpolate`` of a file that does not exist: one line, exit 2, no model loaded."""
    from hyperinverter import workflows
    from hyperinverter.cli import main

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(workflows, "load_model", no_loading)
    missing = str(tmp_path / "nothere.png")
    for argv in (["invert", missing, "-o", str(tmp_path / "o")],
                 ["edit", missing, "--direction", "tilt", "-o", str(tmp_path / "e")],
                 ["interpolate", missing, missing, "-o", str(tmp_path / "i")]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "nothere.png: file not found" in err
    assert not (tmp_path / "o").exists()
