"""``save_pretrained`` / ``from_pretrained``: a folder with ``config.json`` and ``model.safetensors``.

A model class that mixes in :class:`PretrainedMixin` declares a dataclass ``config_class`` and keeps
its constructor arguments in ``self.config``; the folder then fully describes the model, and
loading it never runs code from the file.

Nothing a folder declares is allocated before it is checked: ``config.json`` is read only up to
``MAX_CONFIG_BYTES``, its numbers must be within :data:`hyperinverter.utils.limits.CONFIG_LIMITS`, and the
model is built under an allocation budget set by the tensors ``model.safetensors`` declares
(:func:`build_within_budget`), so a config that asks for more than the weights hold is refused in one line
instead of allocating until the machine dies.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional, Type, TypeVar, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError, DeclaredSizeError
from ..utils.limits import (MAX_CONFIG_BYTES, allocation_budget, check_config_limits, describe, describe_all,
                            exception_text)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1
#: Tensor elements building a model may create beyond twice those its file holds (temporaries of the
#: initialisation, buffers filled at load such as a generator's constant noise: 45 M elements at 4096 px).
MAX_UNSTORED_ELEMENTS = 1 << 26

T = TypeVar("T", bound="PretrainedMixin")
PathLike = Union[str, os.PathLike]


def config_from_dict(config_class: Type[Any], values: dict, source: str) -> Any:
    """Build a config dataclass from a dict, refusing unknown keys with a message naming ``source``."""
    fields = {f.name for f in dataclasses.fields(config_class)}
    unknown = [k for k in values if k not in fields]
    if unknown:
        raise CheckpointError(f"{source}: unknown {config_class.__name__} fields {describe_all(unknown)}")
    check_config_limits(values, source)
    try:
        return config_class(**values)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: invalid {config_class.__name__}: {exception_text(e)}") from None


def read_json_file(path: Path, max_bytes: int = MAX_CONFIG_BYTES) -> Any:
    """The JSON value in ``path``, refusing a file over ``max_bytes`` before reading it; every failure is
    one :class:`CheckpointError` line naming ``path`` (invalid, not UTF-8, nested too deeply, too large)."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise DeclaredSizeError(f"{path}: {size:,} bytes; a config file is at most {max_bytes:,}")
        return json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        raise CheckpointError(f"{path}: not a config file (JSON nested too deeply)") from None
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError, and ints over Python's digit limit
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(f"{path}: not valid JSON ({exception_text(e, 200)})") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or type(e).__name__})") from None


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
        meta = read_json_file(path)
        if not isinstance(meta, dict) or "config" not in meta:
            raise CheckpointError(f"{path}: missing the 'config' entry")
        if not isinstance(meta["config"], dict):
            raise CheckpointError(f"{path}: the 'config' entry must be an object, got {type(meta['config']).__name__}")
        if meta.get("class") != cls.__name__:
            raise CheckpointError(f"{path}: holds a {describe(meta.get('class'))}, not a {cls.__name__}")
        version = meta.get("format_version", 0)
        if not isinstance(version, int) or isinstance(version, bool):
            raise CheckpointError(f"{path}: format_version must be an integer, got {describe(version)}")
        if version > FORMAT_VERSION:
            raise CheckpointError(f"{path}: format version {describe(version)} is newer than this "
                                  f"hyperinverter reads ({FORMAT_VERSION}); upgrade the package")
        return config_from_dict(cls.config_class, meta["config"], str(path))

    @classmethod
    def from_pretrained(cls: Type[T], directory: PathLike, device: Union[str, torch.device] = "cpu",
                        dtype: torch.dtype = torch.float32) -> T:
        """Build the model from ``config.json`` and load ``model.safetensors`` (strict: every tensor must match).

        ``directory`` is a folder, or the name of a model shipped with the package (see
        :mod:`hyperinverter.pretrained`, e.g. ``"portraits64"``). Weights stored in float16 are cast to ``dtype``.
        The config is checked against the limits, and the model built within a budget set by the tensors the
        weights file declares, before anything it asks for is allocated (see :func:`build_within_budget`).
        """
        directory = _resolve(directory)
        config = cls.read_config(directory)
        weights = Path(directory) / WEIGHTS_NAME
        if not weights.is_file():
            raise CheckpointError(f"{directory}: no {WEIGHTS_NAME}")
        stored = sum(math.prod(shape) for shape in safetensors_shapes(weights).values())
        model = build_within_budget(cls, dataclasses.asdict(config), stored, f"{directory / CONFIG_NAME}",
                                    f"{WEIGHTS_NAME} holds {stored:,} elements")
        try:
            state = load_file(str(weights))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{weights}: unreadable safetensors file ({exception_text(e)})") from None
        load_state_dict_checked(model, state, str(weights))  # type: ignore[arg-type]
        return model.to(device=device, dtype=dtype).eval()  # type: ignore[attr-defined,return-value]


def _resolve(directory: PathLike) -> Path:
    from ..pretrained import resolve  # the registry of shipped models

    return resolve(directory)


def _shape(value: Any) -> tuple:
    """The shape of a tensor, or ``value`` itself when it already is a shape (a tuple or list of ints)."""
    return tuple(value.shape) if hasattr(value, "shape") else tuple(value)


def compare_state(state: Mapping[str, Any], expected: Mapping[str, tuple]
                  ) -> tuple[list[str], list[str], list[str]]:
    """Keys of ``expected`` (name -> shape) missing from ``state`` (name -> tensor or shape), keys of ``state``
    not expected, and keys present in both with another shape (in ``expected``'s order)."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [k for k in expected if k in state and _shape(state[k]) != tuple(expected[k])]
    return missing, unexpected, mismatched


def _check_keys_and_shapes(state: Mapping[str, Any], own: Mapping[str, tuple], model_name: str, source: str) -> None:
    """One readable error listing missing, unexpected and mis-shaped keys (names shown through ``describe``)."""
    missing, unexpected, mismatched = compare_state(state, own)
    shapes = [f"{describe(k, 80)}: file {list(_shape(state[k]))} vs model {list(own[k])}" for k in mismatched]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {describe_all(missing, 4)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {describe_all(unexpected, 4)})")
        if shapes:
            parts.append(f"{len(shapes)} with other shapes (e.g. [{', '.join(shapes[:3])}])")
        raise CheckpointError(f"{source}: tensors do not match {model_name}: " + "; ".join(parts))


def safetensors_shapes(path: Path) -> dict[str, tuple]:
    """The name -> shape table in a safetensors file's header (no tensor data is read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable safetensors file ({exception_text(e)})") from None


def build_within_budget(cls: Type[T], config: Mapping[str, Any], stored: int, source: str,
                        holds: str = "") -> T:
    """``cls(**config)`` for a config a file declares, checked before anything it asks for is allocated.

    The config's numbers must be within the limits (:func:`~hyperinverter.utils.limits.check_config_limits`),
    and building may create at most ``2 * stored + MAX_UNSTORED_ELEMENTS`` tensor elements
    (:func:`~hyperinverter.utils.limits.allocation_budget`): a model whose weights must come from the file
    cannot be much larger than the file. The released models need 1.2-1.5 times their stored elements.

    Args:
        stored: tensor elements the file holds for the model.
        source: the file that declares the config (for messages).
        holds: what holds the ``stored`` elements, for the message (e.g. "model.safetensors holds 1,234 elements").
    Raises:
        DeclaredSizeError: a number over its limit, or a model that outgrows the budget (named, one line).
        CheckpointError: a config its class refuses.
    """
    check_config_limits(config, source)
    limit = 2 * stored + MAX_UNSTORED_ELEMENTS
    what = f"{source}: a {cls.__name__} of this configuration" + (f" ({holds})" if holds else "")
    try:
        with allocation_budget(limit, what):
            return cls(**config)
    except DeclaredSizeError:
        raise
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: invalid {cls.__name__} configuration: {exception_text(e)}") from None


def load_state_dict_checked(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with one readable error listing missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    _check_keys_and_shapes(state, {k: tuple(v.shape) for k, v in own.items()}, type(model).__name__, source)
    for k, v in state.items():
        if not torch.isfinite(v).all() and v.is_floating_point():
            raise CheckpointError(f"{source}: tensor {describe(k, 80)} contains NaN or infinite values")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
