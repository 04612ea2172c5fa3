"""fetch_url / download_file against a real HTTP server on 127.0.0.1 (short timeouts)."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pytest
from conftest import LocalServer

from sportsdet.errors import SportsdetError
from sportsdet.fetch import download_file, fetch_url


def test_good_image(http_server: LocalServer) -> None:
    assert fetch_url(http_server.url("/good.jpg"), timeout=2) == LocalServer.GOOD_JPEG()


def test_redirect_to_image_is_followed(http_server: LocalServer) -> None:
    assert fetch_url(http_server.url("/redirect-good"), timeout=2) == LocalServer.GOOD_JPEG()


def test_five_redirects_are_followed_and_a_sixth_is_refused(http_server: LocalServer) -> None:
    from conftest import redirect

    from sportsdet.fetch import MAX_REDIRECTS

    for hop in range(1, MAX_REDIRECTS + 1):  # /hop1 -> /hop2 -> ... -> /hop6 -> the photo
        http_server.routes[f"/hop{hop}"] = redirect(f"/hop{hop + 1}")
    http_server.routes[f"/hop{MAX_REDIRECTS + 1}"] = redirect("/good.jpg")
    assert fetch_url(http_server.url("/hop2"), timeout=2) == LocalServer.GOOD_JPEG()  # 5 redirects
    with pytest.raises(SportsdetError, match=f"more than {MAX_REDIRECTS} redirects"):
        fetch_url(http_server.url("/hop1"), timeout=2)  # 6


def test_a_body_of_exactly_the_limit_is_taken(http_server: LocalServer) -> None:
    photo = LocalServer.GOOD_JPEG()
    url = http_server.add("/exact.jpg", photo, "image/jpeg")
    assert fetch_url(url, timeout=2, max_bytes=len(photo)) == photo
    with pytest.raises(SportsdetError, match="limit"):
        fetch_url(url, timeout=2, max_bytes=len(photo) - 1)


@pytest.mark.parametrize("path", ["/octet.png", "/notype.png", "/chunked.png"])
def test_unlabelled_bytes_accepted_when_they_are_an_image(http_server: LocalServer, path: str) -> None:
    assert fetch_url(http_server.url(path), timeout=2)[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/missing.jpg", r"HTTP 404 from URL \(Not Found\); check that the link is right and public"),
        ("/error", r"HTTP 500 from URL \(.*\); the server failed: try again later"),
        # A busy server is waited for, not a link to check.
        ("/busy", r"HTTP 503 from URL \(.*\); the server is busy or down: try again later \(it asks to "
         r"wait 120 s\)"),
        ("/private.jpg", r"HTTP 403 from URL \(.*\); the server refuses it without a login"),
        # A 407 is the proxy's: the link is fine, the proxy setting lacks its login.
        ("/proxy-login", r"HTTP 407 from URL \(.*\); the proxy asks for a login: set it in HTTPS_PROXY"),
        ("/page.html", "the URL returned a web page, not an image"),
        ("/data.json", "returned application/json, not an image"),
        ("/octet-junk", "not an image"),
        ("/empty.jpg", "empty response"),
        ("/huge-declared.jpg", "above the 1.0 MB limit"),
        ("/huge-stream.jpg", "larger than the 1.0 MB limit"),
        ("/redirect-file", "redirect could not be followed"),
        ("/cut.png", r"the download stopped early \(\d+ of \d+ bytes\); try again"),
    ],
)
def test_bad_responses(http_server: LocalServer, path: str, message: str) -> None:
    url = http_server.url(path)
    with pytest.raises(SportsdetError, match=message) as info:
        fetch_url(url, timeout=2, max_bytes=1024 * 1024)
    assert url in str(info.value)  # the message names the URL


def test_slow_server_times_out(http_server: LocalServer) -> None:
    start = time.monotonic()
    with pytest.raises(SportsdetError, match=r"no answer within 0.3 s"):
        fetch_url(http_server.url("/slow.jpg"), timeout=0.3)
    assert time.monotonic() - start < 1.2


def test_trickling_server_hits_total_deadline(http_server: LocalServer) -> None:
    # Bytes arrive every 50 ms (no socket timeout fires) for 3 s; the 0.5 s deadline must stop it.
    start = time.monotonic()
    with pytest.raises(SportsdetError, match=r"took longer than 0.5 s"):
        fetch_url(http_server.url("/trickle.jpg"), timeout=0.5)
    assert time.monotonic() - start < 1.5


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/a.jpg", "unsupported URL scheme"),
        ("file:///etc/passwd", "only http:// and https://"),
        ("http:///nohost.jpg", "no host name"),
        ("http://127.0.0.1:1/a.jpg", "connection refused"),
        ("http://name-that-does-not-exist.invalid/a.jpg", "cannot resolve host"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(SportsdetError, match=message):
        fetch_url(url, timeout=2)


@pytest.mark.parametrize("limit", [float("inf"), 1e10])
def test_a_limit_beyond_any_timer_means_no_limit(http_server: LocalServer, tmp_path: Path, limit) -> None:
    # `--timeout inf` failed every URL: "unexpected OverflowError: timestamp out of range".
    assert fetch_url(http_server.url("/good.jpg"), timeout=limit) == LocalServer.GOOD_JPEG()
    dest = tmp_path / f"{limit}.bin"
    download_file(http_server.url("/download.bin"), dest, timeout=limit, max_seconds=limit, progress=False)
    assert dest.read_bytes() == LocalServer.DOWNLOAD


def test_download_file(http_server: LocalServer, tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "data.bin"
    expected = hashlib.sha256(LocalServer.DOWNLOAD).hexdigest()
    result = download_file(
        http_server.url("/download.bin"), dest, timeout=2, expected_sha256=expected, progress=False
    )
    assert result == dest
    assert dest.read_bytes() == LocalServer.DOWNLOAD
    assert [p.name for p in dest.parent.iterdir()] == ["data.bin"]  # no temp file left behind


def test_a_failure_as_the_partial_file_is_opened_leaves_nothing(http_server: LocalServer, tmp_path: Path,
                                                                 monkeypatch) -> None:
    # The cleanup closed a file object never made: UnboundLocalError hid the real error, and the
    # .part file stayed.
    import os

    def fails(*args, **kwargs):
        raise MemoryError("fdopen failed")

    monkeypatch.setattr(os, "fdopen", fails)
    dest = tmp_path / "downloads" / "data.bin"
    with pytest.raises(MemoryError, match="fdopen failed"):
        download_file(http_server.url("/download.bin"), dest, timeout=2, progress=False)
    assert list(dest.parent.iterdir()) == []


def test_download_checksum_mismatch_keeps_old_file(http_server: LocalServer, tmp_path: Path) -> None:
    dest = tmp_path / "data.bin"
    dest.write_bytes(b"previous good copy")
    with pytest.raises(SportsdetError, match="checksum mismatch"):
        download_file(
            http_server.url("/download.bin"), dest, timeout=2, expected_sha256="0" * 64, progress=False
        )
    assert dest.read_bytes() == b"previous good copy"  # never corrupt what was there
    assert [p.name for p in tmp_path.iterdir()] == ["data.bin"]


@pytest.mark.parametrize("progress", [False, True])
@pytest.mark.parametrize(
    ("path", "message"),
    [("/short.bin", "stopped early|connection broke"), ("/missing.jpg", "HTTP 404"),
     ("/page.html", r"the URL returned a web page, not the file \(Content-Type text/html\)")],
)  # fmt: skip
def test_download_failures_leave_nothing_and_name_the_url(
    http_server: LocalServer, tmp_path: Path, path: str, message: str, progress: bool
) -> None:
    # With the progress bar (the CLI's default) an error after the headers named the bar's console,
    # "<console width=80 None>: the download stopped early"; a login page was kept as the archive.
    dest = tmp_path / "data.bin"
    with pytest.raises(SportsdetError, match=message) as caught:
        download_file(http_server.url(path), dest, timeout=2, progress=progress)
    assert str(caught.value).startswith(http_server.url(path) + ": ")
    assert list(tmp_path.iterdir()) == []


def test_an_archive_a_server_labels_text_html_is_believed_by_its_bytes(http_server, tmp_path: Path) -> None:
    # The web-page refusal went by the header alone: a real zip sent as text/html was refused.
    body = b"PK\x03\x04" + bytes(200)
    url = http_server.add("/mislabelled.zip", body, content_type="text/html; charset=utf-8")
    assert download_file(url, tmp_path / "a.zip", timeout=2, progress=False).read_bytes() == body


def test_a_negative_content_length_is_ignored(http_server: LocalServer, tmp_path: Path) -> None:
    # It was compared with the bytes received: "stopped early (307200 of -1 bytes)".
    url = http_server.url("/negative-length.bin")
    dest = download_file(url, tmp_path / "d.bin", timeout=2, progress=False)
    assert dest.read_bytes() == LocalServer.DOWNLOAD


def test_partial_downloads_a_killed_process_left_are_removed(http_server: LocalServer, tmp_path) -> None:
    # kill -9 (or a power cut) leaves the hidden .part file; each rerun added another.
    import os

    abandoned = tmp_path / ".data.bin.part-k1ll3d"
    abandoned.write_bytes(b"x" * 1000)
    os.utime(abandoned, (time.time() - 7200, time.time() - 7200))
    in_flight = tmp_path / ".data.bin.part-w0rk1n"  # another download, still writing
    in_flight.write_bytes(b"y")
    download_file(http_server.url("/download.bin"), tmp_path / "data.bin", timeout=2, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".data.bin.part-w0rk1n", "data.bin"]


def test_download_with_progress_bar(http_server: LocalServer, tmp_path: Path) -> None:
    dest = download_file(http_server.url("/download.bin"), tmp_path / "d.bin", timeout=2, progress=True)
    assert dest.stat().st_size == len(LocalServer.DOWNLOAD)
