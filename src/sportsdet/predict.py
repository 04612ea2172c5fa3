"""Labelling photos with a trained bundle: inputs in, top-k results out, in input order.

Three small pieces, each replaceable on its own:

- `expand_inputs`: what the user typed (files, folders, globs, http(s) URLs, raw bytes) ->
  a lazy stream of `InputItem`s, with an error item for anything that cannot be an image;
- a backend: anything with `predict_proba(batch[N,3,H,W] float32) -> probs[N,C]`
  (`TorchBackend` here; an onnxruntime backend can sit behind the same method);
- `Predictor`: loads and preprocesses each item with the bundle's own preprocessing,
  batches, runs the backend and yields one `PredictionResult` per input. A bad input gives a
  result with `error` set and the rest of the batch carries on.

Importing this module does not import torch.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from sportsdet.bundle import MANIFEST_NAME, Bundle, load_bundle
from sportsdet.errors import SportsdetError
from sportsdet.fetch import DEFAULT_MAX_BYTES, fetch_url, is_url
from sportsdet.imageio import is_image_name
from sportsdet.preprocess import load_and_preprocess, preprocess

Source = str | Path | bytes
_GLOB_CHARS = frozenset("*?[")


@dataclass
class PredictionResult:
    """One input's answer. A failed input has label/score None, top_k [] and error set."""

    input: str
    label: str | None = None
    score: float | None = None
    top_k: list[tuple[str, float]] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """The jsonl record: {"input", "label", "score", "top_k": [{"label", "score"}], "error"}."""
        return {
            "input": self.input,
            "label": self.label,
            "score": self.score,
            "top_k": [{"label": label, "score": score} for label, score in self.top_k],
            "error": self.error,
        }


@dataclass(frozen=True)
class InputItem:
    """One thing to classify. `source` is a Path, a URL string or bytes; None when `error` is set."""

    name: str
    source: Path | str | bytes | None = None
    error: str | None = None


def resolve_bundle_dir(path: str | Path) -> Path:
    """A bundle folder as given, or RUN/model when `path` is a training run folder."""
    path = Path(path).expanduser()
    if not (path / MANIFEST_NAME).is_file() and (path / "model" / MANIFEST_NAME).is_file():
        return path / "model"
    return path  # load_bundle explains what is wrong with anything else


# ----------------------------------------------------------------------------- input expansion


def _is_hidden(name: str) -> bool:
    return name.startswith(".") or name == "__MACOSX"


def _walk_images(folder: Path) -> Iterator[Path]:
    """Image files under `folder`, recursively, in sorted path order, hidden entries skipped.

    Lazy: only one directory's listing is held at a time (per level of depth).
    """
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if _is_hidden(entry.name):
            continue
        if entry.is_dir(follow_symlinks=True):
            yield from _walk_images(Path(entry.path))
        elif entry.is_file(follow_symlinks=True) and is_image_name(entry.name):
            yield Path(entry.path)


def _expand_folder(folder: Path, shown: str) -> Iterator[InputItem]:
    found = False
    for path in _walk_images(folder):
        found = True
        yield InputItem(str(path), path)
    if not found:
        yield InputItem(
            shown, error="no image files found in this folder (looked for .jpg, .png, ... recursively)"
        )


def expand_inputs(sources: Iterable[Source]) -> Iterator[InputItem]:
    """Turn command-line inputs into a lazy stream of items, in the order given.

    - an http(s) URL -> one item (downloaded later);
    - an existing file -> one item, whatever its extension (the decoder decides);
    - an existing folder -> every image file below it (by extension), sorted, hidden skipped;
    - a pattern with * ? [ (quoted so the shell left it alone) -> the matching images, sorted,
      `**` matching any depth;
    - bytes -> one item named "<bytes #i>";
    - anything else -> an error item ("file not found", "no files match").
    """
    for index, source in enumerate(sources):
        if isinstance(source, (bytes, bytearray)):
            yield InputItem(f"<bytes #{index}>", bytes(source))
            continue
        text = str(source)
        if isinstance(source, str) and is_url(text):
            yield InputItem(text, text)
            continue
        path = Path(text).expanduser()
        if "://" in text and not path.exists():
            yield InputItem(text, error="unsupported URL scheme; only http:// and https:// URLs are fetched")
            continue
        if path.is_dir():
            yield from _expand_folder(path, text)
        elif path.exists():
            yield InputItem(text, path)
        elif _GLOB_CHARS & set(text):
            # Sorting needs the full match list; a pattern's matches are names only, so this is small.
            matches = sorted(glob.iglob(os.path.expanduser(text), recursive=True))
            found = False
            for match in matches:
                match_path = Path(match)
                if match_path.is_dir():
                    continue  # `**` also matches folders; their images are matched by the pattern itself
                if is_image_name(match):
                    found = True
                    yield InputItem(match, match_path)
            if not found:
                yield InputItem(text, error="no image files match this pattern")
        else:
            yield InputItem(text, error="file not found")


# ----------------------------------------------------------------------------- backends


class Backend(Protocol):
    """What the Predictor needs from an inference engine."""

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        """float32 [N, 3, H, W] (already preprocessed) -> class probabilities [N, C]."""
        ...


class TorchBackend:
    """Runs the bundle's network in PyTorch (softmax over the logits)."""

    def __init__(self, bundle: Bundle, device: str = "cpu") -> None:
        import torch

        self._torch = torch
        self.device = torch.device(device)
        self.model = bundle.build_torch_model().to(self.device)

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            logits = self.model(
                torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
            )
            return torch.softmax(logits.float(), dim=1).cpu().numpy()


# ----------------------------------------------------------------------------- predictor


def _short_error(exc: BaseException, name: str) -> str:
    """The error text without a leading "<name>: " (the input is shown next to it anyway)."""
    message = str(exc)
    prefix = f"{name}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


class Predictor:
    """Classify photos with a bundle.

    >>> predictor = Predictor("runs/seed/model")
    >>> for result in predictor.predict_sources(["photo.jpg", "holiday/", "https://..."]):
    ...     print(result.input, result.label, result.score)
    """

    def __init__(
        self,
        bundle_or_path: Bundle | str | Path,
        device: str = "cpu",
        batch_size: int = 16,
        *,
        top_k: int = 5,
        backend: Backend | None = None,
        url_timeout: float = 10.0,
        url_max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        if batch_size < 1:
            raise SportsdetError(f"batch size must be at least 1, got {batch_size}")
        if top_k < 1:
            raise SportsdetError(f"top-k must be at least 1, got {top_k}")
        if isinstance(bundle_or_path, Bundle):
            self.bundle = bundle_or_path
        else:
            self.bundle = load_bundle(resolve_bundle_dir(bundle_or_path))
        self.labels = self.bundle.labels
        self.preprocessing = self.bundle.preprocessing
        self.batch_size = batch_size
        self.top_k = min(top_k, len(self.labels))
        self.url_timeout = url_timeout
        self.url_max_bytes = url_max_bytes
        self.backend: Backend = backend if backend is not None else TorchBackend(self.bundle, device)

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """Preprocessed float32 [N, 3, H, W] -> probabilities [N, C], shape-checked."""
        probs = np.asarray(self.backend.predict_proba(batch))
        expected = (len(batch), len(self.labels))
        if probs.shape != expected:
            raise SportsdetError(f"model returned probabilities of shape {probs.shape}, expected {expected}")
        return probs

    def predict_image(self, image: Image.Image) -> np.ndarray:
        """An RGB Pillow image -> probabilities [C] (in the order of `labels`)."""
        array = preprocess(image.convert("RGB"), self.preprocessing)
        return self.predict_batch(array[None])[0]

    def load(self, item: InputItem) -> np.ndarray:
        """Fetch (for URLs), decode and preprocess one item; raises SportsdetError on bad input."""
        source = item.source
        if isinstance(source, str) and is_url(source):
            source = fetch_url(source, timeout=self.url_timeout, max_bytes=self.url_max_bytes)
        if source is None:
            raise SportsdetError(item.error or "no data")
        return load_and_preprocess(source, self.preprocessing, name=item.name)

    def result_from_probs(self, name: str, probs: np.ndarray) -> PredictionResult:
        order = np.argsort(-probs, kind="stable")[: self.top_k]
        top = [(self.labels[i], float(probs[i])) for i in order]
        return PredictionResult(input=name, label=top[0][0], score=top[0][1], top_k=top)

    def _prepared(self, items: Iterable[InputItem]) -> Iterator[tuple[str, np.ndarray | None, str | None]]:
        """(name, array, error) per item; the seam where a parallel loader can go."""
        for item in items:
            if item.error is not None:
                yield item.name, None, item.error
                continue
            try:
                yield item.name, self.load(item), None
            except SportsdetError as exc:
                yield item.name, None, _short_error(exc, item.name)

    def predict_sources(self, sources: Iterable[Source]) -> Iterator[PredictionResult]:
        """One result per image found in `sources`, in input order, errors included."""
        pending: list[tuple[str, np.ndarray | None, str | None]] = []
        arrays = 0
        for entry in self._prepared(expand_inputs(sources)):
            pending.append(entry)
            arrays += entry[1] is not None
            if arrays >= self.batch_size:
                yield from self._flush(pending)
                pending, arrays = [], 0
        if pending:
            yield from self._flush(pending)

    def _flush(self, pending: list[tuple[str, np.ndarray | None, str | None]]) -> Iterator[PredictionResult]:
        arrays = [array for _, array, _ in pending if array is not None]
        probs = iter(self.predict_batch(np.stack(arrays)) if arrays else [])
        for name, array, error in pending:
            if array is None:
                yield PredictionResult(input=name, error=error)
            else:
                yield self.result_from_probs(name, next(probs))


# ----------------------------------------------------------------------------- output formats


def to_jsonl(result: PredictionResult) -> str:
    """One line of `--format jsonl`."""
    return json.dumps(result.to_dict(), ensure_ascii=False)


def csv_header(top_k: int) -> list[str]:
    """Columns of `--format csv`: input,label,score,error,top1_label,top1_score,..."""
    columns = ["input", "label", "score", "error"]
    for rank in range(1, top_k + 1):
        columns += [f"top{rank}_label", f"top{rank}_score"]
    return columns


def csv_row(result: PredictionResult, top_k: int) -> list[str]:
    row = [
        result.input,
        result.label or "",
        "" if result.score is None else f"{result.score:.6f}",
        result.error or "",
    ]
    for rank in range(top_k):
        if rank < len(result.top_k):
            label, score = result.top_k[rank]
            row += [label, f"{score:.6f}"]
        else:
            row += ["", ""]
    return row


def csv_line(values: list[str]) -> str:
    """One properly quoted CSV line (labels and paths may hold commas or quotes)."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow(values)
    return buffer.getvalue()
