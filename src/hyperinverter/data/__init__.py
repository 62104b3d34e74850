"""Data: a folder-of-images dataset, an exactly resumable distributed batch sampler, procedural portraits."""

from .folder import DatasetError, DatasetImageError, ImageFolderDataset
from .portraits import (ATTRIBUTE_NAMES, SPLITS, PortraitAttributes, render_portrait, render_seed,
                        sample_attributes, split_seeds, write_portraits)
from .sampler import ResumableSampler

__all__ = ["ATTRIBUTE_NAMES", "DatasetError", "DatasetImageError", "ImageFolderDataset", "PortraitAttributes",
           "ResumableSampler", "SPLITS", "render_portrait", "render_seed", "sample_attributes", "split_seeds",
           "write_portraits"]
