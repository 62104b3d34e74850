"""Latent edit directions: files (InterFaceGAN, GANSpace, our safetensors + JSON) and how to find them
(InterFaceGAN boundaries, GANSpace PCA of W, SeFa closed-form factorisation)."""

from .directions import (DIRECTION_FILE_SUFFIXES, KINDS, STRENGTH_HELP, Direction, DirectionError, GanSpacePCA,
                         ganspace_edit, load_direction_file, load_ganspace, save_direction, save_ganspace)
from .fit import SefaDirections, compute_ganspace, fit_interfacegan, sefa_directions, sefa_matrix

__all__ = [
    "DIRECTION_FILE_SUFFIXES",
    "Direction",
    "DirectionError",
    "GanSpacePCA",
    "KINDS",
    "STRENGTH_HELP",
    "SefaDirections",
    "compute_ganspace",
    "fit_interfacegan",
    "ganspace_edit",
    "load_direction_file",
    "load_ganspace",
    "save_direction",
    "save_ganspace",
    "sefa_directions",
    "sefa_matrix",
]
