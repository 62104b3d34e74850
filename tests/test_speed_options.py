"""Run-time options: --threads on every command, --precision/--compile/... on the inference commands."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from test_inverter import make_model

from hyperinverter import precision as precision_module
from hyperinverter import runtime
from hyperinverter.cli import build_parser, main
from hyperinverter.runtime import INFERENCE_COMMANDS, _leaf_parsers


@pytest.fixture(autouse=True)
def restore_process_settings():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
    precision_module.set_default_precision(None)
    runtime.set_inference_options()


def test_every_command_takes_threads_and_inference_commands_take_speed_options():
    leaves = list(_leaf_parsers(build_parser()))
    assert len(leaves) > 15
    for name, p in leaves:
        assert "--threads" in p._option_string_actions, name
        has = "--precision" in p._option_string_actions
        assert has == (name in INFERENCE_COMMANDS), name
        if has:
            for option in ("--compile", "--channels-last", "--tf32", "--cudnn-benchmark"):
                assert option in p._option_string_actions, (name, option)


def test_invert_with_precision_and_threads(tmp_path, capsys):
    model_dir = tmp_path / "tiny"
    make_model(seed=4).save_pretrained(model_dir)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    code = main(["invert", str(tmp_path / "a.png"), "--model", str(model_dir), "-o", str(tmp_path / "out"),
                 "--quiet", "--precision", "bf16", "--threads", "1", "--channels-last"])
    assert code == 0, capsys.readouterr()
    assert torch.get_num_threads() == 1
    assert precision_module.get_default_precision() == "bf16"
    assert runtime.inference_options().channels_last
    assert Image.open(tmp_path / "out" / "a.png").size == (32, 32)
    assert main(["info", str(model_dir), "--threads", "2"]) == 0 and torch.get_num_threads() == 2
    with pytest.raises(SystemExit):
        main(["invert", str(tmp_path / "a.png"), "--precision", "fp8"])
    assert main(["info", str(model_dir), "--threads", "0"]) == 2
    assert "--threads must be at least 1" in capsys.readouterr().err


@pytest.mark.slow  # torch.compile's tracing: 10 s on an idle 2-core machine, far more under load
def test_optimize_compile_and_channels_last_keep_the_numbers():
    model = make_model(seed=6)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    ref = model.invert(x)
    model.optimize(channels_last=True)
    assert torch.allclose(model.invert(x).image, ref.image, atol=1e-4)
    model.optimize(compile=True, backend="eager")  # the wiring; inductor needs a compiler and minutes
    assert torch.allclose(model.invert(x).image, ref.image, atol=1e-4)


def test_backend_options():
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark)
    try:
        runtime.configure_backends(tf32=True, cudnn_benchmark=True)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert torch.backends.cudnn.benchmark
        runtime.configure_backends(tf32=False)
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = before


def test_cpu_inference_runs_in_passes_that_keep_feature_maps_small(monkeypatch):
    """On a CPU, invert and render split a batch into passes whose largest feature map stays under
    CPU_PASS_BYTES; the images, codes and residuals are those of one pass over the whole batch."""
    from hyperinverter import inverter as inverter_module

    model = make_model()
    x = torch.rand(5, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    largest = model.generator.synthesis.largest_feature_map()
    assert largest == max(b.out_channels * b.resolution**2 for b in model.generator.synthesis.blocks())
    with torch.no_grad():
        assert model.pass_size(torch.device("cpu")) == max(1, inverter_module.CPU_PASS_BYTES // (4 * largest))
        assert model.pass_size(torch.device("meta")) is None  # other devices: the whole batch
    assert model.pass_size(torch.device("cpu")) is None  # autograd on (training): the whole batch

    calls = []
    synthesis_forward = type(model.generator.synthesis).forward

    def counting(self, ws, *args, **kwargs):
        calls.append(ws.shape[0])
        return synthesis_forward(self, ws, *args, **kwargs)

    monkeypatch.setattr(type(model.generator.synthesis), "forward", counting)
    model.pass_batch = 5
    whole = model.invert(x, batch_size=5)
    assert calls == [5, 5]  # phase I and phase II, one pass each
    calls.clear()
    monkeypatch.setattr(inverter_module, "CPU_PASS_BYTES", 2 * 4 * largest)  # two images' maps
    model.pass_batch = None
    passes = model.invert(x, batch_size=5)
    assert calls == [2, 2, 2, 2, 1, 1]
    assert torch.allclose(passes.image, whole.image, atol=1e-5) and torch.allclose(passes.w, whole.w, atol=1e-6)
    assert torch.allclose(passes.deltas["b16.conv0.weight"], whole.deltas["b16.conv0.weight"], atol=1e-6)
    calls.clear()
    with torch.no_grad():
        edited = model.render(whole.ws, whole.deltas, batch_size=8)
    assert calls == [2, 2, 1] and torch.allclose(edited, whole.image, atol=1e-5)
    model.pass_batch = 0
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        model.invert(x)
