"""The offline demo domain put to work: directions fitted on labelled portraits, and ``hyperinverter demo``."""

from __future__ import annotations

from ..lazy import lazy_exports

#: public name -> module that defines it (imported on first use: see hyperinverter.lazy)
_EXPORTS = {
    **dict.fromkeys((
        'DEMO_ATTRIBUTES', 'DERIVED_ATTRIBUTES', 'LabelledCodes', 'attribute_values', 'encode_portraits',
        'fit_portrait_directions'
    ), '.directions'),
    **dict.fromkeys(('DemoOptions', 'DemoReport', 'labelled_grid', 'run_demo'), '.run'),
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
