"""Streaming inversion (``invert_iter``), the codes formats (full / half / compact) and loading them back,
and flat memory over many images (peak RSS of a subprocess at N and 4N images)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from test_inverter import make_model

from hyperinverter import InversionResult
from hyperinverter.cli import main
from hyperinverter.errors import HyperInverterError
from hyperinverter.workflows import invert_files, load_codes, save_codes

pytestmark = pytest.mark.usefixtures("one_torch_thread")
BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def model():
    return make_model(seed=3)


@pytest.fixture(scope="module")
def images():
    return torch.rand(7, 3, 32, 32, generator=torch.Generator().manual_seed(5)) * 2 - 1


def _dense(result: InversionResult) -> dict:
    return {k: result.deltas[k] for k in result.deltas}


# ------------------------------------------------------------------------------------------ invert_iter
def test_invert_iter_chunks_equal_invert(model, images):
    whole = model.invert(images, batch_size=3)
    chunks = list(model.invert_iter(images, batch_size=3))
    assert [len(c) for c in chunks] == [3, 3, 1]
    joined = InversionResult.cat(chunks)
    for name in ("w", "ws", "image", "image_w"):
        assert torch.equal(getattr(joined, name), getattr(whole, name)), name
    assert all(torch.equal(joined.deltas[k], whole.deltas[k]) for k in whole.deltas)
    assert set(whole.layer_codes) == {t.name for t in model.targets}
    assert whole.layer_codes[model.targets[0].name].shape == (7, model.config.hidden_dim)


def test_invert_iter_takes_an_iterable_of_batches_lazily(model, images):
    seen = []

    def batches():
        for part in (images[:5], images[5:]):
            seen.append(len(part))
            yield part

    stream = model.invert_iter(batches(), batch_size=2)
    assert seen == []  # nothing is read before the first chunk is asked for
    first = next(stream)
    assert seen == [5] and len(first) == 2
    rest = list(stream)
    assert [len(r) for r in rest] == [2, 1, 2]
    # other chunk boundaries than invert's ([2, 2, 2, 1]): equal to float rounding
    torch.testing.assert_close(InversionResult.cat([first, *rest]).image, model.invert(images, batch_size=2).image,
                               rtol=1e-5, atol=1e-5)


def test_invert_iter_checks_arguments_and_batches(model, images):
    with pytest.raises(ValueError, match="batch_size"):
        model.invert_iter(images, batch_size=0)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        model.invert_iter(images * 200)  # a tensor is checked at the call
    stream = model.invert_iter(iter([images[:2], images[:2] * 200]), batch_size=4)
    assert len(next(stream)) == 2
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):  # a bad batch when it is reached
        next(stream)
    with pytest.raises(ValueError, match="iterable"):
        model.invert_iter(3)


def test_results_of_several_chunks_can_be_saved(model, images):
    """Regression: invert() over several chunks kept the regressors' parameters in its residuals, and
    reading a dense Δθ outside inference mode raised 'Inference tensors cannot be saved for backward'."""
    result = model.invert(images, batch_size=2)
    codes = result[5].codes("full")
    assert codes["ws"].shape[0] == 1 and any(k.startswith("delta.") for k in codes)


# ------------------------------------------------------------------------------------------ formats
def _nbytes(codes: dict) -> int:
    return sum(v.numel() * v.element_size() for v in codes.values())


def test_codes_formats_sizes_and_round_trips(model, images):
    r = model.invert(images[:2])
    full, half, compact = (r[1].codes(f) for f in ("full", "half", "compact"))
    assert all(v.dtype == torch.float16 for k, v in half.items() if k.startswith("delta."))
    assert _nbytes(half) < 0.6 * _nbytes(full)
    assert _nbytes(compact) < 0.5 * _nbytes(half)
    assert set(compact) == {"w", "ws"} | {f"code.{t.name}" for t in model.targets}

    back = InversionResult.from_codes(full)
    assert all(torch.equal(back.deltas[k], r[1].deltas[k]) for k in r.deltas)
    back_half = InversionResult.from_codes(half)
    for k in r.deltas:
        ref = r[1].deltas[k]
        assert back_half.deltas[k].dtype == torch.float32
        assert torch.allclose(back_half.deltas[k], ref, rtol=2e-3, atol=1e-4 * ref.abs().max().item())
    with pytest.raises(ValueError, match="model"):
        InversionResult.from_codes(compact)  # per-layer codes need the model
    expanded = InversionResult.from_codes(compact, model)
    for k in r.deltas:
        torch.testing.assert_close(expanded.deltas[k], r[1].deltas[k], rtol=1e-5, atol=1e-6)
    image = model.render(expanded.ws, expanded.deltas)
    torch.testing.assert_close(image, r.image[1:2], rtol=1e-4, atol=1e-5)


def test_compact_needs_layer_codes_and_half_refuses_overflow(model, images):
    r = model.invert(images[:1])
    dense = InversionResult(r.w, r.ws, _dense(r))
    with pytest.raises(ValueError, match="per-layer codes"):
        dense.codes("compact")
    big = InversionResult(r.w, r.ws, {k: torch.full_like(v, 1e6) for k, v in _dense(r).items()})
    with pytest.raises(ValueError, match="float16 range"):
        big.codes("half")
    with pytest.raises(ValueError, match="codes format"):
        r.codes("zip")


def test_edit_and_interpolate_keep_layer_codes(model, images):
    r = model.invert(images[:2])
    edited = model.edit(r, torch.ones(model.generator.w_dim), strength=0.5)
    assert edited.layer_codes is r.layer_codes
    frames = model.interpolate(r[0], r[1], steps=3)
    expanded = model.expand_layer_codes(frames.layer_codes)
    for k in frames.deltas:  # the lerped codes expand into the lerped residuals
        torch.testing.assert_close(expanded[k], frames.deltas[k], rtol=1e-4, atol=1e-6)


# ------------------------------------------------------------------------------------------ files
def test_save_and_load_codes_files(tmp_path, model, images):
    r = model.invert(images[:1])
    for fmt in ("full", "half", "compact"):
        path = save_codes(r, tmp_path / f"{fmt}.codes.safetensors", model, fmt, source="x.png")
        again = save_codes(r, tmp_path / f"{fmt}-again.codes.safetensors", model, fmt, source="x.png")
        assert path.read_bytes() == again.read_bytes()  # deterministic bytes (one metadata entry)
        back = load_codes(path, model)
        torch.testing.assert_close(model.render(back.ws, back.deltas), r.image, rtol=1e-3, atol=2e-3)
    assert load_codes(tmp_path / "full.codes.safetensors").ws.shape == r.ws.shape  # no model needed
    sizes = {f: (tmp_path / f"{f}.codes.safetensors").stat().st_size for f in ("full", "half", "compact")}
    assert sizes["compact"] < sizes["half"] < sizes["full"]


def _one_line_error(call, *needles):
    with pytest.raises(HyperInverterError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and len(message) < 400, message
    for needle in needles:
        assert needle in message, message
    return message


def test_bad_codes_files_give_one_line(tmp_path, model, images):
    r = model.invert(images[:1])
    compact = save_codes(r, tmp_path / "a.codes.safetensors", model, "compact")
    _one_line_error(lambda: load_codes(compact), str(compact), "compact", "model")
    other = make_model(seed=11)
    _one_line_error(lambda: load_codes(compact, other), str(compact), "another model")
    assert len(load_codes(compact, make_model(seed=3).to(torch.bfloat16))) == 1  # a bf16 copy is the same model

    garbage = tmp_path / "garbage.codes.safetensors"
    garbage.write_bytes(os.urandom(300))
    _one_line_error(lambda: load_codes(garbage, model), str(garbage), "not a codes file")
    truncated = tmp_path / "truncated.codes.safetensors"
    truncated.write_bytes(compact.read_bytes()[:-40])
    _one_line_error(lambda: load_codes(truncated, model), str(truncated), "not a codes file")
    foreign = tmp_path / "weights.safetensors"
    save_file({"generator.weight": torch.zeros(3)}, str(foreign))
    _one_line_error(lambda: load_codes(foreign, model), str(foreign), "generator.weight")
    missing = tmp_path / "nothing.codes.safetensors"
    _one_line_error(lambda: load_codes(missing, model), str(missing), "no such")

    codes = load_file(str(compact))
    nan = dict(codes)
    name = next(k for k in codes if k.startswith("code."))
    nan[name] = torch.full_like(codes[name], float("nan"))
    meta = {"codes": load_codes_meta(compact)}
    save_file(nan, str(tmp_path / "nan.codes.safetensors"), metadata=meta)
    _one_line_error(lambda: load_codes(tmp_path / "nan.codes.safetensors", model), "NaN")
    save_file(codes, str(tmp_path / "fmt.codes.safetensors"), metadata={"codes": json.dumps({"format": "zip"})})
    _one_line_error(lambda: load_codes(tmp_path / "fmt.codes.safetensors", model), "unknown codes format")
    save_file(codes, str(tmp_path / "meta.codes.safetensors"), metadata={"codes": "[" * 100_000})
    save_file(codes, str(tmp_path / "probe.codes.safetensors"), metadata={"codes": json.dumps({"format": "compact"})})
    _one_line_error(lambda: load_codes(tmp_path / "probe.codes.safetensors", model), "another model")
    _one_line_error(lambda: load_codes(tmp_path / "meta.codes.safetensors", model), "metadata")
    shapes = dict(codes)
    shapes["ws"] = codes["ws"][:, :2]
    save_file(shapes, str(tmp_path / "shape.codes.safetensors"), metadata=meta)
    _one_line_error(lambda: load_codes(tmp_path / "shape.codes.safetensors", model), "'ws'")


# ------------------------------------------------------------------------------------------ command line
def _write_images(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, model):
    path = tmp_path_factory.mktemp("stream-model") / "tiny"
    model.save_pretrained(path)
    return path


def test_invert_codes_formats_and_edit_interpolate_from_codes(tmp_path, model_dir, capsys):
    images = _write_images(tmp_path / "in", 2)
    sizes = {}
    for fmt in ("compact", "half", "full"):
        assert main(["invert", str(images), "--model", str(model_dir), "-o", str(tmp_path / fmt), "--codes", fmt,
                     "--quiet", "--device", "cpu"]) == 0
        sizes[fmt] = (tmp_path / fmt / "img0.codes.safetensors").stat().st_size
    assert sizes["compact"] < sizes["half"] < sizes["full"]
    assert json.loads(load_codes_meta(tmp_path / "compact" / "img0.codes.safetensors"))["format"] == "compact"

    codes = tmp_path / "compact" / "img0.codes.safetensors"
    np.save(tmp_path / "d.npy", np.ones(32, dtype=np.float32))
    assert main(["edit", str(codes), "--model", str(model_dir), "--direction", str(tmp_path / "d.npy"),
                 "--strength", "0", "1", "-o", str(tmp_path / "edit"), "--device", "cpu"]) == 0
    zero = np.asarray(Image.open(tmp_path / "edit" / "img0_d_+0.png"), dtype=int)
    inverted = np.asarray(Image.open(tmp_path / "compact" / "img0.png"), dtype=int)
    assert np.abs(zero - inverted).max() <= 1  # the codes render the inversion (to float rounding)
    assert (tmp_path / "edit" / "img0_d_+1.png").is_file() and (tmp_path / "edit" / "img0_d_strip.png").is_file()
    assert main(["interpolate", str(codes), str(tmp_path / "half" / "img1.codes.safetensors"), "--model",
                 str(model_dir), "--steps", "3", "-o", str(tmp_path / "interp"), "--device", "cpu"]) == 0
    first = np.asarray(Image.open(tmp_path / "interp" / "frame_000.png"), dtype=int)
    assert np.abs(first - inverted).max() <= 1
    other = make_model(seed=12)
    other.save_pretrained(tmp_path / "other")
    capsys.readouterr()
    assert main(["edit", str(codes), "--model", str(tmp_path / "other"), "--direction", str(tmp_path / "d.npy"),
                 "-o", str(tmp_path / "edit2"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "another model" in err[0] and str(codes) in err[0]


def load_codes_meta(path: Path) -> str:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return fh.metadata()["codes"]


def test_invert_files_resume_writes_only_missing_files(tmp_path, model):
    images = _write_images(tmp_path / "in", 5)
    paths = sorted(images.glob("*.png"))
    out = tmp_path / "out"
    first = invert_files(model, paths, out, batch_size=2)
    assert len(first.files) == 15 and len(set(first.files)) == 15
    reference = {p.name: p.read_bytes() for p in out.iterdir()}
    (out / "img1.png").unlink()
    (out / "img4.codes.safetensors").unlink()
    (out / ".img2.png.x1y2z3.tmp").write_bytes(b"left by kill -9")
    before = {p.name: (p.stat().st_mtime_ns, p.stat().st_ino) for p in out.iterdir() if not p.name.startswith(".")}
    with pytest.raises(FileExistsError, match="--overwrite"):
        invert_files(model, paths, out, batch_size=2)
    again = invert_files(model, paths, out, batch_size=2, resume=True)
    assert sorted(p.name for p in again.files) == ["img1.png", "img4.codes.safetensors"]
    assert sorted(p.name for p in again.finished) == ["img0.png", "img2.png", "img3.png"]
    assert not (out / ".img2.png.x1y2z3.tmp").exists()
    for name, stamp in before.items():
        assert (out / name).stat().st_mtime_ns == stamp[0] and (out / name).stat().st_ino == stamp[1], name
    assert {p.name: p.read_bytes() for p in out.iterdir()} == reference  # the same bytes as the first run
    assert invert_files(model, paths, out, batch_size=2, resume=True).files == []
    with pytest.raises(ValueError, match="one of them"):
        invert_files(model, paths, out, batch_size=2, resume=True, overwrite=True)


# ------------------------------------------------------------------------------------------ memory
def _peaks(model_dir: Path, mode: str, count: int, batch: int) -> list[float]:
    """Peak RSS (MB) of a fresh process after count/4 and count images (bench_streaming_memory; VmHWM, not
    ru_maxrss, which would include this pytest process's memory at the fork)."""
    code = (f"import sys, json; sys.path.insert(0, {str(BENCH)!r}); import torch; torch.set_num_threads(1)\n"
            f"from bench_streaming_memory import run\nfrom hyperinverter import HyperInverter\n"
            f"m = HyperInverter.from_pretrained({str(model_dir)!r})\n"
            f"list(m.invert_iter(torch.zeros(2 * {batch}, 3, 32, 32), batch_size={batch}))\n"
            f"from bench_streaming_memory import reset_peak; reset_peak()  # from here on (where Linux allows)\n"
            f"rows = run(m, {count}, {batch}, {mode!r}, [{count // 4}, {count}], emit=lambda s: None)\n"
            f"print(json.dumps([r['peak_rss_mb'] for r in rows]))\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_streaming_memory_does_not_grow_with_the_number_of_images(tmp_path):
    """N = 100 and 4N = 400 images in chunks of 8 (hidden_dim 64: about 120 KB of results per image), in a fresh
    process whose peak (VmHWM) is reset after the warm-up: streamed, the peak after 4N is within 6 MB of the
    peak after N (measured: +0.1 to +1 MB, once +4.1 MB on a loaded machine: the allocator's noise, which does not
    grow with the count); keeping every result (what invert() does) grows it by more than 16 MB beyond that over the
    same images (about 36 MB of results), so the measurement does see memory that grows with the count."""
    make_model(seed=3, hidden_dim=64).save_pretrained(tmp_path / "m")
    stream = _peaks(tmp_path / "m", "stream", 400, 8)
    keep = _peaks(tmp_path / "m", "keep", 400, 8)
    assert stream[1] - stream[0] < 6.0, stream
    assert keep[1] - keep[0] > 16.0 + (stream[1] - stream[0]), (keep, stream)
