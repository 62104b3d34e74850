"""Published files into our format: the official model zoo and its auxiliary weights, downloaded into the
cache (``$HYPERINVERTER_HOME``), checked against the official manifests and converted once
(``hyperinverter download``). The model-zoo converter itself is :mod:`hyperinverter.convert.official`;
generator file formats stay in :mod:`hyperinverter.stylegan2.formats`.
"""

from __future__ import annotations

from ..lazy import lazy_exports

#: public name -> module that defines it (imported on first use: see hyperinverter.lazy)
_EXPORTS = {
    **dict.fromkeys(('Catalog', 'RemoteFile', 'ZooModel', 'default_catalog'), '.catalog'),
    **dict.fromkeys(('BASE_ENV', 'DRIVE_ENV', 'DownloadError', 'FetchOptions'), '.fetch'),
    **dict.fromkeys(('DownloadReport', 'convert_model', 'download', 'fetch_file', 'list_rows'), '.install'),
    **dict.fromkeys(('check_against_manifest', 'load_manifest', 'manifest_of'), '.manifests'),
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
