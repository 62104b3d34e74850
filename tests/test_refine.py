"""``refine``: HyperInverter's answer, then per-image tuning of the generator weights with ``w`` fixed."""

from __future__ import annotations

import pytest
import torch
from test_inverter import make_model

import hyperinverter as hi
from hyperinverter.losses import LPIPS
from hyperinverter.tuning import RefineConfig, locality_codes, refine_with_history

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model():
    return make_model(seed=5)


@pytest.fixture(scope="module")
def images():
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1


def _mse(a, b) -> float:
    return float((a - b).square().mean())


def test_refine_lowers_the_error_keeps_w_and_the_model(model, images):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    start = model.invert(images)
    out = hi.refine(model, images, start, steps=15, lr=3e-3)
    assert torch.equal(out.w, start.w) and torch.equal(out.ws, start.ws)  # edits stay in W
    assert set(out.deltas) == set(start.deltas)  # the hypernetworks' target layers, tuned from Δθ
    assert _mse(out.image, images) < 0.8 * _mse(start.image, images)
    # the codes reproduce the refined image; the model itself is unchanged (weights, flags, mode)
    assert torch.allclose(model.render(out.ws, out.deltas), out.image, atol=1e-5)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(p.requires_grad for p in model.generator.parameters())
    # an edit of the refined result moves w and keeps the tuned weights
    direction = torch.randn(model.generator.w_dim, generator=torch.Generator().manual_seed(1))
    edited = model.edit(out, direction, strength=1.0)
    assert torch.allclose(edited.ws, out.ws + direction, atol=1e-5)
    assert torch.allclose(edited.deltas[next(iter(out.deltas))], out.deltas[next(iter(out.deltas))])


def test_refine_starts_where_hyperinverter_ends(model, images):
    """The first loss of the history is HyperInverter's own error: tuning starts from w and θ + Δθ, not θ."""
    start = model.invert(images)
    _, history = refine_with_history(model, images, start, RefineConfig(steps=3, lr=1e-3))
    assert history[0] == pytest.approx(float((start.image - images).square().mean()), rel=1e-4)
    assert len(history) == 4 and history[-1] < history[0]
    # computed here when no result is given
    again, _ = refine_with_history(model, images, None, RefineConfig(steps=3, lr=1e-3))
    torch.testing.assert_close(again.image, refine_with_history(model, images, start,
                                                                RefineConfig(steps=3, lr=1e-3))[0].image)


def test_refine_all_parameters_and_lpips(model, images):
    out = hi.refine(model, images[:1], steps=2, lr=1e-3, parameters="all", lpips=LPIPS("alex"))
    names = {n for n, _ in model.generator.synthesis.named_parameters()}
    assert set(out.deltas) == names and len(names) > len(model.targets)


def test_locality_keeps_the_generator_near_its_start_elsewhere(model, images):
    """PTI's locality regulariser: at codes 30 away from the pivot, the refined generator with the
    regulariser draws closer to the starting one than without it."""
    start = model.invert(images)
    w_r = locality_codes(model, start.ws, torch.Generator().manual_seed(7))
    assert torch.allclose((w_r - start.ws).norm(dim=-1), torch.full(w_r.shape[:2], 30.0), rtol=1e-4)
    anchor = model.render(w_r, start.deltas)
    drift = {}
    for weight in (0.0, 20.0):
        out = hi.refine(model, images, start, steps=20, lr=3e-3, locality=weight)
        drift[weight] = _mse(model.render(w_r, out.deltas), anchor)
    assert drift[20.0] < 0.5 * drift[0.0]


def test_refine_checks(model, images):
    with pytest.raises(ValueError, match="steps"):
        RefineConfig(steps=0)
    with pytest.raises(ValueError, match="lr"):
        RefineConfig(lr=float("nan"))
    with pytest.raises(ValueError, match="parameters"):
        RefineConfig(parameters="mapping")
    with pytest.raises(ValueError, match="locality"):
        RefineConfig(locality=-1)
    with pytest.raises(ValueError, match="resolution 32"):
        hi.refine(model, torch.zeros(1, 3, 64, 64), steps=1)
    with pytest.raises(ValueError, match="2 inversions for 1 images"):
        hi.refine(model, images[:1], model.invert(images), steps=1)


# ------------------------------------------------------------------------------------------- command line
@pytest.fixture(scope="module")
def cli_setup(tmp_path_factory, model, images):
    from PIL import Image

    root = tmp_path_factory.mktemp("refine_cli")
    model.save_pretrained(root / "model")
    photos = root / "photos"
    photos.mkdir()
    for i, x in enumerate(images):
        arr = ((x.permute(1, 2, 0).numpy() + 1) * 127.5).clip(0, 255).round().astype("uint8")
        Image.fromarray(arr).save(photos / f"p{i}.png")
    direction = root / "d.npy"
    import numpy as np

    np.save(direction, np.random.default_rng(0).standard_normal(model.generator.w_dim).astype("float32"))
    return root, photos, direction


def _png_error(path, target) -> float:
    import numpy as np
    from PIL import Image

    a = np.asarray(Image.open(path), dtype=np.float32)
    b = np.asarray(Image.open(target), dtype=np.float32)
    return float(((a - b) ** 2).mean())


def test_invert_and_edit_refine_on_the_command_line(cli_setup, capsys):
    from hyperinverter.cli import main
    from hyperinverter.workflows import load_codes

    root, photos, direction = cli_setup
    common = ["--model", str(root / "model"), "--device", "cpu", "--quiet"]
    assert main(["invert", str(photos), "-o", str(root / "plain"), *common]) == 0
    assert main(["invert", str(photos), "-o", str(root / "refined"), "--refine", "15", *common]) == 0
    for i in range(2):  # the refined reconstruction is closer to its photo
        target = photos / f"p{i}.png"
        assert _png_error(root / "refined" / f"p{i}.png", target) < _png_error(root / "plain" / f"p{i}.png", target)
    codes = load_codes(root / "refined" / "p0.codes.safetensors")  # half codes: self-contained
    assert codes.w.shape[-1] == 32
    capsys.readouterr()
    # compact codes cannot hold refined weights: refused before any work, in one line
    assert main(["invert", str(photos), "-o", str(root / "bad"), "--refine", "2", "--codes", "compact",
                 *common]) == 2
    assert "--codes half" in capsys.readouterr().err and not (root / "bad").exists()
    # edit --refine: the strip says so, and a codes file cannot be refined again
    assert main(["edit", str(photos / "p0.png"), "--direction", str(direction), "--refine", "3",
                 "-o", str(root / "edit"), *common[:-1]]) == 0
    assert "HyperInverter + refine 3" in capsys.readouterr().out
    assert main(["edit", str(root / "plain" / "p0.codes.safetensors"), "--direction", str(direction),
                 "--refine", "3", "-o", str(root / "edit2"), *common[:-1]]) == 2
    assert "codes file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["invert", str(photos), "--refine", "-1", *common])


def test_refinement_is_monotone_in_n_on_the_demo_model():
    """On the shipped portraits64 and held-out test portraits, more refine steps give a lower error:
    HyperInverter (N = 0) > N = 5 > N = 20 > N = 60, and w never moves."""
    from hyperinverter import HyperInverter
    from hyperinverter.portraits import render_seed, split_seeds
    from hyperinverter.utils.image_io import pil_to_tensor

    model = HyperInverter.from_pretrained("portraits64")
    seeds = list(split_seeds("test", 4))
    x = torch.stack([pil_to_tensor(render_seed(s, 64)[0]) for s in seeds])
    start = model.invert(x)
    errors = [_mse(start.image, x)]
    for steps in (5, 20, 60):
        out = hi.refine(model, x, start, steps=steps, lr=1e-3)
        assert torch.equal(out.w, start.w)
        errors.append(_mse(out.image, x))
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 0.8 * errors[0], errors
