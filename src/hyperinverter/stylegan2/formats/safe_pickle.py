"""A restricted unpickler for NVIDIA StyleGAN2(-ADA) ``.pkl`` files that never runs code from the file.

An NVIDIA network pickle stores every network as a call to
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` whose ``meta["module_src"]`` is the
Python source of the network's module; the official loader *executes* that source. Here that
global resolves to :func:`_reconstruct_persistent_obj`, which only keeps ``meta`` in a
:class:`PersistentObject`; the source text is never compiled. Every other global must be on a short
allow-list of tensor/storage/numpy rebuilders and plain containers; anything else is refused with an
:class:`~hyperinverter.errors.UnsafePickleError` naming it, before it could be called.
"""

from __future__ import annotations

import collections
import io
import pickle
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch._utils

from ...errors import CheckpointError, UnsafePickleError


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict`` (a dict with attribute access)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as e:
            raise AttributeError(name) from e


class PersistentObject:
    """What a persisted NVIDIA network becomes: its class name and saved ``__dict__``, nothing executed."""

    def __init__(self, meta: dict):
        self.meta = meta

    @property
    def class_name(self) -> str:
        return str(self.meta.get("class_name"))

    @property
    def state(self) -> dict:
        return self.meta.get("state") or {}

    @property
    def init_kwargs(self) -> dict:
        return dict(self.state.get("_init_kwargs") or {})

    def named_tensors(self, prefix: str = "") -> Iterator[tuple[str, torch.Tensor]]:
        """``state_dict()`` order: parameters, persistent buffers, then children, with dotted names."""
        state = self.state
        for name, value in (state.get("_parameters") or {}).items():
            if value is not None:
                yield prefix + name, _as_tensor(value)
        skip = set(state.get("_non_persistent_buffers_set") or ())
        for name, value in (state.get("_buffers") or {}).items():
            if value is not None and name not in skip:
                yield prefix + name, _as_tensor(value)
        for name, child in (state.get("_modules") or {}).items():
            if isinstance(child, PersistentObject):
                yield from child.named_tensors(prefix + name + ".")
            elif child is not None:
                raise CheckpointError(f"module {prefix + name!r} is a {type(child).__name__}, not a persisted network")

    def state_dict(self) -> dict[str, torch.Tensor]:
        return collections.OrderedDict(self.named_tensors())

    def __repr__(self) -> str:
        return f"PersistentObject({self.class_name})"


def _as_tensor(value: Any) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.detach() if not isinstance(value, torch.nn.Parameter) else value.data
    raise CheckpointError(f"expected a tensor in a network's parameters, found {type(value).__name__}")


def _reconstruct_persistent_obj(meta: Any) -> PersistentObject:
    if not isinstance(meta, dict) or meta.get("type") != "class" or "state" not in meta:
        raise CheckpointError("malformed persistent object in the pickle (expected meta with type 'class' and 'state')")
    return PersistentObject(meta)


def _load_storage_from_bytes(data: bytes) -> Any:
    # The storage is itself a small legacy torch.save blob; weights_only keeps it code-free too.
    from ...utils.safe_load import weights_only_load

    return weights_only_load("a storage blob in the pickle", data, what="torch storage")


_REBUILDERS: dict[str, Callable] = {
    name: getattr(torch._utils, name)
    for name in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_parameter_with_state")
    if hasattr(torch._utils, name)
}


def _rebuild_from_type_v2(func: Callable, new_type: type, args: tuple, state: Any) -> torch.Tensor:
    # Tensor subclass reconstruction, restricted to plain tensors and parameters built by an allowed rebuilder.
    if func not in _REBUILDERS.values() or new_type not in (torch.Tensor, torch.nn.Parameter):
        raise UnsafePickleError(f"refusing to rebuild a tensor of type {new_type!r} with {func!r}")
    tensor = func(*args)
    if type(tensor) is not new_type:
        tensor = tensor.as_subclass(new_type)
    return tensor


def _codecs_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Protocol-2 pickles spell bytes as _codecs.encode(str, "latin1"); nothing else is allowed through.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _numpy_core() -> Any:
    return getattr(np, "_core", None) or np.core


def _allowed_globals() -> dict[tuple[str, str], Any]:
    core = _numpy_core()
    allowed: dict[tuple[str, str], Any] = {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
        ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
        ("torch", "Tensor"): torch.Tensor,
        ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
        ("_codecs", "encode"): _codecs_encode,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("__builtin__", "set"): set,
        ("__builtin__", "frozenset"): frozenset,
        ("dnnlib.util", "EasyDict"): EasyDict,
        ("dnnlib", "EasyDict"): EasyDict,
        ("numpy", "dtype"): np.dtype,
        ("numpy", "ndarray"): np.ndarray,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "scalar")] = core.multiarray.scalar
        allowed[(module, "_reconstruct")] = core.multiarray._reconstruct
    for name, fn in _REBUILDERS.items():
        allowed[("torch._utils", name)] = fn
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` only returns allow-listed, side-effect-free callables."""

    _allowed = None

    def find_class(self, module: str, name: str) -> Any:
        if RestrictedUnpickler._allowed is None:
            RestrictedUnpickler._allowed = _allowed_globals()
        try:
            return RestrictedUnpickler._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"the pickle asks for the global '{module}.{name}', which is not on the allow-list of "
                "tensor, numpy and container types; refusing to load it (nothing was executed)"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"unexpected persistent id {pid!r} in the pickle (not an NVIDIA network pickle)")


def restricted_load(file: io.BufferedIOBase) -> Any:
    """Unpickle one object from ``file`` with :class:`RestrictedUnpickler`."""
    return RestrictedUnpickler(file).load()
