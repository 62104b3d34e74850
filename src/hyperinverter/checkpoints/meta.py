"""Build a model on the ``meta`` device (shapes and dtypes only), quickly, to load its weights with ``assign``.

``with torch.device("meta"):`` alone builds any module without memory, but torch runs many ops on meta
through Python reference kernels whose first use imports ``torch._dynamo`` and ``sympy`` (3 to 6 s on a busy
2-core machine: more than building and loading the 8.8 M-element portraits64 model takes). Building our
models uses a handful of such ops (``randn``, in-place initialisers, arithmetic with a scalar, ``outer``), and
on meta their results are fully known without running them: a random or initialised tensor is an empty
tensor of that shape, an in-place op leaves its tensor's shape, an elementwise op broadcasts. :func:`meta_device`
answers those few directly and passes everything else to torch, so a model built under it is the same (names,
shapes, dtypes, ``requires_grad``) as one built under ``torch.device("meta")``.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any, Iterator, Optional

import torch
from torch.overrides import TorchFunctionMode

#: Random factories whose meta result is ``torch.empty`` with the same size arguments.
_RANDOM_FACTORIES = {"randn", "rand"}
#: In-place ops and ``torch.nn.init`` functions that change values only: on a meta tensor they return it
#: unchanged. (Not ``requires_grad_``, ``resize_``, ``squeeze_``, ...: those change what a meta tensor records.)
_VALUE_ONLY_INPLACE = {"normal_", "uniform_", "fill_", "zero_", "mul_", "div_", "add_", "sub_", "copy_", "clamp_",
                       "exponential_", "random_", "bernoulli_", "log_normal_", "cauchy_", "geometric_",
                       "kaiming_uniform_", "kaiming_normal_", "xavier_uniform_", "xavier_normal_", "trunc_normal_",
                       "orthogonal_", "constant_", "ones_", "zeros_", "eye_", "dirac_"}
#: Elementwise binary ops: the result has the broadcast shape of the operands and their promoted dtype.
_ELEMENTWISE_BINARY = {"__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__", "__truediv__",
                       "__rtruediv__", "add", "sub", "mul", "div", "true_divide"}


def _broadcast(*shapes: tuple) -> Optional[tuple]:
    """The broadcast of ``shapes`` (None where they do not broadcast), in plain Python: ``torch.broadcast_shapes``
    goes through the reference kernels too."""
    out = []
    for dims in itertools.zip_longest(*(tuple(reversed(s)) for s in shapes), fillvalue=1):
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            return None
        out.append(sizes.pop() if sizes else 1)
    return tuple(reversed(out))


class _MetaShortcuts(TorchFunctionMode):
    """Answers the ops of :data:`_RANDOM_FACTORIES`, :data:`_VALUE_ONLY_INPLACE`, :data:`_ELEMENTWISE_BINARY` and
    ``outer`` on meta tensors without running them; see :func:`meta_device`."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: Optional[dict] = None) -> Any:
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", "")
        if name in _RANDOM_FACTORIES and func in (torch.randn, torch.rand) and kwargs.get("device") is None:
            kwargs.pop("generator", None)
            return torch.empty(*args, **kwargs)  # on meta: the enclosing torch.device("meta") supplies the device
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        if not tensors or not all(t.is_meta for t in tensors):
            return func(*args, **kwargs)
        if name in _VALUE_ONLY_INPLACE:  # Tensor.normal_(t, ...), or torch.nn.init.normal_(tensor=t, ...)
            target = args[0] if args else kwargs.get("tensor", kwargs.get("input"))
            if isinstance(target, torch.Tensor):
                return target
        tracked = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)  # a result with a grad_fn
        if name in _ELEMENTWISE_BINARY and len(args) == 2 and not kwargs and not tracked:
            dtype = torch.result_type(args[0], args[1])
            shape = _broadcast(*(tuple(a.shape) for a in args if isinstance(a, torch.Tensor)))
            if dtype.is_floating_point and shape is not None:  # (integer true division: left to torch)
                return torch.empty(shape, dtype=dtype, device="meta")
        if name == "outer" and len(args) == 2 and not kwargs and not tracked and all(a.ndim == 1 for a in tensors):
            return torch.empty(args[0].shape[0], args[1].shape[0], dtype=torch.result_type(*args), device="meta")
        return func(*args, **kwargs)


@contextlib.contextmanager
def meta_device() -> Iterator[None]:
    """Within the block, tensors are created on the ``meta`` device (``torch.device("meta")``), and the ops
    model constructors use to initialise them are answered without torch's Python meta kernels (see the module
    docstring). Load the weights of a model built here with ``load_state_dict(..., assign=True)``.

    Factory calls still pass through any enclosing :func:`~hyperinverter.utils.limits.allocation_budget` (a
    random factory as the ``torch.empty`` it becomes), so a budget refuses a meta model exactly where it would
    refuse a real one.
    """
    with torch.device("meta"), _MetaShortcuts():
        yield
