"""Training losses: LPIPS, ArcFace identity, MoCo, adversarial terms and optional_loss.

The feature networks use random weights (the real files are not redistributable / too large); the LPIPS
heads are the real lpips v0.1 files from tests/data/lpips. Forward passes of the big networks are kept
few and small: each one costs about a second on a laptop CPU.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hyperinverter.errors import CheckpointError
from hyperinverter.losses import (
    LPIPS,
    IdentitySimilarity,
    IDLoss,
    MocoLoss,
    discriminator_loss,
    face_crop,
    generator_loss,
    optional_loss,
    path_length_penalty,
    r1_penalty,
)
from hyperinverter.losses import optional as optional_module
from hyperinverter.losses.lpips import _unit_normalize

HEADS = Path(__file__).parent / "data" / "lpips"
LPIPS_CHANNELS = {"alex": [64, 192, 384, 256, 256], "vgg": [64, 128, 256, 512, 512]}


def images(seed: int, n: int = 2, size: int = 64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


def torchvision_layout(model: LPIPS) -> dict[str, torch.Tensor]:
    """What a torchvision ImageNet file holds: our features.* plus classifier.* (to be ignored)."""
    state = {k: v.clone() for k, v in model.net.state_dict().items()}
    state["classifier.1.weight"] = torch.zeros(4, 3)  # real files: [4096, 9216] etc.; any tensor must be ignored
    state["classifier.1.bias"] = torch.zeros(4)
    return state


@pytest.fixture(scope="module")
def lpips_nets() -> dict[str, LPIPS]:
    torch.manual_seed(0)
    return {net: LPIPS(net, head_path=HEADS / f"{net}.pth") for net in ("alex", "vgg")}


@pytest.fixture(scope="module")
def id_loss() -> IDLoss:
    torch.manual_seed(1)
    return IDLoss()


@pytest.fixture(scope="module")
def moco_loss() -> MocoLoss:
    torch.manual_seed(2)
    return MocoLoss()


# ----------------------------------------------------------------------------------------------
# LPIPS
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_zero_symmetric_positive(lpips_nets, net):
    model = lpips_nets[net]
    x, y = images(10), images(11)
    with torch.no_grad():
        d_xy, d_yx, d_xx = model(x, y), model(y, x), model(x, x)
    assert d_xy.shape == (2,)
    assert torch.allclose(d_xx, torch.zeros(2), atol=1e-6)
    assert torch.allclose(d_xy, d_yx, rtol=1e-4, atol=1e-6)
    assert (d_xy > 1e-3).all()


def test_lpips_grows_with_perturbation(lpips_nets):
    x = images(20, n=4)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(21))
    with torch.no_grad():
        small = lpips_nets["alex"](x, x + 0.05 * noise).mean()
        large = lpips_nets["alex"](x, x + 0.4 * noise).mean()
    assert 0 < small < large


def test_lpips_matches_the_reference_formula(lpips_nets):
    """The lpips package's formula written out (explicit normalisation, eps and heads) gives the same distances."""
    model = lpips_nets["vgg"]
    x, y = images(30), images(31)
    heads = torch.load(HEADS / "vgg.pth", map_location="cpu", weights_only=True)
    shift = torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1)
    scale = torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1)
    with torch.no_grad():
        fx, fy = model.net((x - shift) / scale), model.net((y - shift) / scale)
        expected = 0
        for i, (a, b) in enumerate(zip(fx, fy)):
            a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
            expected = expected + F.conv2d((a - b) ** 2, heads[f"lin{i}.model.1.weight"]).mean((1, 2, 3))
        got = model(x, y)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-7)


def test_lpips_is_frozen_and_passes_gradients(lpips_nets):
    model = lpips_nets["alex"]
    model.train()  # a trainer calling .train() on a container must not unfreeze anything
    assert not any(m.training for m in model.modules())
    assert not any(p.requires_grad for p in model.parameters())
    y_hat = images(40).requires_grad_(True)
    model(y_hat, images(41)).mean().backward()
    assert y_hat.grad is not None and y_hat.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.parameters())


def test_lpips_official_head_files(lpips_nets):
    for net, model in lpips_nets.items():
        state = torch.load(HEADS / f"{net}.pth", map_location="cpu", weights_only=True)
        assert sorted(state) == [f"lin{i}.model.1.weight" for i in range(5)]
        for i, c in enumerate(LPIPS_CHANNELS[net]):
            w = getattr(model.heads, f"lin{i}").model[1].weight
            assert w.shape == (1, c, 1, 1) == state[f"lin{i}.model.1.weight"].shape
            assert torch.equal(w, state[f"lin{i}.model.1.weight"])
            assert (w >= 0).all()  # lpips clamps its heads to non-negative weights while training them


def test_lpips_default_heads_are_the_baseline():
    torch.manual_seed(0)
    model = LPIPS("alex")  # no head file: uniform weights -> sum over channels
    for i in range(5):
        weight = getattr(model.heads, f"lin{i}").model[1].weight
        assert torch.equal(weight, torch.ones(1, LPIPS_CHANNELS["alex"][i], 1, 1))


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_torchvision_backbone_round_trip(tmp_path, lpips_nets, net):
    torch.manual_seed(5)
    source = LPIPS(net, head_path=HEADS / f"{net}.pth")  # other random weights than the fixture's
    path = tmp_path / ("alexnet-owt-7be5be79.pth" if net == "alex" else "vgg16-397923af.pth")
    torch.save(torchvision_layout(source), path)
    expected_keys = {"alex": [0, 3, 6, 8, 10], "vgg": [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]}[net]
    assert sorted(source.net.state_dict()) == sorted(f"features.{i}.{p}" for i in expected_keys
                                                      for p in ("weight", "bias"))

    loaded = LPIPS.from_files(path, HEADS / f"{net}.pth")  # net read off the file
    assert loaded.net_name == net
    for k, v in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    again = LPIPS(net, backbone_path=path, head_path=HEADS / f"{net}.pth")
    assert all(torch.equal(again.state_dict()[k], v) for k, v in source.state_dict().items())
    x, y = images(50), images(51)
    with torch.no_grad():
        assert torch.equal(loaded(x, y), source(x, y))
        assert not torch.allclose(loaded(x, y), lpips_nets[net](x, y))


def test_lpips_backbone_without_heads_warns(tmp_path, lpips_nets, caplog):
    path = tmp_path / "alexnet.pth"
    torch.save(torchvision_layout(lpips_nets["alex"]), path)
    with caplog.at_level(logging.WARNING, logger="hyperinverter"):
        LPIPS("alex", backbone_path=path)
    assert any("losses.lpips_head_path" in r.getMessage() for r in caplog.records)


def test_lpips_bad_backbone_files(tmp_path, lpips_nets):
    good = torchvision_layout(lpips_nets["alex"])

    missing = tmp_path / "missing_key.pth"
    torch.save({k: v for k, v in good.items() if k != "features.10.weight"}, missing)
    with pytest.raises(CheckpointError, match=r"missing_key\.pth.*features\.10\.weight"):
        LPIPS("alex", backbone_path=missing)

    extra = tmp_path / "extra_key.pth"
    torch.save({**good, "features.13.weight": torch.zeros(1)}, extra)
    with pytest.raises(CheckpointError, match=r"extra_key\.pth.*unexpected.*features\.13\.weight"):
        LPIPS("alex", backbone_path=extra)

    shape = tmp_path / "wrong_shape.pth"
    torch.save({**good, "features.3.weight": torch.zeros(192, 64, 3, 3)}, shape)
    with pytest.raises(CheckpointError, match=r"wrong_shape\.pth.*features\.3\.weight"):
        LPIPS("alex", backbone_path=shape)

    with pytest.raises(CheckpointError, match=r"nothing_here\.pth.*not found"):
        LPIPS("alex", backbone_path=tmp_path / "nothing_here.pth")

    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a torch file at all")
    with pytest.raises(CheckpointError, match=r"corrupt\.pth.*cannot read"):
        LPIPS.from_files(corrupt, HEADS / "alex.pth")

    not_a_dict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], not_a_dict)
    with pytest.raises(CheckpointError, match=r"list\.pth.*state dict"):
        LPIPS("alex", backbone_path=not_a_dict)

    resnet_like = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, resnet_like)
    with pytest.raises(CheckpointError, match=r"resnet\.pth.*not a torchvision AlexNet or VGG16"):
        LPIPS.from_files(resnet_like, HEADS / "alex.pth")

    alex_file = tmp_path / "alex_backbone.pth"
    torch.save(good, alex_file)
    with pytest.raises(CheckpointError, match=r"alex_backbone\.pth.*'alex'.*net='vgg'"):
        LPIPS.from_files(alex_file, HEADS / "vgg.pth", net="vgg")


def test_lpips_bad_head_files(tmp_path):
    with pytest.raises(CheckpointError, match=r"vgg\.pth.*lin1\.model\.1\.weight"):
        LPIPS("alex", head_path=HEADS / "vgg.pth")  # VGG heads have other channel counts
    partial = tmp_path / "heads.pth"
    state = torch.load(HEADS / "alex.pth", map_location="cpu", weights_only=True)
    del state["lin4.model.1.weight"]
    torch.save(state, partial)
    with pytest.raises(CheckpointError, match=r"heads\.pth.*missing.*lin4\.model\.1\.weight"):
        LPIPS("alex", head_path=partial)
    nan = tmp_path / "nan_heads.pth"
    state = torch.load(HEADS / "alex.pth", map_location="cpu", weights_only=True)
    state["lin0.model.1.weight"][0, 0] = float("nan")
    torch.save(state, nan)
    with pytest.raises(CheckpointError, match=r"nan_heads\.pth.*lin0\.model\.1\.weight"):
        LPIPS("alex", head_path=nan)


def test_lpips_rejects_bad_inputs(lpips_nets):
    with pytest.raises(ValueError, match="same shape"):
        lpips_nets["alex"](images(0, size=64), images(0, size=96))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        lpips_nets["alex"](torch.zeros(1, 1, 64, 64), torch.zeros(1, 1, 64, 64))
    with pytest.raises(ValueError, match="net must be one of"):
        LPIPS("squeeze")


def test_unit_normalize_uses_the_lpips_epsilon():
    f = torch.zeros(1, 4, 2, 2)
    assert torch.equal(_unit_normalize(f), f)  # all-zero activations stay 0 (no NaN)
    g = torch.tensor([3.0, 4.0]).view(1, 2, 1, 1)
    assert torch.allclose(_unit_normalize(g).flatten(), torch.tensor([0.6, 0.8]))


# ----------------------------------------------------------------------------------------------
# Identity (ArcFace IR-SE-50)
# ----------------------------------------------------------------------------------------------


def test_face_crop_geometry():
    x = images(60, n=1, size=256)
    expected = F.adaptive_avg_pool2d(x[:, :, 35:223, 32:220], 112)
    assert torch.equal(face_crop(x), expected)
    # A 1024 image made of 4x4 constant blocks pools back to the 256 image exactly.
    big = x.repeat_interleave(4, dim=2).repeat_interleave(4, dim=3)
    assert torch.allclose(face_crop(big), expected, atol=1e-6)
    assert face_crop(images(61, n=2, size=64)).shape == (2, 3, 112, 112)


def test_id_loss_values_and_gradients(id_loss):
    a, b, c = images(70, n=3, size=256).split(1)
    y_hat = torch.cat([a, b]).requires_grad_(True)
    y = torch.cat([a, c]).requires_grad_(True)
    loss = id_loss(y_hat, y)
    assert loss.ndim == 0 and 0 <= loss.item() <= 2
    loss.backward()
    assert y_hat.grad.abs().sum() > 0
    assert y.grad is None  # target embeddings are detached, as in pSp
    with torch.no_grad():
        emb = id_loss.embed(torch.cat([a, b, c]))  # [3, 512]
    assert torch.allclose(emb.norm(dim=1), torch.ones(3), atol=1e-5)
    expected = (0 + (1 - (emb[1] * emb[2]).sum())) / 2  # sample 0 is identical -> contributes 0
    assert torch.allclose(loss.detach(), expected, atol=1e-5)
    assert loss.item() > 1e-4


def test_id_loss_of_identical_images_is_zero(id_loss):
    x = images(71, n=1, size=64)
    with torch.no_grad():
        assert abs(id_loss(x, x).item()) < 1e-5
        sim = IdentitySimilarity.forward(id_loss, x, x)  # the per-image helper
    assert sim.shape == (1,) and abs(sim.item() - 1) < 1e-5


def test_identity_frozen_in_train_mode(id_loss):
    id_loss.train()
    assert not any(m.training for m in id_loss.modules())  # BatchNorm / Dropout stay in inference mode
    assert not any(p.requires_grad for p in id_loss.parameters())


def test_irse50_file_round_trip(tmp_path, id_loss):
    state = {k: v.clone() for k, v in id_loss.facenet.state_dict().items()}
    # The key layout of model_ir_se50.pth (2018, no BatchNorm counters).
    assert {"input_layer.0.weight", "input_layer.1.running_var", "input_layer.2.weight",
            "body.0.res_layer.5.fc1.weight", "body.3.shortcut_layer.0.weight", "body.23.res_layer.4.bias",
            "output_layer.0.weight", "output_layer.3.weight", "output_layer.3.bias",
            "output_layer.4.running_mean"} <= set(state)
    assert state["output_layer.3.weight"].shape == (512, 512 * 7 * 7)
    assert len(state) == 397  # as pSp's Backbone(112, 50, "ir_se"), counters included
    assert len([k for k in state if not k.endswith("num_batches_tracked")]) == 343
    state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    with torch.no_grad():
        state["output_layer.3.bias"].normal_()
        state["body.5.res_layer.0.running_mean"].normal_()
    path = tmp_path / "model_ir_se50.pth"
    torch.save(state, path)
    loaded = IDLoss(path)
    own = loaded.facenet.state_dict()
    assert all(torch.equal(own[k], v) for k, v in state.items())


def test_irse50_bad_files(tmp_path, id_loss):
    partial = tmp_path / "partial_ir_se50.pth"
    torch.save({k: v for k, v in id_loss.facenet.state_dict().items() if k.startswith("input_layer.")}, partial)
    with pytest.raises(CheckpointError, match=r"partial_ir_se50\.pth.*missing.*body\.0\."):
        IDLoss(partial)
    with pytest.raises(CheckpointError, match=r"absent\.pth.*not found"):
        IdentitySimilarity(tmp_path / "absent.pth")


# ----------------------------------------------------------------------------------------------
# MoCo
# ----------------------------------------------------------------------------------------------


def test_moco_loss_values_and_gradients(moco_loss):
    a, b, c = images(80, n=3).split(1)
    y_hat = torch.cat([a, b]).requires_grad_(True)
    y = torch.cat([a, c])
    loss = moco_loss(y_hat, y)
    assert loss.ndim == 0 and 0 < loss.item() <= 2
    loss.backward()
    assert y_hat.grad.abs().sum() > 0
    with torch.no_grad():
        assert abs(moco_loss(a, a).item()) < 1e-5
        sim = moco_loss.similarity(torch.cat([a, b]), torch.cat([a, c]))
    assert sim.shape == (2,) and abs(sim[0].item() - 1) < 1e-5
    assert torch.allclose(loss.detach(), (1 - sim).mean(), atol=1e-5)


def test_moco_preprocessing():
    """Default: bilinear to 224 + ImageNet normalisation; official=True: e4e's nearest resize of raw [-1, 1]."""
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, x):
            seen.append(x)
            return x.mean(dim=(2, 3))

    x = images(81, n=1, size=32)
    for official in (False, True):
        loss = MocoLoss(official=official)
        loss.model = Recorder()
        loss.embed(x)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    bilinear = F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)
    assert torch.allclose(seen[0], ((bilinear + 1) / 2 - mean) / std, atol=1e-5)
    assert torch.equal(seen[1], F.interpolate(x, size=224, mode="nearest"))


def test_moco_checkpoint_round_trip(tmp_path, moco_loss):
    state = {k: v.clone() for k, v in moco_loss.model.state_dict().items()}
    assert {"conv1.weight", "bn1.running_var", "layer1.0.downsample.0.weight", "layer1.0.conv3.weight",
            "layer2.0.conv2.weight", "layer4.2.bn3.bias"} <= set(state)
    assert state["layer2.0.conv2.weight"].shape == (128, 128, 3, 3)  # v1.5: the stride sits on conv2
    with torch.no_grad():
        state["layer4.2.bn3.bias"].normal_()
    checkpoint = {
        "epoch": 800,
        "arch": "resnet50",
        "state_dict": {
            **{"module.encoder_q." + k: v for k, v in state.items()},
            "module.encoder_q.fc.0.weight": torch.zeros(4, 2048),  # MLP projection head: dropped
            "module.encoder_q.fc.2.bias": torch.zeros(4),
            "module.encoder_k.conv1.weight": torch.zeros(1),  # key encoder and queue: dropped
            "module.queue": torch.zeros(4, 8),
        },
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.03, "params": [0, 1]}]},
    }
    path = tmp_path / "moco_v2_800ep_pretrain.pt"
    torch.save(checkpoint, path)
    loaded = MocoLoss(path)
    own = loaded.model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in state.items())


def test_moco_bad_files(tmp_path, moco_loss):
    state = moco_loss.model.state_dict()
    partial = tmp_path / "moco_partial.pt"
    torch.save({"state_dict": {"module.encoder_q." + k: v for k, v in state.items() if not k.startswith("layer4.")}},
               partial)
    with pytest.raises(CheckpointError, match=r"moco_partial\.pt.*missing.*layer4\.0\."):
        MocoLoss(partial)
    only_fc = tmp_path / "only_fc.pt"
    torch.save({"state_dict": {"module.encoder_q.fc.weight": torch.zeros(2, 2)}}, only_fc)
    with pytest.raises(CheckpointError, match=r"only_fc\.pt.*no ResNet-50 tensors"):
        MocoLoss(only_fc)


# ----------------------------------------------------------------------------------------------
# Adversarial terms
# ----------------------------------------------------------------------------------------------


def test_logistic_losses_by_hand():
    real = torch.tensor([2.0, -1.0, 0.5])
    fake = torch.tensor([-3.0, 0.0, 1.5])

    def sp(v: float) -> float:  # softplus
        return math.log1p(math.exp(v))

    assert generator_loss(fake).item() == pytest.approx((sp(3.0) + sp(0.0) + sp(-1.5)) / 3, rel=1e-6)
    d = (sp(-3.0) + sp(0.0) + sp(1.5)) / 3 + (sp(-2.0) + sp(1.0) + sp(-0.5)) / 3
    assert discriminator_loss(real, fake).item() == pytest.approx(d, rel=1e-6)
    # No overflow for confident logits (softplus, not log(1 + exp)).
    assert torch.isfinite(generator_loss(torch.tensor([-200.0, 200.0])))


def test_r1_penalty_analytic():
    w = torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(90)).requires_grad_(True)
    x = torch.randn(5, 3, 4, 4).requires_grad_(True)
    logits = (w * x).sum(dim=(1, 2, 3))  # D(x) = <w, x>  ->  dD/dx = w for every sample
    penalty = r1_penalty(logits, x)
    assert penalty.item() == pytest.approx(w.square().sum().item(), rel=1e-6)
    penalty.backward()  # create_graph=True: the penalty itself has a gradient, d|w|^2/dw = 2w
    assert torch.allclose(w.grad, 2 * w.detach())

    x2 = torch.randn(3, 2, 2, 2).requires_grad_(True)
    quad = x2.square().sum(dim=(1, 2, 3))  # dD/dx = 2x
    assert r1_penalty(quad, x2).item() == pytest.approx((4 * x2.detach().square()).flatten(1).sum(1).mean().item(),
                                                        rel=1e-6)
    with pytest.raises(ValueError, match="requires_grad"):
        r1_penalty(torch.zeros(2), torch.zeros(2, 3, 4, 4))


def test_path_length_penalty_analytic():
    """images = reshape(mean_i(ws_i) @ A): J^T y = A y / num_ws for every ws row."""
    b, num_ws, w_dim, c, h, w = 3, 4, 6, 2, 4, 4
    a = torch.randn(w_dim, c * h * w, generator=torch.Generator().manual_seed(91)).requires_grad_(True)
    ws = torch.randn(b, num_ws, w_dim).requires_grad_(True)
    img = (ws.mean(dim=1) @ a).view(b, c, h, w)

    torch.manual_seed(92)
    penalty, pl_mean = path_length_penalty(img, ws, pl_mean=0.5, decay=0.01)
    torch.manual_seed(92)
    y = torch.randn(b, c, h, w) / math.sqrt(h * w)
    lengths = (y.flatten(1) @ a.detach().t()).norm(dim=1) / num_ws  # |A y_b| / num_ws, [B]
    expected_mean = 0.5 + 0.01 * (lengths.mean() - 0.5)
    assert pl_mean.item() == pytest.approx(expected_mean.item(), rel=1e-5)
    assert not pl_mean.requires_grad
    assert penalty.item() == pytest.approx((lengths - expected_mean).square().mean().item(), rel=1e-4)
    penalty.backward()  # differentiable w.r.t. the generator's parameters
    assert a.grad is not None and a.grad.abs().sum() > 0

    # EMA over calls, starting from a tensor state.
    state = torch.zeros([])
    for _ in range(3):
        img = (ws.mean(dim=1) @ a).view(b, c, h, w)
        _, new = path_length_penalty(img, ws, state)
        assert new.item() > state.item()
        state = new
    with pytest.raises(ValueError, match=r"\[B, num_ws, w_dim\]"):
        path_length_penalty(img, ws[:, 0], state)


# ----------------------------------------------------------------------------------------------
# optional_loss
# ----------------------------------------------------------------------------------------------


def test_optional_loss_off_warns_once(monkeypatch, caplog):
    monkeypatch.setattr(optional_module, "_warned", set())
    calls = []
    with caplog.at_level(logging.WARNING, logger="hyperinverter"):
        for path in (None, "", None):
            assert optional_loss("id", path, calls.append) is None
    assert calls == []
    messages = [r.getMessage() for r in caplog.records if r.name == "hyperinverter"]
    assert messages == ["id loss is off: no weight file given (set losses.id_path)"]


def test_optional_loss_builds_or_raises(tmp_path):
    with pytest.raises(CheckpointError, match=r"ir_se50\.pth.*not found.*losses\.id_path"):
        optional_loss("id", tmp_path / "ir_se50.pth", IDLoss)
    corrupt = tmp_path / "moco.pt"
    corrupt.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match=r"moco\.pt.*cannot read"):
        optional_loss("moco", corrupt, MocoLoss)
    built = optional_loss("lpips", HEADS / "alex.pth", lambda p: LPIPS("alex", head_path=p))
    assert isinstance(built, LPIPS)
