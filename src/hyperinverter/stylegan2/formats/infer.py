"""Deriving generator and discriminator configs from the tensors of an NVIDIA-keyed state dict."""

from __future__ import annotations

import math
import re
from typing import Mapping

import torch

from ...errors import CheckpointError
from ...utils.limits import describe_all

_BLOCK = re.compile(r"^(?:synthesis\.)?b(\d{1,7})\.")  # a block resolution; longer numbers are no block


def fit_channel_table(channels: Mapping[int, int], source: str) -> tuple[int, int]:
    """``(channel_base, channel_max)`` such that ``min(channel_base // r, channel_max)`` gives ``channels``."""
    channel_max = max(channels.values())
    below = [r for r in sorted(channels) if channels[r] < channel_max]
    channel_base = channels[below[0]] * below[0] if below else channel_max * max(channels)
    fitted = {r: min(channel_base // r, channel_max) for r in channels}
    if fitted != dict(channels):
        table = ", ".join(f"{r}px: {c}" for r, c in sorted(channels.items()))
        raise CheckpointError(f"{source}: channel counts per resolution ({table}) do not follow "
                              "min(channel_base / resolution, channel_max); this layout is not supported")
    return channel_base, channel_max


def taps_from_filter(f: torch.Tensor, source: str = "") -> list[float]:
    """Recover separable taps from a normalised 2-D resampling filter (an outer product, at most 16 x 16);
    errors start with ``source`` (the file) when given."""
    where = f"{source}: " if source else ""
    if f.ndim != 2 or f.shape[0] != f.shape[1] or not 1 <= f.shape[0] <= 16:
        raise CheckpointError(f"{where}the resampling filter has shape {list(f.shape)}; expected a square filter "
                              "of at most 16 x 16 taps")
    taps = f.double().sum(dim=1)
    if not torch.allclose(torch.outer(taps, taps), f.double(), atol=1e-6):
        raise CheckpointError(f"{where}the {f.shape[0]}x{f.shape[1]} resampling filter is not separable; "
                              "not supported")
    taps = taps / taps.abs()[taps != 0].min()  # canonical form: smallest tap = 1, e.g. [1, 3, 3, 1]
    return [float(round(float(t))) if abs(t - round(float(t))) < 1e-4 else round(float(t), 6) for t in taps]


def _power_of_two(value: int, what: str, source: str) -> int:
    if value < 4 or 2 ** int(round(math.log2(value))) != value:
        raise CheckpointError(f"{source}: {what} {value} is not a power of two >= 4")
    return value


def infer_generator_config(state: Mapping[str, torch.Tensor], source: str) -> dict:
    """GeneratorConfig fields from an NVIDIA-keyed generator state dict (mapping.*, synthesis.*)."""
    try:
        resolutions = sorted({int(m.group(1)) for k in state if k.startswith("synthesis.")
                              for m in [_BLOCK.match(k)] if m})
        if not resolutions:
            raise KeyError("synthesis.b4.const")
        img_resolution = _power_of_two(resolutions[-1], "the largest block", source)
        channels = {r: int(state[f"synthesis.b{r}.conv1.weight"].shape[0]) for r in resolutions}
        num_layers = len([k for k in state if re.fullmatch(r"mapping\.fc\d+\.weight", k)])
        z_dim = int(state["mapping.fc0.weight"].shape[1])
        w_dim = int(state[f"mapping.fc{num_layers - 1}.weight"].shape[0])
        img_channels = int(state[f"synthesis.b{img_resolution}.torgb.weight"].shape[0])
        f = state.get("synthesis.b4.resample_filter", state.get(f"synthesis.b{img_resolution}.resample_filter"))
    except KeyError as e:
        raise CheckpointError(f"{source}: not a complete StyleGAN2 generator state dict (missing {e})") from None
    if resolutions != [2**i for i in range(2, int(math.log2(img_resolution)) + 1)]:
        raise CheckpointError(f"{source}: synthesis blocks {describe_all(resolutions, 16)} are not every power of "
                              f"two up to {img_resolution}")
    channel_base, channel_max = fit_channel_table(channels, source)
    config = dict(z_dim=z_dim, w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                  channel_base=channel_base, channel_max=channel_max, mapping_layers=num_layers,
                  use_noise=any(k.endswith("noise_const") for k in state))
    if f is not None:
        config["resample_filter"] = taps_from_filter(f, source)
    return config


def infer_discriminator_config(state: Mapping[str, torch.Tensor], source: str) -> dict:
    """DiscriminatorConfig fields from an NVIDIA-keyed discriminator state dict (b<res>.*, b4.*)."""
    try:
        resolutions = sorted({int(m.group(1)) for k in state for m in [_BLOCK.match(k)] if m})
        img_resolution = _power_of_two(resolutions[-1], "the largest block", source)
        channels = {r: int(state[f"b{r}.conv0.weight"].shape[0]) for r in resolutions if r > 4}
        channels[4] = int(state["b4.conv.weight"].shape[0])
        img_channels = int(state[f"b{img_resolution}.fromrgb.weight"].shape[1])
        mbstd = int(state["b4.conv.weight"].shape[1]) - channels[4]
    except (KeyError, IndexError) as e:
        raise CheckpointError(f"{source}: not a complete StyleGAN2 discriminator state dict (missing {e})") from None
    channel_base, channel_max = fit_channel_table(channels, source)
    config = dict(img_resolution=img_resolution, img_channels=img_channels, channel_base=channel_base,
                  channel_max=channel_max, mbstd_num_channels=mbstd)
    f = state.get(f"b{img_resolution}.resample_filter")
    if f is not None:
        config["resample_filter"] = taps_from_filter(f, source)
    return config
