"""`sportsdet predict --engine ray`: label millions of photos with Ray Data, resumably.

The pipeline (one Ray Data dataset, streamed, nothing materialised whole):

    inputs (folders, globs, files, URLs; .txt/.csv/.parquet listings with a `path` column)
      -> list      CPU tasks expand each input with `predict.expand_inputs` (the same folder walk,
                   glob and URL rules as `sportsdet predict`) and drop inputs already in DIR
      -> decode    CPU tasks: `preprocess.load_for_model` (decode, resize, and predict's tiny/strip/
                   small warnings; uint8, 4x smaller than float32 in the object store)
      -> classify  a pool of actors, each holding one `predict.Predictor` (the model loaded once):
                   `preprocess.normalize` then the model, top-k as `sportsdet predict` computes it
      -> driver    appends rows to Parquet parts in DIR, each written to a temp name and renamed,
                   so a part is either whole or absent

Results are small (~100 bytes a row), so the driver writes them: DIR only has to exist where the
command runs, never on the worker nodes. A bad input is a row with its `error`, never a failed
job. Re-running into the same DIR reads the `source` column of its parts (each photo's absolute
path, or its URL) and skips those photos (by path, not content: hashing millions of photos to
resume would cost what labelling them does; a photo replaced in place keeps its row); a photo with
an error row is tried again when it is listed again, and its old row is dropped once the new one
is written.
One run at a time writes into a DIR (an flock on DIR/.sportsdet.lock).
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import signal
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sportsdet.errors import SportsdetError
from sportsdet.fetch import DEFAULT_MAX_BYTES, fetch_url, is_url
from sportsdet.files import FOLDER_LOCK, atomic_write, hold_folder, printable_name
from sportsdet.imageio import is_image_name, sniff_image_format
from sportsdet.predict import PredictionResult, Predictor, _short_message, expand_inputs
from sportsdet.preprocess import Preprocessing, load_for_model, normalize, resize_image

INSTALL_HINT = "pip install 'sportsdet[cluster]'"
LISTING_SUFFIXES = (".txt", ".csv", ".parquet")
LISTING_COLUMN = "path"
PART_PREFIX = "part-"
# Rows per Ray block between decoding and classifying: enough to amortise Ray's per-block cost,
# few enough that every CPU gets work on a few hundred photos.
DECODE_BATCH = 32
# A part is written after this many rows or seconds, whichever first: what a crash can cost.
PART_ROWS = 5000
PART_SECONDS = 30.0
# Memory a decode task asks Ray for (see build_dataset).
DECODE_MEMORY = 128 * 1024 * 1024


def import_ray() -> Any:
    """`ray` with Ray Data, or a SportsdetError saying which extra to install."""
    try:
        import ray
        import ray.data  # noqa: F401  (the extra brings both; an old bare `ray` lacks data)
    except ImportError:
        raise SportsdetError(
            f"--engine ray needs Ray Data, which is not installed; install the cluster extra: {INSTALL_HINT}"
        ) from None
    return ray


# ----------------------------------------------------------------------------- results on disk


def result_schema() -> Any:
    """The Parquet schema of DIR's parts.

    `input`: the photo as the user named it (relative names as typed); `source`: the photo
    itself, an absolute path or a URL (two photos named p.jpg in two folders are two photos).
    `uncertain`: the model's abstain rule said "I don't know" (as `predict` says it: label and
    score null, the best guess first in top_k); null when no rule is in force. (An older sportsdet
    named it `abstain`.)"""
    import pyarrow as pa

    top = pa.struct([("label", pa.string()), ("score", pa.float64())])
    return pa.schema(
        [
            ("input", pa.string()),
            ("source", pa.string()),
            ("label", pa.string()),
            ("score", pa.float64()),
            ("top_k", pa.list_(top)),
            ("uncertain", pa.bool_()),
            ("error", pa.string()),
            ("warning", pa.string()),
        ]
    )


def results_table(
    results: Iterable[PredictionResult], *, abstains: bool = False, sources: Iterable[str] | None = None
) -> Any:
    """PredictionResults -> a pyarrow Table in `result_schema()`; `abstains`: a rule is in force;
    `sources`: each result's photo (absolute path or URL), else its input name."""
    import pyarrow as pa

    results = list(results)
    sources = list(sources) if sources is not None else [""] * len(results)
    rows = []
    for result, source in zip(results, sources, strict=True):
        record = result.to_dict()
        rows.append(
            {
                "input": record["input"],
                "source": source or record["input"],
                "label": record["label"],
                "score": record["score"],
                "top_k": record["top_k"],
                "uncertain": bool(record.get("uncertain")) if abstains and not record["error"] else None,
                "error": record["error"],
                "warning": record.get("warning"),
            }
        )
    return pa.Table.from_pylist(rows, schema=result_schema())


def part_files(out_dir: Path) -> list[Path]:
    return sorted(out_dir.glob(f"{PART_PREFIX}*.parquet"))


def _read_part(part: Path, columns: list[str] | None = None, *, schema_only: bool = False) -> Any:
    """A part's table (or only its schema); a damaged or foreign file is one clear error."""
    import pyarrow.parquet as pq

    try:
        return pq.read_schema(part) if schema_only else pq.read_table(part, columns=columns)
    except Exception as exc:  # pyarrow raises several kinds for a damaged or foreign file
        raise SportsdetError(
            f"{part}: cannot read this results file ({str(exc).splitlines()[0][:200]}); move it out "
            "of the output folder and run again"
        ) from None


def _part_keys(table: Any) -> list[list[str]]:
    """Each row's keys (see `done_key`). A part written before the `source` column names photos
    only as typed: relative names are also taken from the current folder, as runs were started."""
    if "source" in table.column_names:
        return [[value] if value is not None else [] for value in table.column("source").to_pylist()]
    keys = []
    for value in table.column("input").to_pylist():
        if value is None:
            keys.append([])
        elif is_url(value) or is_storage_uri(value) or os.path.isabs(value):
            keys.append([value])
        else:
            keys.append([value, os.path.abspath(value)])
    return keys


@dataclass
class FolderState:
    """What DIR holds, read once at the start of a run."""

    done: list[str] = field(default_factory=list)  # keys of the labelled rows (what a re-run skips)
    done_rows: int = 0  # labelled rows (an older part has two keys for some: `_part_keys`)
    failed: list[list[str]] = field(default_factory=list)  # each error row's keys
    parts_with_errors: list[Path] = field(default_factory=list)


def read_folder(out_dir: Path) -> FolderState:
    """One pass over DIR's parts (their key and error columns only)."""
    import pyarrow.compute as pc

    state = FolderState()
    for part in part_files(out_dir):
        key = "source" if "source" in _read_part(part, schema_only=True).names else "input"
        table = _read_part(part, [key, "error"])
        labelled = table.filter(pc.is_null(table.column("error")))
        state.done.extend(k for keys in _part_keys(labelled) for k in keys)
        state.done_rows += labelled.num_rows
        if labelled.num_rows < table.num_rows:
            state.failed.extend(_part_keys(table.filter(pc.is_valid(table.column("error")))))
            state.parts_with_errors.append(part)
    return state


SETTINGS_FILE = ".sportsdet-settings.json"  # what a folder's rows were made with (checked on re-runs)


def check_settings(out_dir: Path, settings: dict[str, Any], has_rows: bool) -> None:
    """Refuse to add rows made another way to a folder (another model, top-k or abstain rule): a
    re-run kept the old rows and wrote the new ones beside them, mixed in silence. The first run
    (or one into a folder of an older version, which kept no record) writes the record."""
    import json

    from sportsdet.files import write_json

    record = out_dir / SETTINGS_FILE
    settings = json.loads(json.dumps(settings))  # compared as it reads back (tuples are lists)
    try:
        before = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else None
    except (OSError, ValueError):
        before = None  # unreadable: rewritten below, as for an older folder
    if isinstance(before, dict) and has_rows:
        shown = {"model": "--model", "top_k": "--top-k", "abstain": "the abstain rule", "labels": "labels"}
        changed = [
            f"{shown.get(key, key)} {before.get(key)!r} (now {value!r})"
            for key, value in settings.items()
            if before.get(key) != value and (key in before or key != "labels")  # older records lack it
        ]
        if changed:
            raise SportsdetError(
                f"{out_dir} holds results made with {'; '.join(changed)}: give the same options to go on "
                "with it, or another --output"
            )
    _refuse_older_columns(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(record, settings)


def _refuse_older_columns(out_dir: Path) -> None:
    """Rows under other column names cannot be mixed into one dataset: an older sportsdet's parts
    call `uncertain` `abstain`."""
    for part in part_files(out_dir):
        names = _read_part(part, schema_only=True).names
        if "abstain" in names and "uncertain" not in names:
            raise SportsdetError(
                f"{out_dir} holds results of an older sportsdet (its `abstain` column is called "
                "`uncertain` now): give another --output"
            )


def read_done_inputs(out_dir: Path) -> list[str]:
    """What a re-run skips: the photo (`source`) of every labelled row already in DIR; rows with
    an error are not done."""
    return read_folder(out_dir).done


def drop_error_rows(parts: Iterable[Path], drop: Callable[[str], bool]) -> int:
    """Remove the rows with an error whose photo `drop` names from `parts` (each part rewritten
    atomically): once a photo's new row is written, its old error row goes. Returns how many."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    dropped = 0
    for part in parts:
        if not part.is_file():
            continue
        table = _read_part(part)
        if table.column("error").null_count == table.num_rows:
            continue  # no error rows: nothing to look up
        errors = table.column("error").to_pylist()
        gone = [error is not None and any(drop(key) for key in keys)
                for error, keys in zip(errors, _part_keys(table), strict=True)]  # fmt: skip
        if not any(gone):
            continue
        kept = table.filter(pa.array([not g for g in gone]))
        if kept.num_rows:
            atomic_write(part, lambda temp, kept=kept: pq.write_table(kept, temp))
        else:
            part.unlink()
        dropped += sum(gone)
    return dropped


def input_keys(names: Iterable[str]) -> np.ndarray:
    """Sorted 64-bit hashes of input names: 8 bytes an input, whatever the path length, so the
    done-set of millions of inputs fits in the object store (collision odds ~1e-7 at 10M)."""
    keys = np.fromiter(
        (int.from_bytes(hashlib.blake2b(n.encode(), digest_size=8).digest(), "little") for n in names),
        dtype=np.uint64,
    )
    return np.unique(keys)


def _is_done(keys: np.ndarray, name: str) -> bool:
    if len(keys) == 0:
        return False
    key = np.uint64(int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "little"))
    at = int(np.searchsorted(keys, key))
    return at < len(keys) and keys[at] == key


class PartWriter:
    """Buffers result tables and writes them as Parquet parts, each atomically (temp + rename)."""

    def __init__(self, out_dir: Path, *, part_rows: int = PART_ROWS, part_seconds: float = PART_SECONDS):
        self.out_dir = out_dir
        self.run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        self.part_rows = part_rows
        self.part_seconds = part_seconds
        self.pending: list[Any] = []
        self.pending_rows = 0
        self.last_flush = time.monotonic()
        self.parts: list[Path] = []

    def add(self, table: Any) -> None:
        if table.num_rows:
            self.pending.append(table)
            self.pending_rows += table.num_rows
        if self.pending_rows >= self.part_rows or time.monotonic() - self.last_flush >= self.part_seconds:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.last_flush = time.monotonic()
        if not self.pending_rows:
            return
        table = pa.concat_tables(self.pending)
        final = self.out_dir / f"{PART_PREFIX}{self.run_id}-{len(self.parts):05d}.parquet"
        # Temp file, fsync, one rename: readers (and a resumed run) see the whole part or none.
        atomic_write(final, lambda temp: pq.write_table(table, temp))
        self.parts.append(final)
        self.pending, self.pending_rows = [], 0


# ----------------------------------------------------------------------------- listing


@dataclass(frozen=True)
class InputSpecs:
    """What the user typed, split into plain inputs and listing files."""

    plain: list[str] = field(default_factory=list)
    listings: list[Path] = field(default_factory=list)


def split_inputs(inputs: Iterable[str]) -> InputSpecs:
    """Plain inputs vs listing files (.txt, .csv, .parquet that exist; their `path` column checked)."""
    plain, listings = [], []
    for text in inputs:
        path = Path(text).expanduser()
        # A photo named like a listing (a JPEG saved as x.txt) is a photo, as plain predict reads it.
        if path.suffix.lower() in LISTING_SUFFIXES and path.is_file() and not sniff_image_format(path):
            _check_listing(path)
            listings.append(path.resolve())
        else:
            plain.append(text)
    return InputSpecs(plain, listings)


def _check_listing(path: Path) -> None:
    """A listing must be readable text (.txt, .csv: UTF-8, Excel's byte-order mark allowed) and
    say where its paths are (a `path` column: .csv, .parquet). Checked here, whole, because a
    listing Ray Data cannot parse stops the job half way with a page of its tracebacks."""
    suffix = path.suffix.lower()
    # An empty listing (or one of comments only) wrote nothing and said "wrote 0 result(s)", exit 0:
    # plain predict says of an empty folder that it holds no photo.
    nothing = SportsdetError(f"{path}: the listing names no photo; give one path or URL a line")
    try:
        if suffix == ".txt":
            _check_utf8(path)
            with path.open(encoding="utf-8-sig") as handle:
                if not any(line.strip() and not line.strip().startswith("#") for line in handle):
                    raise nothing
            return
        if suffix == ".csv":
            _check_utf8(path)
            with path.open(newline="", encoding="utf-8-sig") as handle:
                columns = next(csv.reader(handle), [])
        else:
            import pyarrow.parquet as pq

            columns = pq.read_schema(path).names
            rows = pq.read_metadata(path).num_rows
    except SportsdetError:
        raise
    except (OSError, csv.Error) as exc:
        raise SportsdetError(f"{path}: cannot read this listing ({exc})") from None
    except Exception as exc:  # pyarrow's errors for a file that is not Parquet
        raise SportsdetError(
            f"{path}: not a readable Parquet file ({str(exc).splitlines()[0][:200]})"
        ) from None
    if LISTING_COLUMN not in columns:
        raise SportsdetError(
            f"{path}: a listing needs a {LISTING_COLUMN!r} column holding image paths or URLs; "
            f"found columns {columns[:10]}"
        )
    if suffix == ".csv":  # every row, as Ray Data will read it
        import pyarrow.csv as pacsv

        rows = 0
        try:
            for batch in pacsv.open_csv(path, convert_options=_csv_options()):  # streamed: any size
                rows += batch.num_rows
        except Exception as exc:  # pyarrow.ArrowInvalid: a row with more fields than the header, ...
            raise SportsdetError(f"{path}: not a readable CSV listing ({_first_line(exc)})") from None
    if rows == 0:
        raise nothing


def _check_utf8(path: Path) -> None:
    """Refuse a listing that is not UTF-8 (e.g. Latin-1 names), naming the line."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise SportsdetError(
                    f"{path}, line {number}: not UTF-8 text ({exc.reason} at byte {exc.start}); save the "
                    "listing as UTF-8"
                ) from None


def _csv_options() -> Any:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    return pacsv.ConvertOptions(include_columns=[LISTING_COLUMN], column_types={LISTING_COLUMN: pa.string()})


def expand_spec(spec: str, base: str) -> Iterator[tuple[str, str | None, str | None, str | None]]:
    """One input (as typed, or one line of a listing) -> (name, source, error, note) per image.

    Relative paths are taken from `base` (the command's folder, or the listing file's folder):
    Ray's workers run elsewhere. Names keep the form the user wrote, so they match what
    `sportsdet predict` prints for the same input; `source` is what to read (an absolute path
    or a URL); `note` what predict says beside the result (a photo with a misleading name).
    """
    text = spec  # as typed: a listing's blank lines and comments are dropped where it is read
    if is_storage_uri(text):
        for name, source, error in _expand_storage(text):
            yield name, source, error, None
        return
    # "" and "-" stay as they are, for predict's own errors (joined to `base`, "-" was a file name).
    special = not text.strip() or text == "-"
    relative = not (special or is_url(text) or "://" in text or os.path.isabs(os.path.expanduser(text)))
    target = os.path.join(base, text) if relative else text
    prefix = base.rstrip(os.sep) + os.sep
    for item in expand_inputs([target]):
        name = item.name[len(prefix) :] if relative and item.name.startswith(prefix) else item.name
        source = None if item.source is None else str(item.source)
        yield name, source, item.error, item.note


def done_key(name: str, source: str | None, *, base: str = "") -> str:
    """What names a photo in DIR across runs: its absolute path (two p.jpg of two folders are
    two photos, whatever folder each run started in); a URL by its shown form (no password).
    An input that failed before it named a photo (a missing file, an empty folder, a pattern
    matching nothing): the input, made absolute from `base` (see `input_key`)."""
    if source and not is_url(source) and not is_storage_uri(source):
        # normpath: 'lst/../rin/1.jpg' is 'rin/1.jpg' (links are not resolved: a link is its own name)
        return printable_name(os.path.normpath(source))  # a name that is not UTF-8: text, as `name` is
    return input_key(name, base) if not source else name


def input_key(text: str, base: str) -> str:
    """An input as typed, made absolute from `base` (URLs and object-storage URIs as they are)."""
    if is_url(text) or is_storage_uri(text) or "://" in text:
        return text
    return printable_name(os.path.normpath(os.path.join(base, os.path.expanduser(text))))


def empty_path_key(listing: str) -> str:
    return f"{listing}#empty-path"


# ----------------------------------------------------------------------------- object storage

# Object storage is read through pyarrow's file systems (pyarrow comes with Ray Data); each node
# finds its credentials the way the cloud SDKs do (environment, instance role, ...). file:// is
# the same code path on a local disk.
STORAGE_SCHEMES = ("s3", "gs", "gcs", "file")
_FILESYSTEMS: dict[tuple[str, str], Any] = {}  # one client per bucket and worker process


def is_storage_uri(text: str) -> bool:
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.lower() in STORAGE_SCHEMES


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:200]


def _storage(uri: str) -> tuple[Any, str]:
    """(pyarrow file system, path in it) for an object-storage URI; file systems are reused."""
    import pyarrow.fs as pafs

    scheme, rest = uri.split("://", 1)
    path = rest.split("?", 1)[0]
    bucket = "" if scheme.lower() == "file" else path.split("/", 1)[0]
    key = (scheme.lower(), bucket)
    if key not in _FILESYSTEMS:
        _FILESYSTEMS[key] = pafs.FileSystem.from_uri(uri)[0]
    return _FILESYSTEMS[key], path


def _expand_storage(uri: str) -> Iterator[tuple[str, str | None, str | None]]:
    """An object, or every image under a prefix (sorted, hidden names skipped), like a folder."""
    import pyarrow.fs as pafs

    try:
        fs, path = _storage(uri)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            yield uri, uri, None
            return
        if info.type != pafs.FileType.Directory:
            yield uri, None, "no such object or prefix"
            return
        entries = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    except Exception as exc:  # pyarrow and the cloud SDKs raise many kinds
        yield uri, None, f"cannot list this URI ({_first_line(exc)})"
        return
    base = path.rstrip("/") + "/"
    scheme = uri.split("://", 1)[0]
    # By name here: local folders are known by content (files.iter_image_files), but reading
    # the first bytes of every object in a bucket would cost one request per object.
    images = sorted(
        entry.path
        for entry in entries
        if entry.type == pafs.FileType.File
        and is_image_name(entry.path)
        and not any(part.startswith(".") or part == "__MACOSX" for part in entry.path[len(base) :].split("/"))
    )
    if not images:
        yield uri, None, "no image files found under this prefix (looked for .jpg, .png, ... recursively)"
    for image in images:
        yield f"{scheme}://{image}", f"{scheme}://{image}", None


def read_object(uri: str, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The bytes of one object-storage URI, refusing more than `max_bytes`."""
    try:
        fs, path = _storage(uri)
        with fs.open_input_stream(path) as stream:
            data = stream.read(max_bytes + 1)
    except FileNotFoundError:
        raise SportsdetError(f"{uri}: no such object") from None
    except Exception as exc:  # pyarrow and the cloud SDKs raise many kinds
        raise SportsdetError(f"{uri}: cannot read this object ({_first_line(exc)})") from None
    if len(data) > max_bytes:
        raise SportsdetError(f"{uri}: larger than {max_bytes // (1024 * 1024)} MB, not read")
    return data


def _list_batch(batch: dict[str, np.ndarray], *, done_box: list, tally: Any) -> dict[str, np.ndarray]:
    """Ray task: inputs -> one row per image not yet in DIR (nor earlier in this block: a folder
    and a photo in it, given both, are labelled once); tells `tally` which ones it skipped."""
    import ray

    keys = ray.get(done_box[0])  # zero-copy from the object store
    names, sources, errors, notes, photos = [], [], [], [], []
    skipped: set[str] = set()
    seen: set[str] = set()
    for spec, base, listing in zip(batch["spec"], batch["base"], batch["listing"], strict=True):
        if listing and not str(spec).strip():  # a .csv/.parquet row without a path: said, not dropped
            names.append(f"<empty path in {Path(str(listing)).name}>")
            sources.append("")
            errors.append(f"{listing}: a row with an empty {LISTING_COLUMN!r}")
            notes.append("")
            photos.append(empty_path_key(str(listing)))
            continue
        for name, source, error, note in expand_spec(str(spec), str(base)):
            key = done_key(name, source, base=str(base))
            if _is_done(keys, key):
                skipped.add(key)
                continue
            if key in seen and not error:
                continue
            seen.add(key)
            names.append(name)
            sources.append(source or "")
            errors.append(error or "")  # "" = fine: Ray turns missing strings into NaN on the way
            notes.append(note or "")
            photos.append(key)
    if skipped:
        # Waited for: an add still in flight when the job ends would be missing from the count.
        ray.get(tally.add.remote(sorted(skipped)))
    return {
        "input": np.array(names, dtype=object),
        "source": np.array(sources, dtype=object),
        "error": np.array(errors, dtype=object),
        "note": np.array(notes, dtype=object),
        "photo": np.array(photos, dtype=object),
    }


class _Tally:
    """The photos the listing tasks skipped (already in DIR), each counted once: a photo reached
    through three inputs was "3 skipped" (and this run's summary said "labelled once")."""

    def __init__(self) -> None:
        self.keys: set[str] = set()

    def add(self, keys: list[str]) -> None:
        self.keys.update(keys)

    def get(self) -> int:
        return len(self.keys)


# ----------------------------------------------------------------------------- decode + classify


def _decode_batch(
    batch: dict[str, np.ndarray], *, preprocessing: dict, url_timeout: float, url_max_bytes: int
) -> dict[str, np.ndarray]:
    """Ray task: decode and resize each image (the first half of `load_and_preprocess`).

    Errors and warnings (tiny, small or strip-shaped pictures) are worded as `sportsdet predict` words
    them."""
    spec = Preprocessing.from_dict(preprocessing)
    size = spec.input_size
    count = len(batch["input"])
    pixels = np.zeros((count, size, size, 3), dtype=np.uint8)
    names = [str(n) for n in batch["input"]]
    sources = [str(s) for s in batch["source"]]
    errors = [str(e) for e in batch["error"]]
    notes = [str(n) for n in batch["note"]]
    warnings_ = [""] * count
    remote = [i for i in range(count) if not errors[i] and (is_url(sources[i]) or is_storage_uri(sources[i]))]
    downloads = _download_all(remote, sources, url_timeout, url_max_bytes)
    for i, (name, source) in enumerate(zip(names, sources, strict=True)):
        if errors[i] or not source:
            errors[i] = errors[i] or "no data"
            continue
        try:
            data = downloads[i] if i in downloads else source
            if isinstance(data, BaseException):
                raise data
            image, warning = load_for_model(data, spec, name=name)
            pixels[i] = np.asarray(resize_image(image, spec))
            warnings_[i] = "; ".join(w for w in (notes[i], warning) if w)  # as predict joins them
        except SportsdetError as exc:
            errors[i] = _short_message(str(exc), name)
        except Exception as exc:  # one bad input must never stop the others
            errors[i] = f"unexpected {type(exc).__name__}: {exc}"
    return {
        "input": batch["input"],
        "photo": batch["photo"],
        "error": np.array(errors, dtype=object),
        "warning": np.array(warnings_, dtype=object),
        "pixels": pixels,
    }


# Downloads of one batch in flight at once: a download is mostly waiting (object storage answers
# in 100-200 ms), so fetching a batch's photos one by one would leave the CPU idle.
URL_CONCURRENCY = 16


def _download_all(
    indices: list[int], sources: list[str], timeout: float, max_bytes: int
) -> dict[int, bytes | BaseException]:
    """Fetch the URLs / objects at `indices` concurrently; each entry is the bytes or the error."""
    if not indices:
        return {}

    def fetch(i: int) -> bytes | BaseException:
        try:
            if is_url(sources[i]):
                return fetch_url(sources[i], timeout=timeout, max_bytes=max_bytes)
            return read_object(sources[i], max_bytes)
        except Exception as exc:  # kept, raised again where that input is decoded
            return exc

    with ThreadPoolExecutor(max_workers=min(URL_CONCURRENCY, len(indices))) as pool:
        return dict(zip(indices, pool.map(fetch, indices), strict=True))


class Classifier:
    """Ray actor: loads the model once (a `Predictor`) and labels decoded batches."""

    def __init__(
        self,
        model: str,
        backend: str,
        int8: bool,
        threads: int,
        top_k: int,
        batch_size: int,
        abstain: bool = True,
        min_score: float | None = None,
    ):
        self.predictor = Predictor(
            model,
            backend=backend,
            int8=int8,
            threads=threads,
            top_k=top_k,
            batch_size=batch_size,
            abstain=abstain,
            min_score=min_score,
        )

    def __call__(self, batch: dict[str, np.ndarray]) -> Any:
        predictor = self.predictor
        names, errors, pixels = batch["input"], batch["error"], batch["pixels"]
        notes = batch["warning"]
        ok = [i for i in range(len(names)) if not errors[i]]
        size = predictor.preprocessing.input_size
        inputs = np.empty((len(ok), 3, size, size), dtype=np.float32)
        for row, i in enumerate(ok):
            normalize(pixels[i], predictor.preprocessing, out=inputs[row])  # the second half
        probs = np.empty((len(ok), len(predictor.labels)), dtype=np.float32)
        step = predictor.batch_size  # the same model runs as `sportsdet predict` makes
        for start in range(0, len(ok), step):
            probs[start : start + step] = predictor.predict_batch(inputs[start : start + step])
        by_row = dict(zip(ok, probs, strict=True))
        results = []
        for i in range(len(names)):
            if i in by_row:
                result = predictor.result_from_probs(str(names[i]), by_row[i])
                result.warning = str(notes[i]) or None
            else:
                result = PredictionResult(input=str(names[i]), error=str(errors[i]))
            results.append(result)
        sources = [str(photo) for photo in batch["photo"]]
        return results_table(results, abstains=predictor.abstain is not None, sources=sources)


# ----------------------------------------------------------------------------- the job


@dataclass
class RunSummary:
    written: int = 0
    failed: int = 0
    uncertain: int = 0  # labelled rows the abstain rule left without a label
    skipped: int = 0
    already_done: int = 0
    retried: int = 0  # inputs that failed in an earlier run, tried again (their old rows replaced)
    repeated: int = 0  # photos reached through two inputs of this run (labelled once)
    parts: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def _connect(ray: Any, address: str | None, cpus: int | None) -> bool:
    """Join the cluster at `address`, or start a local Ray; False when one is already running here."""
    if ray.is_initialized():
        return False
    if address:
        _check_reachable(address)
    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
    # ray.init sets its own SIGTERM handler (sys.exit, with a C++ stack dump): the command's own
    # (end as on Ctrl-C: what was labelled is written, exit 143) is put back.
    main_thread = threading.current_thread() is threading.main_thread()
    on_sigterm = signal.getsignal(signal.SIGTERM) if main_thread else None
    try:
        if address:
            ray.init(address=address, **quiet)
        else:
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, **quiet)
        if on_sigterm is not None:
            signal.signal(signal.SIGTERM, on_sigterm)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        cause = f"{exc} {exc.__cause__ or ''}"
        hint = ""
        if "uthenticat" in cause:  # `ray start --head` turns token authentication on by default
            hint = (
                "; the cluster wants Ray's auth token: `export RAY_AUTH_MODE=token` here and make the "
                "head's token readable (~/.ray/auth_token or RAY_AUTH_TOKEN)"
            )
        raise SportsdetError(
            f"cannot start or reach {where} ({str(exc).splitlines()[0][:200]}){hint}"
        ) from None
    return True


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """A cluster address (host:port, ray://host:port) that takes no connection is one clear error:
    ray.init retries such an address for ever, printing a warning every 30 s."""
    import socket

    target = address.split("://", 1)[-1]
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" and other forms Ray resolves itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise SportsdetError(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); check the address "
            "(`ray status` on the head node prints it) and that the head node is running"
        ) from None


def build_dataset(
    ray: Any,
    specs: InputSpecs,
    *,
    cwd: str,
    done_keys: np.ndarray,
    tally: Any,
    preprocessing: Preprocessing,
    classifier_args: dict[str, Any],
    workers: int,
    threads: int,
    url_timeout: float,
    block_rows: int = DECODE_BATCH,
) -> Any:
    """The lazy Ray Data pipeline: list -> decode -> classify (see the module docstring)."""

    rd = ray.data
    parts = []
    if specs.plain:
        # One block: the command line's inputs are listed by one task, which labels a photo given
        # twice (or a folder and a photo in it) once.
        items = [{"spec": text, "base": cwd, "listing": ""} for text in specs.plain]
        parts.append(rd.from_items(items, override_num_blocks=1))
    for listing in specs.listings:
        suffix = listing.suffix.lower()
        if suffix == ".txt":
            ds, column = rd.read_text(str(listing)), "text"
        elif suffix == ".csv":
            ds, column = rd.read_csv(str(listing), convert_options=_csv_options()), LISTING_COLUMN
        else:
            ds, column = rd.read_parquet(str(listing), columns=[LISTING_COLUMN]), LISTING_COLUMN
        base = str(listing.parent)
        # A .txt listing may hold blank lines and # comments; a table's row without a path is an error.
        table_of = "" if suffix == ".txt" else str(listing)

        def to_specs(
            batch: dict[str, np.ndarray], column: str = column, base: str = base, table_of: str = table_of
        ) -> dict:
            # A listing's surrounding spaces are not part of a name (command-line inputs are taken
            # as typed), nor is a byte-order mark (Notepad's UTF-8 .txt: its first photo was "file
            # not found"); a .txt listing's blank lines and # comments are not inputs.
            values = [("" if v is None else str(v)).lstrip("\ufeff").strip() for v in batch[column]]
            if not table_of:
                values = [v for v in values if v and not v.startswith("#")]
            return {
                "spec": np.array(values, dtype=object),
                "base": np.full(len(values), base, dtype=object),
                "listing": np.full(len(values), table_of, dtype=object),
            }

        parts.append(ds.map_batches(to_specs, batch_format="numpy"))
    ds = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
    ds = ds.map_batches(
        _list_batch,
        batch_size=None,  # a whole block of inputs per call: one skip count sent per block
        batch_format="numpy",
        fn_kwargs={"done_box": [ray.put(done_keys)], "tally": tally},
        num_cpus=0.5,  # mostly waiting on the file system
    )
    # Listing yields big blocks (a folder at a time); split them so every decode task gets a share.
    ds = ds.repartition(target_num_rows_per_block=block_rows)
    ds = ds.map_batches(
        _decode_batch,
        batch_size=block_rows,
        batch_format="numpy",
        fn_kwargs={
            "preprocessing": preprocessing.to_dict(),
            "url_timeout": url_timeout,
            "url_max_bytes": DEFAULT_MAX_BYTES,
        },
        num_cpus=1,
        # Room for one big photo decoded (a 24 MP JPEG is ~70 MB before Pillow's draft shrinks
        # it). Asking for memory the actors do not ask for also keeps Ray from fusing decoding
        # into the actors: it stays in tasks that spread over every CPU, however few actors.
        memory=DECODE_MEMORY,
    )
    # Ray Data restarts a lost actor (a pre-empted node) and retries its batch by default.
    return ds.map_batches(
        _bound_classifier(classifier_args),
        batch_size=block_rows,
        batch_format="numpy",
        compute=rd.ActorPoolStrategy(size=workers),
        num_cpus=threads,
    )


def _bound_classifier(kwargs: dict[str, Any]) -> type:
    """Classifier with its arguments built in: shipped with the class, not as objects that a
    restarted actor would have to find again in the object store."""

    class BoundClassifier(Classifier):
        def __init__(self) -> None:
            super().__init__(**kwargs)

    return BoundClassifier


def run_ray_predict(
    inputs: list[str],
    out_dir: str | Path,
    *,
    model: str | Path,
    top_k: int = 5,
    backend: str = "auto",
    int8: bool = False,
    threads: int = 1,
    workers: int | None = None,
    batch_size: int | None = None,
    address: str | None = None,
    url_timeout: float = 10.0,
    part_rows: int = PART_ROWS,
    block_rows: int = DECODE_BATCH,
    abstain: bool = True,
    min_score: float | None = None,
    on_start: Callable[[int], None] | None = None,
    on_progress: Callable[[RunSummary], None] | None = None,
) -> RunSummary:
    """Label `inputs` on Ray into Parquet parts in `out_dir`; see the module docstring.

    `workers`: classifier actors (default: the CPUs of this machine, or half the cluster's CPUs);
    `threads`: model threads in each. `on_start(already_done)` is called once the output folder
    is read; `on_progress(summary)` after every batch that arrives. `part_rows`: rows per Parquet
    part (at most what a crash of this process can lose). `block_rows`: photos per Ray task and
    per actor call; raise it on big clusters, where the driver's per-task cost adds up
    (docs/SCALING.md). `abstain` / `min_score`: as for `Predictor` (the model's own rule, a
    threshold of your own, or none).
    """
    ray = import_ray()
    if threads < 1:
        raise SportsdetError(f"threads must be at least 1, got {threads}")
    if block_rows < 1 or part_rows < 1:
        raise SportsdetError(f"block_rows and part_rows must be at least 1, got {block_rows}, {part_rows}")
    if workers is not None and workers < 1:
        raise SportsdetError(f"workers must be at least 1, got {workers}")
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise SportsdetError(f"{out}: the output must be a folder, and this is a file")
    # The model and the listings first: a wrong --model or listing is one clear line, not a
    # failure in an actor, and leaves no output folder behind.
    local = Predictor(
        model,
        backend=backend,
        int8=int8,
        threads=1,
        top_k=top_k,
        batch_size=batch_size,
        abstain=abstain,
        min_score=min_score,
    )
    specs = split_inputs(inputs)
    made_here = not out.exists()
    try:
        # Two runs into one folder wrote every row twice (and each removed the other's temp parts).
        with hold_folder(
            out,
            cannot="cannot use this output folder",
            fix="choose another --output",
            busy="is writing into this folder; wait for it to finish or choose another --output",
        ):
            return _run_locked(
                ray, specs, local, out, model=model, top_k=top_k, backend=backend, int8=int8, threads=threads,
                workers=workers, address=address, url_timeout=url_timeout,
                part_rows=part_rows, block_rows=block_rows, abstain=abstain, min_score=min_score,
                on_start=on_start, on_progress=on_progress,
            )  # fmt: skip
    except BaseException:
        # A job that wrote nothing (a cluster it could not reach, a Ctrl-C at the start) leaves no
        # folder behind that it made: only its lock and settings record were in it.
        if made_here and out.is_dir() and {p.name for p in out.iterdir()} <= {FOLDER_LOCK, SETTINGS_FILE}:
            for leftover in out.iterdir():
                leftover.unlink(missing_ok=True)
            out.rmdir()
        raise


def _run_locked(
    ray: Any,
    specs: InputSpecs,
    local: Predictor,
    out: Path,
    *,
    model: str | Path,
    top_k: int,
    backend: str,
    int8: bool,
    threads: int,
    workers: int | None,
    address: str | None,
    url_timeout: float,
    part_rows: int,
    block_rows: int,
    abstain: bool,
    min_score: float | None,
    on_start: Callable[[int], None] | None,
    on_progress: Callable[[RunSummary], None] | None,
) -> RunSummary:
    for stale in out.glob(f".{PART_PREFIX}*.tmp*"):
        stale.unlink()  # a part a crash left half-written; its rows were never counted as done

    folder = read_folder(out)
    settings = {
        "model": local.model_id(),
        "top_k": top_k,
        "abstain": local.abstain.to_dict() if local.abstain is not None else None,
        # The same weights under renamed labels (sportsdet.bundle_labels) give rows of other names.
        "labels": hashlib.sha256(json.dumps(local.labels).encode()).hexdigest()[:12],
    }
    check_settings(out, settings, has_rows=bool(part_files(out)))
    done_keys = input_keys(folder.done)
    # An earlier run stopped between writing a retried photo's new row and dropping its old one.
    drop_error_rows(folder.parts_with_errors, lambda key: _is_done(done_keys, key))
    # The other failures: listed again, they are tried again (done_keys lacks them).
    failed_before = {
        key for keys in folder.failed if not any(_is_done(done_keys, k) for k in keys) for key in keys
    }
    parts_before = folder.parts_with_errors  # the old error rows are there, and only there
    retried: set[str] = set()
    summary = RunSummary(already_done=folder.done_rows)
    if on_start:
        on_start(summary.already_done)

    from sportsdet.files import cpu_count

    local_cpus = None
    if not address:
        workers = workers or cpu_count()
        # Actors mostly wait for decoded images, so a local Ray counts their CPUs on top of the
        # machine's: the decode tasks get every core, the OS shares them out.
        local_cpus = cpu_count() + workers * threads
    started_here = _connect(ray, address, local_cpus)
    try:
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("CPU", 2)) // 2)
        _check_room(ray, workers, threads)
        with warnings.catch_warnings():  # Ray Data's notes on its own deprecated settings
            warnings.simplefilter("ignore", DeprecationWarning)
            ray.data.DataContext.get_current().enable_progress_bars = False  # the CLI shows its own
        # Not its plan and timings on every run, nor the traceback of a failed task: that one is
        # said in one line below.
        logging.getLogger("ray.data").setLevel(logging.CRITICAL)
        tally = ray.remote(num_cpus=0)(_Tally).remote()
        cwd = os.getcwd()
        ds = build_dataset(
            ray,
            specs,
            cwd=cwd,
            done_keys=done_keys,
            tally=tally,
            preprocessing=local.preprocessing,
            classifier_args={
                "model": str(Path(model).expanduser().resolve()),  # workers run in other folders
                "backend": backend,
                "int8": int8,
                "threads": threads,
                "top_k": top_k,
                "batch_size": local.batch_size,
                "abstain": abstain,
                "min_score": min_score,
            },
            workers=workers,
            threads=threads,
            url_timeout=url_timeout,
            block_rows=block_rows,
        )
        import pyarrow as pa

        writer = PartWriter(out, part_rows=part_rows)
        written: set[str] = set()  # this run's rows, by photo
        start = time.monotonic()
        try:
            # No prefetch thread: Ray's would outlive the job and call into a Ray already shut down;
            # the pipeline runs ahead of the driver anyway.
            batches = ds.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=0)
            for table in _quietly(batches):
                # A photo in two listings (or a listing and the command line) is listed by two
                # tasks: its first row is kept, as plain predict keeps it.
                fresh = []
                for key in table.column("source").to_pylist():
                    fresh.append(key not in written)
                    written.add(key)
                if not all(fresh):
                    summary.repeated += fresh.count(False)
                    table = table.filter(pa.array(fresh))
                writer.add(table)
                if failed_before:
                    retried.update(key for key in table.column("source").to_pylist() if key in failed_before)
                summary.written += table.num_rows
                summary.failed += table.num_rows - table.column("error").null_count
                summary.uncertain += table.column("uncertain").to_pylist().count(True)
                if on_progress:
                    on_progress(summary)
        except ray.exceptions.RayError as exc:
            # E.g. an actor that cannot load the model on some node: one line, and the way on.
            raise SportsdetError(
                f"the Ray job stopped: {_cause_line(exc)[:300]}; what was labelled is in {out}, run again "
                "to go on from there"
            ) from None
        finally:
            writer.flush()  # also on Ctrl-C or a failure: what was labelled is kept
            if retried:  # their new rows are written: the old error rows go
                drop_error_rows(parts_before, retried.__contains__)
            summary.retried = len(retried)
            summary.parts = writer.parts
            summary.seconds = time.monotonic() - start
        # A whole run has listed these inputs again: an old error of one that named no photo (a missing
        # file, an empty folder, a listing's empty cell) is replaced by what this run found for it.
        relisted = {input_key(text, cwd) for text in specs.plain}
        relisted |= {empty_path_key(str(listing)) for listing in specs.listings}
        stale = (relisted & failed_before) - retried
        if stale:
            drop_error_rows(parts_before, stale.__contains__)
            summary.retried += len(stale)
        summary.skipped = ray.get(tally.get.remote())
    finally:
        if started_here:
            ray.shutdown()
    return summary


def _cause_line(exc: BaseException) -> str:
    """The line that says why a Ray job failed: its message's last line, not Ray's advice on
    retries that it appends to some."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith(("To change retry", "ray.data.DataContext"))]
    return lines[-1] if lines else type(exc).__name__


def _quietly(batches: Iterable[Any]) -> Iterator[Any]:
    """Ray Data's tuning hints (e.g. "the operator only received 1 input") are not for end users."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"ray(\.|$)")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"ray(\.|$)")
        yield from batches


def _check_room(ray: Any, workers: int, threads: int) -> None:
    """Refuse a pool that leaves no CPU for decoding (Ray would wait for ever)."""
    cpus = ray.cluster_resources().get("CPU", 0)
    if workers * threads >= cpus:
        raise SportsdetError(
            f"{workers} worker(s) x {threads} thread(s) need {workers * threads} CPUs but the Ray "
            f"cluster has {cpus:g}, leaving none to decode images; use fewer --workers (or add nodes)"
        )
