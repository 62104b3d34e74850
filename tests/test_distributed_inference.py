"""``torchrun`` inversion and evaluation on CPU (gloo): the same bytes as one process, each output written once,
resume that writes only what is missing, one progress bar and one summary for all processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_inverter import make_model

from hyperinverter.cli import main
from hyperinverter.utils.distributed import Group

pytestmark = pytest.mark.usefixtures("one_torch_thread")
COUNT = 9  # good images; with one broken file, batches of 2 give 5 batches over 2 processes (uneven shares)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    make_model(seed=6).save_pretrained(root / "model")
    images = root / "in"
    images.mkdir()
    rng = np.random.default_rng(3)
    for i in range(COUNT):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(images / f"img{i}.png")
    (images / "img2b.png").write_text("not an image")  # in batch 1: process 1 finds it, process 0 reports it
    return root


def _torchrun(*args: str, nproc: int = 2, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    # torch.distributed.run is the torchrun command; --standalone picks a free port on this machine
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "hyperinverter", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def _stamps(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in folder.iterdir() if p.is_file()}


def test_group_rounds_share_items_in_lock_step():
    items = list(range(5))
    shares = [list(Group(rank=r, world_size=2).rounds(items)) for r in range(2)]
    assert shares == [[0, 2, 4], [1, 3, None]]  # the same number of rounds on every process
    assert list(Group().rounds(items)) == items and list(Group(rank=2, world_size=3).rounds([7])) == [None]


def test_two_processes_write_the_bytes_of_one_and_resume_writes_only_what_is_missing(setup, tmp_path):
    model, images = str(setup / "model"), str(setup / "in")
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["invert", images, "--model", model, "-o", str(one), "--batch-size", "2", "--device", "cpu",
                 "--quiet"]) == 1  # the broken file
    run = _torchrun("invert", images, "--model", model, "-o", str(two), "--batch-size", "2", "--device", "cpu")
    log = run.stdout + run.stderr
    assert run.returncode == 1, log[-3000:]  # process 0's status: a file was skipped
    reference = _files(one)
    assert len(reference) == 3 * COUNT and _files(two) == reference  # byte for byte, nothing else written
    assert log.count("wrote 9 inversions") == 1 and "by 2 processes" in log  # one summary ...
    assert log.count("skipped: ") == 1 and "img2b.png" in log  # ... naming the bad file once
    assert log.count("| 0/10") == 1  # one progress bar (process 0's), over every input
    assert log.count("model: ") == 1

    again = _torchrun("invert", images, "--model", model, "-o", str(two), "--batch-size", "2", "--device", "cpu")
    assert again.returncode != 0 and (again.stdout + again.stderr).count("exist already") == 1
    assert _files(two) == reference  # refused before any write

    # an interrupted run: some outputs missing, a temporary file left by a killed write
    (two / "img1.png").unlink()  # one file of an input
    for name in ("img6.png", "img6_w.png", "img6.codes.safetensors"):  # every file of another
        (two / name).unlink()
    (two / "img8_w.png").unlink()  # the last, half-full batch
    (two / ".img3.png.a1b2c3d4.tmp").write_bytes(b"partial")
    before = _stamps(two)
    resumed = _torchrun("invert", images, "--model", model, "-o", str(two), "--batch-size", "2", "--device", "cpu",
                        "--resume", "--quiet")
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 1, log[-3000:]
    assert "wrote 3 inversions" in log and "6 already done" in log
    assert _files(two) == reference  # the missing files come back with the same bytes, the temporary is gone
    after = _stamps(two)
    rewritten = sorted(n for n in after if before.get(n) != after[n])
    assert rewritten == ["img1.png", "img6.codes.safetensors", "img6.png", "img6_w.png", "img8_w.png"]


def test_two_process_evaluate_gives_the_numbers_of_one_and_writes_once(setup, tmp_path):
    model, data = str(setup / "model"), str(setup / "in")
    args = ["evaluate", "--model", model, "--data", data, "--methods", "w_encoder,hyperinverter", "--batch-size",
            "2", "--device", "cpu", "--quiet"]
    assert main([*args, "-o", str(tmp_path / "one")]) == 0
    run = _torchrun(*args, "-o", str(tmp_path / "two"))
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-3000:]
    assert log.count("| HyperInverter |") == 1 and log.count("skipped: ") == 1
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert two["meta"]["processes"] == 2 and two["meta"]["files"] == one["meta"]["files"]
    for a, b in zip(one["methods"], two["methods"], strict=True):
        assert a["metrics"] == b["metrics"] and a["metric_std"] == b["metric_std"] and a["num_images"] == 9
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    assert (tmp_path / "two" / "examples.png").read_bytes() == (tmp_path / "one" / "examples.png").read_bytes()
