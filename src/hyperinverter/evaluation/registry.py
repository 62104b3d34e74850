"""Methods by name, and ``method.field=value`` overrides of their configs."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Iterable, Mapping, Optional

import torch

from ..inverter import HyperInverter
from .base import InversionMethod
from .encoders import HyperInverterMethod, HyperInverterRefineMethod, WEncoderMethod
from .names import METHOD_NAMES, STEP_KEYS
from .optimization import WOptimization, WPlusOptimization
from .pti import PTIMethod

#: name -> class, in the report's row order (the names are :data:`.names.METHOD_NAMES`).
METHODS: dict[str, type[InversionMethod]] = {
    cls.name: cls for cls in (WEncoderMethod, HyperInverterMethod, HyperInverterRefineMethod, WOptimization,
                              WPlusOptimization, PTIMethod)
}


def parse_method_names(text: str) -> list[str]:
    """``"w_encoder,pti"`` -> ``["w_encoder", "pti"]`` (checked, duplicates dropped, order kept)."""
    names = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if part not in METHODS:
            raise ValueError(f"unknown method {part!r}; choose from {', '.join(METHOD_NAMES)}")
        if part not in names:
            names.append(part)
    if not names:
        raise ValueError(f"no method given; choose from {', '.join(METHOD_NAMES)}")
    return names


def _coerce(value: str, annotation: Any, where: str) -> Any:
    """A command-line string as the type of a config field."""
    if isinstance(annotation, str):
        annotation = {"int": int, "float": float, "str": str, "bool": bool,
                      "Optional[int]": Optional[int]}.get(annotation, str)
    args = typing.get_args(annotation)
    if type(None) in args:
        if value.lower() in ("none", "null", ""):
            return None
        annotation = next(a for a in args if a is not type(None))
    try:
        if annotation is bool:
            if value.lower() in ("1", "true", "yes", "on"):
                return True
            if value.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if annotation is int:
            return int(value)
        if annotation is float:
            return float(value)
    except ValueError:
        raise ValueError(f"{where}: {value!r} is not a valid {getattr(annotation, '__name__', annotation)}") from None
    return value


def parse_overrides(items: Iterable[str], steps: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
    """Config overrides per method from ``METHOD.FIELD=VALUE`` items and ``--steps NAME=N`` items.

    ``steps`` items use the keys of :data:`STEP_KEYS` (``w_opt=200``, ``pti=100``, ``pti.pivot=300``);
    several may be joined with commas.
    """
    out: dict[str, dict[str, Any]] = {}
    for text in steps:
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            name, _, value = item.partition("=")
            if name.strip() not in STEP_KEYS or not value.strip():
                raise ValueError(f"--steps {item!r}: expected NAME=N with NAME one of {', '.join(STEP_KEYS)}")
            method, field_name = STEP_KEYS[name.strip()]
            _add_override(out, f"{method}.{field_name}={value}", f"--steps {item!r}")
    for item in items:
        _add_override(out, item, f"--set {item!r}")
    return out


def _add_override(out: dict, item: str, where: str) -> None:
    if "=" not in item or "." not in item.split("=", 1)[0]:
        raise ValueError(f"{where}: expected METHOD.FIELD=VALUE, e.g. pti.lr=0.001")
    key, value = item.split("=", 1)
    method, field_name = (s.strip() for s in key.split(".", 1))
    if method not in METHODS:
        raise ValueError(f"{where}: unknown method {method!r}; choose from {', '.join(METHOD_NAMES)}")
    fields = {f.name: f for f in dataclasses.fields(METHODS[method].config_class)}
    if field_name not in fields:
        raise ValueError(f"{where}: {method} has no setting {field_name!r}; settings: {', '.join(fields)}")
    out.setdefault(method, {})[field_name] = _coerce(value.strip(), fields[field_name].type, where)


def build_method(name: str, model: HyperInverter, overrides: Optional[Mapping[str, Any]] = None,
                 lpips: Optional[torch.nn.Module] = None, progress: bool = False) -> InversionMethod:
    """The method ``name`` around ``model``, its config built from defaults plus ``overrides``."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHOD_NAMES)}")
    cls = METHODS[name]
    config = cls.config_class(**dict(overrides or {}))
    return cls(model, config, lpips=lpips, progress=progress)
