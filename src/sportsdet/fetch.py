"""Downloading over http(s) with the guards a command-line tool and a service need.

One guarded way to open a URL, `open_url`, serves everything that downloads:

- only http/https, on the first hop and on every redirect (at most `MAX_REDIRECTS`);
- no user name or password in a URL (refused with a clear message; the password is never
  echoed: every message shows the URL through `redact_url`);
- an address policy (`AddressPolicy`): the service refuses loopback, private, link-local,
  multicast and reserved addresses, checked on every address the host name resolves to before
  connecting, and again on the peer address actually connected to, on every redirect hop.
  `sportsdet predict` allows them (it runs on the user's own machine);
- for `fetch_url`, ONE deadline for the whole download: name lookup, connect, headers, every
  redirect hop and the body. A watchdog shuts the socket at the deadline, so a server that
  trickles headers or bytes cannot hold the caller past it.

`fetch_url` gets one image into memory (for `sportsdet predict https://...` and the service):
a size cap checked before and while reading, and a content-type check that turns "the link was
a web page" into a message a person understands. `download_file` streams a large file (a dataset
archive) to disk and renames it into place only when complete: lookup, connect, headers and every
redirect within `timeout` in all, then no wait longer than `timeout` for the body, and the whole
download within `max_seconds` when given (a big archive on a slow link may rightly take hours).

Standard library only (plus Pillow to sniff unlabelled bytes, rich for the optional progress bar).
No proxy support: a proxy would hide the address actually connected to from the policy.
"""

from __future__ import annotations

import glob
import hashlib
import http.client
import ipaddress
import os
import socket
import ssl
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sportsdet._version import __version__
from sportsdet.errors import SportsdetError
from sportsdet.files import signals_deferred

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
CHUNK = 64 * 1024
MAX_REDIRECTS = 5
USER_AGENT = f"sportsdet/{__version__} (+https://github.com/sportsdet)"
# Servers that do not know what they serve label it like this; we then sniff the bytes.
_UNLABELLED = ("", "application/octet-stream", "binary/octet-stream", "application/x-download")
_REDIRECT_CODES = (301, 302, 303, 307, 308)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchError(SportsdetError):
    """A URL could not be fetched; the message names the URL (without credentials) and says why."""

    def __init__(self, message: str, *, code: str = "fetch_failed") -> None:
        super().__init__(message)
        self.code = code  # one machine-readable word: fetch_failed, url_refused, timeout, too_large


def is_url(text: str) -> bool:
    """True for strings that look like http(s) URLs (what predict treats as downloads)."""
    return text.lower().startswith(("http://", "https://"))


def redact_url(url: str) -> str:
    """The URL with any user name and password replaced by `***` (safe to print or log)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        parts = None
    if parts is not None and "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        return urllib.parse.urlunsplit(parts._replace(netloc=f"***@{host}"))
    if parts is None or (":" in parts.netloc and "@" in url):
        # Unparseable, or a password holding "/" that split the netloc early: hide everything
        # between "//" and the last "@".
        head, sep, rest = url.partition("//")
        if sep and "@" in rest:
            return f"{head}//***@{rest.rsplit('@', 1)[1]}"
    return url


# ----------------------------------------------------------------------------- address policy


@dataclass(frozen=True)
class AddressPolicy:
    """Which IP addresses a download may connect to.

    `allow_private=True` (the default, for `sportsdet predict` on one's own machine) allows every
    address. False (the service) refuses every address that is not globally routable unicast:
    loopback, private, link-local (cloud metadata at 169.254.169.254), multicast, reserved,
    unspecified, shared (100.64/10), also when written as an IPv4-mapped IPv6 address.
    `allowed_networks` are exceptions to that refusal (e.g. one trusted internal image server).
    """

    allow_private: bool = True
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    def refusal(self, address: IPAddress) -> str | None:
        """Why `address` is refused (e.g. "loopback"), or None when it may be connected to."""
        if self.allow_private:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.allowed_networks):
            return None
        for kind in ("loopback", "link_local", "multicast", "unspecified", "reserved", "private"):
            if getattr(address, f"is_{kind}"):
                return kind.replace("_", "-")
        if not address.is_global:
            return "non-public"
        return None


ALLOW_ALL = AddressPolicy(allow_private=True)
PUBLIC_ONLY = AddressPolicy(allow_private=False)


def _ip(text: str) -> IPAddress:
    return ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id


# ----------------------------------------------------------------------------- one deadline


LONGEST_WAIT_S = 24 * 3600.0


class _Deadline:
    """One time limit over every network step of a download (None: no overall limit).

    Socket timeouts bound each wait; the watchdog timer shuts the current socket when the
    deadline passes, which ends a read that keeps receiving a byte now and then."""

    def __init__(self, seconds: float | None, stall: float, *, total: float | None = None) -> None:
        if seconds is not None and not seconds < threading.TIMEOUT_MAX:
            # `--timeout inf` (or 1e10): no overall limit; a timer or a socket timeout that long
            # cannot be set (OverflowError in every download). A day stands for "no limit" below.
            seconds = None
        stall = min(stall, LONGEST_WAIT_S)
        self.seconds = seconds
        self.total = total if total is not None else seconds  # the limit as the user set it
        self.stall = stall
        self.end = None if seconds is None else time.monotonic() + seconds
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        if seconds is not None:
            self._timer = threading.Timer(seconds, self._expire)
            self._timer.daemon = True
            self._timer.start()

    def remaining(self) -> float:
        """The socket timeout for the next step; 0 means the deadline has passed."""
        if self.end is None:
            return self.stall
        left = self.end - time.monotonic()
        if left <= 0:
            self.expired = True
            return 0.0
        return min(self.stall, left)

    def watch(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._sock = sock
            if self.expired and sock is not None:
                _shutdown(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            if self._sock is not None:
                _shutdown(self._sock)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.watch(None)


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


def _resolve(host: str, port: int, deadline: _Deadline, shown: str) -> list[tuple]:
    """getaddrinfo within the deadline (it has no timeout of its own, so it runs on a thread)."""
    try:
        _ip(host)
    except ValueError:
        pass
    else:  # an address literal: nothing to look up
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    box: dict[str, Any] = {}

    def lookup() -> None:
        try:
            box["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except Exception as exc:  # noqa: BLE001  handed to the caller below
            box["error"] = exc

    thread = threading.Thread(target=lookup, daemon=True, name="sportsdet-resolve")
    thread.start()
    thread.join(deadline.remaining() or 0.001)
    if thread.is_alive():
        raise _timeout_error(shown, deadline, "looking up the host name")
    if "error" in box:
        raise FetchError(f"{shown}: cannot resolve host {host!r}; check the address and your network")
    return box["infos"]


def _timeout_error(shown: str, deadline: _Deadline, step: str = "") -> FetchError:
    # The overall limit when it passed, else the stall limit (the longest single wait).
    limit = deadline.total if deadline.expired and deadline.total is not None else deadline.stall
    where = f" ({step})" if step else ""
    return FetchError(
        f"{shown}: no answer within {limit:g} s{where}; the server is slow or unreachable", code="timeout"
    )


def _connect(host: str, port: int, deadline: _Deadline, policy: AddressPolicy, shown: str) -> socket.socket:
    """A TCP connection to `host` on an address the policy allows, checked again once connected."""
    infos = _resolve(host, port, deadline, shown)
    refused: list[str] = []
    last_error: OSError | None = None
    for family, kind, proto, _name, sockaddr in infos:
        reason = policy.refusal(_ip(sockaddr[0]))
        if reason is not None:
            refused.append(f"{sockaddr[0]} ({reason})")
            continue
        timeout = deadline.remaining()
        if timeout <= 0:
            raise _timeout_error(shown, deadline, "connecting")
        sock = socket.socket(family, kind, proto)
        sock.settimeout(timeout)
        try:
            sock.connect(sockaddr)
            # The address actually connected to is what counts (not what a resolver said).
            peer = _ip(sock.getpeername()[0])
        except OSError as exc:
            sock.close()
            last_error = exc
            continue
        reason = policy.refusal(peer)
        if reason is not None:
            sock.close()
            raise _refused(shown, host, f"{peer} ({reason})")
        return sock
    if last_error is None and refused:
        raise _refused(shown, host, ", ".join(refused))
    if isinstance(last_error, (TimeoutError, socket.timeout)):
        raise _timeout_error(shown, deadline, "connecting")
    if isinstance(last_error, ConnectionRefusedError):
        raise FetchError(f"{shown}: connection refused by {host}; is the address (and port) right?")
    raise FetchError(f"{shown}: cannot connect to {host} ({last_error or 'no address found'})")


def _refused(shown: str, host: str, what: str) -> FetchError:
    return FetchError(
        f"{shown}: refused to connect: {host} is {what}, not a public internet address "
        "(this service does not fetch from local or private networks)",
        code="url_refused",
    )


def _check_url(url: str) -> urllib.parse.SplitResult:
    shown = redact_url(url)
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018  raises ValueError for a malformed port
    except ValueError:
        raise FetchError(f"{shown}: not a valid URL (malformed host or port)", code="bad_url") from None
    if parts.scheme.lower() not in ("http", "https"):
        scheme = parts.scheme or "none"
        raise FetchError(
            f"{shown}: unsupported URL scheme ({scheme}); only http:// and https:// URLs work", code="bad_url"
        )
    if "@" in parts.netloc or parts.username is not None or parts.password is not None:
        raise FetchError(
            f"{shown}: the URL holds a user name or password; sportsdet never sends credentials in URLs "
            "(they would end up in logs) - download the file yourself and pass it",
            code="bad_url",
        )
    if not parts.hostname:
        raise FetchError(f"{shown}: the URL has no host name", code="bad_url")
    return parts


class _Response:
    """An open response: status, headers, `read1`, `close` (closes the connection too)."""

    def __init__(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse) -> None:
        self.conn = conn
        self.response = response
        self.headers = response.headers
        self.status = response.status
        self.chunked = bool(response.chunked)  # then Content-Length means nothing (RFC 9112)

    def read1(self, n: int) -> bytes:
        return self.response.read1(n)

    def close(self) -> None:
        self.response.close()
        self.conn.close()

    def __enter__(self) -> _Response:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _network_error(shown: str, exc: BaseException, deadline: _Deadline, started_body: bool) -> FetchError:
    """Map socket/http.client exceptions (or a deadline shutdown) to one message per cause."""
    if deadline.expired:
        if started_body:
            return FetchError(
                f"{shown}: download took longer than {deadline.total:g} s; the server is too slow",
                code="timeout",
            )
        return _timeout_error(shown, deadline)
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return _timeout_error(shown, deadline)
    if isinstance(exc, ssl.SSLError):
        return FetchError(f"{shown}: TLS/SSL error ({exc}); check the certificate or try http://")
    if isinstance(exc, (ConnectionError, http.client.HTTPException)):
        return FetchError(f"{shown}: the connection broke ({exc or type(exc).__name__}); try again")
    return FetchError(f"{shown}: cannot connect ({exc})")


def _one_hop(
    parts: urllib.parse.SplitResult, deadline: _Deadline, policy: AddressPolicy, shown: str
) -> _Response:
    https = parts.scheme.lower() == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if https else 80)
    sock = _connect(host, port, deadline, policy, shown)
    deadline.watch(sock)
    try:
        if https:
            context = ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=host)
            deadline.watch(sock)
        conn_class = http.client.HTTPSConnection if https else http.client.HTTPConnection
        conn = conn_class(host, port, timeout=deadline.remaining() or 0.001)
        conn.sock = sock  # already connected (and checked): http.client will not connect again
        # Non-ASCII in the path or query (pasted from a browser's address bar) goes percent-encoded.
        safe = "/%:@!$&'()*+,;=-._~?"
        path = urllib.parse.urlunsplit(
            (
                "",
                "",
                urllib.parse.quote(parts.path or "/", safe=safe),
                urllib.parse.quote(parts.query, safe=safe),
                "",
            )
        )
        conn.request("GET", path, headers={"User-Agent": USER_AGENT, "Accept": "*/*"})
        return _Response(conn, conn.getresponse())
    except BaseException:
        sock.close()
        raise


def open_url(
    url: str,
    *,
    timeout: float | None = 10.0,
    stall: float | None = None,
    policy: AddressPolicy = ALLOW_ALL,
) -> tuple[_Response, _Deadline]:
    """GET `url` through the guards above; the response of the last redirect hop, status < 300.

    `timeout`: the one deadline for everything (None: no overall limit). `stall`: the longest
    wait for any one network step (default: `timeout`). The caller reads the body and closes the
    response, then cancels the returned deadline.
    """
    deadline = _Deadline(timeout, stall if stall is not None else (timeout or 60.0))
    shown = redact_url(url)
    try:
        for _hop in range(MAX_REDIRECTS + 1):
            parts = _check_url(url)
            shown = redact_url(url)
            try:
                response = _one_hop(parts, deadline, policy, shown)
            except FetchError:
                raise
            except (OSError, http.client.HTTPException) as exc:
                raise _network_error(shown, exc, deadline, started_body=False) from None
            if deadline.expired:  # the watchdog cut the headers short: they are not to be trusted
                response.close()
                raise _timeout_error(shown, deadline)
            if response.status in _REDIRECT_CODES:
                location = response.headers.get("Location")
                response.close()
                if not location:
                    raise FetchError(f"{shown}: a redirect could not be followed (it has no Location)")
                target = urllib.parse.urljoin(url, location.strip())
                if urllib.parse.urlsplit(target).scheme.lower() not in ("http", "https"):
                    raise FetchError(
                        f"{shown}: a redirect could not be followed: it points to "
                        f"{redact_url(target)!r}, which is not an http(s) URL",
                        code="url_refused",
                    )
                url = target
                continue
            if response.status >= 400:
                reason, advice = response.response.reason, _http_error_advice(response)
                response.close()
                raise FetchError(f"{shown}: HTTP {response.status} from URL ({reason}); {advice}")
            if response.status >= 300:
                response.close()
                raise FetchError(f"{shown}: a redirect could not be followed (HTTP {response.status})")
            return response, deadline
        raise FetchError(f"{shown}: more than {MAX_REDIRECTS} redirects; giving up")
    except BaseException:
        deadline.cancel()
        raise


def _http_error_advice(response: _Response) -> str:
    """What to do about an HTTP error: a busy server is waited for, not a wrong link checked."""
    status = response.status
    if status in (429, 502, 503, 504):
        # "Retry-After: 120" or an HTTP date; only the seconds form is worth repeating.
        wait = (response.headers.get("Retry-After") or "").strip()
        asks = f" (it asks to wait {wait} s)" if wait.isdigit() else ""
        return f"the server is busy or down: try again later{asks}"
    if status == 407:  # from the proxy in between, not the photo's server
        return "the proxy asks for a login: set it in HTTPS_PROXY / HTTP_PROXY (http://user:password@proxy:port)"
    if status in (401, 403):
        return "the server refuses it without a login: check that the link is public"
    if status >= 500:
        return "the server failed: try again later, or check that the link is right"
    return "check that the link is right and public"


def _content_type(response: Any) -> str:
    return (response.headers.get_content_type() if response.headers.get("Content-Type") else "").lower()


def _content_length(response: Any) -> int | None:
    if getattr(response, "chunked", False):  # the body's length is in its chunks
        return None
    value = response.headers.get("Content-Length")
    try:
        length = int(value) if value is not None else None
    except ValueError:
        return None
    return None if length is None or length < 0 else length  # as http.client reads it


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def _decodes_as_image(data: bytes) -> bool:
    from sportsdet.imageio import open_header

    try:
        with open_header(data):
            return True
    except Exception:  # noqa: BLE001  any failure means "not an image we can read"
        return False


def fetch_url(
    url: str,
    *,
    timeout: float = 10.0,
    max_bytes: int = DEFAULT_MAX_BYTES,
    policy: AddressPolicy = ALLOW_ALL,
) -> bytes:
    """Download a (small) file into memory, normally an image for prediction.

    `timeout` bounds the whole transfer (name lookup, connect, headers, every redirect, body),
    so a slow or trickling server cannot hold the caller longer. `policy` says which addresses
    may be connected to (default: any). Raises `FetchError` (a `SportsdetError`) naming the URL
    for every failure: bad scheme, credentials in the URL, a refused address, DNS/connect errors,
    HTTP status >= 400, a web page or other wrong content type, a body over `max_bytes`, a
    timeout. A missing or generic (`application/octet-stream`) content type is accepted when the
    bytes decode as an image.
    """
    response, deadline = open_url(url, timeout=timeout, policy=policy)
    shown = redact_url(url)
    try:
        with response:
            ctype = _content_type(response)
            accepted = ctype.startswith("image/")
            if not accepted and ctype not in _UNLABELLED:
                if ctype in ("text/html", "application/xhtml+xml"):
                    raise FetchError(
                        f"{shown}: the URL returned a web page, not an image (Content-Type {ctype}); "
                        "use the direct link to the image file (e.g. 'Copy image address')"
                    )
                raise FetchError(
                    f"{shown}: the URL returned {ctype}, not an image; use a link to an image file"
                )
            length = _content_length(response)
            if length is not None and length > max_bytes:
                raise FetchError(
                    f"{shown}: the file is {_mb(length)}, above the {_mb(max_bytes)} limit; "
                    "download it yourself and pass the file",
                    code="too_large",
                )
            chunks: list[bytes] = []
            total = 0
            for chunk in _read_chunks(response, shown, deadline):
                total += len(chunk)
                if total > max_bytes:  # stop at the cap: never hold more than max_bytes + one chunk
                    raise FetchError(
                        f"{shown}: the response is larger than the {_mb(max_bytes)} limit; "
                        "download it yourself and pass the file",
                        code="too_large",
                    )
                chunks.append(chunk)
            if length is not None and total != length:
                # A cut connection reads as the end of the body; shown as a damaged image, the
                # user would not know to try again.
                raise FetchError(
                    f"{shown}: the download stopped early ({total} of {length} bytes); try again"
                )
    finally:
        deadline.cancel()
    data = b"".join(chunks)
    if not data:
        raise FetchError(f"{shown}: the server sent an empty response")
    if not accepted and not _decodes_as_image(data):
        shown_type = ctype or "no content type"
        raise FetchError(f"{shown}: the URL returned data ({shown_type}) that is not an image")
    return data


def _read_chunks(response: _Response, shown: str, deadline: _Deadline) -> Iterator[bytes]:
    """The body in chunks of at most CHUNK bytes; network failures and the deadline become FetchError."""
    while True:
        timeout = deadline.remaining()
        if timeout <= 0:
            raise _network_error(shown, TimeoutError(), deadline, started_body=True)
        if response.conn.sock is not None:
            response.conn.sock.settimeout(timeout)
        try:
            chunk = response.read1(CHUNK)
        except (OSError, http.client.HTTPException, ValueError) as exc:
            raise _network_error(shown, exc, deadline, started_body=True) from None
        if deadline.expired:  # the watchdog shut the socket: what came is not the whole body
            raise _network_error(shown, TimeoutError(), deadline, started_body=True)
        if not chunk:
            return
        yield chunk


ABANDONED_PART_S = 3600.0  # a partial download untouched this long is no one's (writes touch it)


def _remove_abandoned_parts(dest: Path) -> None:
    """Partial downloads of `dest` a killed process left (kill -9, a power cut): each rerun added
    one, unseen (hidden names), as large as what had arrived. One still written to is kept."""
    now = time.time()
    for part in dest.parent.glob(f".{glob.escape(dest.name)}.part-*"):
        try:
            if now - part.stat().st_mtime > ABANDONED_PART_S:
                part.unlink()
        except OSError:
            continue  # gone meanwhile, or not ours to remove


def download_file(
    url: str,
    dest: str | Path,
    *,
    timeout: float = 60.0,
    max_seconds: float | None = None,
    expected_sha256: str | None = None,
    max_bytes: int | None = None,
    progress: bool = True,
    policy: AddressPolicy = ALLOW_ALL,
) -> Path:
    """Stream a URL to `dest`, atomically: a partial download never sits at `dest`.

    Time limits: name lookup, connect, headers and every redirect hop within `timeout` seconds
    in all (a server trickling headers cannot hold the download); then no single wait for the
    body longer than `timeout`; and, when `max_seconds` is given, the whole download within it.
    The data goes to a temporary file next to `dest` and is renamed into place only after it is
    complete and, when `expected_sha256` is given, its checksum matches.
    """
    dest = Path(dest)
    shown = redact_url(url)
    started = time.monotonic()
    head_seconds = timeout if max_seconds is None else min(timeout, max_seconds)
    response, head_deadline = open_url(url, timeout=head_seconds, stall=timeout, policy=policy)
    head_deadline.cancel()
    body_seconds = None if max_seconds is None else max(0.001, max_seconds - (time.monotonic() - started))
    deadline = _Deadline(body_seconds, timeout, total=max_seconds)
    deadline.watch(response.conn.sock)
    temp: Path | None = None
    handle = None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned_parts(dest)
        # The file and its name come together: a SIGTERM between mkstemp and the try that removes
        # the file on failure left a .part file behind.
        with signals_deferred():
            fd, temp_name = tempfile.mkstemp(prefix=f".{dest.name}.part-", dir=dest.parent)
            temp = Path(temp_name)
            handle = os.fdopen(fd, "wb")
        digest = hashlib.sha256()
        with response, handle:
            length = _content_length(response)
            if max_bytes is not None and length is not None and length > max_bytes:
                raise FetchError(
                    f"{shown}: the file is {_mb(length)}, above the {_mb(max_bytes)} limit", code="too_large"
                )
            # A login or error page was saved as the file; a server that labels a real archive
            # text/html is believed by the bytes, which do not start with markup.
            ctype = _content_type(response)
            page = ctype in ("text/html", "application/xhtml+xml")
            bar = None
            if progress:
                from rich.console import Console
                from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

                # Progress goes to stderr so stdout stays clean for results; where stderr is no
                # terminal it drew nothing but a blank line.
                # (Named apart from `shown`, the URL every message names: it was the console's repr.)
                terminal = Console(stderr=True)
                bar = Progress(
                    *Progress.get_default_columns(),
                    DownloadColumn(),
                    TransferSpeedColumn(),
                    console=terminal,
                    transient=True,
                    disable=not terminal.is_terminal,
                )
                bar.start()
                task = bar.add_task(f"downloading {dest.name}", total=length)
            try:
                total = 0
                for chunk in _read_chunks(response, shown, deadline):
                    if page and total == 0 and chunk.lstrip()[:1] == b"<":
                        raise FetchError(
                            f"{shown}: the URL returned a web page, not the file (Content-Type {ctype}); "
                            "check the link (a login, error or download page?)"
                        )
                    total += len(chunk)
                    if max_bytes is not None and total > max_bytes:
                        too_big = f"{shown}: the download is larger than the {_mb(max_bytes)} limit"
                        raise FetchError(too_big, code="too_large")
                    handle.write(chunk)
                    digest.update(chunk)
                    if bar is not None:
                        bar.update(task, advance=len(chunk))
            finally:
                if bar is not None:
                    bar.stop()
            if length is not None and total != length:
                raise FetchError(
                    f"{shown}: the download stopped early ({total} of {length} bytes); try again"
                )
            handle.flush()
            os.fsync(handle.fileno())
        if expected_sha256 is not None and digest.hexdigest() != expected_sha256.lower():
            raise FetchError(
                f"{shown}: checksum mismatch (expected sha256 {expected_sha256}, got {digest.hexdigest()}); "
                "the file is damaged or has changed on the server"
            )
        os.chmod(temp, 0o644)  # mkstemp makes files private; a download is an ordinary file
        os.replace(temp, dest)
    except BaseException:
        response.close()
        if temp is not None:
            temp.unlink(missing_ok=True)
        if handle is not None:
            handle.close()  # already closed unless the signal came as the file was made
        raise
    finally:
        deadline.cancel()
    return dest
