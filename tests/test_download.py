"""``hyperinverter download`` against a local HTTP server on 127.0.0.1 (no test touches the internet).

The server serves tiny files written by the tests in the official layouts (HyperInverter ``.pt``,
W-encoder ``.pt``, NVIDIA ``.pkl``, an InterFaceGAN direction), emulates Google Drive's download
endpoint with its "can't scan this file" confirmation form, honours HTTP Range requests, and can cut a
connection in the middle of a file.
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from helpers_formats import write_nvlabs_pickle
from helpers_official import write_official_files
from test_inverter import make_model

from hyperinverter import CheckpointError, HyperInverter
from hyperinverter.cli import main
from hyperinverter.convert import (Catalog, DownloadError, FetchOptions, RemoteFile, ZooModel, default_catalog,
                                   download, load_manifest, manifest_of)
from hyperinverter.convert.manifests import available_manifests
from hyperinverter.pretrained import resolve

pytestmark = pytest.mark.usefixtures("one_torch_thread")
ROOT = Path(__file__).resolve().parents[1]
SHARED_REFERENCE = ROOT.parent / "shared" / "reference"
LPIPS_DIR = Path(__file__).parent / "data" / "lpips"


# ---------------------------------------------------------------------------------------- the server
@dataclass
class ServerState:
    """What the local server serves and what it saw."""

    files: dict[str, bytes] = field(default_factory=dict)  # /files/<name>
    drive: dict[str, bytes] = field(default_factory=dict)  # Drive id -> bytes
    large: set[str] = field(default_factory=set)  # Drive ids answered with the confirmation page
    cut: dict[str, int] = field(default_factory=dict)  # name or id -> bytes sent before the next cut (once)
    no_range: set[str] = field(default_factory=set)  # names served without Range support
    html: set[str] = field(default_factory=set)  # names answered with an error page (status 200)
    log: list[tuple[str, str]] = field(default_factory=list)  # (path with query, Range header)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):  # noqa: N802 - http.server's naming
        state: ServerState = self.server.state
        parts = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(parts.query))
        state.log.append((self.path, self.headers.get("Range", "")))
        if parts.path == "/uc" and query.get("id") in state.drive:
            key = query["id"]
            if key in state.large:
                page = (f'<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title></head><body>'
                        f'<form id="download-form" action="/download" method="get">'
                        f'<input type="hidden" name="id" value="{key}"><input type="hidden" name="export" '
                        f'value="download"><input type="hidden" name="confirm" value="t">'
                        f'<input type="hidden" name="uuid" value="1234-abcd"></form></body></html>').encode()
                return self._send(200, page, "text/html; charset=utf-8")
            return self._file(key, state.drive[key])
        if parts.path == "/download" and query.get("id") in state.drive:
            if query.get("confirm") != "t" or query.get("uuid") != "1234-abcd":
                return self._send(403, b"bad confirmation", "text/plain")
            return self._file(query["id"], state.drive[query["id"]])
        name = urllib.parse.unquote(parts.path[len("/files/"):]) if parts.path.startswith("/files/") else None
        if name in state.html:
            return self._send(200, b"<html><head><title>Quota exceeded</title></head></html>", "text/html")
        if name in state.files:
            return self._file(name, state.files[name])
        self._send(404, b"not found", "text/plain")

    def _send(self, code: int, body: bytes, kind: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _file(self, key: str, data: bytes) -> None:
        state: ServerState = self.server.state
        start = 0
        found = urllib.parse.unquote(self.headers.get("Range", ""))
        if found.startswith("bytes=") and key not in state.no_range:
            start = int(found[len("bytes="):].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = state.cut.pop(key, None)
        if cut is not None:  # send part of the body, then drop the connection
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:  # the client went first
                pass
            return
        self.wfile.write(body)


@pytest.fixture()
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.state = ServerState()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.state, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture()
def home(tmp_path, monkeypatch):
    """An empty cache folder for the test ($HYPERINVERTER_HOME), and no mirror from the environment."""
    folder = tmp_path / "home"
    monkeypatch.setenv("HYPERINVERTER_HOME", str(folder))
    monkeypatch.delenv("HYPERINVERTER_DOWNLOAD_BASE", raising=False)
    monkeypatch.delenv("HYPERINVERTER_DRIVE_URL", raising=False)
    return folder


# ------------------------------------------------------------------------------- a tiny official zoo
@dataclass
class TinyZoo:
    model: HyperInverter
    blobs: dict[str, bytes]  # file name -> bytes
    manifests: dict[str, str]  # check -> manifest path


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory) -> TinyZoo:
    """A tiny model written as the official files, with manifests made from them (as the real ones were)."""
    from hyperinverter.stylegan2.formats import read_model_file

    root = tmp_path_factory.mktemp("zoo")
    model = make_model(seed=5)
    hi, we = write_official_files(model, None, root)
    write_nvlabs_pickle(root / "generator.pkl", model.generator)
    torch.save(torch.randn(1, 32, generator=torch.Generator().manual_seed(1)), root / "smile.pt")
    manifests = {}
    states = {"hyperinverter": torch.load(hi, weights_only=True)["state_dict"],
              "w_encoder": {k: v for k, v in torch.load(we, weights_only=True)["state_dict"].items()
                            if k.startswith("encoder.")},
              "generator": read_model_file(root / "generator.pkl")["G_ema"].state_dict()}
    for kind, state in states.items():
        path = root / f"manifest_{kind}.json"
        path.write_text(json.dumps(manifest_of(state, {"what": f"tiny {kind}"})))
        manifests[kind] = str(path)
    blobs = {p.name: p.read_bytes() for p in (hi, we, root / "generator.pkl", root / "smile.pt")}
    return TinyZoo(model, blobs, manifests)


def tiny_catalog(zoo: TinyZoo, base: str, gen_size=None) -> Catalog:
    """A catalogue of the tiny zoo: the generator on 'Drive' (large: confirmation page), the W-encoder on
    'Drive' (small: direct), the checkpoint and the direction on plain HTTP."""
    files = {
        "tiny-generator": RemoteFile("tiny-generator", "tiny-generator.pkl", "generator", drive_id="GEN",
                                     manifest=zoo.manifests["generator"], size=gen_size, use="tiny generator"),
        "tiny-w-encoder": RemoteFile("tiny-w-encoder", "tiny_w_encoder.pt", "w_encoder", drive_id="WENC",
                                     manifest=zoo.manifests["w_encoder"], use="tiny W-encoder"),
        "tiny-checkpoint": RemoteFile("tiny-checkpoint", "tiny_hyperinverter.pt", "hyperinverter",
                                      url=f"{base}/files/hyperinverter.pt", manifest=zoo.manifests["hyperinverter"],
                                      use="tiny HyperInverter checkpoint"),
        "tiny-smile": RemoteFile("tiny-smile", "tiny_smile.pt", "direction", url=f"{base}/files/smile.pt",
                                 options=(("w_dim", 32), ("num_ws", 8)), use="tiny smile direction"),
    }
    model = ZooModel("tiny-hd8", checkpoint="tiny-checkpoint", w_encoder="tiny-w-encoder", generator="tiny-generator",
                     directions=("tiny-smile",), domain_kind="tiny test faces", aligned_faces=True, phase1_psnr=20.0,
                     description="a tiny zoo model")
    return Catalog(files=files, models={"tiny-hd8": model}, groups={"tiny-all": ("tiny-hd8",)})


def serve_zoo(state: ServerState, zoo: TinyZoo) -> None:
    state.drive.update({"GEN": zoo.blobs["generator.pkl"], "WENC": zoo.blobs["w_encoder.pt"]})
    state.large.add("GEN")
    state.files.update({"hyperinverter.pt": zoo.blobs["hyperinverter.pt"], "smile.pt": zoo.blobs["smile.pt"]})


def options(base: str, **kw) -> FetchOptions:
    return FetchOptions(drive_url=f"{base}/uc", backoff=0.0, progress=False, timeout=10, **kw)


# ------------------------------------------------------------------------------------------------ tests
def test_download_checks_converts_and_the_model_works_by_name(server, home, tiny_zoo, tmp_path, capsys):
    state, base = server
    serve_zoo(state, tiny_zoo)
    catalog = tiny_catalog(tiny_zoo, base)
    report = download(["tiny-all"], catalog, options(base))
    folder = report.models["tiny-hd8"]
    assert folder == home / "models" / "tiny-hd8" and resolve("tiny-hd8") == folder
    # Drive: the confirmation form was followed for the large file; the small one came directly.
    paths = [p for p, _ in state.log]
    assert any(p.startswith("/uc?") and "id=GEN" in p for p in paths)
    assert any(p.startswith("/download?") and "uuid=1234-abcd" in p for p in paths)
    assert sorted(p.name for p in (home / "files").iterdir()) == sorted(f.filename for f in catalog.files.values())
    # By name: the same numbers as the source model.
    converted = HyperInverter.from_pretrained("tiny-hd8")
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    assert torch.allclose(converted.invert(x).image, tiny_zoo.model.invert(x).image, atol=1e-4)
    record = json.loads((folder / "domain.json").read_text())
    assert record["kind"] == "tiny test faces" and record["aligned_faces"] and record["psnr_mean"] == 20.0
    smile = json.loads((folder / "directions" / "smile.json").read_text())
    assert smile["kind"] == "interfacegan" and smile["strength"] == 3.0
    source = json.loads((folder / "source.json").read_text())
    assert source["files"]["tiny_hyperinverter.pt"].endswith("/files/hyperinverter.pt")
    # ... and on the command line.
    from PIL import Image

    Image.new("RGB", (32, 32), (120, 90, 60)).save(tmp_path / "face.png")
    capsys.readouterr()
    assert main(["edit", str(tmp_path / "face.png"), "--model", "tiny-hd8", "--direction", "smile", "--device", "cpu",
                 "-o", str(tmp_path / "edit")]) == 0
    assert (tmp_path / "edit" / "face_smile_+1.png").is_file()
    assert main(["generate", "--model", "tiny-hd8", "--seeds", "0-1", "--device", "cpu", "-o",
                 str(tmp_path / "g.png")]) == 0
    assert "the generator of model tiny-hd8" in capsys.readouterr().out
    # A second call fetches nothing.
    before = len(state.log)
    again = download(["tiny-hd8"], catalog, options(base))
    assert len(state.log) == before and set(again.cached) == {"tiny-hd8", *catalog.files}


def test_an_interrupted_transfer_resumes_with_a_range_request(server, home, tiny_zoo):
    state, base = server
    serve_zoo(state, tiny_zoo)
    catalog = tiny_catalog(tiny_zoo, base)
    data = tiny_zoo.blobs["hyperinverter.pt"]
    state.cut["hyperinverter.pt"] = len(data) // 3
    # retries=0: the call fails, keeps the bytes in a .part file, and nothing has the final name.
    with pytest.raises(DownloadError, match="run the command again to resume"):
        download(["tiny-checkpoint"], catalog, options(base, retries=0))
    final = home / "files" / "tiny_hyperinverter.pt"
    part = home / "files" / "tiny_hyperinverter.part.pt"
    assert not final.exists() and part.stat().st_size == len(data) // 3
    # The next call resumes where it stopped.
    download(["tiny-checkpoint"], catalog, options(base))
    assert final.read_bytes() == data and not part.exists()
    assert state.log[-1] == ("/files/hyperinverter.pt", f"bytes={len(data) // 3}-")
    # Within one call: the Drive file (behind its confirmation page) is cut, and the call resumes it.
    gen = tiny_zoo.blobs["generator.pkl"]
    state.cut["GEN"] = 1000
    download(["tiny-generator"], catalog, options(base, retries=3))
    assert (home / "files" / "tiny-generator.pkl").read_bytes() == gen
    assert any(r == "bytes=1000-" for _, r in state.log)


def test_a_server_without_range_support_starts_over(server, home, tiny_zoo):
    state, base = server
    serve_zoo(state, tiny_zoo)
    state.no_range.add("smile.pt")
    state.cut["smile.pt"] = 100
    download(["tiny-smile"], tiny_catalog(tiny_zoo, base), options(base))
    assert (home / "files" / "tiny_smile.pt").read_bytes() == tiny_zoo.blobs["smile.pt"]


def test_a_corrupt_file_is_refused_in_one_line_and_removed(server, home, tiny_zoo, monkeypatch, capsys):
    state, base = server
    serve_zoo(state, tiny_zoo)
    other = make_model(seed=6, hidden_dim=4)  # another hidden_dim: every hypernet shape differs
    bad = Path(home.parent / "bad")
    hi, _ = write_official_files(other, None, bad)
    state.files["hyperinverter.pt"] = hi.read_bytes()
    catalog = tiny_catalog(tiny_zoo, base)
    monkeypatch.setattr("hyperinverter.convert.catalog.default_catalog", lambda: catalog)
    monkeypatch.setenv("HYPERINVERTER_DRIVE_URL", f"{base}/uc")
    assert main(["download", "tiny-hd8", "--quiet", "--retries", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("error: tiny_hyperinverter.pt: not tiny HyperInverter checkpoint:")
    assert "of another shape" in err and "nothing was installed" in err
    files = sorted(p.name for p in (home / "files").iterdir())
    assert "tiny_hyperinverter.pt" not in files and not any(".part" in n for n in files)
    assert not (home / "models" / "tiny-hd8").exists()
    # An error page instead of the file (what Drive sends when its quota is exceeded): refused too.
    state.html.add("smile.pt")
    assert main(["download", "tiny-smile", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "sent a web page instead of the file" in err and "Quota exceeded" in err


def test_a_file_of_the_wrong_size_is_refused(server, home, tiny_zoo):
    state, base = server
    serve_zoo(state, tiny_zoo)
    catalog = tiny_catalog(tiny_zoo, base, gen_size=len(tiny_zoo.blobs["generator.pkl"]) + 1)
    with pytest.raises(DownloadError, match="but the published file has"):
        download(["tiny-generator"], catalog, options(base))
    assert not any((home / "files").iterdir())


def test_a_mirror_serves_the_official_names_and_the_real_checks_run(server, home, monkeypatch, capsys):
    """``--base``/$HYPERINVERTER_DOWNLOAD_BASE: every file at <base>/<file name>; the LPIPS head is checked by
    loading it into the project's LPIPS (a VGG head under the AlexNet name is refused)."""
    state, base = server
    state.files["lpips_v0.1_alex.pth"] = (LPIPS_DIR / "alex.pth").read_bytes()
    assert main(["download", "lpips-alex-head", "--base", f"{base}/files", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"lpips-alex-head: {home / 'files' / 'lpips_v0.1_alex.pth'}" in out
    state.files["lpips_v0.1_vgg.pth"] = (LPIPS_DIR / "alex.pth").read_bytes()
    monkeypatch.setenv("HYPERINVERTER_DOWNLOAD_BASE", f"{base}/files")
    assert main(["download", "lpips-vgg-head", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "lpips_v0.1_vgg.pth: not LPIPS v0.1 linear heads for VGG16" in err


def test_list_names_every_official_file_with_its_source(home, capsys):
    assert main(["download", "--list"]) == 0
    out = capsys.readouterr().out
    sources = json.loads((ROOT / "src" / "hyperinverter" / "convert" / "data" / "download_sources.json").read_text())
    ids = [e["drive_id"] for d in sources["model_zoo"].values() for e in d.values()]
    ids += [e["drive_id"] for e in sources["auxiliary"].values() if "drive_id" in e and "url" not in e]
    urls = list(sources["directions"].values()) + [e["url"] for e in sources["auxiliary"].values() if "url" in e]
    for token in ids + urls:
        assert token in out
    catalog = default_catalog()
    for name in catalog.names:
        assert f"  {name} " in out
    assert {"faces-hd128", "faces-hd256", "faces-e4e-hd128", "faces-e4e-hd256", "churches-hd128", "churches-hd256",
            "churches-e4e-hd128", "churches-e4e-hd256"} <= set(catalog.models)


def test_the_packaged_manifests_are_the_reference_ones():
    names = available_manifests()
    assert len(names) == 8
    for name in names:
        packaged = load_manifest(name)
        assert packaged["num_entries"] == len(packaged["entries"]) > 0
        reference = SHARED_REFERENCE / f"{name}.json"
        if reference.is_file():  # CI has ../shared beside the clone; an installed wheel has only the copies
            assert packaged == json.loads(reference.read_text())
    for model in default_catalog().models.values():  # every check names a packaged manifest
        for f in model.files[:3]:
            assert default_catalog().files[f].manifest in names


def test_a_zoo_name_not_downloaded_yet_says_how_to_get_it(home):
    with pytest.raises(CheckpointError, match="not downloaded yet; run: hyperinverter download faces-hd128"):
        HyperInverter.from_pretrained("faces-hd128")
    with pytest.raises(CheckpointError, match="not the name of a shipped or downloaded model"):
        HyperInverter.from_pretrained("no-such-model")


@pytest.mark.parametrize("domain,resolution,hidden", [("churches", 256, 128), ("faces", 1024, 256)])
def test_the_official_architectures_match_the_packaged_manifests(domain, resolution, hidden):
    """What the checks accept is what the converter loads: our official-size modules (built on the meta
    device, no memory) have exactly the keys and shapes of the manifests the downloads are checked against."""
    import dataclasses

    from hyperinverter import config_f
    from hyperinverter.convert import check_against_manifest
    from hyperinverter.encoders.presets import official_church_encoders, official_face_encoders

    e1, e2 = (official_face_encoders if domain == "faces" else official_church_encoders)()
    with torch.device("meta"):
        model = HyperInverter(generator=dataclasses.asdict(config_f(resolution)), w_encoder=dataclasses.asdict(e1),
                              layer_encoder=dataclasses.asdict(e2), hidden_dim=hidden)
    state = model.state_dict()
    generator = {k[len("generator."):]: v for k, v in state.items() if k.startswith("generator.")}
    check_against_manifest(generator, load_manifest(f"nvlabs_G_ema_config-f_{resolution}"), "G")
    checkpoint = {k: v for k, v in state.items() if not k.startswith("generator.")}
    manifest = load_manifest(f"hyperinverter_{domain}_hd{hidden}")
    manifest = {**manifest, "entries": [e for e in manifest["entries"] if not e["key"].startswith("discriminator.")]}
    check_against_manifest(checkpoint, manifest, "HyperInverter")
    encoder = {f"encoder.{k[len('w_encoder.'):]}": v for k, v in state.items() if k.startswith("w_encoder.")}
    check_against_manifest(encoder, load_manifest(f"w_encoder_{domain}"), "E1")


def test_gdown_is_used_for_drive_files_when_installed(home, tiny_zoo, monkeypatch):
    """With gdown importable and Drive not overridden, Drive files go through ``gdown.download`` (into the
    .part file, then the same checks); an overridden Drive address never uses it."""
    import sys
    import types

    calls = []

    def fake_download(id=None, output=None, quiet=False, resume=False, **kw):  # noqa: A002 - gdown's name
        calls.append((id, Path(output).name, resume))
        Path(output).write_bytes(tiny_zoo.blobs["w_encoder.pt"])
        return output

    monkeypatch.setitem(sys.modules, "gdown", types.SimpleNamespace(download=fake_download))
    catalog = tiny_catalog(tiny_zoo, "http://127.0.0.1:9")  # nothing listens there: only gdown can succeed
    download(["tiny-w-encoder"], catalog, FetchOptions(progress=False))
    assert calls == [("WENC", "tiny_w_encoder.part.pt", True)]
    assert (home / "files" / "tiny_w_encoder.pt").read_bytes() == tiny_zoo.blobs["w_encoder.pt"]
    assert not FetchOptions(drive_url="http://127.0.0.1:9/uc").gdown_wanted()
    assert not FetchOptions(use_gdown=False).gdown_wanted() and FetchOptions().gdown_wanted()
