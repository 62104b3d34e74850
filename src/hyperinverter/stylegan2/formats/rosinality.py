"""rosinality/stylegan2-pytorch generators: key and shape conversion to the NVIDIA layout.

Both implementations store the same unit-variance weights and apply the same run-time scales, so
the conversion only renames tensors and drops singleton dimensions:

=============================  ===========================================
rosinality                     NVIDIA (ours)
=============================  ===========================================
style.{i}.weight / bias        mapping.fc{i-1}.weight / bias
input.input [1,C,4,4]          synthesis.b4.const [C,4,4]
conv1 / to_rgb1                synthesis.b4.conv1 / synthesis.b4.torgb
convs.{2k} / convs.{2k+1}      synthesis.b{2^(k+3)}.conv0 / .conv1
to_rgbs.{k}                    synthesis.b{2^(k+3)}.torgb
*.conv.weight [1,O,I,k,k]      *.weight [O,I,k,k]
*.conv.modulation.*            *.affine.*
*.noise.weight [1]             *.noise_strength []
*.activate.bias                *.bias
to_rgb*.bias [1,3,1,1]         *.torgb.bias [3]
noises.noise_{j} [1,1,r,r]     noise_const [r,r] of the j-th conv layer
*.blur.kernel, *.upsample.kernel (= filter x 4)   resample_filter
=============================  ===========================================
"""

from __future__ import annotations

import re
from typing import Mapping

import torch

from ...errors import CheckpointError

ROSINALITY_MARKERS = ("style.1.weight", "input.input", "conv1.conv.weight")


def is_rosinality(state: Mapping[str, torch.Tensor]) -> bool:
    return all(k in state for k in ROSINALITY_MARKERS)


def convert_rosinality_generator(state: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Return an NVIDIA-keyed state dict (without ``mapping.w_avg``) from a rosinality ``g_ema`` state dict."""
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()

    def take(key: str) -> torch.Tensor:
        if key not in state:
            raise CheckpointError(f"{source}: rosinality generator is missing {key!r}")
        used.add(key)
        return state[key]

    n_mlp = len([k for k in state if re.fullmatch(r"style\.\d+\.weight", k)])
    for i in range(1, n_mlp + 1):
        out[f"mapping.fc{i - 1}.weight"] = take(f"style.{i}.weight")
        out[f"mapping.fc{i - 1}.bias"] = take(f"style.{i}.bias")

    num_to_rgbs = len([k for k in state if re.fullmatch(r"to_rgbs\.\d+\.conv\.weight", k)])
    resolutions = [4] + [2 ** (k + 3) for k in range(num_to_rgbs)]
    const = take("input.input")
    out["synthesis.b4.const"] = const.reshape(const.shape[1:])

    def conv(src: str, dst: str, noise_index: int) -> None:
        out[f"{dst}.weight"] = take(f"{src}.conv.weight").squeeze(0)
        out[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight")
        out[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias")
        out[f"{dst}.bias"] = take(f"{src}.activate.bias")
        if f"{src}.noise.weight" in state:
            out[f"{dst}.noise_strength"] = take(f"{src}.noise.weight").reshape([])
            noise = state.get(f"noises.noise_{noise_index}")
            if noise is not None:
                used.add(f"noises.noise_{noise_index}")
                out[f"{dst}.noise_const"] = noise.reshape(noise.shape[-2:])

    def torgb(src: str, dst: str) -> None:
        out[f"{dst}.weight"] = take(f"{src}.conv.weight").squeeze(0)
        out[f"{dst}.affine.weight"] = take(f"{src}.conv.modulation.weight")
        out[f"{dst}.affine.bias"] = take(f"{src}.conv.modulation.bias")
        out[f"{dst}.bias"] = take(f"{src}.bias").reshape(-1)

    conv("conv1", "synthesis.b4.conv1", 0)
    torgb("to_rgb1", "synthesis.b4.torgb")
    for k, res in enumerate(resolutions[1:]):
        conv(f"convs.{2 * k}", f"synthesis.b{res}.conv0", 2 * k + 1)
        conv(f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1", 2 * k + 2)
        torgb(f"to_rgbs.{k}", f"synthesis.b{res}.torgb")

    # Resampling filters: rosinality stores the normalised filter times factor**2 (= 4).
    default = torch.outer(torch.tensor([1.0, 3, 3, 1]), torch.tensor([1.0, 3, 3, 1]))
    default = default / default.sum()
    for k, res in enumerate(resolutions):
        up_conv = state.get(f"convs.{2 * k - 2}.conv.blur.kernel") if res > 4 else None
        up_img = state.get(f"to_rgbs.{k - 1}.upsample.kernel") if res > 4 else None
        for key in (f"convs.{2 * k - 2}.conv.blur.kernel", f"to_rgbs.{k - 1}.upsample.kernel"):
            used.add(key)
        f_img = up_img / 4 if up_img is not None else default
        f_conv = up_conv / 4 if up_conv is not None else f_img
        out[f"synthesis.b{res}.resample_filter"] = f_img.clone()
        if res > 4:
            out[f"synthesis.b{res}.conv0.resample_filter"] = f_conv.clone()
        out[f"synthesis.b{res}.conv1.resample_filter"] = f_img.clone()

    leftover = sorted(k for k in state if k not in used and not k.startswith("noises."))
    if leftover:
        raise CheckpointError(f"{source}: unexpected tensors for a rosinality generator: {leftover[:6]}")
    return out
