"""Shared test fixtures: tiny generated image trees, a tiny model bundle, a local HTTP server.

Everything is made inside the tests (tmp_path) and is small enough for a 2-core machine:
40 px images, a seed-cnn with 32 px input and 4 filters.
"""

from __future__ import annotations

import collections
import contextlib
import io
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sportsdet.export import onnx_metadata
from sportsdet.preprocess import Preprocessing

# A name with a space on purpose: real class folders have them ("air hockey").
CLASSES = ["air hockey", "polo", "rowing"]
# One clearly different colour per class so a tiny model can learn them in a few epochs.
CLASS_COLOURS = [(220, 40, 40), (40, 200, 60), (50, 70, 230)]
TINY_INPUT = 32


# ----------------------------------------------------------------------------- images


def make_image(colour: tuple[int, int, int], *, size: int = 40, seed: int = 0) -> Image.Image:
    """A solid colour with mild noise (so JPEG files differ and are not exact duplicates)."""
    rng = np.random.default_rng(seed)
    base = np.array(colour, dtype=np.int16)[None, None, :]
    noise = rng.integers(-25, 26, size=(size, size, 3), dtype=np.int16)
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")


def allow_heif_writing() -> None:
    """Let Pillow save HEIF (an iPhone's HEIC) in this process: registering pillow-heif, as sportsdet
    does before reading one, also adds its writer. Tests that need a process where nothing was
    registered yet run sportsdet in a subprocess."""
    from sportsdet.imageio import enable_decoder

    enable_decoder("HEIF", "test")


def image_bytes(colour: tuple[int, int, int] = (200, 50, 50), fmt: str = "JPEG", size: int = 40) -> bytes:
    if fmt == "HEIF":
        allow_heif_writing()
    buffer = io.BytesIO()
    make_image(colour, size=size).save(buffer, format=fmt)
    return buffer.getvalue()


def make_image_tree(
    root: Path,
    classes: list[str] = CLASSES,
    per_class: int = 4,
    *,
    splits: dict[str, int] | None = None,
    size: int = 40,
) -> Path:
    """root/<class>/<i>.jpg, or with `splits` ({"train": 6, "valid": 2, ...}) root/<split>/<class>/<i>.jpg."""
    layout = splits or {"": per_class}
    seed = 0
    for split, count in layout.items():
        for cls_index, name in enumerate(classes):
            folder = root / split / name if split else root / name
            folder.mkdir(parents=True, exist_ok=True)
            colour = CLASS_COLOURS[cls_index % len(CLASS_COLOURS)]
            for i in range(count):
                seed += 1
                make_image(colour, size=size, seed=seed).save(folder / f"{i:03d}.jpg", quality=90)
    return root


@pytest.fixture
def image_tree(tmp_path: Path) -> Path:
    """A folder-per-class tree: 3 classes x 4 JPEGs of 40 px."""
    return make_image_tree(tmp_path / "tree")


# ----------------------------------------------------------------------------- bundles


def make_tiny_bundle(path: Path, labels: list[str] = CLASSES, *, seed: int = 0) -> Path:
    """A freshly initialised (untrained) seed-cnn saved as a bundle: 32 px input, 4 filters."""
    import torch

    from sportsdet.bundle import save_bundle
    from sportsdet.models import build_model, get_model_spec
    from sportsdet.preprocess import Preprocessing

    config = {"input_size": TINY_INPUT, "filters": 4, "hidden": 8}
    torch.manual_seed(seed)
    model = build_model("seed-cnn", num_classes=len(labels), **config)
    spec = get_model_spec("seed-cnn")
    base = spec.preprocessing.to_dict()
    base["input_size"] = TINY_INPUT
    return save_bundle(
        path,
        state_dict=model.state_dict(),
        model_name="seed-cnn",
        model_config=config,
        labels=labels,
        preprocessing=Preprocessing.from_dict(base),
        output_key=spec.output_key,
    )


@pytest.fixture
def tiny_bundle(tmp_path: Path) -> Path:
    """An untrained seed-cnn bundle over CLASSES (outputs are deterministic, not meaningful)."""
    return make_tiny_bundle(tmp_path / "bundle")


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch) -> Callable[..., int]:
    """Run `sportsdet ARGS...` in this process through the real entry point; returns the exit code
    (output stays in capsys)."""
    from sportsdet.cli import main

    def run(*args: str) -> int:
        monkeypatch.setattr(sys, "argv", ["sportsdet", *args])
        with pytest.raises(SystemExit) as exited:
            main()
        return exited.value.code

    return run


# ----------------------------------------------------------------------------- HTTP server


def _good_jpeg() -> bytes:
    return image_bytes((30, 160, 60), "JPEG", size=48)


def _route_table() -> dict[str, Callable[[BaseHTTPRequestHandler], None]]:
    jpeg = _good_jpeg()
    png = image_bytes((30, 60, 200), "PNG", size=48)
    download = bytes(range(256)) * 1200  # 300 KB, deterministic

    def send(
        handler: BaseHTTPRequestHandler,
        body: bytes,
        ctype: str | None,
        status: int = 200,
        headers: dict[str, str] | None = None,
    ) -> None:
        handler.send_response(status)
        if ctype:
            handler.send_header("Content-Type", ctype)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def huge_declared(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.send_header("Content-Length", str(50_000_000))
        h.end_headers()
        h.wfile.write(b"\xff\xd8" + b"\0" * 1000)

    def huge_stream(h: BaseHTTPRequestHandler) -> None:
        # No Content-Length: the client must stop at its own cap.
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.end_headers()
        for _ in range(80):  # up to 5 MB
            h.wfile.write(b"\0" * 65536)

    def slow(h: BaseHTTPRequestHandler) -> None:
        time.sleep(1.5)
        send(h, jpeg, "image/jpeg")

    def trickle(h: BaseHTTPRequestHandler) -> None:
        # Each byte arrives well within a socket timeout; only a total deadline stops this.
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.end_headers()
        for _ in range(60):
            h.wfile.write(b"\0")
            h.wfile.flush()
            time.sleep(0.05)

    def short_body(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", "1000")
        h.end_headers()
        h.wfile.write(b"x" * 500)

    def cut_png(h: BaseHTTPRequestHandler) -> None:
        # The connection closes before the 12-byte IEND chunk: Pillow still decodes what came.
        h.send_response(200)
        h.send_header("Content-Type", "image/png")
        h.send_header("Content-Length", str(len(png)))
        h.end_headers()
        h.wfile.write(png[:-12])

    def negative_length(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", "-1")  # nonsense: read to the end, as http.client does
        h.end_headers()
        h.wfile.write(download)

    def chunked_with_length(h: BaseHTTPRequestHandler) -> None:
        # Both headers: HTTP says the length is ignored; the body is the chunks.
        h.protocol_version = "HTTP/1.1"
        h.send_response(200)
        h.send_header("Content-Type", "image/png")
        h.send_header("Transfer-Encoding", "chunked")
        h.send_header("Content-Length", "99999")
        h.send_header("Connection", "close")
        h.end_headers()
        for start in range(0, len(png), 100):
            piece = png[start : start + 100]
            h.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        h.wfile.write(b"0\r\n\r\n")

    return {
        "/good.jpg": lambda h: send(h, jpeg, "image/jpeg"),
        "/cut.png": cut_png,
        "/chunked.png": chunked_with_length,
        "/negative-length.bin": negative_length,
        "/octet.png": lambda h: send(h, png, "application/octet-stream"),
        "/notype.png": lambda h: send(h, png, None),
        "/octet-junk": lambda h: send(h, b"definitely not an image " * 20, "application/octet-stream"),
        "/page.html": lambda h: send(
            h, b"<!doctype html><html><body>hi</body></html>", "text/html; charset=utf-8"
        ),
        "/data.json": lambda h: send(h, b'{"a": 1}', "application/json"),
        "/missing.jpg": lambda h: send(h, b"not found", "text/plain", status=404),
        "/error": lambda h: send(h, b"boom", "text/plain", status=500),
        "/busy": lambda h: send(h, b"later", "text/plain", status=503, headers={"Retry-After": "120"}),
        "/private.jpg": lambda h: send(h, b"no", "text/plain", status=403),
        "/proxy-login": lambda h: send(h, b"no", "text/plain", status=407),
        "/empty.jpg": lambda h: send(h, b"", "image/jpeg"),
        "/huge-declared.jpg": huge_declared,
        "/huge-stream.jpg": huge_stream,
        "/slow.jpg": slow,
        "/trickle.jpg": trickle,
        "/redirect-good": redirect("/good.jpg"),
        "/redirect-file": redirect("file:///etc/passwd"),
        "/download.bin": lambda h: send(h, download, "application/octet-stream"),
        "/short.bin": short_body,
    }


class LocalServer:
    """A threaded HTTP server on 127.0.0.1 with canned routes; `url(path)` gives full URLs."""

    GOOD_JPEG = staticmethod(_good_jpeg)
    DOWNLOAD = bytes(range(256)) * 1200

    def __init__(self) -> None:
        routes = self.routes = _route_table()
        hits = self.hits = collections.Counter()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802  (http.server's naming)
                hits[self.path.split("?")[0]] += 1
                route = routes.get(self.path.split("?")[0])
                if route is None:
                    self.send_error(404)
                    return
                try:
                    route(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up on purpose (size cap, timeout)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass  # keep test output clean

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self.server.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        host, port = self.server.server_address[:2]
        self.base = f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base + path

    def add(self, path: str, body: bytes, content_type: str = "application/octet-stream") -> str:
        """Serve `body` at `path` from now on; returns its URL."""

        def handler(h: BaseHTTPRequestHandler) -> None:
            h.send_response(200)
            h.send_header("Content-Type", content_type)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)

        self.routes[path] = handler
        return self.url(path)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def http_server() -> Iterator[LocalServer]:
    server = LocalServer()
    try:
        yield server
    finally:
        server.close()


# --- a tiny ONNX colour classifier with sportsdet metadata (made with onnx, no torch) ------------

COLOUR_LABELS = ["red", "green", "blue"]
COLOUR_SPEC = Preprocessing(input_size=16, resize="squash", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def make_colour_onnx(
    path: Path,
    *,
    labels: list[str] = COLOUR_LABELS,
    spec: Preprocessing = COLOUR_SPEC,
    metadata: dict[str, str] | None = None,
    drop: tuple[str, ...] = (),
    classes: int | None = None,
) -> Path:
    """Write a tiny ONNX colour classifier with sportsdet metadata (minus `drop`)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    classes = classes or len(labels)
    weights = np.zeros((3, classes), np.float32)
    weights[np.arange(min(3, classes)), np.arange(min(3, classes))] = 10.0
    size = spec.input_size
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "colour",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", classes])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata is None:
        metadata = onnx_metadata(labels=labels, preprocessing=spec, model_name="colour")
    for key, value in metadata.items():
        if key not in drop:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def redirect(target: str) -> Callable[[BaseHTTPRequestHandler], None]:
    """A LocalServer route answering 302 to `target` (tests of redirect handling)."""

    def handler(h: BaseHTTPRequestHandler) -> None:
        h.send_response(302)
        h.send_header("Location", target)
        h.send_header("Content-Length", "0")
        h.end_headers()

    return handler


def resolve_host_to(monkeypatch: pytest.MonkeyPatch, host: str, address: str) -> None:
    """Make the name `host` resolve to `address` (an IPv4 string); every other name as before."""
    real = socket.getaddrinfo

    def fake(name, port, *args, **kwargs):
        if name == host:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real(name, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


# --- a real `sportsdet serve` process -----------------------------------------------------------


def start_serve(model: Path, *options: str) -> tuple[subprocess.Popen, str]:
    """`python -m sportsdet serve --model MODEL OPTIONS` on a free 127.0.0.1 port, waited for until
    /readyz answers 200: (the process, its base URL). The caller stops the process."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    env.pop("SPORTSDET_API_KEY", None)
    command = [sys.executable, "-m", "sportsdet", "serve", "--model", str(model), "--port", str(port)]
    process = subprocess.Popen(
        [*command, *options], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=1) as response:
                if response.status == 200:
                    return process, base
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise AssertionError(f"sportsdet serve did not start: {process.communicate(timeout=10)[0][-2000:]}")


@pytest.fixture
def ctrl_c_raises() -> Iterator[None]:
    """SIGINT raises KeyboardInterrupt, as in a terminal: a process started in the background
    (CI runners, `cmd &`) inherits SIGINT ignored, and Python then leaves it ignored."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)



@contextlib.contextmanager
def held_by_another_process(folder: Path) -> Iterator[int]:
    """`folder`'s lock (files.hold_folder: a run folder's, a Ray output folder's) held by another
    process for the block; yields its pid. The lock dies with the process at the end."""
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from pathlib import Path; from sportsdet.files import hold_folder\n"
         "with hold_folder(Path(sys.argv[1]), cannot='x', busy='y', fix='z'):\n"
         "    print('held', flush=True); time.sleep(60)", str(folder)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()
