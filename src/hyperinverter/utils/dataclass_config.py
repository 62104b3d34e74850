"""Config dataclasses from plain data (JSON, YAML): the one place that refuses unknown fields and wrong types.

:func:`dataclass_from_dict` builds a dataclass from a mapping, recursing into fields whose type is a
dataclass, and checks every value against its field's annotation (``bool``, ``int``, ``float``, ``str``,
``dict``, ``list``, ``Optional[...]``; other annotations are left to the dataclass's own checks). Each failure
is one line of the caller's error class naming the source and the field, e.g.
``config.json: unknown field(s) ['hiden_dim'] for HyperInverterConfig; known: ...`` or
``run.steps: expected an integer, got 'ten'``. The model folders (``checkpoints.pretrained.config_from_dict``)
and the training configs (``train.config``) both build their configs through it.

Values come from files, so messages show them only through :func:`~hyperinverter.utils.limits.describe`
(bounded, whatever the value).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Mapping, Type, Union

from .limits import describe, describe_all, exception_text

#: ``Optional[X]`` and ``X | None`` (Python >= 3.10) annotations.
_UNIONS = (Union, getattr(types, "UnionType", Union))


def _at(source: str, path: str) -> str:
    """``"<source>: <field path>"``, either part left out when empty (``"config"`` when both are)."""
    return ": ".join(p for p in (source, path) if p) or "config"


def dataclass_from_dict(cls: Type[Any], values: Any, source: str = "", *, error: Type[Exception] = ValueError,
                        path: str = "") -> Any:
    """An instance of the dataclass ``cls`` from ``values`` (a mapping; None means all defaults).

    Args:
        source: what the values come from (a file name), at the start of every message; may be empty.
        error: the exception class raised, with one line naming the source and the field.
        path: the dotted field path of ``values`` inside an outer config (used by the recursion).

    Raises:
        error: ``values`` is not a mapping, names a field ``cls`` does not have, holds a value of another type
            than its field's annotation, or is refused by ``cls`` itself (its ``__post_init__``).
    """
    if isinstance(values, cls):
        return values
    if values is None:
        values = {}
    where = _at(source, path)
    if not isinstance(values, Mapping):
        raise error(f"{where}: expected a mapping, got {describe(values)}")
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        raise error(f"{where}: unknown field(s) {describe_all(unknown)} for {cls.__name__}; "
                    f"known: {', '.join(sorted(names))}")
    hints = typing.get_type_hints(cls)
    kwargs = {key: _coerce(hints[key], value, source, f"{path}.{key}" if path else key, error)
              for key, value in values.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        if isinstance(e, error):
            raise
        raise error(f"{where}: invalid {cls.__name__}: {exception_text(e)}") from None


def _coerce(hint: Any, value: Any, source: str, path: str, error: Type[Exception]) -> Any:
    """``value`` checked against the annotation ``hint`` (YAML's ``1e-4`` string read as a float)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    where = _at(source, path)
    if dataclasses.is_dataclass(hint):
        return dataclass_from_dict(hint, value, source, error=error, path=path)
    if origin in _UNIONS:  # Optional[X], X | None
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, source, path, error)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise error(f"{where}: expected true/false, got {describe(value)}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise error(f"{where}: expected an integer, got {describe(value)}")
        return value
    if hint is float:
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise error(f"{where}: expected a number, got {describe(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise error(f"{where}: expected a string, got {describe(value)}")
        return value
    if hint in (dict, list) or origin in (dict, list):
        expected = dict if dict in (hint, origin) else list
        if not isinstance(value, expected):
            raise error(f"{where}: expected a {expected.__name__}, got {describe(value)}")
        return value
    return value


__all__ = ["dataclass_from_dict"]
