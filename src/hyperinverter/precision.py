"""Inference precision: ``"fp32"``, ``"bf16"`` or ``"fp16"``, per model or as a process default.

What a reduced precision changes (see :meth:`HyperInverter.invert`):

* the encoders (E1, E2) and the hypernetworks run under ``torch.autocast`` in that dtype;
* the generator runs its highest-resolution blocks in that dtype, as NVlabs does with ``num_fp16_res``
  (:meth:`SynthesisNetwork.forward`, ``reduced_dtype``): styles, demodulation coefficients, the
  residuals' factors and the image skip path stay float32, layer outputs are clamped to ±256;
* everything returned (codes, residual factors, images) is float32.

A model loaded with ``from_pretrained(..., dtype=torch.bfloat16)`` uses bf16 unless told otherwise.
Where the device cannot run float16 convolutions (some CPU builds), ``fp16`` falls back to ``bf16``
with a note (:func:`resolve_precision`).
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Iterator, Optional, Union

import torch

from .precision_names import PRECISIONS  # torch-free: the command line lists them

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: Synthesis blocks (from the highest resolution down) that run in reduced precision (NVlabs: 4).
REDUCED_BLOCKS = 4

_default: Optional[str] = None
_fp16_ok: dict[str, bool] = {}


def check_precision(name: str) -> str:
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {name!r}")
    return name


def precision_of_dtype(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bf16"`` (float32 and float64 -> ``"fp32"``)."""
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")


def set_default_precision(name: Optional[str]) -> None:
    """Process-wide precision for models whose ``precision`` attribute is None (None = from their weights)."""
    global _default
    _default = None if name is None else check_precision(name)


def get_default_precision() -> Optional[str]:
    return _default


@contextlib.contextmanager
def default_precision(name: Optional[str]) -> Iterator[None]:
    """``with default_precision("bf16"): model.invert(x)``: the process default for the block."""
    previous = _default
    set_default_precision(name)
    try:
        yield
    finally:
        set_default_precision(previous)


def fp16_supported(device: Union[str, torch.device]) -> bool:
    """Whether float16 convolution, matmul and autocast run on ``device`` (tried once per device type)."""
    device = torch.device(device)
    if device.type == "cuda":
        return True
    if device.type not in _fp16_ok:
        try:
            x = torch.randn(1, 4, 8, 8, device=device, dtype=torch.float16)
            torch.nn.functional.conv2d(x, torch.randn(4, 4, 3, 3, device=device, dtype=torch.float16), padding=1)
            torch.nn.functional.conv_transpose2d(x, torch.randn(4, 4, 3, 3, device=device, dtype=torch.float16),
                                                 stride=2)
            torch.baddbmm(x.reshape(1, 4, 64), x.reshape(1, 4, 64)[:, :, :4], x.reshape(1, 4, 64))
            with torch.autocast(device.type, dtype=torch.float16):
                torch.nn.functional.linear(torch.randn(2, 4, device=device), torch.randn(3, 4, device=device))
            _fp16_ok[device.type] = True
        except (RuntimeError, NotImplementedError):
            _fp16_ok[device.type] = False
    return _fp16_ok[device.type]


def resolve_precision(name: str, device: Union[str, torch.device]) -> str:
    """``name``, or ``"bf16"`` with a warning where ``"fp16"`` cannot run on ``device``."""
    check_precision(name)
    if name == "fp16" and not fp16_supported(device):
        warnings.warn(f"fp16 is not supported by this PyTorch build on {torch.device(device).type}; "
                      "using bf16 instead", stacklevel=3)
        return "bf16"
    return name


def autocast(device: Union[str, torch.device], name: str):
    """``torch.autocast`` for ``name`` on ``device`` (a no-op context for fp32)."""
    device = torch.device(device)
    if name == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=DTYPES[name])
