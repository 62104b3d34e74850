"""Data: a folder-of-images dataset and an exactly resumable distributed batch sampler (the procedural
portraits of the demo domain live in :mod:`hyperinverter.portraits`)."""

from .folder import DatasetError, DatasetImageError, ImageFolderDataset
from .sampler import ResumableSampler

__all__ = ["DatasetError", "DatasetImageError", "ImageFolderDataset", "ResumableSampler"]
