"""Fetch a labelled image dataset by name or URL: download, unpack, find the class folders.

    fetch_dataset("uiuc-sports", "data/")        # the UIUC Sports Event archive, by its URL
    fetch_dataset("https://host/photos.zip", "data/")

The archive is downloaded into DEST/downloads/ (kept, so a second run does not download it
again) with `sportsdet.fetch.download_file` (atomic, checksum when one is known), unpacked into
a temporary folder beside DEST/NAME and renamed into place only when complete, so an
interrupted run never leaves a half dataset that looks whole. Then the folder-per-class root
inside it is found (archives often wrap it, e.g. `event_img/<sport>/*.jpg`) and scanned.

zip and tar archives are unpacked with the standard library, refusing members that would land
outside the target and archives that would unpack to more than MAX_RATIO times their size,
MAX_UNPACKED_BYTES, or the free disk space (zip bombs); RAR (the UIUC archive) needs an external
tool: bsdtar, unar, 7z or unrar, whose output is measured while it runs and which is stopped
when it passes the same budget.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.parse
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sportsdet.errors import SportsdetError
from sportsdet.fetch import FetchError, download_file, is_url, redact_url
from sportsdet.files import FETCH_MARKER, human_size, nearest_existing, remove_untouched, signals_deferred


@dataclass(frozen=True)
class KnownDataset:
    name: str
    title: str
    url: str
    sha256: str | None = None  # None: the publisher gives no checksum
    note: str = ""


KNOWN_DATASETS: dict[str, KnownDataset] = {
    d.name: d
    for d in [
        KnownDataset(
            name="uiuc-sports",
            title="UIUC Sports Event (Li & Fei-Fei, ICCV 2007): 8 sports, 1,579 photos",
            url="http://vision.stanford.edu/lijiali/event_dataset/event_dataset.rar",
            note="the original notebook's data; a RAR archive (needs bsdtar, unar, 7z or unrar); "
            "the literature's protocol is --split per-class:70,60",
        ),
    ]
}

MARKER = FETCH_MARKER  # marks a folder this module made (so --force may replace it)

# (command, arguments) that unpack a RAR archive into a folder; the first one installed is used.
_RAR_TOOLS: list[tuple[str, list[str]]] = [
    ("bsdtar", ["-x", "-f", "{archive}", "-C", "{target}"]),
    ("unar", ["-q", "-f", "-o", "{target}", "{archive}"]),
    ("7z", ["x", "-y", "-o{target}", "{archive}"]),
    ("unrar", ["x", "-y", "-idq", "{archive}", "{target}/"]),
]


# Archive name endings and how each is unpacked; longest first, so ".tar.gz" wins over ".gz".
_ARCHIVE_SUFFIXES = (
    (".tar.gz", "tar"), (".tar.bz2", "tar"), (".tar.xz", "tar"), (".tgz", "tar"), (".tbz2", "tar"),
    (".txz", "tar"), (".tar", "tar"), (".zip", "zip"), (".rar", "rar"),
)  # fmt: skip


def _split_archive_name(name: str) -> tuple[str, str] | None:
    """("photos", "tar") for "photos.tar.gz"; None when the name is not an archive's."""
    for suffix, kind in _ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)], kind
    return None


# Unpacking is bounded three ways, so a zip bomb (a small archive of huge, highly compressible
# members) fails with a clear error instead of filling the disk:
MAX_UNPACKED_BYTES = 64 * 2**30  # the whole dataset (sports100 is about 0.5 GB; ImageNet 150 GB)
MAX_RATIO = 200  # unpacked / archive bytes: photos barely compress, a bomb compresses ~1000:1
_RATIO_SLACK = 64 * 2**20  # small archives of text-like files may compress well; allow that
_FREE_RESERVE = 2**30  # leave this much of the disk free
# Entries (files, folders, links): photos take kilobytes of archive each; 200,000 empty files in
# a 1 MB tar.gz took 41 s and as many inodes to unpack, and held no dataset.
_ENTRY_SLACK = 10_000
_MIN_ENTRY_BYTES = 256  # archive bytes per entry, at least, beyond the slack


class _UnpackBudget:
    """Counts the bytes an archive unpacks to; SportsdetError before any limit is passed."""

    def __init__(self, archive: Path, target: Path) -> None:
        self.archive = archive
        self.packed = archive.stat().st_size
        self.limit = min(MAX_UNPACKED_BYTES, MAX_RATIO * self.packed + _RATIO_SLACK)
        self.free = shutil.disk_usage(target).free - _FREE_RESERVE
        self.used = 0
        self.entries = 0
        self.max_entries = _ENTRY_SLACK + self.packed // _MIN_ENTRY_BYTES

    def take(self, size: int) -> None:
        self.used += max(0, size)
        self.entries += 1
        self.check()

    def check(self, used: int | None = None, entries: int | None = None) -> None:
        """Raise once past a limit; `used` and `entries`: what an external tool has written so far."""
        if used is not None:
            self.used = used
        if entries is not None:
            self.entries = entries
        if self.entries > self.max_entries:
            raise SportsdetError(
                f"{self.archive}: refusing to unpack it: more than {self.max_entries:,} entries in a "
                f"{human_size(self.packed)} archive (photos take kilobytes each); a damaged or hostile "
                "archive. Unpack it yourself if you trust it"
            )
        if self.used > self.limit:
            raise SportsdetError(
                f"{self.archive}: refusing to unpack it: its contents exceed {human_size(self.limit)} "
                f"({human_size(self.used)} so far from a {human_size(self.packed)} archive; the limit is "
                f"{MAX_RATIO} times the archive size, at most {human_size(MAX_UNPACKED_BYTES)}). "
                "A zip bomb or a damaged archive; unpack it yourself if you trust it"
            )
        if self.used > self.free:
            raise SportsdetError(
                f"{self.archive}: not enough disk space to unpack it ({human_size(self.used)} needed so "
                f"far, {human_size(max(0, self.free))} free beside {human_size(_FREE_RESERVE)} kept free); "
                "free some space or choose another --dest"
            )


def _download_within_free_space(
    url: str, archive: Path, dest: Path, timeout: float, max_seconds: float | None, sha256: str | None,
    progress: bool,
) -> None:
    """`download_file`, stopped before it leaves less than _FREE_RESERVE of the disk free: a server
    sending without end (no Content-Length) filled the disk."""
    free = shutil.disk_usage(nearest_existing(dest)).free - _FREE_RESERVE
    no_room = (f"{redact_url(url)}: not enough disk space in {dest} for this download "
               f"({human_size(max(0, free))} free beside {human_size(_FREE_RESERVE)} kept free); free some "
               "space or choose another --dest")
    if free <= 0:
        raise SportsdetError(no_room)
    try:
        download_file(url, archive, timeout=timeout, max_seconds=max_seconds, expected_sha256=sha256,
                      progress=progress, max_bytes=free)  # fmt: skip
    except FetchError as exc:
        if exc.code == "too_large":
            raise SportsdetError(no_room) from None
        raise


def _inside(target: Path, member: str) -> bool:
    resolved = (target / member).resolve()
    return resolved == target or target in resolved.parents


def _unpack_zip(archive: Path, target: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as bundle:
            budget = _UnpackBudget(archive, target)
            for info in bundle.infolist():
                if not _inside(target, info.filename):
                    raise SportsdetError(
                        f"{archive}: refusing to unpack {info.filename!r}: it would land outside the "
                        "target folder"
                    )
                # zipfile never writes more than a member's declared size (a larger stream fails
                # its CRC check), so the declared sizes bound what lands on disk: check them all
                # before writing anything.
                budget.take(info.file_size)
            bundle.extractall(target)
    except zipfile.BadZipFile as exc:
        raise SportsdetError(
            f"{archive}: not a readable zip archive ({exc}); fetch again with --force (it downloads anew)"
        ) from None


def _unpack_tar(archive: Path, target: Path) -> None:
    try:
        budget = _UnpackBudget(archive, target)

        def counted(bundle: tarfile.TarFile):
            for member in bundle:  # each header gives the size of the data that follows it
                budget.take(member.size)
                yield member

        # Streaming mode ("r|*"): one pass, and a bomb is refused when its running total passes
        # the budget, without first decompressing it whole to list the members.
        with tarfile.open(archive, mode="r|*") as bundle:
            # The "data" filter refuses absolute paths, links out of the folder and device files.
            bundle.extractall(target, members=counted(bundle), filter="data")
    except tarfile.FilterError as exc:
        raise SportsdetError(f"{archive}: refusing to unpack it: {exc}") from None
    except (tarfile.TarError, EOFError) as exc:
        raise SportsdetError(
            f"{archive}: not a readable tar archive ({exc}); fetch again with --force (it downloads anew)"
        ) from None


def _unpack_rar(archive: Path, target: Path) -> None:
    for tool, arguments in _RAR_TOOLS:
        command = shutil.which(tool)
        if command is None:
            continue
        argv = [command, *(a.format(archive=archive, target=target) for a in arguments)]
        done = _run_within_budget(argv, target, _UnpackBudget(archive, target))
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no message"]
            raise SportsdetError(
                f"{archive}: {tool} could not unpack it ({detail[0]}); fetch again with --force (it "
                "downloads anew)"
            )
        return
    raise SportsdetError(
        f"{archive}: this is a RAR archive and no tool to open it is installed; install one "
        "(e.g. `apt install libarchive-tools` for bsdtar, or unar / 7zip / unrar), then run the same "
        "command again (the download is kept), or unpack it yourself and run `sportsdet data scan` on it"
    )


def _tree_size(folder: Path) -> tuple[int, int]:
    """Bytes of the regular files below `folder` (links not followed), and its entries."""
    total, count, stack = 0, 0, [str(folder)]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    count += 1
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
        except OSError:
            continue  # a folder the tool is still creating or has just renamed
    return total, count


def _run_within_budget(
    argv: list[str], target: Path, budget: _UnpackBudget, poll: float = 0.5
) -> subprocess.CompletedProcess:
    """Run an external unpacker, measuring what it has written every `poll` seconds and stopping
    it once the budget is passed (an external tool cannot be asked to respect our limits)."""
    # errors="replace": tools print archive member names, which need not be UTF-8.
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace"
    )
    try:
        while True:
            try:
                out, err = process.communicate(timeout=poll)
                break
            except subprocess.TimeoutExpired:
                budget.check(*_tree_size(target))
        budget.check(*_tree_size(target))
    except BaseException:
        process.kill()
        process.communicate()
        raise
    return subprocess.CompletedProcess(argv, process.returncode, out, err)


def unpack(archive: Path, target: Path) -> None:
    """Unpack a zip, tar(.gz/.bz2/.xz) or RAR archive into `target` (created)."""
    split = _split_archive_name(archive.name)
    if split is None:
        raise SportsdetError(f"{archive}: unknown archive type; expected .zip, .tar(.gz/.bz2/.xz) or .rar")
    kind = split[1]
    target.mkdir(parents=True, exist_ok=True)
    {"zip": _unpack_zip, "tar": _unpack_tar, "rar": _unpack_rar}[kind](archive, target.resolve())


def _dataset_root_of_archive(staging: Path, archive: Path) -> Path:
    """`find_dataset_root` of an archive unpacked into `staging`, its errors naming the archive
    (and the folder inside it): they named the temporary folder, removed before they were read."""
    root = _through_wrappers(staging)
    try:
        find_dataset_root(root)  # root is past its wrappers already: this scans it
    except SportsdetError as exc:
        said = str(exc)
        for shown in (str(root.resolve()), str(root)):  # the scan names the folder resolved
            if said.startswith(shown + ": "):
                inner = root.relative_to(staging).as_posix()
                where = "" if inner == "." else f" (in its folder {inner})"
                raise SportsdetError(f"{archive}{where}, unpacked: {said[len(shown) + 2 :]}") from None
        raise
    return root


def find_dataset_root(folder: Path) -> Path:
    """The folder-per-class (or split) tree inside an unpacked archive: `folder` or the folder
    below its wrapper folders, checked with `scan_dataset`."""
    from sportsdet.data.discover import scan_dataset

    root = _through_wrappers(folder)
    scan_dataset(root)  # a clear error when there are no class folders with images
    return root


def _through_wrappers(folder: Path) -> Path:
    """Down through wrapper folders that hold one folder and no photos (e.g. `event_img/`, maybe
    beside a README, LICENSE or labels.csv), ignoring hidden entries and `__MACOSX`."""
    from sportsdet.imageio import is_image_name

    root = folder
    while True:
        entries = [e for e in root.iterdir() if not e.name.startswith(".") and e.name != "__MACOSX"]
        folders = [e for e in entries if e.is_dir()]
        # A README beside the wrapper made the wrapper the one class of the dataset.
        if len(folders) == 1 and not any(is_image_name(e) for e in entries if not e.is_dir()):
            root = folders[0]
            continue
        return root


def dataset_source(name_or_url: str) -> tuple[str, str, str | None]:
    """(folder name, url, sha256) for a known dataset name or an archive URL."""
    known = KNOWN_DATASETS.get(name_or_url.lower())
    if known is not None:
        return known.name, known.url, known.sha256
    if not is_url(name_or_url):
        raise SportsdetError(
            f"unknown dataset {name_or_url!r}; use one of {', '.join(KNOWN_DATASETS)} "
            "(`sportsdet data fetch --list`) or the http(s) URL of a .zip, .tar.gz or .rar archive"
        )
    split = _split_archive_name(_url_file_name(name_or_url))
    if split is None:
        raise SportsdetError(
            f"{redact_url(name_or_url)}: the URL does not end in .zip, .tar(.gz/.bz2/.xz) or .rar; "
            "give the address of the archive itself"
        )
    # DEST/NAME: never "", "..", a hidden name, or DEST/downloads (where the archive is kept).
    usable = split[0] and not split[0].startswith(".") and split[0].lower() != "downloads"
    return split[0] if usable else "dataset", name_or_url, None


def _url_file_name(url: str) -> str:
    """The last part of the URL's path, %-escapes decoded ("my%20photos.zip" -> "my photos.zip")."""
    return PurePosixPath(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name.replace("\0", "")


def _archive_path(dest: Path, url: str, name: str) -> Path:
    """Where the archive is kept: DEST/downloads/ under the URL's file name (NAME + its suffix
    when that name is hidden or empty)."""
    file_name = _url_file_name(url)
    stem = file_name[: len(file_name) - len(_archive_suffix(file_name))]
    if not stem or stem.startswith("."):
        file_name = name + _archive_suffix(file_name)
    return dest / "downloads" / file_name


def _archive_suffix(file_name: str) -> str:
    split = _split_archive_name(file_name)
    return file_name[len(split[0]) :] if split else ""


def _fetched_from(folder: Path) -> str | None:
    """The URL a folder (or kept archive, by its record) was fetched from; None: not known."""
    try:
        made = json.loads(folder.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return made.get("url") if isinstance(made, dict) and isinstance(made.get("url"), str) else None


def fetch_dataset(
    name_or_url: str,
    dest: str | Path,
    *,
    force: bool = False,
    timeout: float = 60.0,
    max_seconds: float | None = None,
    progress: bool = True,
    say: Callable[[str], None] = lambda message: None,
) -> Path:
    """Download and unpack a dataset into DEST/NAME; returns the class-folder root inside it.

    A DEST/NAME this function made from the same URL is reused (nothing downloaded) unless
    `force`, which replaces it; one made from another URL is replaced only with `force`; a folder
    it did not make is never touched (an error, before downloading). A kept archive in
    DEST/downloads/ from the same URL is unpacked without downloading. `say` hears which of these
    happened (a second fetch printed the first's table as if it had downloaded again).
    """
    name, url, sha256 = dataset_source(name_or_url)
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise SportsdetError(f"{dest}: is a file; --dest must be a folder (it is created if missing)")
    try:
        return _fetch_into(
            dest, name, name_or_url, url, sha256, force=force, timeout=timeout, max_seconds=max_seconds,
            progress=progress, say=say,
        )
    except OSError as exc:  # disk full, no permission, ...: say where, not a traceback
        where = exc.filename or dest
        raise SportsdetError(f"{where}: cannot write the dataset here ({exc.strerror or exc})") from None


def _fetch_into(
    dest: Path, name: str, name_or_url: str, url: str, sha256: str | None, *, force: bool, timeout: float,
    max_seconds: float | None, progress: bool, say: Callable[[str], None],
) -> Path:  # fmt: skip
    final = dest / name
    if dest.is_dir():  # what a killed fetch left goes, whether this one downloads or not
        _remove_abandoned_folders(dest, name)
    if final.exists():  # said before any download: a wrong folder must not cost one
        made_from = _fetched_from(final / MARKER)
        if made_from is None:
            raise SportsdetError(
                f"{final}: already exists and was not made by `sportsdet data fetch` (it is never "
                f'replaced); to use it as it is: sportsdet data scan "{final}"; else move it away or '
                "choose another --dest"
            )
        if made_from != url and not force:
            raise SportsdetError(
                f"{final}: holds the dataset fetched from {redact_url(made_from)}, not this one; choose "
                "another --dest, or add --force to replace it"
            )
        if not force:
            say(f"{final}: fetched from this URL before; nothing downloaded (--force fetches it again)")
            return find_dataset_root(final)
    archive = _archive_path(dest, url, name)
    # The URL a kept archive came from: another URL of the same file name is downloaded anew.
    record = archive.with_name(f".{archive.name}.json")
    if force or not archive.is_file() or _fetched_from(record) != url:
        try:  # before the download: a folder that cannot be made read "not enough disk space"
            archive.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SportsdetError(
                f"--dest {dest}: cannot make this folder ({exc.strerror or exc}); choose another --dest"
            ) from None
        record.unlink(missing_ok=True)  # never a record of one URL beside another's archive
        _download_within_free_space(url, archive, dest, timeout, max_seconds, sha256, progress)
        record.write_text(json.dumps({"url": url}))
    else:
        say(f"{archive}: the archive kept from this URL, unpacked again (--force downloads it anew)")
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.unpacking-", dir=dest))
    aside = None
    try:
        unpack(archive, staging)
        # Refuse an archive without class folders before publishing it.
        inside = _dataset_root_of_archive(staging, archive).relative_to(staging)
        (staging / MARKER).write_text(
            json.dumps({"source": name_or_url, "url": url, "archive": str(archive)})
        )
        os.chmod(staging, 0o755)  # mkdtemp makes it private; a dataset is an ordinary folder
        # --force, and the folder is one this function made. Moved aside, not deleted first: Ctrl-C
        # while a big one was deleted left part of it, without its marker, which no fetch would
        # then replace. Two renames, which Ctrl-C waits for.
        with signals_deferred():
            if final.exists():
                aside = dest / f".{name}.replaced-{os.getpid()}"
                os.replace(final, aside)
            try:
                os.replace(staging, final)
            except OSError:
                if aside is not None:  # the old one back where it was
                    os.replace(aside, final)
                    aside = None
                raise
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)  # cut short: the next fetch removes the rest
    return final / inside


def _remove_abandoned_folders(dest: Path, name: str) -> None:
    """What a killed fetch left in DEST: an unpacking folder (kill -9: one more per kill, hidden,
    each as large as the dataset) or the old dataset moved aside to be deleted. An unpacking
    folder touched within the hour may be another fetch's, still at work."""
    for folder in dest.glob(f".{glob.escape(name)}.replaced-*"):
        shutil.rmtree(folder, ignore_errors=True)
    remove_untouched(dest.glob(f".{glob.escape(name)}.unpacking-*"))
