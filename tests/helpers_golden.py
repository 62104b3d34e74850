"""Deterministic weights and inputs shared by ``test_golden_references.py`` and the script that made its fixture.

The golden test compares our FID Inception-v3 and LPIPS against the published implementations
(pytorch-fid's ``InceptionV3`` on torchvision's ``Inception3``, and the ``lpips`` package), run once by
``scripts/make_golden_fixtures.py`` in a separate environment that has torchvision. Both sides fill their
networks from this module, by *torchvision key name*, so the two layouts get bit-identical weights:

* every value comes from SplitMix64 over (CRC-32 of the key name, element index): plain 64-bit integer
  arithmetic in NumPy, the same on any machine and for any NumPy / torch version;
* the scales keep activations near unit size through Inception's ~50 layers (He-uniform convolutions,
  BatchNorm statistics near the identity), so every layer contributes to the outputs.

This module imports only NumPy and torch (never ``hyperinverter``): the fixture script runs it with a
Python that does not have the project installed.
"""

from __future__ import annotations

import math
import re
import zlib
from pathlib import Path
from typing import Callable, Mapping, Optional

import numpy as np
import torch

FIXTURE_DIR = Path(__file__).parent / "fixtures"
#: Arrays: inputs and reference outputs.
FIXTURE_NPZ = FIXTURE_DIR / "golden_references.npz"
#: Metadata: package versions, input recipes, what each array is.
FIXTURE_JSON = FIXTURE_DIR / "golden_references.json"

#: Inception input: 2 images, [0, 1] (pytorch-fid's range), a non-square size that the network resizes to 299.
INCEPTION_INPUT_SHAPE = (2, 3, 40, 48)
#: LPIPS inputs: 3 pairs of non-square images in [-1, 1] (H != W catches transposed spatial handling).
LPIPS_INPUT_SHAPE = (3, 3, 48, 64)
#: Side of the top-left corner kept from each intermediate Inception map (padding effects live there).
CORNER = 5

_GOLDEN = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1


def uniform01(name: str, n: int) -> np.ndarray:
    """``n`` float64 values in [0, 1), a pure function of ``name`` and the index (SplitMix64)."""
    seed = zlib.crc32(name.encode("utf-8"))
    # The first step's offset, reduced mod 2**64 in Python so NumPy never sees an out-of-range scalar.
    start = np.uint64((seed * _GOLDEN) & _MASK)
    z = start + (np.arange(1, n + 1, dtype=np.uint64) * np.uint64(_GOLDEN))  # wraps mod 2**64
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def fill_value(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """The float32 value of the tensor called ``name`` (torchvision / lpips key) with ``shape``.

    Raises:
        ValueError: a name that none of the rules covers (so a new layer cannot be filled by accident).
    """
    n = int(np.prod(shape)) if shape else 1
    u = uniform01(name, n).reshape(shape)
    symmetric = 2.0 * u - 1.0
    if re.fullmatch(r"lin\d+\.model\.1\.weight", name):  # LPIPS heads: non-negative, like the real ones
        out = u
    elif name.endswith("weight") and len(shape) == 4 and not name.endswith("bn.weight"):
        fan_in = int(np.prod(shape[1:]))
        out = symmetric * math.sqrt(6.0 / fan_in)  # He-uniform: keeps the scale through conv + ReLU
    elif name.endswith("weight") and len(shape) == 2:  # Inception's fc
        out = symmetric * math.sqrt(3.0 / shape[1])
    elif name.endswith("bn.weight"):
        out = 0.75 + 0.5 * u
    elif name.endswith("bn.running_var"):
        out = 0.75 + 0.5 * u
    elif name.endswith("bn.running_mean"):
        out = 0.1 * symmetric
    elif name.endswith("bias"):  # bn.bias, fc.bias, the AlexNet / VGG conv biases
        out = 0.1 * symmetric
    else:
        raise ValueError(f"no fill rule for {name!r} {list(shape)}")
    return out.astype(np.float32)


def fill_module_(module: torch.nn.Module, canonical: Optional[Callable[[str], Optional[str]]] = None) -> list[str]:
    """Overwrite every float parameter and buffer of ``module`` in place from :func:`fill_value`.

    Args:
        module: the network.
        canonical: maps the module's own key to the torchvision / lpips name the value is made from;
            None means the key is that name already. A key mapped to None is left alone (constants
            such as LPIPS's input scaling).
    Returns:
        The canonical names that were filled, sorted (both sides check that they filled the same set).
    """
    done = []
    tensors = dict(module.named_parameters())
    tensors.update(dict(module.named_buffers()))
    with torch.no_grad():
        for key, t in tensors.items():
            if not t.is_floating_point():
                continue  # BatchNorm's num_batches_tracked: unused in eval mode
            name = canonical(key) if canonical is not None else key
            if name is None:
                continue
            t.copy_(torch.from_numpy(fill_value(name, tuple(t.shape))))
            done.append(name)
    return sorted(done)


def filled_state_dict(template: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with ``template``'s keys and shapes, float tensors filled from :func:`fill_value`."""
    return {k: (torch.from_numpy(fill_value(k, tuple(v.shape))) if v.is_floating_point() else v.clone())
            for k, v in template.items()}


def lpips_package_key(key: str) -> Optional[str]:
    """An ``lpips.LPIPS`` key -> the torchvision / head-file name (None for the fixed input scaling).

    ``net.slice3.6.weight`` -> ``features.6.weight`` (the slices keep torchvision's indices),
    ``lin2.model.1.weight`` and its alias ``lins.2.model.1.weight`` -> ``lin2.model.1.weight``.
    """
    m = re.fullmatch(r"net\.slice\d+\.(\d+)\.(weight|bias)", key)
    if m:
        return f"features.{m.group(1)}.{m.group(2)}"
    m = re.fullmatch(r"lins?\.?(\d+)\.model\.1\.weight", key)
    if m:
        return f"lin{m.group(1)}.model.1.weight"
    if key.startswith("scaling_layer."):
        return None
    raise ValueError(f"unexpected lpips key {key!r}")


def our_lpips_key(key: str) -> Optional[str]:
    """A key of ``hyperinverter.losses.LPIPS`` -> the torchvision / head-file name (None for constants).

    ``net.features.6.weight`` -> ``features.6.weight``; ``heads.lin2.model.1.weight`` -> ``lin2.model.1.weight``.
    """
    if key.startswith("net."):
        return key[len("net."):]
    if key.startswith("heads."):
        return key[len("heads."):]
    if key in ("shift", "scale"):
        return None
    raise ValueError(f"unexpected LPIPS key {key!r}")


def smooth_images(name: str, shape: tuple[int, int, int, int]) -> np.ndarray:
    """float32 images in [0, 1]: per image and channel a tilted sinusoid plus SplitMix64 noise.

    Edges, gradients and pixel noise excite every filter size; nothing depends on a random generator's
    implementation.
    """
    b, c, h, w = shape
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64) / h, np.arange(w, dtype=np.float64) / w, indexing="ij")
    out = np.empty(shape, dtype=np.float64)
    for i in range(b):
        for j in range(c):
            fy, fx, phase = 1.0 + i + 0.5 * j, 2.0 + 0.7 * i - 0.3 * j, 0.9 * i + 1.7 * j
            out[i, j] = 0.5 + 0.3 * np.sin(2 * np.pi * (fy * yy + fx * xx) + phase)
    out += 0.2 * (2.0 * uniform01(name, out.size).reshape(shape) - 1.0)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def inception_input() -> np.ndarray:
    """The Inception input, [0, 1] (pytorch-fid's range; our network takes ``2 x - 1``)."""
    return smooth_images("input/inception", INCEPTION_INPUT_SHAPE)


def lpips_inputs() -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` in [-1, 1]: pair 0 unrelated images, pair 1 a small perturbation, pair 2 a left-right flip."""
    x = smooth_images("input/lpips/x", LPIPS_INPUT_SHAPE) * 2 - 1
    other = smooth_images("input/lpips/y", LPIPS_INPUT_SHAPE) * 2 - 1
    noise = 2.0 * uniform01("input/lpips/noise", x.size).reshape(x.shape).astype(np.float32) - 1.0
    y = np.stack([other[0], np.clip(x[1] + 0.1 * noise[1], -1, 1), x[2, :, :, ::-1]])
    return x.astype(np.float32), np.ascontiguousarray(y, dtype=np.float32)


def corner(t: torch.Tensor) -> np.ndarray:
    """The top-left ``CORNER x CORNER`` window of a ``[B, C, H, W]`` map (where padding matters)."""
    return t[:, :, :CORNER, :CORNER].detach().cpu().numpy().astype(np.float32)


def channel_means(t: torch.Tensor) -> np.ndarray:
    """Spatial means ``[B, C]`` of a ``[B, C, H, W]`` map."""
    return t.detach().double().mean(dim=(2, 3)).cpu().numpy().astype(np.float32)
