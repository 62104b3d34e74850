"""Writers of small hostile model files, for tests (issue 15, item 5): files that pass the unpickler's
allow-list but declare huge tensors, storages that claim more bytes than they hold, messages that would
``repr`` a 50^8-element list, cyclic networks, and config.json values that would allocate without end.

Every file here is a few kilobytes; what it *declares* is what a loader must check before allocating.
"""

from __future__ import annotations

import collections
import io
import json
import pickle
import struct
import zipfile
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch._utils
import torch.storage
from helpers_formats import _persist, fake_nvlabs_modules, nvlabs_generator_kwargs

from hyperinverter import Generator

#: A 8x8 generator with 2 channels: its NVIDIA pickle is a few kilobytes.
SMALL_G = dict(z_dim=4, w_dim=4, img_resolution=8, channel_base=16, channel_max=2, mapping_layers=1)
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def small_generator() -> Generator:
    torch.manual_seed(0)
    return Generator(**SMALL_G).eval()


def repr_bomb(depth: int = 8, width: int = 50, kind: type = list) -> Any:
    """A list (or tuple) ``width`` wide and ``depth`` deep whose levels share one object: pickled it is a
    few hundred bytes, its ``repr`` would be ``width ** depth`` elements long."""
    x: Any = kind([0])
    for _ in range(depth):
        x = kind([x] * width)
    return x


class Call:
    """Pickles as ``func(*args)`` (with ``func`` named by module and qualname, as pickle does)."""

    def __init__(self, func: Callable, *args: Any, state: Any = None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


class Marker:
    """Stands for the storage in a hand-written legacy storage blob (see :func:`legacy_storage_blob`)."""


def legacy_storage_blob(declared_numel: int, values: np.ndarray, storage_type: Any = None, root: Any = None) -> bytes:
    """The bytes ``torch.storage._load_from_bytes`` reads (a legacy, non-zip ``torch.save`` of one storage),
    written by hand so that the storage can *declare* ``declared_numel`` elements while holding ``values``.

    Args:
        root: the object saved (default: the storage itself); a :class:`Marker` in it stands for the storage.
    """
    storage_type = storage_type or torch.FloatStorage
    f = io.BytesIO()
    for header in (_LEGACY_MAGIC, 1001, dict(protocol_version=1001, little_endian=True,
                                                type_sizes=dict(short=2, int=4, long=4))):
        pickle.dump(header, f, protocol=2)

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Marker):
                return ("storage", storage_type, "0", "cpu", declared_numel, None)
            return None

    P(f, protocol=2).dump(Marker() if root is None else root)
    pickle.dump(["0"], f, protocol=2)
    f.write(struct.pack("<q", values.size))
    f.write(np.ascontiguousarray(values).tobytes())
    return f.getvalue()


def lying_tensor(size: tuple, stride: tuple, declared_numel: int, held: int = 1) -> Call:
    """A pickled tensor view ``size``/``stride`` of a storage blob that declares ``declared_numel`` floats
    and holds ``held`` of them."""
    blob = Call(torch.storage._load_from_bytes, legacy_storage_blob(declared_numel, np.zeros(held, np.float32)))
    return Call(torch._utils._rebuild_tensor_v2, blob, 0, tuple(size), tuple(stride), False,
                collections.OrderedDict())


def child(persisted: Any, dotted: str) -> Any:
    """The persisted sub-network at ``dotted`` (e.g. ``synthesis.b8.conv1``) of a helpers_formats network."""
    for name in dotted.split("."):
        persisted = persisted.meta["state"]["_modules"][name]
    return persisted


def write_nvlabs(path: Path, edit: Optional[Callable[[dict, Any, type], None]] = None,
                 G: Optional[Generator] = None, protocol: int = 3) -> Path:
    """An NVIDIA snapshot pickle ``{"G_ema": ...}`` of :data:`SMALL_G`; ``edit(data, g_ema, EasyDict)``
    changes it (still through the persisted-object layout) before it is written."""
    G = G or small_generator()
    with fake_nvlabs_modules() as (EasyDict, reconstruct):
        g = _persist(G, reconstruct, "class Generator: pass\n", nvlabs_generator_kwargs(G, EasyDict))
        data = {"G_ema": g}
        if edit is not None:
            edit(data, g, EasyDict)
        path.write_bytes(pickle.dumps(data, protocol=protocol))
    return path


def zip_pt_with_pickle(path: Path, data_pkl: bytes, records: Optional[dict] = None) -> Path:
    """A torch zip file whose ``data.pkl`` is ``data_pkl`` and whose ``data/<key>`` records are ``records``."""
    buf = io.BytesIO()
    torch.save({}, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    prefix = src.namelist()[0].split("/")[0]
    with zipfile.ZipFile(path, "w") as out:
        for name in src.namelist():
            out.writestr(name, data_pkl if name.endswith("data.pkl") else src.read(name))
        for key, raw in (records or {}).items():
            out.writestr(f"{prefix}/data/{key}", raw)
    return path


def storage_pickle(declared_numel: int) -> bytes:
    """A ``data.pkl`` holding ``{"w": tensor}`` whose storage ``"0"`` declares ``declared_numel`` floats."""
    class P(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Marker):
                return ("storage", torch.FloatStorage, "0", "cpu", declared_numel)
            return None

    tensor = Call(torch._utils._rebuild_tensor_v2, Marker(), 0, (declared_numel,), (1,), False,
                  collections.OrderedDict())
    f = io.BytesIO()
    P(f, protocol=2).dump({"w": tensor})
    return f.getvalue()


def edit_config(folder: Path, **changes: Any) -> None:
    """Set ``config.json``'s ``config`` entries; a dotted key (``layer_encoder.num_slots``) reaches inside."""
    path = folder / "config.json"
    meta = json.loads(path.read_text())
    for key, value in changes.items():
        target = meta["config"]
        *parents, last = key.split(".")
        for p in parents:
            target = target[p]
        target[last] = value
    path.write_text(json.dumps(meta))


# ------------------------------------------------------------------------------------------ the cases
def _persistent_id_bomb(path: Path) -> Path:
    """A pickle whose persistent id is a repr bomb (the unpickler used to quote it in its message)."""
    bomb = repr_bomb()

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            return bomb if isinstance(obj, Marker) else None

    f = io.BytesIO()
    P(f, protocol=3).dump({"G_ema": Marker()})
    path.write_bytes(f.getvalue())
    return path


def _dict_key_bomb(path: Path) -> Path:
    """``{tuple_bomb: 1}``: written opcode by opcode, since Python cannot build that dict (it hashes the key)."""
    body = pickle.dumps(repr_bomb(kind=tuple), protocol=2)
    assert body[:2] == b"\x80\x02" and body[-1:] == b"."
    path.write_bytes(b"\x80\x02}" + body[2:-1] + b"K\x01s.")  # PROTO 2, EMPTY_DICT, key, BININT1 1, SETITEM, STOP
    return path


def _set_kwarg(*keys: str, value: Any) -> Callable:
    def edit(data, g, EasyDict):
        target = g.meta["state"]["_init_kwargs"]
        for k in keys[:-1]:
            target = target[k]
        target[keys[-1]] = value
    return edit


def _set_buffer(module: str, name: str, tensor: Any) -> Callable:
    def edit(data, g, EasyDict):
        child(g, module).meta["state"]["_buffers"][name] = tensor
    return edit


def big_resolution_generator(resolution: int) -> Generator:
    """A 1-channel generator of ``resolution`` px without noise inputs: cheap to build, tiny to pickle, and
    (with its pickle's ``use_noise=True``) a loader that trusts it allocates ``~2.7 * resolution^2`` floats."""
    return Generator(z_dim=4, w_dim=4, img_resolution=resolution, channel_base=resolution, channel_max=1,
                     mapping_layers=1, use_noise=False).eval()


def pickle_cases(folder: Path) -> dict[str, Path]:
    """NVIDIA pickles (each a few kilobytes) that pass the allow-list but declare huge things."""
    folder.mkdir(parents=True, exist_ok=True)
    cases: dict[str, Path] = {}

    def nv(name: str, edit: Optional[Callable] = None, G: Optional[Generator] = None) -> None:
        cases[name] = write_nvlabs(folder / f"{name}.pkl", edit, G)

    nv("noise_stride0_2^14", _set_buffer("synthesis.b8.conv1", "noise_const", torch.zeros(1).expand(2**14, 2**14)))
    for k in (14, 16, 20):  # storage blobs that declare 2^28, 2^32, 2^40 floats and hold one
        nv(f"noise_blob_2^{k}", _set_buffer("synthesis.b8.conv1", "noise_const",
                                            lying_tensor((2**k, 2**k), (2**k, 1), 2 ** (2 * k))))
    nv("noise_view_out_of_storage", _set_buffer("synthesis.b8.conv1", "noise_const",
                                                lying_tensor((2**14, 2**14), (2**14, 1), 1)))
    for k in (14, 16):  # honest, tiny tensors of a 2^k px generator whose kwargs ask for noise buffers
        nv(f"resolution_2^{k}", G=big_resolution_generator(2**k))
    bomb, tuple_bomb = repr_bomb(), repr_bomb(kind=tuple)
    nv("bomb_class_name", lambda data, g, E: g.meta.__setitem__("class_name", bomb))
    nv("bomb_c_dim", _set_kwarg("c_dim", value=bomb))
    nv("bomb_architecture", _set_kwarg("synthesis_kwargs", "architecture", value=bomb))
    nv("bomb_z_dim", _set_kwarg("z_dim", value=bomb))
    nv("bomb_set", lambda data, g, E: data.update(x=Call(set, [tuple_bomb])))  # hashing it never ends
    cases["bomb_dict_key"] = _dict_key_bomb(folder / "bomb_dict_key.pkl")
    nv("bomb_tensor_type", _set_buffer("synthesis.b8.conv1", "noise_const", Call(
        torch._tensor._rebuild_from_type_v2, torch._utils._rebuild_tensor_v2, bomb, (), {})))
    nv("bomb_codecs", lambda data, g, E: data.update(x=Call(_codecs_encode(), "x", bomb)))
    nv("bomb_numpy_dtype", lambda data, g, E: data.update(x=Call(np.dtype, [bomb])))
    cases["bomb_persistent_id"] = _persistent_id_bomb(folder / "bomb_persistent_id.pkl")
    nv("torch_Tensor_call", lambda data, g, E: data.update(x=Call(torch.Tensor, 2**14, 2**14, 4)))
    nv("numpy_ndarray_call", lambda data, g, E: data.update(x=Call(np.ndarray, (2**16, 2**16))))
    nv("numpy_reconstruct_shape", lambda data, g, E: data.update(
        x=Call(_numpy_reconstruct(), np.ndarray, (2**16, 2**16), b"b")))
    nv("numpy_object_array_shape", lambda data, g, E: data.update(
        x=Call(_numpy_reconstruct(), np.ndarray, (0,), b"b", state=(1, (2**20, 2**20), np.dtype("O"), False, [1]))))
    return cases


def _codecs_encode() -> Callable:
    import _codecs

    return _codecs.encode


def _numpy_reconstruct() -> Callable:
    core = getattr(np, "_core", None) or np.core
    return core.multiarray._reconstruct


def torch_file_cases(folder: Path) -> dict[str, Path]:
    """``.pt`` files: a stride-0 tensor that declares z_dim 2^31, storages that claim more than they hold."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.clone() for k, v in small_generator().state_dict().items()}
    state["mapping.fc0.weight"] = torch.zeros(1).expand(SMALL_G["w_dim"], 2**31)
    torch.save(state, folder / "stride0_z_dim.pt")
    zip_pt_with_pickle(folder / "zip_storage_2^30.pt", storage_pickle(2**30), {"0": b"\0" * 4})
    tensor = Call(torch._utils._rebuild_tensor_v2, Marker(), 0, (2**32,), (1,), False, collections.OrderedDict())
    (folder / "legacy_storage_2^32.pt").write_bytes(legacy_storage_blob(2**32, np.zeros(1, np.float32),
                                                                        root={"w": tensor}))
    return {p.stem: p for p in (folder / "stride0_z_dim.pt", folder / "zip_storage_2^30.pt",
                                folder / "legacy_storage_2^32.pt")}


def tiny_inverter_folder(folder: Path) -> Path:
    """A ``save_pretrained`` folder of a HyperInverter around :data:`SMALL_G` with tiny encoders."""
    from hyperinverter import HyperInverter
    from hyperinverter.encoders.presets import tiny_encoders

    e1, e2 = tiny_encoders(w_dim=SMALL_G["w_dim"], num_slots=4)
    torch.manual_seed(0)
    HyperInverter.from_generator(small_generator(), e1, e2, hidden_dim=4).save_pretrained(folder)
    return folder


def config_cases(folder: Path) -> dict[str, Path]:
    """save_pretrained folders whose config.json asks for models far larger than their weights."""
    import shutil

    base = tiny_inverter_folder(folder / "base")
    cases = {}
    for name, changes in {"num_slots_10^6": {"layer_encoder.num_slots": 10**6},
                          "hidden_dim_10^7": {"hidden_dim": 10**7},
                          "z_dim_2^31": {"generator.z_dim": 2**31},
                          "hidden_dim_1024": {"hidden_dim": 1024},  # within the limits, not what the file holds
                          "widths_4096": {"w_encoder.backbone.widths": [4096] * 4,
                                          "w_encoder.backbone.blocks": [64] * 4}}.items():
        shutil.copytree(base, folder / name)
        edit_config(folder / name, **changes)
        cases[f"inverter_{name}"] = folder / name
    small_generator().save_pretrained(folder / "generator")
    edit_config(folder / "generator", z_dim=2**31)
    cases["generator_z_dim_2^31"] = folder / "generator"
    return cases


class _SetMetaLater:
    """Pickles as ``_reconstruct_persistent_obj(<a valid empty meta>)`` followed by BUILD ``{"meta": meta}``: the
    object exists (and is memoised) before its real meta is read, so the meta can refer back to it."""

    def __init__(self, reconstruct: Callable, meta: dict):
        self.reconstruct, self.meta = reconstruct, meta

    def __reduce__(self):
        return self.reconstruct, ({"type": "class", "state": {}},), {"meta": self.meta}


def write_cyclic_g_ema(path: Path) -> Path:
    """An NVIDIA pickle whose G_ema lists itself among its sub-networks (``G_ema.loop is G_ema``)."""
    G = small_generator()
    with fake_nvlabs_modules() as (EasyDict, reconstruct):
        g = _persist(G, reconstruct, "class Generator: pass\n", nvlabs_generator_kwargs(G, EasyDict))
        cyclic = _SetMetaLater(reconstruct, g.meta)
        g.meta["state"]["_modules"]["loop"] = cyclic
        path.write_bytes(pickle.dumps({"G_ema": cyclic}, protocol=3))
    return path
