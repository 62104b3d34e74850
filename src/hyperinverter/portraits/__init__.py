"""Procedural portraits: the offline demo domain, a deterministic renderer of stylised head-and-shoulders
portraits with exact attribute labels.

* :mod:`.attributes`: what decides a portrait (:class:`PortraitAttributes`), drawn from a seed
  (:func:`sample_attributes`) or from a Gaussian vector (:func:`attributes_from_latent`, :class:`LatentDraws`);
  the label vector's entries (:data:`ATTRIBUTE_NAMES`, :data:`ATTRIBUTE_RANGES`).
* :mod:`.painter`: drawing them (:func:`render_portrait`, :func:`render_seed`, :func:`portrait_grid`; the
  :data:`FRAMINGS`: head and shoulders, or the face filling the frame).
* :mod:`.writer`: data sets (:data:`SPLITS`, :func:`split_seeds`, :func:`write_portraits` and its label files,
  read back by :func:`read_portrait_labels`;
  ``hyperinverter data portraits``).
"""

from .attributes import (ATTRIBUTE_NAMES, ATTRIBUTE_RANGES, COLLAR_PATTERNS, HAIR_STYLES, LATENT_DRAWS, MAX_FRECKLES,
                         MAX_YAW, LatentDraws, PortraitAttributes, attributes_from_latent, latent_entry,
                         normalize_latent, sample_attributes, sweep_latents)
from .painter import FRAMINGS, check_framing, portrait_grid, render_portrait, render_seed
from .writer import (SPLITS, PortraitLabelError, PortraitOutputError, read_portrait_labels, split_seeds,
                     write_portraits)

__all__ = ["ATTRIBUTE_NAMES", "ATTRIBUTE_RANGES", "COLLAR_PATTERNS", "FRAMINGS", "HAIR_STYLES", "LATENT_DRAWS",
           "LatentDraws", "MAX_FRECKLES", "MAX_YAW", "PortraitAttributes", "PortraitLabelError", "PortraitOutputError",
           "SPLITS", "attributes_from_latent", "check_framing", "latent_entry", "normalize_latent", "portrait_grid",
           "read_portrait_labels", "render_portrait", "render_seed", "sample_attributes", "split_seeds",
           "sweep_latents", "write_portraits"]
