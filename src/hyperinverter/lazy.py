"""Packages whose public names are imported on first use (PEP 562).

``hyperinverter --help`` builds a parser with every sub-command; if each package imported its modules (and
so torch) on import, the help would take seconds. A package lists ``{name: ".module"}`` and gets its
``__getattr__`` / ``__dir__`` from :func:`lazy_exports`. Our own dozen lines rather than a dependency such as
``lazy_loader``: only this mapping is needed, and the names stay visible to readers of each ``__init__``.
"""

from __future__ import annotations

import importlib
from typing import Callable, Mapping


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], object], Callable[[], list]]:
    """``(__getattr__, __dir__)`` for ``package`` (its ``__name__``) exporting ``{name: relative module}``."""
    exports = dict(exports)

    def __getattr__(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(importlib.import_module(package), name, value)  # later lookups skip this function
        return value

    def __dir__() -> list:
        return sorted(exports)

    return __getattr__, __dir__
