"""NVIDIA StyleGAN2(-ADA) network pickles: configs from ``init_kwargs``, tensors from the saved state.

Every value read from ``init_kwargs`` is untrusted: numbers are converted by :func:`_number` (one line naming
the field when it is not a number), and messages show values through
:func:`~hyperinverter.utils.limits.describe`, never ``repr``.
"""

from __future__ import annotations

from typing import Any, Callable

from ...errors import CheckpointError
from ...utils.limits import describe, describe_all
from .safe_pickle import PersistentObject


def _get(d: Any, key: str, default: Any) -> Any:
    return d.get(key, default) if isinstance(d, dict) and d.get(key) is not None else default


def _number(value: Any, kind: Callable, name: str, source: str) -> Any:
    """``kind(value)`` (``int`` or ``float``) for a number from ``init_kwargs``; anything else is one line."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) and type(value).__module__ != "numpy":
        raise CheckpointError(f"{source}: {name} in the pickle's init kwargs is {describe(value)}, not a number")
    try:
        return kind(value)
    except (TypeError, ValueError, OverflowError):
        raise CheckpointError(f"{source}: {name} in the pickle's init kwargs is {describe(value)}, not a "
                              f"{kind.__name__}") from None


def network_from_pickle(data: Any, keys: tuple[str, ...], source: str) -> PersistentObject:
    """The first of ``keys`` (e.g. ``G_ema``, ``G``) in an unpickled NVIDIA snapshot dict."""
    if not isinstance(data, dict):
        raise CheckpointError(f"{source}: the pickle holds a {type(data).__name__}, not an NVIDIA network dict")
    for key in keys:
        if isinstance(data.get(key), PersistentObject):
            return data[key]
    found = [k for k, v in data.items() if isinstance(v, PersistentObject)]
    raise CheckpointError(f"{source}: no {' or '.join(keys)} network in the pickle (networks present: "
                          f"{describe_all(found)})")


def check_against_tensors(config: dict, inferred: dict, fields: tuple[str, ...], source: str) -> None:
    """Refuse a recorded config that contradicts the shapes of the stored tensors."""
    for name in fields:
        if name in inferred and config.get(name) != inferred[name]:
            raise CheckpointError(f"{source}: the recorded {name}={describe(config.get(name))} contradicts the "
                                  f"stored tensors, which have {name}={describe(inferred[name])}")
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
        raise CheckpointError(f"{source}: the network is a '{net.class_name}', not a StyleGAN2 Generator")
    kw, st = net.init_kwargs, net.state
    mapping, synthesis = _get(kw, "mapping_kwargs", {}), _get(kw, "synthesis_kwargs", {})
    c_dim = _number(_get(kw, "c_dim", _get(st, "c_dim", 0)), int, "c_dim", source)
    if c_dim:
        raise CheckpointError(f"{source}: conditional generators (c_dim={c_dim}) are not supported")
    for key, value, allowed in (("architecture", _get(synthesis, "architecture", "skip"), ("skip",)),
                                ("activation", _get(synthesis, "activation", "lrelu"), ("lrelu",)),
                                ("mapping activation", _get(mapping, "activation", "lrelu"), ("lrelu",))):
        if not isinstance(value, str) or value not in allowed:
            raise CheckpointError(f"{source}: synthesis {key} {describe(value)} is not supported (only {allowed})")

    def number(d: Any, key: str, default: Any, kind: Callable = int, name: str = "") -> Any:
        return _number(_get(d, key, default), kind, name or key, source)

    w_dim = number(kw, "w_dim", _get(st, "w_dim", inferred["w_dim"]))
    if number(mapping, "layer_features", w_dim, name="mapping layer_features") != w_dim:
        raise CheckpointError(f"{source}: mapping layer_features != w_dim is not supported")
    filt = _get(synthesis, "resample_filter", [1, 3, 3, 1])
    if not isinstance(filt, (list, tuple)) or len(filt) > 16:
        raise CheckpointError(f"{source}: resample_filter in the pickle's init kwargs is {describe(filt)}, not a "
                              "list of at most 16 taps")
    config = dict(
        z_dim=number(kw, "z_dim", _get(st, "z_dim", inferred["z_dim"])),
        w_dim=w_dim,
        img_resolution=number(kw, "img_resolution", _get(st, "img_resolution", inferred["img_resolution"])),
        img_channels=number(kw, "img_channels", _get(st, "img_channels", inferred["img_channels"])),
        channel_base=number(synthesis, "channel_base", inferred["channel_base"]),
        channel_max=number(synthesis, "channel_max", inferred["channel_max"]),
        mapping_layers=number(mapping, "num_layers", inferred["mapping_layers"], name="mapping num_layers"),
        mapping_lr_multiplier=number(mapping, "lr_multiplier", 0.01, float),
        w_avg_beta=number(mapping, "w_avg_beta", 0.995, float),
        resample_filter=[_number(t, float, "resample_filter", source) for t in filt],
        conv_clamp=_get(synthesis, "conv_clamp", None),
        use_noise=bool(synthesis.get("use_noise", True)) if isinstance(synthesis, dict) else True,
    )
    if config["conv_clamp"] is not None:
        config["conv_clamp"] = _number(config["conv_clamp"], float, "conv_clamp", source)
    check_against_tensors(config, inferred, ("z_dim", "w_dim", "img_resolution", "img_channels", "mapping_layers"),
                          source)
    return config


def discriminator_config_from_kwargs(net: PersistentObject, inferred: dict, source: str) -> dict:
    """DiscriminatorConfig fields from an NVIDIA ``Discriminator``'s ``init_kwargs``."""
    if net.class_name != "Discriminator":
        raise CheckpointError(f"{source}: the network is a '{net.class_name}', not a StyleGAN2 Discriminator")
    kw = net.init_kwargs
    c_dim = _number(_get(kw, "c_dim", 0), int, "c_dim", source)
    if c_dim:
        raise CheckpointError(f"{source}: conditional discriminators (c_dim={c_dim}) are not supported")
    architecture = _get(kw, "architecture", "resnet")
    if not (isinstance(architecture, str) and architecture == "resnet"):
        raise CheckpointError(f"{source}: discriminator architecture {describe(architecture)} is not supported "
                              "(only 'resnet')")
    block, epilogue = _get(kw, "block_kwargs", {}), _get(kw, "epilogue_kwargs", {})
    filt = _get(block, "resample_filter", [1, 3, 3, 1])
    if not isinstance(filt, (list, tuple)) or len(filt) > 16:
        raise CheckpointError(f"{source}: resample_filter in the pickle's init kwargs is {describe(filt)}, not a "
                              "list of at most 16 taps")
    group = epilogue.get("mbstd_group_size", 4) if isinstance(epilogue, dict) else 4
    config = dict(
        img_resolution=_number(_get(kw, "img_resolution", inferred["img_resolution"]), int, "img_resolution", source),
        img_channels=_number(_get(kw, "img_channels", inferred["img_channels"]), int, "img_channels", source),
        channel_base=_number(_get(kw, "channel_base", inferred["channel_base"]), int, "channel_base", source),
        channel_max=_number(_get(kw, "channel_max", inferred["channel_max"]), int, "channel_max", source),
        mbstd_group_size=None if group is None else _number(group, int, "mbstd_group_size", source),
        mbstd_num_channels=_number(_get(epilogue, "mbstd_num_channels", inferred["mbstd_num_channels"]), int,
                                   "mbstd_num_channels", source),
        resample_filter=[_number(t, float, "resample_filter", source) for t in filt],
        conv_clamp=_get(kw, "conv_clamp", None),
    )
    if config["conv_clamp"] is not None:
        config["conv_clamp"] = _number(config["conv_clamp"], float, "conv_clamp", source)
    check_against_tensors(config, inferred, ("img_resolution", "img_channels", "mbstd_num_channels"), source)
    return config
