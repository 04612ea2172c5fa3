"""The HTTP service: FastAPI over the same Predictor, preprocessing and bundles as `sportsdet predict`.

    POST /v1/predict   images as multipart uploads, raw image bytes, or JSON {"urls": [...]}
    GET  /v1/model     labels, preprocessing, metrics, versions, limits
    GET  /healthz      alive;  GET /readyz  model loaded
    GET  /metrics      Prometheus text
    GET  /             the web page (static files shipped in the package, no CDN)

Every request is bounded: body bytes, images per request, pixels per image (checked from the
header, before decoding), and total time. Decoding and URL downloads run on thread pools, off
the event loop; the model runs through `MicroBatcher`, which refuses work (429) rather than
queueing it without limit. Errors are JSON `{"error": {"code", "message"}}` with a stable code,
never a traceback. Torch-free: importing this module imports no torch.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel, Field, ValidationError
from python_multipart.multipart import parse_options_header
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from sportsdet._version import __version__
from sportsdet.errors import ImageLoadError, SportsdetError
from sportsdet.fetch import DEFAULT_MAX_BYTES, AddressPolicy, FetchError, fetch_url, redact_url
from sportsdet.files import cpu_count
from sportsdet.imageio import MAX_DECODE_PIXELS, is_image_name, misleading_name_note, open_header, sniff_head
from sportsdet.metrics import top_classes
from sportsdet.predict import InputItem, Predictor
from sportsdet.runtime import model_lanes, preferred_batch_size
from sportsdet.serve.batching import MicroBatcher, Overloaded

log = logging.getLogger("sportsdet.serve")
STATIC = Path(__file__).resolve().parent / "static"
RAW_BODY_NAME = "<body>"  # the name of an image sent as the whole request body
API_KEY_ENV = "SPORTSDET_API_KEY"
# Open without the key: the probes, and the page and its assets (which hold no data; the page
# asks for the key and sends it with every API call).
# /docs and /openapi.json describe the API, no data: a browser cannot send a key to open them.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/", "/favicon.ico", "/docs", "/openapi.json"})
# /docs-assets/: Swagger UI's own files, from the swagger-ui-bundle package (no CDN: works offline).
PUBLIC_PREFIXES = ("/static/", "/docs-assets/")


@dataclass
class ServeConfig:
    """How the service runs: what `sportsdet serve` can be told, and a few limits only the Python API
    sets (url_max_bytes, max_body_bytes_in_flight, default_top_k, retry_after_s). Limits are per
    request unless said otherwise."""

    model: str | Path | None = None  # bundle folder or .onnx; None: the built-in model
    api_key: str | None = None
    allow_urls: bool = False
    allow_private_urls: bool = False
    url_allowed_networks: tuple[Any, ...] = ()  # --allow-url-network: exceptions to the public-only rule
    url_timeout: float = 10.0
    url_max_bytes: int = DEFAULT_MAX_BYTES
    max_request_bytes: int = 32 * 1024 * 1024
    max_images: int = 16
    max_pixels: int = MAX_DECODE_PIXELS  # what any decoder here takes at full size
    request_timeout: float = 30.0
    # Seconds an upload may send nothing before it is refused (408): a stalled body holds its
    # share of the upload budget, and eight of them shut out every other upload.
    upload_idle_timeout: float = 10.0
    max_batch: int | None = None  # None: the backend's fastest batch, as in predict (onnxruntime: 2)
    max_wait_ms: float = 0.0  # 0: take what is queued when a lane frees up (no added latency)
    max_in_flight: int = 64  # images decoding, queued or in the model, over all requests
    max_body_bytes_in_flight: int = 256 * 1024 * 1024  # request bodies held at once, over all requests
    threads: int | None = None
    int8: bool = False
    abstain: bool = True  # False: --no-abstain, every photo labelled
    min_score: float | None = None  # --min-score: "uncertain" under this top score (None: the model's rule)
    default_top_k: int = 5
    retry_after_s: int = 1

    def url_policy(self) -> AddressPolicy:
        return AddressPolicy(
            allow_private=self.allow_private_urls, allowed_networks=tuple(self.url_allowed_networks)
        )


def is_loopback(host: str) -> bool:
    """True for host names/addresses that only this machine can reach."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def usable_api_key(api_key: str | None) -> str | None:
    """The key as clients can send it: surrounding whitespace dropped (a key read from a file ends
    in a newline, which no header can carry: every request was refused), and refused when it
    holds characters a header cannot carry."""
    if api_key is None:
        return None
    key = api_key.strip()
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) > 126 for ch in key):
        raise SportsdetError(
            "--api-key: use printable ASCII without spaces (a header cannot carry the others), e.g. "
            "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    return key or None


def url_networks(given: list[str], allow_urls: bool) -> tuple[Any, ...]:
    """--allow-url-network values as networks (an address alone is a network of one); refused
    without --allow-urls, where they would mean nothing."""
    if given and not allow_urls:
        raise SportsdetError("--allow-url-network needs --allow-urls (without it no URL is fetched)")
    networks = []
    for text in given:
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise SportsdetError(
                f"--allow-url-network {text!r}: not an IP address or network; e.g. 10.0.5.7 or 10.0.5.0/24"
            ) from None
    return tuple(networks)


def check_bind(host: str, api_key: str | None) -> None:
    """Refuse to listen beyond this machine without an API key."""
    if not is_loopback(host) and not api_key:
        raise SportsdetError(
            f"refusing to listen on {host} without an API key: anyone who can reach it could use the "
            f"service. Pass --api-key KEY (or set {API_KEY_ENV}), or bind 127.0.0.1"
        )


# ----------------------------------------------------------------------------- errors


class ApiError(Exception):
    """An error answered as JSON {"error": {"code", "message"}} with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def _error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


class ImageProblem(Exception):
    """One image of a request failed; the others still get answers."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


# ----------------------------------------------------------------------------- response schemas


class TopK(BaseModel):
    label: str
    score: float


class ImageErrorBody(BaseModel):
    code: str = Field(description="bad_image, too_many_pixels, url_refused, url_failed, url_timeout, ...")
    message: str


class ImageResult(BaseModel):
    input: str = Field(description="The upload's file name, the URL (credentials removed) or <body>")
    label: str | None = None
    score: float | None = None
    top_k: list[TopK] = []
    uncertain: bool | None = Field(
        None,
        description="True when the model's abstain rule (or the server's --min-score, compared with the "
        "top score) finds the photo too uncertain to label; null: no rule",
    )
    error: ImageErrorBody | None = None
    warning: str | None = Field(
        None, description="Labelled, but the picture is tiny or a strip: trust the label less"
    )


class PredictResponse(BaseModel):
    model: str
    top_k: int
    results: list[ImageResult]
    timing_ms: dict[str, float]


class ErrorResponse(BaseModel):
    error: ImageErrorBody


class UrlsRequest(BaseModel):
    urls: list[str] = Field(description="http(s) image URLs (only when the server runs with --allow-urls)")
    top_k: int | None = None


_PREDICT_BODY = {
    # top_k is read by _top_k, not by FastAPI, so that `?top_k=` means the default, as an empty
    # form field does (FastAPI answered it "Input should be a valid integer").
    "parameters": [
        {
            "name": "top_k", "in": "query", "required": False,
            "schema": {"type": "integer", "minimum": 1},
            "description": f"how many sports to list per photo (default: {ServeConfig.default_top_k})",
        }
    ],
    "requestBody": {
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "top_k": {"type": "integer"},
                    },
                }
            },
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": UrlsRequest.model_json_schema()},
        },
        "required": True,
    }
}
_ERRORS = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in {
        400: "bad_request / no_images",
        401: "unauthorized",
        403: "urls_disabled",
        413: "payload_too_large / too_many_images",
        415: "unsupported_media_type",
        429: "overloaded (Retry-After)",
        503: "not_ready (Retry-After)",
        504: "timeout",
    }.items()
}


# ----------------------------------------------------------------------------- the service


class Metrics:
    """Prometheus metrics in a registry of their own (several apps may live in one process)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("sportsdet_requests", "HTTP requests", ["path", "status"], registry=r)
        self.errors = Counter(
            "sportsdet_errors", "Errors by code (request and per image)", ["code"], registry=r
        )
        self.images = Counter("sportsdet_images", "Images answered", ["outcome"], registry=r)
        self.latency = Histogram(
            "sportsdet_request_seconds",
            "Request latency",
            ["path"],
            buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30),
            registry=r,
        )
        self.batch = Histogram(
            "sportsdet_batch_size", "Images per model call", buckets=(1, 2, 4, 8, 16, 32, 64), registry=r
        )
        self.batch_seconds = Histogram(
            "sportsdet_batch_seconds",
            "Time per batch on a lane: decoding and the model",
            buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1),
            registry=r,
        )
        self.queue = Gauge("sportsdet_queue_depth", "Images waiting for the model", registry=r)
        self.in_flight = Gauge(
            "sportsdet_images_in_flight", "Images admitted and not yet answered", registry=r
        )


class BodyBudget:
    """Bytes of request bodies held at once, over all requests: uploads are read before their
    images can be counted, so this bounds the memory that many big uploads at once could take."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self, count: int, retry_after: int) -> None:
        if self.used + count > self.limit:
            raise ApiError(
                429,
                "overloaded",
                "the server is busy receiving other uploads; retry",
                {"Retry-After": str(retry_after)},
            )
        self.used += count

    def give_back(self, count: int) -> None:
        self.used = max(0, self.used - count)


# URLs of one request downloaded at once: the rest of the download threads stay free for others.
URL_DOWNLOADS_PER_REQUEST = 2


class Service:
    """The model, the pools and the batcher behind the routes."""

    def __init__(self, config: ServeConfig, predictor: Predictor | None = None) -> None:
        self.config = config
        self.metrics = Metrics()
        self.predictor = predictor
        self.load_error: str | None = None
        self.batcher: MicroBatcher | None = None
        # Request bodies and downloaded images held at once, over all requests.
        self.bodies = BodyBudget(max(config.max_body_bytes_in_flight, config.max_request_bytes))
        # Downloads mostly wait on the network: more threads than cores, each bounded in time.
        # (Decoding runs on the batcher's lanes, with the model.)
        self.fetch_pool = ThreadPoolExecutor(
            max_workers=max(16, 4 * cpu_count()), thread_name_prefix="sportsdet-fetch"
        )
        self._loaded = threading.Event()
        if predictor is not None:
            self._loaded.set()

    # --- lifecycle

    def load_model(self) -> None:
        """Open the model (the built-in one when none is configured); runs on a thread at start-up."""
        try:
            if self.predictor is None:
                self.predictor = make_predictor(self.config)
        except SportsdetError as exc:
            self.load_error = str(exc)
            log.error("cannot load the model: %s", exc)
        except Exception as exc:  # noqa: BLE001  a bug: said on /readyz, not "still loading" for ever
            self.load_error = f"internal error ({type(exc).__name__}: {exc}); please report it"
            log.exception("cannot load the model")
        finally:
            self._loaded.set()

    @property
    def ready(self) -> bool:
        return self._loaded.is_set() and self.predictor is not None and self.batcher is not None

    def start_batcher(self) -> None:
        assert self.predictor is not None
        lanes, run = model_lanes(self.predictor.backend)
        self._run_model = run

        def on_batch(size: int, seconds: float) -> None:
            self.metrics.batch.observe(size)
            self.metrics.batch_seconds.observe(seconds)

        self.batcher = MicroBatcher(
            self.process,
            lanes=lanes,
            max_batch=self.config.max_batch or preferred_batch_size(self.predictor.backend),
            max_wait=self.config.max_wait_ms / 1000,
            max_in_flight=self.config.max_in_flight,
            on_batch=on_batch,
        )
        self.batcher.start()
        self.metrics.queue.set_function(lambda: self.batcher.queued if self.batcher else 0)
        self.metrics.in_flight.set_function(lambda: self.batcher.in_flight if self.batcher else 0)

    def process(self, items: list[tuple[str, bytes]]) -> list[tuple[np.ndarray, str | None] | ImageProblem]:
        """On a lane's thread: decode a batch into one array, run the model on the good rows.

        Per item, (its probabilities, the warning for a tiny or strip-shaped picture, as
        `sportsdet predict` gives it), or the ImageProblem of an item that is not a usable image.
        Everything that reads the image happens here, off the event loop: a header Pillow takes
        seconds to walk (a JPEG of a million markers) must not stall every other request."""
        assert self.predictor is not None
        size = self.predictor.preprocessing.input_size
        batch = np.empty((len(items), 3, size, size), dtype=np.float32)
        answers: list[Any] = []
        good: list[tuple[int, str | None]] = []
        for name, data in items:
            notes: list[str] = []
            try:
                self.decode(name, data, out=batch[len(good)], notes=notes)
            except ImageProblem as problem:
                answers.append(problem)
                continue
            answers.append(None)  # replaced by its probabilities below
            good.append((len(answers) - 1, "; ".join(notes) or None))
        if good:
            probs = self.predictor.check_probs(self._run_model(batch[: len(good)]), len(good))
            for row, (index, warning) in enumerate(good):
                answers[index] = (probs[row], warning)
        return answers

    async def stop(self) -> None:
        if self.batcher is not None:
            await self.batcher.stop()
        self.fetch_pool.shutdown(wait=False, cancel_futures=True)

    # --- model facts

    @property
    def abstain_threshold(self) -> float | None:
        """The threshold of the abstain rule in force (the Predictor's: the model's own, or the
        server's --min-score / --no-abstain), on the rule's score; None: nothing abstains."""
        return self.predictor.abstain_threshold if self.predictor else None

    def model_id(self) -> str:
        assert self.predictor is not None
        return self.predictor.model_id()

    def count(self, results: list[dict[str, Any]]) -> None:
        """The images of a request answered (ok or with its error), counted once it is sent: a
        request that timed out (504) counted its finished images "ok" though none reached the client."""
        for result in results:
            if result["error"]:
                self.metrics.errors.labels(result["error"]["code"]).inc()
            self.metrics.images.labels("error" if result["error"] else "ok").inc()

    def abstain_set_by(self) -> str | None:
        """Whose abstain rule is in force: "model" (its own), "--min-score" or "--no-abstain" (this
        server's options), or None (a model without one): the page says which."""
        if not self.config.abstain:
            return "--no-abstain"
        if self.config.min_score is not None:
            return "--min-score"
        return "model" if self.predictor is not None and self.predictor.abstain is not None else None

    def model_info(self) -> dict[str, Any]:
        predictor = self.predictor
        assert predictor is not None
        bundle = predictor.bundle
        info = getattr(predictor.backend, "info", None)
        return {
            "id": self.model_id(),
            "backend": getattr(predictor.backend, "name", type(predictor.backend).__name__),
            "labels": predictor.labels,
            "num_classes": len(predictor.labels),
            "preprocessing": predictor.preprocessing.to_dict(),
            "metrics": bundle.metrics if bundle else {},
            "versions": {
                "sportsdet": __version__,
                **((bundle.versions if bundle else None) or (info.versions if info else {})),
            },
            "abstain_threshold": self.abstain_threshold,
            "abstain": predictor.abstain.to_dict() if predictor.abstain is not None else None,
            "abstain_set_by": self.abstain_set_by(),
            "limits": {
                "max_request_bytes": self.config.max_request_bytes,
                "max_images": self.config.max_images,
                "max_pixels": self.config.max_pixels,
                "request_timeout_s": self.config.request_timeout,
                "urls": self.config.allow_urls,
                "private_urls": self.config.allow_urls and self.config.allow_private_urls,
            },
        }

    # --- one image

    def decode(
        self, name: str, data: bytes, out: np.ndarray | None = None, notes: list[str] | None = None
    ) -> np.ndarray:
        """Bytes -> the model's input array (into `out`); ImageProblem for anything that is not usable.
        `notes` receives the warning for a tiny or strip-shaped picture."""
        assert self.predictor is not None
        try:
            with open_header(data, name) as header:  # reads the header only: cheap
                width, height = header.size
        except Exception:  # noqa: BLE001  not an image: load_image below says what it is
            width = height = 0
        if width * height > self.config.max_pixels:
            raise ImageProblem(
                "too_many_pixels",
                f"image is {width}x{height} pixels, above this server's limit of {self.config.max_pixels:,}",
            )
        try:
            return self.predictor.load(InputItem(name, data), out=out, notes=notes)
        except ImageLoadError as exc:
            code = "too_many_pixels" if exc.kind == "too-large" else "bad_image"
            raise ImageProblem(code, exc.detail) from None
        except SportsdetError as exc:
            raise ImageProblem("bad_image", str(exc)) from None

    def fetch(self, url: str) -> bytes:
        try:
            return fetch_url(
                url,
                timeout=self.config.url_timeout,
                max_bytes=self.config.url_max_bytes,
                policy=self.config.url_policy(),
            )
        except FetchError as exc:
            code = {
                "url_refused": "url_refused",
                "bad_url": "bad_url",
                "timeout": "url_timeout",
                "too_large": "url_too_large",
            }.get(exc.code, "url_failed")
            raise ImageProblem(code, _strip_prefix(str(exc), redact_url(url))) from None

    async def answer(
        self,
        name: str,
        source: bytes | str,
        top_k: int,
        downloads: asyncio.Semaphore | None = None,
        note: str | None = None,
    ) -> dict[str, Any]:
        """One image's answer. `downloads`: the request's share of the download threads (one
        request of 16 slow URLs held them all, and every other client's URL timed out)."""
        loop = asyncio.get_running_loop()
        assert self.batcher is not None and self.predictor is not None
        held = 0
        try:
            if isinstance(source, str):
                async with downloads or contextlib.nullcontext():
                    source = await loop.run_in_executor(self.fetch_pool, self.fetch, source)
                try:  # a download is held like an upload until it is answered
                    self.bodies.take(len(source), self.config.retry_after_s)
                except ApiError:
                    raise ImageProblem("overloaded", "the server is busy; retry this URL") from None
                held = len(source)
            probs, warning = await self.batcher.submit((name, source))
        except ImageProblem as problem:
            return {"input": name, "top_k": [], "error": {"code": problem.code, "message": problem.message}}
        finally:
            self.bodies.give_back(held)
        labels = self.predictor.labels
        order = top_classes(probs, top_k)
        # The same abstain decision as `sportsdet predict`: uncertain -> no label, best guess in top_k.
        uncertain = None if self.predictor.abstain is None else self.predictor.is_uncertain(probs)
        return {
            "input": name,
            "label": None if uncertain else labels[order[0]],
            "score": None if uncertain else float(probs[order[0]]),
            "top_k": [{"label": labels[i], "score": float(probs[i])} for i in order],
            "uncertain": uncertain,
            "error": None,
            "warning": "; ".join(w for w in (note, warning) if w) or None,  # as predict joins them
        }


def _misleading_upload_name(filename: str, data: bytes) -> str | None:
    """An uploaded photo whose file name says it is something else (soccer.php): predict's note
    for such a file. Only for a real file name: a part without one is named by its form field."""
    if not filename or is_image_name(filename):
        return None
    image_format = sniff_head(data)
    return misleading_name_note(filename, image_format) if image_format else None


def _strip_prefix(message: str, name: str) -> str:
    prefix = f"{name}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def make_predictor(config: ServeConfig) -> Predictor:
    """The predictor `sportsdet predict` would use for this model (the built-in one by default)."""
    from sportsdet.bundle import builtin_bundle_path

    model = config.model if config.model is not None else builtin_bundle_path()
    if model is None:
        raise SportsdetError("no --model given and this install has no built-in model")
    return Predictor(  # takes a run folder (its model/) as predict does
        model, threads=config.threads, int8=config.int8, abstain=config.abstain, min_score=config.min_score
    )


# ----------------------------------------------------------------------------- request parsing


async def _read_body(
    request: Request, limit: int, budget: BodyBudget, retry_after: int, idle_timeout: float = 10.0
) -> tuple[bytes, int]:
    """The request body, refused (413) as soon as it passes `limit` bytes, and the bytes it took
    from `budget` (the caller gives them back; 429 when the budget is spent); 408 when no bytes
    come for `idle_timeout` seconds."""
    declared = request.headers.get("content-length")
    too_big = ApiError(
        413, "payload_too_large", f"the request is larger than this server's {limit:,}-byte limit"
    )
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks: list[bytes] = []
    total = 0
    chunks_in = request.stream().__aiter__()
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(chunks_in.__anext__(), idle_timeout)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise ApiError(
                    408, "upload_stalled", f"the upload sent nothing for {idle_timeout:g} s; send it again"
                ) from None
            if total + len(chunk) > limit:
                raise too_big
            budget.take(len(chunk), retry_after)
            total += len(chunk)
            chunks.append(chunk)
    except BaseException:
        budget.give_back(total)
        raise
    return b"".join(chunks), total


MAX_URL_BYTES = 8192  # a URL longer than this is refused by most servers anyway
NOT_A_FILE = "send each image as a file, with a file name (curl: -F 'files=@photo.jpg', with the @)"
IMAGE_FIELDS = frozenset({"file", "files", "image", "images", "photo", "photos"})


def _top_k(value: Any, default: int, classes: int) -> int:
    if value is None or value == "":
        return min(default, classes)
    try:
        k = int(value)
    except (TypeError, ValueError):
        raise ApiError(400, "bad_request", f"top_k must be a whole number, got {value!r}") from None
    if k < 1:
        raise ApiError(400, "bad_request", f"top_k must be at least 1, got {k}")
    return min(k, classes)


def _check_multipart_ends(request: Request, body: bytes) -> None:
    """A multipart body cut off before its closing boundary (a client killed mid-upload, a proxy
    limit) parses without an error, its last file dropped: say so instead of "no image"."""
    boundary = parse_options_header(request.headers.get("content-type", ""))[1].get(b"boundary", b"")
    if boundary and b"--" + boundary + b"--" not in body[-(len(boundary) + 4096) :]:
        raise ApiError(
            400, "bad_request",
            f"the multipart body ({len(body):,} bytes) ends before its closing boundary "
            f"(--{boundary.decode('latin-1')}--): the upload was cut off; send it again",
        )  # fmt: skip


async def _parse(
    request: Request, body: bytes, config: ServeConfig
) -> tuple[list[tuple[str, bytes | str, str | None]], Any]:
    """(name, bytes or URL, note) per image, and the top_k the body asked for (if any); the note:
    a misleadingly named upload's, as predict gives it."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":

        async def stream() -> AsyncIterator[bytes]:
            yield body

        parser = MultiPartParser(
            request.headers, stream(), max_files=config.max_images + 1, max_fields=16, max_part_size=64 * 1024
        )
        try:
            form = await parser.parse()
        except OSError as exc:  # a file part over 1 MB is spooled to TMPDIR, which can be full
            import errno
            import tempfile

            if exc.errno not in (errno.ENOSPC, errno.EDQUOT):  # a server fault, not a full disk: a 500
                raise
            log.warning("an upload could not be spooled to %s: %s", tempfile.gettempdir(), exc.strerror)
            raise ApiError(
                507, "insufficient_storage",
                "the server has no room for this upload (its temporary folder is full); try again later",
            ) from None  # fmt: skip
        except MultiPartException as exc:
            if "Too many files" in exc.message:
                raise ApiError(
                    413, "too_many_images", f"at most {config.max_images} images per request"
                ) from None
            hint = f"; {NOT_A_FILE}" if "Part exceeded maximum size" in exc.message else ""
            message = f"cannot read the multipart body ({exc.message}){hint}"
            raise ApiError(400, "bad_request", message) from None
        _check_multipart_ends(request, body)
        items: list[tuple[str, bytes | str, str | None]] = []
        top_k = None
        try:
            for key, value in form.multi_items():
                if isinstance(value, str):
                    if key == "top_k":
                        top_k = value
                    elif key in ("url", "urls"):
                        items.append((redact_url(value), value, None))
                    elif key.lower() in IMAGE_FIELDS or len(value) > 1024:
                        # An image sent without a file name is a text field here: it was dropped
                        # without a word. Small fields of other names are still ignored.
                        message = f"form field {key!r} is not a file upload; {NOT_A_FILE}"
                        raise ApiError(400, "bad_request", message)
                    continue
                data, filename = await value.read(), value.filename or ""
                items.append((filename or key, data, _misleading_upload_name(filename, data)))
        finally:
            await form.close()
        return items, top_k
    if ctype == "application/json":
        # URLs only: a body far larger than max_images URLs was parsed whole on the event loop
        # (33 MB: 9 s with every request waiting, /healthz too) before its count was refused.
        limit = config.max_images * MAX_URL_BYTES + 1024
        if len(body) > limit:
            raise ApiError(
                413, "payload_too_large",
                f"a JSON body of {len(body):,} bytes; it holds at most {config.max_images} URLs "
                f"({limit:,} bytes)",
            )  # fmt: skip
        try:
            payload = UrlsRequest.model_validate(json.loads(body or b"null"))
        except RecursionError:  # '[[[[...' nested deeper than the parser goes
            raise ApiError(400, "bad_request", 'expected JSON {"urls": [...]} (nested too deep)') from None
        except ValidationError as exc:  # which field, and what is wrong with it
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "the body"
            message = f"{where}: {first['msg']}"[:200]
            raise ApiError(400, "bad_request", f'expected JSON {{"urls": [...]}} ({message})') from None
        except (ValueError, TypeError) as exc:
            message = str(exc).splitlines()[0][:200]
            raise ApiError(400, "bad_request", f'expected JSON {{"urls": [...]}} ({message})') from None
        return [(redact_url(url), url, None) for url in payload.urls], payload.top_k
    if ctype.startswith("image/") or ctype == "application/octet-stream":
        return ([(RAW_BODY_NAME, body, None)] if body else []), None
    raise ApiError(
        415,
        "unsupported_media_type",
        f"unsupported Content-Type {ctype or '(none)'!r}; send multipart/form-data uploads, "
        'raw image bytes (image/jpeg, image/png, ...), or JSON {"urls": [...]}',
    )


# ----------------------------------------------------------------------------- the app

# The page runs only its own script and styles; pictures may be pasted URLs.
PAGE_CSP = "default-src 'self'; img-src 'self' blob: data: http: https:; style-src 'self'; script-src 'self'"


class GuardMiddleware:
    """Plain ASGI middleware around every request: API key, metrics, security headers, and a
    JSON 500 for anything unexpected (logged here, never a traceback to the client).

    Plain ASGI rather than Starlette's BaseHTTPMiddleware: no extra task and stream per request."""

    def __init__(self, app: Any, *, metrics: Metrics, api_key: str | None) -> None:
        self.app = app
        self.metrics = metrics
        self.key = api_key.encode() if api_key else None

    def authorized(self, scope: dict[str, Any]) -> bool:
        headers = Headers(scope=scope)
        given = headers.get("x-api-key") or ""
        auth = headers.get("authorization") or ""
        if auth[:7].lower() == "bearer ":
            given = auth[7:].strip()
        return hmac.compare_digest(given.encode("latin-1", "replace"), self.key or b"")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        label = _path_label(path)
        start = time.perf_counter()
        public = path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
        page = path == "/" or path.startswith("/static/")
        status = {"code": 500, "started": False}

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["started"] = message["status"], True
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                if page:
                    headers["Content-Security-Policy"] = PAGE_CSP
            await send(message)

        try:
            if self.key is not None and not public and not self.authorized(scope):
                self.metrics.errors.labels("unauthorized").inc()
                response = _error_response(
                    401,
                    "unauthorized",
                    "this server needs an API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'",
                    {"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send_with_headers)
                return
            await self.app(scope, receive, send_with_headers)
        except asyncio.CancelledError:
            # A shutdown whose --graceful-timeout ran out cancels the requests still running:
            # they get a JSON 503 (uvicorn answered a plain-text 500 and logged a traceback).
            # The request ends here, answered: nothing above this middleware awaits it.
            status["code"] = 503
            self.metrics.errors.labels("shutting_down").inc()
            log.info("shutting down: %s cancelled before it was answered", path)
            if not status["started"]:
                response = _error_response(
                    503, "shutting_down", "the server is shutting down; retry on another instance or later"
                )
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await response(scope, receive, send_with_headers)
        except ClientDisconnect:  # the client gave up (a cancelled upload): not the server's failure
            status["code"] = 499
            self.metrics.errors.labels("client_closed_request").inc()
            log.info("client closed the connection during %s", path)
        except Exception:  # noqa: BLE001  never a traceback to the client
            log.exception("unexpected error on %s", path)
            self.metrics.errors.labels("internal_error").inc()
            if not status["started"]:
                response = _error_response(
                    500, "internal_error", "the server failed on this request; see its log"
                )
                await response(scope, receive, send_with_headers)
        finally:
            self.metrics.requests.labels(label, str(status["code"])).inc()
            self.metrics.latency.labels(label).observe(time.perf_counter() - start)


def create_app(config: ServeConfig | None = None, predictor: Predictor | None = None) -> FastAPI:
    """The FastAPI application. `predictor`: an already loaded model (else loaded at start-up)."""
    config = config or ServeConfig()
    service = Service(config, predictor)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async def load() -> None:
            await asyncio.get_running_loop().run_in_executor(None, service.load_model)
            if service.predictor is not None:
                service.start_batcher()

        loading = asyncio.create_task(load())
        try:
            yield
        finally:
            loading.cancel()
            await service.stop()

    app = FastAPI(
        title="sportsdet",
        version=__version__,
        description="Recognise the sport in a photograph. Send photos to POST /v1/predict.",
        lifespan=lifespan,
        docs_url=None,  # served below from the package's own copy of Swagger UI, not a CDN
        redoc_url=None,
    )
    # The Swagger UI that ships on PyPI (4.15) reads OpenAPI 3.0 only: /docs said "Unable to render
    # this definition" of FastAPI's 3.1. The document is served as 3.0.3, its one 3.1 form (an
    # optional field's {"type": "null"} alternative) written the 3.0 way (nullable).
    app.openapi_version = "3.0.3"
    schema_of = app.openapi

    def openapi_3_0() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _nullable_as_in_3_0(schema_of())
        return app.openapi_schema

    app.openapi = openapi_3_0
    app.state.service = service
    bodies = service.bodies
    app.state.bodies = bodies
    metrics = service.metrics

    app.add_middleware(GuardMiddleware, metrics=metrics, api_key=config.api_key)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        metrics.errors.labels(exc.code).inc()
        return _error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        metrics.errors.labels("bad_request").inc()
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error_response(400, "bad_request", f"{where}: {first.get('msg', 'invalid request')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "bad_request")
        metrics.errors.labels(code).inc()
        return _error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    def require_ready() -> None:
        if not service.ready:
            if service.load_error:
                raise ApiError(503, "not_ready", f"the model could not be loaded: {service.load_error}")
            raise ApiError(
                503, "not_ready", "the model is still loading", {"Retry-After": str(config.retry_after_s)}
            )

    @app.get("/healthz", tags=["probes"])
    async def healthz() -> dict[str, str]:
        """Alive (the process answers)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["probes"], responses={503: _ERRORS[503]})
    async def readyz() -> dict[str, str]:
        """Ready: the model is loaded and requests are being answered."""
        require_ready()
        return {"status": "ready", "model": service.model_id()}

    @app.get("/v1/model", tags=["model"], responses={503: _ERRORS[503]})
    async def model() -> dict[str, Any]:
        """The model behind the service: labels, preprocessing, metrics, versions, limits."""
        require_ready()
        return service.model_info()

    @app.get("/metrics", tags=["probes"], response_class=Response)
    async def prometheus() -> Response:
        """Prometheus metrics: requests and errors by kind, latency, batch sizes, queue depth."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/v1/predict",
        tags=["predict"],
        response_model=PredictResponse,
        responses=_ERRORS,
        openapi_extra=_PREDICT_BODY,
    )
    async def predict(request: Request) -> dict[str, Any]:
        """Label one or several photos.

        Send multipart/form-data with one or more files (any field name; text field `top_k`),
        raw image bytes with an image/* Content-Type, or JSON `{"urls": [...], "top_k": 5}`
        (servers started with --allow-urls). Each image gets its own result; a bad image gets
        an `error` and the others are still answered.
        """
        start = time.perf_counter()
        require_ready()
        assert service.batcher is not None and service.predictor is not None

        async def run() -> dict[str, Any]:
            body, held = await _read_body(
                request, config.max_request_bytes, bodies, config.retry_after_s, config.upload_idle_timeout
            )
            try:
                return await answer(body)
            finally:
                bodies.give_back(held)

        async def answer(body: bytes) -> dict[str, Any]:
            items, body_top_k = await _parse(request, body, config)
            if not items:
                raise ApiError(400, "no_images", "the request holds no image; send at least one")
            if len(items) > config.max_images:
                raise ApiError(
                    413, "too_many_images", f"{len(items)} images; at most {config.max_images} per request"
                )
            if any(isinstance(source, str) for _, source, _ in items) and not config.allow_urls:
                raise ApiError(
                    403, "urls_disabled", "this server does not fetch URLs (start it with --allow-urls)"
                )
            query_top_k = request.query_params.get("top_k")
            k = _top_k(
                query_top_k if query_top_k is not None else body_top_k,
                config.default_top_k,
                len(service.predictor.labels),
            )
            try:
                service.batcher.reserve(len(items))
            except Overloaded as exc:
                raise ApiError(
                    429, "overloaded", str(exc), {"Retry-After": str(config.retry_after_s)}
                ) from None
            try:
                downloads = asyncio.Semaphore(URL_DOWNLOADS_PER_REQUEST)
                results = await asyncio.gather(
                    *(service.answer(name, src, k, downloads, note) for name, src, note in items)
                )
            finally:
                service.batcher.release(len(items))
            service.count(results)
            return {
                "model": service.model_id(),
                "top_k": k,
                "results": results,
                "timing_ms": {"total": round((time.perf_counter() - start) * 1000, 2)},
            }

        try:
            return await asyncio.wait_for(run(), config.request_timeout)
        except TimeoutError:
            raise ApiError(
                504,
                "timeout",
                f"the request took longer than this server's {config.request_timeout:g} s limit",
            ) from None

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    # Uptime monitors and load balancers often probe with HEAD: it was a 405 on every path.
    app.add_api_route("/", page, methods=["HEAD"], include_in_schema=False)
    app.add_api_route("/healthz", healthz, methods=["HEAD"], include_in_schema=False)
    app.add_api_route("/readyz", readyz, methods=["HEAD"], include_in_schema=False)

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _add_offline_docs(app)
    if config.api_key:
        _document_the_key(app)
    return app


def _document_the_key(app: FastAPI) -> None:
    """A keyed server's OpenAPI says so: /docs gets an Authorize button and its "Try it out" sends
    the key (checked in GuardMiddleware, where FastAPI cannot see it: every call from /docs was 401)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer KEY"},
            "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        }
        for path, operations in schema.get("paths", {}).items():
            if path not in PUBLIC_PATHS:
                for operation in operations.values():
                    operation["security"] = [{"bearer": []}, {"apiKey": []}]
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _nullable_as_in_3_0(node: Any) -> Any:
    """OpenAPI 3.1's `anyOf: [X, {"type": "null"}]` as 3.0 writes it: X with `nullable: true`."""
    if isinstance(node, list):
        return [_nullable_as_in_3_0(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _nullable_as_in_3_0(value) for key, value in node.items()}
    options = node.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        rest = [option for option in options if option != {"type": "null"}]
        del node["anyOf"]
        node.update(rest[0] if len(rest) == 1 else {"anyOf": rest})
        node["nullable"] = True
    return node


def _add_offline_docs(app: Any) -> None:
    """/docs: FastAPI's Swagger UI page with its script and style served from this server."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from swagger_ui_bundle import swagger_ui_path

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Any:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} API",
            swagger_js_url="/docs-assets/swagger-ui-bundle.js",
            swagger_css_url="/docs-assets/swagger-ui.css",
            swagger_favicon_url="/favicon.ico",
        )

    app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")


def _path_label(path: str) -> str:
    """A bounded set of metric labels (a scanner's random paths must not grow the registry)."""
    known = ("/v1/predict", "/v1/model", "/healthz", "/readyz", "/metrics", "/", "/docs", "/openapi.json")
    if path in known:
        return path
    for prefix in PUBLIC_PREFIXES:
        if path.startswith(prefix):
            return prefix.rstrip("/")
    return "other"
