"""``save_pretrained`` / ``from_pretrained``: a folder with ``config.json`` and ``model.safetensors``.

A model class that mixes in :class:`PretrainedMixin` declares a dataclass ``config_class`` and keeps
its constructor arguments in ``self.config``; the folder then fully describes the model, and
loading it never runs code from the file.

Nothing a folder declares is allocated before it is checked: ``config.json`` is read only up to
``MAX_CONFIG_BYTES``, its numbers must be within :data:`hyperinverter.utils.limits.CONFIG_LIMITS`, and the
model is built under an allocation budget set by the tensors ``model.safetensors`` declares
(:func:`build_within_budget`), so a config that asks for more than the weights hold is refused in one line
instead of allocating until the machine dies.

``from_pretrained`` builds the model on the ``meta`` device (:mod:`hyperinverter.checkpoints.meta`: no memory,
no random initialisation) and makes the file's tensors its parameters and buffers
(``load_state_dict(assign=True)``), then computes the buffers no file holds
(:meth:`PretrainedMixin.non_persistent_buffers`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from contextlib import nullcontext
from pathlib import Path
from typing import Any, ClassVar, Mapping, Optional, Type, TypeVar, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError, DeclaredSizeError
from ..utils.dataclass_config import dataclass_from_dict
from ..utils.limits import (MAX_CONFIG_BYTES, allocation_budget, check_config_limits, describe, describe_all,
                            exception_text)
from ..utils.outputs import atomic_write, write_text_atomic
from .meta import meta_device

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1
#: Tensor elements building a model may create beyond twice those its file holds (temporaries of the
#: initialisation, buffers filled at load such as a generator's constant noise: 45 M elements at 4096 px).
MAX_UNSTORED_ELEMENTS = 1 << 26

T = TypeVar("T", bound="PretrainedMixin")
PathLike = Union[str, os.PathLike]


def config_from_dict(config_class: Type[Any], values: dict, source: str) -> Any:
    """Build a config dataclass from a dict a file declares: its numbers within the limits
    (:func:`~hyperinverter.utils.limits.check_config_limits`), then
    :func:`~hyperinverter.utils.dataclass_config.dataclass_from_dict` (unknown keys and values of the wrong
    type refused); every failure is one :class:`CheckpointError` line naming ``source`` and the field."""
    check_config_limits(values, source)
    return dataclass_from_dict(config_class, values, source, error=CheckpointError)


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
        # each file through a temporary file beside it, flushed to the disk, then renamed over the old one
        atomic_write(directory / WEIGHTS_NAME, lambda p: save_file(tensors, p, metadata={"class": meta["class"]}),
                     fsync=True)
        write_text_atomic(directory / CONFIG_NAME, json.dumps(meta, indent=2) + "\n", fsync=True)
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

        The model is built on the ``meta`` device (shapes only: no memory, no random initialisation) and the
        tensors read from the file become its parameters and buffers (``load_state_dict(assign=True)``); the
        buffers a state dict does not hold (non-persistent ones) are then computed from the config
        (:meth:`non_persistent_buffers`). Loading costs one copy of the weights, not two.
        """
        directory = _resolve(directory)
        config = cls.read_config(directory)
        weights = Path(directory) / WEIGHTS_NAME
        if not weights.is_file():
            raise CheckpointError(f"{directory}: no {WEIGHTS_NAME}")
        stored = sum(math.prod(shape) for shape in safetensors_shapes(weights).values())
        model = build_within_budget(cls, dataclasses.asdict(config), stored, f"{directory / CONFIG_NAME}",
                                    f"{WEIGHTS_NAME} holds {stored:,} elements", device="meta")
        try:
            state = load_file(str(weights))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{weights}: unreadable safetensors file ({exception_text(e)})") from None
        load_state_dict_checked(model, state, str(weights), assign=True)  # type: ignore[arg-type]
        materialize_non_persistent_buffers(model)  # type: ignore[arg-type]
        return model.to(device=device, dtype=dtype).eval()  # type: ignore[attr-defined,return-value]

    def non_persistent_buffers(self) -> dict[str, torch.Tensor]:
        """The values of this module's non-persistent buffers (``register_buffer(..., persistent=False)``),
        by name relative to it, computed from ``self.config`` on the default device (the CPU when
        :func:`materialize_non_persistent_buffers` asks).

        A model built on the ``meta`` device (:meth:`from_pretrained`) gets its parameters and persistent buffers
        from the file, and these from here; a class that registers non-persistent buffers overrides this and
        registers what it returns in ``__init__``, so both ways give the same values. Nested models answer for
        their own buffers. The default: none.
        """
        return {}


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
                        holds: str = "", device: Union[str, torch.device, None] = None) -> T:
    """``cls(**config)`` for a config a file declares, checked before anything it asks for is allocated.

    The config's numbers must be within the limits (:func:`~hyperinverter.utils.limits.check_config_limits`),
    and building may create at most ``2 * stored + MAX_UNSTORED_ELEMENTS`` tensor elements
    (:func:`~hyperinverter.utils.limits.allocation_budget`): a model whose weights must come from the file
    cannot be much larger than the file. The released models need 1.2-1.5 times their stored elements.
    The budget counts what the factory calls ask for on every device, ``meta`` included, so a model built
    on ``meta`` is refused exactly where a real one would be.

    Args:
        stored: tensor elements the file holds for the model.
        source: the file that declares the config (for messages).
        holds: what holds the ``stored`` elements, for the message (e.g. "model.safetensors holds 1,234 elements").
        device: build under ``torch.device(device)`` (``"meta"``: shapes only, through
            :func:`~hyperinverter.checkpoints.meta.meta_device`, to be loaded with ``load_state_dict(assign=True)``);
            None = the default device.
    Raises:
        DeclaredSizeError: a number over its limit, or a model that outgrows the budget (named, one line).
        CheckpointError: a config its class refuses.
    """
    check_config_limits(config, source)
    limit = 2 * stored + MAX_UNSTORED_ELEMENTS
    what = f"{source}: a {cls.__name__} of this configuration" + (f" ({holds})" if holds else "")
    if device is None:
        place: Any = nullcontext()
    else:
        place = meta_device() if torch.device(device).type == "meta" else torch.device(device)
    try:
        with allocation_budget(limit, what), place:
            return cls(**config)
    except DeclaredSizeError:
        raise
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: invalid {cls.__name__} configuration: {exception_text(e)}") from None


def load_state_dict_checked(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str,
                            assign: bool = False) -> None:
    """``load_state_dict(strict=True)`` with one readable error listing missing, unexpected and mis-shaped keys.

    Args:
        assign: the tensors of ``state`` (cast to the model's dtypes) become the model's parameters and buffers
            instead of being copied into them: for a model built on the ``meta`` device. Parameters keep their
            ``requires_grad``; a model that shares one parameter between two names is refused (assigning would
            untie them).
    """
    own = model.state_dict()
    _check_keys_and_shapes(state, {k: tuple(v.shape) for k, v in own.items()}, type(model).__name__, source)
    for k, v in state.items():
        if not torch.isfinite(v).all() and v.is_floating_point():
            raise CheckpointError(f"{source}: tensor {describe(k, 80)} contains NaN or infinite values")
    if assign:
        params = list(model.named_parameters(remove_duplicate=False))
        if len({id(p) for _, p in params}) != len(params):
            raise RuntimeError(f"{type(model).__name__} shares parameters between names; load it without assign")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True, assign=assign)


def materialize_non_persistent_buffers(model: torch.nn.Module) -> None:
    """Give the non-persistent buffers of a model built on ``meta`` and loaded with ``assign=True`` their values.

    Every :class:`PretrainedMixin` module inside ``model`` (``model`` itself included) sets the buffers its
    :meth:`~PretrainedMixin.non_persistent_buffers` computes, within an allocation budget of
    ``MAX_UNSTORED_ELEMENTS`` (they follow from a config a file declares).

    Raises:
        RuntimeError: a parameter or buffer is still on ``meta`` afterwards (a class registers a non-persistent
            buffer that its ``non_persistent_buffers`` does not compute: a bug of that class, named here).
    """
    with allocation_budget(MAX_UNSTORED_ELEMENTS, f"the non-persistent buffers of a {type(model).__name__}"), \
            torch.device("cpu"):
        for module in model.modules():
            if not isinstance(module, PretrainedMixin):
                continue
            values = module.non_persistent_buffers()
            if not values:
                continue
            buffers, stored = dict(module.named_buffers()), module.state_dict().keys()  # type: ignore[attr-defined]
            for name, value in values.items():
                if name not in buffers or name in stored:
                    raise RuntimeError(f"{type(module).__name__}.non_persistent_buffers() returns {name!r}, which is "
                                       "not a non-persistent buffer of it")
                owner_name, _, leaf = name.rpartition(".")
                owner = module.get_submodule(owner_name)  # type: ignore[attr-defined]
                current = buffers[name]
                if current is not None and tuple(current.shape) != tuple(value.shape):
                    raise RuntimeError(f"{type(module).__name__}.non_persistent_buffers(): {name!r} has shape "
                                       f"{list(value.shape)}, the module registers {list(current.shape)}")
                setattr(owner, leaf, value)
    left = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if left:
        raise RuntimeError(f"{type(model).__name__}: {len(left)} tensors were neither loaded nor computed (e.g. "
                           f"{left[:4]}): its non_persistent_buffers() must return every non-persistent buffer")
