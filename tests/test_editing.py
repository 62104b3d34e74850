"""Edit directions: InterFaceGAN fitting, GANSpace PCA and edits, SeFa, direction files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hyperinverter import Generator, HyperInverterError
from hyperinverter.editing import (Direction, DirectionError, GanSpacePCA, compute_ganspace, fit_interfacegan,
                                   ganspace_edit, load_direction_file, load_ganspace, save_direction, save_ganspace,
                                   sefa_directions, sefa_matrix)

W_DIM = 16
SMALL_G = dict(z_dim=16, w_dim=W_DIM, img_resolution=16, channel_base=128, channel_max=16, mapping_layers=2)


@pytest.fixture(scope="module")
def G() -> Generator:
    torch.manual_seed(0)
    return Generator(**SMALL_G).eval()


@pytest.fixture(scope="module")
def pca(G) -> GanSpacePCA:
    return compute_ganspace(G, num_samples=10_000, num_components=8, seed=0, batch_size=1000)


def _synthetic(n=2000, seed=0):
    """Anisotropic codes and a known unit normal."""
    gen = torch.Generator().manual_seed(seed)
    normal = torch.randn(W_DIM, generator=gen)
    normal /= normal.norm()
    codes = torch.randn(n, W_DIM, generator=gen) * torch.linspace(0.3, 2.0, W_DIM) + 0.5
    return codes, normal, gen


# ------------------------------------------------------------------------------------------ InterFaceGAN
@pytest.mark.parametrize("method", ["svm", "logistic"])
def test_fit_binary_recovers_direction(method):
    codes, normal, _ = _synthetic()
    labels = (codes - 0.5) @ normal > 0.1
    direction, report = fit_interfacegan(codes, labels, method=method)
    assert direction.kind == "interfacegan" and direction.vector.shape == (W_DIM,)
    assert direction.vector.dtype == torch.float32
    assert abs(float(direction.vector.norm()) - 1) < 1e-5
    assert float(direction.vector @ normal) > 0.95  # points towards the positive class
    assert report["holdout_accuracy"] > 0.9 and report["train_accuracy"] > 0.9
    assert report["label_type"] == "binary"
    counts = [report[k] for k in ("num_train_positive", "num_train_negative", "num_holdout_positive",
                                  "num_holdout_negative")]
    assert sum(counts) == 2000 and report["num_remaining"] == 0
    assert report["num_holdout_positive"] + report["num_holdout_negative"] == pytest.approx(400, abs=2)
    assert int(labels.sum()) == report["num_train_positive"] + report["num_holdout_positive"]
    assert direction.description["holdout_accuracy"] == report["holdout_accuracy"]


def test_fit_numpy_inputs_and_seed_determinism():
    codes, normal, _ = _synthetic(n=600)
    labels = ((codes - 0.5) @ normal > 0).numpy().astype(np.int64)
    d1, r1 = fit_interfacegan(codes.numpy(), labels, seed=3)
    d2, r2 = fit_interfacegan(codes, torch.from_numpy(labels), seed=3)
    assert torch.allclose(d1.vector, d2.vector, atol=1e-6) and r1 == r2


def test_fit_continuous_scores():
    codes, normal, gen = _synthetic()
    scores = (codes - 0.5) @ normal + 0.1 * torch.randn(2000, generator=gen)
    direction, report = fit_interfacegan(codes, scores, ratio=0.3)
    assert report["label_type"] == "scores"
    assert report["num_train_positive"] + report["num_holdout_positive"] == 600
    assert report["num_train_negative"] + report["num_holdout_negative"] == 600
    assert report["num_remaining"] == 800 and report["remaining_accuracy"] is not None
    assert report["positive_min_score"] > report["negative_max_score"]
    assert float(direction.vector @ normal) > 0.95
    assert report["holdout_accuracy"] > 0.9
    # Median split: every sample used; still the same direction.
    median_dir, median_report = fit_interfacegan(codes, scores, ratio=0.5)
    assert median_report["num_remaining"] == 0
    assert float(median_dir.vector @ normal) > 0.95


def test_fit_rejects_bad_input():
    codes, normal, _ = _synthetic(n=100)
    labels = (codes @ normal > 0).float()
    with pytest.raises(ValueError, match=r"labels must have shape \[100\]"):
        fit_interfacegan(codes, labels[:99])
    with pytest.raises(ValueError, match="single value"):
        fit_interfacegan(codes, torch.ones(100))
    with pytest.raises(ValueError, match="codes must have shape"):
        fit_interfacegan(codes.reshape(100, 2, 8), labels)
    with pytest.raises(ValueError, match="NaN"):
        fit_interfacegan(codes, torch.where(torch.arange(100) == 5, float("nan"), labels))
    with pytest.raises(ValueError, match="overlap"):  # scores mostly tied: no meaningful top/bottom split
        fit_interfacegan(codes, torch.cat([torch.zeros(90), torch.arange(1.0, 11.0)]))
    with pytest.raises(ValueError, match="method"):
        fit_interfacegan(codes, labels, method="tree")


# ------------------------------------------------------------------------------------------ GANSpace
def test_ganspace_components(G, pca):
    comps, mean, stdev = pca
    assert comps.shape == (8, W_DIM) and mean.shape == (W_DIM,) and stdev.shape == (8,)
    assert torch.allclose(comps @ comps.T, torch.eye(8), atol=1e-5)
    assert (stdev[:-1] >= stdev[1:]).all() and (stdev > 0).all()
    # stdev is the spread of fresh samples' coordinates along each component.
    z = torch.randn(20_000, G.z_dim, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        w = G.mapping(z)[:, 0]
    coords = (w - mean) @ comps.T
    assert torch.allclose(coords.std(dim=0), stdev, rtol=0.05)
    # Component 0 has the largest variance of any direction (here: vs. random unit vectors).
    rand = torch.nn.functional.normalize(torch.randn(200, W_DIM), dim=1)
    assert ((w - mean) @ rand.T).std(dim=0).max() <= stdev[0] * 1.01
    # Same seed and batching as compute_w_avg -> same samples -> same mean.
    G2 = Generator(**SMALL_G)
    G2.load_state_dict(G.state_dict())
    G2.compute_w_avg(num_samples=10_000, seed=0, batch_size=1000)
    assert torch.allclose(mean, G2.w_avg, atol=1e-4)


def test_ganspace_edit_moves_only_the_layer_range(G, pca):
    num_ws = G.num_ws
    ws = G.mapping(torch.randn(3, G.z_dim)).detach()
    for mode in ("official", "add"):
        edited = pca.edit(ws, component=2, first_layer=1, last_layer=3, strength=4.0, mode=mode)
        moved = (edited - ws).abs().amax(dim=(0, 2)) > 0
        assert moved.tolist() == [i in (1, 2) for i in range(num_ws)]  # [first, last): last excluded
        delta = edited[:, 1:3] - ws[:, 1:3]
        assert torch.allclose(delta - (delta @ pca.components[2])[..., None] * pca.components[2],
                              torch.zeros_like(delta), atol=1e-5)  # only along the component
    # Official: the rows' coordinate is set to strength stdevs (W codes: all rows equal row 0).
    edited = ganspace_edit(ws, pca.components, pca.stdev, 2, 1, 3, 4.0, mean=pca.mean)
    coord = ((edited[:, 1:3] - pca.mean) @ pca.components[2]) / pca.stdev[2]
    assert torch.allclose(coord, torch.full_like(coord, 4.0), atol=1e-4)
    # Add: a fixed step of strength * stdev along the component, also for a single [num_ws, w_dim] code.
    single = ganspace_edit(ws[0], pca.components, pca.stdev, 2, 0, 1, -2.0, mode="add")
    assert torch.allclose(single[0] - ws[0, 0], -2.0 * pca.stdev[2] * pca.components[2], atol=1e-5)
    assert torch.equal(single[1:], ws[0, 1:])
    with pytest.raises(ValueError, match="mean"):
        ganspace_edit(ws, pca.components, pca.stdev, 2, 1, 3, 4.0)
    with pytest.raises(ValueError, match="layers"):
        ganspace_edit(ws, pca.components, pca.stdev, 2, 3, num_ws + 1, 4.0, mean=pca.mean)
    with pytest.raises(ValueError, match="component"):
        ganspace_edit(ws, pca.components, pca.stdev, 8, 0, 1, 4.0, mean=pca.mean)


def test_ganspace_files(tmp_path, pca):
    path = save_ganspace(pca, tmp_path / "pca.npz")
    with np.load(path) as data:  # GANSpace's own layout
        assert data["lat_comp"].shape == (8, 1, W_DIM) and data["lat_mean"].shape == (1, W_DIM)
        assert data["lat_stdev"].shape == (8,)
    loaded = load_ganspace(path, w_dim=W_DIM)
    assert all(torch.allclose(a, b) for a, b in zip(loaded, pca))
    # e4e / HyperInverter .pt layout.
    torch.save({"comp": pca.components[:, None], "mean": pca.mean[None], "std": pca.stdev}, tmp_path / "pca.pt")
    loaded = load_ganspace(tmp_path / "pca.pt")
    assert all(torch.allclose(a, b) for a, b in zip(loaded, pca))
    with pytest.raises(DirectionError, match=r"pca\.npz.*\[n, 1, 32\]"):
        load_ganspace(path, w_dim=32)
    np.savez(tmp_path / "bad.npz", something=np.zeros(3))
    with pytest.raises(DirectionError, match="lat_comp"):
        load_ganspace(tmp_path / "bad.npz")
    # A component as an additive Direction.
    d = pca.direction(1, 2, 4, strength=3.0)
    assert d.kind == "ganspace" and d.layers == (2, 4)
    assert torch.allclose(d.vector, pca.stdev[1] * pca.components[1])


# ------------------------------------------------------------------------------------------ SeFa
def test_sefa_directions(G):
    result = sefa_directions(G, num=10)
    dirs, evals, layers, num_ws = result
    assert dirs.shape == (10, W_DIM) and layers == list(range(G.num_ws - 1)) and num_ws == G.num_ws
    assert torch.allclose(dirs @ dirs.T, torch.eye(10), atol=1e-5)
    assert (evals[:-1] >= evals[1:]).all()
    A = sefa_matrix(G)
    assert torch.allclose(A.norm(dim=1), torch.ones(A.shape[0], dtype=A.dtype))
    convs = [m for name, m in G.synthesis.named_modules() if name.rsplit(".", 1)[-1] in ("conv0", "conv1")]
    assert len(convs) == G.num_ws - 1 and A.shape == (sum(m.in_channels for m in convs), W_DIM)
    top = float((A @ dirs[0].double()).norm())
    assert top ** 2 == pytest.approx(float(evals[0]), rel=1e-6)
    rand = torch.nn.functional.normalize(torch.randn(2000, W_DIM, dtype=torch.float64), dim=1)
    assert (A @ rand.T).norm(dim=0).max() <= top + 1e-9
    # Layer choice matters; the scale of the affine weights does not (rows are normalised).
    early = sefa_directions(G, layers=(0, 2), num=4)
    assert early.layers == [0, 1] and not torch.allclose(early.directions[0].abs(), dirs[0].abs(), atol=1e-3)
    with torch.no_grad():
        G.synthesis.b4.conv1.affine.weight.mul_(3)
    try:
        assert torch.allclose(sefa_directions(G, num=10).directions, dirs, atol=1e-5)
    finally:
        with torch.no_grad():
            G.synthesis.b4.conv1.affine.weight.div_(3)
    with_rgb = sefa_directions(G, layers=range(G.num_ws), num=4)
    assert with_rgb.layers == list(range(G.num_ws))
    d = early.direction(0, strength=2.0)
    assert d.kind == "sefa" and d.layers == (0, 2) and d.strength == 2.0
    sparse = sefa_directions(G, layers=[0, 3], num=2).direction(1)
    assert sparse.layers is None and sparse.vector.shape == (G.num_ws, W_DIM)
    assert sparse.vector[[1, 2, 4, 5]].abs().sum() == 0
    with pytest.raises(ValueError, match="rows"):
        sefa_directions(G, layers=(0, G.num_ws + 1))
    with pytest.raises(ValueError, match="num"):
        sefa_directions(G, num=W_DIM + 1)


# ------------------------------------------------------------------------------------------ files
def test_save_load_round_trip(tmp_path):
    codes, normal, _ = _synthetic(n=400)
    fitted, report = fit_interfacegan(codes, (codes - 0.5) @ normal > 0, name="smile")
    path = save_direction(fitted, tmp_path / "dirs")
    assert path == tmp_path / "dirs" / "smile.safetensors" and path.with_suffix(".json").is_file()
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["kind"] == "interfacegan" and meta["w_dim"] == W_DIM and meta["layers"] is None
    assert meta["holdout_accuracy"] == report["holdout_accuracy"] and meta["source"]
    loaded = load_direction_file(path, W_DIM, num_ws=6)
    assert torch.equal(loaded.vector, fitted.vector) and loaded.name == "smile"
    assert loaded.kind == "interfacegan" and loaded.description["holdout_accuracy"] == report["holdout_accuracy"]

    rows = torch.randn(6, W_DIM)
    custom = Direction("rows", rows, kind="custom", layers=(1, 4), strength=-2.5, description={"note": "x"})
    path = save_direction(custom, tmp_path / "explicit.safetensors")
    assert path.with_suffix(".json").is_file()
    for p in (path, path.with_suffix(".json")):
        back = load_direction_file(p, W_DIM, num_ws=6)
        assert torch.equal(back.vector, rows) and back.layers == (1, 4) and back.strength == -2.5
        assert back.kind == "custom" and back.description["note"] == "x"
    path.with_suffix(".json").unlink()  # the safetensors header carries the metadata too
    back = load_direction_file(path, W_DIM, num_ws=6)
    assert back.layers == (1, 4) and back.strength == -2.5
    with pytest.raises(DirectionError, match=r"explicit\.safetensors.*\[6, 16\].*\[3, 16\]"):
        load_direction_file(path, W_DIM, num_ws=3)  # 6 rows for a generator with 3
    path = save_direction(Direction("late", torch.randn(W_DIM), layers=(4, 6)), tmp_path)
    with pytest.raises(DirectionError, match=r"late\.safetensors: layers \[4, 6\] reach past the 4 rows"):
        load_direction_file(path, W_DIM, num_ws=4)


def test_saved_direction_is_read_by_workflows(tmp_path):
    from hyperinverter.workflows import load_direction

    d = Direction("age", torch.randn(W_DIM), kind="interfacegan")
    value = load_direction(save_direction(d, tmp_path), W_DIM, 6)
    assert torch.equal(value, d.vector)


def test_direction_apply_matches_edit_semantics():
    vec = torch.randn(W_DIM)
    d = Direction("x", vec[None], layers=(2, 4), strength=1.5)
    assert d.vector.shape == (W_DIM,)  # [1, w_dim] is flattened
    ws = torch.randn(2, 6, W_DIM)
    out = d.apply(ws)
    expected = ws.clone()
    expected[:, 2:4] += 1.5 * vec
    assert torch.allclose(out, expected)
    assert torch.allclose(d.apply(ws, strength=0), ws)
    with pytest.raises(DirectionError):
        Direction("../evil", vec)
    with pytest.raises(DirectionError):
        Direction("x", vec, kind="stylespace")
    with pytest.raises(DirectionError):
        Direction("x", vec, layers=(3, 3))
    with pytest.raises(DirectionError, match="NaN"):
        Direction("x", torch.full([W_DIM], float("nan")))


def test_load_interfacegan_boundaries(tmp_path):
    boundary = np.random.default_rng(0).standard_normal((1, W_DIM)).astype(np.float32)
    boundary /= np.linalg.norm(boundary)
    np.save(tmp_path / "stylegan_ffhq_smile_w_boundary.npy", boundary)
    d = load_direction_file(tmp_path / "stylegan_ffhq_smile_w_boundary.npy", W_DIM, 6)
    assert d.kind == "interfacegan" and d.vector.shape == (W_DIM,) and d.layers is None
    assert np.allclose(d.vector.numpy(), boundary[0]) and d.name == "stylegan_ffhq_smile_w_boundary"
    torch.save(torch.from_numpy(boundary), tmp_path / "age.pt")  # e4e's editings/interfacegan_directions/*.pt
    assert torch.allclose(load_direction_file(tmp_path / "age.pt", W_DIM, 6).vector, d.vector)
    np.save(tmp_path / "flat.npy", boundary[0].astype(np.float64))
    assert load_direction_file(tmp_path / "flat.npy", W_DIM, 6).vector.dtype == torch.float32


def test_load_errors_name_file_and_shape(tmp_path):
    np.save(tmp_path / "wrong.npy", np.zeros((1, 512), np.float32))
    with pytest.raises(DirectionError, match=r"wrong\.npy.*\[1, 512\].*\[16\], \[1, 16\] or \[6, 16\]") as err:
        load_direction_file(tmp_path / "wrong.npy", W_DIM, 6)
    assert isinstance(err.value, HyperInverterError) and isinstance(err.value, ValueError)
    np.save(tmp_path / "nan.npy", np.full((W_DIM,), np.nan, np.float32))
    with pytest.raises(DirectionError, match=r"nan\.npy.*NaN"):
        load_direction_file(tmp_path / "nan.npy", W_DIM, 6)
    (tmp_path / "junk.npy").write_bytes(b"not a numpy file")
    with pytest.raises(DirectionError, match=r"junk\.npy: unreadable"):
        load_direction_file(tmp_path / "junk.npy", W_DIM, 6)
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(DirectionError, match=r"junk\.safetensors: unreadable"):
        load_direction_file(tmp_path / "junk.safetensors", W_DIM, 6)
    with pytest.raises(DirectionError, match=r"missing\.npy: no such"):
        load_direction_file(tmp_path / "missing.npy", W_DIM, 6)
    (tmp_path / "d.txt").write_text("0 1")
    with pytest.raises(DirectionError, match=r"d\.txt: unknown direction file type"):
        load_direction_file(tmp_path / "d.txt", W_DIM, 6)
    torch.save({"a": torch.zeros(W_DIM), "b": torch.zeros(W_DIM)}, tmp_path / "two.pt")
    with pytest.raises(DirectionError, match=r"two\.pt: holds no single"):
        load_direction_file(tmp_path / "two.pt", W_DIM, 6)
    path = save_direction(Direction("ok", torch.zeros(W_DIM)), tmp_path)
    path.with_suffix(".json").write_text("{broken")
    with pytest.raises(DirectionError, match=r"ok\.json: unreadable"):
        load_direction_file(path, W_DIM, 6)
