"""Reading the StyleGAN2 files people have, into our :class:`Generator` / :class:`Discriminator`.

``load_generator(path)`` accepts, told apart by their contents rather than their names:

* a folder written by ``save_pretrained`` (``config.json`` + ``model.safetensors``);
* an NVIDIA StyleGAN2(-ADA) network pickle (``.pkl``), read without executing anything in it;
* a ``torch.save`` file (``.pt``/``.pth``) holding an NVIDIA-keyed state dict (``mapping.fc0.weight``,
  ``synthesis.b4.const``, ...) or a rosinality one (``style.1.weight``, ``convs.0...``), bare or under
  ``g_ema``/``G_ema``/``state_dict``/... (a pSp/e4e checkpoint's ``decoder.`` works too);
* a ``.safetensors`` file with either key layout.
Where a file holds several networks, the EMA generator is taken.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import pickle
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional, Union

import torch

from ...checkpoints import CONFIG_NAME, load_state_dict_checked
from ...checkpoints.pretrained import build_within_budget, read_json_file
from ...errors import CheckpointError, UnsafePickleError  # noqa: F401 - UnsafePickleError: documented below
from ...utils.limits import describe_all, exception_text
from ..discriminator import Discriminator, DiscriminatorConfig
from ..generator import Generator, GeneratorConfig
from .infer import infer_discriminator_config, infer_generator_config
from .nvlabs import discriminator_config_from_kwargs, generator_config_from_kwargs, network_from_pickle
from .rosinality import convert_rosinality_generator, is_rosinality
from .safe_pickle import PersistentObject, restricted_load

log = logging.getLogger(__name__)
PathLike = Union[str, os.PathLike]

#: torch.save's legacy (non-zip) format starts with this pickled magic number.
_LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
_GENERATOR_KEYS = ("g_ema", "G_ema", "state_dict", "generator", "g", "G", "decoder")
_DISCRIMINATOR_KEYS = ("d", "D", "discriminator")
_PREFIXES = ("G_ema.", "g_ema.", "generator.", "decoder.", "module.", "discriminator.", "D.", "d.")


def _torch_load(path: Path, data: Optional[bytes] = None) -> Any:
    """``torch.load`` in weights-only mode (plus ``argparse.Namespace``, which rosinality files hold)."""
    from ...utils.safe_load import weights_only_load

    return weights_only_load(path, data, safe_globals=[argparse.Namespace])


def read_model_file(path: PathLike) -> Any:
    """Load the raw contents of a model file, never executing code from it.

    Returns a dict of tensors (safetensors), the object a ``torch.save`` file holds, or the dict of
    an NVIDIA pickle whose networks are :class:`PersistentObject`.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder without {CONFIG_NAME}")
    with open(path, "rb") as fh:
        head = fh.read(16)
    if not head:
        raise CheckpointError(f"{path}: the file is empty")
    if head.startswith(b"PK\x03\x04"):
        return _torch_load(path)
    if len(head) >= 9 and head[8:9] == b"{":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path}: truncated or corrupt safetensors file ({exception_text(e)})") from None
    if head[0] == 0x80:  # a pickle: an NVIDIA network pickle or a legacy torch.save file
        data = path.read_bytes()
        try:
            with io.BytesIO(data) as fh:
                obj = restricted_load(fh)
        except CheckpointError as e:  # UnsafePickleError, DeclaredSizeError, ...: keep the kind, name the file
            raise type(e)(f"{path}: {exception_text(e, 1000)}") from None
        except Exception as e:  # noqa: BLE001 - any unpickling failure on untrusted bytes means "corrupt"
            raise CheckpointError(f"{path}: truncated or corrupt pickle ({type(e).__name__}: {exception_text(e)})"
                                  ) from None
        if isinstance(obj, int) and obj == _LEGACY_TORCH_MAGIC:
            return _torch_load(path, data)
        return obj
    raise CheckpointError(f"{path}: not a recognised model file (expected an NVIDIA .pkl, a torch .pt/.pth, "
                          f"a .safetensors file or a save_pretrained folder)")


def saved_class(path: PathLike) -> Optional[str]:
    """The class a ``save_pretrained`` folder holds (``"HyperInverter"``, ``"Generator"``, ...): the ``class``
    entry of its ``config.json``, read size-capped (:func:`~hyperinverter.checkpoints.pretrained.read_json_file`).
    None for a file, a folder without ``config.json``, or a config without a ``class`` string.

    Raises:
        CheckpointError: the ``config.json`` is unreadable, not JSON, or too large (one line naming it).
    """
    config_file = Path(path) / CONFIG_NAME
    if not config_file.is_file():
        return None
    meta = read_json_file(config_file)
    name = meta.get("class") if isinstance(meta, dict) else None
    return name if isinstance(name, str) else None


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and len(obj) > 0 and all(isinstance(v, torch.Tensor) for v in obj.values())


def _strip_prefix(state: Mapping[str, torch.Tensor], markers: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Remove a common prefix (``decoder.``, ``G_ema.``, ...) when the markers only appear under it."""
    if any(m in state for m in markers):
        return dict(state)
    for prefix in _PREFIXES:
        sub = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if any(m in sub for m in markers):
            return sub
    return dict(state)


def _candidates(obj: Any, keys: tuple[str, ...]) -> list[tuple[str, Any]]:
    found = [("", obj)] if _is_state_dict(obj) else []
    if isinstance(obj, Mapping):
        found += [(k, obj[k]) for k in keys if _is_state_dict(obj.get(k))]
    return found


def _describe(obj: Any) -> str:
    if isinstance(obj, Mapping):
        return f"a dict with keys {describe_all(obj)}"
    return f"a {type(obj).__name__}"


def _network_state(net: PersistentObject, label: str) -> dict[str, torch.Tensor]:
    """The state dict of a persisted network; its errors (a cycle, a name that is not a string) name ``label``."""
    try:
        return net.state_dict()
    except CheckpointError as e:
        raise type(e)(f"{label}: {e}") from None


def _fill_missing_noise(model: Generator, state: dict[str, torch.Tensor], source: str) -> None:
    missing = [k for k in model.state_dict() if k.endswith("noise_const") and k not in state]
    if missing and len(missing) == len([k for k in model.state_dict() if k.endswith("noise_const")]):
        warnings.warn(f"{source}: the file stores no constant noise; drawing it with seed 0 "
                      "(noise_mode='const' will not match the original's)", stacklevel=3)
        gen = torch.Generator().manual_seed(0)
        for k in missing:
            state[k] = torch.randn(model.state_dict()[k].shape, generator=gen)


def _build_generator(config: dict, state: dict[str, torch.Tensor], source: str,
                     overrides: Mapping[str, Any]) -> Generator:
    """The generator ``config`` describes, loaded with ``state``; the config is checked against the limits, and
    building it may allocate little more than ``state`` holds (see ``build_within_budget``)."""
    config = {**config, **overrides}
    stored = sum(t.numel() for t in state.values())
    model = build_within_budget(Generator, config, stored, source, f"the file holds {stored:,} elements")
    needs_w_avg = "mapping.w_avg" not in state
    if needs_w_avg:
        state["mapping.w_avg"] = torch.zeros(model.w_dim)
    _fill_missing_noise(model, state, source)
    load_state_dict_checked(model, state, source)
    if needs_w_avg:
        warnings.warn(f"{source}: the file stores no average latent; estimating w_avg from 10,000 mapped z "
                      "(seed 0)", stacklevel=3)
        model.compute_w_avg()
    return model.eval()


def _generator_from_state(obj: Any, source: str, overrides: Mapping[str, Any]) -> Generator:
    for where, candidate in _candidates(obj, _GENERATOR_KEYS):
        state = _strip_prefix(candidate, ("synthesis.b4.const",) + ("style.1.weight",))
        label = f"{source}[{where}]" if where else source
        if is_rosinality(state):
            latent_avg = obj.get("latent_avg") if isinstance(obj, Mapping) else None
            converted = convert_rosinality_generator(state, label)
            if isinstance(latent_avg, torch.Tensor):
                converted["mapping.w_avg"] = latent_avg.reshape(-1, latent_avg.shape[-1])[0].float()
            return _build_generator(infer_generator_config(converted, label), converted, label, overrides)
        if "synthesis.b4.const" in state:
            if any(k.startswith("synthesis.input.") or ".L0_" in k for k in state):
                raise CheckpointError(f"{label}: looks like a StyleGAN3 generator; only StyleGAN2 is supported")
            return _build_generator(infer_generator_config(state, label), state, label, overrides)
        if any(k.startswith("synthesis.") for k in state) and any(k.startswith("synthesis.L") for k in state):
            raise CheckpointError(f"{label}: looks like a StyleGAN3 generator; only StyleGAN2 is supported")
    raise CheckpointError(f"{source}: no StyleGAN2 generator found (expected NVIDIA keys like "
                          f"'synthesis.b4.const' or rosinality keys like 'style.1.weight'; the file holds "
                          f"{_describe(obj)})")


def load_generator(path: PathLike, device: Union[str, torch.device] = "cpu", **config_overrides: Any) -> Generator:
    """Read a StyleGAN2 generator from any supported file into our :class:`Generator` (in eval mode).

    Args:
        path: folder from ``save_pretrained``, NVIDIA ``.pkl``, torch ``.pt``/``.pth``, or ``.safetensors``.
        device: where to put the model.
        config_overrides: :class:`GeneratorConfig` fields that a bare state dict cannot tell
            (e.g. ``conv_clamp=256`` for StyleGAN2-ADA models trained with clamping, or
            ``mapping_lr_multiplier``); NVIDIA pickles record them.
    Raises:
        CheckpointError: the file is missing, corrupt, of another kind, or its tensors contradict each other.
        UnsafePickleError: the pickle asks for a global outside the allow-list (nothing is executed).
    """
    path = Path(path)
    unknown = set(config_overrides) - set(GeneratorConfig.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown GeneratorConfig fields: {sorted(unknown)}")
    if path.is_dir() and (path / CONFIG_NAME).is_file():
        model = Generator.from_pretrained(path)
        if config_overrides:
            raise CheckpointError(f"{path}: config overrides are only for files that do not record a config")
        return model.to(device)
    obj = read_model_file(path)
    if isinstance(obj, Mapping) and any(isinstance(v, PersistentObject) for v in obj.values()):
        net = network_from_pickle(obj, ("G_ema", "G"), str(path))
        label = f"{path}[{'G_ema' if net is obj.get('G_ema') else 'G'}]"
        state = _network_state(net, label)
        if any(k.startswith("synthesis.L") or k.startswith("synthesis.input.") for k in state):
            raise CheckpointError(f"{label}: a StyleGAN3 generator; only StyleGAN2 is supported")
        config = generator_config_from_kwargs(net, infer_generator_config(state, label), label)
        return _build_generator(config, state, label, config_overrides).to(device)
    return _generator_from_state(obj, str(path), config_overrides).to(device)


def load_discriminator(path: PathLike, device: Union[str, torch.device] = "cpu",
                       **config_overrides: Any) -> Discriminator:
    """Read a StyleGAN2 discriminator (NVIDIA ``.pkl`` ``D``, an NVIDIA-keyed state dict, or our folder)."""
    path = Path(path)
    if path.is_dir() and (path / CONFIG_NAME).is_file():
        return Discriminator.from_pretrained(path).to(device)
    obj = read_model_file(path)
    if isinstance(obj, Mapping) and any(isinstance(v, PersistentObject) for v in obj.values()):
        net = network_from_pickle(obj, ("D",), str(path))
        label = f"{path}[D]"
        state = _network_state(net, label)
        config = discriminator_config_from_kwargs(net, infer_discriminator_config(state, label), label)
    else:
        for where, candidate in _candidates(obj, _DISCRIMINATOR_KEYS):
            state = _strip_prefix(candidate, ("b4.conv.weight",))
            if "b4.conv.weight" in state and "b4.out.weight" in state:
                label = f"{path}[{where}]" if where else str(path)
                config = infer_discriminator_config(state, label)
                break
        else:
            raise CheckpointError(f"{path}: no StyleGAN2 discriminator found (expected NVIDIA keys like "
                                  f"'b4.conv.weight'; the file holds {_describe(obj)})")
    config = {**config, **config_overrides}
    stored = sum(t.numel() for t in state.values())
    model = build_within_budget(Discriminator, config, stored, label, f"the file holds {stored:,} elements")
    load_state_dict_checked(model, dict(state), label)
    return model.to(device).eval()


__all__ = ["DiscriminatorConfig", "load_discriminator", "load_generator", "read_model_file", "saved_class"]
