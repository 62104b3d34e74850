"""Training data: a folder-of-images dataset and an infinite, exactly resumable distributed batch sampler."""

from .folder import DatasetError, DatasetImageError, ImageFolderDataset
from .sampler import ResumableSampler

__all__ = ["DatasetError", "DatasetImageError", "ImageFolderDataset", "ResumableSampler"]
