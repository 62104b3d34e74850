"""Writers of the third-party file formats, for tests: NVIDIA network pickles and rosinality state dicts.

They are written from the formats' documented structure (see ../shared/reference/README.md), with
no third-party code: an NVIDIA pickle is a dict of objects that reduce to
``torch_utils.persistence._reconstruct_persistent_obj(meta)``; ``meta["state"]`` is the module's
``__dict__`` with ``_parameters``, ``_buffers`` and ``_modules`` (children persisted the same way).
"""

from __future__ import annotations

import collections
import contextlib
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import torch

#: Source text stored in the pickle; the official loader would execute it. Ours must not.
def malicious_source(marker: Path) -> str:
    return f"import pathlib\npathlib.Path({str(marker)!r}).write_text('executed')\nclass Generator: pass\n"


@contextlib.contextmanager
def fake_nvlabs_modules():
    """Register stand-ins for ``torch_utils.persistence`` and ``dnnlib.util`` so that pickle can name them."""
    persistence = types.ModuleType("torch_utils.persistence")

    def _reconstruct_persistent_obj(meta):  # pragma: no cover - only its name is pickled
        raise AssertionError("never called when writing")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
    torch_utils = types.ModuleType("torch_utils")
    torch_utils.persistence = persistence
    util = types.ModuleType("dnnlib.util")

    class EasyDict(dict):
        pass

    EasyDict.__module__ = "dnnlib.util"
    EasyDict.__qualname__ = "EasyDict"
    util.EasyDict = EasyDict
    dnnlib = types.ModuleType("dnnlib")
    dnnlib.util = util
    mods = {"torch_utils": torch_utils, "torch_utils.persistence": persistence, "dnnlib": dnnlib,
            "dnnlib.util": util}
    saved = {k: sys.modules.get(k) for k in mods}
    sys.modules.update(mods)
    try:
        yield EasyDict, _reconstruct_persistent_obj
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class _Persisted:
    def __init__(self, reconstruct, meta):
        self.reconstruct, self.meta = reconstruct, meta

    def __reduce__(self):
        return self.reconstruct, (self.meta,)


def _persist(module: torch.nn.Module, reconstruct, source: str, init_kwargs=None):
    state = {
        "training": False,
        "_parameters": collections.OrderedDict(module._parameters),
        "_buffers": collections.OrderedDict(module._buffers),
        "_non_persistent_buffers_set": set(),
        "_backward_hooks": collections.OrderedDict(),
        "_forward_hooks": collections.OrderedDict(),
        "_forward_pre_hooks": collections.OrderedDict(),
        "_state_dict_hooks": collections.OrderedDict(),
        "_load_state_dict_pre_hooks": collections.OrderedDict(),
        "_modules": collections.OrderedDict(
            (name, _persist(child, reconstruct, source)) for name, child in module._modules.items()),
        "_init_args": (),
        "_init_kwargs": init_kwargs if init_kwargs is not None else {},
        "weight_gain": np.float64(0.5),  # plain attributes appear as numpy scalars in real files
    }
    meta = dict(type="class", version=6, module_src=source, class_name=type(module).__name__, state=state)
    return _Persisted(reconstruct, meta)


def nvlabs_generator_kwargs(G, EasyDict, **synthesis_extra):
    c = G.config
    return EasyDict(
        z_dim=c.z_dim, c_dim=0, w_dim=c.w_dim, img_resolution=c.img_resolution, img_channels=c.img_channels,
        mapping_kwargs=EasyDict(num_layers=c.mapping_layers, embed_features=None, layer_features=None,
                                activation="lrelu", lr_multiplier=c.mapping_lr_multiplier,
                                w_avg_beta=c.w_avg_beta),
        synthesis_kwargs=EasyDict(channel_base=c.channel_base, channel_max=c.channel_max, num_fp16_res=0,
                                  conv_clamp=c.conv_clamp, architecture="skip", resample_filter=[1, 3, 3, 1],
                                  use_noise=True, activation="lrelu", **synthesis_extra),
    )


def nvlabs_discriminator_kwargs(D, EasyDict):
    c = D.config
    return EasyDict(c_dim=0, img_resolution=c.img_resolution, img_channels=c.img_channels, architecture="resnet",
                    channel_base=c.channel_base, channel_max=c.channel_max, num_fp16_res=0,
                    conv_clamp=c.conv_clamp, cmap_dim=None,
                    block_kwargs=EasyDict(activation="lrelu", resample_filter=[1, 3, 3, 1], freeze_layers=0),
                    mapping_kwargs=EasyDict(), epilogue_kwargs=EasyDict(mbstd_group_size=c.mbstd_group_size,
                                                                        mbstd_num_channels=c.mbstd_num_channels,
                                                                        activation="lrelu"))


def write_nvlabs_pickle(path: Path, G, D=None, marker: Path | None = None, G_ema=True, protocol=3,
                        training_set_kwargs=True, kwargs_override=None, **synthesis_extra) -> None:
    """Write a StyleGAN2-ADA style snapshot pickle ``{G, D, G_ema, augment_pipe, training_set_kwargs}``."""
    source = malicious_source(marker or Path("/nonexistent/marker"))
    with fake_nvlabs_modules() as (EasyDict, reconstruct):
        data = {}
        if training_set_kwargs:
            data["training_set_kwargs"] = EasyDict(path="~/datasets/ffhq.zip", resolution=G.img_resolution)
        # G (non-EMA) gets perturbed weights so that picking the wrong network is visible.
        G_raw = type(G)(**G.config.__dict__)
        G_raw.load_state_dict(G.state_dict())
        with torch.no_grad():
            for p in G_raw.parameters():
                p.add_(0.5)
        data["G"] = _persist(G_raw, reconstruct, source, nvlabs_generator_kwargs(G, EasyDict, **synthesis_extra))
        data["D"] = _persist(D, reconstruct, source, nvlabs_discriminator_kwargs(D, EasyDict)) if D else None
        if G_ema:
            kwargs = nvlabs_generator_kwargs(G, EasyDict, **synthesis_extra)
            kwargs.update(kwargs_override or {})
            data["G_ema"] = _persist(G, reconstruct, source, kwargs)
        data["augment_pipe"] = None
        path.write_bytes(pickle.dumps(data, protocol=protocol))


def to_rosinality_state_dict(G) -> dict[str, torch.Tensor]:
    """The rosinality ``Generator.state_dict()`` equivalent of our generator (key names of that project)."""
    sd = {k: v.detach().clone() for k, v in G.state_dict().items()}
    out = {}
    for i in range(G.config.mapping_layers):
        out[f"style.{i + 1}.weight"] = sd[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = sd[f"mapping.fc{i}.bias"]
    out["input.input"] = sd["synthesis.b4.const"].unsqueeze(0)

    def conv(dst, src, upsample):
        out[f"{dst}.conv.weight"] = sd[f"{src}.weight"].unsqueeze(0)
        if upsample:
            out[f"{dst}.conv.blur.kernel"] = sd[f"{src}.resample_filter"] * 4
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        out[f"{dst}.noise.weight"] = sd[f"{src}.noise_strength"].reshape(1)
        out[f"{dst}.activate.bias"] = sd[f"{src}.bias"]

    def torgb(dst, src, block, upsample):
        out[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(1, -1, 1, 1)
        if upsample:
            out[f"{dst}.upsample.kernel"] = sd[f"{block}.resample_filter"] * 4
        out[f"{dst}.conv.weight"] = sd[f"{src}.weight"].unsqueeze(0)
        out[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]

    conv("conv1", "synthesis.b4.conv1", False)
    torgb("to_rgb1", "synthesis.b4.torgb", "synthesis.b4", False)
    noises = [sd["synthesis.b4.conv1.noise_const"]]
    resolutions = G.synthesis.block_resolutions[1:]
    for k, res in enumerate(resolutions):
        conv(f"convs.{2 * k}", f"synthesis.b{res}.conv0", True)
        conv(f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1", False)
        noises += [sd[f"synthesis.b{res}.conv0.noise_const"], sd[f"synthesis.b{res}.conv1.noise_const"]]
    for k, res in enumerate(resolutions):
        torgb(f"to_rgbs.{k}", f"synthesis.b{res}.torgb", f"synthesis.b{res}", True)
    for j, n in enumerate(noises):
        out[f"noises.noise_{j}"] = n.reshape(1, 1, *n.shape)
    return out
