"""``save_pretrained`` / ``from_pretrained``: a folder with ``config.json`` and ``model.safetensors``.

A model class that mixes in :class:`PretrainedMixin` declares a dataclass ``config_class`` and keeps
its constructor arguments in ``self.config``; the folder then fully describes the model, and
loading it never runs code from the file.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional, Type, TypeVar, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1

T = TypeVar("T", bound="PretrainedMixin")
PathLike = Union[str, os.PathLike]


def config_from_dict(config_class: Type[Any], values: dict, source: str) -> Any:
    """Build a config dataclass from a dict, refusing unknown keys with a message naming ``source``."""
    fields = {f.name for f in dataclasses.fields(config_class)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise CheckpointError(f"{source}: unknown {config_class.__name__} fields {unknown}")
    try:
        return config_class(**values)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: invalid {config_class.__name__}: {e}") from e


def _atomic_write(path: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename over ``path`` (utils.outputs.atomic_write)."""
    from ..utils.outputs import atomic_write

    atomic_write(path, write)


class PretrainedMixin:
    """Adds ``save_pretrained`` and ``from_pretrained`` to an ``nn.Module`` with a dataclass config."""

    config_class: ClassVar[type]
    config: Any

    def save_pretrained(self, directory: PathLike, dtype: Optional[torch.dtype] = None) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (created if needed).

        Args:
            dtype: store floating-point tensors in this dtype (e.g. ``torch.float16`` to halve the size).
        """
        from .. import __version__

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {}
        for name, t in self.state_dict().items():  # type: ignore[attr-defined]
            t = t.detach().cpu()
            if dtype is not None and t.is_floating_point():
                t = t.to(dtype)
            tensors[name] = t.contiguous().clone()
        meta = {
            "class": type(self).__name__,
            "format_version": FORMAT_VERSION,
            "hyperinverter_version": __version__,
            "config": dataclasses.asdict(self.config),
        }
        _atomic_write(directory / WEIGHTS_NAME, lambda p: save_file(tensors, p, metadata={"class": meta["class"]}))
        _atomic_write(directory / CONFIG_NAME, lambda p: Path(p).write_text(json.dumps(meta, indent=2) + "\n"))
        return directory

    @classmethod
    def read_config(cls, directory: PathLike) -> Any:
        """The config stored in ``directory/config.json``, checked to belong to this class."""
        directory = _resolve(directory)
        path = directory / CONFIG_NAME
        if not path.is_file():
            raise CheckpointError(f"{directory}: no {CONFIG_NAME} (not a folder written by save_pretrained)")
        try:
            meta = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise CheckpointError(f"{path}: not valid JSON ({e})") from None
        except RecursionError:
            raise CheckpointError(f"{path}: not a config file (JSON nested too deeply)") from None
        if not isinstance(meta, dict) or "config" not in meta:
            raise CheckpointError(f"{path}: missing the 'config' entry")
        if not isinstance(meta["config"], dict):
            raise CheckpointError(f"{path}: the 'config' entry must be an object, got {type(meta['config']).__name__}")
        if meta.get("class") != cls.__name__:
            raise CheckpointError(f"{path}: holds a {meta.get('class')!r}, not a {cls.__name__}")
        if int(meta.get("format_version", 0)) > FORMAT_VERSION:
            raise CheckpointError(f"{path}: format version {meta['format_version']} is newer than this "
                                  f"hyperinverter reads ({FORMAT_VERSION}); upgrade the package")
        return config_from_dict(cls.config_class, meta["config"], str(path))

    @classmethod
    def from_pretrained(cls: Type[T], directory: PathLike, device: Union[str, torch.device] = "cpu",
                        dtype: torch.dtype = torch.float32) -> T:
        """Build the model from ``config.json`` and load ``model.safetensors`` (strict: every tensor must match).

        ``directory`` is a folder, or the name of a model shipped with the package (see
        :mod:`hyperinverter.pretrained`, e.g. ``"portraits64"``). Weights stored in float16 are cast to ``dtype``.
        """
        directory = _resolve(directory)
        config = cls.read_config(directory)
        weights = Path(directory) / WEIGHTS_NAME
        if not weights.is_file():
            raise CheckpointError(f"{directory}: no {WEIGHTS_NAME}")
        try:
            state = load_file(str(weights))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{weights}: unreadable safetensors file ({e})") from e
        model = cls(**dataclasses.asdict(config))  # type: ignore[call-arg]
        load_state_dict_checked(model, state, str(weights))  # type: ignore[arg-type]
        return model.to(device=device, dtype=dtype).eval()  # type: ignore[attr-defined,return-value]


def _resolve(directory: PathLike) -> Path:
    from ..pretrained import resolve  # the registry of shipped models

    return resolve(directory)


def compare_state(state: Mapping[str, torch.Tensor], expected: Mapping[str, tuple]
                  ) -> tuple[list[str], list[str], list[str]]:
    """Keys of ``expected`` (name -> shape) missing from ``state``, keys of ``state`` not expected, and
    keys present in both with another shape (in ``expected``'s order)."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k])]
    return missing, unexpected, mismatched


def load_state_dict_checked(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with one readable error listing missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing, unexpected, mismatched = compare_state(state, {k: tuple(v.shape) for k, v in own.items()})
    shapes = [f"{k}: file {list(state[k].shape)} vs model {list(own[k].shape)}" for k in mismatched]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:4]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:4]})")
        if shapes:
            parts.append(f"{len(shapes)} with other shapes (e.g. {shapes[:3]})")
        raise CheckpointError(f"{source}: tensors do not match {type(model).__name__}: " + "; ".join(parts))
    for k, v in state.items():
        if not torch.isfinite(v).all() and v.is_floating_point():
            raise CheckpointError(f"{source}: tensor {k!r} contains NaN or infinite values")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
