"""Labelling photos with a trained bundle: inputs in, top-k results out, in input order.

Three small pieces, each replaceable on its own:

- `expand_inputs`: what the user typed (files, folders, globs, http(s) URLs, raw bytes) ->
  a lazy stream of `InputItem`s, with an error item for anything that cannot be an image;
- a backend: anything with `predict_proba(batch[N,3,H,W] float32) -> probs[N,C]`
  (`sportsdet.runtime`: onnxruntime when the bundle holds model.onnx, as `sportsdet export`
  writes it, else torch; either on request);
- `Predictor`: streams the items through `runtime.stream_predictions` (decoding on threads
  while the model runs, bounded memory), preprocessing with the model's own preprocessing,
  and yields one `PredictionResult` per input, in input order. A bad input gives a result with
  `error` set and the rest of the batch carries on.

Importing this module does not import torch (the light install has none).
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sportsdet.abstain import Abstain
from sportsdet.bundle import Bundle
from sportsdet.errors import SportsdetError
from sportsdet.fetch import ALLOW_ALL, DEFAULT_MAX_BYTES, AddressPolicy, fetch_url, is_url, redact_url
from sportsdet.files import (
    SKIP_NOT_IMAGE,
    SKIP_NOT_REGULAR,
    SKIP_UNREADABLE,
    iter_image_files,
    printable_name,
)
from sportsdet.imageio import (
    SUPPORTED_NAMES,
    UNSUPPORTED_IMAGE_EXTENSIONS,
    is_image_name,
    misleading_name_note,
    sniff_image_format,
    upright_rgb,
)
from sportsdet.metrics import top_classes
from sportsdet.preprocess import load_and_preprocess, preprocess
from sportsdet.run_folder import open_bundle
from sportsdet.runtime import (
    Backend,
    Loaded,
    TorchBackend,
    is_onnx_file,
    load_backend,
    preferred_batch_size,
    stream_predictions,
)

Source = str | Path | bytes
_GLOB_CHARS = frozenset("*?[")


@dataclass
class PredictionResult:
    """One input's answer. A failed input has label/score None, top_k [] and error set.

    An uncertain one (the model's abstain rule says "I don't know": no sport, or one it cannot
    tell) has label/score None and `uncertain` True; its best guess stays first in top_k.
    """

    input: str
    label: str | None = None
    score: float | None = None
    top_k: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None
    # Labelled, but the picture is tiny or a strip (imageio.shape_problem): trust the label less.
    warning: str | None = None
    # The abstain rule said "I don't know": label/score None, the best guess first in top_k.
    # None: no rule in force (--no-abstain, or a model without one), as the service and Ray say.
    uncertain: bool | None = False

    def __post_init__(self) -> None:
        if self.error is not None:
            self.uncertain = None  # a photo not labelled is not "certain" (it read False)

    @property
    def ok(self) -> bool:
        """Whether the input was read and labelled (or abstained on): no `error`."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """The jsonl record: {"input", "label", "score", "uncertain", "top_k": [{"label", "score"}],
        "error", "warning"}."""
        return {
            "input": self.input,
            "label": self.label,
            "score": self.score,
            "uncertain": None if self.error else self.uncertain,  # also for an error set afterwards
            "top_k": [{"label": label, "score": score} for label, score in self.top_k],
            "error": self.error,
            "warning": self.warning,
        }


@dataclass(frozen=True)
class InputItem:
    """One thing to classify. `source` is a Path, a URL string or bytes; None when `error` is set."""

    name: str
    source: Path | str | bytes | None = None
    error: str | None = None
    note: str | None = None  # shown with the result, e.g. a photo with a misleading name

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", printable_name(self.name))  # what every output shows


# ----------------------------------------------------------------------------- input expansion


# What the folder walk passes over that is said as an input's error (hidden files and plain
# non-image files stay unsaid).
_PASSED_OVER_ERRORS = {
    SKIP_NOT_REGULAR: "not a regular file (a link to nothing, a pipe or a device)",
    SKIP_UNREADABLE: "a folder that cannot be read (permission denied?)",
}


_UNSUPPORTED_ERROR = f"a picture format sportsdet cannot read: convert it to {SUPPORTED_NAMES}"


def _expand_folder(folder: Path, shown: str) -> Iterator[InputItem]:
    found = False
    misnamed: dict[str, str] = {}
    # Files the walk passes over that the user meant as photos, said in their place (a folder of a
    # camera's .dng files with one JPEG labelled the JPEG and said nothing of the rest).
    passed_over: list[InputItem] = []

    def on_skip(reason: str, path: str) -> None:
        error = _PASSED_OVER_ERRORS.get(reason)
        if reason == SKIP_NOT_IMAGE and Path(path).suffix.lower() in UNSUPPORTED_IMAGE_EXTENSIONS:
            error = _UNSUPPORTED_ERROR
        if error:
            passed_over.append(InputItem(str(path), error=error))

    for path in iter_image_files(folder, on_misnamed=misnamed.__setitem__, on_skip=on_skip):
        found = True
        yield from passed_over
        passed_over.clear()
        image_format = misnamed.pop(str(path), None)
        note = misleading_name_note(path, image_format) if image_format else None
        yield InputItem(str(path), path, note=note)
    found = found or bool(passed_over)
    yield from passed_over
    if not found:
        yield InputItem(
            shown, error="no image files found in this folder (looked for .jpg, .png, ... recursively)"
        )


def _escape_existing_folders(pattern: str) -> str:
    """Take the pattern's leading folders literally where they exist under the names written.

    A folder named "[2024] trip" is a character class to glob, so "[2024] trip/*.jpg" matched
    nothing (or the folders "2 trip", "0 trip", ...).
    """
    parts = pattern.split(os.sep)
    escaped = list(parts)
    for index, part in enumerate(parts[:-1]):  # the last part names the files
        if not _GLOB_CHARS & set(part):
            continue
        if not os.path.isdir(os.sep.join(parts[: index + 1])):
            break  # a real pattern from here on
        escaped[index] = glob.escape(part)
    return os.sep.join(escaped)


def expand_inputs(sources: Iterable[Source] | Source) -> Iterator[InputItem]:
    """Turn command-line inputs into a lazy stream of items, in the order given; a photo reached
    through several inputs (a file and its folder, overlapping patterns, a URL given twice) is one
    item, the first.

    - an http(s) URL -> one item (downloaded later);
    - an existing file -> one item, whatever its extension (the decoder decides), but a .txt or
      .csv that is not an image is an error item saying predict does not read listings;
    - an existing folder -> every image file below it (by extension, or by content for a photo
      with a misleading name), sorted, hidden skipped; files passed over that look meant as
      photos (e.g. camera raw) are error items;
    - a pattern with * ? [ (quoted so the shell left it alone) -> the matching images, sorted,
      `**` matching any depth;
    - bytes -> one item named "<bytes #i>";
    - anything else -> an error item ("file not found", "no files match").
    """
    if _one_input(sources):
        # One input given bare: a string was read as its characters, and "/" labelled every
        # photo on the machine.
        sources = [sources]
    given: set[str] = set()
    for item in _expand_each(sources):
        if isinstance(item.source, (Path, str)):
            # The key `sportsdet predict --engine ray` names a photo by (links are their own names);
            # a URL by itself: given twice, it is fetched and labelled once.
            key = item.source
            if isinstance(key, Path):
                key = os.path.normpath(os.path.abspath(key))
            if key in given:
                continue
            given.add(key)
        yield item


def _read_stream(stream: Any, index: int) -> InputItem:
    name = getattr(stream, "name", None)
    shown = str(name) if isinstance(name, (str, os.PathLike)) else f"<stream #{index}>"
    try:
        data = stream.read()
    except UnicodeDecodeError:  # a photo opened with open(path) (text): it ended the whole stream
        return InputItem(shown, error="a text stream: open the photo in binary mode ('rb')")
    except OSError as exc:
        return InputItem(shown, error=f"cannot be read: {exc.strerror or exc}")
    if not isinstance(data, (bytes, bytearray)):
        return InputItem(shown, error="a text stream: open the photo in binary mode ('rb')")
    return InputItem(shown, bytes(data))


def _one_input(sources: Any) -> bool:
    """Whether `sources` is one input, not a list of them (an image or an array is one thing)."""
    single = (str, bytes, bytearray, memoryview, os.PathLike, np.ndarray)
    one_thing = hasattr(sources, "getpixel") or hasattr(sources, "read")  # an image, an open file
    return isinstance(sources, single) or one_thing or not isinstance(sources, Iterable)


# A listing given as an input (what --engine ray reads): said as such, not "the file holds text".
_LISTING_ERRORS = {
    ".txt": "a list of photos? predict reads photos, folders, patterns and URLs, not lists of them: "
    "give its lines as inputs (`xargs -d '\\n' sportsdet predict < LIST`), or use --engine ray, "
    "which reads .txt listings",
    ".csv": "a list of photos? predict reads photos, folders, patterns and URLs, not lists of them: "
    "--engine ray reads a .csv listing's 'path' column, or give those paths as inputs",
}


def _expand_each(sources: Iterable[Source]) -> Iterator[InputItem]:
    for index, source in enumerate(sources):
        if isinstance(source, (bytes, bytearray, memoryview)):
            yield InputItem(f"<bytes #{index}>", bytes(source))
            continue
        if hasattr(source, "read") and not isinstance(source, (str, os.PathLike)):
            # An open file or BytesIO: its bytes (given bare, it was read line by line).
            yield _read_stream(source, index)
            continue
        if not isinstance(source, (str, os.PathLike)):
            # A Pillow image or an array was taken for a file name ("file not found", named by its
            # repr), a numpy array for a pattern matching nothing.
            kind = type(source).__name__
            pillow = (
                " (a Pillow image: predictor.predict_image(image))" if hasattr(source, "getpixel") else ""
            )
            yield InputItem(
                f"<{kind} #{index}>",
                error=f"not an input ({kind}): give file names, folders, patterns, URLs or bytes{pillow}",
            )
            continue
        text = str(source)
        if isinstance(source, str) and is_url(text):
            yield InputItem(redact_url(text), text)  # a password in a URL is never shown
            continue
        if not text.strip():  # Path("") is "." : an unset shell variable would label the whole folder
            yield InputItem(repr(text), error="empty input: give a file, folder, pattern or URL")
            continue
        if text == "-":
            yield InputItem(text, error="photos cannot be read from standard input; give file names")
            continue
        path = Path(text).expanduser()
        try:
            is_folder, exists = path.is_dir(), path.exists()
        except OSError as exc:  # a name too long for the file system ended the whole stream
            yield InputItem(text, error=f"cannot be looked up: {exc.strerror or exc}")
            continue
        if "://" in text and not exists:
            yield InputItem(text, error="unsupported URL scheme; only http:// and https:// URLs are fetched")
            continue
        if is_folder:
            yield from _expand_folder(path, text)
        elif exists:
            # Said as for a folder's photos: a JPEG named photo.php given by name had no warning.
            image_format = None if is_image_name(text) or not path.is_file() else sniff_image_format(path)
            listing = _LISTING_ERRORS.get(path.suffix.lower())
            if image_format is None and listing and path.is_file():
                yield InputItem(text, error=listing)
                continue
            note = misleading_name_note(text, image_format) if image_format else None
            yield InputItem(text, path, note=note)
        elif _GLOB_CHARS & set(text):
            # Sorting needs the full match list; a pattern's matches are names only, so this is small.
            pattern = _escape_existing_folders(os.path.expanduser(text))
            matches = sorted(glob.iglob(pattern, recursive=True))
            found = False
            # `**` follows folder links: a loop (self -> .) repeats every photo. Keyed by the real
            # folder and the name, so a file link is a photo of its own, as in a folder.
            seen: set[str] = set()
            any_depth = os.path.basename(pattern.rstrip(os.sep)) == "**"
            for match in matches:
                match_path = Path(match)
                if match_path.is_dir():
                    # `**` also matches folders, whose images the pattern matches itself; a folder
                    # matched by 'trips/2024-*' is searched as if it had been given (as the shell's).
                    if not any_depth:
                        found = True  # an empty folder is said as one
                        yield from _expand_folder(match_path, match)
                    continue
                real = os.path.join(os.path.realpath(os.path.dirname(match) or "."), os.path.basename(match))
                if real in seen:
                    continue
                # Known by content, like the folder walker: a JPEG named photo.php is a photo.
                image_format = None if is_image_name(match) else sniff_image_format(match)
                if is_image_name(match) or image_format:
                    seen.add(real)
                    found = True
                    note = misleading_name_note(match, image_format) if image_format else None
                    yield InputItem(match, match_path, note=note)
                elif match_path.suffix.lower() in UNSUPPORTED_IMAGE_EXTENSIONS:  # said, as a folder's are
                    seen.add(real)
                    found = True
                    yield InputItem(match, error=_UNSUPPORTED_ERROR)
            if not found:
                yield InputItem(text, error="no image files match this pattern")
        else:
            yield InputItem(text, error="file not found")


__all__ = ["Predictor", "PredictionResult", "InputItem", "TorchBackend", "expand_inputs"]


# ----------------------------------------------------------------------------- predictor


class Predictor:
    """Classify photos with a bundle (or an exported .onnx file alone).

    >>> predictor = Predictor("runs/seed/model")
    >>> for result in predictor.predict_sources(["photo.jpg", "holiday/", "https://..."]):
    ...     print(result.input, result.label, result.score)

    `bundle_or_path`: a bundle folder, a run folder, an exported .onnx file, "builtin", or a
    loaded Bundle. `device`: "cpu" (onnxruntime or torch) or a torch device such as "cuda".
    `batch_size`: images per model run (None: the backend's fastest). `top_k`: how many
    (label, probability) pairs each result keeps.
    `backend`: "auto" (onnxruntime when the bundle carries model.onnx or only model.int8.onnx, else
    torch), "onnx", "torch", or any object with `predict_proba`. `int8` uses the bundle's
    model.int8.onnx.
    `threads`: CPU threads for the model; `workers`: threads that decode images and run the model
    (see `runtime.stream_predictions`). `url_timeout` (seconds) and `url_max_bytes` bound each
    download; `url_policy` says which addresses may be fetched (default: any).

    Abstaining: by default the model's own rule (bundle.json / ONNX metadata "abstain") marks a
    photo uncertain; `min_score` replaces it by "top probability under min_score" and
    `abstain=False` turns it off. The rule in force is `self.abstain` (None: never uncertain).
    """

    def __init__(
        self,
        bundle_or_path: Bundle | str | Path,
        device: str = "cpu",
        batch_size: int | None = None,
        *,
        top_k: int = 5,
        backend: Backend | str | None = None,
        int8: bool = False,
        threads: int | None = None,
        workers: int | None = None,
        url_timeout: float = 10.0,
        url_max_bytes: int = DEFAULT_MAX_BYTES,
        abstain: bool = True,
        min_score: float | None = None,
        url_policy: AddressPolicy = ALLOW_ALL,
    ) -> None:
        # Checked here: each was an error deep inside the first prediction (a slicing TypeError,
        # "a worker failed", torch's set_num_threads) or, for the URL limits, none at all.
        counts = {"batch_size": batch_size, "top_k": top_k, "threads": threads, "workers": workers,
                  "url_max_bytes": url_max_bytes}  # fmt: skip
        for name, value in counts.items():  # numpy's integers too (numbers.Integral), not True
            whole = isinstance(value, Integral) and not isinstance(value, bool)
            if value is not None and (not whole or value < 1):
                raise SportsdetError(f"{name} must be a whole number of at least 1, got {value!r}")
        if not abstain and min_score is not None:  # else min_score was silently ignored
            raise SportsdetError("min_score and abstain=False contradict each other; give one of them")
        asked_rule = None if min_score is None else Abstain.min_score(min_score)
        if isinstance(url_timeout, bool) or not (isinstance(url_timeout, Real) and url_timeout > 0):
            raise SportsdetError(f"url_timeout must be a positive number of seconds, got {url_timeout!r}")
        if (
            backend is not None
            and not isinstance(backend, str)
            and not callable(getattr(backend, "predict_proba", None))
        ):
            raise SportsdetError(
                f"backend {type(backend).__name__}: not a backend; give 'auto', 'onnx', 'torch' or an "
                "object with predict_proba(batch) -> probabilities"
            )
        onnx_file = None if isinstance(bundle_or_path, Bundle) else Path(bundle_or_path).expanduser()
        if onnx_file is not None and is_onnx_file(onnx_file):
            self.bundle: Bundle | None = None  # an exported file carries labels and preprocessing
        elif isinstance(bundle_or_path, Bundle):
            self.bundle = bundle_or_path
        else:
            self.bundle = open_bundle(bundle_or_path, verify_weights=False)
        if backend is None or isinstance(backend, str):
            where = onnx_file if self.bundle is None else self.bundle.path
            self.backend: Backend = load_backend(
                where, backend or "auto", threads=threads, int8=int8, device=device
            )
            self.labels = list(self.backend.labels)
            self.preprocessing = self.backend.preprocessing
        else:
            if self.bundle is None:
                raise SportsdetError(f"{onnx_file}: a custom backend needs a bundle for its labels")
            self.backend = backend
            self.labels = self.bundle.labels
            self.preprocessing = self.bundle.preprocessing
        # None: the backend's fastest batch (onnxruntime: 2 images per single-threaded run; measured).
        self.batch_size = batch_size if batch_size is not None else preferred_batch_size(self.backend)
        self.workers = workers
        self.top_k = min(top_k, len(self.labels))
        self.url_timeout = url_timeout
        self.url_max_bytes = url_max_bytes
        self.url_policy = url_policy  # predict runs on the user's own machine: local addresses are fine
        # A bundle's own rule is bundle.json's (what `info` shows, on every backend); an ONNX file
        # alone carries it in its metadata.
        if self.bundle is not None:
            own = self.bundle.abstain if "abstain" in self.bundle.manifest else None
        else:
            own = getattr(self.backend, "abstain", None)
        if not abstain:
            self.abstain: Abstain | None = None
        elif asked_rule is not None:
            self.abstain = asked_rule
        else:
            self.abstain = own if own is not None and own.active else None

    @property
    def abstain_threshold(self) -> float | None:
        """The threshold in force (on `self.abstain.method`'s score), None when nothing abstains."""
        return None if self.abstain is None else self.abstain.threshold

    def is_uncertain(self, probs: np.ndarray) -> bool:
        """The abstain decision for one photo's probabilities [C]."""
        return False if self.abstain is None else bool(self.abstain.uncertain(probs))

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """Preprocessed float32 [N, 3, H, W] (`preprocess`'s rows) -> probabilities [N, C], checked."""
        size = self.preprocessing.input_size
        expected = (3, size, size)
        if not isinstance(batch, np.ndarray) or batch.ndim != 4 or batch.shape[1:] != expected:
            shape = getattr(batch, "shape", type(batch).__name__)
            raise SportsdetError(
                f"a batch for this model is float32 [N, {', '.join(map(str, expected))}], got {shape}; "
                "make its rows with sportsdet.preprocess.preprocess(image, predictor.preprocessing)"
            )
        if batch.dtype != np.float32:  # uint8 pixels were taken as they were, not normalised
            raise SportsdetError(f"a batch is float32 (preprocessed), got {batch.dtype}")
        return self.check_probs(self.backend.predict_proba(batch), len(batch))

    def check_probs(self, probs: np.ndarray, count: int) -> np.ndarray:
        """The model's answer for `count` images, refused unless it is [count, classes]."""
        probs = np.asarray(probs)
        expected = (count, len(self.labels))
        if probs.shape != expected:
            raise SportsdetError(f"model returned probabilities of shape {probs.shape}, expected {expected}")
        return probs

    def predict_image(self, image: Image.Image) -> np.ndarray:
        """A Pillow image (any mode, e.g. straight from `Image.open`) -> probabilities [C] (in the
        order of `labels`). Read as files are: EXIF orientation applied, transparency on white,
        16-bit grey scaled (image.convert("RGB") turned a phone photo on its side and a 16-bit
        PNG white)."""
        if not hasattr(image, "getpixel"):  # a path or an array failed deep inside, as AttributeError
            raise TypeError(
                f"predict_image takes a Pillow image, got {type(image).__name__}; for files, bytes or "
                "URLs use predict_sources, for arrays predict_batch"
            )
        try:
            image.load()  # a cut-off JPEG raised Pillow's bare OSError
        except (AssertionError, ValueError):  # Pillow's for an image closed (a `with` block ended)
            raise SportsdetError(
                "the image was closed before it was read; call predict_image inside the "
                "`with Image.open(...)` block, or load() it first"
            ) from None
        except OSError as exc:
            raise SportsdetError(f"the image cannot be decoded ({exc})") from None
        if min(image.size) < 1:
            raise SportsdetError(f"an empty picture ({image.width}x{image.height} pixels)")
        try:
            picture = upright_rgb(image)
        except OSError as exc:
            raise SportsdetError(f"the image cannot be decoded ({exc})") from None
        array = preprocess(picture, self.preprocessing)
        return self.predict_batch(array[None])[0]

    def load(
        self, item: InputItem, out: np.ndarray | None = None, notes: list[str] | None = None
    ) -> np.ndarray:
        """Fetch (for URLs), decode and preprocess one item (into `out` when given).

        `notes` receives a warning for a tiny or strip-shaped picture. Raises SportsdetError on
        bad input."""
        source = item.source
        if isinstance(source, str) and is_url(source):
            source = fetch_url(
                source, timeout=self.url_timeout, max_bytes=self.url_max_bytes, policy=self.url_policy
            )
        if source is None:
            raise SportsdetError(item.error or "no data")
        return load_and_preprocess(source, self.preprocessing, name=item.name, out=out, notes=notes)

    def _load_row(self, item: InputItem, out: np.ndarray) -> Loaded:
        notes: list[str] = [item.note] if item.note else []
        array = self.load(item, out, notes)
        return Loaded(array, "; ".join(notes) if notes else None)

    def model_id(self) -> str:
        """The model's name and the first digits of its weights' SHA-256, "+int8" for the INT8
        graph (it answers a little differently from the float one with the same weights)."""
        info = getattr(self.backend, "info", None)
        if self.bundle is not None:
            name = self.bundle.model_name
            sha = (self.bundle.manifest.get("weights") or {}).get("sha256")
        else:
            name = (info.model.get("name") if info else None) or "onnx"
            sha = info.weights_sha256 if info else None
        model_id = f"{name}@{sha[:12]}" if sha else name
        quantized = info is not None and info.quantization not in ("", "none")
        return f"{model_id}+int8" if quantized else model_id

    def result_from_probs(self, name: str, probs: np.ndarray) -> PredictionResult:
        order = top_classes(probs, self.top_k)
        top = [(self.labels[i], float(probs[i])) for i in order]
        if self.is_uncertain(probs):
            return PredictionResult(input=name, top_k=top, uncertain=True)
        # `false` claimed a confidence check that never ran (and differed from serve's null).
        uncertain = None if self.abstain is None else False
        return PredictionResult(input=name, label=top[0][0], score=top[0][1], top_k=top, uncertain=uncertain)

    def predict_sources(self, sources: Iterable[Source] | Source) -> Iterator[PredictionResult]:
        """One result per image found in `sources` (a list of files, folders, patterns, URLs or
        bytes; or one of them), in input order, errors included.

        Streams: inputs are expanded lazily, decoded (and downloaded) on worker threads while
        the model runs, and only a bounded window of them is in memory at any time.
        """
        stream = stream_predictions(
            expand_inputs(sources),
            _CheckedBackend(self),
            self.preprocessing,
            batch_size=self.batch_size,
            workers=self.workers,
            load=self._load_row,
            name_of=lambda item: item.name,
        )
        try:
            for result in stream:
                if result.ok:
                    answer = self.result_from_probs(result.name, result.probs)
                    answer.warning = result.warning
                    yield answer
                else:
                    yield PredictionResult(input=result.name, error=_short_message(result.error, result.name))
        finally:
            # Ctrl-C raised in this frame kept `stream` alive in the traceback, its worker threads
            # still inside onnxruntime when the interpreter exited: "terminate called without an
            # active exception", exit 134 instead of 130. Closing it waits for them.
            stream.close()


class _CheckedBackend:
    """The predictor's backend behind its shape check (a wrong model must not mislabel)."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor
        self.preprocessing = predictor.preprocessing
        self.labels = predictor.labels
        self.preferred_batch_size = predictor.batch_size
        self.concurrent_runs = int(getattr(predictor.backend, "concurrent_runs", 1))

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        return self.predictor.predict_batch(batch)

    def predict_proba_serial(self, batch: np.ndarray) -> np.ndarray:
        return self.predictor.check_probs(self.predictor.backend.predict_proba_serial(batch), len(batch))


def _short_message(message: str, name: str) -> str:
    """The error text without a leading "<name>: " (the input is shown next to it anyway)."""
    prefix = f"{name}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


# ----------------------------------------------------------------------------- output formats


def to_jsonl(result: PredictionResult) -> str:
    """One line of `--format jsonl`."""
    return json.dumps(result.to_dict(), ensure_ascii=False)


def csv_header(top_k: int) -> list[str]:
    """Columns of `--format csv`: input,label,score,uncertain,error,top1_label,top1_score,...,warning"""
    columns = ["input", "label", "score", "uncertain", "error"]
    for rank in range(1, top_k + 1):
        columns += [f"top{rank}_label", f"top{rank}_score"]
    return columns + ["warning"]


def csv_row(result: PredictionResult, top_k: int) -> list[str]:
    row = [
        result.input,
        result.label or "",
        "" if result.score is None else f"{result.score:.6f}",
        "" if not result.ok or result.uncertain is None else ("true" if result.uncertain else "false"),
        result.error or "",
    ]
    for rank in range(top_k):
        if rank < len(result.top_k):
            label, score = result.top_k[rank]
            row += [label, f"{score:.6f}"]
        else:
            row += ["", ""]
    return row + [result.warning or ""]


def csv_line(values: list[str]) -> str:
    """One properly quoted CSV record (labels and paths may hold commas, quotes or newlines).

    The record is written with a real line terminator and that terminator is stripped again:
    the csv module quotes a field only for the characters of its *own* lineterminator, so with
    lineterminator="" a file name holding a newline went out unquoted and split the row.
    """
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL).writerow(values)
    return buffer.getvalue()[: -len("\r\n")]
