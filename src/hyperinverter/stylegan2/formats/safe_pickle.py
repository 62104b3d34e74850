"""A restricted unpickler for NVIDIA StyleGAN2(-ADA) ``.pkl`` files that never runs code from the file.

An NVIDIA network pickle stores every network as a call to
``torch_utils.persistence._reconstruct_persistent_obj(meta)`` whose ``meta["module_src"]`` is the
Python source of the network's module; the official loader *executes* that source. Here that
global resolves to :func:`_reconstruct_persistent_obj`, which only keeps ``meta`` in a
:class:`PersistentObject`; the source text is never compiled. Every other global must be on a short
allow-list of tensor/storage/numpy rebuilders and plain containers; anything else is refused with an
:class:`~hyperinverter.errors.UnsafePickleError` naming it, before it could be called.

The allow-list holds nothing that allocates what the file merely declares: before unpickling, the opcodes
are walked to refuse shared references that expand without end (:mod:`hyperinverter.utils.limits`); tensor
views are checked against their storages before they are built, and storage blobs against their bytes;
``torch.Tensor``, ``torch.nn.Parameter`` and ``numpy.ndarray`` may be named (as the type of a rebuilt
tensor or array) but not called; numpy arrays are rebuilt from an empty placeholder whose state must hold
exactly the bytes its shape declares. Messages never ``repr`` a value from the file.
"""

from __future__ import annotations

import collections
import io
import math
import pickle
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
import torch._utils

from ...errors import CheckpointError, DeclaredSizeError, UnsafePickleError
from ...utils.limits import MAX_TENSOR_DIMS, check_pickle_expansion, check_tensor_layout, describe

#: Sub-networks nested deeper than this are refused (StyleGAN2's are three deep).
MAX_NETWORK_DEPTH = 32


class _Frozen(type):
    """Metaclass of the classes the unpickler hands out: a BUILD opcode on the class itself (which would set
    its attributes for the whole process) is refused."""

    def __setattr__(cls, name: str, value: Any) -> None:
        raise UnsafePickleError(f"the pickle sets the attribute {describe(name, 40)} of the class {cls.__name__}; "
                                "refusing it (nothing was executed)")


class EasyDict(dict, metaclass=_Frozen):
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
        """The network's class name; anything but a short string is shown as ``<a list of 50 items>``."""
        name = self.meta.get("class_name") if isinstance(self.meta, dict) else None
        return name if isinstance(name, str) and len(name) <= 100 else f"<{describe(name)}>"

    @property
    def state(self) -> dict:
        state = self.meta.get("state") if isinstance(self.meta, dict) else None
        return state if isinstance(state, dict) else {}

    @property
    def init_kwargs(self) -> dict:
        kwargs = self.state.get("_init_kwargs")
        if kwargs is None:
            return {}
        if not isinstance(kwargs, dict):
            raise CheckpointError(f"the {self.class_name} network's init kwargs are {describe(kwargs)}, not a dict")
        return dict(kwargs)

    def named_tensors(self, prefix: str = "", _path: Optional[set] = None) -> Iterator[tuple[str, torch.Tensor]]:
        """``state_dict()`` order: parameters, persistent buffers, then children, with dotted names.

        Raises:
            CheckpointError: a network contains itself (a cycle), nests more than ``MAX_NETWORK_DEPTH`` deep,
                or holds a name or value of the wrong type.
        """
        path = set() if _path is None else _path
        where = prefix[:-1] or "the network"
        if id(self) in path:
            raise CheckpointError(f"module '{where}' contains a network it is part of (a cycle); not a network "
                                  "this package reads")
        if len(path) >= MAX_NETWORK_DEPTH:
            raise CheckpointError(f"module '{where}' is nested more than {MAX_NETWORK_DEPTH} networks deep")
        state = self.state
        path.add(id(self))
        for name, value in _entries(state, "_parameters", where):
            if value is not None:
                yield prefix + name, _as_tensor(value)
        skip = state.get("_non_persistent_buffers_set") or ()
        skip = set(n for n in skip if isinstance(n, str)) if isinstance(skip, (set, frozenset, list, tuple)) else set()
        for name, value in _entries(state, "_buffers", where):
            if value is not None and name not in skip:
                yield prefix + name, _as_tensor(value)
        for name, child in _entries(state, "_modules", where):
            if isinstance(child, PersistentObject):
                yield from child.named_tensors(prefix + name + ".", path)
            elif child is not None:
                raise CheckpointError(f"module '{prefix + name}' is a {type(child).__name__}, not a persisted network")
        path.discard(id(self))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return collections.OrderedDict(self.named_tensors())

    def __repr__(self) -> str:
        return f"PersistentObject({self.class_name})"


def _entries(state: dict, key: str, where: str) -> list[tuple[str, Any]]:
    """``state[key].items()`` of a persisted module, checked to be a dict with short string names."""
    entries = state.get(key) or {}
    if not isinstance(entries, dict):
        raise CheckpointError(f"module '{where}': {key} is {describe(entries)}, not a dict")
    for name in entries:
        if not isinstance(name, str) or len(name) > 200:
            raise CheckpointError(f"module '{where}': a name in {key} is {describe(name, 40)}, not a short string")
    return list(entries.items())


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


class _Guarded:
    """Refuses a BUILD opcode (``__setstate__``) and attribute changes: the unpickler's globals are shared by
    every load in the process, and a file must not change them."""

    __slots__ = ()
    name: str

    def __setstate__(self, state: Any) -> None:
        raise UnsafePickleError(f"the pickle sets the state of {self.name}; refusing it (nothing was executed)")

    def __setattr__(self, key: str, value: Any) -> None:
        raise UnsafePickleError(f"the pickle sets the attribute {describe(key, 40)} of {self.name}; refusing it "
                                "(nothing was executed)")


class Global(_Guarded):
    """An allow-listed function as the unpickler hands it out: calling it calls the function; setting its
    state or attributes (``__defaults__``, say, for every later load) is refused."""

    __slots__ = ("target", "name")

    def __init__(self, target: Callable, name: str):
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "name", name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.target(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Global({self.name})"


def _target(value: Any) -> Any:
    """The function behind a :class:`Global` (anything else as it is)."""
    return value.target if isinstance(value, Global) else value


class TypeRef(_Guarded):
    """An allow-listed type that a pickle may name (as the type of a rebuilt tensor or array) but never call:
    ``torch.Tensor(2**14, 2**14, 4)`` or ``numpy.ndarray(shape)`` would allocate whatever the file declares."""

    __slots__ = ("target", "name")

    def __init__(self, target: type, name: str):
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "name", name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise UnsafePickleError(f"the pickle calls {self.name} directly, which would allocate whatever it declares; "
                                "refusing it (nothing was allocated or executed)")

    def __repr__(self) -> str:
        return f"TypeRef({self.name})"


_TENSOR_TYPES = {"torch.Tensor": torch.Tensor, "torch.nn.parameter.Parameter": torch.nn.Parameter}
_TYPE_REFS = {name: TypeRef(t, name) for name, t in _TENSOR_TYPES.items()}
_NDARRAY = TypeRef(np.ndarray, "numpy.ndarray")


def _checked_rebuilder(fn: Callable) -> Callable:
    """``torch._utils._rebuild_tensor[_v2](storage, offset, size, stride, ...)`` after checking the view
    against the storage the pickle provides (the storage is the bytes the file holds)."""

    def rebuild(storage: Any = None, storage_offset: Any = None, size: Any = None, stride: Any = None, *rest: Any,
                **kwargs: Any) -> torch.Tensor:
        if not isinstance(storage, torch.storage.TypedStorage):
            raise CheckpointError(f"a tensor in the pickle is built on {describe(storage)}, not a storage")
        held = storage._untyped_storage.nbytes() // torch._utils._element_size(storage.dtype)
        check_tensor_layout(size, stride, storage_offset, held, "a tensor in the pickle")
        return fn(storage, storage_offset, tuple(size), tuple(stride), *rest, **kwargs)

    rebuild.__name__ = rebuild.__qualname__ = fn.__name__
    return rebuild


def _checked_parameter(fn: Callable) -> Callable:
    """``torch._utils._rebuild_parameter[_with_state](data, ...)`` for ``data`` that is already a tensor."""

    def rebuild(data: Any = None, *rest: Any) -> torch.Tensor:
        if not isinstance(data, torch.Tensor):
            raise CheckpointError(f"a parameter in the pickle wraps {describe(data)}, not a tensor")
        return fn(data, *rest)

    rebuild.__name__ = rebuild.__qualname__ = fn.__name__
    return rebuild


_REBUILDERS: dict[str, Callable] = {
    name: (_checked_parameter if "parameter" in name else _checked_rebuilder)(getattr(torch._utils, name))
    for name in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_parameter_with_state")
    if hasattr(torch._utils, name)
}


def _rebuild_from_type_v2(func: Callable, new_type: Any, args: Any, state: Any) -> torch.Tensor:
    # Tensor subclass reconstruction, restricted to plain tensors and parameters built by an allowed rebuilder.
    func = _target(func)
    target = new_type.target if isinstance(new_type, TypeRef) and new_type.name in _TYPE_REFS else None
    if func not in _REBUILDERS.values() or target is None or not isinstance(args, tuple):
        raise UnsafePickleError(f"refusing to rebuild a tensor of type {describe(new_type)} with "
                                f"{getattr(func, '__name__', describe(func))} (only tensors and parameters)")
    tensor = func(*args)
    if type(tensor) is not target:
        tensor = tensor.as_subclass(target)
    return tensor


def _codecs_encode(text: str, encoding: str = "utf-8") -> bytes:
    # Protocol-2 pickles spell bytes as _codecs.encode(str, "latin1"); nothing else is allowed through.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"refusing _codecs.encode of {describe(text)} with encoding {describe(encoding)}")
    return text.encode("latin1")


def _numpy_core() -> Any:
    return getattr(np, "_core", None) or np.core


class CheckedArray(np.ndarray):
    """What a pickled numpy array becomes: numpy rebuilds an array as ``_reconstruct(ndarray, (0,), b"b")``
    and then sets its state; here the state must hold exactly the elements its shape declares before numpy
    allocates them (an object array of shape 2^20 x 2^20 with one element would otherwise be allocated)."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise CheckpointError(f"malformed numpy array state in the pickle ({describe(state)})")
        shape, dtype, data = state[-4], state[-3], state[-1]
        if (not isinstance(shape, tuple) or len(shape) > MAX_TENSOR_DIMS
                or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
            raise CheckpointError(f"malformed numpy array shape in the pickle ({describe(shape)})")
        if not isinstance(dtype, np.dtype):
            raise CheckpointError(f"a numpy array in the pickle has dtype {describe(dtype)}")
        numel = math.prod(shape)
        held = len(data) if dtype.hasobject and isinstance(data, list) else (
            len(data) // max(1, dtype.itemsize) if isinstance(data, (bytes, bytearray)) and not dtype.hasobject
            else -1)
        if held != numel:
            raise DeclaredSizeError(f"a numpy array in the pickle declares shape {list(shape)} ({numel:,} elements) "
                                    f"but holds {max(held, 0):,}; refusing it before allocating")
        super().__setstate__(state)


def _numpy_reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    # numpy pickles every array as _reconstruct(ndarray, (0,), b"b") + BUILD(state); anything else allocates.
    if subtype is not _NDARRAY or not isinstance(shape, tuple) or shape != (0,) or not isinstance(dtype, bytes):
        raise UnsafePickleError(f"refusing numpy _reconstruct of {describe(subtype)} with shape {describe(shape)} "
                                "(numpy pickles only ever pass an empty placeholder)")
    return _numpy_core().multiarray._reconstruct(CheckedArray, (0,), dtype)


def _numpy_dtype(obj: Any, align: Any = False, copy: Any = False) -> np.dtype:
    # numpy pickles a dtype as dtype("f8", False, True) + BUILD(state) (older numpy: 0 and 1).
    flags_ok = all(type(f) in (bool, int) and f in (0, 1) for f in (align, copy))
    if not isinstance(obj, str) or len(obj) > 16 or not flags_ok:
        raise UnsafePickleError(f"refusing numpy.dtype({describe(obj)}, ...) (numpy pickles name a dtype by a "
                                "short string)")
    return np.dtype(obj, bool(align), bool(copy))


def _numpy_scalar(dtype: Any, *data: Any) -> Any:
    # numpy pickles a scalar as scalar(dtype, its bytes) (or the object itself for dtype object).
    if not isinstance(dtype, np.dtype):
        raise UnsafePickleError(f"refusing a numpy scalar of dtype {describe(dtype)}")
    return _numpy_core().multiarray.scalar(dtype, *data)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    allowed: dict[tuple[str, str], Any] = {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
        ("torch.storage", "_load_from_bytes"): _load_storage_from_bytes,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
        ("torch", "Tensor"): _TYPE_REFS["torch.Tensor"],
        ("torch.nn.parameter", "Parameter"): _TYPE_REFS["torch.nn.parameter.Parameter"],
        ("_codecs", "encode"): _codecs_encode,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("builtins", "set"): set,
        ("builtins", "frozenset"): frozenset,
        ("__builtin__", "set"): set,
        ("__builtin__", "frozenset"): frozenset,
        ("dnnlib.util", "EasyDict"): EasyDict,
        ("dnnlib", "EasyDict"): EasyDict,
        ("numpy", "dtype"): _numpy_dtype,
        ("numpy", "ndarray"): _NDARRAY,
    }
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "scalar")] = _numpy_scalar
        allowed[(module, "_reconstruct")] = _numpy_reconstruct
    for name, fn in _REBUILDERS.items():
        allowed[("torch._utils", name)] = fn
    return allowed


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` only returns allow-listed, side-effect-free callables: functions
    as :class:`Global`, types that may only be named as :class:`TypeRef`, and classes whose attributes the file
    cannot set (built-in containers, :class:`EasyDict`)."""

    _allowed = None

    def find_class(self, module: str, name: str) -> Any:
        if RestrictedUnpickler._allowed is None:
            RestrictedUnpickler._allowed = _allowed_globals()
        try:
            found = RestrictedUnpickler._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"the pickle asks for the global '{module}.{name}', which is not on the allow-list of "
                "tensor, numpy and container types; refusing to load it (nothing was executed)"
            ) from None
        return found if isinstance(found, (type, TypeRef)) else Global(found, f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError(f"unexpected persistent id ({describe(pid)}) in the pickle (not an NVIDIA network "
                                "pickle)")


def restricted_load(file: io.BufferedIOBase, source: str = "") -> Any:
    """Unpickle one object from ``file`` with :class:`RestrictedUnpickler`, after refusing a pickle whose shared
    references expand without end (:func:`~hyperinverter.utils.limits.check_pickle_expansion`; its messages
    start with ``source`` when given)."""
    data = file.read()
    check_pickle_expansion(data, source)
    return RestrictedUnpickler(io.BytesIO(data)).load()
