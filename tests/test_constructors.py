"""Model constructors that say what they take, and ``from_pretrained`` on the meta device (issue 16, item 4).

Every model with a ``config_class`` takes its config's fields as explicit, typed, documented keyword arguments;
nested configs are dataclasses (dicts accepted); ``from_pretrained`` builds the model on ``meta`` and assigns
the file's tensors, so no parameter is ever randomly initialised there, and computes the non-persistent
buffers from the config.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import json
import pkgutil
import pydoc
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from conftest import TINY_D, TINY_G
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import hyperinverter
from hyperinverter import Discriminator, Generator, HyperInverter
from hyperinverter.checkpoints import PretrainedMixin
from hyperinverter.checkpoints import pretrained as pretrained_module
from hyperinverter.checkpoints.meta import meta_device
from hyperinverter.checkpoints.pretrained import build_within_budget, load_state_dict_checked
from hyperinverter.encoders import BackboneConfig, LayerWiseEncoder, WEncoder, WEncoderConfig, tiny_backbone
from hyperinverter.encoders.presets import tiny_encoders
from hyperinverter.errors import DeclaredSizeError
from hyperinverter.utils.limits import allocation_budget
from hyperinverter.evaluation.attributes import KNOWN_RANGES, AttributeRegressor
from hyperinverter.stylegan2 import GeneratorConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")

_E1, _E2 = tiny_encoders(w_dim=TINY_G["w_dim"], num_slots=8)  # TINY_G is 32 px: 8 style inputs
#: Each model class with a small config and an input batch its forward takes (eval mode).
CASES = {
    Generator: (TINY_G, lambda: torch.randn(2, TINY_G["z_dim"], generator=torch.Generator().manual_seed(1))),
    Discriminator: (TINY_D, lambda: _images(16)),
    WEncoder: (dict(backbone=tiny_backbone(), w_dim=16), lambda: _images(32)),
    LayerWiseEncoder: (dict(backbone=tiny_backbone("resnet"), num_slots=10), lambda: _images(64)),
    HyperInverter: (dict(generator=TINY_G, w_encoder=dataclasses.asdict(_E1), layer_encoder=_E2, hidden_dim=4,
                         encoder_input_size=64), lambda: _images(32)),
    AttributeRegressor: (dict(attributes=["smile", "glasses", "yaw"], input_size=16, widths=[4, 8]),
                         lambda: _images(16)),
}


def _images(size: int) -> torch.Tensor:
    return torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(7)) * 2 - 1


def _run(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's main output for ``x`` (no gradients)."""
    with torch.no_grad():
        if isinstance(model, HyperInverter):
            return model.invert(x).image
        if isinstance(model, AttributeRegressor):
            return model.predict(x)  # reads the non-persistent buffers
        return model(x)


def _randomized(model: nn.Module, seed: int) -> nn.Module:
    """``model`` with every floating-point tensor of its state changed (biases, BatchNorm statistics and noise
    strengths start constant: a load that skipped them would otherwise go unnoticed)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point() and not name.endswith("resample_filter"):
                positive = name.endswith("running_var")
                t.copy_(torch.rand(t.shape, generator=gen) + 0.5 if positive else
                        t + 0.1 * torch.randn(t.shape, generator=gen))
    return model.eval()


def _all_pretrained_classes() -> set[type]:
    """Every PretrainedMixin subclass defined in the package (all its modules imported)."""
    for info in pkgutil.walk_packages(hyperinverter.__path__, "hyperinverter."):
        if info.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(info.name)
        except ImportError:  # an optional extra that is not installed (faces, video, ...)
            continue
    found, todo = set(), [PretrainedMixin]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("hyperinverter."):
                found.add(sub)
    return found


# ----------------------------------------------------------------------------------------- signatures
def test_every_model_class_is_covered():
    assert _all_pretrained_classes() == set(CASES)


@pytest.mark.parametrize("cls", list(CASES), ids=lambda c: c.__name__)
def test_constructor_lists_typed_documented_arguments_that_are_the_config_fields(cls):
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]  # without self
    fields = dataclasses.fields(cls.config_class)
    assert [p.name for p in params] == [f.name for f in fields]
    for p in params:
        assert p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD, p
        assert p.annotation is not inspect.Parameter.empty, f"{cls.__name__}({p.name}) has no type"
        assert p.default is not inspect.Parameter.empty, f"{cls.__name__}({p.name}) has no default"
    doc = inspect.getdoc(cls.__init__) or ""
    args = doc[doc.index("Args:"):]
    for p in params:
        assert f"\n    {p.name}: " in args, f"{cls.__name__}.__init__ does not document {p.name}"
    shown = pydoc.render_doc(cls.__init__, renderer=pydoc.plaintext)
    assert all(p.name in shown for p in params)  # what help(cls.__init__) prints


@pytest.mark.parametrize("cls", list(CASES), ids=lambda c: c.__name__)
def test_the_defaults_build_the_default_config(cls):
    with meta_device():  # the defaults are full size (1024 px, IR-SE-50): shapes only
        model = cls()
    assert model.config == cls.config_class()
    small, _ = CASES[cls]
    assert dataclasses.asdict(cls(**small).config) == dataclasses.asdict(cls.config_class(**small))


def test_help_of_hyperinverter_shows_the_arguments():
    text = pydoc.render_doc(HyperInverter, renderer=pydoc.plaintext)
    for name in ("generator", "w_encoder", "layer_encoder", "hidden_dim", "targets", "encoder_input_size",
                 "noise_mode", "refinement_passes"):
        assert f"{name}:" in text


def test_nested_configs_are_dataclasses_and_accept_dicts():
    model_config = HyperInverter.read_config("portraits64")
    assert isinstance(model_config.generator, GeneratorConfig) and model_config.generator.w_dim == 128
    assert isinstance(model_config.w_encoder, WEncoderConfig)
    assert isinstance(model_config.w_encoder.backbone, BackboneConfig)
    assert isinstance(model_config.layer_encoder.backbone, BackboneConfig)
    # the stored form is unchanged: asdict of the typed config is the config.json entry (portraits64's predates
    # refinement_passes and the backbones' in_channels, which then take their defaults)
    stored = json.loads((Path(hyperinverter.__file__).parent / "pretrained" / "portraits64" / "config.json")
                        .read_text())["config"]
    assert "refinement_passes" not in stored and "in_channels" not in stored["layer_encoder"]["backbone"]
    rgb = lambda enc: {**stored[enc], "backbone": {**stored[enc]["backbone"], "in_channels": 3}}  # noqa: E731
    assert dataclasses.asdict(model_config) == {**stored, "refinement_passes": 0, "w_encoder": rgb("w_encoder"),
                                                "layer_encoder": rgb("layer_encoder")}
    as_dicts = HyperInverter.config_class(**stored)
    as_classes = HyperInverter.config_class(
        generator=GeneratorConfig(**stored["generator"]),
        w_encoder=WEncoderConfig(backbone=BackboneConfig(**stored["w_encoder"]["backbone"]), w_dim=128),
        layer_encoder=stored["layer_encoder"], **{k: v for k, v in stored.items()
                                                  if k not in ("generator", "w_encoder", "layer_encoder")})
    assert as_dicts == as_classes == model_config
    with pytest.raises(ValueError, match=r"generator\.z_dimm.*unknown field|unknown field.*z_dimm"):
        HyperInverter.config_class(generator={"z_dimm": 3})


# ----------------------------------------------------------------------------------------- meta builds
@pytest.mark.parametrize("cls", list(CASES), ids=lambda c: c.__name__)
def test_a_meta_build_is_the_real_build_without_memory(cls):
    small, _ = CASES[cls]
    real = cls(**small)
    with meta_device():
        meta = cls(**small)

    def table(model):
        return {n: (tuple(t.shape), t.dtype, t.requires_grad) for n, t in (*model.named_parameters(),
                                                                           *model.named_buffers())}

    assert table(meta) == table(real)
    assert list(meta.state_dict()) == list(real.state_dict())
    assert all(t.is_meta for t in (*meta.parameters(), *meta.buffers()))


@pytest.mark.parametrize("make, expected", [
    (lambda: torch.randn(2, 3), ((2, 3), torch.float32)),
    (lambda: torch.rand([4], dtype=torch.float64), ((4,), torch.float64)),
    (lambda: torch.randn(2, 3) / 2.0, ((2, 3), torch.float32)),
    (lambda: 0.5 * torch.randn(1, 3), ((1, 3), torch.float32)),
    (lambda: torch.zeros(4, 1) - torch.ones(3), ((4, 3), torch.float32)),
    (lambda: torch.outer(torch.ones(3), torch.ones(2)), ((3, 2), torch.float32)),
    (lambda: torch.arange(4) / 2, ((4,), torch.float32)),  # integer true division: left to torch
    (lambda: torch.empty(5).normal_(), ((5,), torch.float32)),
    (lambda: nn.init.kaiming_uniform_(tensor=torch.empty(3, 4), a=1.0), ((3, 4), torch.float32)),
    (lambda: torch.ones(3, requires_grad=True).requires_grad_(False), ((3,), torch.float32)),
])
def test_meta_device_shortcuts_give_the_shapes_dtypes_and_grad_flags_torch_gives(make, expected):
    cpu = make()
    assert (tuple(cpu.shape), cpu.dtype) == expected
    with meta_device():
        out = make()
    assert out.is_meta and (tuple(out.shape), out.dtype) == expected
    assert out.requires_grad == cpu.requires_grad and (out.grad_fn is None) == (cpu.grad_fn is None)


def test_building_on_meta_imports_neither_dynamo_nor_sympy():
    """torch's Python meta kernels import torch._dynamo and sympy (seconds) the first time: meta_device avoids
    them for every model here, so loading the shipped model stays under a second."""
    code = (
        "import sys, dataclasses\n"
        "from hyperinverter import HyperInverter\n"
        "from hyperinverter.checkpoints.meta import meta_device\n"
        "before = {m for m in ('torch._dynamo', 'sympy') if m in sys.modules}\n"
        "config = dataclasses.asdict(HyperInverter.read_config('portraits64'))\n"
        "with meta_device():\n"
        "    model = HyperInverter(**config)\n"
        "assert all(p.is_meta for p in model.parameters())\n"
        "model = HyperInverter.from_pretrained('portraits64')\n"
        "print(sorted({m for m in ('torch._dynamo', 'sympy') if m in sys.modules} - before))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={"OMP_NUM_THREADS": "1", "PATH": "", "PYTHONPATH": str(Path(hyperinverter.__file__)
                                                                                     .parents[1])})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_budget_refuses_a_meta_build_where_it_refuses_a_real_one():
    config = dict(generator=dict(z_dim=64, w_dim=64, img_resolution=64, channel_base=4096, channel_max=128),
                  w_encoder=dict(backbone=dataclasses.asdict(tiny_backbone()), w_dim=64),
                  layer_encoder=dict(backbone=dataclasses.asdict(tiny_backbone()), num_slots=10),
                  hidden_dim=8, encoder_input_size=64)
    stored = sum(t.numel() for t in HyperInverter(**config).state_dict().values())
    used = {}
    for name, place in (("real", contextlib.nullcontext), ("meta", meta_device)):
        with allocation_budget(10 * stored, "m") as budget, place():
            HyperInverter(**config)
        used[name] = budget.used
        with pytest.raises(DeclaredSizeError, match="m needs more than"):
            with allocation_budget(stored // 2, "m"), place():
                HyperInverter(**config)
    # what the factories ask for is charged on meta too (the real build also pays for its temporaries)
    assert stored <= used["meta"] <= used["real"] <= 2 * stored
    model = build_within_budget(HyperInverter, config, stored, "c", device="meta")
    assert all(t.is_meta for t in model.parameters())


# ---------------------------------------------------------------------------------------- from_pretrained
class _RealTensorLog(TorchDispatchMode):
    """Every aten op with a result off the meta device, in order, with ``"LOAD"`` where the weights are read."""

    def __init__(self):
        super().__init__()
        self.events: list = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        results = out if isinstance(out, (tuple, list)) else (out,)
        for t in results:
            if isinstance(t, torch.Tensor) and not t.is_meta:
                self.events.append((str(func.overloadpacket.__name__), t.numel()))
        return out


RANDOM_OPS = ("normal", "uniform", "rand", "bernoulli", "random", "exponential", "cauchy", "geometric")


@pytest.mark.parametrize("cls", list(CASES), ids=lambda c: c.__name__)
def test_from_pretrained_never_initialises_a_parameter_and_reproduces_the_model(cls, tmp_path, monkeypatch):
    small, make_input = CASES[cls]
    torch.manual_seed(3)
    model = _randomized(cls(**small), seed=4)
    model.save_pretrained(tmp_path / "m")

    log = _RealTensorLog()
    real_load_file = pretrained_module.load_file

    def logged_load_file(*args, **kwargs):
        log.events.append(("LOAD", 0))
        return real_load_file(*args, **kwargs)

    monkeypatch.setattr(pretrained_module, "load_file", logged_load_file)
    with log:
        loaded = cls.from_pretrained(tmp_path / "m")
    names = [name for name, _ in log.events]
    assert "LOAD" in names
    before_load = log.events[:names.index("LOAD")]
    assert sum(n for _, n in before_load) < 64, before_load  # nothing of the model's size is made before the load
    assert not [name for name in names if name.startswith(RANDOM_OPS)], names  # nor randomly initialised, ever

    # the same model: every parameter and buffer (non-persistent ones included), flags and outputs
    assert loaded.config == model.config and not loaded.training
    own, back = dict((*model.named_parameters(), *model.named_buffers())), \
        dict((*loaded.named_parameters(), *loaded.named_buffers()))
    assert own.keys() == back.keys()
    for name, t in own.items():
        assert not back[name].is_meta and back[name].dtype == t.dtype and torch.equal(back[name], t), name
        assert back[name].requires_grad == t.requires_grad, name
    x = make_input()
    # outputs to float rounding, not bit for bit: the file's tensors are views at offsets that are not 64-byte
    # aligned, and on some CPUs (seen on an AMD EPYC) the vectorised reductions then sum in another order (1 ulp)
    torch.testing.assert_close(_run(loaded, x), _run(model, x), rtol=1e-5, atol=1e-6)


def test_the_shipped_model_loads_exactly_as_a_copy_into_a_built_model():
    from safetensors.torch import load_file

    from hyperinverter.pretrained import resolve

    loaded = HyperInverter.from_pretrained("portraits64")
    torch.manual_seed(0)
    built = HyperInverter(**dataclasses.asdict(HyperInverter.read_config("portraits64"))).eval()
    built.load_state_dict(load_file(str(resolve("portraits64") / "model.safetensors")))
    x = _images(64)
    a, b = loaded.invert(x), built.invert(x)
    assert torch.equal(a.image, b.image) and torch.equal(a.image_w, b.image_w) and torch.equal(a.w, b.w)


def test_non_persistent_buffers_are_computed_cast_and_never_left_on_meta(tmp_path):
    small, make_input = CASES[AttributeRegressor]
    model = _randomized(AttributeRegressor(**small), seed=5)
    assert set(model.state_dict()).isdisjoint({"low", "span", "binary"})  # not in the file
    model.save_pretrained(tmp_path / "r")
    loaded = AttributeRegressor.from_pretrained(tmp_path / "r", dtype=torch.float64)
    assert loaded.low.dtype == loaded.span.dtype == torch.float64 and loaded.binary.dtype == torch.bool
    assert torch.equal(loaded.low, model.low.double()) and torch.equal(loaded.span, model.span.double())
    assert loaded.binary.tolist() == [False, True, False]  # smile, glasses, yaw
    ranges = [KNOWN_RANGES[a] for a in small["attributes"]]
    assert loaded.low.tolist() == [lo for lo, _ in ranges] and loaded.span.tolist() == [hi - lo for lo, hi in ranges]
    x = make_input()
    assert torch.allclose(_run(loaded, x.double()).float(), _run(model, x), atol=1e-5)


@dataclass
class _ForgetfulConfig:
    width: int = 3


class _Forgetful(PretrainedMixin, nn.Module):
    """Registers a non-persistent buffer and does not say how to compute it: loading it must fail loudly."""

    config_class = _ForgetfulConfig

    def __init__(self, width: int = 3):
        super().__init__()
        self.config = _ForgetfulConfig(width)
        self.linear = nn.Linear(width, width)
        self.register_buffer("scale", torch.ones(width), persistent=False)


def test_a_non_persistent_buffer_nobody_computes_is_an_error_not_a_meta_tensor(tmp_path):
    _Forgetful().save_pretrained(tmp_path / "f")
    with pytest.raises(RuntimeError, match=r"_Forgetful: 1 tensors were neither loaded nor computed.*'scale'"):
        _Forgetful.from_pretrained(tmp_path / "f")


def test_assigning_refuses_a_model_with_shared_parameters():
    tied = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    tied[1].weight = tied[0].weight  # assigning the file's two tensors would untie them
    state = {k: v.clone() for k, v in tied.state_dict().items()}
    load_state_dict_checked(tied, state, "f")  # copying keeps the tie
    assert tied[1].weight is tied[0].weight
    with pytest.raises(RuntimeError, match="shares parameters between names"):
        load_state_dict_checked(tied, state, "f", assign=True)
