"""Faces in real photos: FFHQ alignment geometry, dlib detection on a real photograph, paste-back, CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from hyperinverter.cli import main
from hyperinverter.faces import (
    AlignedFace,
    FaceAligner,
    FaceDependencyError,
    FaceError,
    FaceTooSmallError,
    LandmarksModelError,
    MultipleFacesError,
    NoFaceError,
    PhotoTooLargeError,
    feather_mask,
    ffhq_quad,
    find_landmarks_model,
    open_photo,
    paste_back,
    photo_to_crop,
    quad_from_keypoints,
    quad_size,
    warp_face,
)
from hyperinverter.faces import landmarks as landmarks_module
from hyperinverter.faces.geometry import crop_to_photo, homography, keypoints
from hyperinverter.utils.image_io import ImageLoadError


# ------------------------------------------------------------------------------------------ fixtures
def _synthetic_landmarks(eye_left, eye_right, mouth_left, mouth_right) -> np.ndarray:
    """68 landmarks [68, 2] whose eye centres and mouth corners are the given points (others: noise)."""
    lm = np.random.default_rng(0).uniform(0, 50, (68, 2))
    lm[36:42] = np.asarray(eye_left, float) + np.random.default_rng(1).normal(0, 3, (6, 2))
    lm[36:42] += np.asarray(eye_left) - lm[36:42].mean(0)
    lm[42:48] = np.asarray(eye_right, float) + np.random.default_rng(2).normal(0, 3, (6, 2))
    lm[42:48] += np.asarray(eye_right) - lm[42:48].mean(0)
    lm[48], lm[54] = mouth_left, mouth_right
    return lm


UPRIGHT = _synthetic_landmarks((100, 100), (200, 100), (120, 220), (180, 220))


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    data = pytest.importorskip("skimage.data", reason="scikit-image is needed for the test photograph "
                                                       "(pip install 'hyperinverter[test]')")
    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="module")
def aligner() -> FaceAligner:
    pytest.importorskip("dlib", reason="dlib is not installed (pip install 'hyperinverter[faces]')")
    try:
        find_landmarks_model()
    except LandmarksModelError as e:
        pytest.skip(f"dlib's landmark model is not installed: {e}")
    return FaceAligner(output_size=256)


@pytest.fixture(scope="module")
def face(aligner, astronaut) -> AlignedFace:
    return aligner.align(astronaut)[0]


def _inside_quad(quad: np.ndarray, size: tuple[int, int], crop: int, lo: float, hi: float) -> np.ndarray:
    """[H, W] bool: photo pixels whose crop coordinates (crop x crop) lie within [lo, crop - 1 + hi]."""
    w, h = size
    yy, xx = np.mgrid[:h, :w]
    uv = photo_to_crop(np.stack([xx.ravel(), yy.ravel()], 1), quad, crop, crop).reshape(h, w, 2)
    return np.all((uv >= lo) & (uv <= crop - 1 + hi), axis=-1)


# ------------------------------------------------------------------------------- geometry (no dlib)
def test_ffhq_quad_of_an_upright_face_by_hand():
    # eye_avg (150, 100), eye_to_eye (100, 0), eye_to_mouth (0, 120): x = (100,0) - (-120, 0) -> unit (1, 0),
    # scaled by max(100 * 2, 120 * 1.8 = 216); y = (0, 216); c = (150, 112)
    quad = ffhq_quad(UPRIGHT)
    np.testing.assert_allclose(quad, [[-66, -104], [-66, 328], [366, 328], [366, -104]], atol=1e-9)
    assert quad_size(quad) == pytest.approx(432)
    # a wide face: the eye distance decides the scale (100 * 2 = 200 > 60 * 1.8)
    wide = quad_from_keypoints((100, 100), (200, 100), (130, 160), (170, 160))
    np.testing.assert_allclose(wide[0], [150 - 200, 106 - 200])
    np.testing.assert_allclose(quad_size(wide), 400)


@pytest.mark.parametrize("angle, scale, shift", [(0.3, 1.0, (0, 0)), (-1.1, 0.37, (40, -7)), (2.5, 3.0, (-300, 80))])
def test_quad_follows_similarity_transforms_and_eyes_stay_put(angle, scale, shift):
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) * scale
    moved = UPRIGHT @ rot.T + shift
    np.testing.assert_allclose(ffhq_quad(moved), ffhq_quad(UPRIGHT) @ rot.T + shift, atol=1e-9)
    eyes = np.stack(keypoints(UPRIGHT)[:2])
    eyes_moved = np.stack(keypoints(moved)[:2])
    np.testing.assert_allclose(photo_to_crop(eyes_moved, ffhq_quad(moved), 256, 256),
                               photo_to_crop(eyes, ffhq_quad(UPRIGHT), 256, 256), atol=1e-6)


def test_crop_photo_mapping_roundtrip_and_corners():
    quad = ffhq_quad(UPRIGHT @ np.array([[0.8, -0.6], [0.6, 0.8]]).T)
    pts = np.random.default_rng(3).uniform(-20, 300, (50, 2))
    np.testing.assert_allclose(crop_to_photo(photo_to_crop(pts, quad, 256, 128), quad, 256, 128), pts, atol=1e-8)
    # the corners of the crop (continuous coordinates) are the quad corners (+0.5 in pixel units)
    corners = np.array([[-0.5, -0.5], [-0.5, 255.5], [255.5, 255.5], [255.5, -0.5]])
    np.testing.assert_allclose(crop_to_photo(corners, quad, 256, 256), quad, atol=1e-8)
    with pytest.raises(ValueError, match="on one line"):
        homography(np.zeros((4, 2)), quad)
    with pytest.raises(ValueError, match=r"\[68, 2\]"):
        ffhq_quad(np.zeros((5, 2)))
    with pytest.raises(ValueError, match="degenerate"):
        quad_from_keypoints((0, 0), (0, 0), (0, 0), (0, 0))


def test_warp_face_axis_aligned_quad_is_a_plain_crop_and_pads_outside():
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 255, (80, 100, 3), dtype=np.uint8))
    # a square exactly over pixels 10..49 x 20..59 (pixel-index corners are 0.5 inside the pixel edges)
    quad = np.array([[9.5, 19.5], [9.5, 59.5], [49.5, 59.5], [49.5, 19.5]])
    crop = warp_face(photo, quad, 40)
    np.testing.assert_array_equal(np.asarray(crop), np.asarray(photo)[20:60, 10:50])
    # half outside the photo: mirrored + blurred padding, still the requested size and finite colours
    crop = warp_face(photo, quad - [40, 30], 64)
    assert crop.size == (64, 64) and crop.mode == "RGB"
    # a large quad is shrunk before sampling: a constant photo stays constant
    flat = Image.new("RGB", (900, 900), (10, 200, 30))
    crop = warp_face(flat, np.array([[50, 50], [50, 850], [850, 850], [850, 50]], float), 64)
    assert np.abs(np.asarray(crop).astype(int) - [10, 200, 30]).max() <= 1


def test_feather_mask_shape_and_smoothness():
    m = feather_mask(100, 60, 0.1)
    assert m.shape == (60, 100) and m.dtype == np.float32
    assert m.max() == 1 and m[30, 50] == 1 and m[0].max() < 0.03 and m[:, 0].max() < 0.03  # 0 on the edge itself
    assert np.abs(np.diff(m, axis=1)).max() < 0.3  # 6 px band
    assert feather_mask(10, 10, 0).min() == 1
    with pytest.raises(ValueError, match="feather"):
        feather_mask(10, 10, 0.9)


def test_paste_back_blend_is_feathered_and_confined_to_the_quad():
    quad = ffhq_quad(UPRIGHT) * 0.5 + [100, 80]  # ~216 px square, fully inside a 400 x 350 photo
    photo = Image.new("RGB", (400, 350), (0, 0, 0))
    out = np.asarray(paste_back(Image.new("RGB", (256, 256), (255, 255, 255)), photo, quad, feather=0.1))
    weight = out[..., 0].astype(float) / 255  # the blend weight, made visible
    inside = _inside_quad(quad, photo.size, 256, -1.0, 1.0)
    assert weight[~inside].max() == 0  # nothing changes outside the quad
    c = np.round(quad.mean(0)).astype(int)
    assert weight[c[1], c[0]] == 1
    row = weight[c[1], :c[0]]  # from the left edge of the photo to the centre: 0 ... ramp ... 1
    assert np.all(np.diff(row) >= -1e-9)  # monotonic
    assert np.abs(np.diff(row)).max() < 0.12  # no seam: the ramp spans ~0.1 * 216 px
    ramp = np.count_nonzero((row > 0.02) & (row < 0.98))
    assert 10 <= ramp <= 30


def test_paste_back_keeps_size_mode_and_alpha():
    quad = np.array([[20, 20], [20, 80], [80, 80], [80, 20]], float)
    crop = Image.new("RGB", (64, 64), (255, 0, 0))
    rgba = Image.new("RGBA", (120, 100), (0, 0, 255, 77))
    out = paste_back(crop, rgba, quad)
    assert out.mode == "RGBA" and out.size == (120, 100)
    arr = np.asarray(out)
    assert np.all(arr[..., 3] == 77) and tuple(arr[50, 50, :3]) == (255, 0, 0) and tuple(arr[5, 5]) == (0, 0, 255, 77)
    gray = paste_back(crop, Image.new("L", (120, 100), 9), quad)
    assert gray.mode == "L" and np.asarray(gray)[50, 50] == 76 and np.asarray(gray)[95, 115] == 9
    pal = Image.new("RGB", (120, 100), (0, 255, 0)).quantize(8)
    out = paste_back(crop, pal, quad)
    assert out.mode == "P" and out.convert("RGB").getpixel((5, 5)) == (0, 255, 0)
    with pytest.raises(FaceError, match="aligned in a 99x99 photo"):
        paste_back(crop, rgba, quad, photo_size=(99, 99))
    with pytest.raises(FaceError, match="outside this photo"):
        paste_back(crop, rgba, quad + 1000)
    with pytest.raises(FaceError, match="convert the photo to RGB"):
        paste_back(crop, Image.new("F", (120, 100)), quad)


def test_aligned_face_record_roundtrip():
    face = AlignedFace(image=None, quad=ffhq_quad(UPRIGHT), landmarks=UPRIGHT, box=(90, 80, 210, 230), score=1.5,
                       photo_size=(640, 480), output_size=256)
    data = json.loads(json.dumps(face.to_dict()))
    back = AlignedFace.from_dict(data)
    np.testing.assert_allclose(back.quad, face.quad)
    np.testing.assert_allclose(back.landmarks, face.landmarks)
    assert back.box == face.box and back.photo_size == (640, 480) and back.score == 1.5
    with pytest.raises(FaceError, match="hyperinverter align"):
        AlignedFace.from_dict({"quad": []})
    with pytest.raises(FaceError, match="malformed"):
        AlignedFace.from_dict({**data, "quad": [[1, 2]]})


# ----------------------------------------------------------------------------- landmark model lookup
def test_find_landmarks_model_order_and_errors(tmp_path, monkeypatch):
    model = tmp_path / "lm.dat"
    model.write_bytes(b"x")
    monkeypatch.setenv(landmarks_module.LANDMARKS_ENV, str(model))
    assert find_landmarks_model() == model
    assert find_landmarks_model(model) == model
    with pytest.raises(LandmarksModelError, match="not found.*pip install 'hyperinverter\\[faces\\]'"):
        find_landmarks_model(tmp_path / "missing.dat")
    with pytest.raises(LandmarksModelError, match="bunzip2"):
        find_landmarks_model(tmp_path / "shape_predictor_68_face_landmarks.dat.bz2")
    monkeypatch.setenv(landmarks_module.LANDMARKS_ENV, str(tmp_path / "gone.dat"))
    with pytest.raises(LandmarksModelError, match="HYPERINVERTER_DLIB_LANDMARKS"):
        find_landmarks_model()
    monkeypatch.delenv(landmarks_module.LANDMARKS_ENV)
    monkeypatch.setattr(landmarks_module, "_package_model", lambda: None)
    monkeypatch.setattr(landmarks_module, "SYSTEM_LOCATIONS", (tmp_path / "nope.dat",))
    with pytest.raises(LandmarksModelError, match="libdlib-data.*--landmarks"):
        find_landmarks_model()
    monkeypatch.setattr(landmarks_module, "SYSTEM_LOCATIONS", (model,))
    assert find_landmarks_model() == model


def test_missing_dlib_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "dlib", None)
    with pytest.raises(FaceDependencyError, match=r"pip install 'hyperinverter\[faces\]'"):
        landmarks_module.import_dlib()


def test_cli_module_imports_without_dlib():
    code = ("import sys; sys.modules['dlib'] = None\n"
            "from hyperinverter.cli import build_parser\n"
            "a = build_parser().parse_args(['align', 'x.jpg', '-o', 'out', '--all-faces'])\n"
            "assert a.all_faces and a.size == 256\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ------------------------------------------------------------------------------- photos and limits
def test_photo_limits_and_bad_files(tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ImageLoadError, match="notes.png: not an image"):
        open_photo(tmp_path / "notes.png")
    with pytest.raises(ImageLoadError, match="file not found"):
        open_photo(tmp_path / "missing.jpg")
    Image.new("RGB", (300, 200)).save(tmp_path / "p.png")
    with pytest.raises(PhotoTooLargeError, match="300x200 = 60,000 pixels, more than the limit of 50,000"):
        open_photo(tmp_path / "p.png", max_pixels=50_000)
    Image.new("RGB", (20, 300)).save(tmp_path / "thin.png")
    with pytest.raises(FaceTooSmallError, match="20x300 pixels, at least 32x32"):
        open_photo(tmp_path / "thin.png")


def test_aligner_refuses_huge_and_tiny_photos(aligner):
    huge = Image.new("L", (8000, 5001))  # 40.008 megapixels, above the default limit of 40
    with pytest.raises(PhotoTooLargeError, match="8000x5001 = 40,008,000 pixels, more than the limit of 40,000,000 "
                                                 r"\(40 megapixels\)"):
        aligner.align(huge)
    with pytest.raises(FaceTooSmallError, match="too small"):
        aligner.align(Image.new("RGB", (24, 24)))
    with pytest.raises(ValueError, match="output_size"):
        aligner.align(Image.new("RGB", (64, 64)), output_size=4)


def test_face_below_the_minimum_crop_size_is_refused(aligner, astronaut, monkeypatch):
    from hyperinverter.faces import align as align_module

    monkeypatch.setattr(align_module, "MIN_FACE_SIZE", 1000)  # the astronaut's square is ~174 px
    with pytest.raises(FaceTooSmallError, match="too small to align: its crop would cover 17[0-9] px"):
        aligner.align(astronaut)


def test_no_face_in_a_gradient(aligner):
    ramp = np.linspace(0, 255, 320, dtype=np.float32)
    gradient = np.stack([np.add.outer(ramp[:240] * 0.5, ramp * 0.5)] * 3, -1).astype(np.uint8)
    with pytest.raises(NoFaceError, match="no face found in the 320x240 photo"):
        aligner.align(Image.fromarray(gradient))


# -------------------------------------------------------------------------- real photograph (dlib)
def test_astronaut_has_one_plausible_face(face, astronaut):
    assert face.image.size == (256, 256) and face.image.mode == "RGB"
    assert face.landmarks.shape == (68, 2) and face.quad.shape == (4, 2)
    assert face.photo_size == astronaut.size and face.score > 0.3
    left, top, right, bottom = face.box
    assert 150 < left < right < 300 and 50 < top < bottom < 200  # the face is in the top middle of the picture
    eye_l, eye_r, mouth_l, mouth_r = keypoints(face.landmarks)
    assert max(eye_l[1], eye_r[1]) < min(mouth_l[1], mouth_r[1])  # eyes above the mouth
    assert eye_l[0] < eye_r[0] and mouth_l[0] < mouth_r[0]
    for p in (eye_l, eye_r, mouth_l, mouth_r):
        assert left <= p[0] <= right and top <= p[1] <= bottom
    # the crop holds the whole face with room around it (FFHQ: the square is ~4 eye distances wide)
    assert 3.5 < face.quad_size / np.hypot(*(eye_r - eye_l)) < 4.5


def test_eyes_land_on_the_ffhq_positions(face, aligner):
    size = 256
    # where the quad maths put the eyes: along x and y (the square's half sides) from its centre c
    x = (face.quad[3] - face.quad[0]) / 2
    y = (face.quad[1] - face.quad[0]) / 2
    c = face.quad.mean(axis=0)
    eyes = np.stack(keypoints(face.landmarks)[:2])
    expected = np.stack([size * (0.5 + (eyes - c) @ x / (2 * x @ x)),
                         size * (0.5 + (eyes - c) @ y / (2 * y @ y))], axis=1) - 0.5
    np.testing.assert_allclose(face.crop_landmarks()[36:48].reshape(2, 6, 2).mean(1), expected, atol=1e-6)
    # FFHQ's layout: the eyes level, symmetric about the middle, a quarter of the crop apart, above the centre
    assert abs(expected[0, 1] - expected[1, 1]) < 3
    assert abs(expected.mean(0)[0] - (size - 1) / 2) < 3
    assert 0.2 * size < expected[1, 0] - expected[0, 0] < 0.3 * size
    assert 0.4 * size < expected.mean(0)[1] < 0.5 * size
    # and they are there in the pixels: detect the landmarks again in the crop itself
    again = aligner.align(face.image)[0]
    found = np.stack(keypoints(again.landmarks)[:2])
    np.testing.assert_allclose(found, expected, atol=3.0)


def test_paste_back_of_the_unedited_crop_reproduces_the_photo(face, astronaut):
    out = face.paste_back(face.image, astronaut)
    assert out.size == astronaut.size and out.mode == astronaut.mode
    a, b = np.asarray(astronaut).astype(int), np.asarray(out).astype(int)
    outside = ~_inside_quad(face.quad, astronaut.size, 256, -2.0, 2.0)
    np.testing.assert_array_equal(a[outside], b[outside])  # far from the face: exactly unchanged
    core = _inside_quad(face.quad, astronaut.size, 256, 40, -40)  # the face itself
    diff = np.abs(a[core] - b[core])
    assert diff.mean() < 2.0 and np.percentile(diff, 99) < 16  # two resamplings blur sharp edges a little


def test_paste_back_of_an_inverted_crop_changes_only_the_face(face, astronaut):
    inverted = Image.fromarray(255 - np.asarray(face.image))
    out = np.asarray(face.paste_back(inverted.resize((512, 512)), astronaut, feather=0.1)).astype(int)
    a = np.asarray(astronaut).astype(int)
    changed = np.any(out != a, axis=-1)
    assert changed.sum() > 10_000
    assert not np.any(changed & ~_inside_quad(face.quad, astronaut.size, 256, -1.0, 1.0))
    core = _inside_quad(face.quad, astronaut.size, 256, 40, -40)
    assert np.abs(out[core] - (255 - a[core])).mean() < 4  # the face is the inverted crop
    # along the quad's border the result is (nearly) the photo: no seam
    band = _inside_quad(face.quad, astronaut.size, 256, 0, 0) & ~_inside_quad(face.quad, astronaut.size, 256, 2, -2)
    assert np.abs(out[band] - a[band]).mean() < 8


def test_two_faces(aligner, astronaut):
    pair = Image.fromarray(np.concatenate([np.asarray(astronaut)] * 2, axis=1))
    with pytest.raises(MultipleFacesError, match="2 faces found.*--all-faces") as info:
        aligner.align(pair)
    assert info.value.count == 2
    faces = aligner.align(pair, all_faces=True, output_size=128)
    assert len(faces) == 2 and all(f.image.size == (128, 128) for f in faces)
    assert faces[0].box[0] < 512 <= faces[1].box[0]
    np.testing.assert_allclose(faces[1].quad - [512, 0], faces[0].quad, atol=3)


def test_huge_photo_is_detected_on_a_downscaled_copy(aligner, astronaut, face):
    big = astronaut.resize((2048, 2048), Image.Resampling.BICUBIC)
    f = aligner.align(big)[0]
    np.testing.assert_allclose(f.quad / 4, face.quad, atol=4)
    assert f.image.size == (256, 256)


# ------------------------------------------------------------------------------------ command line
def test_cli_align_and_paste_back(tmp_path, astronaut, aligner, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    astronaut.save(photos / "astronaut.png")
    Image.fromarray(np.concatenate([np.asarray(astronaut)] * 2, axis=1)).save(photos / "pair.jpg")
    Image.new("RGB", (200, 150), (120, 130, 140)).save(photos / "wall.png")
    (photos / "broken.png").write_text("no pixels here")
    out = tmp_path / "aligned"
    assert main(["align", str(photos), "-o", str(out), "--size", "128"]) == 1
    captured = capsys.readouterr()
    assert "pair.jpg: 2 faces found" in captured.err and "--all-faces" in captured.err
    assert "wall.png: no face found" in captured.err and "broken.png" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["astronaut.json", "astronaut.png"]
    assert Image.open(out / "astronaut.png").size == (128, 128)
    record = json.loads((out / "astronaut.json").read_text())
    assert record["photo_size"] == [512, 512] and len(record["landmarks"]) == 68 and record["crop"] == "astronaut.png"

    assert main(["align", str(photos / "pair.jpg"), "-o", str(out), "--all-faces"]) == 0
    assert (out / "pair_face0.png").is_file() and (out / "pair_face1.json").is_file()

    edited = Image.fromarray(255 - np.asarray(Image.open(out / "astronaut.png")))
    edited.save(tmp_path / "edited.png")
    result = tmp_path / "result.png"
    assert main(["paste-back", "--photo", str(photos / "astronaut.png"), "--alignment", str(out / "astronaut.json"),
                 "--edited", str(tmp_path / "edited.png"), "-o", str(result)]) == 0
    pasted = np.asarray(Image.open(result)).astype(int)
    a = np.asarray(astronaut).astype(int)
    assert pasted.shape == a.shape and np.array_equal(pasted[400:], a[400:])
    assert np.abs(pasted[120, 220] - (255 - a[120, 220])).max() < 40
    capsys.readouterr()
    # the wrong photo, a broken record: clear errors, exit status 2 (--overwrite: result.png exists)
    assert main(["paste-back", "--photo", str(photos / "wall.png"), "--alignment", str(out / "astronaut.json"),
                 "--edited", str(tmp_path / "edited.png"), "-o", str(result), "--overwrite"]) == 2
    assert "aligned in a 512x512 photo" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{")
    assert main(["paste-back", "--photo", str(photos / "astronaut.png"), "--alignment", str(tmp_path / "bad.json"),
                 "--edited", str(tmp_path / "edited.png"), "-o", str(result), "--overwrite"]) == 2
    assert "not a JSON alignment file" in capsys.readouterr().err


def test_cli_missing_landmark_file(tmp_path, astronaut, capsys):
    astronaut.save(tmp_path / "a.png")
    assert main(["align", str(tmp_path / "a.png"), "-o", str(tmp_path / "o"), "--landmarks",
                 str(tmp_path / "missing.dat")]) == 2
    err = capsys.readouterr().err
    assert "missing.dat" in err and "libdlib-data" in err


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from test_inverter import make_model

    path = tmp_path_factory.mktemp("model") / "tiny"
    make_model(seed=4).save_pretrained(path)
    return path


def test_cli_invert_and_edit_with_align(tmp_path, astronaut, aligner, model_dir):
    astronaut.save(tmp_path / "astronaut.png")
    Image.new("RGB", (100, 100), (20, 20, 20)).save(tmp_path / "dark.png")
    out = tmp_path / "inv"
    assert main(["invert", str(tmp_path / "astronaut.png"), str(tmp_path / "dark.png"), "--model", str(model_dir),
                 "--align", "-o", str(out), "--quiet"]) == 1  # dark.png has no face
    assert Image.open(out / "aligned" / "astronaut.png").size == (32, 32)
    assert (out / "aligned" / "astronaut.json").is_file()
    assert Image.open(out / "astronaut.png").size == (32, 32) and (out / "astronaut.codes.safetensors").is_file()

    np.save(tmp_path / "smile.npy", np.random.default_rng(1).standard_normal(32).astype(np.float32))
    assert main(["edit", str(tmp_path / "astronaut.png"), "--model", str(model_dir), "--align", "--direction",
                 str(tmp_path / "smile.npy"), "--strength", "2", "-o", str(tmp_path / "edit")]) == 0
    pasted = Image.open(tmp_path / "edit" / "astronaut_smile_+2_photo.png")
    assert pasted.size == astronaut.size
    assert np.array_equal(np.asarray(pasted)[400:], np.asarray(astronaut)[400:])
