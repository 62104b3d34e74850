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
