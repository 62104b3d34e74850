"""Latent edit directions: files (InterFaceGAN, GANSpace, our safetensors + JSON) and how to find them
(InterFaceGAN boundaries, GANSpace PCA of W, SeFa closed-form factorisation), and how to refine one on
inversions (gradient steps through the generator with the residuals kept).

Names are imported on first use (PEP 562): ``editing.strength`` (the command line's help text) stays
torch-free."""

from __future__ import annotations

from ..lazy import lazy_exports

_EXPORTS = {
    **{name: ".directions" for name in (
        "DIRECTION_FILE_SUFFIXES", "Direction", "DirectionError", "GanSpacePCA", "KINDS", "ganspace_edit",
        "load_direction_file", "load_ganspace", "save_direction", "save_ganspace")},
    **{name: ".fit" for name in (
        "SefaDirections", "compute_ganspace", "fit_interfacegan", "sefa_directions", "sefa_matrix")},
    **{name: ".labels" for name in ("labelled_codes", "read_labels")},
    **{name: ".refine" for name in ("DirectionRefineConfig", "default_strength", "edit_change", "refine_direction")},
    "STRENGTH_HELP": ".strength",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
