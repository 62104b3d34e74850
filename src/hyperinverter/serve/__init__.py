"""``hyperinverter serve``: a local web page to invert, edit and interpolate images with a HyperInverter.

* :mod:`.session` - the work (upload preparation, inversion, edits from cached codes, interpolation,
  downloads, latency), testable without Gradio;
* :mod:`.images` - upload checks, face alignment (optional) or centre crop;
* :mod:`.directions` - edit directions found in folders;
* :mod:`.app` - the Gradio page (``pip install 'hyperinverter[serve]'``);
* :mod:`.cli` - the ``serve`` command.

Importing this package imports neither Gradio nor the face tools.
"""

from .images import ImageLimits, PreparedImage, UploadError
from .session import EditOutcome, Interpolation, Reconstruction, ServeSession, save_codes

__all__ = ["EditOutcome", "ImageLimits", "Interpolation", "PreparedImage", "Reconstruction", "ServeSession",
           "UploadError", "save_codes"]
