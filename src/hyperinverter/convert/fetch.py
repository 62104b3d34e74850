"""Downloading one published file: plain HTTP(S) with resume, or Google Drive, through a ``.part`` file.

* Bytes go to ``<name>.part<suffix>``; only a complete file (its size checked against the server's and,
  when known, the catalogue's) is handed back for checking, and only a checked file is renamed
  (``os.replace``) to its final name: an interrupted or failed download never leaves anything under the
  final name.
* An interrupted transfer is resumed with an HTTP ``Range`` request, in the same call (``retries``) or in a
  later one (the ``.part`` file stays); a server that ignores ``Range`` makes it start over.
* Google Drive: ``uc?export=download&id=ID``; for large files Drive answers with a "can't scan for
  viruses" page whose form (or ``confirm=`` link, or ``download_warning`` cookie) leads to the file. When
  ``gdown`` is installed it is used instead (``pip install 'hyperinverter[download]'``), unless the Drive
  address is overridden.
* Where files come from can be changed: ``$HYPERINVERTER_DOWNLOAD_BASE`` (or ``FetchOptions.base``) is a
  mirror holding every file under its published name (``<base>/<file name>``), and
  ``$HYPERINVERTER_DRIVE_URL`` (or ``FetchOptions.drive_url``) replaces ``https://drive.google.com/uc``.
"""

from __future__ import annotations

import html
import http.client
import http.cookiejar
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import HyperInverterError
from .catalog import RemoteFile

#: Environment variable: a mirror holding every file under its published name.
BASE_ENV = "HYPERINVERTER_DOWNLOAD_BASE"
#: Environment variable: the Google Drive download endpoint.
DRIVE_ENV = "HYPERINVERTER_DRIVE_URL"
DRIVE_URL = "https://drive.google.com/uc"
PART_SUFFIX = ".part"
USER_AGENT = "hyperinverter-download/1 (+https://github.com/VinAIResearch/HyperInverter model zoo)"
_NETWORK_ERRORS = (urllib.error.URLError, ConnectionError, TimeoutError, socket.timeout, http.client.HTTPException,
                   OSError)


class DownloadError(HyperInverterError):
    """A file could not be downloaded (the message says which and why, in one line)."""


@dataclass
class FetchOptions:
    """How files are fetched (every field has a command-line option or an environment variable).

    Attributes:
        base: a mirror: fetch every file from ``<base>/<file name>`` (None: ``$HYPERINVERTER_DOWNLOAD_BASE``,
            else each file's own location).
        drive_url: the Google Drive download endpoint (None: ``$HYPERINVERTER_DRIVE_URL``, else Drive's).
        use_gdown: use ``gdown`` for Drive files (None: when it is installed and Drive is not overridden).
        retries: attempts after the first when the connection breaks (each resumes where it stopped).
        backoff: seconds before the first retry (doubled for each further one, at most 30).
        timeout: seconds without data after which a connection counts as broken.
        progress: show a progress bar per file.
        chunk_size: bytes read at a time.
    """

    base: Optional[str] = None
    drive_url: Optional[str] = None
    use_gdown: Optional[bool] = None
    retries: int = 4
    backoff: float = 2.0
    timeout: float = 60.0
    progress: bool = True
    chunk_size: int = 1 << 20

    def resolved_base(self) -> Optional[str]:
        base = self.base if self.base is not None else os.environ.get(BASE_ENV, "")
        return base.rstrip("/") or None

    def resolved_drive_url(self) -> str:
        return self.drive_url or os.environ.get(DRIVE_ENV, "") or DRIVE_URL

    def gdown_wanted(self) -> bool:
        if self.use_gdown is False or self.resolved_base() or self.resolved_drive_url() != DRIVE_URL:
            return False
        try:
            import gdown  # noqa: F401
        except ImportError:
            return False
        return True


def part_path(dest: Path) -> Path:
    """Where the bytes of ``dest`` go while it downloads: ``<stem>.part<suffix>`` (the suffix is kept
    because some readers go by it, e.g. ``.pt`` / ``.npy`` directions)."""
    return dest.with_name(f"{dest.stem}{PART_SUFFIX}{dest.suffix}")


def source_of(remote: RemoteFile, options: FetchOptions) -> str:
    """The address ``remote`` is fetched from with ``options`` (for messages and ``--list``)."""
    base = options.resolved_base()
    if base:
        return f"{base}/{urllib.parse.quote(remote.filename)}"
    if remote.url:
        return remote.url
    return f"{options.resolved_drive_url()}?id={remote.drive_id}"


def download_to_part(remote: RemoteFile, dest: Path, options: Optional[FetchOptions] = None) -> Path:
    """Fetch ``remote`` into ``part_path(dest)`` (resuming what is there) and return that path.

    The caller checks the ``.part`` file and renames it to ``dest`` (see :mod:`.install`).

    Raises:
        DownloadError: the server refused, the connection kept breaking after ``retries`` attempts, or the
            size is not the expected one. What was received stays in the ``.part`` file for the next try.
    """
    options = options or FetchOptions()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    base = options.resolved_base()
    opener = _opener()
    if base:
        url = f"{base}/{urllib.parse.quote(remote.filename)}"
    elif remote.url:
        url = remote.url
    else:
        if options.gdown_wanted() and _gdown(remote, part, options):
            _check_size(part, remote.size, remote)
            return part
        start = part.stat().st_size if part.exists() else 0
        first = _drive_file_response(remote, options.resolved_drive_url(), opener, options, start)
        _download(first.geturl(), part, remote, opener, options, first=first)
        return part
    _download(url, part, remote, opener, options)
    return part


# ------------------------------------------------------------------------------------------ plain HTTP
def _opener() -> urllib.request.OpenerDirector:
    """An opener that keeps cookies (Drive's confirmation) and sends our user agent."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    opener.addheaders = [("User-Agent", USER_AGENT)]
    return opener


def _total_from(response, start: int) -> Optional[int]:
    """The full size of the file from ``Content-Range`` (206) or ``Content-Length`` (200)."""
    content_range = response.headers.get("Content-Range", "")
    found = re.match(r"bytes\s+(\d+)-(\d+)/(\d+|\*)", content_range)
    if found:
        if int(found.group(1)) != start:
            return None
        return int(found.group(3)) if found.group(3) != "*" else None
    length = response.headers.get("Content-Length")
    return int(length) + start if length and length.isdigit() else None


def _check_size(part: Path, expected: Optional[int], remote: RemoteFile) -> None:
    if expected is not None and part.stat().st_size != expected:
        size = part.stat().st_size
        part.unlink()
        raise DownloadError(f"{remote.filename}: received {size} bytes, but the file has {expected}; removed, "
                            "try again")


def _download(url: str, part: Path, remote: RemoteFile, opener, options: FetchOptions, first=None) -> None:
    """Stream ``url`` into ``part``, resuming with ``Range`` and retrying when the connection breaks.

    ``first``: an already open response for ``url`` (sent with the ``Range`` of the current ``part``) to
    read before any new request.
    """
    attempt = 0
    while True:
        start = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url)
        if start:
            request.add_header("Range", f"bytes={start}-")
        response, first = first, None  # an already open first response is used once
        try:
            total = _transfer(opener, request, part, start, remote, options, response)
        except _RestartNeeded:
            part.unlink(missing_ok=True)
            continue
        except urllib.error.HTTPError as e:
            raise DownloadError(f"{remote.filename}: {url} answered HTTP {e.code} {e.reason}") from None
        except _Broken as e:
            total, broken = None, str(e)
        else:
            broken = ""
        size = part.stat().st_size if part.exists() else 0
        if not broken and total is not None and size != total:
            broken = f"stopped at {size} of {total} bytes"
        if broken:
            attempt += 1
            if attempt > options.retries:
                raise DownloadError(f"{remote.filename}: the transfer broke {attempt} times ({broken}); {size} "
                                    f"bytes kept in {part.name}: run the command again to resume") from None
            time.sleep(min(options.backoff * 2 ** (attempt - 1), 30.0))
            continue
        if remote.size is not None and size != remote.size:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{remote.filename}: received {size} bytes, but the published file has "
                                f"{remote.size}; removed (a changed or wrong file)")
        return


class _RestartNeeded(Exception):
    """The server cannot continue the ``.part`` file: start from zero."""


class _Broken(Exception):
    """The connection broke; what was received is in the ``.part`` file."""


def _transfer(opener, request, part: Path, start: int, remote: RemoteFile, options: FetchOptions,
              response=None) -> Optional[int]:
    """One request (or the already open ``response``): append (206) or rewrite (200) ``part``; returns the
    file's full size when the server told it. Raises :class:`_Broken` when the connection breaks and
    :class:`_RestartNeeded` when the server cannot resume."""
    try:
        if isinstance(response, _Answered):
            raise response.error
        if response is None:
            response = opener.open(request, timeout=options.timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # nothing left to send: complete already, or a stale .part
            found = re.match(r"bytes\s+\*/(\d+)", e.headers.get("Content-Range", "") or "")
            if found and int(found.group(1)) == start:
                return start
            raise _RestartNeeded() from None
        raise
    except _NETWORK_ERRORS as e:
        raise _Broken(_reason(e)) from None
    with response:
        if "text/html" in response.headers.get("Content-Type", ""):
            snippet = response.read(2000).decode("utf-8", "replace")
            raise DownloadError(f"{remote.filename}: {response.geturl()} sent a web page instead of the file "
                                f"({_page_title(snippet)})")
        if start and response.status != 206:
            start = 0  # the server ignored Range: start over
        total = _total_from(response, start)
        if start and total is None:
            raise _RestartNeeded()  # a Content-Range that does not continue the .part file
        _stream(response, part, start, total, remote, options)
        return total


def _stream(response, part: Path, start: int, total: Optional[int], remote: RemoteFile,
            options: FetchOptions) -> None:
    from tqdm import tqdm

    mode = "ab" if start else "wb"
    with open(part, mode) as fh, tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
                                      desc=remote.filename, disable=not options.progress, leave=True) as bar:
        while True:
            try:
                chunk = response.read(options.chunk_size)
            except _NETWORK_ERRORS as e:
                fh.flush()
                raise _Broken(_reason(e)) from None
            if not chunk:
                break
            fh.write(chunk)
            bar.update(len(chunk))


def _reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        return str(error.reason)
    return f"{type(error).__name__}: {error}".rstrip(": ")


def _page_title(text: str) -> str:
    found = re.search(r"<title>(.*?)</title>", text, re.S | re.I)
    title = html.unescape(found.group(1)).strip() if found else "no title"
    return f"page title {title!r}; the link may have changed, or Drive's download quota is exceeded"


# ---------------------------------------------------------------------------------------- Google Drive
def _drive_file_response(remote: RemoteFile, drive_url: str, opener, options: FetchOptions, start: int):
    """The open response of the file itself (asked for from byte ``start``): Drive's endpoint answers
    with it directly for small files; for large ones its confirmation page leads to it."""
    url = f"{drive_url}?{urllib.parse.urlencode({'export': 'download', 'id': remote.drive_id})}"
    for _ in range(3):  # the first page, then at most two confirmation pages
        request = urllib.request.Request(url)
        if start:
            request.add_header("Range", f"bytes={start}-")
        try:
            response = opener.open(request, timeout=options.timeout)
        except urllib.error.HTTPError as e:
            if e.code == 416 and start:  # the .part file is complete already: let the transfer say so
                return _Answered(e, url)
            raise DownloadError(f"{remote.filename}: Google Drive ({url}) answered HTTP {e.code} {e.reason}; "
                                "the file may no longer be shared") from None
        except _NETWORK_ERRORS as e:
            raise DownloadError(f"{remote.filename}: cannot reach Google Drive ({_reason(e)})") from None
        if "text/html" not in response.headers.get("Content-Type", ""):
            return response  # the file itself (after redirects)
        with response:
            page = response.read(1 << 20).decode("utf-8", "replace")
            final = response.geturl()
        confirmed = _confirmation_url(page, final, opener)
        if confirmed is None:
            raise DownloadError(f"{remote.filename}: Google Drive did not offer the file ({_page_title(page)})")
        url = confirmed
    raise DownloadError(f"{remote.filename}: Google Drive kept answering with confirmation pages")


class _Answered:
    """A 416 answer of Drive, re-raised when the transfer reads it (so that it is handled in one place)."""

    def __init__(self, error: urllib.error.HTTPError, url: str):
        self.error, self.url = error, url

    def geturl(self) -> str:
        return self.url


def _confirmation_url(page: str, page_url: str, opener) -> Optional[str]:
    """The address behind Drive's "download anyway" confirmation, from the page or its cookie."""
    for form in re.finditer(r"<form\b([^>]*)>(.*?)</form>", page, re.S | re.I):
        attrs = _attributes(form.group(1))
        if attrs.get("id") != "download-form" or "action" not in attrs:
            continue
        fields = {}
        for tag in re.finditer(r"<input\b([^>]*)>", form.group(2), re.I):
            field = _attributes(tag.group(1))
            if field.get("type", "").lower() == "hidden" and "name" in field:
                fields[field["name"]] = field.get("value", "")
        action = urllib.parse.urljoin(page_url, attrs["action"])
        return f"{action}?{urllib.parse.urlencode(fields)}"
    link = re.search(r'href="(/uc\?export=download[^"]+confirm=[^"]+)"', page)
    if link:
        return urllib.parse.urljoin(page_url, html.unescape(link.group(1)))
    token = re.search(r"confirm=([0-9A-Za-z_-]+)", page)
    if token is None:
        for handler in getattr(opener, "handlers", []):
            jar = getattr(handler, "cookiejar", None)
            for cookie in jar or []:
                if cookie.name.startswith("download_warning"):
                    token = re.match(r"(.*)", cookie.value)
    if token is None:
        return None
    parts = urllib.parse.urlsplit(page_url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    query["confirm"] = token.group(1)
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _attributes(text: str) -> dict[str, str]:
    """``name="value"`` pairs of an HTML tag (any order, either quote), unescaped."""
    return {k.lower(): html.unescape(a if a else b)
            for k, a, b in re.findall(r"""([\w-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""", text)}


def _gdown(remote: RemoteFile, part: Path, options: FetchOptions) -> bool:
    """Fetch a Drive file with gdown into ``part``; False (after a note) when gdown fails."""
    import gdown

    try:
        out = gdown.download(id=remote.drive_id, output=str(part), quiet=not options.progress, resume=True)
    except Exception as e:  # noqa: BLE001 - gdown raises many kinds; fall back to our own client
        print(f"note: gdown could not fetch {remote.filename} ({type(e).__name__}: {e}); trying without it")
        return False
    return bool(out) and part.is_file()


__all__ = ["BASE_ENV", "DRIVE_ENV", "DRIVE_URL", "DownloadError", "FetchOptions", "PART_SUFFIX", "download_to_part",
           "part_path", "source_of"]
