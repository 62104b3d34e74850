"""Edit directions in W: the :class:`Direction` record, its files, and GANSpace PCA files and edits.

File formats read by :func:`load_direction_file`:

* InterFaceGAN boundaries (``.npy``, and e4e's ``.pt`` files): ``[1, w_dim]`` or ``[w_dim]`` unit normals.
* ``.pt``/``.pth``: a tensor, or a dict with a ``"direction"`` tensor (or exactly one tensor).
* ``.safetensors`` written by :func:`save_direction` (tensor ``"direction"``) with its ``<name>.json``
  sidecar; without the sidecar the metadata stored in the safetensors header is used.

GANSpace (Härkönen et al. 2020) PCA files, read by :func:`load_ganspace`:

* GANSpace's ``.npz`` dumps: ``lat_comp [n, 1, w_dim]``, ``lat_mean [1, w_dim]``, ``lat_stdev [n]``.
* e4e / HyperInverter ``.pt`` files (``ffhq_pca.pt``, ``church_pca.pt``): ``{"comp", "mean", "std"}``.

How the official code applies a GANSpace edit ``(component, start, end, strength)``
(``editings/ganspace.py`` in e4e and in VinAIResearch/HyperInverter, identical)::

    w_coord = sum((latent[0] - mean) * comp[idx]) / std[idx]      # coordinate of row 0, in stdevs
    delta   = (strength - w_coord) * comp[idx] * std[idx]
    latent[start:end] += delta                                    # Python slice: start included, end excluded

So (1) the layer range is half-open ``[start, end)`` (``(54, 7, 8, 5)`` edits row 7 only); (2) the stdev
*does* scale the edit: ``strength`` is in units of that component's standard deviation; and (3) the
edit is *absolute*, not additive: it moves the rows so that row 0's coordinate along the component
becomes ``strength`` stdevs (for a W code, where all rows equal row 0, every edited row ends up exactly
there). :func:`ganspace_edit` implements this as ``mode="official"`` (needs ``mean``) and the
GANSpace paper's relative edit ``w += strength * std * comp`` as ``mode="add"``.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Optional, Union

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ..errors import HyperInverterError

PathLike = Union[str, os.PathLike]
KINDS = ("interfacegan", "ganspace", "sefa", "custom")
DIRECTION_FILE_SUFFIXES = (".npy", ".pt", ".pth", ".safetensors", ".json")
FORMAT = "hyperinverter.direction/1"
_META_KEY = "hyperinverter.direction"  # safetensors header entry holding the JSON metadata


from .strength import STRENGTH_HELP  # noqa: E402  (torch-free: the command line's help text)


class DirectionError(HyperInverterError, ValueError):
    """An edit direction (or GANSpace) file is missing, unreadable, or of the wrong size."""


def _as_tensor(value: Any, what: str) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise DirectionError(f"{what} must be a tensor or numpy array, got {type(value).__name__}")
    if not (value.is_floating_point() or value.dtype in (torch.int8, torch.int16, torch.int32, torch.int64)):
        raise DirectionError(f"{what} must hold real numbers, got dtype {value.dtype}")
    return value


def _shapes_text(w_dim: int, num_ws: Optional[int]) -> str:
    rows = f" or [{num_ws}, {w_dim}]" if num_ws else ""
    return f"[{w_dim}], [1, {w_dim}]{rows}"


def _jsonable(value: Any) -> Any:
    """Tensors / numpy scalars and arrays -> plain Python, recursively."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _jsonable(value.detach().cpu().numpy())
    if isinstance(value, np.ndarray):
        return value.item() if value.ndim == 0 else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass
class Direction:
    """A named edit direction in W.

    ``vector`` is ``[w_dim]`` (one direction for every edited row; ``[1, w_dim]`` is flattened) or
    ``[num_ws, w_dim]`` (one per row of ``ws``); it is stored as float32 on the CPU.
    ``layers`` = ``(first, stop)``: the rows ``first..stop-1`` of ``ws`` it moves (None = all rows).
    ``strength`` is the default multiplier. ``description`` is free-form JSON-able metadata (source,
    fit report, ...).
    """

    name: str
    vector: torch.Tensor
    kind: str = "custom"
    layers: Optional[tuple[int, int]] = None
    strength: float = 1.0
    description: dict = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name or not re.fullmatch(r"[\w.+-]+", self.name) \
                or self.name.startswith("."):
            raise DirectionError(f"direction name {self.name!r} must be a non-empty file name "
                                 "(letters, digits, '_', '-', '.', '+'; no path separators)")
        if self.kind not in KINDS:
            raise DirectionError(f"direction kind must be one of {KINDS}, got {self.kind!r}")
        vector = _as_tensor(self.vector, f"direction {self.name!r}").detach().to("cpu", torch.float32)
        if vector.ndim == 2 and vector.shape[0] == 1:
            vector = vector.reshape(-1)
        if vector.ndim not in (1, 2) or vector.numel() == 0:
            raise DirectionError(f"direction {self.name!r} must be [w_dim] or [num_ws, w_dim], "
                                 f"got {list(vector.shape)}")
        if not torch.isfinite(vector).all():
            raise DirectionError(f"direction {self.name!r} contains NaN or infinite values")
        self.vector = vector.contiguous()
        if self.layers is not None:
            try:
                first, stop = (int(v) for v in self.layers)
            except (TypeError, ValueError):
                raise DirectionError(f"layers must be (first, stop) or None, got {self.layers!r}") from None
            if not 0 <= first < stop:
                raise DirectionError(f"layers (first, stop) must satisfy 0 <= first < stop, got {self.layers!r}")
            self.layers = (first, stop)
        self.strength = float(self.strength)
        if not math.isfinite(self.strength):
            raise DirectionError(f"strength must be finite, got {self.strength}")
        self.description = dict(self.description or {})

    @property
    def w_dim(self) -> int:
        return self.vector.shape[-1]

    def check(self, w_dim: int, num_ws: int, source: str = "") -> "Direction":
        """Raise :class:`DirectionError` unless the direction fits a generator (``w_dim``, ``num_ws``)."""
        where = f"{source}: " if source else f"direction {self.name!r}: "
        shape = tuple(self.vector.shape)
        if shape not in ((w_dim,), (num_ws, w_dim)):
            raise DirectionError(f"{where}direction of shape {list(shape)}; this model needs "
                                 f"{_shapes_text(w_dim, num_ws)}")
        if self.layers is not None and self.layers[1] > num_ws:
            raise DirectionError(f"{where}layers {list(self.layers)} reach past the {num_ws} rows of ws")
        return self

    def row_vectors(self, num_ws: int) -> torch.Tensor:
        """``[num_ws, w_dim]``: the direction per row of ``ws``, zero outside ``layers``."""
        self.check(self.w_dim, num_ws)
        full = self.vector.reshape(-1, self.w_dim).expand(num_ws, self.w_dim).clone()
        if self.layers is not None:
            keep = torch.zeros(num_ws, 1)
            keep[self.layers[0]:self.layers[1]] = 1
            full = full * keep
        return full

    def step(self, strength: float = 1.0) -> float:
        """The multiplier of :attr:`vector` for a user-facing ``strength`` (``--strength``, the web page's
        sliders, the demo): ``strength`` times this direction's default step :attr:`strength` (see
        :data:`STRENGTH_HELP`)."""
        return float(strength) * self.strength

    def apply(self, ws: torch.Tensor, strength: Optional[float] = None) -> torch.Tensor:
        """``ws [B, num_ws, w_dim]`` (or ``[num_ws, w_dim]``) moved by ``strength * vector`` on ``layers``.

        Same arithmetic as :meth:`HyperInverter.edit` with ``layers=self.layers``.
        """
        if ws.ndim not in (2, 3) or ws.shape[-1] != self.w_dim:
            raise ValueError(f"ws must be [batch, num_ws, {self.w_dim}] or [num_ws, {self.w_dim}], "
                             f"got {list(ws.shape)}")
        s = self.strength if strength is None else float(strength)
        rows = self.row_vectors(ws.shape[-2]).to(ws.device, ws.dtype)
        return ws + s * rows

    def metadata(self) -> dict:
        """What :func:`save_direction` writes to ``<name>.json``."""
        desc = _jsonable(self.description)
        return {
            "format": FORMAT,
            "name": self.name,
            "kind": self.kind,
            "layers": list(self.layers) if self.layers is not None else None,
            "strength": self.strength,
            "w_dim": self.w_dim,
            "shape": list(self.vector.shape),
            "source": desc.get("source"),
            "holdout_accuracy": desc.get("holdout_accuracy"),
            "description": desc,
        }


# ------------------------------------------------------------------------------------------ save / load
def save_direction(direction: Direction, path: PathLike) -> Path:
    """Write ``<name>.safetensors`` (tensor ``"direction"``) and ``<name>.json`` (metadata).

    ``path`` is a folder (created if needed; files named after ``direction.name``) or an explicit
    ``*.safetensors`` file (the JSON goes next to it with the same stem). Returns the safetensors path.
    The metadata is also stored in the safetensors header, so the tensor file alone is enough to load.
    Both files are written atomically; whether they may replace existing ones is the caller's decision
    (:class:`~hyperinverter.utils.outputs.OutputPlan`).
    """
    from ..utils.outputs import atomic_write, write_text_atomic

    path = Path(path)
    if path.suffix in (".npy", ".pt", ".pth", ".json") and not path.is_dir():
        raise DirectionError(f"{path}: directions are saved as .safetensors (+ .json); give a folder or a "
                             "*.safetensors path")
    target = path if path.suffix == ".safetensors" else path / f"{direction.name}.safetensors"
    meta = direction.metadata()
    text = json.dumps(meta, indent=2, default=str)
    tensors = {"direction": direction.vector.contiguous()}
    atomic_write(target, lambda tmp: save_file(tensors, tmp, metadata={_META_KEY: json.dumps(meta, default=str),
                                                                       "format": FORMAT}))
    write_text_atomic(target.with_suffix(".json"), text + "\n")
    return target


def _read_safetensors(path: Path) -> tuple[torch.Tensor, dict]:
    tensors = load_file(str(path))
    if "direction" in tensors:
        value = tensors["direction"]
    elif len(tensors) == 1:
        value = next(iter(tensors.values()))
    else:
        raise DirectionError(f"{path}: holds {sorted(tensors)} and no 'direction' tensor")
    meta: dict = {}
    sidecar = path.with_suffix(".json")
    if sidecar.is_file():
        try:
            meta = json.loads(sidecar.read_text())
        except (OSError, ValueError) as e:
            raise DirectionError(f"{sidecar}: unreadable direction metadata ({type(e).__name__}: {e})") from None
        if not isinstance(meta, dict):
            raise DirectionError(f"{sidecar}: direction metadata must be a JSON object")
    else:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
        if _META_KEY in header:
            try:
                meta = json.loads(header[_META_KEY])
            except ValueError:
                meta = {}
    return value, meta


def _read_torch(path: Path) -> torch.Tensor:
    from ..utils.safe_load import weights_only_load

    value = weights_only_load(path, what="direction file")
    if isinstance(value, dict):  # {"direction": tensor} or a one-tensor dict
        tensors = [v for v in value.values() if isinstance(v, torch.Tensor)]
        value = value.get("direction", tensors[0] if len(tensors) == 1 else None)
    return value


def load_direction_file(path: PathLike, w_dim: int, num_ws: int) -> Direction:
    """Read an edit direction for a generator with ``w_dim`` and ``num_ws`` rows of ws.

    Accepts InterFaceGAN boundaries (``.npy`` / ``.pt``, ``[1, w_dim]`` or ``[w_dim]``), ``[num_ws, w_dim]``
    per-row directions, and files written by :func:`save_direction` (``.safetensors`` + ``.json``; the
    ``.json`` path works too). Raises :class:`DirectionError` naming the file and the expected shape.
    """
    path = Path(path)
    if path.suffix == ".json":
        path = path.with_suffix(".safetensors")
    if path.suffix not in DIRECTION_FILE_SUFFIXES:
        raise DirectionError(f"{path}: unknown direction file type {path.suffix!r}; "
                             f"expected one of {list(DIRECTION_FILE_SUFFIXES)}")
    if not path.is_file():
        raise DirectionError(f"{path}: no such direction file")
    meta: dict = {}
    try:
        if path.suffix == ".npy":
            value = np.load(path, allow_pickle=False)
        elif path.suffix == ".safetensors":
            value, meta = _read_safetensors(path)
        else:
            value = _read_torch(path)
    except DirectionError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure to parse an untrusted file
        raise DirectionError(f"{path}: unreadable direction file ({type(e).__name__}: {e})") from None
    if isinstance(value, np.ndarray) and value.dtype.kind in "fiu":
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor) or not (value.is_floating_point() or value.dtype in (
            torch.int8, torch.int16, torch.int32, torch.int64)):
        raise DirectionError(f"{path}: holds no single numeric direction tensor; expected "
                             f"{_shapes_text(w_dim, num_ws)}")
    value = value.float()
    if tuple(value.shape) not in ((w_dim,), (1, w_dim), (num_ws, w_dim)):
        raise DirectionError(f"{path}: direction of shape {list(value.shape)}; this model needs "
                             f"{_shapes_text(w_dim, num_ws)}")
    if not torch.isfinite(value).all():
        raise DirectionError(f"{path}: the direction contains NaN or infinite values")

    default_kind = "interfacegan" if value.shape[0] == 1 or value.ndim == 1 else "custom"
    kind = meta.get("kind", default_kind)
    if kind not in KINDS:
        raise DirectionError(f"{path}: unknown direction kind {kind!r} in its metadata; expected one of {KINDS}")
    layers = meta.get("layers")
    description = meta.get("description") or {}
    if not isinstance(description, dict):
        description = {"text": description}
    description.setdefault("source", str(path))
    name = meta.get("name") or path.stem
    if not re.fullmatch(r"[\w.+-]+", str(name)) or str(name).startswith("."):
        name = re.sub(r"[^\w.+-]", "_", path.stem).lstrip(".") or "direction"
    try:
        direction = Direction(name=name, vector=value, kind=kind,
                              layers=tuple(layers) if layers is not None else None,
                              strength=meta.get("strength", 1.0), description=description)
    except DirectionError as e:
        raise DirectionError(f"{path}: {e}") from None
    return direction.check(w_dim, num_ws, source=str(path))


# ------------------------------------------------------------------------------------------ GANSpace
class GanSpacePCA(NamedTuple):
    """PCA of W: ``components [n, w_dim]`` (unit rows, by decreasing variance), ``mean [w_dim]``,
    ``stdev [n]`` (standard deviation of the coordinates along each component)."""

    components: torch.Tensor
    mean: torch.Tensor
    stdev: torch.Tensor

    def edit(self, ws: torch.Tensor, component: int, first_layer: int, last_layer: int, strength: float,
             mode: str = "official") -> torch.Tensor:
        """:func:`ganspace_edit` with this PCA."""
        return ganspace_edit(ws, self.components, self.stdev, component, first_layer, last_layer, strength,
                             mean=self.mean, mode=mode)

    def direction(self, component: int, first_layer: Optional[int] = None, last_layer: Optional[int] = None,
                  strength: float = 1.0, name: Optional[str] = None) -> Direction:
        """Component ``component`` as an additive :class:`Direction` (``vector = stdev * comp``, so strength
        counts standard deviations: the ``mode="add"`` edit, not the official absolute one)."""
        if not 0 <= component < self.components.shape[0]:
            raise ValueError(f"component {component} out of range 0..{self.components.shape[0] - 1}")
        layers = None if first_layer is None else (first_layer, last_layer)
        return Direction(name=name or f"ganspace_{component}", vector=self.components[component] * self.stdev[
            component], kind="ganspace", layers=layers, strength=strength,
            description={"component": component, "stdev": float(self.stdev[component]),
                         "semantics": "w[first:stop] += strength * stdev * component"})


def _ganspace_parts(path: Path) -> tuple[Any, Any, Any]:
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            keys = set(data.files)
            if {"lat_comp", "lat_mean", "lat_stdev"} <= keys:
                return data["lat_comp"], data["lat_mean"], data["lat_stdev"]
            if {"comp", "mean", "std"} <= keys:
                return data["comp"], data["mean"], data["std"]
            raise DirectionError(f"{path}: a GANSpace file needs arrays lat_comp, lat_mean, lat_stdev; "
                                 f"found {sorted(keys)}")
    if path.suffix in (".pt", ".pth"):
        from ..utils.safe_load import weights_only_load

        data = weights_only_load(path, what="GANSpace file")
        if not isinstance(data, dict):
            raise DirectionError(f"{path}: a GANSpace .pt file must hold a dict with comp, mean, std")
        for keys in (("comp", "mean", "std"), ("lat_comp", "lat_mean", "lat_stdev")):
            if all(k in data for k in keys):
                return tuple(data[k] for k in keys)
        raise DirectionError(f"{path}: a GANSpace .pt file needs keys comp, mean, std; found {sorted(data)}")
    raise DirectionError(f"{path}: unknown GANSpace file type {path.suffix!r}; expected .npz (GANSpace) "
                         "or .pt (e4e / HyperInverter)")


def load_ganspace(path: PathLike, w_dim: Optional[int] = None) -> GanSpacePCA:
    """Read a GANSpace PCA of W (``.npz`` from GANSpace, or the ``.pt`` files of e4e / HyperInverter).

    Returns float32 ``components [n, w_dim]``, ``mean [w_dim]``, ``stdev [n]``; checks shapes, finiteness
    and (if given) ``w_dim``.
    """
    path = Path(path)
    if not path.is_file():
        raise DirectionError(f"{path}: no such GANSpace file")
    try:
        comp, mean, stdev = _ganspace_parts(path)
        comp, mean, stdev = (_as_tensor(v, f"{path}: {n}").float()
                             for v, n in ((comp, "components"), (mean, "mean"), (stdev, "stdev")))
    except DirectionError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure to parse an untrusted file
        raise DirectionError(f"{path}: unreadable GANSpace file ({type(e).__name__}: {e})") from None
    n = comp.shape[0] if comp.ndim >= 1 else 0
    d = comp.shape[-1] if comp.ndim >= 2 else 0
    if comp.ndim not in (2, 3) or (comp.ndim == 3 and comp.shape[1] != 1) or n == 0 or d == 0:
        raise DirectionError(f"{path}: components of shape {list(comp.shape)}; expected [n, 1, w_dim] or [n, w_dim]")
    comp = comp.reshape(n, d)
    if mean.numel() != d:
        raise DirectionError(f"{path}: mean of shape {list(mean.shape)}; expected [1, {d}] or [{d}]")
    if stdev.numel() != n:
        raise DirectionError(f"{path}: stdev of shape {list(stdev.shape)}; expected [{n}] (one per component)")
    if w_dim is not None and d != w_dim:
        raise DirectionError(f"{path}: components of dimension {d}; this model needs [n, 1, {w_dim}] "
                             f"(w_dim={w_dim})")
    pca = GanSpacePCA(comp.contiguous(), mean.reshape(d).contiguous(), stdev.reshape(n).contiguous())
    if not all(torch.isfinite(t).all() for t in pca):
        raise DirectionError(f"{path}: the GANSpace file contains NaN or infinite values")
    return pca


def save_ganspace(pca: GanSpacePCA, path: PathLike) -> Path:
    """Write a PCA as GANSpace's ``.npz`` layout (``lat_comp [n,1,w_dim]``, ``lat_mean [1,w_dim]``,
    ``lat_stdev [n]``), readable by :func:`load_ganspace` and GANSpace's own tools."""
    from ..utils.outputs import atomic_write

    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    comp, mean, stdev = (torch.as_tensor(t).detach().cpu().float().numpy() for t in pca)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:  # a file object: numpy would append .npz to the temporary name
            np.savez_compressed(fh, lat_comp=comp.reshape(comp.shape[0], 1, -1), lat_mean=mean.reshape(1, -1),
                                lat_stdev=stdev.reshape(-1))

    return atomic_write(path, write)


def ganspace_edit(ws: torch.Tensor, components: torch.Tensor, stdev: torch.Tensor, component: int,
                  first_layer: int, last_layer: int, strength: float, mean: Optional[torch.Tensor] = None,
                  mode: str = "official") -> torch.Tensor:
    """Apply a GANSpace edit ``(component, first_layer, last_layer, strength)`` to ``ws``.

    Rows ``first_layer .. last_layer - 1`` of ``ws`` (``[B, num_ws, w_dim]`` or ``[num_ws, w_dim]``) move
    along ``c = components[component]`` (unit norm); other rows are unchanged. A new tensor is returned.

    * ``mode="official"`` (e4e / HyperInverter ``editings/ganspace.py``; needs ``mean``): per sample,
      ``coord = <ws[0] - mean, c> / stdev[k]`` and the rows get ``(strength - coord) * stdev[k] * c``, i.e.
      row 0's coordinate is *set* to ``strength`` standard deviations.
    * ``mode="add"`` (GANSpace paper): the rows get ``strength * stdev[k] * c``.
    """
    if mode not in ("official", "add"):
        raise ValueError(f"mode must be 'official' or 'add', got {mode!r}")
    if ws.ndim not in (2, 3):
        raise ValueError(f"ws must be [batch, num_ws, w_dim] or [num_ws, w_dim], got {list(ws.shape)}")
    single = ws.ndim == 2
    x = ws.unsqueeze(0) if single else ws
    num_ws, w_dim = x.shape[1:]
    comps = torch.as_tensor(components).reshape(torch.as_tensor(components).shape[0], -1)
    if comps.shape[1] != w_dim:
        raise ValueError(f"components have dimension {comps.shape[1]}, ws rows have {w_dim}")
    stdev = torch.as_tensor(stdev).reshape(-1)
    if not 0 <= component < comps.shape[0] or stdev.numel() != comps.shape[0]:
        raise ValueError(f"component {component} out of range 0..{comps.shape[0] - 1} "
                         f"(stdev has {stdev.numel()} entries)")
    if not 0 <= first_layer < last_layer <= num_ws:
        raise ValueError(f"layers [{first_layer}, {last_layer}) must satisfy 0 <= first < last <= {num_ws}")
    c = comps[component].to(x.device, x.dtype)
    sd = stdev[component].to(x.device, x.dtype)
    if mode == "official":
        if mean is None:
            raise ValueError("the official GANSpace edit sets the component's coordinate and needs the PCA mean "
                             "(pass mean=..., or use mode='add' for w += strength * stdev * component)")
        m = torch.as_tensor(mean).reshape(-1).to(x.device, x.dtype)
        if m.numel() != w_dim:
            raise ValueError(f"mean has {m.numel()} entries, ws rows have {w_dim}")
        coord = ((x[:, 0] - m) * c).sum(dim=-1) / sd  # [B]
        amount = (strength - coord) * sd  # [B]
    else:
        amount = torch.full([x.shape[0]], float(strength), device=x.device, dtype=x.dtype) * sd
    out = x.clone()
    out[:, first_layer:last_layer] += amount.view(-1, 1, 1) * c
    return out[0] if single else out


__all__ = ["DIRECTION_FILE_SUFFIXES", "Direction", "DirectionError", "GanSpacePCA", "KINDS", "ganspace_edit",
           "load_direction_file", "load_ganspace", "save_direction", "save_ganspace"]
