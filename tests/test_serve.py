"""`sportsdet serve`: the API through FastAPI's TestClient, on a tiny ONNX colour model.

The colour model (conftest.make_colour_onnx) labels a red photo "red", a green one "green", so
every answer can be checked, not just its shape. URL tests fetch from a server on 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    COLOUR_LABELS,
    COLOUR_SPEC,
    LocalServer,
    image_bytes,
    make_colour_onnx,
    redirect,
    resolve_host_to,
    start_serve,
)
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from sportsdet.cli import app as cli_app
from sportsdet.errors import SportsdetError
from sportsdet.predict import Predictor
from sportsdet.serve import ServeConfig, check_bind, create_app

RED, GREEN, BLUE = (220, 30, 30), (30, 200, 40), (30, 40, 220)


@pytest.fixture(scope="module")
def colour_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_colour_onnx(tmp_path_factory.mktemp("serve") / "colour.onnx")


@contextmanager
def serving(model: Path, predictor: Predictor | None = None, **options) -> Iterator[TestClient]:
    """A started app (lifespan run, model ready) behind a TestClient."""
    application = create_app(ServeConfig(model=model, **options), predictor)
    with TestClient(application) as client:
        for _ in range(200):
            if client.get("/readyz").status_code == 200:
                break
            time.sleep(0.02)
        else:
            raise AssertionError(f"never ready: {client.get('/readyz').json()}")
        yield client


@pytest.fixture(scope="module")
def client(colour_model: Path) -> Iterator[TestClient]:
    with serving(colour_model) as c:
        yield c


def jpeg(colour: tuple[int, int, int], size: int = 40) -> bytes:
    return image_bytes(colour, "JPEG", size=size)


def png(colour: tuple[int, int, int], size: int = 40) -> bytes:
    return image_bytes(colour, "PNG", size=size)


def uploads(*named: tuple[str, bytes]) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", (name, data, "image/jpeg")) for name, data in named]


def error_of(response) -> str:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert "Traceback" not in response.text
    return body["error"]["code"]


# ----------------------------------------------------------------------------- answers


def test_one_image_is_labelled(client: TestClient) -> None:
    response = client.post("/v1/predict", files=uploads(("red.jpg", jpeg(RED))))
    assert response.status_code == 200
    body = response.json()
    assert body["model"] == "colour"
    assert body["top_k"] == 3  # 5 asked by default, clamped to the 3 classes
    (result,) = body["results"]
    assert result["input"] == "red.jpg"
    assert result["label"] == "red" and result["error"] is None
    scores = [entry["score"] for entry in result["top_k"]]
    assert scores == sorted(scores, reverse=True) and result["score"] == scores[0] > 0.9
    assert result["uncertain"] is None  # the colour model has no abstain threshold
    assert body["timing_ms"]["total"] > 0


def test_an_upload_the_full_temporary_folder_cannot_take_is_a_507_not_a_500(
    client: TestClient, tmp_path: Path, monkeypatch, caplog
) -> None:
    # Starlette spools a file part over 1 MB to TMPDIR: full, it was "internal_error" and a traceback.
    import errno
    import tempfile

    big = jpeg(RED) + b"\0" * (1100 * 1024)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tempfile, "TemporaryFile", full)
    response = client.post("/v1/predict", files=uploads(("big.jpg", big)))
    assert response.status_code == 507
    assert response.json()["error"]["code"] == "insufficient_storage"
    assert "an upload could not be spooled to" in caplog.text and "Traceback" not in caplog.text
    # A temporary folder that is not there is the server's fault, not a full disk to wait out.
    monkeypatch.undo()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "no such folder"))
    assert client.post("/v1/predict", files=uploads(("big.jpg", big))).status_code == 500
    monkeypatch.undo()
    assert client.post("/v1/predict", files=uploads(("big.jpg", big))).status_code == 200


def test_an_int8_model_has_its_own_id(colour_model: Path, tmp_path: Path) -> None:
    # Same weights, other answers: the float and INT8 graphs of one model had the same id.
    from sportsdet.export import onnx_metadata
    from sportsdet.runtime import META_QUANTIZATION

    metadata = onnx_metadata(labels=COLOUR_LABELS, preprocessing=COLOUR_SPEC, model_name="colour")
    metadata[META_QUANTIZATION] = '{"weights": "int8"}'
    int8 = make_colour_onnx(tmp_path / "int8.onnx", metadata=metadata)
    with serving(int8) as int8_client:
        int8_id = int8_client.get("/v1/model").json()["id"]
    with serving(colour_model) as float_client:
        float_id = float_client.get("/v1/model").json()["id"]
    assert float_id == "colour" and int8_id == "colour+int8"


def test_several_images_keep_their_order(client: TestClient) -> None:
    files = uploads(("g.jpg", jpeg(GREEN)), ("r.png", png(RED)), ("b.jpg", jpeg(BLUE)))
    body = client.post("/v1/predict", files=files, data={"top_k": "2"}).json()
    assert [r["input"] for r in body["results"]] == ["g.jpg", "r.png", "b.jpg"]
    assert [r["label"] for r in body["results"]] == ["green", "red", "blue"]
    assert all(len(r["top_k"]) == 2 for r in body["results"])


def test_same_answer_as_predict(client: TestClient, colour_model: Path, tmp_path: Path) -> None:
    photo = tmp_path / "p.jpg"
    photo.write_bytes(jpeg((160, 120, 40)))
    (expected,) = Predictor(colour_model, top_k=3).predict_sources([str(photo)])
    (served,) = client.post("/v1/predict", files=uploads(("p.jpg", photo.read_bytes()))).json()["results"]
    assert served["label"] == expected.label
    assert [e["label"] for e in served["top_k"]] == [label for label, _ in expected.top_k]
    assert [e["score"] for e in served["top_k"]] == pytest.approx([score for _, score in expected.top_k])


def test_raw_bytes_and_query_top_k(client: TestClient) -> None:
    response = client.post("/v1/predict?top_k=1", content=png(BLUE), headers={"Content-Type": "image/png"})
    (result,) = response.json()["results"]
    assert result["input"] == "<body>" and result["label"] == "blue" and len(result["top_k"]) == 1


def test_a_top_k_beyond_the_classes_is_answered_and_said_as_the_classes(client: TestClient) -> None:
    response = client.post("/v1/predict?top_k=50", content=png(BLUE), headers={"Content-Type": "image/png"})
    body = response.json()
    assert response.status_code == 200 and body["top_k"] == 3 and len(body["results"][0]["top_k"]) == 3


def test_a_bad_image_among_good_ones(client: TestClient) -> None:
    files = uploads(
        ("ok.jpg", jpeg(RED)), ("broken.jpg", b"<html>not a photo</html>"), ("cut.jpg", jpeg(GREEN)[:300])
    )
    files.append(("files", ("ok2.jpg", jpeg(GREEN), "image/jpeg")))
    body = client.post("/v1/predict", files=files).json()
    results = body["results"]
    assert [r["label"] for r in results] == ["red", None, None, "green"]
    assert results[1]["error"]["code"] == "bad_image" and "not an image" in results[1]["error"]["message"]
    assert results[2]["error"]["code"] == "bad_image"


def test_a_tiny_picture_is_labelled_with_the_warning_predict_gives(client, colour_model, tmp_path) -> None:
    # The service dropped it: `sportsdet predict` said "only 1x1 pixels ...", the service nothing.
    from sportsdet.predict import InputItem, Predictor

    tiny = png(RED, size=1)
    response = client.post("/v1/predict", files=uploads(("one.png", tiny), ("ok.jpg", jpeg(RED))))
    one, ok = response.json()["results"]
    (tmp_path / "one.png").write_bytes(tiny)
    notes: list[str] = []
    Predictor(colour_model).load(InputItem("one.png", tmp_path / "one.png"), notes=notes)
    assert one["label"] and one["warning"] == notes[0] and "1x1" in notes[0]
    assert ok["warning"] is None


def test_images_are_read_off_the_event_loop(colour_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The shape warning re-read each image's header on the event loop: a JPEG of a million
    # markers (Pillow walks them in Python) held /healthz and every other request for seconds.
    import asyncio

    import sportsdet.preprocess
    import sportsdet.serve.app as serve_app

    on_loop: list[str] = []

    def spy(real, what: str):
        def wrapped(*args, **kwargs):
            try:
                asyncio.get_running_loop()
                on_loop.append(what)
            except RuntimeError:  # no loop running in this thread: a worker thread
                pass
            return real(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(serve_app, "open_header", spy(serve_app.open_header, "open_header"))
    monkeypatch.setattr(
        sportsdet.preprocess, "load_image_checked", spy(sportsdet.preprocess.load_image_checked, "decode")
    )
    with serving(colour_model) as client:
        files = uploads(("strip.png", png(RED, size=1)), ("a.jpg", jpeg(RED)))
        response = client.post("/v1/predict", files=files)
    strip, photo = response.json()["results"]
    assert strip["warning"] and "1x1" in strip["warning"] and photo["label"] == "red"
    assert on_loop == []


@pytest.mark.parametrize("top_k", ["0", "two"])
def test_bad_top_k(client: TestClient, top_k: str) -> None:
    response = client.post(f"/v1/predict?top_k={top_k}", files=uploads(("a.jpg", jpeg(RED))))
    assert response.status_code == 400 and error_of(response) == "bad_request"


def test_an_empty_top_k_means_the_default_in_the_query_as_in_the_form(client: TestClient) -> None:
    # `?top_k=` was FastAPI's "Input should be a valid integer" while an empty form field was the default.
    for response in (
        client.post("/v1/predict?top_k=", files=uploads(("a.jpg", jpeg(RED)))),
        client.post("/v1/predict", files=uploads(("a.jpg", jpeg(RED))), data={"top_k": ""}),
    ):
        assert response.status_code == 200 and response.json()["top_k"] == 3
    parameters = client.get("/openapi.json").json()["paths"]["/v1/predict"]["post"]["parameters"]
    assert [(p["name"], p["in"], p["schema"]["type"]) for p in parameters] == [("top_k", "query", "integer")]


def test_a_multipart_body_cut_off_is_said_not_called_empty(client: TestClient) -> None:
    part = b'--XX\r\nContent-Disposition: form-data; name="files"; filename="a.jpg"\r\n\r\n' + jpeg(RED)
    headers = {"Content-Type": 'multipart/form-data; boundary="XX"'}
    whole = client.post("/v1/predict", content=part + b"\r\n--XX--\r\n", headers=headers)
    assert whole.status_code == 200 and whole.json()["results"][0]["label"] == "red"
    cut = client.post("/v1/predict", content=part[:-100], headers=headers)  # it said "no_images"
    assert cut.status_code == 400 and error_of(cut) == "bad_request"
    assert "cut off" in cut.json()["error"]["message"] and "--XX--" in cut.json()["error"]["message"]


def test_json_nested_too_deep_is_a_400_not_a_500(client: TestClient) -> None:
    deep = b"[" * 60_000 + b"]" * 60_000  # RecursionError is no ValueError: it was a 500
    response = client.post("/v1/predict", content=deep, headers={"content-type": "application/json"})
    assert response.status_code == 400 and error_of(response) == "bad_request"
    assert "nested too deep" in response.json()["error"]["message"]


# ----------------------------------------------------------------------------- limits


@pytest.mark.parametrize(
    ("body", "says"),
    [("{}", "urls: Field required"),
     ('{"urls": [], "top_k": "abc"}', "top_k: Input should be a valid integer"),
     ('{"urls": [1]}', "urls.0: Input should be a valid string")],
)  # fmt: skip
def test_a_bad_json_body_names_the_field(client: TestClient, body: str, says: str) -> None:
    # It said "(1 validation error for UrlsRequest)" and nothing about which field.
    response = client.post("/v1/predict", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and says in response.json()["error"]["message"]


def test_wrong_content_type(client: TestClient) -> None:
    response = client.post("/v1/predict", content=b"hello", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415 and error_of(response) == "unsupported_media_type"


def test_empty_request(client: TestClient) -> None:
    response = client.post("/v1/predict", content=b"", headers={"Content-Type": "image/jpeg"})
    assert response.status_code == 400 and error_of(response) == "no_images"


def test_too_big_upload(colour_model: Path) -> None:
    with serving(colour_model, max_request_bytes=20_000) as c:
        big = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
        import io

        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(big).save(buffer, "PNG")
        response = c.post("/v1/predict", files=uploads(("big.png", buffer.getvalue())))
        assert response.status_code == 413 and error_of(response) == "payload_too_large"

        def chunked() -> Iterator[bytes]:  # no Content-Length: the server must count itself
            for _ in range(40):
                yield b"\0" * 1000

        response = c.post("/v1/predict", content=chunked(), headers={"Content-Type": "image/png"})
        assert response.status_code == 413 and error_of(response) == "payload_too_large"
        assert c.post("/v1/predict", files=uploads(("small.jpg", jpeg(RED)))).status_code == 200


@pytest.mark.parametrize("count", [3, 12])
def test_too_many_images(colour_model: Path, count: int) -> None:
    with serving(colour_model, max_images=2) as c:
        response = c.post("/v1/predict", files=uploads(*[(f"{i}.jpg", jpeg(RED, 32)) for i in range(count)]))
        assert response.status_code == 413 and error_of(response) == "too_many_images"


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width x height (a decompression bomb's header) with no pixel data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def test_too_many_pixels(colour_model: Path) -> None:
    with serving(colour_model, max_pixels=50_000) as c:
        files = uploads(
            ("fine.jpg", jpeg(RED, 200)),  # 40,000 px
            ("big.png", png(GREEN, 300)),  # 90,000 px: a real image over this server's limit
            ("bomb.png", _png_header_only(30_000, 30_000)),  # 900 Mpx claimed in a few bytes
        )
        results = c.post("/v1/predict", files=files).json()["results"]
        assert results[0]["label"] == "red"
        assert [r["error"]["code"] for r in results[1:]] == ["too_many_pixels", "too_many_pixels"]
        assert "300x300" in results[1]["error"]["message"]


def test_the_pixel_limit_holds_for_the_first_iphone_photo_a_server_sees(colour_model: Path) -> None:
    import json
    import urllib.request

    big, small = image_bytes(GREEN, "HEIF", 300), image_bytes(RED, "HEIF", 64)  # 90,000 px and 4,096 px
    process, base = start_serve(colour_model, "--max-pixels", "50000")
    try:
        answers = []
        for photo in (big, small):
            request = urllib.request.Request(
                base + "/v1/predict", photo, {"Content-Type": "image/heic"}
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                answers.append(json.load(response)["results"][0])
    finally:
        process.terminate()
        process.wait(20)
    assert answers[0]["error"]["code"] == "too_many_pixels" and "300x300" in answers[0]["error"]["message"]
    assert answers[1]["label"] == "red"


class GatedBackend:
    """The colour model behind a gate: calls block until released, and batch sizes are recorded."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.labels, self.preprocessing, self.name = inner.labels, inner.preprocessing, "gated"
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.sizes: list[int] = []

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        self.sizes.append(len(batch))
        self.entered.set()
        assert self.gate.wait(10)
        return self.inner.predict_proba(batch)


def gated_predictor(model: Path) -> tuple[Predictor, GatedBackend]:
    predictor = Predictor(model)
    gated = GatedBackend(predictor.backend)
    predictor.backend = gated
    return predictor, gated


def _post_in_thread(client: TestClient, files, out: list) -> threading.Thread:
    thread = threading.Thread(target=lambda: out.append(client.post("/v1/predict", files=files)))
    thread.start()
    return thread


def test_full_queue_answers_429_with_retry_after(colour_model: Path) -> None:
    predictor, gated = gated_predictor(colour_model)
    with serving(colour_model, predictor, max_in_flight=2) as c:
        first: list = []
        thread = _post_in_thread(c, uploads(("a.jpg", jpeg(RED)), ("b.jpg", jpeg(RED))), first)
        assert gated.entered.wait(5)  # two images in flight: the limit
        response = c.post("/v1/predict", files=uploads(("c.jpg", jpeg(GREEN))))
        assert response.status_code == 429 and error_of(response) == "overloaded"
        assert response.headers["Retry-After"] == "1"
        gated.gate.set()
        thread.join(10)
        assert first[0].status_code == 200
        assert c.post("/v1/predict", files=uploads(("c.jpg", jpeg(GREEN)))).status_code == 200  # room again
        assert 'sportsdet_errors_total{code="overloaded"} 1.0' in c.get("/metrics").text


def test_every_finished_request_gives_back_all_it_held(colour_model: Path) -> None:
    # A request that gave back one image fewer than it took would, a few requests later, leave
    # the server answering 429 to everyone.
    with serving(colour_model, max_in_flight=3) as c:
        for i in range(4):
            files = uploads((f"{i}a.jpg", jpeg(RED)), (f"{i}b.png", png(BLUE)), (f"{i}c.jpg", b"not a photo"))
            response = c.post("/v1/predict", files=files)
            assert response.status_code == 200, (i, response.text)
        assert "\nsportsdet_images_in_flight 0.0\n" in c.get("/metrics").text


def test_concurrent_requests_share_one_model_call(colour_model: Path) -> None:
    predictor, gated = gated_predictor(colour_model)
    with serving(colour_model, predictor, max_batch=8, max_wait_ms=50) as c:
        out: list = []
        threads = [_post_in_thread(c, uploads((f"{i}.jpg", jpeg(BLUE))), out) for i in range(1)]
        assert gated.entered.wait(5)  # the one lane is busy: the next requests queue up
        threads += [_post_in_thread(c, uploads((f"{i}.jpg", jpeg(BLUE))), out) for i in range(1, 5)]
        for _ in range(200):
            if c.app.state.service.batcher.queued == 4:
                break
            time.sleep(0.01)
        gated.gate.set()
        for thread in threads:
            thread.join(10)
        assert [r.status_code for r in out] == [200] * 5
        assert all(r.json()["results"][0]["label"] == "blue" for r in out)
        assert gated.sizes == [1, 4]  # four requests, one model call
        metrics = c.get("/metrics").text
        assert "sportsdet_batch_size_count 2.0" in metrics and "sportsdet_queue_depth 0.0" in metrics


def test_request_time_limit(colour_model: Path) -> None:
    predictor, gated = gated_predictor(colour_model)
    with serving(colour_model, predictor, request_timeout=0.3) as c:
        start = time.monotonic()
        response = c.post("/v1/predict", files=uploads(("a.jpg", jpeg(RED))))
        assert response.status_code == 504 and error_of(response) == "timeout"
        assert time.monotonic() - start < 2
        gated.gate.set()


def test_the_images_of_a_request_that_timed_out_are_not_counted_answered(colour_model: Path) -> None:
    # The first photo's answer was done before the limit, the second's not: the client got a 504
    # and no answer, but /metrics counted the first as an image answered "ok".
    class SecondCallWaits(GatedBackend):
        def predict_proba(self, batch: np.ndarray) -> np.ndarray:
            if not self.sizes:
                self.sizes.append(len(batch))
                return self.inner.predict_proba(batch)
            return super().predict_proba(batch)

    predictor = Predictor(colour_model)
    gated = predictor.backend = SecondCallWaits(predictor.backend)
    with serving(colour_model, predictor, request_timeout=0.5, max_batch=1) as c:
        response = c.post("/v1/predict", files=uploads(("a.jpg", jpeg(RED)), ("b.jpg", jpeg(RED))))
        assert response.status_code == 504 and gated.sizes[0] == 1
        gated.gate.set()
        metrics = c.get("/metrics").text
        assert 'sportsdet_images_total{outcome="ok"}' not in metrics, metrics
        assert 'sportsdet_requests_total{path="/v1/predict",status="504"} 1.0' in metrics


def test_a_failing_model_is_a_json_500_without_traceback(colour_model: Path) -> None:
    predictor = Predictor(colour_model)

    class Broken:
        labels, preprocessing, name = predictor.labels, predictor.preprocessing, "broken"

        def predict_proba(self, batch: np.ndarray) -> np.ndarray:
            raise RuntimeError("secret internal detail")

    predictor.backend = Broken()
    with serving(colour_model, predictor) as c:
        response = c.post("/v1/predict", files=uploads(("a.jpg", jpeg(RED))))
        assert response.status_code == 500 and error_of(response) == "internal_error"
        assert "secret internal detail" not in response.text


def test_unknown_path_is_json(client: TestClient) -> None:
    response = client.get("/nope")
    assert response.status_code == 404 and error_of(response) == "not_found"
    response = client.get("/v1/predict")
    assert response.status_code == 405 and error_of(response) == "method_not_allowed"


# ----------------------------------------------------------------------------- model, probes, metrics


def test_model_probes_and_metrics(client: TestClient) -> None:
    model = client.get("/v1/model").json()
    assert model["labels"] == ["red", "green", "blue"]
    assert model["preprocessing"]["input_size"] == 16
    assert "sportsdet" in model["versions"] and model["abstain_threshold"] is None
    assert model["limits"]["urls"] is False
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
    client.post("/v1/predict", files=uploads(("a.jpg", jpeg(RED))))
    metrics = client.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    for name in (
        'sportsdet_requests_total{path="/v1/predict",status="200"}',
        "sportsdet_request_seconds_bucket",
        "sportsdet_batch_size_bucket",
        "sportsdet_queue_depth",
        'sportsdet_images_total{outcome="ok"}',
    ):
        assert name in metrics.text, name
    assert client.get("/openapi.json").json()["paths"]["/v1/predict"]["post"]["requestBody"]


def test_api_docs_work_offline(client: TestClient) -> None:
    # Every asset of /docs comes from this server: no CDN, so the page works with no internet.
    page = client.get("/docs")
    assert page.status_code == 200
    scripts = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert "/docs-assets/swagger-ui-bundle.js" in scripts and "/docs-assets/swagger-ui.css" in scripts
    assert not [url for url in scripts if "://" in url], scripts
    for asset in ("/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css"):
        answer = client.get(asset)
        assert answer.status_code == 200 and len(answer.content) > 10_000, asset
    assert client.get("/redoc").status_code == 404  # ReDoc would load from a CDN: not offered
    # The Swagger UI it serves (4.15) renders OpenAPI 3.0 only ("Unable to render" of 3.1); and a
    # document that says 3.0.3 must not use 3.1's {"type": "null"} for an optional field.
    document = client.get("/openapi.json").json()
    assert document["openapi"] == "3.0.3" and '"null"' not in json.dumps(document)
    label = document["components"]["schemas"]["ImageResult"]["properties"]["label"]
    assert label["type"] == "string" and label["nullable"] is True


def test_not_ready_while_the_model_loads(colour_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sportsdet.serve.app as serve_app

    loading = threading.Event()
    real = serve_app.make_predictor

    def slow(config):
        assert loading.wait(10)
        return real(config)

    monkeypatch.setattr(serve_app, "make_predictor", slow)
    with TestClient(create_app(ServeConfig(model=colour_model))) as c:
        assert c.get("/healthz").status_code == 200
        response = c.get("/readyz")
        assert response.status_code == 503 and error_of(response) == "not_ready"
        response = c.post("/v1/predict", files=uploads(("a.jpg", jpeg(RED))))
        assert response.status_code == 503 and "Retry-After" in response.headers
        loading.set()
        for _ in range(200):
            if c.get("/readyz").status_code == 200:
                break
            time.sleep(0.02)
        assert c.post("/v1/predict", files=uploads(("a.jpg", jpeg(RED)))).status_code == 200


def test_a_model_that_fails_to_load_unexpectedly_is_said_not_still_loading(colour_model, monkeypatch) -> None:
    # Only a SportsdetError was caught: any other exception ended the loading thread, and the
    # service answered "the model is still loading" for ever.
    import sportsdet.serve.app as serve_app

    def broken(config):
        raise ImportError("cannot import name 'resolve_bundle_dir'")

    monkeypatch.setattr(serve_app, "make_predictor", broken)
    with TestClient(create_app(ServeConfig(model=colour_model))) as c:
        for _ in range(200):
            response = c.get("/readyz")
            if "still loading" not in response.text:
                break
            time.sleep(0.02)
        assert response.status_code == 503
        assert "internal error (ImportError: cannot import name 'resolve_bundle_dir')" in response.text


# ----------------------------------------------------------------------------- API key


def test_api_key_required_and_checked(colour_model: Path) -> None:
    with serving(colour_model, api_key="k3y-value") as c:
        files = uploads(("a.jpg", jpeg(RED)))
        for headers in (
            {},
            {"X-API-Key": "wrong"},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "k3y-value"},
        ):
            response = c.post("/v1/predict", files=files, headers=headers)
            assert response.status_code == 401 and error_of(response) == "unauthorized", headers
        for path in ("/v1/model", "/metrics"):
            assert c.get(path).status_code == 401, path
        assert c.post("/v1/predict", files=files, headers={"X-API-Key": "k3y-value"}).status_code == 200
        good = {"Authorization": "Bearer k3y-value"}
        assert c.post("/v1/predict", files=files, headers=good).status_code == 200
        assert c.get("/v1/model", headers=good).status_code == 200
        # probes, the page (which asks for the key) and the API docs (no data; a browser cannot
        # send a key to open them) stay open
        for path in ("/healthz", "/readyz", "/", "/static/app.js", "/docs", "/openapi.json"):
            assert c.get(path).status_code == 200, path
        # The schema says a key is needed, so /docs offers an Authorize button and sends it.
        schema = c.get("/openapi.json").json()
        assert set(schema["components"]["securitySchemes"]) == {"bearer", "apiKey"}
        assert schema["paths"]["/v1/predict"]["post"]["security"] == [{"bearer": []}, {"apiKey": []}]
        assert "security" not in schema["paths"]["/healthz"]["get"]
    with serving(colour_model) as c:  # no key: nothing to send
        assert "securitySchemes" not in c.get("/openapi.json").json().get("components", {})


def test_an_api_key_read_from_a_file_works_and_an_unsendable_one_is_refused() -> None:
    # A key mounted from a file ends in a newline: the server started, and refused every request
    # (no header can carry it).
    from sportsdet.serve.app import usable_api_key

    assert usable_api_key("s3cret\n") == "s3cret" and usable_api_key(None) is None
    for bad in ("two words", "tab\tkey", "caf\u00e9"):
        with pytest.raises(SportsdetError, match="--api-key: use printable ASCII without spaces"):
            usable_api_key(bad)


def test_a_json_body_far_larger_than_its_urls_is_refused_before_parsing(colour_model: Path) -> None:
    # 33 MB of '"a",' was parsed whole on the event loop before its count was refused: 9 s with
    # every request waiting, /healthz included, and 850 MB of memory.
    with serving(colour_model) as c:
        body = b'{"urls": [' + b'"a",' * 200_000 + b'"a"]}'
        started = time.monotonic()
        response = c.post("/v1/predict", content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 413 and error_of(response) == "payload_too_large"
        assert "it holds at most 16 URLs" in response.json()["error"]["message"]
        assert time.monotonic() - started < 1.0


def test_an_image_sent_without_a_file_name_is_refused_not_dropped(colour_model: Path) -> None:
    # Without filename= a part is a text field: it was dropped ("the request holds no image", or
    # one result for two images), or refused as "Part exceeded maximum size of 64KB".
    with serving(colour_model) as c:
        small = c.post("/v1/predict", files={"files": (None, jpeg(RED))})
        assert small.status_code == 400 and "form field 'files' is not a file upload" in small.text
        mixed = [("files", (None, jpeg(RED))), ("files", ("b.jpg", jpeg(BLUE), "image/jpeg"))]
        assert c.post("/v1/predict", files=mixed).status_code == 400
        extra = [("note", (None, b"from the phone")), ("files", ("b.jpg", jpeg(BLUE), "image/jpeg"))]
        assert c.post("/v1/predict", files=extra).status_code == 200  # a small field of its own: ignored
        import io

        from PIL import Image

        noise, buffer = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8), io.BytesIO()
        Image.fromarray(noise).save(buffer, "PNG")  # 120 KB: above the 64 KB a text field may hold
        large = c.post("/v1/predict", files={"files": (None, buffer.getvalue())})
        assert large.status_code == 400 and "curl: -F 'files=@photo.jpg'" in large.text


def test_a_client_that_closes_during_its_upload_is_not_a_server_error(colour_model: Path) -> None:
    # A cancelled upload was logged with a traceback and counted as a 500 (internal_error).
    import socket
    import urllib.request

    process, base = start_serve(colour_model)
    try:
        host, port = base.removeprefix("http://").split(":")
        for _ in range(2):
            with socket.create_connection((host, int(port)), timeout=5) as sock:
                sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                             b"Content-Length: 100000\r\n\r\n" + b"\xff" * 2000)  # fmt: skip
        time.sleep(0.5)
        with urllib.request.urlopen(base + "/metrics", timeout=10) as response:
            metrics = response.read().decode()
    finally:
        process.terminate()
        output = process.communicate(timeout=20)[0]
    assert 'code="internal_error"' not in metrics and 'status="500"' not in metrics
    assert 'sportsdet_errors_total{code="client_closed_request"} 2.0' in metrics
    assert "Traceback" not in output


def test_a_stalled_upload_is_refused_after_the_idle_timeout(colour_model: Path) -> None:
    # A body that stops halfway held its share of the upload budget until the 30 s request limit:
    # eight of them answered every other upload 429 "busy" for the whole time.
    import json
    import socket

    process, base = start_serve(colour_model, "--upload-idle-timeout", "0.5")
    try:
        host, port = base.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            started = time.monotonic()
            sock.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
                         b"Content-Length: 100000\r\n\r\n" + b"\xff" * 2000)  # fmt: skip
            answer = sock.recv(65536).decode()
            waited = time.monotonic() - started
            # The body may come in a packet of its own after the headers (seen under load).
            head, _, body = answer.partition("\r\n\r\n")
            length = int(re.search(r"(?i)content-length: *(\d+)", head).group(1)) if head else 0
            while len(body.encode()) < length and (more := sock.recv(65536)):
                body += more.decode()
            answer = f"{head}\r\n\r\n{body}"
    finally:
        process.terminate()
        process.communicate(timeout=20)
    assert answer.startswith("HTTP/1.1 408") and waited < 5, (answer, waited)
    assert json.loads(answer.split("\r\n\r\n", 1)[1])["error"]["code"] == "upload_stalled"


def test_binding_beyond_loopback_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    check_bind("127.0.0.1", None)
    check_bind("localhost", None)
    check_bind("::1", None)
    check_bind("0.0.0.0", "key")
    for host in ("0.0.0.0", "192.168.1.5", "::"):
        with pytest.raises(SportsdetError, match="API key"):
            check_bind(host, None)
    monkeypatch.delenv("SPORTSDET_API_KEY", raising=False)
    result = CliRunner().invoke(cli_app, ["serve", "--host", "0.0.0.0", "--port", "1"])
    assert result.exit_code != 0 and "API key" in str(result.exception or result.output)


# ----------------------------------------------------------------------------- URLs and SSRF



@pytest.fixture(scope="module")
def images() -> Iterator[LocalServer]:
    server = LocalServer()
    port = server.server.server_address[1]
    server.add("/red.jpg", jpeg(RED), "image/jpeg")
    server.routes["/to-loopback"] = redirect(f"http://127.0.0.2:{port}/red.jpg")
    server.routes["/to-metadata"] = redirect("http://169.254.169.254/latest/meta-data/")
    server.routes["/to-private"] = redirect("http://10.0.0.8/red.jpg")
    server.routes["/to-localhost"] = redirect(f"http://localhost:{port}/red.jpg")
    yield server
    server.close()


def test_urls_refused_by_default(client: TestClient, images: LocalServer) -> None:
    hits = images.hits["/red.jpg"]
    response = client.post("/v1/predict", json={"urls": [images.url("/red.jpg")]})
    assert response.status_code == 403 and error_of(response) == "urls_disabled"
    assert images.hits["/red.jpg"] == hits


def test_urls_fetched_when_allowed_private_when_asked(colour_model: Path, images: LocalServer) -> None:
    with serving(colour_model, allow_urls=True, allow_private_urls=True) as c:
        body = c.post(
            "/v1/predict", json={"urls": [images.url("/red.jpg"), images.url("/missing.jpg")]}
        ).json()
        assert body["results"][0]["label"] == "red"
        assert body["results"][1]["error"]["code"] == "url_failed"
        assert "HTTP 404" in body["results"][1]["error"]["message"]


def test_a_url_over_the_size_limit_has_its_own_error_code(colour_model: Path, images: LocalServer) -> None:
    with serving(colour_model, allow_urls=True, allow_private_urls=True, url_max_bytes=100) as c:
        (result,) = c.post("/v1/predict", json={"urls": [images.url("/red.jpg")]}).json()["results"]
    assert result["error"]["code"] == "url_too_large"


def test_the_model_page_says_private_urls_only_where_urls_are_fetched(colour_model: Path) -> None:
    # --allow-private-urls without --allow-urls fetches nothing: /v1/model said private_urls: true.
    with serving(colour_model, allow_private_urls=True) as c:
        limits = c.get("/v1/model").json()["limits"]
    assert limits["urls"] is False and limits["private_urls"] is False


def test_one_request_of_slow_urls_does_not_hold_every_download(colour_model: Path, images) -> None:
    # 9 URLs that take 1.5 s each took all 8 download threads: another client's one fast URL
    # waited behind them (a 504 with slower hosts).
    slow = [images.url("/slow.jpg")] * 9
    with serving(colour_model, allow_urls=True, allow_private_urls=True) as c:
        hog = threading.Thread(target=lambda: c.post("/v1/predict", json={"urls": slow}), daemon=True)
        hog.start()
        time.sleep(0.3)
        started = time.monotonic()
        (answer,) = c.post("/v1/predict", json={"urls": [images.url("/red.jpg")]}).json()["results"]
        waited = time.monotonic() - started
        hog.join(30)
    assert answer["label"] == "red" and waited < 1.0, waited


def test_ssrf_attempts_are_refused(colour_model: Path, images: LocalServer) -> None:
    port = images.server.server_address[1]
    urls = [
        images.url("/red.jpg"),  # 127.0.0.1
        f"http://localhost:{port}/red.jpg",  # a name that resolves to loopback
        "http://10.1.2.3/a.jpg",
        "http://169.254.169.254/latest/meta-data/",
        f"http://[::ffff:127.0.0.1]:{port}/red.jpg",
    ]
    hits = images.hits["/red.jpg"]
    with serving(colour_model, allow_urls=True) as c:
        start = time.monotonic()
        results = c.post("/v1/predict", json={"urls": urls}).json()["results"]
        assert [r["error"]["code"] for r in results] == ["url_refused"] * len(urls)
        assert time.monotonic() - start < 3  # refused before connecting, not after a timeout
    assert images.hits["/red.jpg"] == hits  # never reached


def test_one_trusted_network_is_an_option_of_the_command(colour_model: Path, monkeypatch) -> None:
    # ServeConfig.url_allowed_networks (an internal image server) could only be set from Python.
    from sportsdet.serve import app as serve_app

    seen: list[ServeConfig] = []

    def stop(config: ServeConfig):
        seen.append(config)
        raise SportsdetError("stopped here")

    monkeypatch.setattr(serve_app, "make_predictor", stop)
    args = ["serve", "--model", str(colour_model), "--allow-urls"]
    result = CliRunner().invoke(cli_app, [*args, "--allow-url-network", "10.0.5.7",
                                          "--allow-url-network", "fd00::/8"])  # fmt: skip
    assert "stopped here" in str(result.exception)
    assert seen[0].url_allowed_networks == tuple(map(ipaddress.ip_network, ["10.0.5.7/32", "fd00::/8"]))
    assert seen[0].url_policy().refusal(ipaddress.ip_address("10.0.5.7")) is None
    assert seen[0].url_policy().refusal(ipaddress.ip_address("10.0.5.8")) == "private"
    result = CliRunner().invoke(cli_app, [*args, "--allow-url-network", "10.0.5.300"])
    assert "--allow-url-network '10.0.5.300': not an IP address or network" in str(result.exception)
    result = CliRunner().invoke(cli_app, [*args[:-1], "--allow-url-network", "10.0.5.7"])
    assert "--allow-url-network needs --allow-urls" in str(result.exception) and len(seen) == 1


def test_redirects_to_internal_addresses_are_refused(colour_model: Path, images: LocalServer) -> None:
    # The first hop is allowed (the test server's own address), every redirect target is not.
    allowed = (ipaddress.ip_network("127.0.0.1/32"),)
    paths = ["/to-loopback", "/to-metadata", "/to-private"]
    with serving(colour_model, allow_urls=True, url_allowed_networks=allowed) as c:
        results = c.post("/v1/predict", json={"urls": [images.url(p) for p in paths]}).json()["results"]
        assert [r["error"]["code"] for r in results] == ["url_refused"] * 3
        assert "169.254.169.254" in results[1]["error"]["message"]
        assert (
            c.post("/v1/predict", json={"urls": [images.url("/red.jpg")]}).json()["results"][0]["label"]
            == "red"
        )


def test_host_name_resolving_to_private_address_is_refused(
    colour_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    resolve_host_to(monkeypatch, "photos.example.com", "192.168.7.7")
    with serving(colour_model, allow_urls=True) as c:
        (result,) = c.post("/v1/predict", json={"urls": ["http://photos.example.com/a.jpg"]}).json()[
            "results"
        ]
        assert result["error"]["code"] == "url_refused" and "192.168.7.7" in result["error"]["message"]


def test_credentials_in_urls_refused_and_not_echoed(colour_model: Path, images: LocalServer) -> None:
    url = images.url("/red.jpg").replace("http://", "http://me:pa55word@")
    with serving(colour_model, allow_urls=True, allow_private_urls=True) as c:
        response = c.post("/v1/predict", json={"urls": [url, "ftp://example.com/a.jpg"]})
        assert "pa55word" not in response.text
        results = response.json()["results"]
        assert [r["error"]["code"] for r in results] == ["bad_url", "bad_url"]
        assert "user name or password" in results[0]["error"]["message"]


# ----------------------------------------------------------------------------- page and install


def test_page_and_assets_are_served_by_the_package(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    # Nothing served may be read by a browser as another type than it says (an upload's echo as HTML).
    api = client.post("/v1/predict", files=uploads(("a.jpg", jpeg(RED))))
    for response in (page, api, client.get("/static/app.js"), client.get("/v1/model")):
        assert response.headers["x-content-type-options"] == "nosniff", response.url
    for asset in ("/static/app.js", "/static/style.css", "/static/favicon.svg"):
        assert client.get(asset).status_code == 200, asset
    static = Path(__file__).resolve().parents[1] / "src" / "sportsdet" / "serve" / "static"
    for path in static.iterdir():
        text = path.read_text()
        assert "cdn" not in text.lower() and "//unpkg" not in text and "googleapis" not in text, path


def test_service_imports_no_torch() -> None:
    heavy = ("torch", "torchvision", "timm", "sklearn", "matplotlib", "onnx", "scipy")
    code = (
        "import sys, sportsdet.serve.app, sportsdet.cli.serve;"
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def _sigterm_during_a_slow_url(colour_model: Path, http_server: LocalServer, *options: str):
    """A real server fetching /slow.jpg (1.5 s) gets SIGTERM 0.4 s into the request: (the
    answer's status, content type and JSON body; the server's output)."""
    import json
    import signal
    import urllib.error
    import urllib.request

    process, base = start_serve(colour_model, "--allow-urls", "--allow-private-urls", *options)
    try:
        answers: list = []

        def slow_request() -> None:
            body = json.dumps({"urls": [http_server.url("/slow.jpg")]}).encode()
            request = urllib.request.Request(
                base + "/v1/predict", body, headers={"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    answers.append((response.status, response.headers.get("content-type"), response.read()))
            except urllib.error.HTTPError as error:
                answers.append((error.code, error.headers.get("content-type"), error.read()))

        thread = threading.Thread(target=slow_request)
        thread.start()
        time.sleep(0.4)
        process.send_signal(signal.SIGTERM)
        thread.join(10)
        # uvicorn re-raises the signal once it has shut down; sportsdet ends as for any SIGTERM.
        assert process.wait(10) in (0, 143)
    finally:
        if process.poll() is None:
            process.kill()
    status, kind, body = answers[0]
    return status, kind, json.loads(body), base, process.stdout.read()


def test_sigterm_finishes_requests_in_flight(colour_model: Path, http_server: LocalServer) -> None:
    """The real command: prints its URL, and on SIGTERM answers the request in flight, then exits."""
    status, _, body, base, output = _sigterm_during_a_slow_url(colour_model, http_server)
    assert status == 200 and body["results"][0]["label"] == "green"
    assert f"{base}/" in output
    # It ended with the file commands' "no file is left half written; run the same command again".
    assert output.rstrip().endswith("sportsdet serve: stopped") and "run the same command" not in output


def test_a_request_cut_off_by_the_shutdown_gets_a_json_503(colour_model: Path, http_server) -> None:
    # --graceful-timeout shorter than the request: uvicorn cancelled it and answered a plain-text
    # 500 ("Internal Server Error") with a traceback in the log.
    status, kind, body, _, output = _sigterm_during_a_slow_url(
        colour_model, http_server, "--graceful-timeout", "0.3"
    )
    assert status == 503 and kind == "application/json" and body["error"]["code"] == "shutting_down"
    assert "Traceback" not in output


def test_port_0_says_the_port_it_listens_on(colour_model: Path) -> None:
    # It printed "http://127.0.0.1:0/" and hid uvicorn's own line: the server could not be found.
    import os
    import urllib.request

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    command = [sys.executable, "-m", "sportsdet", "serve", "--model", str(colour_model), "--port", "0"]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stderr.readline()
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", line).group(1))
        assert port > 0, line
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
                    assert response.status == 200
                    break
            except OSError:
                time.sleep(0.05)
        else:
            raise AssertionError(f"nothing answers on port {port}")
    finally:
        process.kill()
        process.wait(10)


def test_a_port_in_use_is_one_error_line_not_a_listening_line(colour_model: Path) -> None:
    # It printed "... on http://127.0.0.1:N/" and then uvicorn's bind failure, exit 3.
    import os

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
    command = [sys.executable, "-m", "sportsdet", "serve", "--model", str(colour_model), "--port", str(port)]
    try:
        out = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    finally:
        taken.close()
    assert out.returncode == 2, out.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr and "choose another --port" in out.stderr
    assert "http://" not in out.stderr and "Traceback" not in out.stderr
    # A host that is no address of this machine is not the port's fault.
    key = "k" * 32
    result = CliRunner().invoke(
        cli_app,
        ["serve", "--model", str(colour_model), "--host", "no-such-host.invalid", "--port", str(port),
         "--api-key", key],
    )  # fmt: skip
    said = str(result.exception or "") + result.output
    assert result.exit_code != 0 and "cannot listen on no-such-host.invalid" in said and "--port" not in said


def test_without_the_serve_extra_the_command_says_what_to_install() -> None:
    # A light install has no fastapi/uvicorn: one error line naming the extra, no traceback.
    code = (
        "import sys; sys.modules['fastapi'] = None; sys.modules['uvicorn'] = None;"
        "sys.argv = ['sportsdet', 'serve']; from sportsdet.cli import main; main()"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "pip install 'sportsdet[serve]'" in out.stderr and "Traceback" not in out.stderr


def test_uncertain_follows_the_abstain_rule_in_force(colour_model: Path) -> None:
    # The same rule object `sportsdet predict` uses (here --min-score 0.8: top probability >= 0.8).
    predictor = Predictor(colour_model, min_score=0.8)
    with serving(colour_model, predictor) as c:
        files = uploads(("red.jpg", jpeg(RED)), ("grey.jpg", jpeg((128, 128, 128))))
        red, grey = c.post("/v1/predict", files=files).json()["results"]
        assert red["uncertain"] is False and red["score"] > 0.8 and red["label"] == "red"
        # Uncertain: no label, as predict's jsonl; the best guess stays first in top_k.
        assert grey["uncertain"] is True and grey["label"] is None and grey["score"] is None
        assert grey["top_k"][0]["score"] < 0.8
        model = c.get("/v1/model").json()
        assert model["abstain_threshold"] == 0.8 and model["abstain"]["method"] == "max_prob"


def test_the_server_takes_min_score_and_no_abstain_like_predict(colour_model: Path) -> None:
    # Only `sportsdet predict` had them: ?min_score was ignored and the server always used the
    # model's own rule (its docstring named options that did not exist).
    import json
    import urllib.request

    grey = uploads(("grey.jpg", jpeg((128, 128, 128))))
    with serving(colour_model, min_score=0.8) as c:
        (answer,) = c.post("/v1/predict", files=grey).json()["results"]
        assert answer["uncertain"] is True and c.get("/v1/model").json()["abstain_threshold"] == 0.8
        # The page read this rule as "the model's abstain rule" (and --no-abstain as none at all).
        assert c.get("/v1/model").json()["abstain_set_by"] == "--min-score"
    with serving(colour_model, abstain=False) as c:
        (answer,) = c.post("/v1/predict", files=grey).json()["results"]
        assert answer["uncertain"] is None and answer["label"] in COLOUR_LABELS
        assert c.get("/v1/model").json()["abstain_set_by"] == "--no-abstain"
    both = ["serve", "--model", str(colour_model), "--min-score", "0.5", "--no-abstain"]
    result = CliRunner().invoke(cli_app, both)
    assert result.exit_code != 0 and "contradict" in str(result.exception)
    process, base = start_serve(colour_model, "--min-score", "0.7")
    try:
        with urllib.request.urlopen(base + "/v1/model", timeout=10) as response:
            assert json.loads(response.read())["abstain_threshold"] == 0.7
    finally:
        process.kill()
        process.wait(10)


def test_uploads_held_at_once_are_bounded(colour_model: Path) -> None:
    import io

    from PIL import Image

    noise = np.random.default_rng(1).integers(0, 255, (90, 90, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "PNG")
    upload = buffer.getvalue()
    assert 20_000 < len(upload) < 30_000
    predictor, gated = gated_predictor(colour_model)
    options = {"max_request_bytes": 40_000, "max_body_bytes_in_flight": 45_000}
    with serving(colour_model, predictor, **options) as c:
        first: list = []
        thread = _post_in_thread(c, uploads(("a.png", upload)), first)
        assert gated.entered.wait(5)  # the first upload is held while its image is in the model
        response = c.post("/v1/predict", files=uploads(("b.png", upload)))
        assert response.status_code == 429 and error_of(response) == "overloaded"
        assert response.headers["Retry-After"] == "1"
        gated.gate.set()
        thread.join(10)
        assert first[0].status_code == 200
        assert c.post("/v1/predict", files=uploads(("b.png", upload))).status_code == 200
        assert c.app.state.bodies.used == 0  # every byte given back


def test_probes_answer_head_and_the_api_says_what_predict_says_of_a_misnamed_photo(client, tmp_path) -> None:
    # HEAD (what uptime monitors send) was a 405 on every path; a JPEG uploaded as soccer.php had
    # no warning where `sportsdet predict` says it is misleadingly named.
    for path in ("/healthz", "/readyz", "/"):
        assert client.head(path).status_code == 200, path
    assert client.get("/v1/model").json()["abstain_set_by"] is None  # the colour model has no rule
    (tmp_path / "soccer.php").write_bytes(jpeg(RED))
    (predicted,) = client.app.state.service.predictor.predict_sources([str(tmp_path / "soccer.php")])
    sent = uploads(("soccer.php", jpeg(RED)), ("soccer.jpg", jpeg(RED)))
    misnamed, named = client.post("/v1/predict", files=sent).json()["results"]
    raw = client.post("/v1/predict", content=jpeg(RED), headers={"Content-Type": "image/jpeg"})
    said = "image with a misleading name: a JPEG file named '.php'"
    assert predicted.warning == said == misnamed["warning"]
    assert named["warning"] is None and raw.json()["results"][0]["warning"] is None
    # A part without a file name is named by its form field: no note on that name.
    body = (b'--XyZ\r\nContent-Disposition: form-data; name="image"; filename=""\r\n'
            b"Content-Type: image/jpeg\r\n\r\n" + jpeg(RED) + b"\r\n--XyZ--\r\n")  # fmt: skip
    multipart = {"Content-Type": "multipart/form-data; boundary=XyZ"}
    unnamed = client.post("/v1/predict", content=body, headers=multipart)
    (answer,) = unnamed.json()["results"]
    assert answer["input"] == "image" and answer["label"] and answer["warning"] is None, answer
    top_k = client.get("/openapi.json").json()["paths"]["/v1/predict"]["post"]["parameters"][0]
    assert top_k["description"] == "how many sports to list per photo (default: 5)"  # there is no --top-k
