"""Multi-process training on CPU (gloo, ``torchrun``), and logging without host syncs.

* Every trainer on 2 and 4 processes gives one process's weights for the same global batch (the 4-process runs
  are ``slow``, about 40 s each on a loaded 2-core machine; the GAN's 2-process run is ``test_train.py``'s).
  BatchNorm is where the maths differ: CPU runs have no SyncBatchNorm, so each process normalises over its own
  share of the batch. The W-encoder and hypernetwork comparisons therefore run with every BatchNorm of the trained
  encoders on its running statistics (``--freeze-bn`` of ``helpers_distributed.py``): each image's loss then
  depends on that image alone, and the averaged gradient is exactly one process's. (On a multi-GPU run
  SyncBatchNorm makes the statistics global instead.)
* One rank killed mid-run (SIGKILL), then the whole job resumed from the last checkpoint: the same weights,
  bit for bit, as the uninterrupted 2-process run (through the adversarial batch switch).
* A hypernetwork step (adversarial term, R1, gradient accumulation) pulls nothing to the host outside
  ``run.log_every``; a NaN loss between two logs still stops the run before a checkpoint is written.
"""

# The fixtures imported from test_train / test_teacher are arguments of the tests here:
# ruff: noqa: F811
from __future__ import annotations

import collections
import math
import os
import subprocess
import sys
import traceback
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from hyperinverter import Discriminator
from hyperinverter.encoders import WEncoder
from hyperinverter.train import TrainingError, get_trainer, load_train_config

from helpers_distributed import trainer_class
from test_teacher import TINY_G as TEACHER_G
from test_teacher import pairs  # noqa: F401  (a fixture)
from test_train import TINY_BACKBONE, TINY_G, _run_cfg, _train, _w_encoder_overrides
from test_train import folder, generator_dir  # noqa: F401  (fixtures)

HELPER = Path(__file__).with_name("helpers_distributed.py")
LAYER_ENCODER = f"layer_encoder={{backbone: {TINY_BACKBONE}}}".replace("'", "")


# ------------------------------------------------------------------------------------------------ helpers
def torchrun(nproc: int, kind: str, args: list, timeout: int = 600) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node N tests/helpers_distributed.py KIND args`` (gloo, CPU)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           str(HELPER), kind, *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def checkpoint_modules(out: Path) -> dict:
    return torch.load(out / "checkpoints" / "latest.pt", weights_only=True)["modules"]


def one_process(kind: str, overrides: list, dump_grads=None) -> dict:
    """Train in this process (BatchNorm frozen, as the multi-process runs here); returns the initial weights."""
    config = load_train_config(kind, None, overrides)
    trainer = trainer_class(kind, freeze_bn=True, dump_grads=dump_grads)(config, progress=False)
    init = {name: {k: v.detach().clone() for k, v in m.state_dict().items()}
            for name, m in trainer.modules().items() if isinstance(m, nn.Module)}
    try:
        trainer.run()
    finally:
        trainer.close()
    return init


def assert_same_training(one: Path, many: Path, init: dict, names: list, skip: tuple = ()) -> None:
    """The checkpoints of two runs hold the same keys, and the same weights: per network, the difference between
    the runs is under 1% of what training changed. Float sums in another order, amplified by Adam on parameters
    whose gradients are ~0, leave ~0.1% after the 8 hypernetwork steps; a process that trained on its own share
    without averaging (batch 2 instead of 4) ends 50-80% away."""
    a_all, b_all = checkpoint_modules(one), checkpoint_modules(many)
    assert a_all.keys() == b_all.keys()
    for name in names:
        a, b, a0 = a_all[name], b_all[name], init[name]
        assert a.keys() == b.keys() == a0.keys(), name  # DDP's wrapper adds no "module." prefix to a checkpoint
        keys = [k for k in a if a[k].is_floating_point() and not k.endswith(skip)]
        diff = math.sqrt(sum(float((a[k].double() - b[k].double()).square().sum()) for k in keys))
        moved = math.sqrt(sum(float((a[k].double() - a0[k].double()).square().sum()) for k in keys))
        assert moved > 0, f"{name}: training did not change the weights"
        assert diff <= 1e-2 * moved, f"{name}: the runs differ by {diff:.3g}, training moved the weights by {moved:.3g}"


def assert_same_gradients(one: Path, many: Path) -> None:
    """The first step's gradients (same weights in both runs): averaged over processes, they are one process's."""
    a, b = torch.load(one, weights_only=True), torch.load(many, weights_only=True)
    assert a.keys() == b.keys() and a
    # a gradient that is only rounding noise (e.g. a bias under a normalisation: about 1e-10, its sign differs
    # between CPUs) is held to a millionth of the largest gradient, not to its own scale
    largest = max(float(t.abs().max()) for t in a.values())
    for k in a:
        scale = float(a[k].abs().max())
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=max(1e-5 * scale, 1e-6 * largest) + 1e-9), k


# ------------------------------------------------------------------------------------------------ setups
@pytest.fixture(scope="module")
def hypernet_inputs(folder, generator_dir, tmp_path_factory):
    """A phase-I W-encoder (two steps) and a discriminator without minibatch-std (its groups would span
    processes' shares differently) for the tiny hypernetwork runs."""
    root = tmp_path_factory.mktemp("hypernet_inputs")
    _train("w-encoder", _w_encoder_overrides(folder, generator_dir, root / "w", 2))
    Discriminator(img_resolution=16, channel_base=128, channel_max=16, mbstd_num_channels=0).save_pretrained(
        root / "d")
    return root


def hypernet_overrides(folder, generator_dir, inputs, out, world: int) -> list:
    """8 steps, checkpoints every 2, the adversarial term (and R1 every 2 steps) from step 4 with the batch
    going from 2 to 1 image per process (official: 8 -> 4)."""
    batch = 2 * world
    return _run_cfg(out, 8, **{"run.batch_size": batch, "run.ckpt_every": 2, "run.device": "cpu"}) + [
        f"data.train={folder}", f"generator={generator_dir}", f"w_encoder={inputs / 'w' / 'w_encoder'}",
        f"discriminator={inputs / 'd'}", "encoder_input_size=64", "hidden_dim=4", "losses.lpips=0", LAYER_ENCODER,
        "losses.adv=0.1", "losses.adv_start_step=4", "losses.r1_every=2", f"batch_size_with_adv={batch // 2}",
        "lr=0.001", "d_lr=0.001"]


def w_encoder_overrides(folder, generator_dir, out, world: int) -> list:
    """Four steps of two micro-batches each (DDP's no_sync on the first): with 4 processes, one image each."""
    batch = 4 if world <= 2 else world
    return _w_encoder_overrides(folder, generator_dir, out, 4) + [
        f"run.batch_size={batch}", f"run.grad_accum={2 if world <= 2 else 1}", "run.device=cpu"]


def teacher_overrides(pairs_root, out, world: int) -> list:
    """gan-teacher with the adversarial term from step 2 (R1 every 2 steps); no minibatch-std (see above)."""
    return _run_cfg(out, 4, **{"run.batch_size": 2 * world, "run.device": "cpu"}) + [
        f"data.train={pairs_root}", f"generator={TEACHER_G}".replace("'", ""), "data.hflip=false", "g_lr=0.01",
        "discriminator={channel_base: 256, channel_max: 16, mbstd_num_channels: 0}", "adv=0.1",
        "adv_start_step=2", "r1_every=2"]


def gan_overrides(folder, out, world: int) -> list:
    """train gan as in test_train.py's 2-process test: no noise inputs, no minibatch-std."""
    g = "{img_resolution: 16, z_dim: 16, w_dim: 16, channel_base: 128, channel_max: 16, mapping_layers: 2, " \
        "use_noise: false}"
    return _run_cfg(out, 3, **{"run.batch_size": 4 if world <= 2 else world, "run.device": "cpu"}) + [
        f"data.train={folder}", f"generator={g}", "discriminator={channel_base: 128, channel_max: 16, "
        "mbstd_num_channels: 0}", "data.hflip=false", "r1_every=2"]


@pytest.fixture(scope="module")
def hypernet_two(folder, generator_dir, hypernet_inputs, tmp_path_factory):
    """The 2-process hypernetwork run (BatchNorm frozen) and its first step's gradients, shared by two tests."""
    out = tmp_path_factory.mktemp("hypernet_two") / "run"
    grads = out.parent / "grads.pt"
    r = torchrun(2, "hypernet", ["--freeze-bn", "--dump-grads", grads,
                                 *hypernet_overrides(folder, generator_dir, hypernet_inputs, out, 2)])
    assert r.returncode == 0, r.stderr[-4000:]
    return out, grads


# ---------------------------------------------------------------------------------- N processes = one process
def _hypernet_equals_one_process(folder, generator_dir, inputs, out_many, grads_many, tmp_path, world):
    grads_one = tmp_path / "grads_one.pt"
    init = one_process("hypernet", hypernet_overrides(folder, generator_dir, inputs, tmp_path / "one", world),
                       dump_grads=grads_one)
    assert_same_gradients(grads_one, grads_many)
    assert_same_training(tmp_path / "one", out_many, init, ["w_bar_encoder", "hypernet", "D"])
    log = (out_many / "log.txt").read_text().splitlines()
    # the switch after 4 steps; R1 when the step count is even
    assert "d_loss" not in log[3] and "g_adv=" in log[4] and "r1=" in log[4] and "r1=" not in log[5]
    state = torch.load(out_many / "checkpoints" / "latest.pt", weights_only=True)
    assert state["sampler"]["batch_size"] == 1 and state["step"] == 8  # one image per process after the switch


def test_hypernet_two_processes_equal_one_through_the_adversarial_switch(folder, generator_dir, hypernet_inputs,
                                                                         hypernet_two, tmp_path):
    out, grads = hypernet_two
    _hypernet_equals_one_process(folder, generator_dir, hypernet_inputs, out, grads, tmp_path, 2)


def test_w_encoder_two_processes_with_grad_accum_equal_one(folder, generator_dir, tmp_path):
    many, grads_many, grads_one = tmp_path / "two", tmp_path / "grads_two.pt", tmp_path / "grads_one.pt"
    r = torchrun(2, "w-encoder", ["--freeze-bn", "--dump-grads", grads_many,
                                  *w_encoder_overrides(folder, generator_dir, many, 2)])
    assert r.returncode == 0, r.stderr[-4000:]
    init = one_process("w-encoder", w_encoder_overrides(folder, generator_dir, tmp_path / "one", 2),
                       dump_grads=grads_one)
    assert_same_gradients(grads_one, grads_many)
    assert_same_training(tmp_path / "one", many, init, ["E"])
    assert WEncoder.from_pretrained(many / "w_encoder").config.w_dim == TINY_G["w_dim"]


def test_gan_teacher_two_processes_equal_one(pairs, tmp_path):
    root, _ = pairs
    r = torchrun(2, "gan-teacher", teacher_overrides(root, tmp_path / "two", 2))
    assert r.returncode == 0, r.stderr[-4000:]
    init = one_process("gan-teacher", teacher_overrides(root, tmp_path / "one", 2))
    # w_avg: each process tracks the average of its own latents (not used by the losses)
    assert_same_training(tmp_path / "one", tmp_path / "two", init, ["G", "D", "G_ema"], skip=("w_avg",))
    assert "d_loss=" in (tmp_path / "two" / "log.txt").read_text().splitlines()[-1]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["w-encoder", "hypernet", "gan-teacher", "gan"])
def test_four_processes_equal_one(kind, folder, generator_dir, hypernet_inputs, pairs, tmp_path):
    """4 processes (one image each for the W-encoder and after the hypernetwork's switch) = 1 process."""
    many = tmp_path / "four"
    if kind == "hypernet":
        grads = tmp_path / "grads_four.pt"
        r = torchrun(4, kind, ["--freeze-bn", "--dump-grads", grads,
                               *hypernet_overrides(folder, generator_dir, hypernet_inputs, many, 4)])
        assert r.returncode == 0, r.stderr[-4000:]
        _hypernet_equals_one_process(folder, generator_dir, hypernet_inputs, many, grads, tmp_path, 4)
        return
    overrides = {"w-encoder": lambda out: w_encoder_overrides(folder, generator_dir, out, 4),
                 "gan-teacher": lambda out: teacher_overrides(pairs[0], out, 4),
                 "gan": lambda out: gan_overrides(folder, out, 4)}[kind]
    r = torchrun(4, kind, ["--freeze-bn", *overrides(many)])
    assert r.returncode == 0, r.stderr[-4000:]
    init = one_process(kind, overrides(tmp_path / "one"))
    names = {"w-encoder": ["E"], "gan-teacher": ["G", "D", "G_ema"], "gan": ["G", "D", "G_ema"]}[kind]
    assert_same_training(tmp_path / "one", many, init, names, skip=("w_avg",))


# ------------------------------------------------------------------------------------- a rank dies, the job resumes
def test_a_killed_rank_and_a_resumed_job_give_the_uninterrupted_weights(folder, generator_dir, hypernet_inputs,
                                                                        hypernet_two, tmp_path):
    """Rank 1 is SIGKILLed after 3 steps (checkpoint at step 2, before the adversarial switch after 4); torchrun
    ends the job; ``--resume`` of both processes continues from step 2 through the switch to step 8."""
    out = tmp_path / "killed"
    overrides = hypernet_overrides(folder, generator_dir, hypernet_inputs, out, 2)
    r = torchrun(2, "hypernet", ["--freeze-bn", "--die-rank", 1, "--die-step", 3, *overrides])
    assert r.returncode != 0 and "Signal 9" in r.stderr + r.stdout, (r.stdout[-2000:], r.stderr[-4000:])
    assert torch.load(out / "checkpoints" / "latest.pt", weights_only=True)["step"] == 2
    r = torchrun(2, "hypernet", ["--freeze-bn", "--resume", *overrides])
    assert r.returncode == 0, r.stderr[-4000:]
    resumed, straight = checkpoint_modules(out), checkpoint_modules(hypernet_two[0])
    for name in ("w_bar_encoder", "hypernet", "D"):
        assert resumed[name].keys() == straight[name].keys()
        for k in straight[name]:
            assert torch.equal(resumed[name][k], straight[name][k]), f"{name}.{k}"
    assert torch.load(out / "checkpoints" / "latest.pt", weights_only=True)["step"] == 8


# ----------------------------------------------------------------------------------------- no host syncs
#: Tensor methods that copy a value to the host (on a GPU: wait for everything queued before it).
SYNCS = ("item", "tolist", "numpy", "__float__", "__int__", "__bool__", "__index__", "__format__")
#: Host-side tensors in every run, GPU or not: the data pipeline (before ``.to(device)``) and Adam's step counter
#: (``state["step"]`` stays on the CPU unless ``capturable``/``fused``).
HOST_SIDE = ("/torch/utils/data/", "/hyperinverter/data/", "/torch/optim/")


def test_hypernet_steps_make_no_host_sync_outside_log_every(folder, generator_dir, hypernet_inputs, tmp_path,
                                                            monkeypatch):
    """Every call that pulls a tensor's value to the host is recorded with the trainer's phase: none may happen in
    a step (forward, losses, backward, optimiser, the loop's bookkeeping), only in the log pulls every 3 steps.
    On CPU every tensor is on the host, so the methods are patched (a CUDA run can use
    ``torch.cuda.set_sync_debug_mode``, which also sees syncs inside C++ ops)."""
    overrides = hypernet_overrides(folder, generator_dir, hypernet_inputs, tmp_path / "h", 1)
    overrides += ["run.steps=6", "run.log_every=3", "run.ckpt_every=0", "run.grad_accum=2",
                  "run.batch_size=4", "batch_size_with_adv=2", "losses.adv_start_step=2"]
    phase = ["setup"]
    calls = collections.Counter()

    class Watched(get_trainer("hypernet")):
        def train_step(self, batch):
            phase[0] = "step"
            return super().train_step(batch)

        def pull_logs(self):
            phase[0] = "log"
            try:
                return super().pull_logs()
            finally:
                phase[0] = "step"

        def save_checkpoint(self, *args, **kwargs):
            phase[0] = "save"  # the last one, after step 6 (a log step)
            return super().save_checkpoint(*args, **kwargs)

    def watch(name, original):
        def method(self, *args, **kwargs):
            frames = traceback.extract_stack()[:-1]
            if not any(h in f.filename.replace(os.sep, "/") for f in frames for h in HOST_SIDE):
                where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames[-4:]))
                calls[(phase[0], name, where)] += 1
            return original(self, *args, **kwargs)
        return method

    config = load_train_config("hypernet", None, overrides)
    trainer = Watched(config, progress=False)
    for name in SYNCS:
        monkeypatch.setattr(torch.Tensor, name, watch(name, getattr(torch.Tensor, name)))
    phase[0] = "probe"  # the watch sees a sync (else this test could not fail)
    torch.ones([]).item()
    assert [k[:2] for k in calls] == [("probe", "item")]
    try:
        trainer.run()
    finally:
        monkeypatch.undo()
        trainer.close()
    in_steps = {k: v for k, v in calls.items() if k[0] == "step"}
    assert not in_steps, f"host syncs during steps: {in_steps}"
    assert sum(v for k, v in calls.items() if k[0] == "log") == 2  # one tolist() per log pull (steps 3 and 6)
    log = (tmp_path / "h" / "log.txt").read_text().splitlines()
    assert len(log) == 2 and "g_adv=" in log[0] and "r1=" in log[1]  # the adversarial term and R1 were on


def test_logged_values_are_means_over_the_window(folder, generator_dir, tmp_path):
    """log_every=3: each line holds the mean of the three steps' values (they were summed on the device)."""
    per_step = _w_encoder_overrides(folder, generator_dir, tmp_path / "each", 6)
    _train("w-encoder", per_step)
    _train("w-encoder", [o.replace(str(tmp_path / "each"), str(tmp_path / "window")) for o in per_step]
           + ["run.log_every=3"])
    def read(run):
        return [float(line.split(" loss=")[1].split()[0]) for line in (run / "log.txt").read_text().splitlines()]

    each, window = read(tmp_path / "each"), read(tmp_path / "window")
    assert len(each) == 6 and len(window) == 2
    assert window == pytest.approx([sum(each[:3]) / 3, sum(each[3:]) / 3], rel=1e-4)


def test_a_nan_between_two_logs_stops_before_the_next_checkpoint(folder, generator_dir, tmp_path):
    """log_every=10 but a checkpoint every 2 steps: the window's losses are checked before saving, so the NaN of
    step 3 stops the run at step 4 and the checkpoint of step 2 stays."""

    class Exploding(get_trainer("w-encoder")):
        def train_step(self, images):
            logs = super().train_step(images)
            if self.step == 2:
                logs["loss"] = logs["loss"] * float("nan")
            return logs

    config = load_train_config("w-encoder", None, _w_encoder_overrides(folder, generator_dir, tmp_path / "n", 10)
                               + ["run.ckpt_every=2", "run.log_every=10"])
    t = Exploding(config, progress=False)
    with pytest.raises(TrainingError, match=r"\['loss'\] is not finite in steps 3-4 .*last good checkpoint"):
        try:
            t.run()
        finally:
            t.close()
    assert torch.load(tmp_path / "n" / "checkpoints" / "latest.pt", weights_only=True)["step"] == 2


# ----------------------------------------------------------------------------------------- SyncBatchNorm
def test_sync_batchnorm_on_multi_gpu_runs_only_and_the_keys_stay():
    """Multi-process CUDA: every BatchNorm becomes SyncBatchNorm, with the same state_dict keys (checkpoints of
    either kind load into the other); one process, CPU (gloo: no SyncBatchNorm kernel) or
    ``run.sync_batchnorm=false``: unchanged. (Only the conversion: this machine has no GPUs to run it on.)"""
    from hyperinverter.train.config import RunConfig
    from hyperinverter.train.distributed import DistEnv
    from hyperinverter.train.trainer import Trainer

    def convert(world, device, enabled=True):
        env = DistEnv(world_size=world, device=torch.device(device))
        fake = SimpleNamespace(env=env, device=env.device, run_cfg=RunConfig(sync_batchnorm=enabled))
        E = WEncoder(w_dim=16, backbone=TINY_BACKBONE)
        keys = list(E.state_dict())
        E = Trainer.sync_batchnorm(fake, E)
        assert list(E.state_dict()) == keys
        return sum(isinstance(m, nn.SyncBatchNorm) for m in E.modules()), \
            sum(isinstance(m, nn.BatchNorm2d) for m in E.modules())

    n_bn = convert(1, "cpu")[1]
    assert n_bn > 0
    assert convert(2, "cuda:0") == (n_bn, 0)
    assert convert(2, "cuda:0", enabled=False) == (0, n_bn)
    assert convert(2, "cpu") == (0, n_bn)
    assert convert(1, "cuda:0") == (0, n_bn)
