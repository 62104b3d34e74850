"""MP4 output of interpolations (workflows.write_video and ``interpolate --mp4``)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image

from hyperinverter.cli import main
from hyperinverter.errors import HyperInverterError
from hyperinverter.workflows import write_video

imageio = pytest.importorskip("imageio.v2", reason="imageio is not installed (pip install 'hyperinverter[media]')")
pytest.importorskip("imageio_ffmpeg", reason="imageio-ffmpeg is not installed (pip install 'hyperinverter[media]')")


def _read(path) -> tuple[list[np.ndarray], dict]:
    reader = imageio.get_reader(path, format="FFMPEG")
    try:
        return [np.asarray(f) for f in reader], reader.get_meta_data()
    finally:
        reader.close()


def test_write_video_tensor_frames_bounce(tmp_path):
    frames = torch.rand(5, 3, 32, 48, generator=torch.Generator().manual_seed(0)) * 2 - 1
    path = write_video(frames, tmp_path / "sub" / "clip.mp4", fps=10)
    assert path == tmp_path / "sub" / "clip.mp4" and path.stat().st_size > 0
    read, meta = _read(path)
    assert len(read) == 8  # 5 forth + 3 back (the ends are not repeated)
    assert read[0].shape == (32, 48, 3)
    assert meta["codec"] == "h264" and meta["fps"] == pytest.approx(10) and meta["pix_fmt"].startswith("yuv420p")


def test_write_video_constant_colour_survives_encoding(tmp_path):
    frames = [np.full((40, 40, 3), (200, 60, 30), np.uint8), np.full((40, 40, 3), (20, 90, 220), np.uint8)]
    read, _ = _read(write_video(frames, tmp_path / "c.mp4", fps=5, bounce=False))
    assert len(read) == 2
    assert np.abs(read[0][20, 20].astype(int) - [200, 60, 30]).max() < 12
    assert np.abs(read[1][20, 20].astype(int) - [20, 90, 220]).max() < 12


def test_write_video_odd_sizes_are_padded_to_even(tmp_path):
    frames = [np.random.default_rng(i).integers(0, 255, (33, 21, 3), dtype=np.uint8) for i in range(3)]
    read, _ = _read(write_video(frames, tmp_path / "odd.mp4", fps=12.5))
    assert len(read) == 4 and read[0].shape == (34, 22, 3)


def test_write_video_bad_input(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="at least one frame"):
        write_video([], tmp_path / "x.mp4")
    with pytest.raises(ValueError, match="fps"):
        write_video(torch.zeros(2, 3, 8, 8), tmp_path / "x.mp4", fps=0)
    with pytest.raises(ValueError, match="of one size"):
        write_video([np.zeros((8, 8, 3), np.uint8), np.zeros((8, 10, 3), np.uint8)], tmp_path / "x.mp4")
    with pytest.raises(ValueError, match="uint8"):
        write_video([np.zeros((8, 8, 3), np.float32)], tmp_path / "x.mp4")
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)
    with pytest.raises(HyperInverterError, match=r"pip install 'hyperinverter\[media\]'"):
        write_video(torch.zeros(2, 3, 8, 8), tmp_path / "x.mp4")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from test_inverter import make_model

    path = tmp_path_factory.mktemp("model") / "tiny"
    make_model(seed=4).save_pretrained(path)
    return path


def test_cli_interpolate_mp4(tmp_path, model_dir, capsys):
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / f"{name}.png")
    out = tmp_path / "interp"
    assert main(["interpolate", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--model", str(model_dir),
                 "--steps", "4", "--frame-ms", "100", "--mp4", "-o", str(out)]) == 0
    assert "interpolation.mp4" in capsys.readouterr().out
    read, meta = _read(out / "interpolation.mp4")
    assert len(read) == 6 and read[0].shape == (32, 32, 3)  # 4 frames forth, 2 back, like the GIF
    assert meta["fps"] == pytest.approx(10)
    assert Image.open(out / "interpolation.gif").n_frames == 6
    # the MP4 shows the same frames as the PNGs (up to compression)
    first = np.asarray(Image.open(out / "frame_000.png")).astype(int)
    assert np.abs(read[0].astype(int) - first).mean() < 25
