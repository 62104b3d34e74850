"""scripts/average_models.py: the mean of model folders' weights, written to a new folder only."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from hyperinverter.inverter import HyperInverter

from helpers_untrusted import tiny_inverter_folder

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "average_models.py"


def _script():
    spec = importlib.util.spec_from_file_location("average_models", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_average_of_two_folders_is_the_elementwise_mean(tmp_path):
    a = tiny_inverter_folder(tmp_path / "a")
    b = tmp_path / "b"
    model = HyperInverter.from_pretrained(a)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.save_pretrained(b)
    assert _script().main([str(tmp_path / "mean"), str(a), str(b)]) == 0
    mean = HyperInverter.from_pretrained(tmp_path / "mean").state_dict()
    sa, sb = HyperInverter.from_pretrained(a).state_dict(), HyperInverter.from_pretrained(b).state_dict()
    for k, v in mean.items():
        if v.is_floating_point():
            torch.testing.assert_close(v, (sa[k] + sb[k]) / 2)
    moved = [k for k, v in sa.items() if v.is_floating_point() and not torch.equal(v, sb[k])]
    assert moved  # the two inputs differ, so the check above compared something


def test_refuses_an_existing_output_and_other_architectures(tmp_path, capsys):
    a = tiny_inverter_folder(tmp_path / "a")
    out = tmp_path / "out"
    out.mkdir()
    assert _script().main([str(out), str(a)]) == 2
    assert "exists" in capsys.readouterr().err
    with pytest.raises(ValueError, match="different architectures"):
        _script().average_states([{"x": torch.zeros(2)}, {"x": torch.zeros(3)}])
