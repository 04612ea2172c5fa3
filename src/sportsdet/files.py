"""Files on disk, done one way for the whole package: atomic writes, JSON, hashing, image walking.

- `atomic_write(path, writer)`: the writer fills a temporary file in the same folder, which is
  flushed to disk, given the usual permissions (umask) and renamed over `path`. A crash or Ctrl-C
  leaves the old file or the complete new one, never half a file.
- `write_json(path, data)`: the same, for JSON.
- `StagedFiles(folder)`: several files written the same way, published together at the end.
- `sha256_file(path)`: the SHA-256 of a file's bytes (bundles, split manifests, the feature cache).
- `iter_image_files(folder)`: image files below a folder, sorted, hidden names skipped, every
  folder visited once (symlink loops and folders linked twice end there), only regular files.

Torch-free and import-light: everything else builds on this module; it builds only on
`sportsdet.imageio` (what an image file is).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sportsdet.errors import SportsdetError, WriteError
from sportsdet.imageio import is_image_name, sniff_image_format

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

# Entries that tools leave behind and that never hold photos (compared lower-cased).
JUNK_NAMES = frozenset({"__macosx", "__pycache__", "@eadir", "thumbs.db", "desktop.ini", "$recycle.bin"})
# Entries of one folder read (and sorted) at a time: bounds memory for folders of millions of files.
WALK_CHUNK = 10_000


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def nearest_existing(folder: str | Path) -> Path:
    """`folder` (made absolute) when it exists, else its nearest parent that does."""
    folder = Path(folder).absolute()
    return next(p for p in (folder, *folder.parents) if p.exists())


def human_size(n: float) -> str:
    """A byte count as people read it: 512 B, 3.4 KB, 1.2 MB, 2.0 GB (1024-based)."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def file_in_folder(out: str | Path, name: str) -> Path:
    """An output path as given (`~` expanded); a folder (an existing one, or one written with a
    trailing /, to be made) means the file `name` inside it."""
    path = Path(out).expanduser()
    return path / name if path.is_dir() or str(out).endswith(("/", os.sep)) else path


def check_writable_folder(
    folder: str | Path, option: str, shown: str | Path, fix: str | None = None
) -> None:
    """Refuse, before any long work, a folder to write in (or to make) that cannot be: one under a
    file, or under a folder this process may not write in. (The write would say so too, but only
    after the minutes of work whose record it was to keep.) `fix`: what the error tells the user
    (default: "choose another OPTION")."""
    fix = fix or f"choose another {option}"  # a bare "choose another" ended the sentence short
    existing = nearest_existing(folder)
    if not existing.is_dir():
        raise SportsdetError(f"{option} {shown}: {existing} is a file, not a folder; {fix}")
    if not os.access(existing, os.W_OK | os.X_OK):  # a read-only mount: chmod cannot help
        why = "read-only file system" if _read_only(existing) else "no permission"
        raise SportsdetError(f"{option} {shown}: cannot write in {existing} ({why}); {fix}")


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def check_writable_file(path: str | Path, option: str, example: str = "report.json", also: str = "") -> None:
    """`check_writable_folder` for an output file's folder; a folder given as the file is refused,
    and so is a device, pipe or socket (`also`: what else the option takes, e.g. "- for standard
    output")."""
    path = Path(path)
    if path.is_dir():
        raise SportsdetError(f"{option} {path}: is a folder; give a file name such as {path / example}")
    try:
        target = write_target(path)
    except SportsdetError as exc:
        raise SportsdetError(f"{option} {exc}{f', or {also}' if also else ''}") from None
    check_writable_folder(target.parent, option, path)


def write_target(path: str | Path) -> Path:
    """The file a write to `path` replaces: a symbolic link's target (the link stays a link, as
    with a shell's `>`), else `path`. Files are written whole under a temporary name and renamed
    over the target, so what is not a plain file is refused: a device, pipe or socket (as root, the
    rename put a plain file over /dev/null), and anything reached through /dev or /proc
    (/dev/stdout leads to the file the shell opened, `>> log.txt`, which the rename replaced)."""
    path = Path(path)
    target = path
    for _ in range(_MAX_LINKS):
        if _is_a_stream(target) or _is_a_stream(Path(os.path.realpath(target.parent))):  # a folder link too
            raise SportsdetError(f"{path}: {_NOT_A_FILE}")
        if not os.path.islink(target):  # never raises
            break
        target = target.parent / os.readlink(target)  # a relative link is relative to its folder
    else:
        raise SportsdetError(f"{path}: too many levels of symbolic links (a loop?); give a file name")
    try:
        mode = os.stat(target).st_mode
    except OSError:  # not there yet (a link to a file still to be made), or unreadable: the write says
        return target
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise SportsdetError(f"{path}: {_NOT_A_FILE}")
    return target


_MAX_LINKS = 40  # as Linux's own limit on links followed in one path
_NOT_A_FILE = "is a device, pipe, socket or stream, not a file; give a file name"


def _is_a_stream(path: Path) -> bool:
    """Under /dev (its shared-memory folder aside) or /proc: what a process reads and writes as
    streams, not files to replace."""
    parts = Path(os.path.abspath(path)).parts
    return len(parts) > 1 and (parts[1] == "proc" or (parts[1] == "dev" and parts[2:3] != ("shm",)))


def atomic_write(path: str | Path, writer: Callable[[Path], None] | bytes | str) -> Path:
    """Publish `path` in one rename; `writer(temp_path)` writes the content (or give bytes/str).
    A symbolic link is written through: its target gets the content (`write_target`).

    OS errors (disk full, read-only folder, no permission) become a SportsdetError naming `path`.
    """
    path = Path(path)
    target = write_target(path)
    _publish(_write_beside(target, writer), target)
    return path


def _write_beside(path: Path, writer: Callable[[Path], None] | bytes | str) -> Path:
    """The new content of `path` in a hidden temporary file beside it (flushed to disk, with the
    umask's permissions), returned for `_publish`; nothing is left behind on an error."""
    remove_abandoned_temps(path)  # a kill -9 mid-write left one; no write of ours removed it
    temp = temp_beside(path)
    with _dropped_on_failure(temp, path):
        if isinstance(writer, bytes):
            temp.write_bytes(writer)
        elif isinstance(writer, str):
            temp.write_text(writer, encoding="utf-8", errors=UNDECODABLE)
        else:
            writer(temp)
            # A writer may make the file anew, private: safetensors' save_file left checkpoints 0600.
            os.chmod(temp, 0o666 & ~_umask())
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
    return temp


@contextmanager
def _dropped_on_failure(temp: Path, path: Path) -> Iterator[None]:
    """`temp` (of `path`) removed when the block fails, an OSError said as a WriteError naming `path`."""
    try:
        yield
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise WriteError(
            f"{path}: cannot write ({exc.strerror or exc}); free some space or choose another path"
        ) from None
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def temp_beside(path: str | Path, *, named_by: str = "path") -> Path:
    """A new empty hidden file beside `path` to write its next content into, named
    .NAME.XXXXXXXX.tmpSUFFIX (`published_path` reads the name back), with the umask's permissions
    (mkstemp makes 0600; results are meant to be shared). WriteError names `path`, and its advice
    what the user gave it as (`named_by`: "--out" says "choose another --out")."""
    path = Path(path)
    if os.path.isdir(path):  # Path.is_dir raised for a name too long
        raise SportsdetError(f"{path}: is a folder; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        name, kept_suffix = _fitting(path.name)
        prefix, suffix = f".{name}.", f".tmp{kept_suffix}"
        fd, tmp_name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=parent)
        os.close(fd)
        os.chmod(tmp_name, 0o666 & ~_umask())
    except OSError as exc:
        # mkdir's "File exists" for a parent that is a file said nothing of which one.
        blocking, advice = nearest_existing(parent), f"choose another {named_by}"
        if not blocking.is_dir():
            raise SportsdetError(f"{path}: {blocking} is a file, not a folder; {advice}") from None
        raise WriteError(f"{path}: cannot write here ({exc.strerror or exc}); {advice}") from None
    return Path(tmp_name)


_NAME_MAX = 255  # bytes in one file name (Linux, macOS, Windows)
_TEMP_EXTRA = len(".") + len(".") + 8 + len(".tmp")  # what temp_beside adds around NAME and SUFFIX


def _fitting(name: str) -> tuple[str, str]:
    """The NAME and SUFFIX of `name`'s temporary file, cut short enough for it to be a legal file
    name: a 250-byte report name, which the file system takes, was refused ("File name too long")
    for the temporary one. The suffix is kept (np.save and onnx read it) unless it alone is too long."""
    suffix = Path(name).suffix
    if len(os.fsencode(suffix)) > _NAME_MAX // 2:
        suffix = ""
    room = _NAME_MAX - _TEMP_EXTRA - len(os.fsencode(suffix))
    encoded = os.fsencode(name)
    return (name if len(encoded) <= room else os.fsdecode(encoded[:room])), suffix


_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp(\.[^.]*)?$")
ABANDONED_TEMP_S = 3600.0  # a temporary file untouched this long is no running write's


def published_path(path: str | Path) -> Path:
    """The file a `temp_beside` file will become (an error about a disk that filled up while it
    was written names that, not .model.onnx.k2j4_x9q.tmp.onnx); any other path as it is."""
    path = Path(path)
    match = _TEMP_NAME.match(path.name)
    return path.with_name(match["name"]) if match else path


def remove_abandoned_temps(path: str | Path) -> None:
    """The temporary files of `path` a killed process left (kill -9 in the middle of an export: a
    model-sized hidden file per kill), and theirs (export stamps its temporary file's metadata
    through a temporary file of that: ..model.onnx.X.tmp.onnx.Y.tmp.onnx); one touched within the
    hour may be another write's."""
    path = Path(path)
    found = path.parent.glob(f".*{glob.escape(path.name)}.*.tmp*")
    # Regular files only: ours are never folders or links (a user's .report.html.snapshot.tmp/
    # folder, named alike, went with everything in it).
    remove_untouched(temp for temp in found if _temp_of(temp, path.name) and _plain_file(temp))


def _plain_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _temp_of(temp: Path, name: str) -> bool:
    """Whether `temp` is a temporary file of the file `name` (or of one of its temporary files)."""
    while _TEMP_NAME.match(temp.name):
        temp = published_path(temp)
        if temp.name == name:
            return True
    return False


def remove_untouched(paths: Iterable[Path], seconds: float = ABANDONED_TEMP_S) -> None:
    """Remove each file or folder not modified for `seconds`: what a killed process left, which
    one still at work (its writes touch it) keeps."""
    now = time.time()
    for path in paths:
        try:
            if now - path.stat().st_mtime <= seconds:
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink()
        except OSError:
            continue  # gone meanwhile, or not ours to remove


def _publish(temp: Path, path: Path) -> None:
    with _dropped_on_failure(temp, path):
        os.replace(temp, path)


class StagedFiles:
    """New versions of several files of one folder, written beside the old ones under hidden
    temporary names (`write`) and published together (`publish`). Ctrl-C or an error while they
    are written leaves the folder as it was, an earlier evaluation whole, not half old and half
    new; a folder made for them is removed again. Use it as a context manager: what was not
    published is discarded on the way out."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        # The folders writing will make (new/a/b: all three), removed again if nothing is published.
        self._made = [f for f in (self.folder, *self.folder.parents) if not f.exists()]
        self._staged: dict[str, Path] = {}

    def __enter__(self) -> StagedFiles:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.discard()

    def write(self, name: str, writer: Callable[[Path], None] | bytes | str) -> Path:
        """Write the new `name` (not yet visible under it); returns the path it will have."""
        self._staged[name] = _write_beside(self.folder / name, writer)
        return self.folder / name

    def publish(self, *, remove: tuple[str, ...] = (), last: str | None = None) -> None:
        """Remove the files named in `remove`, then rename every written file into place, `last`
        at the very end (its presence can then mean the set is complete). Ctrl-C and SIGTERM wait
        until it is done: these renames take milliseconds."""
        with signals_deferred():
            for name in remove:
                (self.folder / name).unlink(missing_ok=True)
            for name in sorted(self._staged, key=lambda name: name == last):
                _publish(self._staged.pop(name), self.folder / name)

    def discard(self) -> None:
        for temp in self._staged.values():
            temp.unlink(missing_ok=True)
        self._staged.clear()
        for folder in self._made:  # innermost first
            try:
                folder.rmdir()
            except OSError:  # not empty: something was published or put there
                break


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Let a file write finish before Ctrl-C or SIGTERM takes effect (main thread only); then
    the signal is raised again, for whatever handled it before."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {
        signum: signal.signal(signum, lambda signum, frame: received.append(signum))
        for signum in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(received):
            signal.raise_signal(signum)


# A file name that is not UTF-8 (an old archive's) reaches Python as text with lone surrogates,
# which UTF-8 cannot encode; written as \udce9 escapes, the rest of the file stays readable.
UNDECODABLE = "backslashreplace"


def printable_name(name: str) -> str:
    """A file name as text any UTF-8 output takes: bytes that are not UTF-8 shown as \\xff escapes
    (printing the raw name raised UnicodeEncodeError under a strict UTF-8 locale)."""
    try:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", UNDECODABLE)
    except UnicodeEncodeError:  # a lone surrogate no file name holds (from JSON, say): escaped too
        return name.encode("utf-8", UNDECODABLE).decode("utf-8")


_ESCAPED_BYTE = re.compile(r"\\(?:udc|x)([89a-fA-F][0-9a-fA-F])")


def name_as_written(text: str) -> str:
    """The file name that `printable_name` or an UNDECODABLE write (\\xff, \\udcff) turned into
    text: the escapes back into the bytes the name holds. For finding a file again when its
    printed name is not there."""
    return _ESCAPED_BYTE.sub(lambda match: chr(0xDC00 + int(match.group(1), 16)), text)


_HELD: dict[Path, int] = {}  # folders this process holds the lock of -> nesting depth
FOLDER_LOCK = ".sportsdet.lock"  # the lock file `hold_folder` makes (run folders, Ray output folders)


@contextmanager
def hold_folder(
    folder: Path, *, cannot: str, busy: str, fix: str, lock_name: str = FOLDER_LOCK
) -> Iterator[None]:
    """Hold `folder` for this process: an flock on FOLDER/`lock_name`, which the OS drops when
    the process ends, however it ends (no stale locks). Re-entrant within one process.

    Another process holding it: "FOLDER: another sportsdet process (pid N) `busy`"; a folder
    that cannot be made or opened: "FOLDER: `cannot` (why); `fix`".
    """
    import fcntl

    key = folder.resolve()
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle = open(folder / lock_name, "a+", encoding="utf-8")
    except OSError as exc:
        raise SportsdetError(f"{folder}: {cannot} ({exc.strerror or exc}); {fix}") from None
    for attempt in range(5):  # `folder_holder` probes hold it for a moment: not a writer
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if attempt < 4:
                time.sleep(0.02)
                continue
            handle.seek(0)
            holder = handle.read().strip() or "?"
            handle.close()
            raise SportsdetError(f"{folder}: another sportsdet process (pid {holder}) {busy}") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    _HELD[key] = 1
    try:
        yield
    finally:
        del _HELD[key]
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def folder_holder(folder: Path, lock_name: str = FOLDER_LOCK) -> str | None:
    """The pid (as written) of another process holding `folder` (`hold_folder`), else None; holds
    nothing itself."""
    import fcntl

    try:
        handle = open(folder / lock_name, encoding="utf-8")
    except OSError:
        return None  # no lock file: nobody has held it
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "?"
        except OSError:
            return None
        fcntl.flock(handle, fcntl.LOCK_UN)
        return None


def write_json(path: str | Path, data: Any, *, indent: int = 1) -> Path:
    """Write `data` as UTF-8 JSON through `atomic_write`."""
    return atomic_write(path, json_writer(data, indent=indent))


def json_writer(data: Any, *, indent: int = 1) -> Callable[[Path], None]:
    """A writer (for `atomic_write`, `StagedFiles.write`) of `data` as UTF-8 JSON."""

    def write(temp: Path) -> None:
        with open(temp, "w", encoding="utf-8", errors=UNDECODABLE) as handle:
            json.dump(data, handle, indent=indent, ensure_ascii=False)
            handle.write("\n")

    return write


def cpu_count() -> int:
    """CPUs this process may use (respects affinity / container limits where the OS tells)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def worker_processes(workers: int, initializer: Callable[[], object] | None = None) -> ProcessPoolExecutor:
    """A pool of worker processes for CPU work on photos (decoding, hashing).

    Forked on Linux, as torch's DataLoader does: the workers start at once and, unlike spawn or
    forkserver (Python 3.14's default on Linux), do not re-import the caller's script, which would
    re-run a user's script that calls train() without a main guard. Elsewhere: the platform's way.
    """
    import multiprocessing
    import sys
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("fork") if sys.platform.startswith("linux") else None
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_worker_start, initargs=(initializer,)
    )


def _worker_start(initializer: Callable[[], object] | None) -> None:
    # Ctrl-C reaches the whole process group: a worker it interrupts while holding the pool's
    # result-queue lock leaves the pool's manager thread waiting for ever (and the command with
    # it). The caller ends its workers instead (`stop_workers`).
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if initializer is not None:
        initializer()


def stop_workers(pool: ProcessPoolExecutor) -> None:
    """On Ctrl-C or an error: drop the queued work and end the workers now. shutdown(wait=False)
    alone left Python's exit hook joining the pool's manager thread, which waited for workers still
    busy with their chunk (a minute of decoding) or stuck on a lock an interrupt left taken."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(5)


def photo_digest(path: str | Path) -> str:
    """The short content hash of one file (the bytes as stored: a re-saved photo is another photo):
    what seen_photos.json and a split file know a photo by."""
    return sha256_file(path)[:16]


def photo_digests(paths: Sequence[str | Path]) -> list[str | None]:
    """`photo_digest` of every path (None: not readable, e.g. gone), on a few threads (hashlib
    releases Python's lock)."""
    from concurrent.futures import ThreadPoolExecutor

    def digest_or_none(path: str | Path) -> str | None:
        try:
            return photo_digest(path)
        except (SportsdetError, OSError):
            return None

    with ThreadPoolExecutor(max_workers=min(8, cpu_count())) as pool:
        return list(pool.map(digest_or_none, paths))


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes; an unreadable file is a SportsdetError naming it.

    Opened through `imageio.open_local_file` (no size cap): a FIFO or device named like a photo
    or a weights file is refused at once instead of blocking or reading forever.
    """
    from sportsdet.errors import ImageLoadError
    from sportsdet.imageio import open_local_file

    digest = hashlib.sha256()
    try:
        with open_local_file(path, max_bytes=None) as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    except ImageLoadError as exc:
        raise SportsdetError(f"{path}: cannot read file ({exc.detail}); check the path") from None
    except OSError as exc:
        raise SportsdetError(f"{path}: cannot read file ({exc.strerror or exc}); check the path") from None
    return digest.hexdigest()


# Files sportsdet itself keeps inside data folders: not the user's, so not counted as skipped.
FETCH_MARKER = ".sportsdet-fetch.json"  # data fetch: which URL made this folder
OWN_FILES = frozenset({FETCH_MARKER})


def is_hidden_name(name: str) -> bool:
    """Dot-files, macOS resource forks and OS/tool litter: never data."""
    return name.startswith(".") or name.lower() in JUNK_NAMES


# Why the walker passed over an entry (given to `on_skip`).
SKIP_HIDDEN = "hidden"
SKIP_NOT_IMAGE = "not-an-image-name"
SKIP_NOT_REGULAR = "not-a-regular-file"
SKIP_UNREADABLE = "unreadable-folder"
SKIP_SEEN = "folder-already-visited"
SKIP_BROKEN_LINK = "broken-link"  # a link to nothing (or a loop of links) not named like an image


def _sorted_entries(folder: str) -> Iterator[os.DirEntry[str]]:
    """A folder's entries sorted by name, in runs of WALK_CHUNK (fully sorted below that size)."""
    with os.scandir(folder) as scan:
        chunk: list[os.DirEntry[str]] = []
        for entry in scan:
            chunk.append(entry)
            if len(chunk) >= WALK_CHUNK:
                yield from sorted(chunk, key=lambda e: e.name)
                chunk = []
        yield from sorted(chunk, key=lambda e: e.name)


def folder_key(path: str | Path) -> tuple[int, int] | None:
    """(device, inode) of the folder `path` leads to (links followed), None when it cannot be read."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino) if stat.S_ISDIR(info.st_mode) else None


def iter_image_files(
    folder: str | Path,
    *,
    visited: set[tuple[int, int]] | None = None,
    on_skip: Callable[[str, str], None] | None = None,
    on_misnamed: Callable[[str, str], None] | None = None,
    refuse_link: Callable[[str], bool] | None = None,
) -> Iterator[Path]:
    """Image files below `folder`, recursively, sorted by name within each folder.

    Symlinked folders are followed, but every folder is entered once (`visited` holds the
    (device, inode) of folders already walked; pass a shared set to walk several roots without
    repeats), so a link loop (`self -> .`) ends instead of repeating or raising ELOOP. Only
    regular files are yielded: FIFOs, sockets and devices named .jpg are skipped (reading one
    would hang or never end). `on_skip(reason, path)` hears of everything passed over.

    Images are known by content, not only by name: a regular file whose name does not end like
    an image but whose first bytes are a JPEG, PNG, ... (a web scrape's `photo.php`) is yielded
    too, after `on_misnamed(path, format)` hears of it. This is the one place that decides that
    such photos are used (by scan, check, training and predict alike), and never silently.
    `refuse_link(path)`: whether a link to a folder is passed over (as a folder already visited).
    """
    visited = set() if visited is None else visited
    skip = on_skip or (lambda reason, path: None)

    def enter(path: str) -> Iterator[os.DirEntry[str]] | None:
        key = folder_key(path)
        if key is None:
            skip(SKIP_UNREADABLE, path)
            return None
        if key in visited:
            skip(SKIP_SEEN, path)
            return None
        visited.add(key)
        try:
            return _sorted_entries(path)
        except OSError:
            skip(SKIP_UNREADABLE, path)
            return None

    # A stack of open listings instead of recursion: deep trees cannot hit the recursion limit.
    # Entries come in name order, a sub-folder's images at its place in that order.
    first = enter(str(folder))
    stack: list[tuple[str, Iterator[os.DirEntry[str]]]] = [(str(folder), first)] if first else []
    while stack:
        current, entries = stack[-1]
        try:
            entry = next(entries, None)
        except OSError:
            skip(SKIP_UNREADABLE, current)
            entry = None
        if entry is None:
            stack.pop()
            continue
        if is_hidden_name(entry.name):
            skip(SKIP_HIDDEN, entry.path)
            continue
        try:
            info = entry.stat(follow_symlinks=True)
        except OSError:  # a dangling link, a link loop, or an entry that vanished
            # One named like a photo is a problem file of its own; another may be a folder of them
            # on a drive that is not mounted, which went unsaid.
            broken = entry.is_symlink() and not is_image_name(entry.name)
            skip(SKIP_BROKEN_LINK if broken else SKIP_NOT_REGULAR, entry.path)
            continue
        if stat.S_ISDIR(info.st_mode):
            if refuse_link is not None and entry.is_symlink() and refuse_link(entry.path):
                skip(SKIP_SEEN, entry.path)
                continue
            listing = enter(entry.path)
            if listing is not None:
                stack.append((entry.path, listing))
        elif not stat.S_ISREG(info.st_mode):
            skip(SKIP_NOT_REGULAR if is_image_name(entry.name) else SKIP_NOT_IMAGE, entry.path)
        elif is_image_name(entry.name):
            yield Path(entry.path)
        elif (image_format := sniff_image_format(entry.path)) is not None:
            if on_misnamed is not None:
                on_misnamed(entry.path, image_format)
            yield Path(entry.path)
        else:
            skip(SKIP_NOT_IMAGE, entry.path)
