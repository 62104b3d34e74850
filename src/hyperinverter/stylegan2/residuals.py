"""Per-sample parameter residuals Δθ kept in the hypernetwork's factored form until a layer needs them.

A weight regressor computes ``Δθ_b = reinterpret(H_b @ W2 + b2)`` with ``H_b`` ``[in, D]`` per sample and
``W2`` ``[D, out·k·k]``, ``b2`` ``[out·k·k]`` shared (the official memory reinterpretation reads the
``[in, out·k·k]`` buffer as ``[out, in, k, k]``). :class:`LowRankResidual` stores the three factors;
``dense()`` builds the ``[B, out, in, k, k]`` tensor, and the synthesis layers use the factors directly
(:mod:`hyperinverter.ops.lowrank_conv2d`) where the shapes allow and the cost model prefers it.

:class:`Residuals` is the mapping ``{parameter name: Δθ}`` that inversions return: reading an entry
gives the dense tensor (built on demand, one layer at a time), ``raw()`` the stored forms.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Mapping, Optional, Sequence, Union

import torch


@dataclass(frozen=True)
class LowRankResidual:
    """``Δθ_b = reinterpret(h_b @ w2 + b2)``: ``[B, *param_shape]`` without forming it."""

    h: torch.Tensor  # [B, in, D]: per-sample factor (rows of the official [in, out*k*k] buffer).
    w2: torch.Tensor  # [D, out*k*k]: shared second factor.
    b2: torch.Tensor  # [out*k*k]: shared bias of the second factor.
    param_shape: tuple  # (out, in, k, k) or (out, in).

    def __post_init__(self):
        out_ch, in_ch = self.param_shape[:2]
        rest = int(math.prod(self.param_shape[2:]))
        d = self.w2.shape[0]
        assert self.h.ndim == 3 and self.h.shape[1:] == (in_ch, d), f"h {tuple(self.h.shape)} for {self.param_shape}"
        assert self.w2.shape == (d, out_ch * rest) and self.b2.shape == (out_ch * rest,), \
            f"w2 {tuple(self.w2.shape)}, b2 {tuple(self.b2.shape)} for {self.param_shape}"

    # ------------------------------------------------------------------ tensor-like description
    @property
    def shape(self) -> torch.Size:
        return torch.Size((self.h.shape[0], *self.param_shape))

    @property
    def ndim(self) -> int:
        return 1 + len(self.param_shape)

    @property
    def dtype(self) -> torch.dtype:
        return self.h.dtype

    @property
    def device(self) -> torch.device:
        return self.h.device

    @property
    def groups(self) -> int | None:
        """``m`` with ``in = m·out`` for a conv kernel (the factored path applies), else None."""
        if len(self.param_shape) != 4:
            return None
        out_ch, in_ch = self.param_shape[:2]
        return in_ch // out_ch if in_ch % out_ch == 0 else None

    # ------------------------------------------------------------------ forms
    def dense(self) -> torch.Tensor:
        """``[B, *param_shape]`` (exactly the regressor's ``expand``)."""
        h = self.h
        return (h @ self.w2.to(h.dtype) + self.b2.to(h.dtype)).reshape(h.shape[0], *self.param_shape)

    def kernels(self) -> torch.Tensor:
        """``V`` ``[D+1, out, k, k]``: the rows of ``W2`` and ``b2`` as kernels over ``out`` input channels."""
        out_ch = self.param_shape[0]
        return torch.cat([self.w2, self.b2.unsqueeze(0)]).reshape(-1, out_ch, *self.param_shape[2:])

    def mix(self) -> torch.Tensor:
        """``G`` ``[B, out, m, D+1]``: sample b's coefficient of kernel e for output o and input group q."""
        m = self.groups
        assert m is not None, f"no channel-group structure for {self.param_shape}"
        b, _, d = self.h.shape
        h = self.h.reshape(b, self.param_shape[0], m, d)
        return torch.cat([h, h.new_ones(b, self.param_shape[0], m, 1)], dim=-1)

    # ------------------------------------------------------------------ batch operations
    def __getitem__(self, index) -> "LowRankResidual":
        """Select samples (an int keeps a batch dimension of 1)."""
        idx = slice(index, index + 1) if isinstance(index, int) else index
        return LowRankResidual(self.h[idx], self.w2, self.b2, self.param_shape)

    def with_h(self, h: torch.Tensor) -> "LowRankResidual":
        return LowRankResidual(h, self.w2, self.b2, self.param_shape)

    def detach(self) -> "LowRankResidual":
        return LowRankResidual(self.h.detach(), self.w2.detach(), self.b2.detach(), self.param_shape)

    def clone(self) -> "LowRankResidual":
        """Copies of all three tensors (e.g. ordinary tensors from the inference tensors of ``invert``)."""
        return LowRankResidual(self.h.clone(), self.w2.clone(), self.b2.clone(), self.param_shape)

    def to(self, *args, **kwargs) -> "LowRankResidual":
        return LowRankResidual(self.h.to(*args, **kwargs), self.w2.to(*args, **kwargs), self.b2.to(*args, **kwargs),
                               self.param_shape)

    def shares_factors(self, other: "LowRankResidual") -> bool:
        """Same ``W2``/``b2`` (then ``Δθ`` is linear in ``h`` and lerps/concatenations stay factored)."""
        same = lambda a, b: a is b or (a.shape == b.shape and a.device == b.device and  # noqa: E731
                                       (a.data_ptr() == b.data_ptr() or torch.equal(a, b)))
        return self.param_shape == other.param_shape and same(self.w2, other.w2) and same(self.b2, other.b2)


Residual = Union[torch.Tensor, LowRankResidual]


def as_dense(value: Residual) -> torch.Tensor:
    """The ``[B, *shape]`` tensor of a residual in either form."""
    return value.dense() if isinstance(value, LowRankResidual) else value


class Residuals(Mapping[str, torch.Tensor]):
    """``{synthesis parameter name: Δθ [B, *shape]}``; entries may be stored factored.

    ``residuals[name]`` returns a dense tensor (built on demand, not cached); ``raw()`` the stored
    forms, which ``G.synthesis(..., weight_deltas=...)`` reads.
    """

    def __init__(self, items: Mapping[str, Residual]):
        self._items = dict(items.raw() if isinstance(items, Residuals) else items)

    def __getitem__(self, name: str) -> torch.Tensor:
        return as_dense(self._items[name])

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        kinds = {k: ("factored" if isinstance(v, LowRankResidual) else "dense") + str(list(v.shape))
                 for k, v in self._items.items()}
        return f"Residuals({kinds})"

    def raw(self) -> dict[str, Residual]:
        return dict(self._items)

    def select(self, index) -> "Residuals":
        """Samples ``index`` (slice, tensor or int; an int keeps a batch dimension of 1)."""
        idx = slice(index, index + 1) if isinstance(index, int) else index
        return Residuals({k: v[idx] for k, v in self._items.items()})

    def detach(self) -> "Residuals":
        return Residuals({k: v.detach() for k, v in self._items.items()})

    def clone(self) -> "Residuals":
        return Residuals({k: v.clone() for k, v in self._items.items()})

    def to(self, *args, **kwargs) -> "Residuals":
        return Residuals({k: v.to(*args, **kwargs) for k, v in self._items.items()})


def raw_items(deltas: Mapping[str, Residual]) -> dict[str, Residual]:
    """The stored forms of a :class:`Residuals` or a plain dict, without building dense tensors."""
    return deltas.raw() if isinstance(deltas, Residuals) else dict(deltas)


def cat_residuals(parts: Sequence[Mapping[str, Residual]]) -> Residuals:
    """Concatenate along the batch; factored entries stay factored when they share ``W2``/``b2``."""
    out = {}
    raws = [raw_items(p) for p in parts]
    for name in raws[0]:
        values = [r[name] for r in raws]
        first = values[0]
        if all(isinstance(v, LowRankResidual) and first.shares_factors(v) for v in values):
            out[name] = first.with_h(torch.cat([v.h for v in values]))
        else:
            out[name] = torch.cat([as_dense(v) for v in values])
    return Residuals(out)


def add_residuals(a: Mapping[str, Residual], b: Mapping[str, Residual], cache: Optional[dict] = None) -> Residuals:
    """``a + b`` per layer (the same layers, the same batch); factored entries stay factored.

    ``h_a @ W2_a + b2_a + h_b @ W2_b + b2_b`` is one factored residual with ``h = [h_a, h_b]`` (rank ``D_a + D_b``),
    ``W2 = [W2_a; W2_b]`` and ``b2 = b2_a + b2_b``: refinement passes add their residuals this way.

    ``cache``: a dict kept by the caller (the model) for inference. The stacked ``W2``/``b2`` of a layer are then
    built once and the same tensors are returned while the inputs are the same unchanged tensors, so results
    of different calls share their factors (as single-pass results share the model's ``W2``): concatenation
    and interpolation stay factored and cached codes do not each hold a copy. Not used where gradients flow
    to a factor (training).
    """
    ra, rb = raw_items(a), raw_items(b)
    if set(ra) != set(rb):
        raise ValueError("the two residuals are for different layers")
    out = {}
    for name, va in ra.items():
        vb = rb[name]
        if not (isinstance(va, LowRankResidual) and isinstance(vb, LowRankResidual)):
            out[name] = as_dense(va) + as_dense(vb)
            continue
        assert va.param_shape == vb.param_shape and va.h.shape[0] == vb.h.shape[0], name
        dtype = va.h.dtype
        factors = (va.w2, vb.w2, va.b2, vb.b2)
        stack = lambda: (torch.cat([va.w2.to(dtype), vb.w2.to(dtype)]),  # noqa: E731
                         va.b2.to(dtype) + vb.b2.to(dtype))
        if cache is None or (torch.is_grad_enabled() and any(t.requires_grad for t in factors)):
            w2, b2 = stack()
        else:
            # storage, version counter, dtype, device, shape: a detached view of the same weight is the same key
            key = tuple((t.data_ptr(), t._version, t.dtype, t.device, t.shape) for t in factors) + (dtype,)
            hit = cache.get(name)
            if hit is None or hit[0] != key:
                # an ordinary tensor even when built under inference_mode (usable later with autograd)
                with torch.inference_mode(False), torch.no_grad():
                    hit = cache[name] = (key, factors, *stack())  # the inputs are held: their storage is not reused
            w2, b2 = hit[2], hit[3]
        out[name] = LowRankResidual(torch.cat([va.h, vb.h.to(dtype)], dim=-1), w2, b2, va.param_shape)
    return Residuals(out)


def lerp_residuals(a: Mapping[str, Residual], b: Mapping[str, Residual], t: torch.Tensor) -> Residuals:
    """``a + (b - a)·t`` for single-sample residuals and ``t`` ``[steps]``: ``[steps, *shape]`` each.

    Factored entries with shared ``W2``/``b2`` lerp their ``h`` (``Δθ`` is affine in ``h`` with the
    constant ``b2``, and the weights of a lerp sum to 1), so the result stays factored.
    """
    ra, rb = raw_items(a), raw_items(b)
    out = {}
    for name, va in ra.items():
        vb = rb[name]
        if isinstance(va, LowRankResidual) and isinstance(vb, LowRankResidual) and va.shares_factors(vb):
            out[name] = va.with_h(va.h + (vb.h - va.h) * t.to(va.h.dtype).view(-1, 1, 1))
        else:
            da, db = as_dense(va), as_dense(vb)
            out[name] = da + (db - da) * t.to(da.dtype).view(-1, *([1] * (da.ndim - 1)))
    return Residuals(out)
