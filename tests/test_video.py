"""``hyperinverter video``: tracking and crop smoothing on synthetic landmarks, the frame editor (pass-through,
paste-back, temporal smoothing, resumable state), the file pipeline end to end on a synthetic portrait clip
(known edit, size/rate/frames/audio kept, preview, resume after an interrupt) and one-line errors."""

from __future__ import annotations

import dataclasses
import subprocess
from fractions import Fraction

import numpy as np
import pytest
import torch
from PIL import Image

from hyperinverter.cli import main
from hyperinverter.faces.geometry import ffhq_quad, quad_bounds
from hyperinverter.video import (
    FaceObservation,
    FaceTracker,
    FaceVideoEditor,
    Factors,
    FixedCrop,
    FrameCodes,
    OneEuroFilter,
    blend,
    centred_square,
    parse_crop,
    rect_quad,
    temporal_flicker,
)
from hyperinverter.video.tracking import quad_from_params, quad_params

imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg", reason="imageio-ffmpeg is not installed "
                                                              "(pip install 'hyperinverter[media]')")


# ------------------------------------------------------------------------------------------- helpers
def _landmarks(centre, eye_distance: float, angle: float = 0.0) -> np.ndarray:
    """68 landmarks [68, 2] of an upright face (turned by ``angle`` radians) whose eyes are ``eye_distance`` apart."""
    c = np.asarray(centre, float)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    d = eye_distance
    points = {"eye_l": (-d / 2, 0.0), "eye_r": (d / 2, 0.0),
              "mouth_l": (-0.35 * d, 1.1 * d), "mouth_r": (0.35 * d, 1.1 * d)}
    at = {k: c + rot @ np.array(v) for k, v in points.items()}
    lm = np.tile(c, (68, 1))
    lm[36:42], lm[42:48] = at["eye_l"], at["eye_r"]
    lm[48], lm[54] = at["mouth_l"], at["mouth_r"]
    return lm


def _face(centre, eye_distance, noise=None) -> FaceObservation:
    lm = _landmarks(centre, eye_distance)
    if noise is not None:
        lm = lm + noise
    quad = ffhq_quad(lm)
    lo, hi = quad.min(0), quad.max(0)
    return FaceObservation(quad, box=(int(lo[0]), int(lo[1]), int(hi[0]), int(hi[1])), landmarks=lm)


def _is_square(quad: np.ndarray) -> bool:
    top, left = quad[3] - quad[0], quad[1] - quad[0]
    return (abs(np.hypot(*top) - np.hypot(*left)) < 1e-6 * np.hypot(*top) and abs(top @ left) < 1e-6 * (top @ top)
            and np.allclose(quad[2], quad[1] + top))


def _read(path):
    from hyperinverter.video import iter_frames, probe_video

    info = probe_video(path)
    return list(iter_frames(info)), info


def _write(frames, path, fps=12, crf=6):
    from hyperinverter.video import SegmentWriter

    frames = list(frames)
    w = SegmentWriter(path, frames[0].shape[1], frames[0].shape[0], Fraction(fps), crf=crf)
    for f in frames:
        w.write(f)
    return w.close()


def _add_tone(video, out, seconds):
    """``video`` with a sine tone as its audio track (AAC) -> ``out``."""
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-i", str(video),
                    "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=16000:duration={seconds}",
                    "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac", "-shortest", str(out)], check=True)
    return out


# ---------------------------------------------------------------------------- crops and the one-euro filter
def test_crop_parsing_and_rect_quads():
    assert centred_square(112, 80) == (16, 0, 80, 80) and centred_square(60, 90) == (0, 15, 60, 60)
    assert parse_crop("center", 112, 80) == (16, 0, 80, 80)
    assert parse_crop(" 4,5,32,40 ", 112, 80) == (4, 5, 32, 40)
    for bad, match in (("1,2,3", "x,y,w,h"), ("a,b,c,d", "x,y,w,h"), ("0,0,4,4", "at least 8x8"),
                       ("100,0,20,20", "outside the 112x80 frame"), ("-1,0,20,20", "outside")):
        with pytest.raises(ValueError, match=match):
            parse_crop(bad, 112, 80)
    quad = rect_quad(4, 5, 32, 40)  # the pixels 4..35 x 5..44 exactly: bounds with no margin
    assert quad_bounds(quad, margin=0) == (4, 5, 36, 45)
    faces = FixedCrop(4, 5, 32, 40)(np.zeros((80, 112, 3), np.uint8))
    assert len(faces) == 1 and np.array_equal(faces[0].quad, quad)


def test_quad_params_round_trip():
    quad = ffhq_quad(_landmarks((50, 60), 20, angle=0.3))
    np.testing.assert_allclose(quad_from_params(quad_params(quad)), quad, atol=1e-12)


def test_tracker_steadies_a_jittering_face_and_keeps_it_square():
    rng = np.random.default_rng(0)
    truth = ffhq_quad(_landmarks((160, 120), 40))
    tracker = FaceTracker()
    raw, smooth = [], []
    for t in range(100):
        face = _face((160, 120), 40, noise=rng.normal(0, 1.5, (68, 2)))
        raw.append(face.quad)
        quad = tracker.update([face], t / 25)
        assert quad is not None and _is_square(quad)
        smooth.append(quad)
    raw, smooth = np.array(raw[20:]), np.array(smooth[20:])
    jitter = lambda q: np.abs(np.diff(q, axis=0)).mean()  # noqa: E731  frame-to-frame corner motion
    assert jitter(smooth) < 0.25 * jitter(raw)
    assert np.abs(smooth - truth).mean() < 0.7 * np.abs(raw - truth).mean()  # and nearer the truth


def test_tracker_follows_motion_with_little_lag():
    tracker = FaceTracker()
    errors = []
    for t in range(75):  # 3 s at 25 frames/s; the face (quad ~160 px) moves 60 px/s to the right, then stops
        x = 100 + 60 * min(t, 50) / 25
        quad = tracker.update([_face((x, 120), 40)], t / 25)
        errors.append(np.abs(quad - ffhq_quad(_landmarks((x, 120), 40))).max())
    size = FaceObservation(ffhq_quad(_landmarks((0, 0), 40))).size
    assert max(errors[10:50]) < 0.05 * size  # moving: a lag of under 5 % of the face
    assert errors[-1] < 0.002 * size  # at rest again: converged


def test_one_euro_filter_passes_constants_and_checks_time():
    f = OneEuroFilter()
    x = np.array([1.0, -2.0, 3.5])
    for t in range(5):
        np.testing.assert_array_equal(f(x, t / 30), x)
    with pytest.raises(ValueError, match="increase"):
        f(x, 0.0)
    with pytest.raises(ValueError, match="min_cutoff"):
        OneEuroFilter(min_cutoff=0)


def test_tracker_keeps_one_face_and_counts_missing_frames():
    big, small = (100, 100), (300, 100)
    tracker = FaceTracker(patience=3)
    assert tracker.update([_face(small, 20), _face(big, 30)], 0.0) is not None
    assert abs(tracker.centre[0] - 100) < 1  # the largest face is picked ...
    quad = tracker.update([_face(small, 60), _face(big, 30)], 0.04)  # ... and kept when the other grows larger
    assert abs(quad.mean(0)[0] - 100) < 1
    # gone for three frames (within the patience): None, and the other face is not taken instead
    assert [tracker.update([_face(small, 60)], (2 + k) / 25) for k in range(3)] == [None] * 3
    assert tracker.update([_face(big, 30), _face(small, 60)], 5 / 25).mean(0)[0] == pytest.approx(100, abs=1)
    for k in range(4):  # gone for longer than the patience: the tracker picks afresh (now the larger one)
        tracker.update([], (6 + k) / 25)
    assert abs(tracker.update([_face(big, 30), _face(small, 60)], 10 / 25).mean(0)[0] - 300) < 1
    # --face N: the N-th from the left, whatever the sizes
    left = FaceTracker(face_index=0)
    assert abs(left.update([_face(small, 60), _face(big, 30)], 0).mean(0)[0] - 100) < 1
    assert FaceTracker(face_index=2).update([_face(small, 60), _face(big, 30)], 0) is None
    with pytest.raises(ValueError, match="--face"):
        FaceTracker(face_index=-1)


def test_tracker_state_round_trip_continues_identically():
    rng = np.random.default_rng(1)
    faces = [[_face((120 + 2 * t, 90), 30, rng.normal(0, 1, (68, 2)))] for t in range(30)]
    a = FaceTracker()
    out_a = [a.update(f, t / 25) for t, f in enumerate(faces)]
    b = FaceTracker()
    for t, f in enumerate(faces[:12]):
        b.update(f, t / 25)
    c = FaceTracker()
    c.load_state_dict(b.state_dict())
    for t, f in enumerate(faces[12:], start=12):
        np.testing.assert_array_equal(c.update(f, t / 25), out_a[t])


# ------------------------------------------------------------------------------------------ codes
def test_blend_of_factored_codes_is_the_blend_of_the_dense_residuals():
    from hyperinverter.stylegan2.residuals import LowRankResidual

    g = torch.Generator().manual_seed(0)
    w2, b2 = torch.randn(4, 6 * 3 * 3, generator=g), torch.randn(6 * 3 * 3, generator=g)
    h = torch.randn(3, 6, 4, generator=g)
    dense = torch.randn(3, 5, generator=g)
    deltas = {"conv": LowRankResidual(h, w2, b2, (6, 6, 3, 3)), "bias": dense}
    factors = Factors()
    frames = factors.split(torch.randn(3, 2, 8, generator=g), deltas)
    mixed = blend(frames, [-1, 0, 1], sigma=1.0)
    wts = torch.tensor([np.exp(-0.5), 1.0, np.exp(-0.5)], dtype=torch.float32)
    wts = wts / wts.sum()
    ws, res = factors.residuals([mixed])
    expected = (deltas["conv"].dense() * wts.view(3, 1, 1, 1, 1)).sum(0)
    torch.testing.assert_close(res["conv"][0], expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(res["bias"][0], (dense * wts.view(3, 1)).sum(0))
    assert isinstance(res.raw()["conv"], LowRankResidual)  # still factored
    assert blend(frames, [0, 1, 2], sigma=0) is frames[0]  # sigma 0: the frame's own codes
    back = FrameCodes.from_tensors(frames[1].to_tensors("x."), "x.")
    torch.testing.assert_close(back.parts["conv"], frames[1].parts["conv"])


# ------------------------------------------------------------------------------------- the editor
@pytest.fixture(scope="module")
def tiny_model():
    from test_inverter import make_model

    return make_model(seed=4)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory, tiny_model):
    path = tmp_path_factory.mktemp("video_model") / "tiny"
    tiny_model.save_pretrained(path)
    direction = torch.randn(tiny_model.generator.w_dim, generator=torch.Generator().manual_seed(2))
    np.save(path / "push.npy", (direction / direction.norm()).numpy())
    return path


def _noisy_clip(n=14, seed=0):
    """Frames [48, 64, 3]: a bright square with noise (a stand-in for a face) on a gradient."""
    rng = np.random.default_rng(seed)
    frames = []
    for t in range(n):
        f = np.tile(np.linspace(20, 200, 64, dtype=np.float64)[None, :, None], (48, 1, 3))
        f[8:40, 16 + t % 3:48 + t % 3] = 180
        frames.append(np.clip(f + rng.normal(0, 12, f.shape), 0, 255).astype(np.uint8))
    return frames


class _Blinking:
    """A landmark source that sees the fixed crop except in the frames listed (a pluggable source)."""

    def __init__(self, rect, hidden):
        self.crop, self.hidden, self.count = FixedCrop(*rect), set(hidden), -1

    def __call__(self, frame):
        self.count += 1
        return [] if self.count in self.hidden else self.crop(frame)


def _editor(model, source, smooth=0.0, batch_size=4, strength=3.0):
    direction = torch.ones(model.generator.w_dim) / model.generator.w_dim ** 0.5
    return FaceVideoEditor(model, direction, strength, source, fps=12.0, smooth=smooth, batch_size=batch_size)


def test_editor_edits_inside_the_crop_and_passes_faceless_frames(tiny_model):
    frames = _noisy_clip()
    rect = (12, 4, 40, 40)
    out = list(_editor(tiny_model, _Blinking(rect, hidden={3, 4, 9})).run(frames))
    assert [o.index for o in out] == list(range(len(frames)))
    left, top, right, bottom = quad_bounds(rect_quad(*rect), margin=2)
    outside = np.ones((48, 64), bool)
    outside[max(top, 0):bottom, max(left, 0):right] = False
    for o, f in zip(out, frames):
        assert o.source is f or np.array_equal(o.source, f)
        if o.index in (3, 4, 9):
            assert not o.has_face and np.array_equal(o.image, f)  # passed through unchanged
        else:
            assert o.has_face and np.array_equal(o.image[outside], f[outside])  # unchanged outside the crop
            assert np.abs(o.image[12:36, 20:44].astype(int) - f[12:36, 20:44]).mean() > 5  # edited inside


def test_editor_batching_does_not_change_the_result(tiny_model):
    frames = _noisy_clip(10)
    a = [o.image for o in _editor(tiny_model, FixedCrop(12, 4, 40, 40), smooth=1.0, batch_size=3).run(frames)]
    b = [o.image for o in _editor(tiny_model, FixedCrop(12, 4, 40, 40), smooth=1.0, batch_size=8).run(frames)]
    assert max(int(np.abs(x.astype(int) - y).max()) for x, y in zip(a, b)) <= 1


def test_smoothing_reduces_flicker(tiny_model):
    frames = _noisy_clip(16)
    region = (16, 8, 32, 32)
    flicker = {}
    for smooth in (0.0, 1.5):
        out = [o.image for o in _editor(tiny_model, FixedCrop(12, 4, 40, 40), smooth=smooth).run(frames)]
        flicker[smooth] = temporal_flicker(out, region)
    assert flicker[1.5] < 0.8 * flicker[0.0]


def test_editor_state_resumes_where_it_stopped(tiny_model):
    frames = _noisy_clip(13)
    hidden = {5}
    whole = [o.image for o in _editor(tiny_model, _Blinking((12, 4, 40, 40), hidden), smooth=1.0).run(frames)]
    first = _editor(tiny_model, _Blinking((12, 4, 40, 40), hidden), smooth=1.0)
    for o in first.run(frames):
        if o.index == 8:  # interrupted right after frame 8
            state, tensors = first.state_dict()
            break
    assert state["next_index"] == 9 and len(state["history"]) == 2  # the codes of frames 7 and 8
    second = _editor(tiny_model, _Blinking((12, 4, 40, 40), {h - 9 for h in hidden}), smooth=1.0)
    second.load_state_dict(state, tensors)
    rest = list(second.run(frames[9:]))
    assert [o.index for o in rest] == [9, 10, 11, 12]
    for o in rest:  # the same frames (up to float rounding: the resumed run batches other frames together)
        assert int(np.abs(o.image.astype(int) - whole[o.index]).max()) <= 1


# ------------------------------------------------------------------------------- files, end to end
@pytest.fixture(scope="module")
def portrait_video(tmp_path_factory):
    """A 24-frame 112x80 clip at 12 frames/s (with a sine tone) of a portrait moving and scaling slightly,
    and per frame the mask of its skin."""
    from hyperinverter.portraits import render_portrait, sample_attributes
    from hyperinverter.video.synthetic import place, portrait_clip

    folder = tmp_path_factory.mktemp("video")
    attrs = sample_attributes(3)
    clip = list(portrait_clip(frames=24, width=112, height=80, side=74, attrs=attrs))
    silent = _write([f for f, _ in clip], folder / "silent.mp4", fps=12)
    path = _add_tone(silent, folder / "portrait.mp4", 2)
    size = 148  # what portrait_clip renders at for side 74
    light = render_portrait(dataclasses.replace(attrs, skin_tone=0.0), size)
    dark = render_portrait(dataclasses.replace(attrs, skin_tone=1.0), size)
    canvas = np.zeros((80, 112, 3), np.uint8)
    masks = [np.abs(place(light, p, canvas).astype(int) - place(dark, p, canvas)).sum(-1) > 60 for _, p in clip]
    return path, masks


def test_video_command_applies_the_known_edit(portrait_video, tmp_path, capsys):
    path, masks = portrait_video
    out = tmp_path / "edited.mp4"
    assert main(["video", str(path), "-o", str(out), "--direction", "skin_tone", "--strength", "1", "--preview",
                 "--crf", "12", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "fixed crop 16,0,80,80" in text and "0 frames without the face" in text and "audio: copied" in text
    src, info_in = _read(path)
    edited, info = _read(out)
    assert (info.width, info.height, info.frame_rate, info.frames) == (112, 80, Fraction(12), 24)
    assert info.audio == "aac" and info_in.audio == "aac"
    x, y, w, h = centred_square(112, 80)
    outside = np.ones((80, 112), bool)
    outside[:, x - 3:x + w + 3] = False
    darker, changes = [], []
    for a, b, skin in zip(src, edited, masks):
        a, b = a.astype(float), b.astype(float)
        assert np.abs(a - b)[outside].mean() < 2.0  # outside the crop: as it was (up to the codec)
        darker.append((b - a)[skin].mean())
        changes.append(np.abs(b - a)[:, x + 4:x + w - 4].mean())
    assert np.mean(changes) > 8  # the crop is re-rendered
    assert np.mean(darker) < -15 and max(darker) < 0  # skin_tone +1 darkens the skin, in every frame
    preview, pinfo = _read(tmp_path / "edited_preview.mp4")
    assert (pinfo.width, pinfo.height, pinfo.frames) == (224, 80, 24)
    assert np.abs(preview[5][:, :112].astype(float) - src[5]).mean() < 3  # input | edited
    assert np.abs(preview[5][:, 112:].astype(float) - edited[5]).mean() < 3
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # the chunks folder is gone


def test_video_command_resumes_after_an_interrupt(tiny_model_dir, tmp_path, capsys, monkeypatch):
    import hyperinverter.video.pipeline as pipeline
    from hyperinverter.video import parts_folder, read_progress

    src = _write(_noisy_clip(13), tmp_path / "in.mp4", fps=10)  # chunks of 4, 4, 4 and 1 frames
    args = ["video", str(src), "--model", str(tiny_model_dir), "--direction", str(tiny_model_dir / "push.npy"),
            "--strength", "4", "--crop", "center", "--smooth", "--chunk", "4", "--batch-size", "3", "--quiet"]
    real = pipeline.iter_frames

    def interrupted(info, start=0):
        for k, frame in enumerate(real(info, start)):
            if k == 12:  # frames 0-9 are out by then (batches of 3, 2 frames of lookahead)
                raise KeyboardInterrupt
            yield frame

    monkeypatch.setattr(pipeline, "iter_frames", interrupted)
    out = tmp_path / "out.mp4"
    assert main(args + ["-o", str(out)]) == 130
    assert "run the same command again" in capsys.readouterr().err
    assert not out.exists() and read_progress(out)["frames_done"] == 8  # two chunks of 4 finished
    monkeypatch.setattr(pipeline, "iter_frames", real)
    assert main(args + ["-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "8 frames came from the interrupted run" in text and not parts_folder(out).exists()
    assert main(args + ["-o", str(tmp_path / "whole.mp4")]) == 0  # the same, uninterrupted
    resumed, info = _read(out)
    whole, _ = _read(tmp_path / "whole.mp4")
    assert info.frames == 13 and info.frame_rate == 10 and info.duration == pytest.approx(1.3, abs=0.01)
    # the same frames up to float rounding (other batches after the resume) and what the codec makes of it
    assert max(np.abs(a.astype(float) - b).mean() for a, b in zip(resumed, whole)) < 0.5
    assert all(np.array_equal(a, b) for a, b in zip(resumed[:8], whole[:8]))  # the chunks kept from the first run


def test_video_command_refuses_clearly(tiny_model_dir, tmp_path, capsys):
    src = _write(_noisy_clip(3), tmp_path / "in.mp4")
    base = ["--model", str(tiny_model_dir), "--direction", str(tiny_model_dir / "push.npy"), "--crop", "center"]

    def error(args) -> str:
        assert main(["video", *base, *args]) == 2  # options given last win
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err
        return err

    assert "refusing to overwrite inputs" in error([str(src), "-o", str(src), "--overwrite"])
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    err = error([str(tmp_path / "broken.mp4"), "-o", str(tmp_path / "o.mp4")])
    assert "broken.mp4: not a readable video (" in err
    assert "no such file" in error([str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "o.mp4")])
    assert "unsupported output video type '.avi'" in error([str(src), "-o", str(tmp_path / "o.avi")])
    err = error([str(src), "-o", str(tmp_path / "o.mp4"), "--crop", "0,0,500,20"])
    assert "outside the 64x48 frame" in err
    (tmp_path / "exists.mp4").write_bytes(b"x")
    assert "--overwrite" in error([str(src), "-o", str(tmp_path / "exists.mp4")])


def test_video_io_odd_sizes_rotation_and_audio_only(tmp_path):
    from hyperinverter.video import VideoError, iter_frames, probe_video

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (27, 35, 3), dtype=np.uint8) for _ in range(5)]
    odd = _write(frames, tmp_path / "odd.mp4", fps=25, crf=0)  # odd sizes: kept (4:4:4 chroma), lossless here
    info = probe_video(odd)
    assert (info.width, info.height, info.frames, info.frame_rate) == (35, 27, 5, 25)
    back = list(iter_frames(info))
    assert len(back) == 5 and max(np.abs(a.astype(int) - b).mean() for a, b in zip(frames, back)) < 1.5
    assert [f.tobytes() for f in iter_frames(info, start=3)] == [f.tobytes() for f in back[3:]]
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-display_rotation:v:0", "90", "-i", str(odd),
                    "-c", "copy", str(tmp_path / "rotated.mp4")], check=True)
    rotated = probe_video(tmp_path / "rotated.mp4")  # decoded upright: the sizes swap
    assert (rotated.width, rotated.height) == (27, 35) and next(iter_frames(rotated)).shape == (35, 27, 3)
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "sine=frequency=440:sample_rate=8000:duration=0.5", "-c:a", "aac", str(tmp_path / "tone.m4a")],
                   check=True)
    with pytest.raises(VideoError, match=r"tone.m4a: not a readable video \(no video stream\)"):
        probe_video(tmp_path / "tone.m4a")


# ----------------------------------------------------------------------------------------- dlib
@pytest.fixture(scope="module")
def dlib_source():
    pytest.importorskip("dlib", reason="dlib is not installed (pip install 'hyperinverter[faces]')")
    from hyperinverter.faces import LandmarksModelError, find_landmarks_model
    from hyperinverter.video import DlibLandmarks

    try:
        find_landmarks_model()
    except LandmarksModelError as e:
        pytest.skip(f"dlib's landmark model is not installed: {e}")
    return DlibLandmarks()


def test_dlib_source_and_tracker_follow_a_real_face(dlib_source):
    data = pytest.importorskip("skimage.data", reason="scikit-image is needed for the test photograph")
    photo = np.asarray(Image.fromarray(data.astronaut()).resize((256, 256)))
    tracker = FaceTracker()
    centres = []
    for k in range(5):  # the photo slides 3 px to the right per frame
        frame = np.roll(photo, 3 * k, axis=1)
        faces = dlib_source(frame)
        assert len(faces) == 1 and faces[0].landmarks.shape == (68, 2)
        assert 60 < faces[0].size < 120 and _is_square(faces[0].quad)
        centres.append(faces[0].centre)
        quad = tracker.update(faces, k / 25)
        assert quad is not None and _is_square(quad)
    moves = np.diff(np.array(centres)[:, 0])
    assert np.all(np.abs(moves - 3) < 1.5)  # the detections move with the face
    assert np.abs(tracker.centre - centres[-1]).max() < 1e-9
