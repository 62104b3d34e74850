"""NVIDIA StyleGAN2(-ADA) network pickles: configs from ``init_kwargs``, tensors from the saved state."""

from __future__ import annotations

from typing import Any

from ...errors import CheckpointError
from .safe_pickle import PersistentObject


def _get(d: Any, key: str, default: Any) -> Any:
    return d.get(key, default) if isinstance(d, dict) and d.get(key) is not None else default


def network_from_pickle(data: Any, keys: tuple[str, ...], source: str) -> PersistentObject:
    """The first of ``keys`` (e.g. ``G_ema``, ``G``) in an unpickled NVIDIA snapshot dict."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{source}: the pickle holds a {type(data).__name__}, not an NVIDIA network dict")
    for key in keys:
        if isinstance(data.get(key), PersistentObject):
            return data[key]
    found = sorted(k for k in data if isinstance(data[k], PersistentObject))
    raise CheckpointError(f"{source}: no {' or '.join(keys)} network in the pickle (networks present: {found})")


def check_against_tensors(config: dict, inferred: dict, fields: tuple[str, ...], source: str) -> None:
    """Refuse a recorded config that contradicts the shapes of the stored tensors."""
    for name in fields:
        if name in inferred and config.get(name) != inferred[name]:
            raise CheckpointError(f"{source}: the recorded {name}={config.get(name)!r} contradicts the stored "
                                  f"tensors, which have {name}={inferred[name]!r}")
    table = {r: min(config["channel_base"] // r, config["channel_max"]) for r in _resolutions(config)}
    actual = {r: min(inferred["channel_base"] // r, inferred["channel_max"]) for r in _resolutions(inferred)}
    if table != actual:
        raise CheckpointError(f"{source}: the recorded channel_base/channel_max give channels {table}, "
                              f"but the stored tensors have {actual}")


def _resolutions(config: dict) -> list[int]:
    return [2**i for i in range(2, int(config["img_resolution"]).bit_length())]


def generator_config_from_kwargs(net: PersistentObject, inferred: dict, source: str) -> dict:
    """GeneratorConfig fields from an NVIDIA ``Generator``'s ``init_kwargs``; unsupported options are refused.

    ``inferred`` (the config implied by the tensors) fills in what the kwargs leave out and must agree with them.
    """
    if net.class_name != "Generator":
        raise CheckpointError(f"{source}: the network is a {net.class_name!r}, not a StyleGAN2 Generator")
    kw, st = net.init_kwargs, net.state
    mapping, synthesis = _get(kw, "mapping_kwargs", {}), _get(kw, "synthesis_kwargs", {})
    c_dim = _get(kw, "c_dim", _get(st, "c_dim", 0))
    if c_dim:
        raise CheckpointError(f"{source}: conditional generators (c_dim={c_dim}) are not supported")
    for key, value, allowed in (("architecture", _get(synthesis, "architecture", "skip"), ("skip",)),
                                ("activation", _get(synthesis, "activation", "lrelu"), ("lrelu",)),
                                ("mapping activation", _get(mapping, "activation", "lrelu"), ("lrelu",))):
        if value not in allowed:
            raise CheckpointError(f"{source}: synthesis {key} {value!r} is not supported (only {allowed})")
    w_dim = int(_get(kw, "w_dim", _get(st, "w_dim", inferred["w_dim"])))
    if _get(mapping, "layer_features", w_dim) != w_dim:
        raise CheckpointError(f"{source}: mapping layer_features != w_dim is not supported")
    config = dict(
        z_dim=int(_get(kw, "z_dim", _get(st, "z_dim", inferred["z_dim"]))),
        w_dim=w_dim,
        img_resolution=int(_get(kw, "img_resolution", _get(st, "img_resolution", inferred["img_resolution"]))),
        img_channels=int(_get(kw, "img_channels", _get(st, "img_channels", inferred["img_channels"]))),
        channel_base=int(_get(synthesis, "channel_base", inferred["channel_base"])),
        channel_max=int(_get(synthesis, "channel_max", inferred["channel_max"])),
        mapping_layers=int(_get(mapping, "num_layers", inferred["mapping_layers"])),
        mapping_lr_multiplier=float(_get(mapping, "lr_multiplier", 0.01)),
        w_avg_beta=float(_get(mapping, "w_avg_beta", 0.995)),
        resample_filter=[float(t) for t in _get(synthesis, "resample_filter", [1, 3, 3, 1])],
        conv_clamp=_get(synthesis, "conv_clamp", None),
        use_noise=bool(synthesis.get("use_noise", True)) if isinstance(synthesis, dict) else True,
    )
    if config["conv_clamp"] is not None:
        config["conv_clamp"] = float(config["conv_clamp"])
    check_against_tensors(config, inferred, ("z_dim", "w_dim", "img_resolution", "img_channels", "mapping_layers"),
                          source)
    return config


def discriminator_config_from_kwargs(net: PersistentObject, inferred: dict, source: str) -> dict:
    """DiscriminatorConfig fields from an NVIDIA ``Discriminator``'s ``init_kwargs``."""
    if net.class_name != "Discriminator":
        raise CheckpointError(f"{source}: the network is a {net.class_name!r}, not a StyleGAN2 Discriminator")
    kw = net.init_kwargs
    if _get(kw, "c_dim", 0):
        raise CheckpointError(f"{source}: conditional discriminators (c_dim={kw['c_dim']}) are not supported")
    if _get(kw, "architecture", "resnet") != "resnet":
        raise CheckpointError(f"{source}: discriminator architecture {kw['architecture']!r} is not supported "
                              "(only 'resnet')")
    block, epilogue = _get(kw, "block_kwargs", {}), _get(kw, "epilogue_kwargs", {})
    config = dict(
        img_resolution=int(_get(kw, "img_resolution", inferred["img_resolution"])),
        img_channels=int(_get(kw, "img_channels", inferred["img_channels"])),
        channel_base=int(_get(kw, "channel_base", inferred["channel_base"])),
        channel_max=int(_get(kw, "channel_max", inferred["channel_max"])),
        mbstd_group_size=epilogue.get("mbstd_group_size", 4) if isinstance(epilogue, dict) else 4,
        mbstd_num_channels=int(_get(epilogue, "mbstd_num_channels", inferred["mbstd_num_channels"])),
        resample_filter=[float(t) for t in _get(block, "resample_filter", [1, 3, 3, 1])],
        conv_clamp=_get(kw, "conv_clamp", None),
    )
    if config["conv_clamp"] is not None:
        config["conv_clamp"] = float(config["conv_clamp"])
    check_against_tensors(config, inferred, ("img_resolution", "img_channels", "mbstd_num_channels"), source)
    return config
