"""Nothing lost (issue 15, items 1-4, 10, 12): outputs never overwrite inputs or each other, existing outputs
need --overwrite, runs are never clobbered, a failing disk keeps the last good checkpoint."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hyperinverter.cli import main
from hyperinverter.utils.image_io import iter_image_paths
from hyperinverter.utils.outputs import (OutputConflictError, OutputError, OutputExistsError, OutputPlan,
                                         atomic_write, check_writable, clean_stale_temporaries,
                                         unique_output_names)
from hyperinverter.workflows import INVERT_OUTPUTS


def _png(path: Path, seed: int = 0, size: int = 32) -> Path:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return path


def _tree(path: Path) -> dict:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------------- naming
def test_derived_names_never_collide():
    names = unique_output_names([Path("x.png"), Path("x_w.png")], INVERT_OUTPUTS)
    files = [p.format(n) for n in names for p in INVERT_OUTPUTS]
    assert len(set(files)) == len(files) and names[0] == "x"
    names = unique_output_names([Path("d1/a.jpg"), Path("d2/a.png"), Path("a_1.png")], INVERT_OUTPUTS)
    assert len(set(names)) == 3 and names[0] == "a" and names[2] == "a_1"  # a_1.png keeps its own name
    names = unique_output_names([Path("A.png"), Path("a.png")], INVERT_OUTPUTS)  # case-insensitive file systems
    assert names[0].lower() != names[1].lower()


def test_plan_refuses_inputs_duplicates_and_existing(tmp_path):
    src = _png(tmp_path / "in.png")
    plan = OutputPlan(inputs=[src], overwrite=True)
    plan.add(tmp_path / "in.png")
    with pytest.raises(OutputConflictError, match="refusing to overwrite inputs"):
        plan.check()  # even with overwrite
    link = tmp_path / "link.png"
    os.link(src, link)  # a hard link to the input is the input
    plan = OutputPlan(inputs=[src], overwrite=True)
    plan.add(link)
    with pytest.raises(OutputConflictError, match="the input"):
        plan.check()
    plan = OutputPlan()
    plan.add(tmp_path / "o.png", "--strength 1")
    with pytest.raises(OutputConflictError, match="two outputs"):
        plan.add(tmp_path / "o.png", "--strength 1.0")
    existing = _png(tmp_path / "old.png")
    plan = OutputPlan()
    plan.add(existing)
    with pytest.raises(OutputExistsError, match=r"old\.png.*--overwrite") as err:
        plan.check()
    assert err.value.paths == [existing]
    p = OutputPlan(overwrite=True)
    p.add(existing)
    p.check()  # allowed with overwrite


def test_atomic_write_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "f.bin"
    target.write_bytes(b"old")

    def fail(tmp):
        Path(tmp).write_bytes(b"half")
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    with pytest.raises(RuntimeError):
        atomic_write(target, fail)
    assert target.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["f.bin"]
    atomic_write(target, lambda tmp: Path(tmp).write_bytes(b"new"))
    assert target.read_bytes() == b"new" and sorted(os.listdir(tmp_path)) == ["f.bin"]


def test_stale_temporaries_are_cleaned_but_nothing_else(tmp_path):
    stale = tmp_path / "checkpoints" / ".latest.pt.k2j3_x9a.tmp"
    stale.parent.mkdir()
    stale.write_bytes(b"0" * 1000)
    keep = [tmp_path / "checkpoints" / "latest.pt", tmp_path / "notes.tmp", tmp_path / ".hidden"]
    for k in keep:
        k.write_bytes(b"x")
    assert clean_stale_temporaries(tmp_path, recursive=True) == [stale]
    assert not stale.exists() and all(k.exists() for k in keep)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_check_writable_names_the_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(OutputError, match="ro: cannot write outputs there"):
            check_writable(ro)
    finally:
        ro.chmod(0o700)


def test_check_writable_refuses_a_file(tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(OutputError, match="sub: cannot write outputs there"):
        check_writable(f / "sub")  # a folder under a file cannot be made
    with pytest.raises(OutputError, match="is a file, not a folder"):
        check_writable(f)


# ---------------------------------------------------------------------------------------- folder entries
def test_folder_listing_names_what_it_skips(tmp_path):
    _png(tmp_path / "a.png")
    (tmp_path / "sub.png").mkdir()
    os.mkfifo(tmp_path / "fifo.png")
    (tmp_path / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    (tmp_path / "labels.json").write_text("{}")
    skipped = {}
    paths = iter_image_paths(tmp_path, skipped=lambda p, why: skipped.__setitem__(p.name, why))
    assert [p.name for p in paths] == ["a.png"]
    assert "sub-folder" in skipped["sub.png"] and "FIFO" in skipped["fifo.png"]
    assert "dangling" in skipped["dangling.png"] and "loop" in skipped["loop.png"]
    assert "1 file(s) without an image extension" in skipped[tmp_path.name]


# --------------------------------------------------------------------------------------------- commands
@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "photos"
    for i, name in enumerate(["x.png", "x_w.png", "a.jpg", "a.png", "a_1.png"]):
        _png(folder / name, seed=i)
    return folder


def test_invert_into_its_input_folder_is_refused_and_changes_nothing(photos, capsys):
    before = _tree(photos)
    assert main(["invert", str(photos), "-o", str(photos), "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "refusing to overwrite inputs" in err and "x.png" in err
    assert _tree(photos) == before


def test_invert_writes_one_file_per_output_and_refuses_to_replace(photos, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["invert", str(photos), "-o", str(out), "--device", "cpu", "--quiet"]) == 0
    assert "wrote 5 inversions" in capsys.readouterr().out
    written = _tree(out)
    assert len(written) == 15  # 5 inputs x (png, _w.png, codes): nothing overwritten
    # again: refused before any work, naming the files, exit non-zero, nothing changed
    (out / "x.png").write_bytes(b"mine")
    assert main(["invert", str(photos), "-o", str(out), "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "15 output file(s) exist already" in err and "--overwrite" in err and "out/a.png" in err
    assert (out / "x.png").read_bytes() == b"mine"
    assert main(["invert", str(photos), "-o", str(out), "--device", "cpu", "--quiet", "--overwrite"]) == 0
    assert (out / "x.png").read_bytes() == written["x.png"]


def test_edit_and_interpolate_refuse_clobbering(tmp_path, capsys):
    img = _png(tmp_path / "p.png")
    out = tmp_path / "e"
    # strengths 1 and 1.0 would write the same file
    assert main(["edit", str(img), "--direction", "glasses", "--strength", "1", "1.0", "-o", str(out),
                 "--device", "cpu"]) == 2
    assert "two outputs would be written" in capsys.readouterr().err and not out.exists()
    assert main(["edit", str(img), "--direction", "glasses", "--strength", "nan", "-o", str(out),
                 "--device", "cpu"]) == 2
    assert "finite" in capsys.readouterr().err and not out.exists()
    # an output named like the input in the output folder: the input is refused as a target
    assert main(["interpolate", str(img), str(img), "--steps", "2", "-o", str(tmp_path / "i"), "--device",
                 "cpu"]) == 0
    assert main(["interpolate", str(img), str(img), "--steps", "2", "-o", str(tmp_path / "i"), "--device",
                 "cpu"]) == 2
    assert "exist already" in capsys.readouterr().err
    frame = tmp_path / "i" / "frame_000.png"
    assert main(["interpolate", str(frame), str(img), "--steps", "2", "-o", str(tmp_path / "i"), "--device",
                 "cpu", "--overwrite"]) == 2
    assert "refusing to overwrite inputs" in capsys.readouterr().err


def test_generate_and_convert_refuse_existing_outputs(tmp_path, capsys):
    grid = tmp_path / "grid.png"
    grid.write_bytes(b"keep")
    assert main(["generate", "--model", "portraits64", "--seeds", "0", "-o", str(grid), "--device", "cpu"]) == 2
    assert "exist already" in capsys.readouterr().err and grid.read_bytes() == b"keep"
    assert main(["generate", "--model", "portraits64", "--seeds", "0", "--batch-size", "0", "-o",
                 str(tmp_path / "g2.png"), "--device", "cpu"]) == 2
    assert "--batch-size must be a positive" in capsys.readouterr().err
    g = tmp_path / "g"
    from hyperinverter import Generator

    Generator(img_resolution=16, z_dim=8, w_dim=8, channel_base=64, channel_max=8, mapping_layers=1).save_pretrained(g)
    assert main(["convert", str(g), str(g)]) == 2  # in place: the input itself
    assert "refusing to overwrite inputs" in capsys.readouterr().err
    assert main(["convert", str(g), str(tmp_path / "c")]) == 0
    assert main(["convert", str(g), str(tmp_path / "c")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["convert", str(g), str(tmp_path / "c"), "--overwrite", "--fp16"]) == 0


def test_invert_into_an_unwritable_folder_fails_before_the_work(photos, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")  # a folder cannot be made under a file (unwritable for root too)
    assert main(["invert", str(photos), "-o", str(blocker / "out"), "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr()
    assert "cannot write outputs there" in err.err and "model:" not in err.out  # before loading the model
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            assert main(["invert", str(photos), "-o", str(ro / "out"), "--device", "cpu", "--quiet"]) == 2
        finally:
            ro.chmod(0o700)
        assert "cannot write outputs there" in capsys.readouterr().err


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(tmp_path, capsys, monkeypatch):
    import hyperinverter.cli as cli

    def boom(args):
        raise KeyError("a key nobody expected")

    monkeypatch.setattr(cli, "cmd_info", boom)
    assert main(["info", "x"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "KeyError" in err and "--debug" in err
    assert main(["info", "x", "--debug"]) == 1
    assert "Traceback" in capsys.readouterr().err

    def unreadable(args):
        raise PermissionError(13, "Permission denied", str(tmp_path / "secret.pt"))

    monkeypatch.setattr(cli, "cmd_info", unreadable)
    assert main(["info", "x"]) == 1
    assert f"{tmp_path / 'secret.pt'}: Permission denied" in capsys.readouterr().err
