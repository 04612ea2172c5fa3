"""The torch-free runtime: ONNX metadata validation, backend choice, the streaming pipeline.

The ONNX models here are built by hand with onnx.helper (no torch): a colour classifier
GlobalAveragePool -> Flatten -> MatMul -> Softmax whose answers we can predict from the image
(a red photo must come out "red"), so the tests check real predictions, not stored numbers.
"""

from __future__ import annotations

import io
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import COLOUR_LABELS, COLOUR_SPEC, make_colour_onnx
from PIL import Image

from sportsdet import runtime
from sportsdet.bundle import save_bundle
from sportsdet.errors import SportsdetError
from sportsdet.export import onnx_metadata
from sportsdet.preprocess import Preprocessing, load_and_preprocess
from sportsdet.runtime import (
    META_LABELS,
    META_PREPROCESSING,
    OnnxBackend,
    load_backend,
    stream_predictions,
)

LABELS, SPEC = COLOUR_LABELS, COLOUR_SPEC
COLOURS = {"red": (230, 20, 20), "green": (20, 200, 30), "blue": (10, 30, 220)}


def write_image(path: Path, colour: str, size: tuple[int, int] = (40, 30)) -> Path:
    Image.new("RGB", size, COLOURS[colour]).save(path)
    return path


def jpeg_bytes(colour: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (50, 50), COLOURS[colour]).save(buffer, format="JPEG")
    return buffer.getvalue()


# --- metadata -------------------------------------------------------------------------------


def test_metadata_round_trip(tmp_path: Path) -> None:
    path = make_colour_onnx(tmp_path / "m.onnx")
    backend = OnnxBackend(path, threads=1)
    assert backend.labels == LABELS
    assert backend.preprocessing == SPEC
    assert backend.info.output == "probabilities"
    assert backend.info.model["name"] == "colour"
    assert "onnxruntime" in backend.info.versions
    batch = np.stack([load_and_preprocess(jpeg_bytes(c), SPEC) for c in LABELS])
    probs = backend.predict_proba(batch)
    assert probs.shape == (3, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert [LABELS[i] for i in probs.argmax(axis=1)] == LABELS


@pytest.mark.parametrize("missing", [META_LABELS, META_PREPROCESSING, "sportsdet.format", "sportsdet.output"])
def test_missing_metadata_is_refused_naming_file_and_key(tmp_path: Path, missing: str) -> None:
    path = make_colour_onnx(tmp_path / "plain.onnx", drop=(missing,))
    with pytest.raises(SportsdetError) as info:
        OnnxBackend(path)
    message = str(info.value)
    assert str(path) in message and missing in message and "sportsdet export" in message


def test_onnx_without_any_metadata_is_refused(tmp_path: Path) -> None:
    path = make_colour_onnx(tmp_path / "bare.onnx", metadata={})
    with pytest.raises(SportsdetError, match="sportsdet.labels"):
        OnnxBackend(path)


@pytest.mark.parametrize(
    "key, value, expect",
    [
        ("sportsdet.format", "other/9", "sportsdet-onnx/1"),
        (META_LABELS, "not json", "not valid JSON"),
        (META_LABELS, json.dumps(["a", "a", "b"]), "duplicate"),
        (META_LABELS, json.dumps([]), "non-empty"),
        (META_PREPROCESSING, json.dumps({"input_size": 16, "resize": "stretch"}), "resize"),
        (META_PREPROCESSING, "{broken", "not valid JSON"),
        ("sportsdet.output", "scores", "probabilities"),
    ],
)
def test_wrong_metadata_is_refused(tmp_path: Path, key: str, value: str, expect: str) -> None:
    meta = onnx_metadata(labels=LABELS, preprocessing=SPEC, model_name="colour")
    meta[key] = value
    path = make_colour_onnx(tmp_path / "wrong.onnx", metadata=meta)
    with pytest.raises(SportsdetError) as info:
        OnnxBackend(path)
    assert str(path) in str(info.value) and expect in str(info.value)
    assert str(info.value).count(str(path)) == 1 and str(info.value).count("export it with") == 1


def test_damaged_informational_metadata_does_not_refuse_the_model(tmp_path: Path) -> None:
    # A non-JSON 'sportsdet.versions' made the whole file unreadable, even for `info --labels`.
    meta = onnx_metadata(labels=LABELS, preprocessing=SPEC, model_name="colour")
    meta["sportsdet.versions"], meta["sportsdet.model"] = "{not json", "[1]"
    backend = OnnxBackend(make_colour_onnx(tmp_path / "odd.onnx", metadata=meta))
    assert backend.labels == LABELS


def test_metadata_that_contradicts_the_graph_is_refused(tmp_path: Path) -> None:
    # Four labels but three outputs: predictions would be named wrongly.
    meta = onnx_metadata(labels=LABELS + ["extra"], preprocessing=SPEC, model_name="colour")
    path = make_colour_onnx(tmp_path / "four.onnx", metadata=meta, classes=3)
    with pytest.raises(SportsdetError, match="4 labels"):
        OnnxBackend(path)
    # Metadata input size 32 but the graph takes 16 px.
    meta = onnx_metadata(labels=LABELS, preprocessing=Preprocessing(input_size=32), model_name="colour")
    graph16 = make_colour_onnx(tmp_path / "size.onnx", metadata=meta)
    with pytest.raises(SportsdetError, match="input_size 32"):
        OnnxBackend(graph16)


def test_not_an_onnx_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_text("<html>not a model</html>")
    with pytest.raises(SportsdetError, match="onnxruntime cannot load"):
        load_backend(path)
    with pytest.raises(SportsdetError, match="no such ONNX"):
        load_backend(tmp_path / "absent.onnx")


# --- choosing a backend ---------------------------------------------------------------------


def make_bundle(folder: Path, labels: list[str] = LABELS) -> Path:
    """A bundle with NumPy weights (no torch needed to write it)."""
    state = {"fc.weight": np.eye(len(labels), 3, dtype=np.float32)}
    return save_bundle(
        folder, state_dict=state, model_name="colour", model_config={}, labels=labels,
        preprocessing=SPEC, output_key="fc.weight",
    )


def test_auto_backend_uses_the_bundles_onnx(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    make_colour_onnx(bundle / "model.onnx")
    backend = load_backend(bundle)
    assert isinstance(backend, OnnxBackend) and backend.labels == LABELS
    assert isinstance(load_backend(bundle / "model.onnx"), OnnxBackend)
    with pytest.raises(SportsdetError, match="model.int8.onnx"):
        load_backend(bundle, int8=True)


def test_a_run_folder_and_the_name_builtin_run_their_bundles_onnx(tmp_path: Path, monkeypatch) -> None:
    # The ONNX file was looked for beside the name given (RUN/model.onnx, ./builtin/model.onnx), so
    # the torch backend ran instead of the model the bundle ships.
    run = tmp_path / "run"
    make_colour_onnx(make_bundle(run / "model") / "model.onnx")
    (run / "config.json").write_text("{}")
    assert isinstance(load_backend(run), OnnxBackend) and isinstance(load_backend(run, "onnx"), OnnxBackend)
    monkeypatch.setattr(runtime, "_torch_installed", lambda: False)  # no torch to fall back on
    monkeypatch.chdir(tmp_path)
    builtin = load_backend("builtin")
    assert isinstance(builtin, OnnxBackend) and builtin.path.name == "model.int8.onnx"
    # A run whose training has not written its model yet is told so, as predict tells it.
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.json").write_text(json.dumps({"options": {}, "model": "lite0", "data": "photos"}))
    with pytest.raises(SportsdetError, match="this run has no model yet"):
        load_backend(unfinished)


def test_stale_onnx_in_bundle_is_refused(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    meta = onnx_metadata(labels=["r", "g", "b"], preprocessing=SPEC, model_name="colour")
    make_colour_onnx(bundle / "model.onnx", metadata=meta)
    with pytest.raises(SportsdetError, match="re-run `sportsdet export"):
        load_backend(bundle)


def test_bundle_without_onnx_and_without_torch_says_what_to_do(tmp_path: Path, monkeypatch) -> None:
    bundle = make_bundle(tmp_path / "bundle")
    monkeypatch.setattr(runtime, "_torch_installed", lambda: False)
    with pytest.raises(SportsdetError) as info:
        load_backend(bundle)
    assert "sportsdet export" in str(info.value) and "sportsdet[train]" in str(info.value)
    with pytest.raises(SportsdetError, match="has no model.onnx"):
        load_backend(bundle, backend="onnx")
    with pytest.raises(SportsdetError, match="unknown backend"):
        load_backend(bundle, backend="tensorflow")


# --- the streaming pipeline -----------------------------------------------------------------


@pytest.fixture()
def colour_backend(tmp_path: Path) -> OnnxBackend:
    return OnnxBackend(make_colour_onnx(tmp_path / "colour.onnx"), threads=1)


def test_stream_keeps_order_and_reports_bad_inputs(tmp_path: Path, colour_backend: OnnxBackend) -> None:
    good = {c: write_image(tmp_path / f"{c}.jpg", c) for c in LABELS}
    png = write_image(tmp_path / "green.png", "green", size=(300, 90))
    truncated = tmp_path / "truncated.jpg"
    data = good["red"].read_bytes()
    truncated.write_bytes(data[: len(data) * 2 // 3])
    html = tmp_path / "page.jpg"
    html.write_text("<!DOCTYPE html><html><body>404 not found</body></html>")
    missing = tmp_path / "missing.jpg"
    inputs = [
        good["red"], truncated, good["blue"], html, png, missing,
        ("from-bytes", jpeg_bytes("blue")), good["green"], good["red"],
    ]
    expected = ["red", "error", "blue", "error", "green", "error", "blue", "green", "red"]
    # batch_size 2 forces several batches, each holding good and bad inputs.
    results = list(stream_predictions(inputs, colour_backend, batch_size=2, workers=3))
    assert [r.index for r in results] == list(range(len(inputs)))
    got = [LABELS[int(np.argmax(r.probs))] if r.ok else "error" for r in results]
    assert got == expected
    assert results[6].name == "from-bytes"
    assert results[1].error_kind in ("truncated", "corrupt") and str(truncated) in results[1].error
    assert results[3].error_kind == "not-an-image" and "HTML" in results[3].error
    assert results[5].error_kind == "missing" and str(missing) in results[5].error
    # Same numbers as predicting each image on its own.
    direct = colour_backend.predict_proba(load_and_preprocess(png, SPEC)[None])[0]
    np.testing.assert_allclose(results[4].probs, direct, rtol=1e-5, atol=1e-6)


def test_stream_memory_is_bounded_and_input_is_lazy(tmp_path: Path, colour_backend: OnnxBackend) -> None:
    files = [write_image(tmp_path / f"{c}.png", c) for c in LABELS]
    pulled = 0

    def endless():  # an input that never ends: the stream must not try to list it first
        nonlocal pulled
        for path in itertools.cycle(files):
            pulled += 1
            yield path

    window = 7
    seen_in_flight: list[int] = []
    stream = stream_predictions(
        endless(), colour_backend, batch_size=3, workers=2, max_in_flight=window,
        on_in_flight=seen_in_flight.append,
    )
    count = 0
    for result in itertools.islice(stream, 60):
        count += 1
        assert result.index == count - 1
        assert LABELS[int(np.argmax(result.probs))] == files[result.index % 3].stem
        assert pulled - count <= window  # read but not yet delivered
    stream.close()
    assert count == 60
    # The window is used (a batch of 3 is taken whenever it fits) and never passed.
    assert window - 3 < max(seen_in_flight) <= window and pulled <= 60 + window


def test_stream_of_nothing_and_bad_batch_size(colour_backend: OnnxBackend) -> None:
    assert list(stream_predictions(iter([]), colour_backend)) == []
    with pytest.raises(SportsdetError, match="--batch-size 0: must be between 1 and"):
        list(stream_predictions(["x.jpg"], colour_backend, batch_size=0))


def test_stream_with_custom_loader_and_names(colour_backend: OnnxBackend) -> None:
    items = [{"id": "a", "colour": "blue"}, {"id": "b", "colour": None}, {"id": "c", "colour": "red"}]

    def load(item: dict, out: np.ndarray) -> np.ndarray:
        if item["colour"] is None:
            raise SportsdetError(f"{item['id']}: nothing to load")
        if item["id"] == "a":  # a loader may fill the batch row it is given ...
            return load_and_preprocess(jpeg_bytes(item["colour"]), SPEC, out=out)
        return load_and_preprocess(jpeg_bytes(item["colour"]), SPEC)  # ... or return a new array

    results = list(stream_predictions(items, colour_backend, load=load, name_of=lambda item: item["id"]))
    assert [r.name for r in results] == ["a", "b", "c"]
    assert [LABELS[int(np.argmax(r.probs))] for r in (results[0], results[2])] == ["blue", "red"]
    assert results[1].error == "b: nothing to load" and results[1].probs is None


class _Counting:
    """Wraps a backend and records the batches it is given (as the names' colours)."""

    def __init__(self, inner: OnnxBackend) -> None:
        self.inner, self.calls = inner, []
        self.labels, self.preprocessing = inner.labels, inner.preprocessing

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        self.calls.append(len(batch))
        return self.inner.predict_proba(batch)


def test_batches_are_fixed_runs_of_the_input(tmp_path: Path, colour_backend: OnnxBackend) -> None:
    """A batch is the next batch_size inputs whatever the timing, so results are reproducible;
    a bad input leaves its batch one image short."""
    files = [write_image(tmp_path / f"{i}.png", LABELS[i % 3]) for i in range(5)]
    inputs = files[:2] + [tmp_path / "missing.jpg"] + files[2:]
    for _ in range(3):
        counting = _Counting(colour_backend)
        results = list(stream_predictions(inputs, counting, batch_size=2, workers=3))
        assert sorted(counting.calls) == [1, 2, 2]
        assert [r.ok for r in results] == [True, True, False, True, True, True]
        assert [r.name for r in results] == [str(p) for p in inputs]


def test_bad_model_output_and_broken_source_are_raised_in_order(
    tmp_path: Path, colour_backend: OnnxBackend
) -> None:
    files = [write_image(tmp_path / f"{i}.png", LABELS[i % 3]) for i in range(6)]

    class FailsOnThirdBatch(_Counting):
        def predict_proba(self, batch: np.ndarray) -> np.ndarray:
            if float(batch[0].mean()) == float(load_and_preprocess(files[4], SPEC).mean()):
                raise SportsdetError("model exploded")
            return super().predict_proba(batch)

    stream = stream_predictions(files, FailsOnThirdBatch(colour_backend), batch_size=2)
    delivered = []
    with pytest.raises(SportsdetError, match="model exploded"):
        for result in stream:
            delivered.append(result.index)
    assert delivered == [0, 1, 2, 3]

    class DropsARow(_Counting):
        def predict_proba(self, batch: np.ndarray) -> np.ndarray:
            return super().predict_proba(batch)[:-1]

    with pytest.raises(SportsdetError, match=r"shape \(1, 3\) for a batch of 2 images"):
        list(stream_predictions(files, DropsARow(colour_backend), batch_size=2))

    def broken_source():
        yield from files[:3]
        raise SportsdetError("folder vanished")

    delivered = []
    with pytest.raises(SportsdetError, match="folder vanished"):
        for result in stream_predictions(broken_source(), colour_backend, batch_size=2):
            delivered.append(result.index)
    assert delivered == [0, 1, 2]


def test_concurrent_runs_overlap_up_to_the_backends_limit(tmp_path: Path) -> None:
    """A backend that allows 2 runs at once gets 2 at once (never more, even with 4 workers),
    each through predict_proba_serial; a backend that says nothing gets one at a time."""
    import threading

    inner = OnnxBackend(make_colour_onnx(tmp_path / "colour.onnx"), threads=1)
    files = [write_image(tmp_path / f"{i}.png", LABELS[i % 3]) for i in range(12)]

    class TwoLanes:
        labels, preprocessing = inner.labels, inner.preprocessing
        concurrent_runs = 2

        def __init__(self) -> None:
            self.lock, self.running, self.most = threading.Lock(), 0, 0
            self.met = threading.Barrier(2, timeout=10)  # breaks unless two runs really overlap

        def predict_proba_serial(self, batch: np.ndarray) -> np.ndarray:
            with self.lock:
                self.running += 1
                self.most = max(self.most, self.running)
            try:
                if not self.met.broken:
                    self.met.wait()
                    self.met.abort()  # once is proof enough
                return inner.predict_proba(batch)
            except threading.BrokenBarrierError:
                return inner.predict_proba(batch)
            finally:
                with self.lock:
                    self.running -= 1

        def predict_proba(self, batch: np.ndarray) -> np.ndarray:
            raise AssertionError("the stream must use predict_proba_serial")

    lanes = TwoLanes()
    results = list(stream_predictions(files, lanes, batch_size=2, workers=4))
    assert [LABELS[int(np.argmax(r.probs))] for r in results] == [LABELS[i % 3] for i in range(12)]
    assert lanes.most == 2

    class OneLane(TwoLanes):
        concurrent_runs = 1

        def predict_proba(self, batch: np.ndarray) -> np.ndarray:
            return self.predict_proba_serial(batch)

        def predict_proba_serial(self, batch: np.ndarray) -> np.ndarray:
            self.met.abort()  # nothing to wait for: runs must not overlap
            return super().predict_proba_serial(batch)

    one = OneLane()
    assert len(list(stream_predictions(files, one, batch_size=2, workers=4))) == 12
    assert one.most == 1


def test_closing_the_stream_stops_its_workers(tmp_path: Path, colour_backend: OnnxBackend) -> None:
    import threading
    import time

    files = [write_image(tmp_path / f"{c}.png", c) for c in LABELS]
    stream = stream_predictions(itertools.cycle(files), colour_backend, batch_size=2, workers=3)
    assert next(stream).index == 0
    stream.close()
    deadline = time.monotonic() + 10
    while any(t.name.startswith("sportsdet-worker") for t in threading.enumerate()):
        assert time.monotonic() < deadline, "workers still running after the stream was closed"
        time.sleep(0.01)


def test_a_second_ctrl_c_while_the_stream_stops_still_waits_for_the_model_runs(
    tmp_path: Path, colour_backend: OnnxBackend, ctrl_c_raises
) -> None:
    # `timeout -s INT` signals the process twice (and people press Ctrl-C twice): the second
    # interrupt broke off the wait for the workers (Python 3.11's interrupted Thread.join even marks
    # a running thread as ended), one of them was still inside onnxruntime when the interpreter
    # exited, and the process aborted ("terminate called without an active exception", exit 134).
    import os
    import signal
    import threading
    import time

    class Slow(_Counting):
        def predict_proba(self, batch: np.ndarray) -> np.ndarray:
            time.sleep(0.8)
            return super().predict_proba(batch)

    files = [write_image(tmp_path / f"{c}.png", c) for c in LABELS]
    stream = stream_predictions(itertools.cycle(files), Slow(colour_backend), batch_size=1, workers=2)
    assert next(stream).index == 0
    pipeline = stream.gi_frame.f_locals["self"]
    time.sleep(0.1)  # the workers are inside their next model runs
    threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()  # Ctrl-C while closing
    try:
        stream.close()
    except KeyboardInterrupt:
        pytest.fail("the second Ctrl-C broke off the wait for the workers")
    assert pipeline.running_workers == 0  # none still inside the model when close() returned


def test_default_batch_is_the_backends_preferred_one(tmp_path: Path) -> None:
    """Without batch_size, batches take the backend's measured best size (onnxruntime: 2 per
    single-threaded run, one run per thread at a time)."""
    model = make_colour_onnx(tmp_path / "colour.onnx")
    split = OnnxBackend(model, threads=3)
    assert (split.preferred_batch_size, split.concurrent_runs) == (2, 3)
    intra = OnnxBackend(model, threads=2, parallel="intra")
    assert (intra.preferred_batch_size, intra.concurrent_runs) == (8, 1)
    files = [write_image(tmp_path / f"{i}.png", LABELS[i % 3]) for i in range(7)]
    counting = _Counting(OnnxBackend(model, threads=1))
    counting.preferred_batch_size = 3
    assert len(list(stream_predictions(files, counting))) == 7
    assert sorted(counting.calls) == [1, 3, 3]
    plain = _Counting(OnnxBackend(model, threads=1))  # says nothing: the default of 16
    list(stream_predictions(files, plain))
    assert plain.calls == [7]
    from sportsdet.predict import Predictor

    assert Predictor(model, threads=2).batch_size == 2
    assert Predictor(model, threads=2, batch_size=5).batch_size == 5


def test_load_backend_errors_name_the_path(tmp_path: Path, monkeypatch) -> None:
    from sportsdet.errors import BundleError

    with pytest.raises(BundleError, match="no such model bundle"):
        load_backend(tmp_path / "nothing")
    bundle = make_bundle(tmp_path / "bundle")
    make_colour_onnx(bundle / "model.onnx")
    monkeypatch.setattr(runtime, "_torch_installed", lambda: False)
    with pytest.raises(SportsdetError, match="torch backend needs PyTorch"):
        load_backend(bundle, backend="torch")
    assert isinstance(load_backend(bundle / "bundle.json"), OnnxBackend)


def test_normalize_is_bit_identical_to_the_plain_formula() -> None:
    # Guards the channels-first speed-up in preprocess.normalize (the stream's main CPU cost).
    from sportsdet.preprocess import normalize

    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    for spec in (SPEC, Preprocessing(input_size=8, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))):
        mean = np.asarray(spec.mean, np.float32) * 255.0
        inv_std = 1.0 / (np.asarray(spec.std, np.float32) * 255.0)
        expected = ((pixels.astype(np.float32) - mean) * inv_std).transpose(2, 0, 1)
        got = normalize(Image.fromarray(pixels), spec)
        assert got.dtype == np.float32 and got.flags.c_contiguous
        np.testing.assert_array_equal(got, expected)
        # Into a row of a reused batch (the stream's path): same bits, written in place.
        batch = np.full((2, 3, 37, 53), np.nan, np.float32)
        assert np.shares_memory(normalize(Image.fromarray(pixels), spec, batch[1]), batch)
        np.testing.assert_array_equal(batch[1], expected)
        assert np.isnan(batch[0]).all()
    with pytest.raises(SportsdetError, match="expected float32"):
        normalize(Image.fromarray(pixels), SPEC, np.empty((3, 37, 52), np.float32))
    with pytest.raises(SportsdetError, match="expected float32"):
        normalize(Image.fromarray(pixels), SPEC, np.empty((3, 37, 53), np.float64))


def test_a_batch_cut_short_by_a_stop_is_never_handed_out() -> None:
    # Another worker's failure stops the stream while this one reads its batch: the part it had
    # read (no scores: the model never ran) was handed out as labelled results, probs None.
    from sportsdet.runtime import _Pipeline

    pipeline: _Pipeline

    def load(item: int, out: np.ndarray) -> None:
        if item == 2:  # as if another worker died now
            pipeline.worker_error = RuntimeError("another worker died")
            pipeline.stopping = True
        out[...] = 0.0

    pipeline = _Pipeline(
        iter(range(8)), run=lambda batch: np.full((len(batch), 3), 1 / 3, np.float32), lanes=1,
        shape=(3, 4, 4), chunk=4, window=8, load=load, name_of=str, on_in_flight=None,
    )  # fmt: skip
    handed: list = []
    with pytest.raises(SportsdetError, match="another worker died"):
        for result in pipeline.results(workers=1):
            handed.append(result)
    assert handed == []


def test_a_bad_input_at_the_start_of_a_batch_leaves_the_others_their_own_answers(
    tmp_path: Path, colour_backend: OnnxBackend
) -> None:
    # Each good photo goes into the next free row of its batch: one written at its place in the
    # batch instead (after a bad one) would get another photo's scores, or a stale row's.
    missing = tmp_path / "missing.jpg"
    colours = ["red", "blue", "green", "blue", "red"]
    files = [write_image(tmp_path / f"{i}.png", colour) for i, colour in enumerate(colours)]
    inputs = [missing, files[0], files[1], missing, missing, files[2], files[3], files[4]]
    results = list(stream_predictions(inputs, colour_backend, batch_size=3, workers=1))
    got = [LABELS[int(np.argmax(r.probs))] if r.ok else "error" for r in results]
    assert got == ["error", "red", "blue", "error", "error", "green", "blue", "red"]
