"""Training: presets, the three trainings on a tiny folder, exact resume, stop signals, NaN, two-process CPU."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hyperinverter import CheckpointError, Generator
from hyperinverter.encoders import WEncoder
from hyperinverter.train import ConfigError, TrainingError, get_trainer, load_train_config
from hyperinverter.train.config import check_batch_sizes, preset_names, resolve_preset

#: The presets shipped inside the package (``hyperinverter/configs/*.yaml``, package data).
CONFIGS = Path(__file__).resolve().parents[1] / "src" / "hyperinverter" / "configs"
SHIPPED = {"gan_demo64", "gan_teacher_demo64", "gan_teacher_faces64", "gan_teacher_faces64_smile",
           "hypernet_churches", "hypernet_demo64", "hypernet_faces", "hypernet_faces64", "w_encoder_churches",
           "w_encoder_demo64", "w_encoder_faces", "w_encoder_faces64"}
TINY_G = {"img_resolution": 16, "z_dim": 16, "w_dim": 16, "channel_base": 128, "channel_max": 16,
          "mapping_layers": 2}
TINY_BACKBONE = {"kind": "ir_se", "blocks": [1, 1, 1, 1], "widths": [8, 8, 16, 16], "stem_width": 8,
                 "se_reduction": 4}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """24 small images with smooth colour patterns (learnable in a few steps)."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:16, 0:16] / 15.0
    for i in range(24):
        a, b, c = rng.uniform(0, 1, 3)
        img = np.stack([a * xx + (1 - a) * yy, b * yy, c * (1 - xx)], -1)
        Image.fromarray((img * 255).astype(np.uint8)).save(root / f"{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def generator_dir(tmp_path_factory):
    torch.manual_seed(0)
    G = Generator(**TINY_G)
    G.compute_w_avg(500)
    path = tmp_path_factory.mktemp("g") / "generator"
    G.save_pretrained(path)
    return path


def _run_cfg(out, steps, **extra):
    base = [f"run.out_dir={out}", f"run.steps={steps}", "run.batch_size=4", "run.workers=0", "run.log_every=1",
            "run.image_every=0", "run.val_every=0", "run.ckpt_every=0", "run.deterministic=true"]
    return base + [f"{k}={v}" for k, v in extra.items()]


def _train(kind, overrides, resume=False):
    config = load_train_config(kind, None, overrides)
    trainer = get_trainer(kind)(config, resume=resume, progress=False)
    try:
        logs = trainer.run()
    finally:
        trainer.close()
    return trainer, logs


def _w_encoder_overrides(folder, generator_dir, out, steps):
    return _run_cfg(out, steps) + [f"data.train={folder}", f"generator={generator_dir}", "encoder_input_size=32",
                                   f"encoder={{backbone: {TINY_BACKBONE}}}".replace("'", ""),
                                   "losses.lpips=0", "lr=0.003", "data.hflip=true"]


# ----------------------------------------------------------------------------------------------- presets
@pytest.mark.parametrize("preset", sorted(SHIPPED))
def test_presets_parse_and_validate(preset):
    """Every preset loads by its name (from the package, wherever the command runs)."""
    import yaml

    kind = yaml.safe_load(resolve_preset(preset).read_text())["kind"]
    config = load_train_config(kind, preset, ["run.steps=3"])
    assert config.run.steps == 3
    assert load_train_config(kind, f"{preset}.yaml", ["run.steps=3"]) == config


def test_presets_ship_in_the_package_and_a_yaml_of_your_own_still_works(tmp_path, monkeypatch):
    import hyperinverter

    assert set(preset_names()) == SHIPPED == {p.stem for p in CONFIGS.glob("*.yaml")}
    assert Path(str(resolve_preset("hypernet_faces"))).parent == Path(hyperinverter.__file__).parent / "configs"
    monkeypatch.chdir(tmp_path)  # not a checkout: the name still resolves
    assert load_train_config("hypernet", "hypernet_faces").batch_size_with_adv == 4
    mine = tmp_path / "mine.yaml"
    mine.write_text((CONFIGS / "hypernet_faces.yaml").read_text().replace("steps: 500000", "steps: 77"))
    assert load_train_config("hypernet", mine).run.steps == 77
    assert load_train_config("hypernet", "mine.yaml").run.steps == 77  # a relative path
    with pytest.raises(ConfigError, match="ship inside the package now: --config hypernet_faces"):
        load_train_config("hypernet", "configs/hypernet_faces.yaml")  # the old checkout path
    with pytest.raises(ConfigError, match="not a preset shipped.*hypernet_faces"):
        load_train_config("hypernet", "hypernet_fcaes")


def test_bad_configs_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown field"):
        load_train_config("gan", None, ["data.train=x", "run.stepz=3"])
    with pytest.raises(ConfigError, match="run.batch_size .* multiple of run.grad_accum"):
        load_train_config("gan", None, ["data.train=x", "run.batch_size=6", "run.grad_accum=4"])
    with pytest.raises(ConfigError, match="generator is required"):
        load_train_config("w-encoder", None, ["data.train=x"])
    with pytest.raises(ConfigError, match="losses.adv > 0 needs discriminator"):
        load_train_config("hypernet", None, ["data.train=x", "generator=g", "w_encoder=e", "losses.adv=0.1"])
    with pytest.raises(ConfigError, match="not 'train gan'"):
        load_train_config("gan", "hypernet_faces")


def test_box_loss_weighs_only_its_region_and_bad_boxes_are_refused():
    """losses.l2_box: the squared error averaged over l2_box_region alone (a 16 px image, box rows 8-12, columns
    4-8): a change outside the box leaves the term at zero, a change inside gives the box's mean; the total adds it
    at its weight. A missing, reversed or out-of-range box is one line at config time."""
    from hyperinverter.train.recon import ReconstructionLoss

    base = ["data.train=x", "generator=g", "w_encoder=e", "losses.lpips=0"]
    cfg = load_train_config("hypernet", None, base + ["losses.l2_box=3", "losses.l2_box_region=[[0.5, 0.75], [0.25, 0.5]]"])
    loss = ReconstructionLoss(cfg.losses)
    target = torch.zeros(2, 3, 16, 16)
    outside = target.clone()
    outside[..., 0:8, :] = 1.0
    total, parts = loss(outside, target)
    assert float(parts["l2_box"]) == 0.0 and float(parts["l2"]) == pytest.approx(0.5)
    inside = target.clone()
    inside[..., 8:12, 4:6] = 2.0  # half the box's 4x4 pixels, error 4 each: box mean 2
    total, parts = loss(inside, target)
    assert float(parts["l2_box"]) == pytest.approx(2.0)
    assert float(total) == pytest.approx(float(parts["l2"]) + 3 * 2.0)
    for extra, match in ((["losses.l2_box=1"], "l2_box_region: a box is"),
                         (["losses.l2_box=1", "losses.l2_box_region=[[0.8, 0.6], [0.2, 0.4]]"], "rows must satisfy"),
                         (["losses.l2_box=1", "losses.l2_box_region=[[0.1, 0.2], [0.5, 1.5]]"], "columns must satisfy"),
                         (["losses.l2_box=-1", "losses.l2_box_region=[[0.1, 0.2], [0.3, 0.4]]"], "l2_box must be >= 0")):
        with pytest.raises(ConfigError, match=match):
            load_train_config("hypernet", None, base + extra)


def test_every_batch_size_must_split_over_processes_and_grad_accum():
    """The README's 8-process hypernet_faces run would fail at step 200k (batch 8 -> 4 with the adversarial term):
    refused at start-up instead, naming the numbers and the fixes."""
    faces = load_train_config("hypernet", "hypernet_faces")
    for world in (1, 2, 4):
        check_batch_sizes(faces, world)
    with pytest.raises(ConfigError) as e:
        check_batch_sizes(faces, 8)
    text = str(e.value)
    assert "batch_size_with_adv=4 (from step 200000" in text and "8 process(es) × run.grad_accum 1 = 8" in text
    assert "set batch_size_with_adv to a multiple of 8 (8)" in text and "run 1, 2 or 4 process(es)" in text
    assert "run.batch_size=8 does" not in text  # 8 divides over 8
    check_batch_sizes(load_train_config("hypernet", "hypernet_faces", ["batch_size_with_adv=8"]), 8)
    # without the adversarial term the switch never happens: only run.batch_size counts
    check_batch_sizes(load_train_config("hypernet", "hypernet_faces", ["losses.adv=0"]), 8)
    # grad_accum splits each process's share again
    with pytest.raises(ConfigError, match=r"run.batch_size=6 does not divide over 2 process\(es\) × "
                                          r"run.grad_accum 2 = 4.*\(4 or 8\)") as e:
        check_batch_sizes(load_train_config("hypernet", "hypernet_faces",
                                            ["run.grad_accum=2", "run.batch_size=6", "batch_size_with_adv=4"]), 2)
    assert "run 1 process(es)" in str(e.value)
    gan = load_train_config("gan", "gan_demo64", ["run.batch_size=6"])
    with pytest.raises(ConfigError, match=r"run 1, 2, 3 or 6 process\(es\)"):
        check_batch_sizes(gan, 4)


def test_the_readme_torchrun_commands_pass_the_batch_size_check():
    """Every ``torchrun --nproc_per_node N ... train KIND --config PRESET key=value`` line of the README splits
    every batch size of its run over its N processes."""
    import re

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    lines = [line for line in readme.splitlines() if line.startswith("torchrun ") and " train " in line]
    assert len(lines) >= 2
    for line in lines:
        words = line.split("#")[0].split()
        world = int(words[words.index("--nproc_per_node") + 1])
        kind = words[words.index("train") + 1]
        preset = words[words.index("--config") + 1]
        overrides = [w for w in words if re.fullmatch(r"[a-z_.]+=\S+", w)]
        check_batch_sizes(load_train_config(kind, preset, overrides), world)


def test_the_trainer_refuses_to_start_before_loading_anything(tmp_path, monkeypatch):
    """A fake 8-process job: the check runs first (the missing generator file is never opened)."""
    from hyperinverter.train import trainer as trainer_module
    from hyperinverter.train.distributed import DistEnv

    monkeypatch.setattr(trainer_module, "setup", lambda device: DistEnv(rank=0, world_size=8))
    config = load_train_config("hypernet", "hypernet_faces", [f"run.out_dir={tmp_path / 'run'}",
                                                              f"generator={tmp_path / 'missing.pkl'}"])
    with pytest.raises(ConfigError, match="batch_size_with_adv=4 .* does not divide over 8 process"):
        get_trainer("hypernet")(config)
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------ trainings
def test_gan_training_runs_and_discriminator_learns(folder, tmp_path):
    overrides = _run_cfg(tmp_path / "gan", 12) + [f"data.train={folder}", f"generator={TINY_G}".replace("'", ""),
                                                  "discriminator={channel_base: 128, channel_max: 16}",
                                                  "r1_every=4", "pl_weight=2", "pl_every=2", "d_lr=0.01"]
    trainer, logs = _train("gan", overrides)
    lines = (tmp_path / "gan" / "log.txt").read_text().splitlines()
    d_losses = [float(line.split("d_loss=")[1].split()[0]) for line in lines if "d_loss=" in line]
    assert len(d_losses) == 12 and np.mean(d_losses[-3:]) < np.mean(d_losses[:3])
    assert (tmp_path / "gan" / "generator" / "model.safetensors").is_file()
    assert (tmp_path / "gan" / "config.yaml").read_text().startswith("kind: gan")
    G = Generator.from_pretrained(tmp_path / "gan" / "generator")
    assert torch.isfinite(G(torch.randn(2, 16))).all()


def test_w_encoder_training_lowers_the_loss(folder, generator_dir, tmp_path):
    trainer, _ = _train("w-encoder", _w_encoder_overrides(folder, generator_dir, tmp_path / "w", 30))
    log_lines = (tmp_path / "w" / "log.txt").read_text().splitlines()
    losses = [float(line.split(" loss=")[1].split()[0]) for line in log_lines]
    assert np.mean(losses[-5:]) < 0.9 * np.mean(losses[:5])
    trained = WEncoder.from_pretrained(tmp_path / "w" / "w_encoder")
    assert trained.config.w_dim == 16
    # init: a warm start from that encoder (e.g. after the generator was retrained) starts where it ended.
    warm, _ = _train("w-encoder", _w_encoder_overrides(folder, generator_dir, tmp_path / "w2", 1) +
                     [f"init={tmp_path / 'w' / 'w_encoder'}", "lr=1e-12"])
    after = WEncoder.from_pretrained(tmp_path / "w2" / "w_encoder").state_dict()
    for k, v in trained.state_dict().items():
        if v.is_floating_point() and "running" not in k:
            torch.testing.assert_close(after[k], v, rtol=0, atol=1e-5)
    other = tmp_path / "other"
    WEncoder(**{**dataclasses.asdict(trained.config), "w_dim": 8}).save_pretrained(other)
    with pytest.raises(TrainingError, match="another architecture"):
        _train("w-encoder", _w_encoder_overrides(folder, generator_dir, tmp_path / "w3", 1) + [f"init={other}"])


def test_hypernet_training_lowers_the_loss(folder, generator_dir, tmp_path):
    _train("w-encoder", _w_encoder_overrides(folder, generator_dir, tmp_path / "w", 2))
    overrides = _run_cfg(tmp_path / "h", 25) + [
        f"data.train={folder}", f"generator={generator_dir}", f"w_encoder={tmp_path / 'w' / 'w_encoder'}",
        "encoder_input_size=64", f"layer_encoder={{backbone: {TINY_BACKBONE}}}".replace("'", ""), "hidden_dim=4",
        "losses.lpips=0", "lr=0.001", "run.val_every=5", "run.val_images=4"]
    _train("hypernet", overrides)
    log = (tmp_path / "h" / "log.txt").read_text().splitlines()
    losses = [float(line.split(" loss=")[1].split()[0]) for line in log if " loss=" in line and "val" not in line]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert any("val/val_loss" in line for line in log)
    assert (tmp_path / "h" / "checkpoints" / "best.pt").is_file()
    from hyperinverter import HyperInverter

    model = HyperInverter.from_pretrained(tmp_path / "h" / "model")
    assert model.invert(torch.rand(1, 3, 16, 16) * 2 - 1).image.shape == (1, 3, 16, 16)
    # init: E2 and the hypernetworks start from that model's (e.g. after the generator was retrained).
    rest = [o for o in overrides if not o.startswith(("run.out_dir", "run.steps", "run.val_every"))]
    trainer, _ = _train("hypernet", rest + [f"run.out_dir={tmp_path / 'h2'}", "run.steps=1", "run.val_every=0",
                                            f"init={tmp_path / 'h' / 'model'}", "lr=1e-12"])
    for name in ("w_bar_encoder", "hypernet"):
        mine = getattr(HyperInverter.from_pretrained(tmp_path / "h2" / "model"), name).state_dict()
        for k, v in getattr(model, name).state_dict().items():
            if v.is_floating_point() and "running" not in k:
                torch.testing.assert_close(mine[k], v, rtol=0, atol=1e-5)
    with pytest.raises(TrainingError, match="another architecture"):
        _train("hypernet", rest + [f"run.out_dir={tmp_path / 'h3'}", "run.steps=1", "hidden_dim=8",
                                   f"init={tmp_path / 'h' / 'model'}"])


def _starts_as_then_learns(overrides, out, reference, x):
    """A hypernet run with ``overrides`` starts as the model ``reference`` (one step at rate 0, into ``out``'s
    sibling ``<out>0``), then 30 steps at rate 0.003 into ``out`` lower the loss; returns the trained model."""
    from hyperinverter import HyperInverter

    start, _ = _train("hypernet", overrides + [f"run.out_dir={out}0", "run.steps=1", "lr=0"])
    torch.testing.assert_close(start.model.eval().invert(x).image, reference.invert(x).image, rtol=0, atol=1e-5)
    _train("hypernet", overrides + [f"run.out_dir={out}", "run.steps=30", "lr=0.003"])
    log = (out / "log.txt").read_text().splitlines()
    losses = [float(line.split(" loss=")[1].split()[0]) for line in log if " loss=" in line and "val" not in line]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    return HyperInverter.from_pretrained(out / "model")


def test_refinement_passes_added_to_a_trained_model(folder, generator_dir, tmp_path, caplog):
    """refinement_passes with train_first_pass=false: the new pass starts as a zero residual (the model is init's),
    only it learns, and the loss falls; E2 and the first hypernetwork come out exactly as init had them."""
    from hyperinverter import HyperInverter

    _train("w-encoder", _w_encoder_overrides(folder, generator_dir, tmp_path / "w", 2))
    base = _run_cfg(tmp_path / "h", 10) + [
        f"data.train={folder}", f"generator={generator_dir}", f"w_encoder={tmp_path / 'w' / 'w_encoder'}",
        "encoder_input_size=64", f"layer_encoder={{backbone: {TINY_BACKBONE}}}".replace("'", ""), "hidden_dim=4",
        "losses.lpips=0", "lr=0.001"]
    _train("hypernet", base)
    init = HyperInverter.from_pretrained(tmp_path / "h" / "model")
    rest = [o for o in base if not o.startswith(("run.out_dir", "run.steps", "lr="))]
    refine = rest + [f"init={tmp_path / 'h' / 'model'}", "refinement_passes=1", "train_first_pass=false"]
    x = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1
    refined = _starts_as_then_learns(refine, tmp_path / "r", init, x)
    assert refined.config.refinement_passes == 1
    for name in ("w_bar_encoder", "hypernet"):  # frozen, BatchNorm statistics included
        mine = getattr(refined, name).state_dict()
        for k, v in getattr(init, name).state_dict().items():
            assert torch.equal(mine[k], v), (name, k)
    assert any(r.w2.abs().max() > 0 for r in refined.refiners[0].weight_regressors.values())
    assert refined.invert(x).image.shape == (4, 3, 16, 16)
    # the whole model fine-tuned: E2 and the first pass at a tenth of the rate, E2's BatchNorm on its running
    # statistics (its weights move, its statistics do not)
    joint, _ = _train("hypernet", rest + [f"init={tmp_path / 'r' / 'model'}", "refinement_passes=1", "run.steps=3",
                                          "lr=0.002", "first_pass_lr_scale=0.1", "e2_batchnorm=running",
                                          f"run.out_dir={tmp_path / 'j'}"])
    assert [g["lr"] for g in joint.opt.param_groups] == pytest.approx([0.0002, 0.002])
    # resumed with the same config, the scaled rates are what the checkpoint had: nothing is reported as changed;
    # a schedule added on resume is reported at the rates it sets for the resumed step
    caplog.set_level("WARNING", logger="hyperinverter")
    joint_cfg = rest + [f"init={tmp_path / 'r' / 'model'}", "refinement_passes=1", "lr=0.002",
                        "first_pass_lr_scale=0.1", "e2_batchnorm=running", f"run.out_dir={tmp_path / 'j'}"]
    _train("hypernet", joint_cfg + ["run.steps=4"], resume=True)
    assert "config changes" not in caplog.text
    again, _ = _train("hypernet", joint_cfg + ["run.steps=5", "lr_schedule=[[2, 0.001]]"], resume=True)
    assert "lr 0.0002 -> 0.0001" in caplog.text and "lr 0.002 -> 0.001" in caplog.text
    assert [g["lr"] for g in again.opt.param_groups] == pytest.approx([0.0001, 0.001])
    tuned = HyperInverter.from_pretrained(tmp_path / "j" / "model").w_bar_encoder.state_dict()
    before = refined.w_bar_encoder.state_dict()
    assert all(torch.equal(tuned[k], v) for k, v in before.items() if "running" in k or "num_batches" in k)
    assert any(not torch.equal(tuned[k], v) for k, v in before.items() if k.endswith("weight"))
    for bad in ("first_pass_lr_scale=0", "e2_batchnorm=frozen"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            load_train_config("hypernet", None, rest + [bad])
    # E2 widened to read each image next to the input's difference from it: the difference channels of its stem
    # start at zero, so the model is init's; then they learn and the loss falls
    six = [f"layer_encoder={{backbone: {dict(TINY_BACKBONE, in_channels=6)}}}".replace("'", "")
           if o.startswith("layer_encoder=") else o for o in rest]
    six += [f"init={tmp_path / 'r' / 'model'}", "refinement_passes=1", "e2_batchnorm=running"]  # statistics kept
    diff = _starts_as_then_learns(six, tmp_path / "d", refined, x)
    assert diff.config.layer_encoder.backbone.in_channels == 6
    assert diff.w_bar_encoder.input_layer[0].weight[:, 3:].abs().max() > 0
    with pytest.raises(TrainingError, match="only E2's in_channels may go from 3 to 6"):  # and not back
        _train("hypernet", rest + [f"init={tmp_path / 'd' / 'model'}", "refinement_passes=1",
                                   f"run.out_dir={tmp_path / 'd2'}"])
    with pytest.raises(TrainingError, match="give init="):
        _train("hypernet", rest + ["refinement_passes=1", "train_first_pass=false", f"run.out_dir={tmp_path / 'r2'}"])
    with pytest.raises(TrainingError, match=r"1 refinement pass\(es\), this run 0"):
        _train("hypernet", rest + [f"init={tmp_path / 'r' / 'model'}", f"run.out_dir={tmp_path / 'r3'}"])


def test_hypernet_attribute_loss_and_learning_rate_schedule(folder, generator_dir, tmp_path):
    """losses.attr: the distance of an attribute regressor's outputs trains the hypernetworks on its own (with the
    pixel terms off it falls); lr_schedule sets the rate from each listed step on."""
    from hyperinverter.evaluation.attributes import AttributeRegressor
    from hyperinverter.train.recon import attribute_distance

    torch.manual_seed(0)
    reg = AttributeRegressor(attributes=["smile", "yaw", "glasses"], input_size=16, widths=[8, 8])
    reg.save_pretrained(tmp_path / "attr")
    x = torch.rand(3, 3, 16, 16) * 2 - 1
    y = x.clone().requires_grad_(True)
    assert attribute_distance(reg, y, x).item() == 0
    moved = attribute_distance(reg, x.flip(0).requires_grad_(True), x)
    assert moved.item() > 0
    # a subset compares only those outputs: the mean over the chosen columns
    per = (reg.predict_normalized(x.flip(0)) - reg.predict_normalized(x)).detach() ** 2
    torch.testing.assert_close(attribute_distance(reg, x.flip(0), x, [0, 2]), per[:, [0, 2]].mean())
    _train("w-encoder", _w_encoder_overrides(folder, generator_dir, tmp_path / "w", 2))
    overrides = _run_cfg(tmp_path / "h", 30) + [
        f"data.train={folder}", f"generator={generator_dir}", f"w_encoder={tmp_path / 'w' / 'w_encoder'}",
        "encoder_input_size=64", f"layer_encoder={{backbone: {TINY_BACKBONE}}}".replace("'", ""), "hidden_dim=4",
        "losses.lpips=0", "losses.l2=0", "losses.attr=1", f"losses.attr_path={tmp_path / 'attr'}", "lr=0.002",
        "lr_schedule=[[20, 0.001], [25, 0.0005]]"]
    trainer, _ = _train("hypernet", overrides)
    assert trainer.opt.param_groups[0]["lr"] == 0.0005
    log = (tmp_path / "h" / "log.txt").read_text().splitlines()
    attr = [float(line.split(" attr=")[1].split()[0]) for line in log if " attr=" in line]
    assert len(attr) == 30 and np.mean(attr[-10:]) < 0.7 * np.mean(attr[:10]), attr
    with pytest.raises(CheckpointError, match="attr loss"):
        _train("hypernet", [o for o in overrides if not o.startswith("losses.attr_path")]
               + [f"losses.attr_path={tmp_path / 'missing'}", f"run.out_dir={tmp_path / 'h2'}"])
    with pytest.raises(CheckpointError, match=r"does not predict \['hair_lightness'\]"):
        _train("hypernet", overrides + ["losses.attr_attributes=[smile, hair_lightness]",
                                        f"run.out_dir={tmp_path / 'h3'}"])
    subset, _ = _train("hypernet", overrides + ["losses.attr_attributes=[smile, yaw]", f"run.out_dir={tmp_path / 'h4'}",
                                                "run.steps=1"])
    assert subset.loss.attr_columns == [0, 1]
    with pytest.raises(ConfigError, match="attr_attributes"):
        load_train_config("hypernet", None, overrides + ["losses.attr_attributes=[]"])
    with pytest.raises(ConfigError, match="lr_schedule"):
        load_train_config("hypernet", None, overrides + ["lr_schedule=[[5, 0.1], [2, 0.1]]"])
    with pytest.raises(ConfigError, match="losses.attr"):
        load_train_config("hypernet", None, overrides + ["losses.attr=-1"])


# ------------------------------------------------------------------------------------- resume and stops
def test_resume_is_exact(folder, generator_dir, tmp_path):
    straight, _ = _train("w-encoder", _w_encoder_overrides(folder, generator_dir, tmp_path / "a", 8))
    _train("w-encoder", _w_encoder_overrides(folder, generator_dir, tmp_path / "b", 3) + ["run.ckpt_every=3"])
    resumed, _ = _train("w-encoder", _w_encoder_overrides(folder, generator_dir, tmp_path / "b", 8), resume=True)
    a, b = straight.E.state_dict(), resumed.E.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.step == 8


def test_keep_models_every_keeps_each_steps_export(folder, generator_dir, tmp_path):
    """run.keep_models_every=2 over 5 steps: snapshots/step_2 and step_4 hold the models as they were then (the
    export at the end is step 5's); a resumed run goes on keeping them."""
    out = tmp_path / "k"
    trainer, _ = _train("w-encoder", _w_encoder_overrides(folder, generator_dir, out, 5) + ["run.keep_models_every=2"])
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == ["step_2", "step_4"]
    two, four = (WEncoder.from_pretrained(out / "snapshots" / s / "w_encoder").state_dict() for s in ("step_2", "step_4"))
    final = trainer.E.state_dict()
    assert any(not torch.equal(two[k], four[k]) for k in final)  # weights moved between the snapshots
    assert any(not torch.equal(four[k], final[k]) for k in final)  # and step 5 is not step 4
    again, _ = _train("w-encoder", _w_encoder_overrides(folder, generator_dir, out, 6) + ["run.keep_models_every=2"],
                      resume=True)
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == ["step_2", "step_4", "step_6"]
    six = WEncoder.from_pretrained(out / "snapshots" / "step_6" / "w_encoder").state_dict()
    assert all(torch.equal(six[k], v) for k, v in again.E.state_dict().items())
    with pytest.raises(ConfigError, match="keep_models_every"):
        load_train_config("w-encoder", None, _w_encoder_overrides(folder, generator_dir, out, 6)
                          + ["run.keep_models_every=-1"])


def test_resume_applies_a_changed_learning_rate_and_says_so(folder, generator_dir, tmp_path, caplog):
    _train("w-encoder", _w_encoder_overrides(folder, generator_dir, tmp_path / "lr", 2))
    caplog.set_level("WARNING", logger="hyperinverter")
    # (the overrides set lr=0.003; a later override wins)
    resumed, _ = _train("w-encoder", _w_encoder_overrides(folder, generator_dir, tmp_path / "lr", 3) + ["lr=0.0005"],
                        resume=True)
    assert resumed.opt.param_groups[0]["lr"] == 0.0005
    assert "lr 0.003 -> 0.0005" in caplog.text and "applied" in caplog.text
    assert "lr: 0.0005" in (tmp_path / "lr" / "config.yaml").read_text()  # the recorded config is what ran


def test_resume_with_another_architecture_is_refused(folder, generator_dir, tmp_path):
    _train("w-encoder", _w_encoder_overrides(folder, generator_dir, tmp_path / "r", 1))
    other = _w_encoder_overrides(folder, generator_dir, tmp_path / "r", 2) + ["encoder_input_size=64"]
    with pytest.raises(CheckpointError, match="encoder_input_size"):
        _train("w-encoder", other, resume=True)


def test_stop_request_writes_a_checkpoint_and_resume_continues(folder, generator_dir, tmp_path):
    cls = get_trainer("w-encoder")

    class Interrupted(cls):
        def train_step(self, images):
            if self.step == 2:
                self._request_stop(15, None)  # as SIGTERM would
            return super().train_step(images)

    config = load_train_config("w-encoder", None, _w_encoder_overrides(folder, generator_dir, tmp_path / "s", 10))
    t = Interrupted(config, progress=False)
    t.run()
    assert t.step == 3 and (tmp_path / "s" / "checkpoints" / "latest.pt").is_file()
    resumed, _ = _train("w-encoder", _w_encoder_overrides(folder, generator_dir, tmp_path / "s", 5), resume=True)
    assert resumed.step == 5


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="process groups are POSIX")
def test_sigterm_to_the_whole_process_group_still_writes_the_checkpoint(folder, generator_dir, tmp_path):
    # torchrun stops each rank with killpg, and schedulers signal every process of a job: the DataLoader
    # workers get SIGTERM too. One that died of it used to abort the step ("DataLoader worker is killed")
    # before the checkpoint the signal asks for was written, losing the steps since the last one.
    import signal
    import time

    from hyperinverter.train.checkpoint import peek_step

    out = tmp_path / "pg"
    overrides = [o for o in _w_encoder_overrides(folder, generator_dir, out, 100000) if not o.startswith("run.workers")]
    proc = subprocess.Popen([sys.executable, "-m", "hyperinverter", "train", "w-encoder", "--quiet", *overrides,
                             "run.workers=1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            log = out / "log.txt"
            if log.is_file() and "step=3 " in log.read_text():
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()
        os.killpg(proc.pid, signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, stderr
    assert "killed by signal" not in stderr and "stopped at step" in stdout
    step = peek_step(out / "checkpoints" / "latest.pt")
    assert step >= 3 and f"stopped at step {step}/" in stdout  # run.ckpt_every=0: only the stop wrote it


def test_time_budget_stops_like_sigterm_and_resume_continues(folder, generator_dir, tmp_path):
    # max_minutes tiny: the first step already exceeds it; the run stops with a checkpoint and an export.
    out = tmp_path / "t"
    trainer, _ = _train("w-encoder", _w_encoder_overrides(folder, generator_dir, out, 10) + ["run.max_minutes=1e-9"])
    assert trainer.step == 1 and (out / "checkpoints" / "latest.pt").is_file() and (out / "w_encoder").is_dir()
    resumed, _ = _train("w-encoder", _w_encoder_overrides(folder, generator_dir, out, 4), resume=True)
    assert resumed.step == 4
    with pytest.raises(ConfigError, match="max_minutes"):
        load_train_config("w-encoder", None, _w_encoder_overrides(folder, generator_dir, out, 4) +
                          ["run.max_minutes=-1"])


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(folder, generator_dir, tmp_path):
    cls = get_trainer("w-encoder")

    class Exploding(cls):
        def train_step(self, images):
            logs = super().train_step(images)
            if self.step == 4:
                logs["loss"] = float("nan")
            return logs

    config = load_train_config("w-encoder", None,
                               _w_encoder_overrides(folder, generator_dir, tmp_path / "n", 10) + ["run.ckpt_every=2"])
    t = Exploding(config, progress=False)
    with pytest.raises(TrainingError, match="not finite at step 5"):
        t.run()
    state = torch.load(tmp_path / "n" / "checkpoints" / "latest.pt", weights_only=True)
    assert state["step"] == 4


def test_empty_dataset_folder_is_a_clear_error(generator_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="empty"):
        _train("w-encoder", _w_encoder_overrides(tmp_path / "empty", generator_dir, tmp_path / "e", 1))


# ------------------------------------------------------------------------------------------ two processes
def test_two_process_run_matches_one_process(folder, tmp_path):
    """torchrun --nproc_per_node 2 (gloo, CPU) with per-process batch 2 == one process with batch 4."""
    g = "{img_resolution: 16, z_dim: 16, w_dim: 16, channel_base: 128, channel_max: 16, mapping_layers: 2, " \
        "use_noise: false}"
    common = [f"data.train={folder}", f"generator={g}", "discriminator={channel_base: 128, channel_max: 16, "
              "mbstd_num_channels: 0}", "data.hflip=false", "run.device=cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "hyperinverter", "train", "gan", "--quiet",
                          *_run_cfg(tmp_path / "one", 3), *common], capture_output=True, text=True, env=env)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                          "29533", "-m", "hyperinverter", "train", "gan", "--quiet", *_run_cfg(tmp_path / "two", 3),
                          *common], capture_output=True, text=True, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    a = Generator.from_pretrained(tmp_path / "one" / "generator").state_dict()
    b = Generator.from_pretrained(tmp_path / "two" / "generator").state_dict()
    for k in a:
        if not k.endswith("w_avg"):  # the running average is per process
            assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k


def test_hypernet_adversarial_phase_switches_batch_size(folder, generator_dir, tmp_path):
    from hyperinverter import Discriminator

    _train("w-encoder", _w_encoder_overrides(folder, generator_dir, tmp_path / "w", 1))
    Discriminator(img_resolution=16, channel_base=128, channel_max=16, mbstd_group_size=2).save_pretrained(
        tmp_path / "d")
    overrides = _run_cfg(tmp_path / "h", 5) + [
        f"data.train={folder}", f"generator={generator_dir}", f"w_encoder={tmp_path / 'w' / 'w_encoder'}",
        f"discriminator={tmp_path / 'd'}", "encoder_input_size=64", "hidden_dim=4", "losses.lpips=0",
        f"layer_encoder={{backbone: {TINY_BACKBONE}}}".replace("'", ""), "losses.adv=0.1", "losses.adv_start_step=2",
        "losses.r1_every=2", "batch_size_with_adv=2"]
    trainer, _ = _train("hypernet", overrides)
    log = (tmp_path / "h" / "log.txt").read_text().splitlines()
    assert "d_loss" not in log[0] and "d_loss=" in log[-1] and "g_adv=" in log[-1]
    assert trainer.sampler.batch_size == 2


def test_full_disk_keeps_the_previous_checkpoint(folder, generator_dir, tmp_path, monkeypatch, caplog):
    trainer, _ = _train("w-encoder", _w_encoder_overrides(folder, generator_dir, tmp_path / "f", 2))
    path = tmp_path / "f" / "checkpoints" / "latest.pt"
    before = path.read_bytes()

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", no_space)
    trainer.step = 99
    assert trainer.save_checkpoint() is None
    assert path.read_bytes() == before
    assert not list(path.parent.glob(".*.tmp"))  # no half-written file left behind
    assert "previous checkpoint is kept" in caplog.text


# ------------------------------------------------------------------------- runs never clobbered (issue 15)
def test_a_fresh_start_in_an_existing_run_is_refused(folder, generator_dir, tmp_path):
    _train("w-encoder", _w_encoder_overrides(folder, generator_dir, tmp_path / "x", 2))
    path = tmp_path / "x" / "checkpoints" / "latest.pt"
    before = path.read_bytes(), (tmp_path / "x" / "config.yaml").read_text()
    with pytest.raises(TrainingError, match=r"holds a run at step 2 .*--resume"):
        _train("w-encoder", _w_encoder_overrides(folder, generator_dir, tmp_path / "x", 5))
    assert (path.read_bytes(), (tmp_path / "x" / "config.yaml").read_text()) == before


def test_resume_applies_a_changed_batch_size_and_records_it(folder, generator_dir, tmp_path, caplog):
    _train("w-encoder", _w_encoder_overrides(folder, generator_dir, tmp_path / "b", 2))
    caplog.set_level("WARNING", logger="hyperinverter")
    resumed, _ = _train("w-encoder", _w_encoder_overrides(folder, generator_dir, tmp_path / "b", 3) +
                        ["run.batch_size=8"], resume=True)
    assert resumed.sampler.batch_size == 8 and resumed.step == 3
    assert "batch size from the checkpoint's 4 to 8; applied" in caplog.text
    assert "batch_size: 8" in (tmp_path / "b" / "config.yaml").read_text()
    state = torch.load(tmp_path / "b" / "checkpoints" / "latest.pt", weights_only=True)
    assert state["sampler"]["batch_size"] == 8 and "batch_size: 8" in state["config_yaml"]


def test_failing_saves_keep_the_last_good_checkpoint_and_stop_cleanly(folder, generator_dir, tmp_path, monkeypatch,
                                                                     caplog):
    real_save = torch.save
    calls = []

    def short_write(obj, f, *args, **kwargs):  # what torch.save raises on a full disk
        calls.append(obj["step"])
        if obj["step"] >= 2:
            Path(f).write_bytes(b"\0" * 1000)  # a partial file the writer must remove
            raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", short_write)
    caplog.set_level("ERROR", logger="hyperinverter")
    out = tmp_path / "full"
    with pytest.raises(TrainingError, match=r"previous checkpoint is kept \(step 1\); stopped at step 4"):
        _train("w-encoder", _w_encoder_overrides(folder, generator_dir, out, 4) + ["run.ckpt_every=1"])
    assert calls == [1, 2, 3, 4]  # steps 2 and 3 failed, were logged, and training went on
    assert caplog.text.count("training goes on") == 2 and "is the disk full?" in caplog.text
    assert torch.load(out / "checkpoints" / "latest.pt", weights_only=True)["step"] == 1
    assert not list((out / "checkpoints").glob(".*.tmp"))


def test_an_unwritable_checkpoint_folder_is_said_and_ends_cleanly(folder, generator_dir, tmp_path):
    out = tmp_path / "blocked"
    out.mkdir()
    (out / "checkpoints").write_text("a file where the folder should be")
    with pytest.raises(TrainingError, match=r"checkpoints.*no checkpoint of this run has been written yet"):
        _train("w-encoder", _w_encoder_overrides(folder, generator_dir, out, 1))


def test_stale_temporaries_of_a_killed_save_are_removed_on_start(folder, generator_dir, tmp_path, caplog):
    _train("w-encoder", _w_encoder_overrides(folder, generator_dir, tmp_path / "k", 1))
    stale = [tmp_path / "k" / "checkpoints" / ".latest.pt.abc123xy.tmp",
             tmp_path / "k" / "w_encoder" / ".model.safetensors.q1w2e3r4.tmp"]
    for s in stale:
        s.write_bytes(b"\0" * 100_000)
    caplog.set_level("WARNING", logger="hyperinverter")
    _train("w-encoder", _w_encoder_overrides(folder, generator_dir, tmp_path / "k", 2), resume=True)
    assert not any(s.exists() for s in stale) and "left by an interrupted save" in caplog.text
