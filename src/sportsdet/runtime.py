"""Inference backends and the streaming pipeline that feeds them. Torch-free.

A backend turns a batch of preprocessed images into class probabilities:

    backend.predict_proba(batch: float32 [N, 3, H, W]) -> float32 [N, num_classes]

and carries the `labels` and `preprocessing` it was trained with. `OnnxBackend` runs an ONNX
file written by `sportsdet export` on onnxruntime; the file's metadata holds everything needed
to predict (labels, preprocessing, versions), so an .onnx file alone is a usable model.
`TorchBackend` runs a bundle's PyTorch weights; it imports torch only when one is made (and says
what to install where torch is missing).

`stream_predictions` runs one worker thread per CPU: each decodes the next few inputs into its
own batch array and runs the model on it (Pillow and onnxruntime release the GIL, so one core
decodes while another infers); results come out in input order with a bounded number of inputs
in flight.
"""

from __future__ import annotations

import json
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from sportsdet.abstain import Abstain
from sportsdet.bundle import ONNX_INT8_NAME, ONNX_NAME
from sportsdet.errors import SportsdetError
from sportsdet.files import cpu_count
from sportsdet.imageio import ImageSource
from sportsdet.preprocess import Preprocessing, load_and_preprocess

if TYPE_CHECKING:
    import onnxruntime as ort
    import torch

# --- the metadata contract of an exported ONNX file (written by sportsdet.export) -------------
ONNX_FORMAT = "sportsdet-onnx/1"
# How long a stopped stream waits for its workers' model runs in flight (one batch each).
WORKER_STOP_TIMEOUT_S = 30.0
META_FORMAT = "sportsdet.format"
META_LABELS = "sportsdet.labels"  # JSON list of class names, in output order
META_PREPROCESSING = "sportsdet.preprocessing"  # JSON of Preprocessing.to_dict()
META_OUTPUT = "sportsdet.output"  # "probabilities" (softmax in the graph) or "logits"
META_MODEL = "sportsdet.model"  # JSON {"name": ..., "config": {...}}
META_VERSIONS = "sportsdet.versions"  # JSON of bundle.library_versions() at export time
META_WEIGHTS_SHA256 = "sportsdet.weights_sha256"  # the bundle weights it was exported from
META_QUANTIZATION = "sportsdet.quantization"  # "none" or JSON describing the INT8 recipe
META_ABSTAIN = "sportsdet.abstain"  # JSON of abstain.Abstain.to_dict() (bundle.json "abstain"); optional
REQUIRED_METADATA = (META_FORMAT, META_LABELS, META_PREPROCESSING, META_OUTPUT)
OUTPUT_KINDS = ("probabilities", "logits")


BACKENDS = ("auto", "onnx", "torch")


class Backend(Protocol):
    """An inference engine (OnnxBackend, TorchBackend): preprocessed float32 [N, 3, H, W] ->
    class probabilities [N, C], plus the labels and preprocessing it was trained with.
    OnnxBackend and TorchBackend also carry `abstain` (an `Abstain` or None)."""

    labels: list[str]
    preprocessing: Preprocessing
    name: str

    def predict_proba(self, batch: np.ndarray) -> np.ndarray: ...


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32, copy=False)


@dataclass
class OnnxModelInfo:
    """What an exported ONNX file says about itself."""

    labels: list[str]
    preprocessing: Preprocessing
    output: str
    model: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    weights_sha256: str | None = None
    quantization: Any = "none"
    abstain: Abstain | None = None  # the abstain rule fitted with the bundle, when it has one


def _shown_only(text: str | None) -> dict[str, Any]:
    """An informational metadata entry (model description, library versions) as a dict; {} when
    absent or damaged."""
    try:
        value = json.loads(text) if text is not None else {}
    except (json.JSONDecodeError, TypeError):
        return {}
    return value if isinstance(value, dict) else {}


def parse_onnx_metadata(metadata: dict[str, str], where: str | Path) -> OnnxModelInfo:
    """Validate the sportsdet metadata of an ONNX file; SportsdetError naming the file and key."""
    hint = "export it with `sportsdet export BUNDLE --format onnx`"
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise SportsdetError(
            f"{where}: ONNX file has no {', '.join(repr(k) for k in missing)} metadata, so its labels and "
            f"preprocessing are unknown; {hint}"
        )
    if metadata[META_FORMAT] != ONNX_FORMAT:
        raise SportsdetError(
            f"{where}: metadata {META_FORMAT!r} is {metadata[META_FORMAT]!r}, this sportsdet reads "
            f"{ONNX_FORMAT!r}; {hint}"
        )

    def load_json(key: str) -> Any:
        try:
            return json.loads(metadata[key])
        except (json.JSONDecodeError, TypeError) as exc:
            raise SportsdetError(f"{where}: metadata {key!r} is not valid JSON ({exc}); {hint}") from None

    labels = load_json(META_LABELS)
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x for x in labels):
        raise SportsdetError(f"{where}: metadata {META_LABELS!r} must be a non-empty list of names; {hint}")
    if len(set(labels)) != len(labels):
        raise SportsdetError(f"{where}: metadata {META_LABELS!r} holds duplicate names; {hint}")
    stored = load_json(META_PREPROCESSING)  # outside the try: its message is whole already
    try:
        preprocessing = Preprocessing.from_dict(stored)
    except SportsdetError as exc:
        raise SportsdetError(f"{where}: metadata {META_PREPROCESSING!r} is wrong: {exc}; {hint}") from None
    output = metadata[META_OUTPUT]
    if output not in OUTPUT_KINDS:
        raise SportsdetError(
            f"{where}: metadata {META_OUTPUT!r} must be one of {OUTPUT_KINDS}, got {output!r}; {hint}"
        )
    # Shown to people only: a damaged entry is left out, not a reason to refuse the model.
    model, versions = _shown_only(metadata.get(META_MODEL)), _shown_only(metadata.get(META_VERSIONS))
    quantization = metadata.get(META_QUANTIZATION, "none")
    if quantization not in ("", "none"):
        try:
            quantization = json.loads(quantization)
        except json.JSONDecodeError:
            pass  # free text is fine: it is only shown to people
    abstain = None
    if META_ABSTAIN in metadata:
        try:
            abstain = Abstain.from_json(metadata[META_ABSTAIN], f"metadata {META_ABSTAIN!r}")
        except SportsdetError as exc:
            raise SportsdetError(f"{where}: {exc}; {hint}") from None
    return OnnxModelInfo(
        labels=labels,
        preprocessing=preprocessing,
        output=output,
        model=model if isinstance(model, dict) else {},
        versions=versions if isinstance(versions, dict) else {},
        weights_sha256=metadata.get(META_WEIGHTS_SHA256),
        quantization=quantization,
        abstain=abstain,
    )


def session_options(threads: int | None = None, *, spinning: bool = False) -> ort.SessionOptions:
    """onnxruntime options tuned for a small CPU shared with decoding threads.

    - intra-op threads as asked (default: the CPUs we may use; more only oversubscribes);
    - one inter-op thread and sequential execution: a CNN is a chain, parallel branches buy nothing;
    - no spin-waiting: spinning ORT threads would steal the cores the JPEG decoders need.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or cpu_count()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    options.log_severity_level = 3  # onnxruntime's own warnings are not for end users
    return options


PARALLEL_MODES = ("batch", "intra")


class OnnxBackend:
    """Run an exported ONNX file on onnxruntime's CPU provider.

    `threads`: CPU threads for the model (default: all CPUs we may use). `parallel`:
    - "batch" (default): a single-threaded session, and a batch is split into `threads` parts
      that run at the same time (onnxruntime's run is thread-safe and releases the GIL). Measured
      on 2 shared cores (bench/RESULTS.md): faster than intra-op threading, whose threads wait on
      each other at every layer, and much more so when other processes compete for the cores;
    - "intra": one run at a time with `threads` intra-op threads (onnxruntime's usual setup;
      lower latency for a single image on an idle machine).
    """

    def __init__(
        self,
        path: str | Path,
        threads: int | None = None,
        *,
        parallel: str = "batch",
        spinning: bool = False,
    ) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise SportsdetError(f"{self.path}: no such ONNX model file")
        if parallel not in PARALLEL_MODES:
            raise SportsdetError(f"unknown parallel mode {parallel!r}; choose one of {PARALLEL_MODES}")
        self.threads = threads or cpu_count()
        self._pool: ThreadPoolExecutor | None = None
        options = session_options(1 if parallel == "batch" else self.threads, spinning=spinning)
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for bad files
            raise SportsdetError(
                f"{self.path}: onnxruntime cannot load this file ({str(exc).splitlines()[0][:200]}); "
                "re-export it with `sportsdet export`"
            ) from None
        self.info = parse_onnx_metadata(self.session.get_modelmeta().custom_metadata_map, self.path)
        self.labels = self.info.labels
        self.preprocessing = self.info.preprocessing
        self.abstain = self.info.abstain
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise SportsdetError(f"{self.path}: expected one image input, found {len(inputs)} inputs")
        self.input_name = inputs[0].name
        self.output_name = outputs[0].name
        size = self.preprocessing.input_size
        shape = inputs[0].shape
        if len(shape) != 4 or shape[1] != 3 or any(isinstance(s, int) and s != size for s in shape[2:]):
            raise SportsdetError(
                f"{self.path}: model input shape {shape} does not match metadata input_size {size}; "
                "re-export it"
            )
        out_shape = outputs[0].shape
        if len(out_shape) != 2 or (isinstance(out_shape[1], int) and out_shape[1] != len(self.labels)):
            raise SportsdetError(
                f"{self.path}: model output shape {out_shape} does not match the {len(self.labels)} labels "
                f"in its metadata; re-export it"
            )
        quantized = self.info.quantization not in ("", "none")
        self.name = f"onnxruntime{' int8' if quantized else ''} ({self.path.name})"
        # How many runs `stream_predictions` makes at once, each with `predict_proba_serial`.
        self.concurrent_runs = self.threads if parallel == "batch" else 1
        # The batch of one run. Measured on 2 cores (bench/throughput.py, model-only sweep of
        # Lite2): 1-2 images per single-threaded run are fastest; batches of 8 per run and more
        # lose 5-15% to cache misses.
        self.preferred_batch_size = 2 if parallel == "batch" else 8

    def predict_proba_serial(self, batch: np.ndarray) -> np.ndarray:
        """One run on the calling thread (single-threaded in "batch" mode, so up to
        `concurrent_runs` of these may run at once from different threads)."""
        inputs = {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)}
        (out,) = self.session.run([self.output_name], inputs)
        return out if self.info.output == "probabilities" else softmax(out)

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        """A whole batch on all `threads` (in "batch" mode: split into that many parallel runs)."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        parts = min(len(batch), self.concurrent_runs)
        if parts <= 1:
            return self.predict_proba_serial(batch)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="sportsdet-onnx")
        return np.concatenate(list(self._pool.map(self.predict_proba_serial, np.array_split(batch, parts))))


class TorchBackend:
    """Run a bundle's PyTorch weights (needs the `sportsdet[train]` install)."""

    def __init__(self, bundle: Any, device: str = "cpu", *, threads: int | None = None) -> None:
        try:
            import torch
        except ImportError:
            raise SportsdetError(
                f"{getattr(bundle, 'path', bundle)}: the torch backend needs PyTorch, which is not "
                "installed; "
                "use the ONNX backend (`sportsdet export BUNDLE` once) or `pip install 'sportsdet[train]'`"
            ) from None
        from sportsdet.bundle import Bundle, load_bundle

        if not isinstance(bundle, Bundle):
            bundle = load_bundle(bundle)
        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.bundle = bundle
        self.device = torch_device(device)
        self.model = bundle.build_torch_model().to(self.device)
        self.labels = bundle.labels
        self.preprocessing = bundle.preprocessing
        self.abstain = bundle.abstain
        self.name = f"torch ({bundle.model_name})"

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            inputs = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
            return torch.softmax(self.model(inputs).float(), dim=1).cpu().numpy()


def torch_device(device: str) -> torch.device:
    """`torch.device(device)`, or a SportsdetError when it is malformed or absent on this machine."""
    import torch

    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise SportsdetError(f"unknown torch device {device!r}; use cpu, cuda or cuda:N") from None
    if resolved.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise SportsdetError(
                f"--device {device}: no CUDA GPU is usable on this machine; use --device cpu"
            )
        if resolved.index is not None and resolved.index >= count:
            raise SportsdetError(
                f"--device {device}: this machine has {count} CUDA GPU(s) (cuda:0..{count - 1})"
            )
    elif resolved.type == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise SportsdetError(f"--device {device}: Apple MPS is not available here; use --device cpu")
    return resolved


def _torch_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def is_cpu(device: str) -> bool:
    """`--device cpu` (or cpu:0): what onnxruntime runs on; any other device is torch's."""
    return str(device).split(":")[0].lower() == "cpu"


def is_onnx_file(path: str | Path) -> bool:
    """A model given as an exported .onnx file, not a bundle folder (which may be named x.onnx)."""
    path = Path(path)
    return path.suffix.lower() == ".onnx" and not path.is_dir()


def load_backend(
    model: str | Path | None = None,
    backend: str = "auto",
    *,
    threads: int | None = None,
    int8: bool = False,
    device: str = "cpu",
) -> Backend:
    """Open a model for prediction.

    `model`: an exported .onnx file, a bundle folder, a training run folder (its model/), or None
    (or "builtin") for the built-in model.
    `backend`: "onnx", "torch", or "auto" = onnx when the path is .onnx or the bundle carries
    model.onnx (or only model.int8.onnx), else torch when installed, else a clear error. `int8`
    picks model.int8.onnx;
    `device` is for torch only.
    """
    from sportsdet.bundle import builtin_bundle_path, load_bundle
    from sportsdet.run_folder import resolve_bundle_dir

    if backend not in BACKENDS:
        raise SportsdetError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if model is None:
        model = builtin_bundle_path()
        if model is None:
            raise SportsdetError("no model given and this install has no built-in model; pass --model BUNDLE")
    # `builtin` or a run folder: its model.onnx was looked for beside the name, and the torch
    # backend ran instead of the ONNX one the bundle ships. (A run with no model yet is told how
    # to finish it, as by predict.)
    path = resolve_bundle_dir(model)

    def cpu_only(onnx_model: OnnxBackend) -> OnnxBackend:
        # --device cuda was taken and the model ran on the CPU all the same, without a word.
        if not is_cpu(device):
            raise SportsdetError(
                f"--device {device}: {path} runs on onnxruntime, on the CPU; --backend torch (a bundle "
                "folder) runs it on another device"
            )
        return onnx_model

    if is_onnx_file(path) or path.is_file():
        if backend == "torch":
            raise SportsdetError(f"{path}: the torch backend needs a bundle folder, not an ONNX file")
        if not path.is_file():
            raise SportsdetError(f"{path}: no such ONNX model file")
        onnx_model = OnnxBackend(path, threads)
        if int8 and onnx_model.info.quantization in ("", "none"):  # was silently run in float
            raise SportsdetError(
                f"{path}: --int8 picks a bundle's model.int8.onnx, but this is a float ONNX file; "
                "give the .int8.onnx file, or drop --int8"
            )
        return cpu_only(onnx_model)
    bundle = load_bundle(path, verify_weights=False)  # a clear error for anything that is not a bundle
    onnx_file = path / (ONNX_INT8_NAME if int8 else ONNX_NAME)
    if backend != "torch" and not int8 and bundle.ships_only_int8:
        onnx_file = path / ONNX_INT8_NAME  # a bundle that ships only its INT8 form (the built-in one)
    if backend == "onnx" or int8 or (backend == "auto" and onnx_file.is_file()):
        if backend == "torch":
            raise SportsdetError(f"{path}: INT8 runs on onnxruntime only; drop --backend torch")
        if not onnx_file.is_file():
            raise SportsdetError(
                f"{path}: the bundle has no {onnx_file.name}; create it with "
                f"`sportsdet export {shlex.quote(str(path))}{' --int8' if int8 else ''}`"
                + ("" if int8 else " or use --backend torch")
            )
        onnx_backend = OnnxBackend(onnx_file, threads)
        _check_same_model(onnx_backend, bundle)
        if "abstain" in bundle.manifest:  # bundle.json is the source of truth inside a bundle folder
            onnx_backend.abstain = bundle.abstain
        return cpu_only(onnx_backend)
    if not _torch_installed():
        if backend == "torch":
            raise SportsdetError(
                f"{path}: the torch backend needs PyTorch, which is not installed here; use the ONNX "
                "backend (the default when the bundle has model.onnx) or `pip install 'sportsdet[train]'`"
            )
        raise SportsdetError(
            f"{path}: the bundle has no {ONNX_NAME} and PyTorch is not installed; export it where torch is "
            f"(`sportsdet export {shlex.quote(str(path))}`) or `pip install 'sportsdet[train]'`"
        )
    return TorchBackend(load_bundle(path), device, threads=threads)


def _check_same_model(backend: OnnxBackend, bundle: Any) -> None:
    """Refuse a model.onnx left over from different weights in the same folder."""
    sha = (bundle.manifest.get("weights") or {}).get("sha256")
    stale = backend.labels != bundle.labels or (
        backend.info.weights_sha256 is not None and sha is not None and backend.info.weights_sha256 != sha
    )
    if stale:
        raise SportsdetError(
            f"{backend.path}: this ONNX file was exported from other weights or labels than {bundle.path}; "
            f"re-run `sportsdet export {shlex.quote(str(bundle.path))}`"
        )


# --- the streaming pipeline -----------------------------------------------------------------


@dataclass
class StreamResult:
    """One input's outcome. Exactly one of `probs` and `error` is set."""

    index: int
    name: str
    probs: np.ndarray | None = None
    error: str | None = None
    error_kind: str | None = None
    warning: str | None = None  # labelled, but e.g. a 1x1 picture: the label deserves less trust

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Loaded:
    """What a `load` callable may return: its row (None: it filled `out`) and a warning."""

    array: np.ndarray | None
    warning: str | None = None


def _source_name(item: Any) -> tuple[str, ImageSource]:
    if isinstance(item, tuple) and len(item) == 2:
        return str(item[0]), item[1]
    if isinstance(item, bytes):
        return f"<{len(item)} bytes>", item
    return str(item), item


def default_workers() -> int:
    # One worker per CPU keeps every core busy with no more busy threads than cores (measured on
    # 2 cores: 92% of the model-only bound end to end, bench/RESULTS.md); at least 2, so that one
    # decodes while the other runs a model that uses every core itself (torch, intra-op mode).
    return max(2, cpu_count())


DEFAULT_BATCH_SIZE = 16  # for backends that do not say what suits them (torch)
# Every worker holds one float32 batch array; bound it so that a typo such as --batch-size
# 100000 is a clear error, not a 75 GiB allocation.
MAX_BATCH_SIZE = 4096
MAX_BATCH_BYTES = 1 << 30
# Workers are threads that each hold a batch; more than this only adds memory (URL downloads,
# the one I/O-bound use of many workers, are well served by 64).
MAX_WORKERS = 64


def check_batch_size(batch_size: int, input_size: int) -> None:
    """SportsdetError unless `batch_size` images of `input_size` px fit the per-worker bound."""
    row_bytes = 3 * input_size * input_size * 4
    most = max(1, min(MAX_BATCH_SIZE, MAX_BATCH_BYTES // row_bytes))
    if not 1 <= batch_size <= most:
        raise SportsdetError(
            f"--batch-size {batch_size}: must be between 1 and {most} for {input_size} px images "
            f"(at most {MAX_BATCH_BYTES // 2**30} GiB per worker)"
        )


def preferred_batch_size(backend: Any) -> int:
    """The batch size a backend runs fastest at (its `preferred_batch_size`, else 16)."""
    return int(getattr(backend, "preferred_batch_size", DEFAULT_BATCH_SIZE))


def model_lanes(backend: Any) -> tuple[int, Callable[[np.ndarray], np.ndarray]]:
    """How many model runs may go at once, and the call that makes one of them.

    A backend that says `concurrent_runs` > 1 (onnxruntime split into single-threaded runs)
    offers `predict_proba_serial`, one run on the calling thread; any other backend runs one
    batch at a time with `predict_proba` (which may use several threads itself).
    """
    lanes = int(getattr(backend, "concurrent_runs", 1))
    if lanes > 1:
        return lanes, backend.predict_proba_serial
    return 1, backend.predict_proba


def stream_predictions(
    sources: Iterable[Any],
    backend: Backend,
    preprocessing: Preprocessing | None = None,
    *,
    batch_size: int | None = None,
    workers: int | None = None,
    max_in_flight: int | None = None,
    load: Callable[[Any, np.ndarray], Any] | None = None,
    name_of: Callable[[Any], str] | None = None,
    on_in_flight: Callable[[int], None] | None = None,
) -> Iterator[StreamResult]:
    """Predict many images, yielding a `StreamResult` per input, in input order, as soon as ready.

    Worker threads (default: one per CPU, at least 2 and at least one per model lane) each take
    the next `batch_size` inputs, decode them straight into their own batch array and run the
    model on it, so decoding on one core overlaps the model on the others with no more busy
    threads than cores (Pillow and onnxruntime release the GIL). Batches are fixed runs of
    consecutive inputs, so results never depend on timing; the default size is what suits the
    backend (`preferred_batch_size`).

    `sources` is consumed lazily (pass a generator for huge folders): at most `max_in_flight`
    inputs (default 2 x workers x batch_size) are read but not yet yielded at any moment.
    Items are paths, bytes, or (name, path-or-bytes) pairs, decoded with the preprocessing; or
    anything at all when `load(item, out)` and `name_of(item) -> str` are given: the loader
    runs on a worker thread (so it may also download) and fills `out`, a float32
    [3, size, size] row of the batch (returning another array of that shape works too, and
    returning `Loaded(array_or_None, warning)` attaches a warning to the result).
    Bad inputs give a result with `error` set and never stop the stream; an exception from the
    model or from `sources` itself is raised here, after the results before it.
    `on_in_flight(n)`, if given, is called with the in-flight count (for tests and monitoring).
    """
    spec = preprocessing or backend.preprocessing
    if batch_size is None:
        batch_size = preferred_batch_size(backend)
    check_batch_size(batch_size, spec.input_size)
    if workers is not None and not 1 <= workers <= MAX_WORKERS:
        raise SportsdetError(f"--workers {workers}: must be between 1 and {MAX_WORKERS}")
    lanes, run = model_lanes(backend)
    workers = min(MAX_WORKERS, max(lanes, workers or default_workers()))
    window = max(1, max_in_flight or 2 * workers * batch_size)
    if load is None:

        def load(item: Any, out: np.ndarray) -> Loaded:
            name, source = _source_name(item)
            notes: list[str] = []
            array = load_and_preprocess(source, spec, name=name, out=out, notes=notes)
            return Loaded(array, notes[0] if notes else None)

    pipeline = _Pipeline(
        iter(sources),
        run=run,
        lanes=lanes,
        shape=(3, spec.input_size, spec.input_size),
        chunk=min(batch_size, window),
        window=window,
        load=load,
        name_of=name_of or (lambda item: _source_name(item)[0]),
        on_in_flight=on_in_flight,
    )
    return pipeline.results(workers)


class _Pipeline:
    """The machinery of `stream_predictions`: workers fill a table of finished batches (by the
    index of their first input) and the consumer's thread hands them out in order."""

    def __init__(
        self,
        iterator: Iterator[Any],
        *,
        run: Callable[[np.ndarray], np.ndarray],
        lanes: int,
        shape: tuple[int, int, int],
        chunk: int,
        window: int,
        load: Callable[[Any, np.ndarray], Any],
        name_of: Callable[[Any], str],
        on_in_flight: Callable[[int], None] | None,
    ) -> None:
        self.iterator, self.run, self.shape = iterator, run, shape
        self.chunk, self.window = chunk, window
        self.load, self.name_of, self.on_in_flight = load, name_of, on_in_flight
        self.model_slots = threading.Semaphore(lanes)
        self.source_lock = threading.Lock()
        self.changed = threading.Condition()
        # Everything below is guarded by `changed`.
        self.claimed = 0  # inputs taken from the iterator so far
        self.delivered = 0  # results yielded so far
        self.finished: dict[int, list[StreamResult] | BaseException] = {}
        self.exhausted = False
        self.source_error: tuple[int, BaseException] | None = None
        self.stopping = False
        self.running_workers = 0
        self.worker_error: BaseException | None = None

    # --- worker side ---------------------------------------------------------------------

    def claim(self) -> tuple[int, list[Any]] | None:
        """The next run of up to `chunk` inputs, once the window has room; None when done."""
        # One claimer at a time reads the source, outside `changed`: a slow source (a network
        # listing, a huge folder) must not hold up results that are ready to be handed out.
        with self.source_lock:
            with self.changed:
                while not (self.stopping or self.exhausted):
                    in_flight = self.claimed - self.delivered
                    if in_flight == 0 or in_flight + self.chunk <= self.window:
                        break
                    self.changed.wait()
                if self.stopping or self.exhausted:
                    return None
                start = self.claimed
            items: list[Any] = []
            exhausted, source_error = False, None
            try:
                for _ in range(self.chunk):
                    items.append(next(self.iterator))
            except StopIteration:
                exhausted = True
            except BaseException as exc:  # a broken source: the consumer raises it in its place
                exhausted, source_error = True, (start + len(items), exc)
            with self.changed:
                self.claimed += len(items)
                self.exhausted = exhausted
                self.source_error = source_error
                if self.on_in_flight is not None:
                    self.on_in_flight(self.claimed - self.delivered)
                self.changed.notify_all()
            return (start, items) if items else None

    def work(self) -> None:
        # Everything a worker does sits inside this try: a worker that dies anywhere (its batch
        # array cannot be allocated, a source or callback raises) must reach the consumer as an
        # error, never leave it waiting for results that will not come.
        try:
            batch = np.empty((self.chunk, *self.shape), dtype=np.float32)  # reused for every batch
            while (claimed := self.claim()) is not None:
                start, items = claimed
                try:
                    outcome: list[StreamResult] | BaseException | None = self.predict(start, items, batch)
                except BaseException as exc:  # the model failed: the consumer raises it in order
                    outcome = exc
                if outcome is None:  # stopped half way: a part batch (no scores) is never handed out
                    break
                with self.changed:
                    self.finished[start] = outcome
                    self.changed.notify_all()
        except BaseException as exc:
            with self.changed:
                if self.worker_error is None:
                    self.worker_error = exc
                self.stopping = True  # the others stop claiming; the consumer raises the error
        finally:
            with self.changed:
                self.running_workers -= 1
                self.changed.notify_all()

    def predict(self, start: int, items: list[Any], batch: np.ndarray) -> list[StreamResult] | None:
        """The batch's results; None when the stream stopped while it was being read (the consumer
        is gone, or another worker failed: nobody is to read it)."""
        results, rows = [], []
        for offset, item in enumerate(items):
            if self.stopping:
                return None
            index = start + offset
            name = self.name_of(item)
            error = self.load_into(item, name, batch[len(rows)])
            if error is None or error.ok:  # loaded (a StreamResult with only a warning)
                rows.append(len(results))
                results.append(StreamResult(index, name, warning=error.warning if error else None))
            else:
                error.index = index
                results.append(error)
        if rows:
            with self.model_slots:
                probs = np.asarray(self.run(batch[: len(rows)]))
            if probs.ndim != 2 or len(probs) != len(rows):
                raise SportsdetError(f"model returned shape {probs.shape} for a batch of {len(rows)} images")
            for row, position in enumerate(rows):
                results[position].probs = probs[row]
        return results

    def load_into(self, item: Any, name: str, out: np.ndarray) -> StreamResult | None:
        """Decode one input into its row of the batch. None when it loaded cleanly; else a
        StreamResult describing the failure (error set) or carrying the loader's warning."""
        try:
            value = self.load(item, out)
            warning = None
            if isinstance(value, Loaded):
                value, warning = value.array, value.warning
            if value is not None and value is not out:
                value = np.asarray(value)
                if value.shape != out.shape:
                    raise SportsdetError(f"{name}: loader returned shape {value.shape}, expected {out.shape}")
                out[...] = value
            return None if warning is None else StreamResult(-1, name, warning=warning)
        except SportsdetError as exc:
            return StreamResult(-1, name, error=str(exc), error_kind=getattr(exc, "kind", "error"))
        except Exception as exc:  # one bad input must never stop the others
            message = f"{name}: unexpected {type(exc).__name__}: {exc}"
            return StreamResult(-1, name, error=message, error_kind="error")

    # --- consumer side -------------------------------------------------------------------

    def results(self, workers: int) -> Iterator[StreamResult]:
        threads = [
            threading.Thread(target=self.work, name=f"sportsdet-worker-{i}", daemon=True)
            for i in range(workers)
        ]
        self.running_workers = len(threads)
        for thread in threads:
            thread.start()
        try:
            while True:
                with self.changed:
                    while self.delivered not in self.finished:
                        if self.worker_error is not None:
                            raise _worker_failure(self.worker_error, self.chunk, self.shape)
                        if self.source_error is not None and self.source_error[0] == self.delivered:
                            raise self.source_error[1]
                        if self.exhausted and self.delivered == self.claimed:
                            return
                        if self.running_workers == 0:
                            raise SportsdetError("internal error: prediction workers stopped early")
                        self.changed.wait()
                    outcome = self.finished.pop(self.delivered)
                if isinstance(outcome, BaseException):
                    raise outcome
                for result in outcome:
                    yield result
                    with self.changed:
                        self.delivered += 1
                        self.changed.notify_all()
        finally:
            self.stop()

    def stop(self) -> None:
        """End the workers. A worker still inside the model's run (onnxruntime's C++ code) when the
        interpreter exits aborts the process ("terminate called without an active exception", exit
        134 instead of 130 on Ctrl-C): wait for the batches in flight to end, through a second
        Ctrl-C too (an impatient user, or `timeout -s INT`, which signals the process twice).

        On the workers' own count, not Thread.join: Python 3.11's join, interrupted, marks a thread
        that is still running as ended (bpo-45274's clean-up releases the lock the thread holds)."""
        with self.changed:
            self.stopping = True
            self.changed.notify_all()
        stopping_for = sys.exc_info()[1]  # the interrupt (or error, or close) that ends the stream
        again: KeyboardInterrupt | None = None
        deadline = time.monotonic() + WORKER_STOP_TIMEOUT_S
        while True:
            try:
                with self.changed:
                    while self.running_workers and (left := deadline - time.monotonic()) > 0:
                        self.changed.wait(left)
                break
            except KeyboardInterrupt as exc:
                again = exc
        if again is not None and stopping_for is None:
            raise again  # the stream had ended on its own: this Ctrl-C is the only one


def _worker_failure(exc: BaseException, chunk: int, shape: tuple[int, ...]) -> BaseException:
    """What the consumer raises when a worker thread died (not for a failed model run)."""
    if isinstance(exc, (SportsdetError, KeyboardInterrupt, SystemExit)):
        return exc
    if isinstance(exc, MemoryError):
        need = chunk * int(np.prod(shape)) * 4
        return SportsdetError(
            f"out of memory: a batch of {chunk} images of {shape[-1]}x{shape[-2]} pixels needs "
            f"{need / 2**30:.1f} GiB per worker; use a smaller --batch-size or fewer --workers"
        )
    return SportsdetError(f"prediction stopped: a worker failed ({type(exc).__name__}: {exc})")

