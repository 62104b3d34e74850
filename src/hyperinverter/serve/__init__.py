"""``hyperinverter serve``: a local web page to invert, edit and interpolate images with a HyperInverter.

* :mod:`.session` - the work (upload preparation, inversion, edits from cached codes, interpolation,
  downloads, latency), testable without Gradio;
* :mod:`.images` - upload checks, face alignment (optional) or centre crop;
* :mod:`.directions` - edit directions found in folders;
* :mod:`.app` - the Gradio page (``pip install 'hyperinverter[serve]'``);
* :mod:`.cli` - the ``serve`` command.

Importing this package imports neither Gradio, the face tools nor torch (names load on first use).
"""

from __future__ import annotations

from ..lazy import lazy_exports

#: public name -> module that defines it (imported on first use: see hyperinverter.lazy)
_EXPORTS = {
    **dict.fromkeys(("ImageLimits", "PreparedImage", "UploadError"), ".images"),
    **dict.fromkeys(("EditOutcome", "Interpolation", "Reconstruction", "ServeSession", "save_codes"), ".session"),
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
