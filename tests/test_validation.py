"""Bad inputs get one clear line (issue 15, items 9-11): model.invert/edit arguments, our text instead of
torch's weights_only=False advice."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hyperinverter import CheckpointError, HyperInverter
from hyperinverter.cli import main
from hyperinverter.stylegan2.formats import load_generator
from hyperinverter.utils.safe_load import load_error_reason, weights_only_load


@pytest.fixture(scope="module")
def model():
    return HyperInverter.from_pretrained("portraits64")


@pytest.fixture(scope="module")
def inverted(model):
    torch.manual_seed(0)
    return model.invert(torch.rand(2, 3, 64, 64) * 2 - 1)


@pytest.mark.parametrize("bad, message", [
    (lambda x: (x + 1) * 127.5, r"in \[-1, 1\], got values in \[.*255\] \(looks like 0..255"),
    (lambda x: x * 1e30, r"in \[-1, 1\]"),
    (lambda x: ((x + 1) * 127.5).to(torch.uint8), "floating point.*uint8"),
    (lambda x: x.to(torch.int64), "floating point.*int64"),
    (lambda x: x[:0], "must not be empty"),
    (lambda x: x.tolist(), "must be a torch.Tensor"),
    (lambda x: x[:, :1], r"shape \[B, 3, H, W\]"),
    (lambda x: x.masked_fill(torch.zeros_like(x, dtype=torch.bool).index_fill_(3, torch.tensor([0]), True),
                             float("nan")), "NaN"),
])
def test_invert_refuses_bad_images_in_one_line(model, bad, message):
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with pytest.raises(ValueError, match=message) as err:
        model.invert(bad(x))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_invert_reads_other_float_types(model, dtype):
    torch.manual_seed(1)
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    r = model.invert(x.to(dtype))
    assert r.image.dtype == torch.float32 and torch.isfinite(r.image).all()


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, True, "8"])
def test_invert_refuses_bad_batch_sizes(model, batch_size):
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        model.invert(torch.zeros(1, 3, 64, 64), batch_size=batch_size)


@pytest.mark.parametrize("strength", [float("nan"), float("inf"), -float("inf"), "3", None])
def test_edit_refuses_non_finite_strengths(model, inverted, strength):
    with pytest.raises(ValueError, match="strength must be a finite number"):
        model.edit(inverted, torch.ones(model.generator.w_dim), strength=strength)


def test_edit_refuses_a_huge_direction_instead_of_a_black_image(model, inverted):
    with pytest.raises(ValueError, match="far outside the latent space"):
        model.edit(inverted, torch.full((model.generator.w_dim,), 1e38), strength=1.0)
    with pytest.raises(ValueError, match="far outside the latent space"):  # finite alone, infinite once scaled
        model.edit(inverted, torch.full((model.generator.w_dim,), 3e38), strength=3.0)
    e = model.edit(inverted, torch.ones(model.generator.w_dim) * 0.1, strength=torch.tensor(2.0))
    assert torch.isfinite(e.image).all()


def test_edit_command_refuses_nan_strength_and_a_huge_direction(tmp_path, capsys):
    img = tmp_path / "p.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(img)
    for s in ("nan", "inf", "-inf"):
        assert main(["edit", str(img), "--direction", "glasses", f"--strength={s}", "-o", str(tmp_path / "o"),
                     "--device", "cpu"]) == 2
        assert "--strength must be finite" in capsys.readouterr().err
    huge = tmp_path / "huge.npy"
    from hyperinverter.pretrained import DEFAULT_MODEL  # what `edit` uses without --model

    w_dim = HyperInverter.read_config(DEFAULT_MODEL).generator.w_dim
    np.save(huge, np.full((1, w_dim), 1e38, np.float32))
    assert main(["edit", str(img), "--direction", str(huge), "--strength", "1", "-o", str(tmp_path / "o"),
                 "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "far outside the latent space" in err and err.count("\n") == 1
    assert not list((tmp_path / "o").glob("*_+1.png"))  # no black image written


# ------------------------------------------------------------------------------- torch's advice replaced
def _zip_pt_with_pickle(path: Path, data_pkl: bytes) -> Path:
    buf = io.BytesIO()
    torch.save({"a": torch.zeros(2)}, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    with zipfile.ZipFile(path, "w") as out:
        for name in src.namelist():
            out.writestr(name, data_pkl if name.endswith("data.pkl") else src.read(name))
    return path


def test_refused_torch_files_never_suggest_weights_only_false(tmp_path):
    # a persistent id that is not a storage: torch's message says to re-run with weights_only=False
    odd = _zip_pt_with_pickle(tmp_path / "blob.pt", b"\x80\x02(X\x04\x00\x00\x00blobq\x00X\x01\x00\x00\x000tQ.")
    with pytest.raises(Exception) as raw:
        torch.load(odd, weights_only=True)
    assert "weights_only" in str(raw.value)  # what torch itself says (the reason this test exists)
    for load in (lambda p: load_generator(p), lambda p: weights_only_load(p)):
        with pytest.raises(CheckpointError) as err:
            load(odd)
        text = str(err.value)
        assert "weights_only" not in text and "trusted source" not in text and "\n" not in text
        assert str(odd) in text and "persistent_load" in text
    evil = tmp_path / "evil.pt"
    torch.save({"a": 1}, evil)
    payload = pickle.dumps(print, protocol=2)  # a global outside the allow-list
    _zip_pt_with_pickle(evil, payload)
    with pytest.raises(CheckpointError, match="asks for the global '(builtins.)?print'") as err:
        load_generator(evil)
    assert "weights_only" not in str(err.value)
    assert "weights_only" not in load_error_reason(raw.value)


# ----------------------------------------------------------------------------------- config.json in one line
@pytest.mark.parametrize("text, message", [
    ('{"class": "HyperInverter", "config": null}', "'config' entry must be an object, got NoneType"),
    ('{"class": "HyperInverter", "config": [1]}', "'config' entry must be an object, got list"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
])
def test_malformed_config_json_is_one_line(tmp_path, text, message, capsys):
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(text)
    with pytest.raises(CheckpointError, match=message):
        HyperInverter.read_config(folder)
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "x.png")  # a real input: the model's error is the one to see
    assert main(["invert", str(tmp_path / "x.png"), "--model", str(folder), "-o", str(tmp_path / "o"),
                 "--device", "cpu", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config.json" in err
