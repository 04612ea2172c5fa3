"""Find the labelled images in a folder tree, without decoding any of them.

Two layouts are understood:

- folder per class:  ROOT/<class>/**/<image>
- split tree:        ROOT/{train,valid|val,test}/<class>/**/<image>

(`data check` also accepts a plain folder of photos with no class folders: layout "photos".)

A tree is a split tree when ROOT holds at least one split-named folder (train, valid, val,
validation, test; any case) that itself contains folders. Class names are folder names, used
exactly as written (spaces and all). Hidden entries (a leading '.', `__MACOSX`, ...) and files
whose names do not end like an image are skipped and counted by reason, unless their first
bytes show a photo (then they are kept and listed in `misnamed`). Torch-free and fast: only
`os.scandir` and a 32-byte look at files not named like images; no image is decoded.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sportsdet import files
from sportsdet.errors import SportsdetError
from sportsdet.files import OWN_FILES, is_hidden_name
from sportsdet.imageio import UNSUPPORTED_IMAGE_EXTENSIONS, is_image_name

# Folder names that mark a split tree, mapped to the split each one means.
SPLIT_FOLDERS = {"train": "train", "valid": "valid", "val": "valid", "validation": "valid", "test": "test"}
SPLIT_ORDER = ("train", "valid", "test")
# A class holding more than this many times the images of another is called imbalanced.
IMBALANCE_RATIO = 3.0
# How that warning starts: it is advice for training, left out where it does not apply.
IMBALANCE_WARNING = "strong class imbalance"
SINGLE_PHOTO_WARNING = "with a single photo"  # a split needs 2 a class: training's concern only
# How many example paths to keep per ignore reason (the counts are always complete).
_EXAMPLES = 5

# Why an entry was skipped (keys of ScanResult.ignored).
IGNORED_HIDDEN = "hidden"
IGNORED_NOT_IMAGE = "not-an-image-name"
IGNORED_UNSUPPORTED = "unsupported-image-type"
IGNORED_LOOSE = "outside-class-folder"
IGNORED_NOT_SPLIT = "not-a-split-folder"
IGNORED_UNREADABLE = "unreadable-folder"
IGNORED_NOT_REGULAR = "not-a-regular-file"  # FIFOs, devices, dangling links named like images
IGNORED_LINKED = "folder-linked-twice"  # a link to a folder already walked (or to another class)
IGNORED_LINKED_PHOTO = "photo-linked-from-another-class"  # a file link to a photo of another class
IGNORED_BROKEN_LINK = "broken-link"  # a link to nothing: a class folder on a drive not mounted?


@dataclass(frozen=True)
class ImageRecord:
    """One image found in the tree. `rel` is relative to the root, with '/' separators."""

    path: Path
    rel: str
    label: str
    split: str | None  # train / valid / test, or None in a folder-per-class tree


@dataclass
class ScanResult:
    """Everything `scan_dataset` found. Records are sorted by `rel`, so order never depends on
    the file system."""

    root: Path
    layout: str  # "split", "folders" or "photos" (a plain folder of photos, no classes)
    records: list[ImageRecord]
    classes: list[str]  # sorted names of classes that hold at least one image
    empty_classes: list[str] = field(default_factory=list)
    # Class folders that could not be listed (permissions): rel path -> class. Their classes are
    # not "empty"; in a split tree one split's folder may be unreadable while another has photos.
    unreadable_folders: dict[str, str] = field(default_factory=dict)
    split_folders: dict[str, str] = field(default_factory=dict)  # split -> folder name on disk
    ignored: dict[str, int] = field(default_factory=dict)  # reason -> count
    ignored_examples: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # Every skipped picture in a format we cannot decode (JPEG XL, RAW, ...): `data check` reports them.
    unsupported: list[str] = field(default_factory=list)
    # Photos whose names hide it (rel path -> format, e.g. "a/b.php": "JPEG"): used, and warned about.
    misnamed: dict[str, str] = field(default_factory=dict)
    # Every entry that is no regular file (a FIFO, a device, a link to nothing): `data check` names them.
    not_regular: list[str] = field(default_factory=list)

    @property
    def splits(self) -> list[str]:
        """Split names present, in train/valid/test order ("all" for a folder-per-class tree)."""
        if self.layout != "split":
            return ["all"]  # also "photos": one unlabelled set
        return [s for s in SPLIT_ORDER if s in self.split_folders]

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per split per class, every class listed (0 where it has none)."""
        table = {split: dict.fromkeys(self.classes, 0) for split in self.splits}
        for record in self.records:
            if record.label:  # a "photos" folder's records have no label
                table[record.split or "all"][record.label] += 1
        return table

    def restricted_to(self, classes: list[str]) -> ScanResult:
        """The same scan seen through a class subset (`--classes`): records, counts and warnings
        speak only of those classes, so a run is not warned about classes it does not use."""
        from dataclasses import replace

        keep = set(classes)
        records = [r for r in self.records if r.label in keep]
        kept_files = {r.rel for r in records}
        subset = replace(
            self,
            records=records,
            misnamed={rel: fmt for rel, fmt in self.misnamed.items() if rel in kept_files},
            classes=[c for c in self.classes if c in keep],
            empty_classes=[c for c in self.empty_classes if c in keep],
            unreadable_folders={rel: c for rel, c in self.unreadable_folders.items() if c in keep},
        )
        # The layout hint is about the tree, not a subset of its classes: one class chosen was
        # told to scan a folder of its own photos instead.
        subset.warnings = scan_warnings(subset, layout_hint=False)
        return subset

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no per-file list)."""
        counts = self.counts()
        return {
            "root": str(self.root),
            "layout": self.layout,
            "num_classes": len(self.classes),
            "classes": self.classes,
            "empty_classes": self.empty_classes,
            "unreadable_folders": sorted(self.unreadable_folders),
            "total": len(self.records),
            "splits": {
                split: {"total": sum(per_class.values()), "per_class": per_class}
                for split, per_class in counts.items()
            },
            "split_folders": self.split_folders,
            "ignored": self.ignored,
            "ignored_examples": self.ignored_examples,
            "misnamed": self.misnamed,
            "warnings": self.warnings,
        }


class _Walker:
    """Collects images under class folders and counts what it skips."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ignored: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = defaultdict(list)
        self.unsupported: list[str] = []
        self.not_regular: list[str] = []
        self.misnamed: dict[str, str] = {}
        self.unreadable: set[str] = set()  # every folder that could not be listed, as given
        self._seen_dirs: set[tuple[int, int]] = set()
        # The data root and every folder above it are never walked from inside a class: a link
        # polo/up -> .. took in every class again as polo, one to the root's parent other datasets.
        self.never_enter([root, *root.parents])

    def never_enter(self, folders: list[Path] | list[str]) -> None:
        """Folders no class walks into (a link to one is skipped as a folder linked twice)."""
        self._seen_dirs |= {key for key in map(files.folder_key, folders) if key is not None}

    def skip(self, reason: str, path: str) -> None:
        self.ignored[reason] += 1
        if reason == IGNORED_UNREADABLE:
            self.unreadable.add(path)
        rel = self.rel(path)
        if reason == IGNORED_UNSUPPORTED:
            self.unsupported.append(rel)
        elif reason == IGNORED_NOT_REGULAR:
            self.not_regular.append(rel)
        if len(self.examples[reason]) < _EXAMPLES:
            self.examples[reason].append(rel)

    def on_misnamed(self, path: str, image_format: str) -> None:
        self.misnamed[self.rel(path)] = image_format

    def rel(self, path: str) -> str:
        return Path(os.path.relpath(path, self.root)).as_posix()

    def entries(self, folder: str) -> list[os.DirEntry[str]]:
        """Non-hidden entries of a folder; hidden ones are counted."""
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:
            self.skip(IGNORED_UNREADABLE, folder)
            return []
        kept = []
        for entry in entries:
            if entry.name in OWN_FILES:
                continue  # data fetch's own record: "skipped: 1 hidden" on every scan of the folder
            if is_hidden_name(entry.name):
                self.skip(IGNORED_HIDDEN, entry.path)
            else:
                kept.append(entry)
        return kept

    @staticmethod
    def is_dir(entry: os.DirEntry[str]) -> bool:
        try:
            return entry.is_dir()
        except OSError:
            return False

    def on_skip(self, reason: str, path: str) -> None:
        """Count what the one folder walker (sportsdet.files) passes over, by our reasons."""
        if reason == files.SKIP_NOT_IMAGE:
            unsupported = Path(path).suffix.lower() in UNSUPPORTED_IMAGE_EXTENSIONS
            self.skip(IGNORED_UNSUPPORTED if unsupported else IGNORED_NOT_IMAGE, path)
        else:
            self.skip(_SKIP_REASONS[reason], path)

    def images_under(
        self, folder: str, other_classes: set[tuple[int, int]], other_splits: frozenset = frozenset()
    ) -> list[str]:
        """Image paths anywhere below a class folder (sub-folders belong to the same class).

        A link into another class's folder is not followed (`other_classes`), so no image is
        counted under two classes, whichever class sorts first; nor a folder link to anything in
        another split (`other_splits`: their split folders): train/polo/x -> ../../valid/polo/sub
        moved valid's photos to train. A file link to a photo of another split stays: a copy
        across splits, which `data check` reports.
        """
        visited = self._seen_dirs | other_classes
        found = []
        inside_other_split = (lambda path: _at_or_under(path, other_splits)) if other_splits else None
        for path in files.iter_image_files(
            folder,
            visited=visited,
            on_skip=self.on_skip,
            on_misnamed=self.on_misnamed,
            refuse_link=inside_other_split,
        ):
            if path.is_symlink() and _inside(os.path.realpath(path), other_classes):
                # One photo under two labels (polo/x.jpg -> ../croquet/x.jpg): counted in both.
                self.skip(IGNORED_LINKED_PHOTO, str(path))
                continue
            found.append(str(path))
        self._seen_dirs |= visited - other_classes
        return found

    def class_folders(self, entries: list[os.DirEntry[str]]) -> list[os.DirEntry[str]]:
        """The sub-folders among a folder's entries (the classes); loose files are counted and skipped."""
        classes = []
        for entry in entries:
            if self.is_dir(entry):
                classes.append(entry)
            else:
                self.skip_loose_file(entry)
        return classes

    def skip_loose_file(self, entry: os.DirEntry[str]) -> None:
        """Count a file lying outside any class folder, by what its name says it is."""
        if entry.is_symlink() and not os.path.exists(entry.path):
            self.skip(IGNORED_BROKEN_LINK, entry.path)  # a class (or split) gone, not "not an image"
        elif Path(entry.name).suffix.lower() in UNSUPPORTED_IMAGE_EXTENSIONS:
            self.skip(IGNORED_UNSUPPORTED, entry.path)
        elif is_image_name(entry.name):
            self.skip(IGNORED_LOOSE, entry.path)
        else:
            self.skip(IGNORED_NOT_IMAGE, entry.path)


def _link_target(path: Path) -> str:
    try:
        return files.printable_name(os.readlink(path))
    except OSError:  # gone since the scan
        return "?"


def _at_or_under(path: str, folders: frozenset | set[tuple[int, int]]) -> bool:
    """Whether the folder `path` leads to is one of `folders` or lies under one."""
    real = os.path.realpath(path)
    return files.folder_key(real) in folders or _inside(real, folders)


def _inside(path: str, folders: set[tuple[int, int]]) -> bool:
    """Whether a real path lies under one of these folders (by `files.folder_key`)."""
    return any(files.folder_key(parent) in folders for parent in Path(path).parents)


def _check_root(root: str | Path) -> Path:
    path = Path(root).expanduser()
    if not path.exists() and path.suffix.lower() in (".toml", ".json"):  # a dataset file (data.sources)
        raise SportsdetError(f"{path}: no such dataset file")
    if not path.exists():
        raise SportsdetError(f"{path}: no such folder; give the folder that holds your class folders")
    if not path.is_dir():
        raise SportsdetError(
            f"{path}: is a file, not a folder; give a folder laid out as ROOT/<class>/<images> "
            "or ROOT/{train,valid,test}/<class>/<images>"
        )
    return path.resolve()


def case_clashes(names: list[str]) -> list[list[str]]:
    """Class names that differ only in how they are written, grouped: in case (Basketball,
    basketball), spaces ('ice hockey ', a no-break space, 'formula 1' and 'formula1'), hyphens and
    underscores ('ice-hockey', 'ice_hockey'), invisible characters (a zero-width space) or
    compatibility forms (the ligature in 'ﬁgure skating'). Each is trained as a class of its own,
    and most print the same."""
    groups: dict[str, list[str]] = defaultdict(list)
    for name in sorted(set(names)):
        groups[_look_alike_key(name)].append(name)
    return [spellings for spellings in groups.values() if len(spellings) > 1]


def _written_key(name: str) -> str:
    text = unicodedata.normalize("NFKC", name)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")  # zero-width and the like
    return " ".join(text.split()).casefold()


# Spaces, underscores and hyphens (the dashes a keyboard or a web page puts in a name too): how two
# datasets write one sport's name apart ('ice hockey', 'ice-hockey', 'ice_hockey', 'icehockey').
_SEPARATORS = re.compile(r"[\s_\-\u2010-\u2015]+")


def _look_alike_key(name: str) -> str:
    return _SEPARATORS.sub("", _written_key(name))


def how_they_differ(spellings: list[str]) -> str:
    """'only in case', or what else sets `case_clashes` spellings apart."""
    # casefold() makes 'Straße' and 'STRASSE' one, as it should, but also the ligature in
    # 'ﬁgure skating' 'fi': a compatibility form is more than case.
    plain_forms = all(unicodedata.normalize("NFKC", name) == name for name in spellings)
    if plain_forms and len({name.casefold() for name in spellings}) == 1:
        return "only in case"
    if len({_written_key(name) for name in spellings}) == 1:
        return "only in case, spaces, invisible characters or ligatures"
    if plain_forms and len({_SEPARATORS.sub("", name).casefold() for name in spellings}) == 1:
        return "only in spaces, hyphens or underscores (or case)"
    return "only in case, spaces, hyphens, underscores, invisible characters or ligatures"


def shown_name(name: str) -> str:
    """A class name quoted with what cannot be told apart written out: 'ice\\u200bhockey',
    '\\ufb01gure skating' (a ligature)."""
    return "'" + "".join(f"\\u{ord(ch):04x}" if _unseen(ch) else ch for ch in name) + "'"


def _unseen(ch: str) -> bool:
    if ch == " ":
        return False
    return unicodedata.category(ch) in ("Cf", "Zs", "Cc") or unicodedata.normalize("NFKC", ch) != ch


def class_name(text: str) -> str:
    """A class name as folders and users write it, in one form: 'pétanque' saved or typed on macOS
    (a decomposed é) is the same class as everywhere else (Unicode NFC). A folder name that is not
    UTF-8 (an old Latin-1 archive) becomes text with \\xe9 escapes: a label is written to JSON,
    ONNX metadata and every output, which take text only."""
    return unicodedata.normalize("NFC", files.printable_name(text))


def _split_folders(walker: _Walker, top: list[os.DirEntry[str]]) -> dict[str, os.DirEntry[str]]:
    """Split-named folders at the root that contain folders, keyed by split."""
    found: dict[str, os.DirEntry[str]] = {}
    for entry in top:
        split = SPLIT_FOLDERS.get(entry.name.lower())
        if split is None or not walker.is_dir(entry):
            continue
        try:
            with os.scandir(entry.path) as it:
                has_subfolder = any(_Walker.is_dir(e) and not is_hidden_name(e.name) for e in it)
        except OSError:
            has_subfolder = False
        if not has_subfolder:
            continue
        if split in found:
            raise SportsdetError(
                f"{walker.root}: both '{found[split].name}' and '{entry.name}' look like the {split} "
                "split; rename or move one of them so that each split has one folder"
            )
        found[split] = entry
    return found


def scan_dataset(root: str | Path, *, allow_photos: bool = False) -> ScanResult:
    """Find every image in a folder-per-class or split tree (see the module doc).

    Stable API used by `sportsdet train`: returns a `ScanResult` whose `records` are sorted by
    relative path. Raises `SportsdetError` when the path is missing, not a folder, or holds no
    class folders with images. With `allow_photos` (`data check`), a folder with no class
    folders but with photos is returned as layout "photos": every image below it, unlabelled.
    """
    path = _check_root(root)
    walker = _Walker(path)
    top = walker.entries(str(path))
    top.sort(key=lambda e: e.name)
    split_entries = _split_folders(walker, top)
    # train/polo/x -> ../../valid counted valid's photos in train as well: a leak between splits.
    walker.never_enter([entry.path for entry in split_entries.values()])
    split_keys = {split: files.folder_key(entry.path) for split, entry in split_entries.items()}
    records: list[ImageRecord] = []
    class_names: set[str] = set()
    unreadable: dict[str, str] = {}  # class folders that could not be listed: rel path -> class

    def collect(entries: list[os.DirEntry[str]], split: str | None) -> None:
        other_splits = frozenset(key for name, key in split_keys.items() if name != split and key is not None)
        class_entries = sorted(walker.class_folders(entries), key=lambda e: e.name)
        roots = {entry.path: files.folder_key(entry.path) for entry in class_entries}
        # A class folder that is a link to another class folder (a2 -> a) is that class, counted
        # once under its real name; it was reported as an empty class of its own.
        taken = {key for path, key in roots.items() if key is not None and not os.path.islink(path)}
        for class_entry in class_entries:
            key = roots[class_entry.path]
            if key is not None and os.path.islink(class_entry.path):
                if key in taken:
                    walker.skip(IGNORED_LINKED, class_entry.path)
                    continue
                taken.add(key)
            label = class_name(class_entry.name)
            class_names.add(label)
            others = {key for path, key in roots.items() if key is not None and path != class_entry.path}
            for image in walker.images_under(class_entry.path, others - {key}, other_splits):
                rel = Path(os.path.relpath(image, path)).as_posix()
                records.append(ImageRecord(Path(image), rel, label, split))
            if class_entry.path in walker.unreadable:  # the walker could not list it
                unreadable[walker.rel(class_entry.path)] = label

    if split_entries:
        layout = "split"
        chosen = {entry.path for entry in split_entries.values()}
        for entry in top:
            if entry.path in chosen:
                continue
            if walker.is_dir(entry):
                walker.skip(IGNORED_NOT_SPLIT, entry.path)
            else:
                walker.skip_loose_file(entry)
        for split in SPLIT_ORDER:
            if split in split_entries:
                collect(walker.entries(split_entries[split].path), split)
    else:
        layout = "folders"
        collect(top, None)

    if allow_photos and not records and not class_names:
        return _scan_photos(path)
    records.sort(key=lambda r: r.rel)
    with_images = {r.label for r in records}
    classes = sorted(with_images)
    empty = sorted(class_names - with_images - set(unreadable.values()))
    if not classes:
        what = "class folders with images" if class_names else "class folders"
        raise SportsdetError(
            f"{path}: no {what} found. Expected ROOT/<class name>/<images> or "
            "ROOT/{train,valid,test}/<class name>/<images> with .jpg/.png/... files "
            f"(skipped: {describe_ignored(walker.ignored) or 'nothing'})"
        )
    result = ScanResult(
        root=path,
        layout=layout,
        records=records,
        classes=classes,
        empty_classes=empty,
        unreadable_folders=dict(sorted(unreadable.items())),
        split_folders={s: e.name for s, e in split_entries.items()},
        ignored=dict(sorted(walker.ignored.items())),
        ignored_examples={k: v for k, v in sorted(walker.examples.items())},
        unsupported=sorted(walker.unsupported),
        not_regular=sorted(walker.not_regular),
        misnamed=dict(sorted(walker.misnamed.items())),
    )
    result.warnings = scan_warnings(result)
    return result


def _scan_photos(path: Path) -> ScanResult:
    """A plain folder of photos (no class folders): every image below it, with no label."""
    walker = _Walker(path)
    records = [
        ImageRecord(image, walker.rel(str(image)), "", None)
        for image in files.iter_image_files(path, on_skip=walker.on_skip, on_misnamed=walker.on_misnamed)
    ]
    if not records:
        raise SportsdetError(
            f"{path}: no images found (looked for .jpg, .png, ... and for photos by their content, "
            f"recursively; skipped: {describe_ignored(walker.ignored) or 'nothing'})"
        )
    result = ScanResult(
        root=path,
        layout="photos",
        records=records,
        classes=[],
        ignored=dict(sorted(walker.ignored.items())),
        ignored_examples={k: v for k, v in sorted(walker.examples.items())},
        unsupported=sorted(walker.unsupported),
        not_regular=sorted(walker.not_regular),
        misnamed=dict(sorted(walker.misnamed.items())),
    )
    result.warnings = scan_warnings(result)
    return result


def reason_in_words(reason: str) -> str:
    """A skip reason as people read it: "not an image name" (JSON keeps "not-an-image-name")."""
    return reason.replace("-", " ")


def describe_ignored(ignored: dict[str, int] | Counter[str]) -> str:
    """What a scan passed over, in words: "3 not an image name, 1 hidden"."""
    return ", ".join(f"{n} {reason_in_words(reason)}" for reason, n in sorted(ignored.items()))


def name_list(names: list[str], limit: int = 8) -> str:
    """'a', 'b' and 3 more: class names in a message."""
    shown = ", ".join(f"'{n}'" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def without_imbalance(warnings: list[str]) -> list[str]:
    """Scan warnings less the class-imbalance one (checking or evaluating photos, it is no fault)."""
    return [w for w in warnings if IMBALANCE_WARNING not in w]


def for_checking(warnings: list[str]) -> list[str]:
    """Scan warnings that concern checking or evaluating photos: not the imbalance nor a class of
    one photo, which only splitting and training mind (evaluate has no --classes to advise)."""
    return [w for w in without_imbalance(warnings) if SINGLE_PHOTO_WARNING not in w]


def scan_warnings(result: ScanResult, *, layout_hint: bool = True) -> list[str]:
    """Things a person should know before training on this tree (`layout_hint`: whether one class
    found may be a folder of class folders, which a class subset never says)."""
    warnings: list[str] = []
    if result.empty_classes:
        warnings.append(
            f"{len(result.empty_classes)} empty class folder(s) (no images, left out): "
            f"{name_list(result.empty_classes)}"
        )
    if result.unreadable_folders:  # they were called empty
        warnings.append(
            f"{len(result.unreadable_folders)} class folder(s) cannot be read (permission denied?), their "
            f"photos left out: {name_list(list(result.unreadable_folders))}; give read access (chmod) and "
            "run again"
        )
    if len(result.classes) == 1 and layout_hint:
        only = result.classes[0]
        warnings.append(
            f"only one class found ('{only}'); if '{only}' holds the class folders, "
            f"scan {result.root / only} instead"
        )
    for spellings in case_clashes(result.classes):
        warnings.append(
            f"class folders {', '.join(map(shown_name, spellings))} differ {how_they_differ(spellings)}: "
            "they are trained as different classes; rename one if they are one sport"
        )
    controlled = [c for c in result.classes if any(unicodedata.category(ch) == "Cc" for ch in c)]
    if controlled:  # `info --labels` printed 9 lines for 8 labels; tables showed two classes
        warnings.append(
            f"class folder(s) {', '.join(map(shown_name, controlled[:8]))} hold a line break, tab or other "
            "control character in the name: a label is one line of `info --labels`, CSV and tables; "
            "rename them"
        )
    split_named = [c for c in result.classes if c.lower() in SPLIT_FOLDERS]
    if result.layout != "split" and split_named:
        warnings.append(
            f"class folder(s) {name_list(split_named)} are named like splits but hold images directly; "
            "a split tree needs train/<class>/<images> (labels in a CSV are not read)"
        )
    counts = result.counts()
    lonely = [c for c in result.classes if counts["all"][c] == 1] if result.layout == "folders" else []
    if lonely:  # said by the scan, not first by `data split` or `train` refusing the tree
        warnings.append(
            f"{len(lonely)} class(es) {SINGLE_PHOTO_WARNING}: {name_list(lonely)}; a split needs at least 2 "
            "per class (one to train on, one to test): add photos, or leave them out with --classes"
        )
    if result.layout == "split":
        for split in result.splits:
            missing = [c for c in result.classes if counts[split][c] == 0]
            if missing:
                warnings.append(f"{len(missing)} class(es) have no images in {split}: {name_list(missing)}")
        # A split folder that is a link to nothing is said by the broken-link warning below.
        linked = result.ignored_examples.get(IGNORED_BROKEN_LINK, [])
        broken = {SPLIT_FOLDERS.get(rel.lower()) for rel in linked}
        for split in SPLIT_ORDER:
            if split not in result.split_folders and split not in broken:
                warnings.append(f"no {split} folder: the tree has {', '.join(result.split_folders.values())}")
    for split in result.splits:
        present = {c: n for c, n in counts[split].items() if n > 0}
        if len(present) < 2:
            continue
        most = max(present, key=lambda c: (present[c], c))
        least = min(present, key=lambda c: (present[c], c))
        ratio = present[most] / present[least]
        if ratio > IMBALANCE_RATIO:
            where = "" if split == "all" else f" in {split}"
            warnings.append(
                f"{IMBALANCE_WARNING}{where}: '{most}' has {present[most]} images, '{least}' has "
                f"{present[least]} ({ratio:.1f}x); training can weigh every class alike "
                "(`--set class_weight=balanced`)"
            )
    unsupported = result.ignored.get(IGNORED_UNSUPPORTED, 0)
    if unsupported:
        examples = ", ".join(result.ignored_examples.get(IGNORED_UNSUPPORTED, []))
        warnings.append(
            f"{unsupported} file(s) in picture formats sportsdet cannot read were skipped "
            f"(e.g. {examples}); convert them to JPEG or PNG to use them"
        )
    not_split = result.ignored.get(IGNORED_NOT_SPLIT, 0)
    if not_split:
        names = ", ".join(f"'{n}'" for n in result.ignored_examples.get(IGNORED_NOT_SPLIT, []))
        warnings.append(
            f"{not_split} folder(s) beside the split folders were skipped ({names}); "
            "move their images into train/valid/test to use them"
        )
    if result.misnamed:
        rel, image_format = next(iter(result.misnamed.items()))
        warnings.append(
            f"{len(result.misnamed)} image(s) with a misleading name are used as photos (e.g. '{rel}' is "
            f"a {image_format}); `sportsdet data check --rename-misnamed` gives them image names"
        )
    broken = result.ignored.get(IGNORED_BROKEN_LINK, 0)
    if broken:
        shown = result.ignored_examples[IGNORED_BROKEN_LINK]
        examples = ", ".join(f"{rel} -> {_link_target(result.root / rel)}" for rel in shown)
        warnings.append(
            f"{broken} link(s) lead to nothing and were skipped, with whatever they held (e.g. {examples}); "
            "mount or restore what they point to, or remove the links"
        )
    loose = result.ignored.get(IGNORED_LOOSE, 0)
    if loose:
        warnings.append(
            f"{loose} image(s) lie outside any class folder and were skipped "
            f"(e.g. {', '.join(result.ignored_examples.get(IGNORED_LOOSE, []))})"
        )
    return warnings


_SKIP_REASONS = {
    files.SKIP_HIDDEN: IGNORED_HIDDEN,
    files.SKIP_NOT_REGULAR: IGNORED_NOT_REGULAR,
    files.SKIP_UNREADABLE: IGNORED_UNREADABLE,
    files.SKIP_SEEN: IGNORED_LINKED,
    files.SKIP_BROKEN_LINK: IGNORED_BROKEN_LINK,
}
