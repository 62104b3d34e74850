"""Loading user images: every Pillow mode to 8-bit RGB, EXIF, animation, resizing, and clear errors."""

from __future__ import annotations

import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hyperinverter.errors import HyperInverterError
from hyperinverter.utils.image_io import (
    ImageLoadError,
    iter_image_paths,
    load_image,
    load_images,
    tensor_to_pil,
)

S = 16  # side of the test images (>= the default min_size of 8)


def val(v):
    """The tensor value of an 8-bit level v."""
    return v / 127.5 - 1


def px(x: torch.Tensor, xy) -> list:
    """RGB tensor values at (x, y) as 8-bit levels."""
    c, r = xy
    return [round(((float(t) + 1) * 127.5)) for t in x[:, r, c]]


def save(img: Image.Image, path: Path, **kw) -> Path:
    img.save(path, **kw)
    return path


def png_header_only(path: Path, w: int, h: int) -> Path:
    """A PNG with only IHDR + IEND: Pillow reads its size without any pixel data."""

    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


def mode_of(path: Path) -> str:
    with Image.open(path) as img:
        return img.mode


def gradient_rgb(w=S, h=S) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


# ----------------------------------------------------------------------------------------- modes


def test_rgb_exact_values_shape_dtype(tmp_path):
    arr = gradient_rgb()
    x, notes = load_image(save(Image.fromarray(arr), tmp_path / "a.png"))
    assert x.shape == (3, S, S) and x.dtype == torch.float32
    assert torch.equal(x, torch.from_numpy(arr).permute(2, 0, 1).float() / 127.5 - 1)
    assert notes == []
    assert x.min() >= -1 and x.max() <= 1


def test_mode_1(tmp_path):
    img = Image.new("1", (S, S), 0)
    img.putpixel((3, 2), 1)
    x, notes = load_image(save(img, tmp_path / "bw.png"))
    assert px(x, (3, 2)) == [255] * 3 and px(x, (0, 0)) == [0] * 3
    assert x[0, 2, 3] == 1.0 and x[0, 0, 0] == -1.0
    assert notes == ["converted 1-bit black-and-white (1) to RGB"]


def test_mode_L(tmp_path):
    img = Image.new("L", (S, S), 0)
    img.putpixel((1, 0), 255)
    img.putpixel((2, 0), 100)
    x, notes = load_image(save(img, tmp_path / "g.png"))
    assert torch.all(x[:, 0, 0] == -1.0) and torch.all(x[:, 0, 1] == 1.0)
    assert torch.allclose(x[:, 0, 2], torch.full((3,), val(100)))
    assert notes == ["converted grayscale (L) to RGB"]


def test_mode_LA_composited_on_white(tmp_path):
    img = Image.new("LA", (S, S), (100, 255))
    img.putpixel((0, 0), (100, 0))
    img.putpixel((1, 0), (100, 128))
    x, notes = load_image(save(img, tmp_path / "la.png"))
    assert px(x, (0, 0)) == [255] * 3  # fully transparent -> white
    assert px(x, (1, 0)) == [(100 * 128 + 255 * 127 + 127) // 255] * 3  # 177
    assert px(x, (2, 0)) == [100] * 3
    assert notes == ["dropped the alpha channel of an LA image (composited on white)"]


def test_mode_RGBA_over_white(tmp_path):
    img = Image.new("RGBA", (S, S), (10, 20, 30, 255))
    img.putpixel((0, 0), (255, 0, 0, 128))
    img.putpixel((1, 0), (0, 0, 0, 0))
    x, notes = load_image(save(img, tmp_path / "rgba.png"))
    assert px(x, (0, 0)) == [255, 127, 127]
    assert px(x, (1, 0)) == [255, 255, 255]
    assert px(x, (2, 0)) == [10, 20, 30]
    assert notes == ["dropped the alpha channel of an RGBA image (composited on white)"]


def test_mode_RGBA_fully_opaque_note(tmp_path):
    x, notes = load_image(save(Image.new("RGBA", (S, S), (1, 2, 3, 255)), tmp_path / "o.png"))
    assert px(x, (5, 5)) == [1, 2, 3]
    assert notes == ["dropped the alpha channel of an RGBA image (fully opaque)"]


def test_mode_P_without_transparency(tmp_path):
    img = Image.new("P", (S, S), 0)
    img.putpalette([0, 0, 0, 200, 100, 50] + [0] * (3 * 254))
    img.putpixel((4, 4), 1)
    x, notes = load_image(save(img, tmp_path / "p.png"))
    assert px(x, (4, 4)) == [200, 100, 50] and px(x, (0, 0)) == [0, 0, 0]
    assert notes == ["converted palette (P) to RGB"]


def test_mode_P_with_transparency(tmp_path):
    img = Image.new("P", (S, S), 1)
    img.putpalette([0, 0, 0, 200, 100, 50] + [0] * (3 * 254))
    img.putpixel((0, 0), 0)
    x, notes = load_image(save(img, tmp_path / "pt.png", transparency=0))
    assert px(x, (0, 0)) == [255, 255, 255]  # transparent index -> white
    assert px(x, (1, 1)) == [200, 100, 50]
    assert notes == ["dropped the transparency of a palette (P) image (composited on white)"]


def test_mode_CMYK(tmp_path):
    img = Image.new("CMYK", (S, S), (0, 0, 0, 0))
    img.putpixel((0, 0), (255, 0, 0, 0))
    img.putpixel((1, 0), (0, 0, 0, 255))
    x, notes = load_image(save(img, tmp_path / "c.tif"))
    assert px(x, (0, 0)) == [0, 255, 255]  # cyan
    assert px(x, (1, 0)) == [0, 0, 0]  # black
    assert px(x, (2, 0)) == [255, 255, 255]  # no ink -> white
    assert len(notes) == 1 and notes[0].startswith("converted CMYK to RGB")


def test_mode_YCbCr(tmp_path):
    # Converted in memory: Pillow builds differ in how (and whether) they read YCbCr TIFFs back.
    from hyperinverter.utils.image_io import to_rgb8

    img = Image.fromarray(gradient_rgb()).convert("YCbCr")
    notes = []
    out = to_rgb8(img, notes)
    assert out.mode == "RGB"
    assert np.array_equal(np.asarray(out), np.asarray(img.convert("RGB")))
    assert notes == ["converted YCbCr to RGB"]


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_16_bit_modes_divide_by_257(tmp_path, mode):
    img = Image.new(mode, (S, S), 0)
    img.putpixel((0, 0), 65535)
    img.putpixel((1, 0), 257 * 100)
    img.putpixel((2, 0), 128)  # 0.498 -> 0
    img.putpixel((3, 0), 129)  # 0.502 -> 1
    path = save(img, tmp_path / "g16.tif")
    assert mode_of(path) == mode
    x, notes = load_image(path)
    assert torch.all(x[:, 0, 0] == 1.0) and torch.all(x[:, 0, 4] == -1.0)
    assert px(x, (1, 0)) == [100] * 3 and px(x, (2, 0)) == [0] * 3 and px(x, (3, 0)) == [1] * 3
    assert notes == [
        f"reduced 16-bit grayscale ({mode}) to 8-bit (values divided by 257)",
        "converted grayscale to RGB",
    ]


def test_16_bit_png(tmp_path):
    arr = np.zeros((S, S), np.uint16)
    arr[0, 0] = 65535
    arr[0, 1] = 257 * 42
    x, notes = load_image(save(Image.fromarray(arr), tmp_path / "g16.png"))
    assert torch.all(x[:, 0, 0] == 1.0) and px(x, (1, 0)) == [42] * 3 and torch.all(x[:, 5, 5] == -1.0)
    assert "reduced 16-bit" in notes[0]


def test_mode_I_ranges(tmp_path):
    # values within 0..65535 -> read as 16-bit
    a = np.zeros((S, S), np.int32)
    a[0, 0], a[0, 1] = 65535, 257 * 7
    x, notes = load_image(save(Image.fromarray(a), tmp_path / "i16.tif"))
    assert mode_of(tmp_path / "i16.tif") == "I"
    assert x[0, 0, 0] == 1.0 and px(x, (1, 0)) == [7] * 3
    assert "read as 16-bit (divided by 257)" in notes[0]
    # values within 0..255 -> used as they are
    a = np.zeros((S, S), np.int32)
    a[0, 0] = 200
    x, notes = load_image(save(Image.fromarray(a), tmp_path / "i8.tif"))
    assert px(x, (0, 0)) == [200] * 3 and "used as 0..255" in notes[0]
    # negative values -> min..max rescaled, not clipped
    a = np.full((S, S), -1000, np.int32)
    a[0, 0] = 1000
    a[0, 1] = 0
    x, notes = load_image(save(Image.fromarray(a), tmp_path / "ineg.tif"))
    assert px(x, (0, 0)) == [255] * 3 and px(x, (5, 5)) == [0] * 3 and px(x, (1, 0)) == [128] * 3
    assert "rescaled its value range [-1000, 1000]" in notes[0]


def test_mode_F_ranges(tmp_path):
    a = np.zeros((S, S), np.float32)
    a[0, 0], a[0, 1] = 1.0, 0.5
    path = save(Image.fromarray(a), tmp_path / "f01.tif")
    assert mode_of(path) == "F"
    x, notes = load_image(path)
    assert x[0, 0, 0] == 1.0 and px(x, (1, 0)) == [128] * 3 and x[0, 5, 5] == -1.0
    assert "multiplied by 255" in notes[0]
    a = np.zeros((S, S), np.float32)
    a[0, 0] = 65535.0
    x, notes = load_image(save(Image.fromarray(a), tmp_path / "f16.tif"))
    assert x[0, 0, 0] == 1.0 and "16-bit" in notes[0]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_mode_F_nan_inf_is_an_error(tmp_path, bad):
    a = np.zeros((S, S), np.float32)
    a[3, 3] = bad
    path = save(Image.fromarray(a), tmp_path / "bad.tif")
    with pytest.raises(ImageLoadError, match="NaN or infinite") as e:
        load_image(path)
    assert str(e.value).startswith(str(path))


def test_animated_gif_and_webp_first_frame(tmp_path):
    frames = [Image.new("RGB", (S, S), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    for name, kw in [("a.gif", {}), ("a.webp", {"lossless": True})]:
        path = save(frames[0], tmp_path / name, save_all=True, append_images=frames[1:], **kw)
        x, notes = load_image(path)
        assert px(x, (0, 0)) == [255, 0, 0]
        assert any(n.startswith("used the first frame of an animated") and "(3 frames)" in n for n in notes), notes


def test_exif_orientation_rotates(tmp_path):
    img = Image.new("RGB", (S, 2 * S), (0, 0, 0))  # 16 wide, 32 high
    img.putpixel((0, 0), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    x, notes = load_image(save(img, tmp_path / "e.png", exif=exif))
    assert x.shape == (3, S, 2 * S)  # now 32 wide, 16 high
    assert px(x, (2 * S - 1, 0)) == [255, 0, 0]  # top-left went to top-right
    assert notes == ["applied EXIF orientation 6 (rotated 90 degrees clockwise)"]


# ---------------------------------------------------------------------------------------- resize


def test_resize_notes_aspect_ratio_only_when_it_changes(tmp_path):
    x, notes = load_image(save(Image.fromarray(gradient_rgb(40, 30)), tmp_path / "r.png"), 16)
    assert x.shape == (3, 16, 16)
    assert notes == ["resized 40x30 to 16x16: the aspect ratio changes from 1.33 to 1"]
    x, notes = load_image(save(Image.fromarray(gradient_rgb(32, 32)), tmp_path / "s.png"), 16)
    assert notes == ["resized 32x32 to 16x16"]
    x, notes = load_image(tmp_path / "s.png", 32)
    assert notes == [] and x.shape == (3, 32, 32)


def test_resize_is_pil_bilinear_and_resample_option(tmp_path):
    arr = gradient_rgb(32, 24)
    path = save(Image.fromarray(arr), tmp_path / "r.png")
    for name, filt in [("bilinear", Image.Resampling.BILINEAR), ("nearest", Image.Resampling.NEAREST)]:
        x, _ = load_image(path, 16, resample=name)
        ref = np.asarray(Image.fromarray(arr).resize((16, 16), filt))
        assert torch.equal(x, torch.from_numpy(ref.copy()).permute(2, 0, 1).float() / 127.5 - 1)
    with pytest.raises(ValueError, match="resample"):
        load_image(path, 16, resample="cubic-ish")
    with pytest.raises(ValueError, match="size"):
        load_image(path, 0)


# ---------------------------------------------------------------------------------------- errors


def _assert_error(path, match, **kw):
    with pytest.raises(ImageLoadError, match=match) as e:
        load_image(path, **kw)
    assert str(e.value).startswith(f"{os.fspath(path)}: ")
    assert isinstance(e.value, HyperInverterError) and isinstance(e.value, ValueError)
    return e.value


def test_missing_file_and_folder(tmp_path):
    _assert_error(tmp_path / "nope.png", "file not found")
    _assert_error(tmp_path, "is a folder")


def test_non_image_and_empty_files(tmp_path):
    (tmp_path / "text.png").write_text("this is not a PNG\n")
    _assert_error(tmp_path / "text.png", "not an image Pillow can read")
    (tmp_path / "empty.jpg").write_bytes(b"")
    _assert_error(tmp_path / "empty.jpg", "empty")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "BMP"])
def test_truncated_data(tmp_path, fmt):
    path = tmp_path / f"full.{fmt.lower()}"
    Image.fromarray(gradient_rgb(64, 64)).save(path, fmt)
    data = path.read_bytes()
    cut = tmp_path / f"cut.{fmt.lower()}"
    cut.write_bytes(data[: len(data) // 2])
    load_image(path)  # the full file is fine
    _assert_error(cut, "truncated or corrupt")


def test_zero_size_and_too_small(tmp_path):
    _assert_error(png_header_only(tmp_path / "zero.png", 0, 5), "no pixels|not an image")
    _assert_error(save(Image.new("RGB", (4, 4)), tmp_path / "tiny.png"), r"too small: 4x4")
    _assert_error(save(Image.new("RGB", (100, 4)), tmp_path / "thin.png"), r"too small: 100x4")
    x, _ = load_image(tmp_path / "tiny.png", min_size=1)
    assert x.shape == (3, 4, 4)


def test_too_many_pixels(tmp_path):
    path = save(Image.new("RGB", (100, 100)), tmp_path / "big.png")
    _assert_error(path, r"too large: 100x100 = 10000 pixels.*5000", max_pixels=5000)
    # header only, 81 megapixels: refused by our default 64 MP limit before any decoding
    _assert_error(png_header_only(tmp_path / "huge.png", 9000, 9000), "too large: 9000x9000")


def test_pillow_decompression_bomb_is_our_error(tmp_path):
    path = png_header_only(tmp_path / "bomb.png", 20000, 20000)  # > 2 * Image.MAX_IMAGE_PIXELS
    _assert_error(path, "too large.*decompression bomb", max_pixels=None)
    # between MAX_IMAGE_PIXELS and twice that Pillow only warns; our limit decides
    _assert_error(png_header_only(tmp_path / "warn.png", 10000, 10000), "too large: 10000x10000")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read anything")
def test_permission_denied(tmp_path):
    path = save(Image.new("RGB", (S, S)), tmp_path / "locked.png")
    path.chmod(0)
    try:
        _assert_error(path, "permission denied")
    finally:
        path.chmod(0o644)


def test_permission_error_is_reported(tmp_path, monkeypatch):
    """The same path as above, without needing a non-root user."""
    import hyperinverter.utils.image_io as image_io

    path = save(Image.new("RGB", (S, S)), tmp_path / "locked.png")

    def deny(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(image_io.Image, "open", deny)
    _assert_error(path, "permission denied")


def test_error_pickles():
    e = pickle.loads(pickle.dumps(ImageLoadError("a/b.png", "file not found")))
    assert str(e) == "a/b.png: file not found" and e.path == Path("a/b.png") and e.reason == "file not found"


# ----------------------------------------------------------------------------------------- batch


def test_load_images_skips_bad_files(tmp_path):
    a = save(Image.fromarray(gradient_rgb(32, 32)), tmp_path / "a.png")
    b = tmp_path / "b.png"
    b.write_text("not an image")
    c = save(Image.new("L", (20, 10), 50), tmp_path / "c.jpg")
    batch, loaded, errors, notes = load_images([a, b, c], 16)
    assert batch.shape == (2, 3, 16, 16) and batch.dtype == torch.float32
    assert loaded == [a, c]
    assert len(errors) == 1 and errors[0][0] == b and errors[0][1].startswith(str(b))
    assert notes[a] == ["resized 32x32 to 16x16"]
    assert notes[c][0] == "converted grayscale (L) to RGB" and "aspect ratio changes from 2.00 to 1" in notes[c][1]
    assert torch.equal(batch[0], load_image(a, 16)[0])
    with pytest.raises(ImageLoadError, match="not an image"):
        load_images([a, b, c], 16, on_error="raise")
    assert load_images([b], 16) == (None, [], [(b, errors[0][1])], {})
    with pytest.raises(ValueError, match="on_error"):
        load_images([a], 16, on_error="ignore")


def test_iter_image_paths(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for name in ["b.PNG", "a.jpg", "c.TiFF", "notes.txt", ".hidden.png"]:
        (d / name).write_bytes(b"x")
    (d / "sub.png").mkdir()  # a folder with an image-like name is not a file
    other = tmp_path / "explicit.txt"
    assert iter_image_paths([other, d]) == [other, d / "a.jpg", d / "b.PNG", d / "c.TiFF"]
    assert iter_image_paths(str(d)) == [d / "a.jpg", d / "b.PNG", d / "c.TiFF"]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("")
    with pytest.raises(ImageLoadError, match="no image files") as e:
        iter_image_paths([d, empty])
    assert str(e.value).startswith(str(empty))


# ------------------------------------------------------------------------------------- to PIL


def test_tensor_to_pil(tmp_path):
    arr = gradient_rgb()
    x, _ = load_image(save(Image.fromarray(arr), tmp_path / "a.png"))
    img = tensor_to_pil(x)
    assert img.mode == "RGB" and img.size == (S, S)
    out = np.asarray(img).astype(int)
    # truncation (to_uint8's convention) can lose one level to float rounding, never more
    assert np.abs(out - arr).max() <= 1 and (out <= arr).all()
    assert np.asarray(tensor_to_pil(torch.tensor([-1.0, 1.0, 3.0]).view(1, 1, 3).expand(3, 1, 3))).tolist() == [
        [[0, 0, 0], [255, 255, 255], [255, 255, 255]]
    ]
    assert tensor_to_pil(torch.zeros(1, 4, 4)).mode == "L"
    with pytest.raises(ValueError):
        tensor_to_pil(torch.zeros(1, 3, 4, 4))
