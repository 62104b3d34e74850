"""Small files that declare huge things get one clear line, in bounded time and memory (issue 15, item 5).

The files are a few kilobytes each and are written by ``helpers_untrusted``. The ones that used to allocate
gigabytes or spin for minutes are run through ``hyperinverter info`` in ONE child process under
``RLIMIT_AS`` (address space) and ``RLIMIT_CPU``, so a regression fails here instead of eating the machine:
past the limits, the child gets ``MemoryError``/allocation failures (a different message: the test fails)
or is killed (its later cases are missing: those tests fail).
"""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import resource
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers_untrusted import (SMALL_G, config_cases, pickle_cases, repr_bomb, small_generator, tiny_inverter_folder,
                               torch_file_cases, write_cyclic_g_ema, write_nvlabs)

from hyperinverter import CheckpointError, DeclaredSizeError, Generator, UnsafePickleError, load_generator
from hyperinverter.cli import main
from hyperinverter.utils.limits import (CONFIG_LIMITS, MAX_PICKLE_EXPANSION, allocation_budget,
                                        check_config_limits, check_pickle_expansion, check_tensor_layout, describe,
                                        exception_text)
from hyperinverter.utils.safe_load import weights_only_load

#: Address space of the child that reads the hostile files (it needs ~0.7 GiB to import torch and run).
LIMIT_AS = 3 << 30
#: CPU seconds for all cases together (each takes well under a second).
LIMIT_CPU = 240
#: Peak resident memory the child may reach over all cases (it stays near 0.35 GB).
MAX_RSS_MB = 1024

_CHILD = r"""
import contextlib, io, json, resource, sys, time
from hyperinverter.cli import main
cases = json.loads(sys.argv[1])

def peak_mb():
    # VmHWM belongs to this process's own address space; ru_maxrss survives exec and would report the peak
    # of the pytest process that started this one
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:")) // 1024

with open(sys.argv[2], "w") as out:
    for name, path in cases.items():
        err, std = io.StringIO(), io.StringIO()
        t = time.perf_counter()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(std):
            rc = main(["info", path])
        out.write(json.dumps(dict(case=name, rc=rc, stderr=err.getvalue(), stdout=std.getvalue()[:2000],
                                  seconds=time.perf_counter() - t,
                                  maxrss_mb=peak_mb())) + "\n")
        out.flush()
"""


def _limit_child() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_AS, LIMIT_AS))
    resource.setrlimit(resource.RLIMIT_CPU, (LIMIT_CPU, LIMIT_CPU))


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    return {**pickle_cases(root / "pkl"), **torch_file_cases(root / "pt"), **config_cases(root / "cfg")}


@pytest.fixture(scope="module")
def limited(hostile, tmp_path_factory) -> dict[str, dict]:
    """``hyperinverter info FILE`` for every hostile file, in one child under RLIMIT_AS / RLIMIT_CPU."""
    out = tmp_path_factory.mktemp("limited") / "results.jsonl"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    try:
        proc = subprocess.run([sys.executable, "-c", _CHILD, json.dumps({k: str(v) for k, v in hostile.items()}),
                               str(out)], preexec_fn=_limit_child, capture_output=True, text=True, timeout=600,
                              env=env)
        died = "" if proc.returncode == 0 else f"child exited {proc.returncode}: {proc.stderr[-2000:]}"
    except subprocess.TimeoutExpired:
        died = "child timed out"
    results = {}
    if out.exists():
        for line in out.read_text().splitlines():
            r = json.loads(line)
            results[r["case"]] = r
    results["__died__"] = died
    return results


#: case -> what its one line must say.
EXPECTED = {
    "noise_stride0_2^14": r"16384x16384 declares 268,435,456 elements but the file stores 1 for it",
    "noise_blob_2^14": r"storage blob in the pickle: its storages declare 1,073,741,832 bytes but the file holds 12",
    "noise_blob_2^16": r"storages declare 17,179,869,192 bytes but the file holds 12",
    "noise_blob_2^20": r"storages declare 4,398,046,511,112 bytes but the file holds 12",
    "noise_view_out_of_storage": r"16384x16384 reaches element 268,435,456 of a storage that holds 1",
    "resolution_2^14": r"\[G_ema\]: img_resolution = 16384 is above the limit of 4,096",
    "resolution_2^16": r"\[G_ema\]: img_resolution = 65536 is above the limit of 4,096",
    "bomb_class_name": r"nest shared references into more than [\d,]+ elements",
    "bomb_c_dim": r"nest shared references into more than [\d,]+ elements",
    "bomb_architecture": r"nest shared references into more than [\d,]+ elements",
    "bomb_z_dim": r"nest shared references into more than [\d,]+ elements",
    "bomb_set": r"nest shared references into more than [\d,]+ elements",
    "bomb_dict_key": r"nest shared references into more than [\d,]+ elements",
    "bomb_tensor_type": r"nest shared references into more than [\d,]+ elements",
    "bomb_codecs": r"nest shared references into more than [\d,]+ elements",
    "bomb_numpy_dtype": r"nest shared references into more than [\d,]+ elements",
    "bomb_persistent_id": r"nest shared references into more than [\d,]+ elements",
    "torch_Tensor_call": r"calls torch\.Tensor directly",
    "numpy_ndarray_call": r"calls numpy\.ndarray directly",
    "numpy_reconstruct_shape": r"numpy _reconstruct .* only ever pass an empty placeholder",
    "numpy_object_array_shape": r"declares shape \[1048576, 1048576\] \(1,099,511,627,776 elements\) but holds 1",
    "stride0_z_dim": r"\[mapping\.fc0\.weight\]: a tensor of shape 4x2147483648 declares 8,589,934,592 elements "
                     r"but the file stores 1",
    "zip_storage_2^30": r"storage 0 declares 4,294,967,296 bytes but its record holds 4",
    "legacy_storage_2^32": r"storages declare 17,179,869,192 bytes but the file holds 12",
    "inverter_num_slots_10^6": r"config\.json: layer_encoder\.num_slots = 1000000 is above the limit of 64",
    "inverter_hidden_dim_10^7": r"config\.json: hidden_dim = 10000000 is above the limit of 1,024",
    "inverter_z_dim_2^31": r"config\.json: generator\.z_dim = 2147483648 is above the limit of 4,096",
    "inverter_widths_4096": r"config\.json: a HyperInverter of this configuration \(model\.safetensors holds "
                            r"[\d,]+ elements\) needs more than [\d,]+ tensor elements",
    "inverter_hidden_dim_1024": r"model\.safetensors: tensors do not match HyperInverter",
    "generator_z_dim_2^31": r"config\.json: z_dim = 2147483648 is above the limit of 4,096",
}


def test_every_hostile_file_has_an_expectation(hostile):
    assert sorted(hostile) == sorted(EXPECTED)
    assert max(p.stat().st_size for p in hostile.values() if p.is_file()) < 200_000  # small files, huge claims


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_hostile_file_is_one_line_in_bounded_time_and_memory(case, hostile, limited):
    import re

    result = limited.get(case)
    assert result is not None, f"the limited child never finished this case ({limited['__died__']})"
    lines = result["stderr"].strip().splitlines()
    assert len(lines) == 1, result["stderr"][:2000]
    line = lines[0]
    assert result["rc"] == 2, line  # a HyperInverterError: not "out of memory", not an unexpected exception
    assert line.startswith("error: ") and str(hostile[case]) in line
    assert re.search(EXPECTED[case], line), line
    assert "Traceback" not in line and "MemoryError" not in line and "allocate memory" not in line
    assert len(line) < 700
    assert result["seconds"] < 20, result["seconds"]
    assert result["maxrss_mb"] < MAX_RSS_MB, result["maxrss_mb"]


# ------------------------------------------------------------------------------ messages and cycles
def test_cyclic_g_ema_is_one_line_not_a_recursion_error(tmp_path):
    path = write_cyclic_g_ema(tmp_path / "cyclic.pkl")
    with pytest.raises(CheckpointError, match=r"cyclic\.pkl\[G_ema\]: module 'loop' contains a network it is part "
                                              r"of \(a cycle\)"):
        load_generator(path)


@pytest.mark.parametrize("where", ["class_name", "c_dim", "architecture", "z_dim", "network_key"])
def test_messages_never_repr_a_value_from_the_file(tmp_path, where):
    """A shared list under the expansion limit (125,000 elements) used to be quoted whole in the message."""
    wide = repr_bomb(depth=3, width=50)
    assert len(repr(wide)) > 400_000

    def edit(data, g, E):
        kwargs = g.meta["state"]["_init_kwargs"]
        if where == "class_name":
            g.meta["class_name"] = wide
        elif where == "c_dim":
            kwargs["c_dim"] = wide
        elif where == "architecture":
            kwargs["synthesis_kwargs"]["architecture"] = wide
        elif where == "z_dim":
            kwargs["z_dim"] = wide
        else:
            data["x" * 5000] = data.pop("G_ema")

    path = write_nvlabs(tmp_path / f"{where}.pkl", edit)
    with pytest.raises(CheckpointError) as err:
        load_generator(path)
    text = str(err.value)
    assert str(path) in text and "\n" not in text and len(text) < 600, text
    assert "a list of 50 items" in text or "characters" in text


def test_describe_and_exception_text_are_bounded_whatever_the_value():
    bomb, tuple_bomb = repr_bomb(), repr_bomb(kind=tuple)  # 50^8 elements: repr or hash would never end
    t = time.perf_counter()
    assert describe(bomb) == "a list of 50 items" and describe(tuple_bomb) == "a tuple of 50 items"
    assert describe("x" * 10**6).endswith("... (1000000 characters)") and len(describe("x" * 10**6)) < 100
    assert describe(2**4000) == "an integer of 4001 bits" and describe(7) == "7" and describe(None) == "None"
    text = exception_text(KeyError(tuple_bomb))  # KeyError's str() is the repr of its argument
    assert text == "a tuple of 50 items"
    assert len(exception_text(RuntimeError("y" * 10**6))) <= 303
    assert time.perf_counter() - t < 1


# ------------------------------------------------------------------------------------- pickle scan
def test_pickle_expansion_refuses_bombs_and_passes_real_networks(tmp_path):
    for kind in (list, tuple):
        data = pickle.dumps(repr_bomb(kind=kind), protocol=3)
        assert len(data) < 900
        with pytest.raises(DeclaredSizeError, match="nest shared references"):
            check_pickle_expansion(data, "bomb")
    # a real generator's pickle: expansion close to its object count, far below the limit
    G = Generator(z_dim=64, w_dim=64, img_resolution=64, channel_base=1024, channel_max=64)
    path = write_nvlabs(tmp_path / "g64.pkl", G=G)
    scan = check_pickle_expansion(path.read_bytes(), str(path))
    assert scan.objects < scan.expansion < 3 * scan.objects < MAX_PICKLE_EXPANSION
    # cycles are counted once, not followed forever
    loop: list = []
    loop.append(loop)
    assert check_pickle_expansion(pickle.dumps(loop), "loop").expansion <= 3


def test_a_bomb_built_and_dropped_while_unpickling_is_refused():
    """``{bomb: 1}`` then POP: the dict is dropped, but unpickling it would already hash the key for ever."""
    body = pickle.dumps(repr_bomb(kind=tuple), protocol=2)
    data = b"\x80\x02}" + body[2:-1] + b"K\x01s0K\x05."  # EMPTY_DICT, key, 1, SETITEM, POP, 5, STOP
    with pytest.raises(DeclaredSizeError, match="dropped: the pickle's .* nest shared references"):
        check_pickle_expansion(data, "dropped")


@pytest.mark.parametrize("glob", [b"torch._utils\n_rebuild_tensor_v2\n", b"dnnlib.util\nEasyDict\n",
                                  b"torch\nTensor\n", b"numpy\ndtype\n"])
def test_a_pickle_cannot_change_the_unpicklers_globals(glob):
    """BUILD on a global (its state ``(None, {"__defaults__": (1,)})``) would set attributes for every later load."""
    import struct

    from hyperinverter.stylegan2.formats.safe_pickle import restricted_load

    before = torch._utils._rebuild_tensor_v2.__defaults__
    name = b"__defaults__"
    data = b"\x80\x02c" + glob + b"N}X" + struct.pack("<I", len(name)) + name + b"K\x01\x85s\x86b."
    with pytest.raises(UnsafePickleError, match="the pickle sets the (state|attribute)"):
        restricted_load(io.BytesIO(data))
    assert torch._utils._rebuild_tensor_v2.__defaults__ == before


def test_real_numpy_values_in_a_pickle_still_load(tmp_path):
    """numpy scalars and arrays (plain and object) rebuild through the checked placeholder."""
    def edit(data, g, E):
        data["arrays"] = E(a=np.arange(6, dtype=np.float32).reshape(2, 3), o=np.array([1, "x"], dtype=object),
                           s=np.float64(0.5), i=np.int64(3))

    path = write_nvlabs(tmp_path / "numpy.pkl", edit)
    from hyperinverter.stylegan2.formats import read_model_file

    arrays = read_model_file(path)["arrays"]
    assert np.array_equal(arrays["a"], np.arange(6).reshape(2, 3)) and arrays["a"].dtype == np.float32
    assert list(arrays["o"]) == [1, "x"] and arrays["s"] == 0.5 and arrays["i"] == 3
    assert load_generator(path).z_dim == SMALL_G["z_dim"]


def test_tensor_layout_check():
    check_tensor_layout((4, 4), (4, 1), 0, 16, "t")  # a plain tensor
    check_tensor_layout((3, 8), (0, 1), 0, 8, "t")  # a small stride-0 view is fine
    check_tensor_layout((0, 2**40), (1, 1), 0, 0, "t")  # empty
    with pytest.raises(DeclaredSizeError, match="reaches element 17"):
        check_tensor_layout((4, 4), (4, 1), 1, 16, "t")
    with pytest.raises(DeclaredSizeError, match="declares 1,099,511,627,776 elements but the file stores 1"):
        check_tensor_layout((2**20, 2**20), (0, 0), 0, 1, "t")
    with pytest.raises(DeclaredSizeError, match="malformed"):
        check_tensor_layout((4, -1), (1, 1), 0, 16, "t")
    with pytest.raises(DeclaredSizeError, match="malformed"):
        check_tensor_layout(repr_bomb(), (1,), 0, 16, "t")


# ------------------------------------------------------------------------------------ torch files
def test_legitimate_torch_files_still_load(tmp_path):
    state = {"w": torch.arange(12.0).reshape(3, 4), "v": torch.arange(12.0).reshape(3, 4)[:, 1]}
    torch.save(state, tmp_path / "zip.pt")
    torch.save(state, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    src = zipfile.ZipFile(tmp_path / "zip.pt")
    with zipfile.ZipFile(tmp_path / "deflated.pt", "w", compression=zipfile.ZIP_DEFLATED) as out:
        for name in src.namelist():
            out.writestr(name, src.read(name))
    for name in ("zip.pt", "legacy.pt", "deflated.pt"):
        loaded = weights_only_load(tmp_path / name)
        assert torch.equal(loaded["w"], state["w"]) and torch.equal(loaded["v"], state["v"]), name


def test_a_deflate_bomb_is_refused_before_reading(tmp_path):
    path = tmp_path / "bomb.pt"
    buf = io.BytesIO()
    torch.save({"w": torch.zeros(1)}, buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for name in src.namelist():
            out.writestr(name, src.read(name))
        with out.open("archive/data/zeros", "w", force_zip64=True) as record:  # 80 MB of zeros, ~80 KB stored
            for _ in range(80):
                record.write(bytes(1 << 20))
    assert path.stat().st_size < 1 << 20
    with pytest.raises(DeclaredSizeError, match=r"unpack to [\d,]+ bytes from a [\d,]+-byte file"):
        weights_only_load(path)


# ----------------------------------------------------------------------------------- config limits
def test_config_limits_pass_the_released_models_and_refuse_beyond():
    import dataclasses

    from hyperinverter import HyperInverterConfig, config_f
    from hyperinverter.encoders.presets import official_church_encoders, official_face_encoders

    for (e1, e2), res in ((official_face_encoders(), 1024), (official_church_encoders(), 256)):
        config = HyperInverterConfig(generator=dataclasses.asdict(config_f(res)), w_encoder=dataclasses.asdict(e1),
                                     layer_encoder=dataclasses.asdict(e2), hidden_dim=256)
        check_config_limits(dataclasses.asdict(config), "official")
    for name, limit in CONFIG_LIMITS.items():
        check_config_limits({name: limit}, "c")
        with pytest.raises(DeclaredSizeError, match=rf"c: {name} = {limit + 1} is above the limit"):
            check_config_limits({name: limit + 1}, "c")
    bad = [({"hidden_dim": True}, "must be an integer, got True"),
           ({"z_dim": "x" * 10**6}, r"must be an integer, got 'x+'\.\.\. \(1000000 characters\)"),
           ({"backbone": {"widths": [64] * 9}}, r"backbone\.widths has 9 entries, above the limit of 8"),
           ({"backbone": {"blocks": [3, 4, 65, 3]}}, r"backbone\.blocks entry 65 is above the limit of 64"),
           ({"resample_filter": [1, float("inf")]}, "entries must be finite numbers"),
           ({"targets": "y" * 300}, "targets is a str of 300 entries"),
           ({"generator": {"z_dim": repr_bomb()}}, "generator.z_dim must be an integer, got a list of 50 items")]
    for values, message in bad:
        with pytest.raises(DeclaredSizeError, match=message):
            check_config_limits(values, "c")


def test_allocation_budget_refuses_before_allocating():
    with pytest.raises(DeclaredSizeError, match=r"m needs more than 1,000 tensor elements"):
        with allocation_budget(1000, "m"):
            torch.empty(2**40)  # 4 TiB: refused before the allocator is asked
    with allocation_budget(1000, "m") as budget:
        x = torch.zeros(10, 10)
        x.view(100).add_(1)  # views and in-place ops are free
        y = x * 2  # a new storage: counted after it is made
    assert budget.used == 200 and y.sum() == 200
    # our models need less than twice their stored elements to build
    config = dict(z_dim=64, w_dim=64, img_resolution=64, channel_base=4096, channel_max=128)
    stored = sum(t.numel() for t in Generator(**config).state_dict().values())
    with allocation_budget(2 * stored, "G"):
        Generator(**config)
    with pytest.raises(DeclaredSizeError):
        with allocation_budget(stored // 2, "G"):
            Generator(**config)


# --------------------------------------------------------------------------------------- config.json
def _info_line(path: Path, capsys) -> str:
    assert main(["info", str(path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_oversized_and_deep_config_json_are_one_line_naming_the_file(tmp_path, capsys):
    folder = tiny_inverter_folder(tmp_path / "m")
    config = folder / "config.json"
    config.write_text(" " * (2 << 20) + "{}")
    assert f"{config}: 2,097,154 bytes; a config file is at most 1,048,576" in _info_line(folder, capsys)
    config.write_text("[" * 100_000 + "]" * 100_000)
    assert f"{config}: not a config file (JSON nested too deeply)" in _info_line(folder, capsys)
    config.write_text('{"class": "HyperInverter", "config": {"hidden_dim": ' + "9" * 5000 + "}}")
    assert f"{config}: not valid JSON" in _info_line(folder, capsys)


def test_tiny_folder_still_loads_within_its_budget(tmp_path):
    from hyperinverter import HyperInverter

    folder = tiny_inverter_folder(tmp_path / "m")
    model = HyperInverter.from_pretrained(folder)
    assert model.config.hidden_dim == 4 and math.isfinite(float(model.generator.w_avg.sum()))
    assert load_generator(small_generator().save_pretrained(tmp_path / "g")).z_dim == SMALL_G["z_dim"]

