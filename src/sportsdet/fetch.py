"""Downloading over http(s) with the guards a command-line tool needs.

`fetch_url` gets one image into memory (for `sportsdet predict https://...`): only http/https,
a total-time deadline, a size cap checked before and while reading, and a content-type check
that turns "the link was a web page" into a message a person understands. `download_file`
streams a large file (a dataset archive) to disk and renames it into place only when complete.

Standard library only (plus Pillow to sniff unlabelled bytes, rich for the optional progress bar).
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import socket
import ssl
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sportsdet import __version__
from sportsdet.errors import SportsdetError

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
CHUNK = 64 * 1024
USER_AGENT = f"sportsdet/{__version__} (+https://github.com/sportsdet)"
# Servers that do not know what they serve label it like this; we then sniff the bytes.
_UNLABELLED = ("", "application/octet-stream", "binary/octet-stream", "application/x-download")


class FetchError(SportsdetError):
    """A URL could not be fetched; the message names the URL and says why."""


def is_url(text: str) -> bool:
    """True for strings that look like http(s) URLs (what predict treats as downloads)."""
    return text.lower().startswith(("http://", "https://"))


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to http(s); a redirect to file:// or ftp:// is refused."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001
        if urllib.parse.urlsplit(newurl).scheme.lower() not in ("http", "https"):
            raise FetchError(f"{req.full_url}: redirected to {newurl!r}, which is not an http(s) URL")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_OPENER = urllib.request.build_opener(_SafeRedirects)


def _check_url(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        shown = parts.scheme or "none"
        raise FetchError(f"{url}: unsupported URL scheme ({shown}); only http:// and https:// URLs work")
    if not parts.hostname:
        raise FetchError(f"{url}: the URL has no host name")


def _describe_network_error(url: str, exc: BaseException, timeout: float) -> FetchError:
    """Map the zoo of socket/urllib exceptions to one message per cause."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    host = urllib.parse.urlsplit(url).hostname
    if isinstance(reason, socket.gaierror):
        return FetchError(f"{url}: cannot resolve host {host!r}; check the address and your network")
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return FetchError(f"{url}: no answer within {timeout:g} s; the server is slow or unreachable")
    if isinstance(reason, ConnectionRefusedError):
        return FetchError(f"{url}: connection refused by {host}; is the address (and port) right?")
    if isinstance(reason, ssl.SSLError):
        return FetchError(f"{url}: TLS/SSL error ({reason}); check the certificate or try http://")
    if isinstance(reason, (ConnectionError, http.client.HTTPException)):
        return FetchError(f"{url}: the connection broke ({reason or type(reason).__name__}); try again")
    return FetchError(f"{url}: cannot connect ({reason})")


def _open(url: str, timeout: float) -> http.client.HTTPResponse:
    _check_url(url)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "*/*"})
    try:
        return _OPENER.open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if 300 <= exc.code < 400:  # urllib refuses redirects to file:// and the like
            raise FetchError(f"{url}: a redirect could not be followed ({exc.reason})") from None
        raise FetchError(
            f"{url}: HTTP {exc.code} from URL ({exc.reason}); check that the link is right and public"
        ) from None
    except FetchError:
        raise
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _describe_network_error(url, exc, timeout) from None
    except ValueError as exc:  # e.g. a malformed port
        raise FetchError(f"{url}: not a valid URL ({exc})") from None


def _content_type(response: http.client.HTTPResponse) -> str:
    return (response.headers.get_content_type() if response.headers.get("Content-Type") else "").lower()


def _content_length(response: http.client.HTTPResponse) -> int | None:
    value = response.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def _decodes_as_image(data: bytes) -> bool:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)):
            return True
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return False


def fetch_url(
    url: str,
    *,
    timeout: float = 10.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    accept_prefixes: tuple[str, ...] = ("image/",),
) -> bytes:
    """Download a (small) file into memory, normally an image for prediction.

    `timeout` bounds the whole transfer (connect + headers + body), not just each socket read,
    so a server that trickles bytes cannot hang the caller. Raises `FetchError` (a
    `SportsdetError`) naming the URL for every failure: bad scheme, DNS/connect errors, HTTP
    status >= 400, a web page or other wrong content type, a body over `max_bytes`, a timeout.
    A missing or generic (`application/octet-stream`) content type is accepted when the bytes
    decode as an image.
    """
    deadline = time.monotonic() + timeout
    response = _open(url, timeout)
    with response:
        ctype = _content_type(response)
        accepted = any(ctype.startswith(prefix) for prefix in accept_prefixes)
        if not accepted and ctype not in _UNLABELLED:
            if ctype in ("text/html", "application/xhtml+xml"):
                raise FetchError(
                    f"{url}: the URL returned a web page, not an image (Content-Type {ctype}); "
                    "use the direct link to the image file (e.g. 'Copy image address')"
                )
            raise FetchError(f"{url}: the URL returned {ctype}, not an image; use a link to an image file")
        length = _content_length(response)
        if length is not None and length > max_bytes:
            raise FetchError(
                f"{url}: the file is {_mb(length)}, above the {_mb(max_bytes)} limit; "
                "download it yourself and pass the file"
            )
        chunks: list[bytes] = []
        total = 0
        for chunk in _read_chunks(response, url, timeout):
            if time.monotonic() > deadline:
                raise FetchError(f"{url}: download took longer than {timeout:g} s; the server is too slow")
            total += len(chunk)
            if total > max_bytes:  # stop at the cap: never hold more than max_bytes + one chunk
                raise FetchError(
                    f"{url}: the response is larger than the {_mb(max_bytes)} limit; "
                    "download it yourself and pass the file"
                )
            chunks.append(chunk)
    data = b"".join(chunks)
    if not data:
        raise FetchError(f"{url}: the server sent an empty response")
    if not accepted and not _decodes_as_image(data):
        shown = ctype or "no content type"
        raise FetchError(f"{url}: the URL returned data ({shown}) that is not an image")
    return data


def _read_chunks(response: Any, url: str, timeout: float) -> Iterator[bytes]:
    """The body in chunks of at most CHUNK bytes; network failures become FetchError."""
    while True:
        try:
            chunk = response.read1(CHUNK) if hasattr(response, "read1") else response.read(CHUNK)
        except (OSError, http.client.HTTPException) as exc:
            raise _describe_network_error(url, exc, timeout) from None
        if not chunk:
            return
        yield chunk


def download_file(
    url: str,
    dest: str | Path,
    *,
    timeout: float = 60.0,
    expected_sha256: str | None = None,
    max_bytes: int | None = None,
    progress: bool = True,
) -> Path:
    """Stream a URL to `dest`, atomically: a partial download never sits at `dest`.

    For large files (dataset archives) `timeout` is the stall limit: the longest wait for any
    one network step, not a bound on the whole download. The data goes to a temporary file
    next to `dest` and is renamed into place only after it is complete and, when
    `expected_sha256` is given, its checksum matches.
    """
    dest = Path(dest)
    response = _open(url, timeout)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(prefix=f".{dest.name}.part-", dir=dest.parent)
    temp = Path(temp_name)
    digest = hashlib.sha256()
    try:
        with response, os.fdopen(fd, "wb") as handle:
            length = _content_length(response)
            if max_bytes is not None and length is not None and length > max_bytes:
                raise FetchError(f"{url}: the file is {_mb(length)}, above the {_mb(max_bytes)} limit")
            bar = None
            if progress:
                from rich.console import Console
                from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

                # Progress goes to stderr so stdout stays clean for results.
                bar = Progress(
                    *Progress.get_default_columns(),
                    DownloadColumn(),
                    TransferSpeedColumn(),
                    console=Console(stderr=True),
                    transient=True,
                )
                bar.start()
                task = bar.add_task(f"downloading {dest.name}", total=length)
            try:
                total = 0
                for chunk in _read_chunks(response, url, timeout):
                    total += len(chunk)
                    if max_bytes is not None and total > max_bytes:
                        raise FetchError(f"{url}: the download is larger than the {_mb(max_bytes)} limit")
                    handle.write(chunk)
                    digest.update(chunk)
                    if bar is not None:
                        bar.update(task, advance=len(chunk))
            finally:
                if bar is not None:
                    bar.stop()
            if length is not None and total != length:
                raise FetchError(f"{url}: the download stopped early ({total} of {length} bytes); try again")
            handle.flush()
            os.fsync(handle.fileno())
        if expected_sha256 is not None and digest.hexdigest() != expected_sha256.lower():
            raise FetchError(
                f"{url}: checksum mismatch (expected sha256 {expected_sha256}, got {digest.hexdigest()}); "
                "the file is damaged or has changed on the server"
            )
        os.chmod(temp, 0o644)  # mkstemp makes files private; a download is an ordinary file
        os.replace(temp, dest)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return dest
