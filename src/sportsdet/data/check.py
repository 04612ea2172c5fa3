"""Decode every image of a tree and report what is wrong with it.

Each file is read once: its bytes are hashed (SHA-256, for exact duplicates) and decoded with
`sportsdet.imageio.load_image`, the same loader training and prediction use, so a file that
passes here loads everywhere; its picture is hashed too (`sportsdet.near_copies`), which finds
near copies: one photo saved twice with other bytes (resized, re-compressed). Work is spread
over processes in chunks. Problems are reported per file; `quarantine` moves bad files out of
the tree (it never deletes and never overwrites).
Photos with a misleading name (a JPEG saved as `photo.php`) are good files, listed apart;
`rename_misnamed` gives them image names in place. Torch-free.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shlex
import shutil
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from sportsdet import imageio
from sportsdet.data.discover import ScanResult, scan_dataset
from sportsdet.errors import ImageLoadError, SportsdetError
from sportsdet.files import (
    check_writable_folder,
    cpu_count,
    is_hidden_name,
    sha256_file,
    stop_workers,
    worker_processes,
    write_json,
)
from sportsdet.near_copies import DECODE_SIZE, hash_picture, near_copy_groups

CHECK_FORMAT = "sportsdet-check/1"
TINY = "tiny"
STRIP = "strip"
# Problem kinds, most serious first (ImageLoadError kinds plus imageio.shape_problem's "tiny", "strip").
PROBLEM_KINDS = (
    "empty",
    "not-an-image",
    "unsupported-format",
    "truncated",
    "corrupt",
    "too-large",
    "degenerate",
    "unreadable",
    "missing",
    TINY,
    STRIP,
)
# Decoding big photos at this shorter side is enough to prove the whole file decodes
# (JPEG draft mode still reads every byte) and much faster than full size; it is also the size the
# near-copy hash is made at, so one decode serves both.
_CHECK_DECODE_SIZE = DECODE_SIZE
_CHUNK = 64


@dataclass
class FileResult:
    """What checking one file found. `kind` is None for a good file."""

    rel: str
    split: str | None
    label: str
    size: int = 0
    sha256: str | None = None
    kind: str | None = None
    detail: str = ""
    width: int | None = None
    height: int | None = None
    mode: str | None = None
    format: str | None = None
    near_hash: str | None = None  # near_copies.near_copy_hash of a good file


@dataclass
class DuplicateGroup:
    """Files with identical bytes (or with `near`, one photo saved with other bytes), the copy
    quarantine leaves in place (`keep`) first."""

    sha256: str  # the kept copy's
    files: list[str]
    splits: list[str]
    labels: list[str]
    # Across sources (`duplicates_across_sources`): each file's source; files are named SOURCE/PATH.
    sources: list[str] = field(default_factory=list)
    near: bool = False

    @property
    def cross_split(self) -> bool:
        """The same picture in two splits: test images the model has trained on."""
        return len(set(self.splits)) > 1

    @property
    def conflicting_labels(self) -> bool:
        return len(set(self.labels)) > 1

    @property
    def keep(self) -> str:
        return self.files[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "files": self.files,
            "splits": self.splits,
            "labels": self.labels,
            "cross_split": self.cross_split,
            "conflicting_labels": self.conflicting_labels,
        } | ({"sources": self.sources} if self.sources else {}) | ({"near": True} if self.near else {})


@dataclass
class CheckReport:
    root: Path
    layout: str
    results: list[FileResult]
    duplicates: list[DuplicateGroup]
    ignored: dict[str, int]
    seconds: float
    quarantine: dict[str, Any] = field(default_factory=dict)
    # Good photos whose names hide it: rel path -> format ("JPEG", ...), from the scan.
    misnamed: dict[str, str] = field(default_factory=dict)
    renamed: dict[str, Any] = field(default_factory=dict)
    near_copies: list[DuplicateGroup] = field(default_factory=list)  # `find_near_copies`

    @property
    def problems(self) -> list[FileResult]:
        return [r for r in self.results if r.kind is not None]

    @property
    def problem_counts(self) -> dict[str, int]:
        counts = Counter(r.kind for r in self.problems)
        return {k: counts[k] for k in PROBLEM_KINDS if counts[k]} | {
            k: n for k, n in counts.items() if k not in PROBLEM_KINDS
        }

    @property
    def cross_split_duplicates(self) -> list[DuplicateGroup]:
        return [g for g in self.duplicates if g.cross_split]

    @property
    def cross_split_near_copies(self) -> list[DuplicateGroup]:
        return [g for g in self.near_copies if g.cross_split]

    @property
    def found_problems(self) -> bool:
        """Anything `--strict` should fail on: bad files or duplicates of any kind, near copies too."""
        return bool(self.problems or self.duplicates or self.near_copies)

    def info(self) -> dict[str, Any]:
        """Facts about the good files that are not problems (image modes, formats, sizes)."""
        good = [r for r in self.results if r.kind is None]
        modes = Counter(r.mode for r in good)
        formats = Counter(r.format for r in good)
        widths = [r.width for r in good if r.width]
        heights = [r.height for r in good if r.height]
        return {
            "modes": dict(modes.most_common()),
            "formats": dict(formats.most_common()),
            "non_rgb": sum(n for m, n in modes.items() if m != "RGB"),
            "greyscale": sum(n for m, n in modes.items() if m in ("L", "LA", "1", "I", "I;16", "F")),
            "width": [min(widths), max(widths)] if widths else None,
            "height": [min(heights), max(heights)] if heights else None,
            "bytes": sum(r.size for r in self.results),
        }

    def to_dict(self) -> dict[str, Any]:
        good = sum(r.kind is None for r in self.results)
        return {
            "format": CHECK_FORMAT,
            "root": str(self.root),
            "layout": self.layout,
            "checked": len(self.results),
            "ok": good,
            "seconds": round(self.seconds, 2),
            "problem_counts": self.problem_counts,
            "problems": [
                {"path": r.rel, "split": r.split, "label": r.label, "kind": r.kind, "detail": r.detail}
                for r in self.problems
            ],
            "duplicate_groups": len(self.duplicates),
            "cross_split_duplicate_groups": len(self.cross_split_duplicates),
            "duplicates": [g.to_dict() for g in self.duplicates],
            "near_copy_groups": len(self.near_copies),
            "cross_split_near_copy_groups": len(self.cross_split_near_copies),
            "near_copies": [g.to_dict() for g in self.near_copies],
            "info": self.info(),
            "ignored": self.ignored,
            "quarantine": self.quarantine or None,
            "misnamed": [
                {"path": rel, "format": fmt, "note": imageio.misleading_name_note(rel, fmt)}
                for rel, fmt in self.misnamed.items()
            ],
            "renamed": self.renamed or None,
            "files": [asdict(r) for r in self.results],
        }

    def save(self, path: str | Path) -> Path:
        """Write the JSON report atomically."""
        return write_json(path, self.to_dict())


def check_file(path: str, rel: str, split: str | None, label: str) -> FileResult:
    """Hash and decode one file; every failure becomes a `kind`, never an exception."""
    result = FileResult(rel=rel, split=split, label=label)
    try:
        # The one opener for local images: a FIFO or device named x.jpg is refused, not waited on.
        data = imageio.read_local_file(path, name=rel)
    except ImageLoadError as exc:
        result.kind = exc.kind
        result.detail = "file disappeared while checking" if exc.kind == "missing" else exc.detail
        return result
    result.size = len(data)
    result.sha256 = hashlib.sha256(data).hexdigest()
    try:
        # The header gives the file's own size, mode and format before any conversion.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Corrupt EXIF data"; the decode below judges the file
            with imageio.open_header(data, rel) as header:
                result.width, result.height = imageio.upright_size(header)  # as the picture is seen
                result.mode, result.format = header.mode, header.format
    except Exception:  # noqa: BLE001  load_image below classifies the failure properly
        pass
    try:
        picture = imageio.load_image(data, name=rel, min_size=_CHECK_DECODE_SIZE)
    except ImageLoadError as exc:
        result.kind, result.detail = exc.kind, exc.detail
        return result
    except Exception as exc:  # noqa: BLE001  a decoder bug must not stop a 100k-file check
        result.kind, result.detail = "corrupt", f"decoder failed ({type(exc).__name__}: {exc})"
        return result
    problem = imageio.shape_problem(result.width, result.height) if result.width is not None else None
    if problem is not None:  # decodes, but too small or too elongated to classify well
        result.kind, result.detail = problem
    else:
        result.near_hash = hash_picture(picture)
    return result


def _quiet_worker() -> None:
    """Worker start-up: C decoders (libtiff, libjpeg) write notes straight to the stderr file
    descriptor, which would scribble over the progress bar; results travel back as data anyway."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    except OSError:
        pass


def _check_chunk(chunk: list[tuple[str, str, str | None, str]]) -> list[FileResult]:
    return [check_file(*item) for item in chunk]


def _skipped_files(scan: ScanResult) -> list[FileResult]:
    """Files the scan skipped that a user named as photos: in a picture format we cannot decode
    (e.g. JPEG XL), or no regular file (a FIFO, a device, a link to nothing)."""
    found = []
    folder_to_split = {folder: split for split, folder in scan.split_folders.items()}
    skipped = [(rel, "unsupported-format") for rel in scan.unsupported]
    skipped += [(rel, "unreadable") for rel in scan.not_regular if imageio.is_image_name(rel)]
    for rel, kind in skipped:
        parts = rel.split("/")
        split = folder_to_split.get(parts[0]) if scan.layout == "split" else None
        inner = parts[1:] if split else parts
        path = scan.root / rel
        try:
            size = path.stat().st_size
        except OSError:
            size = 0
        if kind == "unsupported-format":
            detail = f"{path.suffix.lower()} files cannot be read; convert to JPEG or PNG"
        elif path.is_symlink() and not path.exists():
            detail = f"a link to {os.readlink(path)}, which does not exist (or links back to itself)"
        else:
            detail = "not a regular file (a FIFO, a socket or a device); only files can be photos"
        found.append(FileResult(rel=rel, split=split, label=inner[0] if len(inner) > 1 else "", size=size,
                                kind=kind, detail=detail))  # fmt: skip
    return found


def check_dataset(
    scan_or_root: ScanResult | str | Path,
    *,
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> CheckReport:
    """Check every image of a tree. `workers` processes decode in parallel (default: all cores;
    0 or 1 runs in this process). `on_progress(n)` is called as each batch of n files finishes."""
    scan = scan_or_root if isinstance(scan_or_root, ScanResult) else scan_dataset(scan_or_root)
    start = time.perf_counter()
    items = [(str(r.path), r.rel, r.split, r.label) for r in scan.records]
    workers = cpu_count() if workers is None else max(1, workers)
    # Several chunks per worker keep both cores busy to the end and the progress bar moving.
    size = max(1, min(_CHUNK, -(-len(items) // (workers * 4))))
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    results: list[FileResult] = []
    if workers == 1 or len(chunks) <= 1:
        for chunk in chunks:
            results.extend(_check_chunk(chunk))
            if on_progress:
                on_progress(len(chunk))
    else:
        pool = worker_processes(min(workers, len(chunks)), initializer=_quiet_worker)
        try:
            futures = [pool.submit(_check_chunk, chunk) for chunk in chunks]
            for future in as_completed(futures):
                done = future.result()
                results.extend(done)
                if on_progress:
                    on_progress(len(done))
        except BaseException:
            # Ctrl-C: end the workers instead of decoding the rest of the tree first.
            stop_workers(pool)
            raise
        pool.shutdown()
    results.extend(_skipped_files(scan))
    results.sort(key=lambda r: r.rel)
    bad = {r.rel for r in results if r.kind is not None}
    return CheckReport(
        misnamed={rel: fmt for rel, fmt in scan.misnamed.items() if rel not in bad},
        root=scan.root,
        layout=scan.layout,
        results=results,
        duplicates=find_duplicates(results),
        near_copies=find_near_copies(results),
        ignored=scan.ignored,
        seconds=time.perf_counter() - start,
    )


# Which copy of a duplicate stays: test before valid before train, so the held-out sets stay as
# published (scores remain comparable) and the leaked copy leaves the training side.
_KEEP_RANK = {"test": 0, "valid": 1, "train": 2}


def _keep_order(result: FileResult) -> tuple[int, str]:
    return _KEEP_RANK.get(result.split or "", len(_KEEP_RANK)), result.rel


def find_duplicates(results: Iterable[FileResult]) -> list[DuplicateGroup]:
    """Groups of good files with identical bytes (bad files are reported on their own)."""
    by_hash: dict[str, list[FileResult]] = defaultdict(list)
    for result in results:
        if result.kind is None and result.sha256:
            by_hash[result.sha256].append(result)
    groups = []
    for digest, members in by_hash.items():
        if len(members) < 2:
            continue
        members.sort(key=_keep_order)
        groups.append(
            DuplicateGroup(
                sha256=digest,
                files=[m.rel for m in members],
                splits=[m.split or "all" for m in members],
                labels=[m.label for m in members],
            )
        )
    groups.sort(key=lambda g: (not g.cross_split, g.files[0]))
    return groups


def find_near_copies(results: Iterable[FileResult]) -> list[DuplicateGroup]:
    """Groups of good files that are one photo saved with other bytes (resized, re-compressed,
    lightly trimmed: near_copies.py). A group whose files are all byte copies of each other is
    `find_duplicates`' alone; one that mixes both kinds is listed in each."""
    good = [r for r in results if r.kind is None and r.near_hash]
    groups = []
    for indices in near_copy_groups([r.near_hash for r in good]):
        group = [good[i] for i in indices]
        if len({m.sha256 for m in group}) < 2:
            continue
        group.sort(key=_keep_order)
        groups.append(
            DuplicateGroup(
                sha256=group[0].sha256 or "",
                files=[m.rel for m in group],
                splits=[m.split or "all" for m in group],
                labels=[m.label for m in group],
                near=True,
            )
        )
    groups.sort(key=lambda g: (not g.cross_split, g.files[0]))
    return groups


def duplicates_across_sources(reports: dict[str, CheckReport]) -> list[DuplicateGroup]:
    """Good photos in more than one source, byte-identical or near copies (`near` groups, which
    may repeat a byte copy beside its resized one); files are named SOURCE/PATH.

    Training sees every source at once, so a copy in one source's test photos and another's
    training photos is a test photo the model trained on, and checking each source alone
    cannot see it. The copy kept first is the test one, else the valid one (as within a source).
    """
    origin = {}
    named = []
    for name, report in reports.items():
        for result in report.results:
            named.append(replace(result, rel=f"{name}/{result.rel}"))
            origin[named[-1].rel] = name
    groups = []
    for group in find_duplicates(named) + find_near_copies(named):
        group.sources = [origin[f] for f in group.files]
        if len(set(group.sources)) > 1:
            groups.append(group)
    return groups


def quarantine_across_sources(
    groups: list[DuplicateGroup], reports: dict[str, CheckReport], destination: str | Path
) -> dict[str, Any]:
    """Move every copy but the kept one of each group to destination/SOURCE/PATH (a copy that
    an earlier move already took is skipped). Never deletes, never overwrites."""
    moved, failed = [], []
    kept = (reports[group.sources[0]].root / group.keep[len(group.sources[0]) + 1 :] for group in groups)
    linked = _linked_from(kept)
    for group in groups:
        for named, name in zip(group.files[1:], group.sources[1:], strict=True):
            rel = named[len(name) + 1 :]
            report = reports[name]
            # --rename-misnamed ran first, source by source: a copy named a.php is a.jpg by now.
            renamed = {r["path"]: r["to"] for r in (report.renamed or {}).get("renamed", [])}
            source = report.root / renamed.get(rel, rel)
            if not source.exists():  # an earlier group's move took it
                continue
            breaks = _outside_data(source, report.root) or _breaks_a_kept_link(source, linked)
            if breaks:
                failed.append({"path": named, "error": breaks})
                continue
            target_root = validate_quarantine_dir(report.root, Path(destination) / name)
            try:
                dest = _move_no_overwrite(source, target_root / source.relative_to(report.root))
            except OSError as exc:
                failed.append({"path": named, "error": exc.strerror or str(exc)})
                continue
            reason = f"{'near copy' if group.near else 'duplicate'} of {group.keep}"
            moved.append({"path": named, "to": str(dest), "reason": reason})
    return {"dir": str(Path(destination).expanduser().resolve()), "moved": moved, "failed": failed}


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def validate_quarantine_dir(root: Path, quarantine: str | Path) -> Path:
    """Where bad files may go: not the data tree itself, unless in a hidden folder that scans skip."""
    target = Path(quarantine).expanduser().resolve()
    root = root.resolve()
    if target == root:
        raise SportsdetError(
            f"--quarantine {quarantine}: that is the data folder itself; choose a folder outside it"
        )
    if _inside(target, root):
        inner = target.relative_to(root).parts
        if not any(is_hidden_name(part) for part in inner):
            raise SportsdetError(
                f"--quarantine {quarantine}: is inside the data tree {root}, so moved files would be found "
                f"again as data; choose a folder outside it, or a hidden one such as {root / '.quarantine'}"
            )
    if target.exists() and not target.is_dir():
        raise SportsdetError(f"--quarantine {quarantine}: exists and is not a folder")
    check_writable_folder(target, "--quarantine", quarantine)  # else every move fails, after the check
    return target


def _free_name(target: Path) -> Path:
    """`target`, or `name~1.ext`, `name~2.ext`, ... : the first that does not exist."""
    candidate, n = target, 0
    while candidate.exists() or candidate.is_symlink():
        n += 1
        candidate = target.with_name(f"{target.stem}~{n}{target.suffix}")
    return candidate


def _move_no_overwrite(source: Path, target: Path) -> Path:
    """Move a file without ever replacing an existing one and without losing it on failure."""
    target.parent.mkdir(parents=True, exist_ok=True)
    link_only = source.is_symlink() and not source.exists()  # a link to nothing: the link itself moves
    while True:
        dest = _free_name(target)
        try:
            os.link(source, dest, follow_symlinks=not link_only)  # fails if dest exists: no overwrite
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK, errno.EOPNOTSUPP):
                raise
            # Another file system (or no hard links): copy into a new file, then remove the original.
            try:
                _copy_new(source, dest, link_only)
            except FileExistsError:
                continue
        try:
            os.unlink(source)
        except OSError:  # a read-only tree, an immutable file: the new name goes, the file stays as it was
            dest.unlink(missing_ok=True)
            raise
        return dest


def _copy_new(source: Path, dest: Path, link_only: bool) -> None:
    """A copy of `source` at `dest`, which must not exist yet (FileExistsError if it does)."""
    if link_only:
        os.symlink(os.readlink(source), dest)
        return
    if not source.is_file():  # a FIFO or a device: opening it to copy would wait for ever
        raise OSError(errno.EXDEV, "not a regular file, and cannot be moved to another file system")
    with open(source, "rb") as src, open(dest, "xb") as dst:
        try:
            shutil.copyfileobj(src, dst)
            dst.flush()
            os.fsync(dst.fileno())
        except BaseException:  # a full disk: no cut-off "copy" left behind (a rerun added more)
            dst.close()
            dest.unlink(missing_ok=True)
            raise
    shutil.copystat(source, dest)


# A link kept as "the copy that stays" points at the file to move: moving it would leave the link
# pointing nowhere, and the photo in neither place.
_LINKED = "%s, the copy that stays, is a link to this file; left in place (remove one of them by hand)"


def _linked_from(kept: Iterable[Path]) -> dict[str, str]:
    """The real path of every kept file that is a symbolic link -> that link's path."""
    return {os.path.realpath(path): str(path) for path in kept if path.is_symlink()}


def _outside_data(source: Path, root: Path) -> str | None:
    """Why `source` must stay: its folder, reached through a link (a class folder linked to a
    photo library), really lies outside the data folder, which is all the user asked to change."""
    real_folder = Path(os.path.realpath(source.parent))
    if _inside(real_folder, Path(os.path.realpath(root))):
        return None
    return f"lies in {real_folder}, outside the data folder (reached through a link); left in place"


def _breaks_a_kept_link(source: Path, linked: dict[str, str]) -> str | None:
    """Why `source` must stay (a kept link points at it), or None: `linked` is `_linked_from`'s."""
    link = None if source.is_symlink() else linked.get(os.path.realpath(source))
    return None if link is None else _LINKED % link


def quarantine_files(
    report: CheckReport, destination: str | Path, *, include_duplicates: bool = True
) -> dict[str, Any]:
    """Move bad files (and all but the kept copy of each duplicate group) to `destination`,
    keeping their paths relative to the data root. Never deletes, never overwrites."""
    target_root = validate_quarantine_dir(report.root, destination)
    to_move: list[tuple[str, str]] = [(r.rel, r.kind or "problem") for r in report.problems]
    if include_duplicates:
        for group in report.duplicates:
            to_move.extend((rel, f"duplicate of {group.keep}") for rel in group.files[1:])
        listed = {rel for rel, _ in to_move}
        for group in report.near_copies:  # a copy may be in both kinds of group: moved once
            to_move.extend((r, f"near copy of {group.keep}") for r in group.files[1:] if r not in listed)
    moved, failed = [], []
    linked = _linked_from(report.root / group.keep for group in [*report.duplicates, *report.near_copies])
    for rel, reason in to_move:
        source = report.root / rel
        breaks = _outside_data(source, report.root) or _breaks_a_kept_link(source, linked)
        if breaks:
            failed.append({"path": rel, "reason": reason, "error": breaks})
            continue
        try:
            dest = _move_no_overwrite(source, target_root / rel)
        except OSError as exc:
            failed.append({"path": rel, "reason": reason, "error": exc.strerror or str(exc)})
            continue
        moved.append({"path": rel, "to": str(dest), "reason": reason})
    report.quarantine = {"dir": str(target_root), "moved": moved, "failed": failed}
    return report.quarantine


def rename_misnamed(report: CheckReport) -> dict[str, Any]:
    """Give each photo with a misleading name the ending of its format, in place: `a.php` (a
    JPEG) becomes `a.jpg`, or `a~1.jpg` when that name is taken. Never overwrites; a failure is
    listed, not raised, and leaves the file as it was."""
    renamed, failed = [], []
    quarantined = {entry["path"] for entry in (report.quarantine or {}).get("moved", [])}
    for rel, image_format in report.misnamed.items():
        if rel in quarantined:  # a misnamed copy of another photo: gone to the quarantine already
            continue
        source = report.root / rel
        target = source.with_suffix(imageio.FORMAT_EXTENSIONS[image_format])
        outside = _outside_data(source, report.root)
        if outside:
            failed.append({"path": rel, "error": outside})
            continue
        try:
            dest = _move_no_overwrite(source, target)
        except OSError as exc:
            failed.append({"path": rel, "error": exc.strerror or str(exc)})
            continue
        renamed.append({"path": rel, "to": dest.relative_to(report.root).as_posix()})
    report.renamed = {"renamed": renamed, "failed": failed}
    return report.renamed


def manifest_duplicates(manifest: Any) -> list[DuplicateGroup]:
    """Byte-identical photos among a split manifest's files, without decoding anything.

    Files are grouped by size first and only same-size files are hashed, so a big tree costs
    one stat per file. Training warns about the groups that span splits (test photos the model
    trains on) or carry two labels (two answers taught for one picture).
    """
    entries: list[tuple[Path, str, str, str]] = []
    for split in ("train", "valid", "test"):
        for rel, label in manifest.splits.get(split, []):
            entries.append((manifest.root / rel, rel, split, label))
    by_size: dict[int, list[tuple[Path, str, str, str]]] = defaultdict(list)
    for entry in entries:
        try:
            by_size[entry[0].stat().st_size].append(entry)
        except OSError:
            continue  # a missing file is reported when it is read
    results = []
    for same in by_size.values():
        if len(same) < 2:
            continue
        for path, rel, split, label in same:
            try:
                digest = sha256_file(path)
            except SportsdetError:
                continue
            results.append(FileResult(rel=rel, split=split, label=label, sha256=digest))
    return find_duplicates(results)


def manifest_near_copies(manifest: Any, near_hashes: dict[str, str | None]) -> list[DuplicateGroup]:
    """Near copies among a split manifest's files, from their near-copy hashes by path (made
    beforehand: training hashes its photos once, for this and for the bundle's seen_photos.json).
    Only photos in a close pair are read again, for the byte hash that tells byte copies apart."""
    entries = [
        (rel, split, label, near_hashes.get(str(manifest.root / rel)))
        for split in ("train", "valid", "test")
        for rel, label in manifest.splits.get(split, [])
    ]
    paired = {i for group in near_copy_groups([entry[3] for entry in entries]) for i in group}
    results = []
    for i in sorted(paired):
        rel, split, label, value = entries[i]
        try:
            digest = sha256_file(manifest.root / rel)
        except SportsdetError:
            continue  # gone since it was hashed: reported when it is read
        results.append(FileResult(rel=rel, split=split, label=label, sha256=digest, near_hash=value))
    return find_near_copies(results)


def manifest_copies(manifest: Any, near_hashes: dict[str, str | None]) -> list[DuplicateGroup]:
    """Byte copies, then near copies, among a split manifest's files (`near_hashes` by path)."""
    return manifest_duplicates(manifest) + manifest_near_copies(manifest, near_hashes)


def quarantine_command(roots: Path | str | Iterable[Path | str]) -> str:
    """The `sportsdet data check` command that finds and moves bad files out of these folders."""
    folders = [roots] if isinstance(roots, (str, Path)) else list(roots)
    named = " ".join(shlex.quote(str(folder)) for folder in folders)
    return f"`sportsdet data check {named} --quarantine DIR`"


def duplicate_warnings(groups: list[DuplicateGroup], roots: Path | str | Iterable[Path | str]) -> list[str]:
    """One line per kind of duplicate (byte copies, then near copies) that changes what training
    learns or what its test says; `roots`: the data folder(s) the suggested `data check` names."""
    warnings = []
    for near in (False, True):
        kind = [g for g in groups if g.near == near]
        what = "near copies (one photo saved again, resized or re-saved)" if near else "byte-identical copies"
        warnings.extend(_copy_warnings(kind, what, near, roots))
    return warnings


def _copy_warnings(
    groups: list[DuplicateGroup], what: str, near: bool, roots: Path | str | Iterable[Path | str]
) -> list[str]:
    warnings = []
    spread = [g for g in groups if g.cross_split]
    if spread:
        example = (" ~ " if near else " = ").join(spread[0].files[:2])
        kinds = [set(g.splits) for g in spread]
        harm = [
            (sum({"test", "train"} <= k for k in kinds), "test photo(s) are also training photos"),
            (
                sum({"valid", "train"} <= k and "test" not in k for k in kinds),
                "validation photo(s) are also training photos",
            ),
            (
                sum(k == {"test", "valid"} for k in kinds),
                "test photo(s) are also validation photos (which choose the best epoch)",
            ),
        ]
        said = "; ".join(f"{n} {what_harm}" for n, what_harm in harm if n)
        warnings.append(
            f"{len(spread)} photo(s) are {what} in more than one split (e.g. {example}): "
            f"{said}: scores on them say little about new photos; {quarantine_command(roots)} moves "
            "the extra copies out"
        )
    torn = [g for g in groups if g.conflicting_labels]
    if torn:
        first = torn[0]
        example = ", ".join(
            f"{f} ({label})" for f, label in zip(first.files[:2], first.labels[:2], strict=True)
        )
        copies = " as near copies" if near else ""
        warnings.append(
            f"{len(torn)} photo(s) are filed under two classes{copies} (e.g. {example}): training is taught "
            "two answers for one picture; keep one copy in the right class"
        )
    return warnings
