"""What an untrusted file may declare, checked before anything is allocated (issue 15, item 5).

A model file or a ``config.json`` of a few kilobytes can *declare* far more than it holds: a tensor view of
2^40 elements over one stored float (stride 0), a storage that claims 16 GiB and carries four bytes, a pickle
whose shared references nest into a 50^8-element list (its ``repr`` or its hash never ends), a generator of
16384 px, or a hidden size of 10^7. A loader that believes them allocates until the machine dies. The
checks live here, one function per kind of declaration:

* :func:`check_pickle_expansion`: a pickle's objects, counted with every shared reference expanded, may not
  exceed ``MAX_PICKLE_EXPANSION`` plus the pickle's own length (a pickle without nested sharing can never
  expand past its length); it also returns the storages the pickle declares (``torch.save`` persistent ids),
  so the caller can compare them with the bytes the file carries for them.
* :func:`check_tensor_layout`: a tensor view must stay inside its storage and, beyond
  ``MAX_OVERLAPPING_ELEMENTS``, hold no more elements than the storage (no stride-0 or overlapping views).
* :func:`check_config_limits`: configuration numbers (``config.json``, an NVIDIA pickle's ``init_kwargs``,
  the shapes of a state dict) stay within :data:`CONFIG_LIMITS` and :data:`LIST_LIMITS`.
* :func:`allocation_budget`: while a model is built from such a config, every tensor it creates is counted,
  and a creation that would pass the budget (twice what the weights file holds, plus
  ``MAX_UNSTORED_ELEMENTS``; see ``checkpoints.pretrained.build_within_budget``) is refused before it
  allocates: the limits bound each number, the budget bounds their product.

Messages quote untrusted values only through :func:`describe` and :func:`exception_text`, whose output and
cost are bounded whatever the value (no ``repr`` of a container, no hashing, no deep traversal).
"""

from __future__ import annotations

import contextlib
import io
import math
import pickletools
import struct
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping, Optional

import torch
from torch.overrides import TorchFunctionMode

from ..errors import DeclaredSizeError, HyperInverterError

#: Upper limits of integer configuration fields, by field name, wherever they appear in a config (nested
#: configs included). The released models use at most: resolution 1024, z/w 512, channels 512,
#: hidden_dim 256, 18 code slots, 8 mapping layers.
CONFIG_LIMITS: dict[str, int] = {
    "img_resolution": 4096,
    "z_dim": 4096,
    "w_dim": 4096,
    "img_channels": 16,
    "channel_base": 2**20,
    "channel_max": 4096,
    "mapping_layers": 32,
    "mbstd_group_size": 1024,
    "mbstd_num_channels": 64,
    "hidden_dim": 1024,
    "refinement_passes": 8,
    "num_slots": 64,
    "style_channels": 4096,
    "encoder_input_size": 4096,
    "input_size": 4096,
    "stem_width": 4096,
    "se_reduction": 4096,
}
#: List fields: (most entries, largest entry or None for any finite number).
LIST_LIMITS: dict[str, tuple[int, Optional[int]]] = {
    "blocks": (8, 64),
    "widths": (8, 4096),
    "resample_filter": (16, None),
    "attributes": (64, None),
}
#: Any other list or string in a config may not be longer than this.
MAX_CONFIG_SEQUENCE = 256
#: Nested configs deeper than this are refused (ours nest three deep: inverter > encoder > backbone).
MAX_CONFIG_DEPTH = 6
#: Largest ``config.json`` read (ours are about 2 KB).
MAX_CONFIG_BYTES = 1 << 20

#: Most dimensions of a tensor in a model file (rosinality's conv weights have 5).
MAX_TENSOR_DIMS = 8
#: A view may hold more elements than its storage (stride 0, overlapping rows) only up to this many.
MAX_OVERLAPPING_ELEMENTS = 1 << 20
#: Objects a pickle may expand to beyond its own length in bytes (shared references counted each time).
MAX_PICKLE_EXPANSION = 1 << 20


# --------------------------------------------------------------------------------------- bounded text
def describe(value: Any, limit: int = 60) -> str:
    """A short text for an untrusted value: scalars and the start of strings as they are, anything else by
    type (and length for containers). Never calls ``repr``/``str``/``hash`` on a container or an object."""
    if value is None or isinstance(value, bool):
        return repr(value)
    if isinstance(value, int):
        return int.__repr__(value) if value.bit_length() <= 64 else f"an integer of {value.bit_length()} bits"
    if isinstance(value, float):
        return float.__repr__(value)
    if isinstance(value, (str, bytes, bytearray)):
        head = value[:limit]
        text = str.__repr__(str(head)) if isinstance(value, str) else repr(bytes(head))
        return text + (f"... ({len(value)} characters)" if len(value) > limit else "")
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"a {type(value).__name__}"


def describe_all(values: Iterable[Any], most: int = 8) -> str:
    """``[a, b, ...]`` for the first ``most`` of ``values`` (each through :func:`describe`)."""
    shown, more = [], 0
    for i, v in enumerate(values):
        if i < most:
            shown.append(describe(v, 80))
        else:
            more += 1
    return "[" + ", ".join(shown) + (f", ... {more} more" if more else "") + "]"


def exception_text(e: BaseException, limit: int = 300) -> str:
    """One line for an exception raised while reading untrusted data, at most ``limit`` characters.

    Our own errors and OS/Unicode errors format bounded text; for any other exception the text is built
    from its arguments through :func:`describe` (``KeyError(x)`` would ``repr`` a 50^8-element ``x``).
    """
    if isinstance(e, (HyperInverterError, OSError, UnicodeError)):
        text = str(e)
    else:
        text = ", ".join(a[: limit * 4] if isinstance(a, str) else describe(a) for a in e.args[:4])
    text = " ".join(text[: limit * 4].split())
    return text if len(text) <= limit else text[:limit] + "..."


# ------------------------------------------------------------------------------------------- tensors
def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_tensor_layout(size: Any, stride: Any, offset: Any, storage_numel: int, what: str) -> None:
    """Refuse a tensor view that reaches outside its storage or declares more elements than it stores.

    Args:
        size, stride, offset: the view as declared by the file (validated here: ints, at most
            ``MAX_TENSOR_DIMS`` dimensions, none negative).
        storage_numel: elements the storage holds (what the file carries for it).
        what: the file and tensor, for the message.
    Raises:
        DeclaredSizeError: the view reaches past the storage, or holds more than ``MAX_OVERLAPPING_ELEMENTS``
            elements that the storage does not (a stride-0 or overlapping view of a few stored values).
    """
    if not isinstance(size, (tuple, list)) or not isinstance(stride, (tuple, list)) or not _is_int(offset):
        raise DeclaredSizeError(f"{what}: malformed tensor (size {describe(size)}, stride {describe(stride)}, "
                                f"offset {describe(offset)})")
    if len(size) > MAX_TENSOR_DIMS or len(size) != len(stride):
        raise DeclaredSizeError(f"{what}: malformed tensor ({len(size)} sizes and {len(stride)} strides; "
                                f"at most {MAX_TENSOR_DIMS} dimensions)")
    if not all(_is_int(v) and v >= 0 for v in (*size, *stride, offset)):
        raise DeclaredSizeError(f"{what}: malformed tensor (size {describe_all(size)}, stride {describe_all(stride)}"
                                f", offset {describe(offset)}: expected non-negative integers)")
    numel = math.prod(size)
    if numel == 0:
        return
    extent = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1
    shape = "x".join(str(n) for n in size) or "scalar"
    if extent > storage_numel:
        raise DeclaredSizeError(f"{what}: a tensor of shape {shape} reaches element {extent:,} of a storage "
                                f"that holds {storage_numel:,}; refusing it")
    if numel > storage_numel and numel > MAX_OVERLAPPING_ELEMENTS:
        raise DeclaredSizeError(f"{what}: a tensor of shape {shape} declares {numel:,} elements but the file "
                                f"stores {storage_numel:,} for it (a stride-0 or overlapping view); refusing it")


def check_tensor(tensor: Any, what: str) -> None:
    """:func:`check_tensor_layout` for a tensor a loader returned (its storage is what the file held)."""
    storage = tensor.untyped_storage()
    check_tensor_layout(tuple(tensor.shape), tuple(tensor.stride()), tensor.storage_offset(),
                        storage.nbytes() // max(1, tensor.element_size()), what)


def check_loaded_tensors(obj: Any, source: str, max_depth: int = 64) -> None:
    """:func:`check_tensor` for every tensor inside ``obj`` (dicts, lists, tuples, sets, ``Namespace``s),
    each object visited once, so cycles end. Raises :class:`DeclaredSizeError` naming ``source`` and the key."""
    seen: set[int] = set()
    stack: list[tuple[Any, str, int]] = [(obj, "", 0)]
    while stack:
        value, where, depth = stack.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        if isinstance(value, torch.Tensor):
            check_tensor(value, f"{source}[{where}]" if where else source)
            continue
        if depth >= max_depth and isinstance(value, (Mapping, list, tuple, set, frozenset)):
            raise DeclaredSizeError(f"{source}: containers nested more than {max_depth} deep; refusing the file")
        if isinstance(value, Mapping):
            items = [(k if isinstance(k, str) else describe(k, 30), v) for k, v in value.items()]
        elif isinstance(value, (list, tuple, set, frozenset)):
            items = [(str(i), v) for i, v in enumerate(value)]
        elif type(value).__name__ == "Namespace":
            items = list(vars(value).items())
        else:
            continue
        stack.extend((v, f"{where}.{k}" if where else str(k), depth + 1) for k, v in items)


# ------------------------------------------------------------------------------------------- pickles
@dataclass
class PickleScan:
    """What :func:`check_pickle_expansion` learnt from a pickle, without running any of it."""

    end: int  # offset just past the pickle's STOP
    objects: int  # objects the pickle builds
    expansion: int  # the largest object, counted with every shared reference expanded (capped)
    #: ``(storage type name, key, numel)`` of every persistent id shaped like torch.save's storages.
    storages: list[tuple[str, str, int]] = field(default_factory=list)


class _Node:
    """An object a pickle builds, as far as sizes go: its children (one entry per reference) and, for
    literals and small tuples, its value."""

    __slots__ = ("kids", "value")

    def __init__(self, value: Any = None, kids: Optional[list] = None):
        self.value, self.kids = value, kids


_MARK = object()
_LITERAL_OPS = {"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "STRING", "BINSTRING",
                "SHORT_BINSTRING", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8", "UNICODE",
                "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "FLOAT", "BINFLOAT"}


def _pop_mark(stack: list) -> list:
    for i in range(len(stack) - 1, -1, -1):
        if stack[i] is _MARK:
            items = stack[i + 1:]
            del stack[i:]
            return items
    raise ValueError("MARK missing")


def _literal(node: Any, depth: int = 0) -> Any:
    """The value of a literal node, a GLOBAL (as ``("global", module, name)``) or a small tuple of them."""
    if not isinstance(node, _Node):
        return None
    if node.kids is None:
        return node.value
    if node.value == "tuple" and depth < 2 and len(node.kids) <= 8:
        return tuple(_literal(k, depth + 1) for k in node.kids)
    return None


def _expansion(nodes: list[_Node], cap: int) -> int:
    """The largest object among ``nodes``, counted with every shared reference expanded each time it is reached
    (a reference back into a cycle counts once), capped at ``cap + 1``. Every object the pickle builds counts,
    not only the result: a dict key is hashed, and a set's items, while unpickling, even if later dropped.
    Iterative, so depth costs no recursion; each object and reference is visited twice."""
    weight: dict[int, int] = {}
    for root in nodes:
        if id(root) in weight:
            continue
        stack = [(root, iter(root.kids or ()))]
        on_path = {id(root)}
        while stack:
            node, kids = stack[-1]
            for kid in kids:
                if isinstance(kid, _Node) and id(kid) not in weight and id(kid) not in on_path:
                    on_path.add(id(kid))
                    stack.append((kid, iter(kid.kids or ())))
                    break
            else:
                stack.pop()
                on_path.discard(id(node))
                w = 1
                for kid in node.kids or ():
                    w += weight.get(id(kid), 1) if isinstance(kid, _Node) else 1
                    if w > cap:
                        break
                weight[id(node)] = min(w, cap + 1)
    return max(weight.values(), default=0)


def check_pickle_expansion(data: bytes, source: str, start: int = 0) -> PickleScan:
    """Walk the opcodes of the pickle at ``data[start:]`` (nothing is imported, called or built) and refuse
    it when its objects, with shared references expanded, exceed ``MAX_PICKLE_EXPANSION`` plus its length.
    Messages start with ``source`` (the file) unless it is empty.

    Returns:
        :class:`PickleScan`: where the pickle ends and the storages it declares (torch.save persistent ids).
    Raises:
        DeclaredSizeError: the pickle expands past the limit (e.g. a 850-byte list of 50^8 elements).
        CheckpointError: the opcodes are malformed or truncated.
    """
    from ..errors import CheckpointError

    prefix = f"{source}: " if source else ""
    stack: list[Any] = []
    memo: dict[Any, Any] = {}
    nodes: list[_Node] = []
    persistent: list[_Node] = []
    end = start

    def new(value: Any = None, kids: Optional[list] = None) -> _Node:
        node = _Node(value, kids)
        nodes.append(node)
        return node

    def top_container() -> _Node:
        node = stack[-1]
        if not isinstance(node, _Node):
            raise ValueError("no object to add to")
        if node.kids is None:
            node.kids = []
        return node

    stream = io.BytesIO(data)
    stream.seek(start)
    try:
        for op, arg, pos in pickletools.genops(stream):
            name = op.name
            end = pos + 1
            if name in _LITERAL_OPS:
                small = not isinstance(arg, (str, bytes, bytearray)) or len(arg) <= 256
                stack.append(new(arg if small else None))
            elif name in ("NONE", "NEWTRUE", "NEWFALSE"):
                stack.append(new({"NONE": None, "NEWTRUE": True, "NEWFALSE": False}[name]))
            elif name in ("EMPTY_LIST", "EMPTY_DICT", "EMPTY_SET"):
                stack.append(new("container", []))
            elif name == "EMPTY_TUPLE":
                stack.append(new("tuple", []))
            elif name == "MARK":
                stack.append(_MARK)
            elif name in ("LIST", "DICT", "FROZENSET"):
                stack.append(new("container", _pop_mark(stack)))
            elif name == "TUPLE":
                stack.append(new("tuple", _pop_mark(stack)))
            elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
                n = int(name[-1])
                items = stack[-n:]
                if len(items) != n or any(x is _MARK for x in items):
                    raise ValueError("stack underflow")
                del stack[-n:]
                stack.append(new("tuple", items))
            elif name in ("APPEND", "SETITEM"):
                n = 1 if name == "APPEND" else 2
                items = stack[-n:]
                del stack[-n:]
                top_container().kids.extend(items)
            elif name in ("APPENDS", "SETITEMS", "ADDITEMS"):
                items = _pop_mark(stack)
                top_container().kids.extend(items)
            elif name == "POP":
                stack.pop()
            elif name == "POP_MARK":
                _pop_mark(stack)
            elif name == "DUP":
                stack.append(stack[-1])
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = stack[-1]
            elif name == "MEMOIZE":
                memo[len(memo)] = stack[-1]
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(memo[arg])
            elif name == "GLOBAL":
                module, _, qual = str(arg).partition(" ")
                stack.append(new(("global", module, qual)))
            elif name == "STACK_GLOBAL":
                qual, module = stack.pop(), stack.pop()
                stack.append(new(("global", _literal(module), _literal(qual))))
            elif name in ("EXT1", "EXT2", "EXT4", "NEXT_BUFFER"):
                stack.append(new(("ext", arg)))
            elif name == "READONLY_BUFFER":
                pass
            elif name in ("REDUCE", "NEWOBJ"):
                args, func = stack.pop(), stack.pop()
                stack.append(new("object", [func, args]))
            elif name == "NEWOBJ_EX":
                kwargs, args, cls = stack.pop(), stack.pop(), stack.pop()
                stack.append(new("object", [cls, args, kwargs]))
            elif name == "BUILD":
                state = stack.pop()
                top_container().kids.append(state)
            elif name == "INST":
                stack.append(new("object", _pop_mark(stack)))
            elif name == "OBJ":
                stack.append(new("object", _pop_mark(stack)))
            elif name == "PERSID":
                node = new("persistent", [new(str(arg)[:256])])
                persistent.append(node)
                stack.append(node)
            elif name == "BINPERSID":
                node = new("persistent", [stack.pop()])
                persistent.append(node)
                stack.append(node)
            elif name in ("PROTO", "FRAME"):
                pass
            elif name == "STOP":
                break
            else:
                raise ValueError(f"unknown opcode {name}")
        else:
            raise ValueError("no STOP opcode (truncated)")
    except (ValueError, IndexError, KeyError, TypeError, OverflowError, struct.error) as e:
        raise CheckpointError(f"{prefix}truncated or corrupt pickle ({exception_text(e, 120)} at byte {end - start})"
                              ) from None
    cap = MAX_PICKLE_EXPANSION + (end - start)
    expansion = _expansion(nodes, cap)
    if expansion > cap:
        raise DeclaredSizeError(f"{prefix}the pickle's {len(nodes):,} objects nest shared references into more "
                                f"than {cap:,} elements (a few bytes that expand without end); refusing it")
    storages = []
    for node in persistent:
        pid = _literal(node.kids[0]) if node.kids else None
        if (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] in ("storage", b"storage")
                and isinstance(pid[1], tuple) and len(pid[1]) == 3 and _is_int(pid[4])):
            storages.append((str(pid[1][2]), str(pid[2]), int(pid[4])))
    return PickleScan(end=end, objects=len(nodes), expansion=expansion, storages=storages)


def storage_element_size(type_name: str) -> int:
    """Bytes per element of a ``torch.<Name>Storage`` named in a torch.save file (1 when unknown: a lower
    bound, so comparisons with the bytes held stay safe)."""
    import warnings

    if type_name == "UntypedStorage":
        return 1
    with warnings.catch_warnings():  # the typed storage classes are deprecated; their dtype is all we read
        warnings.simplefilter("ignore")
        cls = getattr(torch, type_name, None) if type_name.endswith("Storage") else None
        dtype = getattr(cls, "dtype", None)
    return torch._utils._element_size(dtype) if isinstance(dtype, torch.dtype) else 1


# ------------------------------------------------------------------------------------ allocation budget
#: Factory functions whose size is in their arguments: checked before they run.
_SIZED_FACTORIES = {"empty", "zeros", "ones", "full", "rand", "randn", "randint", "normal", "empty_strided",
                    "new_empty", "new_zeros", "new_ones", "new_full", "new_empty_strided"}
_LIKE_FACTORIES = {"empty_like", "zeros_like", "ones_like", "full_like", "rand_like", "randn_like", "randint_like"}


def _requested_numel(name: str, args: tuple, kwargs: dict) -> Optional[int]:
    """Elements a factory call asks for, from its arguments; None when they do not say (checked afterwards)."""
    if name in _LIKE_FACTORIES:
        return args[0].numel() if args and isinstance(args[0], torch.Tensor) else None
    if name in ("arange", "linspace", "logspace", "eye"):
        nums = [a for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
        try:
            if name == "arange" and nums:
                start, end, step = (0, nums[0], 1) if len(nums) == 1 else (nums[0], nums[1], nums[2] if len(nums) > 2
                                                                           else 1)
                return max(0, math.ceil((end - start) / step)) if step else None
            if name in ("linspace", "logspace"):
                steps = kwargs.get("steps", nums[2] if len(nums) > 2 else None)
                return int(steps) if steps is not None else None
            if name == "eye" and nums:
                return int(nums[0]) * int(nums[1] if len(nums) > 1 else nums[0])
        except (OverflowError, ValueError, ZeroDivisionError):
            return None
        return None
    if name not in _SIZED_FACTORIES:
        return None
    rest = args[1:] if name.startswith("new_") else args
    size = kwargs.get("size")
    if size is None:
        for a in rest:  # the first sequence argument (full(size, value), randint(high, size), normal(m, s, size))
            if isinstance(a, (tuple, list, torch.Size)):
                size = a
                break
    if size is None:  # varargs: empty(2, 3)
        lead = []
        for a in rest:
            if isinstance(a, int) and not isinstance(a, bool):
                lead.append(a)
            else:
                break
        size = lead if lead and name not in ("randint", "normal", "full") else None
    if size is None or not all(isinstance(n, int) and not isinstance(n, bool) for n in size):
        return None
    return math.prod(max(0, n) for n in size)


class _AllocationBudget(TorchFunctionMode):
    """Counts the elements of every tensor created while it is active; see :func:`allocation_budget`."""

    def __init__(self, limit: int, what: str):
        super().__init__()
        self.limit, self.what, self.used = limit, what, 0

    def _charge(self, numel: int) -> None:
        self.used += numel
        if self.used > self.limit:
            raise DeclaredSizeError(f"{self.what} needs more than {self.limit:,} tensor elements; refusing to "
                                    f"allocate it")

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: Optional[dict] = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        requested = _requested_numel(name, args, kwargs)
        if requested is not None:
            self._charge(requested)  # before the factory runs
        out = func(*args, **kwargs)
        if requested is None and isinstance(out, torch.Tensor) and out.device.type != "meta":
            try:
                ptr = out.untyped_storage().data_ptr()
                shared = any(a.untyped_storage().data_ptr() == ptr for a in (*args, *kwargs.values())
                             if isinstance(a, torch.Tensor))
            except (RuntimeError, NotImplementedError):  # no plain storage (sparse, nested): not counted
                return out
            if ptr and not shared:  # a new storage
                self._charge(out.numel())
        return out


@contextlib.contextmanager
def allocation_budget(limit: int, what: str) -> Iterator[Any]:
    """Within the block, refuse to create tensors whose elements add up to more than ``limit``.

    Factory calls (``torch.empty``, ``randn``, ``zeros``, ``full``, ``arange``, ...) are checked *before* they
    allocate; any other op that returns a new storage is counted after it (its size follows from tensors
    already counted). Views and in-place ops cost nothing. Meant for building a model from a config that a
    file declares: the model is built for real, and nothing beyond the budget is ever allocated.

    Args:
        limit: most tensor elements created in the block, in total (temporaries included).
        what: start of the message, e.g. ``"config.json: a HyperInverter of this configuration"``.
    Raises:
        DeclaredSizeError: at the first creation past ``limit``.
    """
    mode = _AllocationBudget(limit, what)
    with mode:
        yield mode


# -------------------------------------------------------------------------------------------- configs
def check_config_limits(values: Any, source: str, where: str = "", depth: int = 0) -> None:
    """Refuse configuration values beyond :data:`CONFIG_LIMITS` / :data:`LIST_LIMITS` before a model is built.

    ``values`` is a config dict (nested configs such as ``generator`` or ``backbone`` are checked too). Only
    upper limits and types are checked here; each config dataclass checks the rest (powers of two, ...).

    Raises:
        DeclaredSizeError: naming ``source`` and the field (``layer_encoder.num_slots``), with the limit.
    """
    if depth > MAX_CONFIG_DEPTH:
        raise DeclaredSizeError(f"{source}: configuration nested more than {MAX_CONFIG_DEPTH} deep at '{where}'")
    if not isinstance(values, Mapping):
        return
    for key, value in values.items():
        if not isinstance(key, str) or len(key) > 100:
            raise DeclaredSizeError(f"{source}: configuration key {describe(key, 40)} in '{where}' is not a name")
        name = f"{where}.{key}" if where else key
        if isinstance(value, Mapping):
            check_config_limits(value, source, name, depth + 1)
        elif key in CONFIG_LIMITS:
            if value is None:
                continue
            if not _is_int(value):
                raise DeclaredSizeError(f"{source}: {name} must be an integer, got {describe(value)}")
            if value > CONFIG_LIMITS[key]:
                raise DeclaredSizeError(f"{source}: {name} = {describe(value)} is above the limit of "
                                        f"{CONFIG_LIMITS[key]:,}; refusing to build the model")
        elif key in LIST_LIMITS:
            most, largest = LIST_LIMITS[key]
            if not isinstance(value, (list, tuple)):
                raise DeclaredSizeError(f"{source}: {name} must be a list, got {describe(value)}")
            if len(value) > most:
                raise DeclaredSizeError(f"{source}: {name} has {len(value):,} entries, above the limit of {most}")
            for v in value:
                if isinstance(v, str) and largest is None and len(v) <= MAX_CONFIG_SEQUENCE:
                    continue
                if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v):
                    raise DeclaredSizeError(f"{source}: {name} entries must be finite numbers, got {describe(v)}")
                if largest is not None and v > largest:
                    raise DeclaredSizeError(f"{source}: {name} entry {describe(v)} is above the limit of "
                                            f"{largest:,}; refusing to build the model")
        elif isinstance(value, (str, list, tuple)) and len(value) > MAX_CONFIG_SEQUENCE:
            raise DeclaredSizeError(f"{source}: {name} is a {type(value).__name__} of {len(value):,} entries "
                                    f"(at most {MAX_CONFIG_SEQUENCE})")
        elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
            raise DeclaredSizeError(f"{source}: {name} = {describe(value)} is out of range")


__all__ = ["CONFIG_LIMITS", "LIST_LIMITS", "MAX_CONFIG_BYTES", "MAX_OVERLAPPING_ELEMENTS", "MAX_PICKLE_EXPANSION",
           "MAX_TENSOR_DIMS", "PickleScan", "allocation_budget", "check_config_limits", "check_loaded_tensors",
           "check_pickle_expansion", "check_tensor", "check_tensor_layout", "describe", "describe_all",
           "exception_text", "storage_element_size"]
