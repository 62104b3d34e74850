"""Refining edit directions on inversions (`editing.refine_direction`, `hyperinverter directions refine`)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_inverter import make_model

from hyperinverter.cli import main
from hyperinverter.editing import Direction, DirectionRefineConfig, edit_change, load_direction_file, refine_direction
from hyperinverter.editing import save_direction
from hyperinverter.evaluation.attributes import AttributeRegressor, save_regressor

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rgb_means(images: torch.Tensor) -> torch.Tensor:
    """A stand-in attribute predictor: column k = mean of colour channel k (differentiable)."""
    return images.mean(dim=(2, 3))


def test_edit_change_by_hand():
    base = torch.tensor([[0.5, 0.5, 0.5]])
    plus = torch.tensor([[0.9, 0.6, 0.5]])
    minus = torch.tensor([[0.1, 0.5, 0.2]])
    change, moved = edit_change(plus, minus, base, target=0)
    assert change.tolist() == pytest.approx([0.4])
    # others: attribute 1 moves 0.1 and 0, attribute 2 moves 0 and 0.3 -> mean of (0.05, 0.15)
    assert moved.tolist() == pytest.approx([0.1])
    change, moved = edit_change(plus[:, :1], minus[:, :1], base[:, :1], target=0)
    assert moved.tolist() == [0.0]


def test_refine_raises_the_target_and_lowers_the_rest():
    model = make_model(seed=3).requires_grad_(False)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        z = torch.randn(24, model.generator.z_dim, generator=gen)
        images = model.generator(z).clamp(-1, 1)
        result = model.invert(images)
    ws = result.ws.clone()
    deltas = {k: v.clone() for k, v in result.deltas.items()}  # dense, ordinary tensors
    render = lambda w, index: model.render(w, {k: v[index] for k, v in deltas.items()})  # noqa: E731
    vector = torch.randn(model.generator.w_dim, generator=gen)
    probe = DirectionRefineConfig(steps=0, batch_size=6, target_change=1.0)  # a goal given: any start is measured
    _, rep = refine_direction(Direction("red", vector), ws, ws[:, 0], render, _rgb_means, target=0, config=probe)
    if rep["start"]["target_change"] < 0:
        vector = -vector
        with pytest.raises(ValueError, match="does not raise its attribute"):  # without a goal, a start that lowers it
            refine_direction(Direction("red", -vector), ws, ws[:, 0], render, _rgb_means, target=0,
                             config=DirectionRefineConfig(steps=0, batch_size=6))
    start = Direction("red", vector, strength=1.0, description={"source": "random"})
    # 1) the start's own target change kept (no goal given), the entanglement lowered
    cfg = DirectionRefineConfig(steps=30, batch_size=6, lr=0.05, eval_every=10, holdout=0.25)
    refined, report = refine_direction(start, ws, ws[:, 0], render, _rgb_means, target=0, config=cfg)
    a, b = report["start"], report["result"]
    assert report["goal"] == pytest.approx(a["target_change"]) and a["loss"] == pytest.approx(a["entanglement"])
    assert b["entanglement"] < 0.9 * a["entanglement"] and b["target_change"] > 0.9 * a["target_change"], \
        report["history"]
    assert report["kept_step"] > 0 and report["held_out"] == 6 and report["inversions"] == 24
    assert refined.name == "red" and refined.description == {"source": "random"}
    assert float(refined.vector.norm()) == pytest.approx(1.0, abs=1e-5)
    assert refined.strength == pytest.approx(2 * float((ws[:, 0] @ refined.vector).std()), rel=1e-4)
    assert report["cosine_to_start"] == pytest.approx(float(refined.vector @ start.vector / start.vector.norm()),
                                                      abs=1e-5)
    # 2) a larger goal: the target change rises towards it
    goal = min(1.0, 2 * a["target_change"])
    _, more = refine_direction(start, ws, ws[:, 0], render, _rgb_means, target=0,
                               config=DirectionRefineConfig(**{**vars(cfg), "target_change": goal}))
    assert more["result"]["target_change"] > 1.2 * a["target_change"], more["history"]
    # the start is kept when no step beats it: zero steps return it, renormalised, with its measurement
    same, rep0 = refine_direction(start, ws, ws[:, 0], render, _rgb_means, target=0,
                                  config=DirectionRefineConfig(steps=0, batch_size=6))
    assert rep0["kept_step"] == 0 and torch.allclose(same.vector, start.vector / start.vector.norm())
    for bad, message in (({"holdout": 1.0}, "holdout must be in"), ({"target_change": 0.0}, "target_change must")):
        with pytest.raises(ValueError, match=message):
            DirectionRefineConfig(**bad).check()
    with pytest.raises(ValueError, match="only a \\[w_dim\\] direction"):
        refine_direction(Direction("x", start.vector, layers=(0, 2)), ws, ws[:, 0], render, _rgb_means, 0)


def test_directions_refine_command(tmp_path, capsys):
    model_dir = tmp_path / "model"
    model = make_model(seed=3)
    model.save_pretrained(model_dir)
    torch.manual_seed(1)
    regressor = tmp_path / "regressor"
    save_regressor(AttributeRegressor(attributes=["smile", "yaw", "glasses"], input_size=32, widths=[8, 8]), regressor)
    w_dim = model.generator.w_dim
    start = Direction("smile", torch.randn(w_dim), strength=1.5, description={"source": "test"})
    save_direction(start, model_dir / "directions")
    save_direction(Direction("tilt", torch.randn(w_dim)), model_dir / "directions")
    before = (model_dir / "directions" / "smile.safetensors").read_bytes()
    out = tmp_path / "refined"
    args = ["directions", "refine", "--model", str(model_dir), "--regressor", str(regressor), "--attributes", "smile",
            "--count", "8", "--steps", "2", "--batch-size", "4", "--device", "cpu", "-o", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "smile: held-out target change" in printed
    refined = load_direction_file(out / "smile.safetensors", w_dim, model.num_ws)
    meta = json.loads((out / "smile.json").read_text())
    assert meta["description"]["refined"]["inversions"] == 8 and "training-split portraits" in meta["source"]
    assert float(refined.vector.norm()) == pytest.approx(1.0, abs=1e-5)
    # --strength-sigmas scales the default strength (no steps: the start's direction, measured on the same codes)
    for sigmas, folder in ((None, "s2"), ("4", "s4")):
        extra = ["--steps", "0"] + (["--strength-sigmas", sigmas] if sigmas else [])
        assert main(args[:-1] + [str(tmp_path / folder)] + extra) == 0
    s2, s4 = (json.loads((tmp_path / f / "smile.json").read_text())["strength"] for f in ("s2", "s4"))
    assert s4 == pytest.approx(2 * s2, rel=1e-5) and s2 > 0
    # --entangled: only those attributes' movement is entanglement (the edited one is left out of it)
    assert main(args[:-1] + [str(tmp_path / "e1"), "--steps", "0", "--entangled", "smile", "yaw"]) == 0
    e1, e2 = (json.loads((tmp_path / f / "smile.json").read_text())["description"]["refined"] for f in ("e1", "s2"))
    assert e1["entangled"] == ["yaw"] and e2["entangled"] == ["yaw", "glasses"]
    assert e1["start"]["target_change"] == pytest.approx(e2["start"]["target_change"], rel=1e-5)
    assert e1["start"]["entanglement"] != pytest.approx(e2["start"]["entanglement"], rel=1e-3)
    capsys.readouterr()
    assert main(args[:-1] + [str(tmp_path / "e_bad"), "--entangled", "nose"]) == 2
    err = capsys.readouterr().err
    assert "does not predict ['nose']" in err and len(err.strip().splitlines()) == 1, err
    capsys.readouterr()
    assert main(args[:-1] + [str(tmp_path / "s_bad"), "--strength-sigmas", "-1"]) == 2
    err = capsys.readouterr().err
    assert "strength_sigmas must be > 0" in err and len(err.strip().splitlines()) == 1, err
    # never over its start files (even with --overwrite), never over earlier outputs without --overwrite
    for extra, message in ((["-o", str(model_dir / "directions"), "--overwrite"], "input"), ([], "exist already")):
        capsys.readouterr()
        assert main(args[:-2] + (extra or ["-o", str(out)])) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert (model_dir / "directions" / "smile.safetensors").read_bytes() == before
    # an attribute the regressor does not read, a missing start, a missing regressor: one line each
    bad = [(["--attributes", "tilt"], "does not predict"),
           (["--regressor", str(tmp_path / "none")], "none")]
    for change, message in bad:
        capsys.readouterr()
        a = list(args)
        a[a.index(change[0]) + 1] = change[1]
        assert main(a[:-1] + [str(tmp_path / "other")]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    capsys.readouterr()
    assert main(args[:-1] + [str(tmp_path / "third"), "--directions", str(tmp_path)]) == 2
    assert "no direction ['smile']" in capsys.readouterr().err
    # --images: the user's own training images; an unreadable one is named in one line
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(6):
        pixels = np.random.default_rng(i).integers(0, 256, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
    assert main(args[:-1] + [str(tmp_path / "own"), "--images", str(folder)]) == 0
    assert "images of" in json.loads((tmp_path / "own" / "smile.json").read_text())["source"]
    (folder / "broken.png").write_bytes(b"not a png")
    capsys.readouterr()
    assert main(args[:-1] + [str(tmp_path / "own2"), "--images", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and len(err.strip().splitlines()) == 1, err
