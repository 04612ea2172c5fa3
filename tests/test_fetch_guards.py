"""The guarded downloader: one deadline over every step, no credentials in URLs, the address policy.

Against real servers on 127.0.0.1 that answer slowly on purpose. Before the single deadline,
a `timeout=0.5` download took as long as the server liked when the headers or the redirect
hops came slowly (each socket read was within the limit).
"""

from __future__ import annotations

import ipaddress
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from conftest import LocalServer, make_colour_onnx, redirect, resolve_host_to
from typer.testing import CliRunner

from sportsdet.cli import app
from sportsdet.fetch import PUBLIC_ONLY, AddressPolicy, FetchError, fetch_url, redact_url

# Allows the test server (127.0.0.1) only, so a redirect from it to anywhere local is refused.
LOOPBACK_ONLY = AddressPolicy(allow_private=False, allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),))


def _slow_headers(h: BaseHTTPRequestHandler) -> None:
    # A header line every 0.1 s for 3 s: every socket read succeeds well within any timeout.
    h.send_response(200)
    h.send_header("Content-Type", "image/jpeg")
    for i in range(30):
        h.send_header(f"X-Slow-{i}", "x")
        h.flush_headers()
        time.sleep(0.1)
    body = LocalServer.GOOD_JPEG()
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def _slow_hop(n: int):
    def handler(h: BaseHTTPRequestHandler) -> None:
        time.sleep(0.3)  # each hop alone is well within the limit
        h.send_response(302)
        h.send_header("Location", f"/hop{n - 1}" if n > 1 else "/good.jpg")
        h.send_header("Content-Length", "0")
        h.end_headers()

    return handler



@pytest.fixture(scope="module")
def server() -> LocalServer:
    local = LocalServer()
    local.routes["/slow-headers.jpg"] = _slow_headers
    for n in range(1, 5):
        local.routes[f"/hop{n}"] = _slow_hop(n)
    port = local.server.server_address[1]
    local.routes["/to-loopback2"] = redirect(f"http://127.0.0.2:{port}/good.jpg")
    local.routes["/to-metadata"] = redirect("http://169.254.169.254/latest/meta-data/")
    local.routes["/to-private"] = redirect("http://10.0.0.7/photo.jpg")
    local.routes["/to-creds"] = redirect(f"http://admin:hunter2@127.0.0.1:{port}/good.jpg")
    yield local
    local.close()


# ----------------------------------------------------------------------------- (a) one deadline


def test_slow_headers_stop_at_the_deadline(server: LocalServer) -> None:
    start = time.monotonic()
    with pytest.raises(FetchError, match=r"within 0.5 s") as info:
        fetch_url(server.url("/slow-headers.jpg"), timeout=0.5)
    assert time.monotonic() - start < 1.2
    assert info.value.code == "timeout"


def test_slow_redirect_hops_share_one_deadline(server: LocalServer) -> None:
    # Four hops of 0.3 s: 1.2 s in all, each hop alone far below the 0.5 s limit.
    start = time.monotonic()
    with pytest.raises(FetchError, match=r"0.5 s"):
        fetch_url(server.url("/hop4"), timeout=0.5)
    assert time.monotonic() - start < 1.0


def test_slow_redirect_hops_arrive_with_time_to_spare(server: LocalServer) -> None:
    assert fetch_url(server.url("/hop4"), timeout=5) == LocalServer.GOOD_JPEG()


def test_trickled_body_is_cut_at_the_deadline(http_server: LocalServer) -> None:
    start = time.monotonic()
    with pytest.raises(FetchError, match=r"took longer than 0.4 s"):
        fetch_url(http_server.url("/trickle.jpg"), timeout=0.4)
    assert time.monotonic() - start < 0.9


def test_download_file_headers_and_redirects_share_one_limit(server: LocalServer, tmp_path: Path) -> None:
    # `data fetch` downloads: the header/redirect phase is bounded in all, not per read.
    from sportsdet.fetch import download_file

    for path in ("/slow-headers.jpg", "/hop4"):
        start = time.monotonic()
        with pytest.raises(FetchError, match=r"within 0.5 s"):
            download_file(server.url(path), tmp_path / "a.bin", timeout=0.5, progress=False)
        assert time.monotonic() - start < 1.2, path
    assert not list(tmp_path.iterdir())


def test_download_file_max_seconds_bounds_the_whole_download(
    http_server: LocalServer, tmp_path: Path
) -> None:
    from sportsdet.fetch import download_file

    # The trickled body never stalls for 5 s, so only the overall limit ends it.
    start = time.monotonic()
    with pytest.raises(FetchError, match=r"took longer than 0.6 s"):
        download_file(http_server.url("/trickle.jpg"), tmp_path / "a.bin", timeout=5, max_seconds=0.6,
                      progress=False)  # fmt: skip
    assert time.monotonic() - start < 1.5
    assert not list(tmp_path.iterdir())
    # Without an overall limit the same trickle completes (a slow link is not an error).
    done = download_file(http_server.url("/trickle.jpg"), tmp_path / "b.bin", timeout=5, progress=False)
    assert done.read_bytes() == bytes(60)


# ----------------------------------------------------------------------------- (b) credentials


@pytest.mark.parametrize(
    "userinfo", ["admin:hunter2", "admin:hunter2:with:colons", "hunter2", "admin:hunter2%2Fx"]
)
def test_credentials_are_refused_and_never_echoed(server: LocalServer, userinfo: str) -> None:
    url = server.url("/creds.jpg").replace("http://", f"http://{userinfo}@")
    with pytest.raises(FetchError, match="user name or password") as info:
        fetch_url(url, timeout=2)
    assert "hunter2" not in str(info.value)
    assert "cannot resolve" not in str(info.value)
    assert server.hits["/creds.jpg"] == 0  # never even connected


def test_redirect_to_a_url_with_credentials_is_refused(server: LocalServer) -> None:
    with pytest.raises(FetchError, match="user name or password") as info:
        fetch_url(server.url("/to-creds"), timeout=2)
    assert "hunter2" not in str(info.value)


def test_redact_url() -> None:
    assert redact_url("https://u:p@host.example/a.jpg?x=1") == "https://***@host.example/a.jpg?x=1"
    assert redact_url("https://host.example/@me/a.jpg") == "https://host.example/@me/a.jpg"
    assert "pa" not in redact_url("http://u:pa/ss@host/a.jpg").split("@")[0]


def test_predict_cli_never_shows_the_password(server: LocalServer, tmp_path: Path) -> None:
    model = make_colour_onnx(tmp_path / "colour.onnx")
    url = server.url("/good.jpg").replace("http://", "http://me:hunter2@")
    for fmt in ("jsonl", "table", "csv"):
        result = CliRunner().invoke(app, ["predict", url, "--model", str(model), "--format", fmt])
        shown = result.output + (result.stderr if result.stderr_bytes is not None else "")
        assert "hunter2" not in shown, fmt
        if fmt != "table":  # the table wraps long messages
            assert "user name or password" in shown, fmt


# ----------------------------------------------------------------------------- the address policy


def test_predict_default_allows_local_addresses(server: LocalServer) -> None:
    assert fetch_url(server.url("/good.jpg"), timeout=2) == LocalServer.GOOD_JPEG()


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1:{port}/good.jpg", "loopback"),
        ("http://localhost:{port}/good.jpg", "loopback"),  # a name that resolves to loopback
        ("http://10.1.2.3/photo.jpg", "private"),
        ("http://192.168.1.1/photo.jpg", "private"),
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://224.0.0.1/photo.jpg", "multicast"),
        ("http://0.0.0.0:{port}/good.jpg", "unspecified"),
        ("http://[::1]:{port}/good.jpg", "loopback"),
        ("http://[::ffff:127.0.0.1]:{port}/good.jpg", "loopback"),
        ("http://100.64.0.1/photo.jpg", "non-public"),
    ],
)
def test_public_only_refuses_local_addresses(server: LocalServer, url: str, kind: str) -> None:
    url = url.format(port=server.server.server_address[1])
    start = time.monotonic()
    with pytest.raises(FetchError, match=f"refused to connect.*{kind}") as info:
        fetch_url(url, timeout=5, policy=PUBLIC_ONLY)
    assert info.value.code == "url_refused"
    assert time.monotonic() - start < 1  # refused before any connection attempt


def test_host_name_resolving_to_a_private_address_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    resolve_host_to(monkeypatch, "images.example.com", "10.20.30.40")
    with pytest.raises(FetchError, match=r"images.example.com is 10.20.30.40 \(private\)"):
        fetch_url("http://images.example.com/a.jpg", timeout=2, policy=PUBLIC_ONLY)


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/to-loopback2", "loopback"),
        ("/to-metadata", "link-local"),
        ("/to-private", "private"),
    ],
)
def test_redirects_to_local_addresses_are_refused(server: LocalServer, path: str, kind: str) -> None:
    # The first hop is allowed (the test server is on 127.0.0.1), the redirect target is not.
    with pytest.raises(FetchError, match=f"refused to connect.*{kind}"):
        fetch_url(server.url(path), timeout=2, policy=LOOPBACK_ONLY)
    assert fetch_url(server.url("/good.jpg"), timeout=2, policy=LOOPBACK_ONLY) == LocalServer.GOOD_JPEG()


def test_data_fetch_never_shows_the_password(tmp_path: Path) -> None:
    from sportsdet.data.fetch_dataset import fetch_dataset
    from sportsdet.errors import SportsdetError

    cases = [
        ("http://me:hunter2@127.0.0.1:1/photos.zip", "user name or password"),
        ("http://me:hunter2@127.0.0.1:1/page.html", "does not end in .zip"),
    ]
    for url, message in cases:
        with pytest.raises(SportsdetError, match=message) as info:
            fetch_dataset(url, tmp_path / "data", progress=False)
        assert "hunter2" not in str(info.value)


def test_non_ascii_path_is_percent_encoded(server: LocalServer) -> None:
    server.routes["/caf%C3%A9.jpg"] = server.routes["/good.jpg"]
    assert fetch_url(server.url("/café.jpg"), timeout=2) == LocalServer.GOOD_JPEG()


def test_the_connected_peer_is_checked_too(server: LocalServer) -> None:
    """Besides every resolved address before connecting, the address actually connected to is
    checked (a resolver answer is not trusted on its own): refused here on the second look."""

    class SecondLookRefuses(AddressPolicy):
        def refusal(self, address):  # noqa: ANN001, ANN201
            self.seen.append(str(address))
            return "loopback" if len(self.seen) > 1 else None

    policy = SecondLookRefuses(allow_private=False)
    object.__setattr__(policy, "seen", [])
    with pytest.raises(FetchError, match=r"refused to connect.*127.0.0.1 \(loopback\)"):
        fetch_url(server.url("/good.jpg"), timeout=2, policy=policy)
    assert policy.seen == ["127.0.0.1", "127.0.0.1"]  # before connecting, then the peer
