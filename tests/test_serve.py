"""``hyperinverter serve``: the session logic on a tiny model, bad inputs, the bounded queue, the command,
and the real page driven in Debian's chromium through Playwright (localhost only)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_inverter import make_model

from hyperinverter.editing import Direction, GanSpacePCA, save_direction, save_ganspace
from hyperinverter.serve import ImageLimits, ServeSession, UploadError, save_codes
from hyperinverter.serve.directions import combined_offset, load_directions
from hyperinverter.serve.images import centre_crop, make_aligner
from hyperinverter.serve.session import OutputStore
from hyperinverter.workflows import load_codes

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOT = ROOT / "out" / "screenshots" / "serve.png"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Gradio's queue triggers pandas deprecation warnings of its own.
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
              pytest.mark.usefixtures("one_torch_thread")]
DIRECTION_NAMES = ["age", "ganspace_pc0", "ganspace_pc1", "ganspace_pc2", "pose", "smile"]
#: How long ``hyperinverter serve`` may take to answer (about 10 s idle; far more on a loaded 2-core machine).
SERVE_STARTUP_S = 180


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny HyperInverter (32 px, w_dim 32, 8 ws rows) with direction files of every format and one bad one."""
    path = tmp_path_factory.mktemp("serve") / "tiny"
    make_model(seed=4).save_pretrained(path)
    folder = path / "directions"
    folder.mkdir()
    gen = torch.Generator().manual_seed(3)
    unit = torch.randn(32, generator=gen)
    np.save(folder / "smile.npy", (unit / unit.norm())[None].numpy())  # InterFaceGAN boundary [1, w_dim]
    save_direction(Direction("age", torch.randn(32, generator=gen), kind="interfacegan", layers=(0, 4)), folder)
    torch.save(torch.randn(8, 32, generator=gen), folder / "pose.pt")  # per-row [num_ws, w_dim]
    comps = torch.linalg.qr(torch.randn(32, 3, generator=gen))[0].T
    save_ganspace(GanSpacePCA(comps, torch.zeros(32), torch.tensor([3.0, 2.0, 1.0])), folder / "ganspace.npz")
    np.save(folder / "wrong.npy", np.ones((1, 31), np.float32))  # wrong dimension: skipped with a warning
    return path


@pytest.fixture(scope="module")
def session(model_dir, tmp_path_factory):
    s = ServeSession.from_folder(model_dir, align=False, output_dir=tmp_path_factory.mktemp("serve-out"))
    yield s
    s.close()


def _image(path: Path, size=(48, 40), seed=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def recon(session, tmp_path_factory):
    return session.invert_file(_image(tmp_path_factory.mktemp("img") / "photo.png"))


# ------------------------------------------------------------------------------------- session logic
def test_startup_loads_every_direction_format_and_skips_a_wrong_dimension(session, model_dir):
    assert session.direction_names == DIRECTION_NAMES
    assert session.name == "tiny" and session.resolution == 32
    skipped = [n for n in session.notes if "wrong.npy" in n]
    assert len(skipped) == 1 and "[1, 31]" in skipped[0] and "this model needs" in skipped[0]
    assert "--no-align" in session.notes[0]
    # Names are made unique when two sources hold the same direction.
    found, warnings = load_directions([model_dir / "directions" / "smile.npy"] * 2 + [model_dir / "nope"], 32, 8)
    assert [d.name for d in found] == ["smile", "smile_2"] and "no such directions folder" in warnings[0]


def test_invert_gives_three_images_metrics_codes_and_latency(recon):
    assert set(recon.images) == {"input", "phase1", "hyperinverter"}
    assert all(im.size == (32, 32) and im.mode == "RGB" for im in recon.images.values())
    for key in ("phase1", "hyperinverter"):
        m = recon.metrics[key]
        assert m["mse"] > 0 and np.isfinite(m["psnr"]) and -1 <= m["ssim"] <= 1
    assert recon.result.ws.shape == (1, 8, 32) and recon.result.deltas
    assert recon.latency_ms > 0 and not recon.aligned
    assert recon.notes == ["centre-cropped 48x40 to 40x40 and resized to 32x32"]


def test_edit_rerenders_from_cached_codes_without_encoding(session, recon, monkeypatch):
    def no_encoding(*args, **kwargs):
        raise AssertionError("an edit must not run the encoders")

    monkeypatch.setattr(session.model.w_encoder, "forward", no_encoding)
    monkeypatch.setattr(session.model.w_bar_encoder, "forward", no_encoding)
    zero = session.edit(recon, [0.0] * len(DIRECTION_NAMES))
    assert np.abs(np.asarray(zero.image, np.int16) - np.asarray(recon.images["hyperinverter"], np.int16)).max() <= 1
    values = [0.0] * len(DIRECTION_NAMES)
    values[DIRECTION_NAMES.index("age")] = 2.0
    edited = session.edit(recon, values)
    assert edited.strengths == {"age": 2.0}
    age = session.directions[0].vector
    moved = edited.result.ws - recon.result.ws
    assert torch.allclose(moved[0, :4], 2.0 * age.expand(4, 32), atol=1e-5)
    assert moved[0, 4:].abs().max() == 0  # layers (0, 4): the other rows stay
    assert edited.result.deltas is recon.result.deltas  # residuals kept, not recomputed
    assert np.asarray(edited.image).tolist() != np.asarray(zero.image).tolist()
    assert edited.latency_ms > 0 and edited.pasted is None
    summary = session.latency.summary("edit")
    assert summary["count"] >= 2 and "edit latency" in session.latency_text()
    with pytest.raises(ValueError, match="slider values"):
        session.edit(recon, [1.0])


def test_shown_pictures_are_files_of_their_own_written_whole_and_old_ones_go(tmp_path):
    store = OutputStore(tmp_path, keep_shown=2)
    picture = Image.fromarray(np.full((8, 8, 3), 77, np.uint8))
    paths = [store.image_file(picture, "edit") for _ in range(3)]
    assert len(set(paths)) == 3 and all(p.parent == tmp_path / "shown" and p.name.endswith("_edit.png") for p in paths)
    assert not paths[0].exists() and [np.asarray(Image.open(p)).tolist() for p in paths[1:]] == \
        [np.asarray(picture).tolist()] * 2
    assert sorted((tmp_path / "shown").iterdir()) == paths[1:]  # no temporaries left behind


def test_combined_offset_adds_directions_on_their_rows():
    a = Direction("a", torch.ones(4), layers=(1, 3))
    b = Direction("b", torch.arange(12.0).reshape(3, 4))
    assert combined_offset([a, b], [0, 0], 3, 4) is None
    offset = combined_offset([a, b], [2.0, 0.5], 3, 4)
    expected = 0.5 * torch.arange(12.0).reshape(3, 4)
    expected[1:3] += 2.0
    assert torch.equal(offset, expected)


def test_interpolation_and_downloads(session, recon, tmp_path):
    b = session.invert_file(_image(tmp_path / "b.png", (32, 32), seed=1))
    assert b.notes == ["used the 32x32 image as it is"]
    result = session.interpolate(recon, b, steps=4)
    assert len(result.frames) == 4 and result.strip.size == (4 * 34 + 2, 36)
    assert result.gif.is_file() and Image.open(result.gif).n_frames == 6  # forth and back
    assert np.asarray(result.frames[0]).tolist() == np.asarray(recon.images["hyperinverter"]).tolist()
    with pytest.raises(ValueError, match="steps"):
        session.interpolate(recon, b, steps=1)

    files = session.save_reconstruction(recon)
    assert [p.name for p in files] == ["photo.png", "photo_phase1.png", "photo_input.png",
                                       "photo.codes.safetensors"]
    assert torch.equal(load_codes(files[-1]).ws, recon.result.ws.cpu())
    values = [0.0] * len(DIRECTION_NAMES)
    values[-1] = 1.5
    edit_files = session.save_edit(recon, values)
    assert [p.name for p in edit_files] == ["photo_smile+1.5.png", "photo_smile+1.5.codes.safetensors"]
    pt = save_codes(recon.result, tmp_path / "codes", fmt="pt")
    assert pt.name == "codes.codes.pt" and set(torch.load(pt)) == set(recon.result.codes())
    with pytest.raises(ValueError, match="format"):
        save_codes(recon.result, tmp_path / "x", fmt="npz")


# ---------------------------------------------------------------------------------------- bad inputs
def test_bad_uploads_get_clear_messages(session, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("this is not an image")
    with pytest.raises(UploadError, match="not an image"):
        session.prepare(text)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(UploadError, match="empty"):
        session.prepare(empty)
    with pytest.raises(UploadError, match="too small"):
        session.prepare(_image(tmp_path / "tiny.png", (12, 40)))
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(_image(tmp_path / "full.png", (64, 64)).read_bytes()[:300])
    with pytest.raises(UploadError, match="truncated or corrupt"):
        session.prepare(truncated)
    with pytest.raises(UploadError, match="file not found"):
        session.prepare(tmp_path / "missing.png")


def test_large_uploads_are_downscaled_and_huge_ones_refused(model_dir, tmp_path):
    small = ServeSession(make_model(seed=4), limits=ImageLimits(min_size=16, downscale_pixels=64 * 64,
                                                                 max_pixels=100 * 100), output_dir=tmp_path / "o")
    prepared = small.prepare(_image(tmp_path / "big.png", (96, 72)))
    assert prepared.notes[0].startswith("downscaled the 96x72 image to 73x55")
    assert prepared.crop.size == (32, 32)
    with pytest.raises(UploadError, match="too large"):
        small.prepare(_image(tmp_path / "huge.png", (120, 100)))
    with pytest.raises(ValueError):
        ImageLimits(downscale_pixels=10, max_pixels=5)


class _Face:
    def __init__(self, image, quad_size=50.0):
        self.image, self.quad_size = image, quad_size

    def paste_back(self, edited, photo):
        out = photo.copy()
        out.paste(edited.resize((16, 16)), (0, 0))
        return out


class _Aligner:
    """Stands in for hyperinverter.faces.FaceAligner (no dlib needed)."""

    def __init__(self, error=None, faces=1):
        self.error, self.faces = error, faces

    def align(self, image, all_faces=False, output_size=None):
        if self.error is not None:
            raise self.error
        if self.faces > 1 and not all_faces:
            from hyperinverter.faces import MultipleFacesError

            raise MultipleFacesError("2 faces", count=self.faces)
        crop = image.resize((output_size, output_size))
        return [_Face(crop, quad_size=10.0 * (i + 1)) for i in range(self.faces)]


def test_aligned_faces_are_pasted_back_and_no_face_falls_back_to_a_centre_crop(session, tmp_path, monkeypatch):
    from hyperinverter.faces import NoFaceError

    photo = _image(tmp_path / "face.png", (60, 50))
    monkeypatch.setattr(session, "aligner", _Aligner())
    recon = session.invert_file(photo)
    assert recon.aligned and recon.notes == ["aligned the face (FFHQ alignment)"]
    outcome = session.edit(recon, [0, 0, 0, 0, 0, 2.0], paste=True)
    assert outcome.pasted.size == (60, 50) and outcome.paste_ms is not None
    names = [p.name for p in session.save_edit(recon, [0, 0, 0, 0, 0, 2.0])]
    assert "face_smile+2_photo.png" in names

    monkeypatch.setattr(session, "aligner", _Aligner(faces=2))
    assert session.prepare(photo).notes[0] == "2 faces found: used the largest"
    monkeypatch.setattr(session, "aligner", _Aligner(NoFaceError("none")))
    recon = session.invert_file(photo)
    assert not recon.aligned and recon.notes[0] == "no face found: centre-cropped instead"
    assert session.edit(recon, [0] * 6, paste=True).pasted is None


def test_alignment_off_or_unavailable_means_centre_crops(tmp_path):
    assert make_aligner(False, 32) == (None, "face alignment is off (--no-align): uploads are centre-cropped")
    aligner, note = make_aligner(True, 32, landmarks=tmp_path / "missing.dat")
    assert aligner is None and "unavailable" in note and "centre-cropped" in note
    crop, note = centre_crop(Image.new("RGB", (30, 90)), 16)
    assert crop.size == (16, 16) and note == "centre-cropped 30x90 to 30x30 and resized to 16x16"


# ---------------------------------------------------------------------------------------- command line
def test_serve_command_options():
    from hyperinverter.cli import build_parser

    args = build_parser().parse_args(["serve", "--model", "m", "--no-align", "--directions", "d1",
                                      "--directions", "d2", "--queue-size", "3"])
    assert (args.host, args.port, args.queue_size, args.no_align) == ("127.0.0.1", 7860, 3, True)
    assert [str(d) for d in args.directions] == ["d1", "d2"] and args.device == "auto"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--share"])


def test_package_import_needs_no_gradio_and_missing_gradio_names_the_extra(monkeypatch):
    code = "import sys, hyperinverter.serve, hyperinverter.serve.app; assert 'gradio' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    from hyperinverter.errors import HyperInverterError
    from hyperinverter.serve.app import import_gradio

    monkeypatch.setitem(sys.modules, "gradio", None)
    with pytest.raises(HyperInverterError, match=r"hyperinverter\[serve\]"):
        import_gradio()


# ------------------------------------------------------------------------------------ the live server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(model_dir, tmp_path_factory):
    """The page served on 127.0.0.1 in a background thread (queue of 2), shut down at the end."""
    pytest.importorskip("gradio", reason="needs gradio: pip install 'hyperinverter[serve]'")
    from hyperinverter.serve.app import start

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
        s = ServeSession.from_folder(model_dir, align=False, output_dir=tmp_path_factory.mktemp("served"))
        app = start(s, host="127.0.0.1", port=_free_port(), queue_size=2)
        try:
            yield app
        finally:
            app.close()
            s.close()


def test_page_handlers_work_and_turn_errors_into_messages(server, tmp_path):
    from hyperinverter.serve.app import _Handlers, import_gradio

    h = _Handlers(import_gradio(), server.session)
    sliders = [0.0] * 5 + [1.0]
    out = h.invert(None, str(_image(tmp_path / "a.png")), *sliders)
    recon = out[0]  # the page session's key into session.store, not the codes themselves
    assert isinstance(recon, str) and len(recon) >= 16 and server.session.recall(recon).images == {}
    assert len(out) == 11 and "inverted in" in out[6] and "HyperInverter" in out[4] and len(out[5]) == 4
    assert out[10] is None  # a new upload clears the refined picture
    assert out[8].startswith("last edit") and out[9]["visible"] is False and out[9]["value"] is None
    # Every picture goes to the page as a file of its own (never a PIL image, which Gradio caches by content
    # hash with a plain rewrite that equal pictures race on: a short download).
    assert all(isinstance(p, str) and Image.open(p).size == (32, 32) for p in out[1:4] + (out[7],))
    fresh = server.session.invert_file(tmp_path / "a.png")
    assert np.asarray(Image.open(out[3])).tolist() == np.asarray(fresh.images["hyperinverter"]).tolist()
    image, latency = h.edit(recon, *sliders)
    again, _ = h.edit(recon, *sliders)
    assert image != again and Image.open(image).size == (32, 32) and " ms" in latency
    assert Path(image).read_bytes() == Path(again).read_bytes()  # the same picture, two files
    reset = h.reset(recon)
    assert reset[:6] == (0.0,) * 6 and Image.open(reset[6]).size == (32, 32)
    files, status = h.save_edit(recon, *sliders)
    assert len(files) == 2 and status.startswith("saved 2 files")
    # Refine: tuned weights replace the page's record; the sliders then edit the refined result
    key, refined, table, status, edited, latency = h.refine(recon, 8, *sliders)
    kept = server.session.recall(key)
    assert Image.open(refined).size == (32, 32) and "HyperInverter + refine 8 steps" in table
    assert "refined (8 steps)" in status and Image.open(edited).size == (32, 32)
    assert kept.metrics["refined"]["mse"] < kept.metrics["hyperinverter"]["mse"] and kept.prepared.tensor is not None
    recon = key
    with pytest.warns(UserWarning, match="refine steps"):
        h.refine(recon, 0, *sliders)
    gif, strip, gif_files, status = h.interpolate(recon, str(_image(tmp_path / "b.png", seed=2)), 5)
    assert gif.endswith(".gif") and Image.open(strip).size == (5 * 34 + 2, 36) and status.startswith("5 frames")

    bad = tmp_path / "bad.png"
    bad.write_text("no pixels here")
    with pytest.warns(UserWarning, match="not an image"):
        out = h.invert(recon, str(bad), *sliders)
    assert "not an image" in out[6] and len(out) == 11 and server.session.recall(recon) is not None
    assert h.edit(None, *sliders)[1] == "upload an image first"
    with pytest.warns(UserWarning, match="upload both"):
        h.interpolate(None, None, 8)
    with pytest.warns(UserWarning, match="not an image"):
        h.interpolate(recon, str(bad), 8)
    with pytest.warns(UserWarning, match="steps must be"):
        h.interpolate(recon, str(tmp_path / "b.png"), 1)


def test_full_queue_answers_busy_and_the_server_survives(server, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.utils import QueueError

    image = _image(tmp_path / "q.png", (32, 32))
    real = server.session.invert_file

    def slow(path):
        time.sleep(0.4)
        return real(path)

    client = Client(server.url, verbose=False)
    server.session.invert_file = slow
    try:
        jobs = [client.submit(handle_file(str(image)), *[0.0] * 6, api_name="/invert") for _ in range(6)]
        outcomes = []
        for job in jobs:
            try:
                job.result(timeout=30)
                outcomes.append("ok")
            except QueueError as e:
                assert "full" in str(e)
                outcomes.append("busy")
    finally:
        del server.session.invert_file
    assert outcomes.count("busy") >= 1 and outcomes.count("ok") >= 1
    after = client.submit(handle_file(str(image)), *[0.0] * 6, api_name="/invert").result(timeout=30)
    assert "inverted in" in after[5]  # still serving


def _launch_chromium(playwright, profile: Path):
    return playwright.chromium.launch_persistent_context(
        str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
        viewport={"width": 1280, "height": 900}, timeout=30_000)


def test_page_in_a_real_browser(server, tmp_path):
    """Upload, wait for the reconstruction, move a slider, see the edited image change; screenshot."""
    if not CHROMIUM.exists():
        pytest.skip(f"no chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright: pip install "
                                                                 "'hyperinverter[browser-test]'")
    outside = []

    def local_only(route):
        url = route.request.url
        if url.startswith(("http://127.0.0.1", "data:", "blob:")):
            route.continue_()
        else:  # the page must render without any CDN
            outside.append(url)
            route.abort()

    image = _image(tmp_path / "upload.png", (64, 48), seed=5)
    with sync_api.sync_playwright() as p:
        context = _launch_chromium(p, tmp_path / "profile")
        try:
            page = context.new_page()
            page.set_default_timeout(30_000)
            page.route("**/*", local_only)
            page.goto(server.url, wait_until="domcontentloaded")
            page.set_input_files("#hi-upload input[type=file]", str(image))
            page.wait_for_selector("#hi-recon img")
            page.wait_for_function("() => document.querySelector('#hi-latency textarea').value.includes('ms')")
            status = page.locator("#hi-status textarea").input_value()
            assert "centre-cropped 64x48" in status and "inverted in" in status
            assert "HyperInverter" in page.locator("#hi-metrics").inner_text()
            before_src = page.locator("#hi-edit img").get_attribute("src")
            before_latency = page.locator("#hi-latency textarea").input_value()

            slider = page.locator("#hi-dir-5 input[type=range]")  # smile
            box = slider.bounding_box()
            slider.click(position={"x": box["width"] * 0.9, "y": box["height"] / 2})
            page.wait_for_function("(s) => document.querySelector('#hi-edit img').src !== s", arg=before_src)
            page.wait_for_function("(t) => document.querySelector('#hi-latency textarea').value !== t",
                                   arg=before_latency)
            after_src = page.locator("#hi-edit img").get_attribute("src")
            before_px = np.asarray(Image.open(_fetch(page, before_src)))
            after_px = np.asarray(Image.open(_fetch(page, after_src)))
            assert before_px.shape == after_px.shape == (32, 32, 3) and (before_px != after_px).any()
            assert float(page.locator("#hi-dir-5 input[type=number]").input_value()) > 1.5
            latency = page.locator("#hi-latency textarea").input_value()
            assert latency.startswith("last edit ") and " ms" in latency
            print(f"\nedit latency in the page: {latency}")

            # Refine: the refined picture appears, the metrics gain its row, the status its PSNR
            page.locator("#hi-refine").click()
            page.wait_for_selector("#hi-refined img")
            page.wait_for_function("() => document.querySelector('#hi-metrics').innerText.includes('refine')")
            assert "refined (30 steps)" in page.locator("#hi-status textarea").input_value()
            refined_px = np.asarray(Image.open(_fetch(page, page.locator("#hi-refined img").get_attribute("src"))))
            assert refined_px.shape == (32, 32, 3)

            SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SCREENSHOT), full_page=True)
            print(f"screenshot: {SCREENSHOT}")

            bad = tmp_path / "bad.png"
            bad.write_text("not pixels")
            page.locator("#hi-upload button[aria-label='Clear']").click()  # remove A, upload a non-image
            page.set_input_files("#hi-upload input[type=file]", str(bad))
            page.wait_for_function(
                "() => document.querySelector('#hi-status textarea').value.includes('not an image')")
        finally:
            context.close()
    assert outside == []
    assert SCREENSHOT.stat().st_size > 10_000


def _fetch(page, src: str):
    """The bytes behind an image URL of the page (through the browser's own session)."""
    import io

    response = page.request.get(src)
    assert response.ok, src
    return io.BytesIO(response.body())


def test_serve_command_starts_and_stops(model_dir, tmp_path):
    """``hyperinverter serve`` as a user runs it: answers on 127.0.0.1, stops on Ctrl+C."""
    pytest.importorskip("gradio")
    port = _free_port()
    env = {**os.environ, "GRADIO_TEMP_DIR": str(tmp_path / "gradio"), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "hyperinverter", "serve", "--model", str(model_dir), "--port", str(port),
           "--no-align", "--threads", "1", "--queue-size", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    # Start-up imports torch and Gradio and loads the model: seconds on an idle machine, a minute or more on
    # a loaded 2-core one. Wait for the page (or the process's end) up to a generous deadline; a failure
    # says which of the two happened, after how long, and shows what the command printed.
    start, page = time.monotonic(), None
    try:
        while time.monotonic() - start < SERVE_STARTUP_S and proc.poll() is None and page is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    page = r.read().decode()
            except OSError:
                time.sleep(0.5)
        waited, code = time.monotonic() - start, proc.poll()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert page is not None and "<html" in page, (
        f"no page after {waited:.0f} s (" + (f"exited with {code}" if code is not None else
                                               f"still starting at the {SERVE_STARTUP_S} s deadline")
        + f"); its output:\n{out}")
    assert "6 directions" in out and "skipped direction" in out and f"127.0.0.1:{port}" in out


def test_missing_model_is_a_clear_error(capsys):
    pytest.importorskip("gradio")
    from hyperinverter.cli import main

    assert main(["serve", "--model", "no-such-model-here", "--no-align"]) == 2
    assert "no-such-model-here" in capsys.readouterr().err
