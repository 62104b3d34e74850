"""The README's Python examples run as written.

Every ```python block of README.md is executed, in order and in one namespace (as a reader pastes them into
one session), in a folder holding small stand-ins for
the files the examples name: the tiny test model as the downloaded ``faces-hd128`` (in a temporary
``$HYPERINVERTER_HOME``) and as ``my-model``, a tiny NVIDIA pickle as ``stylegan2-ffhq-config-f.pkl``,
``a.png``/``b.png``, ``smile.pt`` and a ``val_images/`` folder.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_formats import write_nvlabs_pickle
from PIL import Image
from test_inverter import make_model

README = Path(__file__).resolve().parents[1] / "README.md"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def python_blocks() -> list[str]:
    return PYTHON_BLOCK.findall(README.read_text(encoding="utf-8"))


@pytest.fixture()
def example_folder(tmp_path, monkeypatch):
    """A working folder with the files the examples use (see the module docstring)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HYPERINVERTER_HOME", str(tmp_path / "home"))
    model = make_model(seed=4)  # 32 px, w_dim 32, 8 rows of ws
    model.save_pretrained(tmp_path / "home" / "models" / "faces-hd128")
    model.save_pretrained(tmp_path / "my-model")
    write_nvlabs_pickle(tmp_path / "stylegan2-ffhq-config-f.pkl", model.generator)
    rng = np.random.default_rng(0)
    (tmp_path / "val_images").mkdir()
    for path in ["a.png", "b.png"] + [f"val_images/{i}.png" for i in range(3)]:
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(tmp_path / path)
    torch.save(torch.randn(model.generator.w_dim), tmp_path / "smile.pt")
    return tmp_path


def test_the_readme_has_python_examples():
    blocks = python_blocks()
    assert len(blocks) >= 3 and "import hyperinverter as hi" in blocks[0]


def test_readme_python_examples_run_in_order(example_folder):
    """The blocks run one after the other in one namespace, as a reader pastes them into one session (a
    block may use what an earlier one defined, e.g. ``model`` and ``x``)."""
    namespace = {"__name__": "__readme__"}
    for index, code in enumerate(python_blocks()):
        first = code.strip().splitlines()[0]
        try:
            exec(compile(code, f"README.md python block {index + 1}", "exec"), namespace)  # noqa: S102
        except Exception as e:  # name the block, not just the error
            raise AssertionError(f"README python block {index + 1} (starting {first!r}) failed: "
                                 f"{type(e).__name__}: {e}") from e
