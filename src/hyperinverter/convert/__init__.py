"""Published files into our format: the official model zoo and its auxiliary weights, downloaded into the
cache (``$HYPERINVERTER_HOME``), checked against the official manifests and converted once
(``hyperinverter download``). The model-zoo converter itself is :mod:`hyperinverter.checkpoints.official`;
generator file formats stay in :mod:`hyperinverter.stylegan2.formats`.
"""

from .catalog import Catalog, RemoteFile, ZooModel, default_catalog
from .fetch import BASE_ENV, DRIVE_ENV, DownloadError, FetchOptions
from .install import DownloadReport, convert_model, download, fetch_file, list_rows
from .manifests import check_against_manifest, load_manifest, manifest_of

__all__ = ["BASE_ENV", "Catalog", "DRIVE_ENV", "DownloadError", "DownloadReport", "FetchOptions", "RemoteFile",
           "ZooModel", "check_against_manifest", "convert_model", "default_catalog", "download", "fetch_file",
           "list_rows", "load_manifest", "manifest_of"]
