"""Frozen-backbone features, computed once and cached on disk.

Transfer learning spends almost all of its time pushing photos through the frozen part of a
pretrained network. This module does that once per (model, preprocessing, view, tap, file
content) and keeps the result:

    $SPORTSDET_CACHE_DIR (default $XDG_CACHE_HOME or ~/.cache, then sportsdet/features)
        /<model>-<key>/shard-*.safetensors

Each shard holds `sha` (uint8 [k, 32], SHA-256 of the file bytes), `pooled` (float32 [k, d],
the globally pooled features the classifier sees) and, when a tap is asked for, `tap`
(float16 [k, C, H, W], the activation after the first `tap` trunk stages, so the stages above
it can be fine-tuned without re-running the ones below). Shards are written under a temporary
name and renamed into place, so an interrupted run leaves only whole shards, and the next run
reuses them. Keying on content, not path, means renamed or copied photos are not recomputed.

A "view" is what is done to the photo before the network: "center" (the model's preprocessing),
"flip" (mirrored), "grey" (the photo in black and white) or "aug<N>" (the N-th deterministic
random augmentation: crop, flip, colour).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sportsdet.data.augment import normalized_augmentation
from sportsdet.errors import SportsdetError, raise_dropped_interrupt
from sportsdet.files import atomic_write, cpu_count, remove_untouched, sha256_file, write_json
from sportsdet.models import get_model_spec
from sportsdet.models.stages import trunk_stages
from sportsdet.preprocess import Preprocessing
from sportsdet.runtime import session_options

SHARD_SIZE = 512  # photos per shard: about 10 s of work, so an interruption loses little
CACHE_ENV = "SPORTSDET_CACHE_DIR"


def cache_root() -> Path:
    """Where feature caches live: $SPORTSDET_CACHE_DIR, else $XDG_CACHE_HOME/sportsdet/features
    (the XDG rule matplotlib and pip follow), else ~/.cache/sportsdet/features."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg).expanduser() if os.path.isabs(os.path.expanduser(xdg)) else Path.home() / ".cache"
    return base / "sportsdet" / "features"


def file_digest(path: str | Path) -> bytes:
    """SHA-256 of a file's bytes (the cache key of one photo)."""
    return bytes.fromhex(sha256_file(path))


# ----------------------------------------------------------------------------------------------
# Views: the image-level transform in front of the network.


def _view_transform(view: str, pre: Preprocessing) -> Callable[[Any, bytes], np.ndarray]:
    """(RGB PIL image, file digest) -> normalised CHW float32 array, deterministic per digest."""
    from sportsdet.preprocess import normalize, resize_image

    if view == "center":
        return lambda image, digest: normalize(resize_image(image, pre), pre)
    if view == "flip":
        return lambda image, digest: np.ascontiguousarray(normalize(resize_image(image, pre), pre)[..., ::-1])
    if view == "grey":  # luminance in all three channels, as a black-and-white photo arrives
        return lambda image, digest: normalize(resize_image(image.convert("L").convert("RGB"), pre), pre)
    if view.startswith("aug") and view[3:].isdigit():
        index = int(view[3:])

        def augment(image: Any, digest: bytes) -> np.ndarray:
            import torch

            # Seeded by photo content and view number: the same view is the same crop next run.
            seed = int.from_bytes(hashlib.sha256(digest + index.to_bytes(4, "little")).digest()[:8], "little")
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return normalized_augmentation(pre, "photo")(image)

        return augment
    raise SportsdetError(f"unknown feature view {view!r}; use center, flip, grey or aug<N>")


@dataclass(frozen=True)
class FeatureKey:
    """Everything the cached numbers depend on besides the photo itself."""

    model_name: str
    preprocessing: Preprocessing
    view: str = "center"
    tap: int | None = None

    def as_dict(self) -> dict[str, Any]:
        get_model_spec(self.model_name)  # unknown names fail here, with the list of models
        # The registry name fixes the architecture and its pretrained weights; display strings
        # (descriptions, weight source text) are left out so editing them keeps the cache valid.
        return {
            "format": "sportsdet-features/1",
            "model": self.model_name,
            "preprocessing": self.preprocessing.to_dict(),
            "view": self.view,
            "tap": self.tap,
        }

    def folder(self, root: Path | None = None) -> Path:
        text = json.dumps(self.as_dict(), sort_keys=True)
        short = hashlib.sha256(text.encode()).hexdigest()[:16]
        return (root or cache_root()) / f"{self.model_name}-{short}"


class _PhotoDataset:
    """Decodes and transforms photos in DataLoader workers; errors travel back as strings."""

    def __init__(self, paths: Sequence[str], digests: Sequence[bytes], pre: Preprocessing, view: str) -> None:
        self.paths, self.digests, self.pre = list(paths), list(digests), pre
        self.transform = _view_transform(view, pre)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        from sportsdet.imageio import load_image

        try:
            # Decoded only as large as the model's resize needs (augmented views crop from that).
            image = load_image(self.paths[index], min_size=self.pre.decode_size)
            return self.transform(image, self.digests[index]), index, ""
        except SportsdetError as exc:
            size = self.pre.input_size
            return np.zeros((3, size, size), np.float32), index, str(exc)


def load_shards(
    folder: Path, want_tap: bool, wanted: set[bytes]
) -> dict[bytes, tuple[np.ndarray, np.ndarray | None]]:
    """The cached features of the `wanted` photos (file digests) in a cache folder. A shard is read
    only when it holds one of them: the folder is shared by every run and dataset and only grows,
    and a run read all of it. A shard that cannot be read, or whose numbers are not all finite
    (damaged on disk: they trained to a NaN loss), is dropped, and its photos computed again."""
    from safetensors import safe_open

    found: dict[bytes, tuple[np.ndarray, np.ndarray | None]] = {}
    for shard in sorted(folder.glob("shard-*.safetensors")):
        if len(found) == len(wanted):
            break
        try:
            with safe_open(str(shard), framework="numpy") as handle:
                if want_tap and "tap" not in handle.keys():
                    continue
                shas = [bytes(sha) for sha in handle.get_tensor("sha")]
                rows = [row for row, sha in enumerate(shas) if sha in wanted and sha not in found]
                if not rows:
                    continue
                pooled = handle.get_tensor("pooled")[rows]
                tap = handle.get_tensor("tap")[rows] if want_tap else None
        except Exception:  # a damaged shard is only lost work: drop it and recompute
            shard.unlink(missing_ok=True)
            continue
        if not np.isfinite(pooled).all() or (tap is not None and not np.isfinite(tap).all()):
            shard.unlink(missing_ok=True)
            continue
        for index, row in enumerate(rows):
            found[shas[row]] = (pooled[index], tap[index] if tap is not None else None)
    return found


def cached_digests(folder: Path, want_tap: bool) -> set[bytes]:
    """The photos (file digests) a cache folder already holds, reading only the shards' `sha`
    rows, not their features (a folder of tap activations can hold gigabytes)."""
    from safetensors import safe_open

    found: set[bytes] = set()
    for shard in sorted(folder.glob("shard-*.safetensors")):
        try:
            with safe_open(str(shard), framework="numpy") as handle:
                if want_tap and "tap" not in handle.keys():
                    continue
                found.update(bytes(sha) for sha in handle.get_tensor("sha"))
        except Exception:  # a damaged shard holds nothing (load_shards drops it)
            continue
    return found


def _write_shard(folder: Path, shas: list[bytes], pooled: np.ndarray, tap: np.ndarray | None) -> None:
    from safetensors.numpy import save_file

    tensors = {"sha": np.frombuffer(b"".join(shas), np.uint8).reshape(-1, 32), "pooled": pooled}
    if tap is not None:
        tensors["tap"] = tap
    name = "shard-" + hashlib.sha256(b"".join(shas)).hexdigest()[:20] + ".safetensors"
    # Readers see the whole shard or none; an interrupted run loses only the shard in progress.
    atomic_write(folder / name, lambda temp: save_file(tensors, str(temp)))


def extract_features(
    model_name: str,
    paths: Sequence[str | Path],
    *,
    preprocessing: Preprocessing | None = None,
    view: str = "center",
    tap: int | None = None,
    model: Any = None,
    batch_size: int | None = None,
    num_workers: int = 1,
    threads: int | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
    description: str = "features",
) -> dict[str, np.ndarray]:
    """Frozen features of `paths` (in order), computed where missing and cached.

    Returns {"pooled": float32 [n, d]} plus {"tap": float16 [n, C, H, W]} when `tap` is given.
    `model` may be passed to reuse an already built pretrained network (its classifier is unused).
    The frozen network runs in onnxruntime (6x eager PyTorch on this CPU) the way the predictor
    runs it: `threads` single-threaded runs at once, each on 2 images of a batch (default: one run
    per CPU, batches of 2 x threads; measured fastest, bench/throughput.py); one DataLoader worker
    decodes photos meanwhile (decoding is ~5% of the work).
    A photo that cannot be decoded raises a SportsdetError naming it; finished shards are kept.
    """
    spec = get_model_spec(model_name)
    pre = preprocessing or spec.preprocessing
    key = FeatureKey(model_name, pre, view, tap)
    folder = key.folder(cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "key.json", key.as_dict())
    # A shard a killed run was writing: its name is not written again once another run made it.
    remove_untouched(p for p in folder.glob(".shard-*.tmp*") if p.is_file() and not p.is_symlink())

    paths = [str(p) for p in paths]
    digests = [file_digest(p) for p in paths]
    cached = load_shards(folder, tap is not None, set(digests))
    todo: list[int] = []
    seen: set[bytes] = set()
    copies = 0  # photos whose bytes another one has: computed once ("45/45 photos" of 50 valid)
    for i, digest in enumerate(digests):
        if digest not in cached and digest not in seen:
            seen.add(digest)
            todo.append(i)
        elif digest in seen:
            copies += 1

    if todo:
        import torch

        if model is None:
            from sportsdet.models import build_model

            model = build_model(model_name, num_classes=1, pretrained=True)
        dataset = _PhotoDataset([paths[i] for i in todo], [digests[i] for i in todo], pre, view)
        started = time.perf_counter()
        # The DataLoader draws its workers' seeds from torch's global RNG: computing features must
        # not move the caller's random stream, or a cold cache would train differently from a warm one.
        with torch.random.fork_rng(devices=[]):
            _compute_shards(
                dataset,
                folder,
                _session_for(model, tap, pre.input_size),
                want_tap=tap is not None,
                threads=threads or cpu_count(),
                batch_size=batch_size,
                num_workers=num_workers,
                bar=_progress_bar(progress, len(todo), f"{description} ({model_name}, {view}"
                              + "".join(f"; {note}" for note in _not_computed(len(paths), len(todo), copies))
                              + ")"),
            )
        _log_speed(folder, len(todo), time.perf_counter() - started)
        cached.update(load_shards(folder, tap is not None, {digests[i] for i in todo}))

    out = {"pooled": np.stack([cached[d][0] for d in digests]).astype(np.float32, copy=False)}
    if tap is not None:
        out["tap"] = np.stack([cached[d][1] for d in digests])
    return out


def _compute_shards(
    dataset: _PhotoDataset,
    folder: Path,
    session: Any,
    *,
    want_tap: bool,
    threads: int,
    batch_size: int | None,
    num_workers: int,
    bar: _Bar | _LogLines | None,
) -> None:
    """Run the frozen trunk over `dataset` and write its outputs as shards of SHARD_SIZE photos."""
    import torch

    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size or 2 * threads,
        num_workers=num_workers,
        collate_fn=lambda rows: (np.stack([r[0] for r in rows]), [r[1] for r in rows], [r[2] for r in rows]),
    )
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sportsdet-features")
    pending: dict[str, list] = {"sha": [], "pooled": [], "tap": []}

    def flush() -> None:
        if pending["sha"]:
            tap = np.concatenate(pending["tap"]) if want_tap else None
            _write_shard(folder, pending["sha"], np.concatenate(pending["pooled"]), tap)
            for name in pending:
                pending[name] = []

    try:
        for batch, indices, errors in loader:
            raise_dropped_interrupt()  # a Ctrl-C Python dropped in a callback stops here
            for message in errors:
                if message:
                    raise SportsdetError(
                        f"{message}; fix or remove the file (see `sportsdet data check`) and run again"
                    )
            # onnxruntime releases the GIL: the parts of a batch run at the same time.
            parts = list(
                pool.map(
                    lambda part: session.run(None, {"image": part}),
                    np.array_split(batch, min(threads, len(batch))),
                )
            )
            outputs = [np.concatenate(column) for column in zip(*parts, strict=True)]
            pooled = outputs[0].astype(np.float32, copy=False)
            with np.errstate(over="ignore"):  # an activation past float16's range: said just below
                tap = outputs[1].astype(np.float16) if want_tap else None
            _check_finite(pooled, tap, [dataset.paths[i] for i in indices])
            pending["sha"].extend(dataset.digests[i] for i in indices)
            pending["pooled"].append(pooled)
            if tap is not None:
                pending["tap"].append(tap)
            if len(pending["sha"]) >= SHARD_SIZE:
                flush()
            if bar is not None:
                bar.advance(len(indices))
        flush()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        if bar is not None:
            bar.stop()


def _check_finite(pooled: np.ndarray, tap: np.ndarray | None, paths: list[str]) -> None:
    """Features that are not numbers are refused before they are cached: a shard holding them is
    dropped on reading (load_shards), which left the photo missing (a KeyError) on every run."""
    bad = ~np.isfinite(pooled).all(axis=1)
    if tap is not None:
        bad |= ~np.isfinite(tap.reshape(len(tap), -1)).all(axis=1)
    if bad.any():
        first = paths[int(np.flatnonzero(bad)[0])]
        raise SportsdetError(
            f"{first}: the frozen network's features of this photo ({int(bad.sum())} of {len(paths)} "
            "in its batch) are not finite numbers (an activation past float16's range?); the model's "
            "pretrained weights or its preprocessing are not what they should be"
        )


_SESSIONS: dict[tuple, tuple[Any, Any]] = {}


def _session_for(model: Any, tap: int | None, input_size: int) -> Any:
    """One exported session per model object and tap (export takes seconds; views share it)."""
    key = (id(model), tap, input_size)
    if key not in _SESSIONS or _SESSIONS[key][0] is not model:
        _SESSIONS.clear()  # keep at most one: sessions hold a copy of the weights
        _SESSIONS[key] = (model, _frozen_session(model, tap, input_size))
    return _SESSIONS[key][1]


def _frozen_session(model: Any, tap: int | None, input_size: int) -> Any:
    """The frozen trunk as a single-threaded onnxruntime session: image -> (pooled, activation at tap)."""
    import onnxruntime as ort
    import torch

    from sportsdet.onnx_graph import torch_to_onnx

    stages = trunk_stages(model.eval())
    cut = tap if tap is not None else len(stages)

    class Trunk(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lower = torch.nn.Sequential(*stages[:cut])
            self.upper = torch.nn.Sequential(*stages[cut:])

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            activation = self.lower(image)
            return self.upper(activation), activation

    data = torch_to_onnx(
        Trunk(),
        input_size,
        input_names=["image"],
        output_names=["pooled", "tap"],
        dynamic_axes={"image": {0: "n"}, "pooled": {0: "n"}, "tap": {0: "n"}},
    )
    return ort.InferenceSession(data, session_options(1), providers=["CPUExecutionProvider"])


# In a log file or pipe, a progress line at most this often (seconds).
PLAIN_PROGRESS_EVERY = 30.0


class _Bar:
    """Extraction progress on stderr as a live bar (a terminal)."""

    def __init__(self, total: int, description: str, console: Any) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task(description, total=total)
        self.progress.start()

    def advance(self, n: int) -> None:
        self.progress.advance(self.task, n)

    def stop(self) -> None:
        self.progress.stop()


def _not_computed(total: int, todo: int, copies: int) -> list[str]:
    """Why fewer photos are computed than were asked for ("1346/1346 photos" of 2194 read as lost)."""
    notes = [f"{copies} byte {'copy' if copies == 1 else 'copies'} computed once"] if copies else []
    cached = total - todo - copies
    return [f"{cached} already in the feature cache", *notes] if cached else notes


class _LogLines:
    """Extraction progress in a log file or a pipe, where a live bar shows nothing until it ends
    (minutes of silence): a line every PLAIN_PROGRESS_EVERY seconds, and one at the end."""

    def __init__(self, total: int, description: str, console: Any) -> None:
        self.console, self.total, self.description, self.done = console, total, description, 0
        self.started = self.printed = time.monotonic()

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.printed >= PLAIN_PROGRESS_EVERY and self.done < self.total:
            self.printed = now
            elapsed = now - self.started
            left = elapsed / self.done * (self.total - self.done)
            so_far = f"{self.done}/{self.total} photos, {elapsed / 60:.1f} min so far"
            self._say(f"{so_far}, about {left / 60:.1f} min left")

    def stop(self) -> None:
        self._say(f"{self.done}/{self.total} photos in {(time.monotonic() - self.started) / 60:.1f} min")

    def _say(self, text: str) -> None:
        self.console.print(f"{self.description}: {text}", highlight=False, soft_wrap=True)


def _progress_bar(enabled: bool, total: int, description: str) -> _Bar | _LogLines | None:
    if not enabled:
        return None
    from rich.console import Console

    console = Console(stderr=True)
    return (_Bar if console.is_terminal else _LogLines)(total, description, console)


def _log_speed(folder: Path, count: int, seconds: float) -> None:
    """Remember how fast extraction ran here, so time budgets can be planned."""
    speed = round(count / max(seconds, 1e-9), 2)
    try:
        write_json(folder / "speed.json", {"images": count, "seconds": round(seconds, 2), "img_per_s": speed})
    except SportsdetError:
        pass  # only a planning hint


def measured_speed(key: FeatureKey, cache_dir: Path | None = None) -> float | None:
    """Images per second of the last extraction for this key on this machine, if known."""
    try:
        speed = float(json.loads((key.folder(cache_dir) / "speed.json").read_text())["img_per_s"])
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or a damaged record: not known
        return None
    return speed if math.isfinite(speed) and speed > 0 else None
