"""Train / valid / test splits, written down as a manifest so evaluate and resume reuse them.

Strategies (the text a user passes to `--split`):

- `official`                  the tree's own train/valid|val/test folders;
- `random:TEST[,VALID]`       seeded and stratified: TEST of each class goes to test, then VALID
                              (default 0.1, may be 0) of what is left goes to valid;
                              `random:0.2` is the notebook's 80/20;
- `per-class:TRAIN,TEST[,VALID]`  exactly TRAIN train and TEST test images per class (the UIUC
                              Sports protocol is per-class:70,60); VALID defaults to up to 10% of
                              TRAIN, taken from the images left over.

On a split tree, `random` and `per-class` pool all its images first. Each class is shuffled by
ranking its files on a hash of (seed, class, path), so a class's split does not change when other
classes are added or removed, nor with the order the file system lists files. Copies of one
photo (identical, or resized and re-saved) are then moved into one split (`keep_copies_together`),
so a test photo is never a copy of a training photo.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from sportsdet.data.discover import (
    SPLIT_FOLDERS,
    SPLIT_ORDER,
    ImageRecord,
    ScanResult,
    class_name,
    scan_dataset,
)
from sportsdet.errors import SportsdetError, quoted_with_hint
from sportsdet.files import photo_digests, write_json

SPLIT_FORMAT = "sportsdet-split/1"
MULTI_SOURCE_FORMAT = "sportsdet-split/2"  # entries [path, label, source] and a "sources" table
SPLITS = SPLIT_ORDER  # ("train", "valid", "test")
DEFAULT_RANDOM_VALID = 0.1  # of the images left after the test share is taken
DEFAULT_PER_CLASS_VALID = 0.1  # of TRAIN, from the leftovers
_STRATEGY_HELP = "use 'official', 'random:TEST[,VALID]' (e.g. random:0.2) or 'per-class:TRAIN,TEST[,VALID]'"


@dataclass(frozen=True)
class SplitStrategy:
    """A parsed `--split` value."""

    kind: str  # official | random | per-class
    test: float | int = 0
    valid: float | int | None = None  # None: the strategy's default
    train: int = 0  # per-class only

    @property
    def text(self) -> str:
        """Canonical text form, as stored in manifests."""
        if self.kind == "official":
            return "official"
        valid = "" if self.valid is None else f",{_fmt(self.valid)}"
        if self.kind == "random":
            return f"random:{_fmt(self.test)}{valid}"
        return f"per-class:{self.train},{self.test}{valid}"


def _fmt(value: float | int) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def parse_split_strategy(text: str | SplitStrategy) -> SplitStrategy:
    """Parse 'official', 'random:0.2[,0.1]' or 'per-class:70,60[,7]'; clear errors otherwise."""
    if isinstance(text, SplitStrategy):
        return text
    raw = str(text).strip()
    kind, _, args = raw.partition(":")
    kind = kind.strip().lower().replace("_", "-")
    parts = [p.strip() for p in args.split(",")] if args.strip() else []
    if kind == "official":
        if parts:
            raise SportsdetError(f"--split {raw!r}: 'official' takes no numbers; {_STRATEGY_HELP}")
        return SplitStrategy("official")
    if kind == "random":
        if not 1 <= len(parts) <= 2:
            raise SportsdetError(
                f"--split {raw!r}: expected random:TEST or random:TEST,VALID; {_STRATEGY_HELP}"
            )
        test = _fraction(raw, "TEST", parts[0], allow_zero=False)
        valid = _fraction(raw, "VALID", parts[1], allow_zero=True) if len(parts) == 2 else None
        return SplitStrategy("random", test=test, valid=valid)
    if kind in ("per-class", "perclass"):
        if not 2 <= len(parts) <= 3:
            raise SportsdetError(
                f"--split {raw!r}: expected per-class:TRAIN,TEST or per-class:TRAIN,TEST,VALID "
                "(images per class, e.g. per-class:70,60)"
            )
        train = _count(raw, "TRAIN", parts[0], allow_zero=False)
        test = _count(raw, "TEST", parts[1], allow_zero=True)
        valid = _count(raw, "VALID", parts[2], allow_zero=True) if len(parts) == 3 else None
        return SplitStrategy("per-class", test=test, valid=valid, train=train)
    if Path(raw).expanduser().is_file():  # a saved split under another name: said, not "unknown strategy"
        raise SportsdetError(f"--split {raw!r}: a saved split is read from a .json file; name it so")
    if raw and Path(raw).expanduser().is_dir():  # a run folder: its split.json was meant
        raise SportsdetError(f"--split {raw!r}: a folder; give the saved split in it (e.g. {raw}/split.json)")
    suffix = Path(raw).suffix  # '.txt' names a file; 'rnd:0.2' has '.2'
    if "/" in raw or suffix[1:2].isalpha():  # a file name, not a misspelt strategy (shown as 's-data.txt')
        raise SportsdetError(
            f"--split {raw!r}: no such file; a saved split is a .json file from `sportsdet data split "
            f"--out`, or give a strategy: {_STRATEGY_HELP.removeprefix('use ')}"
        )
    typed = raw.partition(":")[0].strip()
    raise SportsdetError(f"--split {raw!r}: unknown strategy {typed!r}; {_STRATEGY_HELP}")


def _fraction(raw: str, what: str, value: str, *, allow_zero: bool) -> float:
    try:
        number = float(value)
    except ValueError:
        raise SportsdetError(
            f"--split {raw!r}: {what} must be a fraction such as 0.2, got {value!r}"
        ) from None
    low_ok = number >= 0 if allow_zero else number > 0
    if not (low_ok and number < 1) or math.isnan(number):
        bound = "0 <= {} < 1" if allow_zero else "0 < {} < 1"
        raise SportsdetError(
            f"--split {raw!r}: {what} must be a fraction with {bound.format(what)} "
            f"(e.g. random:0.2 for 20% test), got {value}"
        )
    return number


def _count(raw: str, what: str, value: str, *, allow_zero: bool) -> int:
    if not re.fullmatch(r"\d+", value):
        raise SportsdetError(
            f"--split {raw!r}: {what} must be a whole number of images per class, got {value!r}"
        )
    number = int(value)
    if number == 0 and not allow_zero:
        raise SportsdetError(f"--split {raw!r}: {what} must be at least 1")
    return number


@dataclass
class SplitManifest:
    """Which file goes to which split, with which label. Saved as `split.json`.

    `splits[name]` lists (relative POSIX path, label) pairs; `classes` is the label order.
    A multi-source manifest (sportsdet.data.sources) also has `sources` (name -> root, strategy,
    label map) and `item_sources[name]`, the source of each entry of `splits[name]`; `root` is
    then the folder that holds every source. `digests`: each photo's content hash by path
    (`files.photo_digest`), written by `save`: a reused split knows a renamed photo by it.
    """

    root: Path
    strategy: str
    seed: int
    classes: list[str]
    splits: dict[str, list[tuple[str, str]]]
    notes: list[str] = field(default_factory=list)
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    item_sources: dict[str, list[str]] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)

    @property
    def data_roots(self) -> list[Path]:
        """The folders that hold the photos: every source's root, or `root` for a single source
        (what a suggested `sportsdet data check ...` command names; `root` of a multi-source
        manifest is only their common parent)."""
        if self.sources:
            return [Path(info["root"]) for info in self.sources.values()]
        return [self.root]

    def sources_of(self, split: str) -> list[str]:
        """The source of every item of a split (empty for a single-source manifest)."""
        return list(self.item_sources.get(split, []))

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """Images per split per class (every class listed)."""
        table = {}
        for split in SPLITS:
            per_class = dict.fromkeys(self.classes, 0)
            for _, label in self.splits.get(split, []):
                per_class[label] += 1
            table[split] = per_class
        return table

    def items(self, split: str, source: str | None = None) -> list[tuple[Path, int]]:
        """(absolute path, label index) for every image of a split, in manifest order; with
        `source`, only those that came from that source of a multi-source manifest."""
        if split not in SPLITS:
            raise SportsdetError(f"split.json: unknown split {split!r}; use one of {', '.join(SPLITS)}")
        index = {name: i for i, name in enumerate(self.classes)}
        entries = self.splits.get(split, [])
        if source is not None:
            if not self.item_sources:
                raise SportsdetError(f"split.json: a single-source split records no source {source!r}")
            origins = self.item_sources.get(split, [])
            entries = [entry for entry, origin in zip(entries, origins, strict=True) if origin == source]
        return [(self.root / rel, index[label]) for rel, label in entries]

    def missing_files(self, splits: Iterable[str] = SPLITS) -> list[str]:
        """Relative paths in the manifest (of `splits`) not on disk under `root` (moved or deleted)."""
        return [
            rel
            for split in splits
            for rel, _ in self.splits.get(split, [])
            if not (self.root / rel).is_file()
        ]

    def with_root(self, root: str | Path) -> SplitManifest:
        """The same split for a copy of the data that lives somewhere else."""
        return SplitManifest(
            Path(root).resolve(),
            self.strategy,
            self.seed,
            list(self.classes),
            {k: list(v) for k, v in self.splits.items()},
            list(self.notes),
            dict(self.sources),
            {k: list(v) for k, v in self.item_sources.items()},
            dict(self.digests),
        )

    def to_dict(self) -> dict[str, Any]:
        def entries(split: str) -> list[list[str]]:
            pairs = self.splits.get(split, [])
            if not self.sources:
                return [[rel, label] for rel, label in pairs]
            origins = self.sources_of(split)
            return [[rel, label, src] for (rel, label), src in zip(pairs, origins, strict=True)]

        data: dict[str, Any] = {
            "format": MULTI_SOURCE_FORMAT if self.sources else SPLIT_FORMAT,
            "root": str(self.root),
            "strategy": self.strategy,
            "seed": self.seed,
            "classes": list(self.classes),
            "splits": {s: entries(s) for s in SPLITS},
            "counts": self.counts,
        }
        if self.sources:
            data["sources"] = self.sources
        if self.notes:
            data["notes"] = list(self.notes)
        if self.digests:
            data["digests"] = dict(sorted(self.digests.items()))
        return data

    def hash_photos(self) -> SplitManifest:
        """Fill `digests` with the content hash of every photo listed (those not known yet)."""
        listed = [rel for split in SPLITS for rel, _ in self.splits.get(split, [])]
        unknown = [rel for rel in listed if rel not in self.digests]
        for rel, digest in zip(unknown, photo_digests([self.root / rel for rel in unknown]), strict=True):
            if digest is not None:  # a photo gone meanwhile: known by its name alone
                self.digests[rel] = digest
        self.digests = {rel: self.digests[rel] for rel in listed if rel in self.digests}
        return self

    def save(self, path: str | Path) -> Path:
        """Write the manifest as JSON, atomically (a crash leaves the old file or none), with the
        content hash of every photo listed."""
        return write_json(path, self.hash_photos().to_dict())

    @classmethod
    def load(cls, path: str | Path) -> SplitManifest:
        """Read and validate a manifest; any problem raises SportsdetError naming the file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SportsdetError(
                f"{path}: split manifest not found; make one with `sportsdet data split`"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SportsdetError(f"{path}: cannot read split manifest ({exc})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SportsdetError(
                f"{path}: split manifest is not valid JSON ({exc}); recreate it with `sportsdet data split`"
            ) from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "split manifest") -> SplitManifest:
        def bad(problem: str) -> SportsdetError:
            return SportsdetError(f"{source}: {problem}; recreate it with `sportsdet data split`")

        if not isinstance(data, dict):
            raise bad("expected a JSON object")
        if data.get("format") not in (SPLIT_FORMAT, MULTI_SOURCE_FORMAT):
            raise bad(
                f"format is {data.get('format')!r}, expected {SPLIT_FORMAT!r} or {MULTI_SOURCE_FORMAT!r}"
            )
        multi = data["format"] == MULTI_SOURCE_FORMAT
        sources = data.get("sources") if multi else {}
        if multi and (not isinstance(sources, dict) or not sources):
            raise bad("a multi-source manifest needs a 'sources' table")
        tables = sources.values() if multi else []
        if not all(isinstance(info, dict) and isinstance(info.get("root"), str) for info in tables):
            raise bad("each entry of 'sources' must be a table with the source's 'root' folder")
        for key, kind in (
            ("root", str),
            ("strategy", str),
            ("seed", int),
            ("classes", list),
            ("splits", dict),
        ):
            if key not in data:
                raise bad(f"missing field {key!r}")
            if not isinstance(data[key], kind) or (kind is int and isinstance(data[key], bool)):
                raise bad(f"field {key!r} must be a {kind.__name__}")
        classes = data["classes"]
        if not classes or not all(isinstance(c, str) and c for c in classes):
            raise bad("'classes' must be a non-empty list of names")
        if len(set(classes)) != len(classes):
            raise bad("'classes' lists a name twice")
        try:
            if not multi:  # a multi-source manifest's strategy describes each source's
                parse_split_strategy(data["strategy"])
        except SportsdetError as exc:
            raise bad(f"bad 'strategy': {exc}") from None
        unknown = set(data["splits"]) - set(SPLITS)
        if unknown:
            raise bad(f"unknown split(s) {sorted(unknown)}")
        known = set(classes)
        seen: dict[str, str] = {}
        splits: dict[str, list[tuple[str, str]]] = {}
        item_sources: dict[str, list[str]] = {}
        width = 3 if multi else 2
        shape = "[relative path, label, source]" if multi else "[relative path, label]"
        for split in SPLITS:
            entries = data["splits"].get(split, [])
            if not isinstance(entries, list):
                raise bad(f"splits.{split} must be a list")
            pairs = []
            for entry in entries:
                if not (
                    isinstance(entry, list) and len(entry) == width and all(isinstance(x, str) for x in entry)
                ):
                    raise bad(f"splits.{split} holds {entry!r}; each entry must be {shape}")
                rel, label = entry[:2]
                if multi:
                    if entry[2] not in sources:
                        raise bad(f"{rel!r} in splits.{split} names source {entry[2]!r}, not in 'sources'")
                    item_sources.setdefault(split, []).append(entry[2])
                pure = PurePosixPath(rel)
                if not rel or pure.is_absolute() or ".." in pure.parts or "\\" in rel:
                    raise bad(f"path {rel!r} in splits.{split} must be relative to root, with '/' separators")
                if str(pure) != rel or any(ch in rel for ch in "\0\n\r"):
                    # './a.jpg' or 'a//b.jpg' named a photo listed as 'a.jpg' (twice, unnoticed) and was
                    # called "gone from DATA" though it was there.
                    raise bad(f"path {rel!r} in splits.{split} must be written plainly, as {str(pure)!r}")
                if label not in known:
                    raise bad(f"label {label!r} of {rel!r} is not in 'classes'")
                if rel in seen:
                    raise bad(f"{rel!r} is in both {seen[rel]} and {split}")
                seen[rel] = split
                pairs.append((rel, label))
            splits[split] = pairs
        manifest = cls(
            Path(data["root"]),
            data["strategy"],
            data["seed"],
            list(classes),
            splits,
            [str(n) for n in data.get("notes", [])],
            dict(sources),
            item_sources,
            _digests_of(data.get("digests", {}), seen, bad),
        )
        if "counts" in data and data["counts"] != manifest.counts:
            raise bad("'counts' do not match the listed files (the file was edited by hand?)")
        return manifest


def _digests_of(value: Any, listed: dict[str, str], bad: Callable[[str], SportsdetError]) -> dict[str, str]:
    """A split file's "digests" (path -> 16 hex digits of its SHA-256), of listed photos only."""
    if not isinstance(value, dict) or not all(
        isinstance(rel, str) and isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{16}", digest)
        for rel, digest in value.items()
    ):
        raise bad("'digests' must map each listed path to 16 hex digits")
    unknown = next((rel for rel in value if rel not in listed), None)
    if unknown is not None:
        raise bad(f"'digests' names {unknown!r}, which no split lists")
    return dict(value)


def _shuffled(records: list[ImageRecord], seed: int, label: str) -> list[ImageRecord]:
    """A seeded shuffle of one class: each file is ranked by a hash of (seed, class, path).

    Hash ranking needs no random-number generator, so the split is the same on every machine and
    with every NumPy version, and does not depend on which other files or classes exist.
    """

    def rank(record: ImageRecord) -> bytes:
        # surrogateescape: a file name that is not UTF-8 is hashed as its bytes
        text = f"{int(seed)}\0{label}\0{record.rel}"
        return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()

    return sorted(records, key=rank)


def class_list(classes: str | Iterable[str]) -> list[str]:
    """The `--classes` names (a string: separated by commas), each once; an empty list is an error."""
    wanted = [class_name(c.strip()) for c in (classes.split(",") if isinstance(classes, str) else classes)]
    wanted = list(dict.fromkeys(c for c in wanted if c))
    if not wanted:
        raise SportsdetError("--classes: no class names given; list them separated by commas")
    return wanted


def _select_classes(scan: ScanResult, classes: str | Iterable[str] | None) -> list[str]:
    if classes is None:
        return list(scan.classes)
    wanted = class_list(classes)
    unknown = [c for c in wanted if c not in scan.classes]
    if unknown:
        hints = [quoted_with_hint(name, scan.classes) for name in unknown]
        raise SportsdetError(
            f"{scan.root}: unknown class(es) {', '.join(hints)}; the tree has {len(scan.classes)} classes "
            "(see `sportsdet data scan`)"
        )
    return sorted(wanted)


def make_split(
    scan_or_root: ScanResult | str | Path,
    strategy: str | SplitStrategy = "official",
    seed: int = 0,
    classes: str | Iterable[str] | None = None,
) -> SplitManifest:
    """Split a scanned tree (or a folder, scanned first) into train/valid/test.

    Stable API used by `sportsdet train`. `strategy` is the `--split` text (see the module doc),
    `classes` restricts to a subset, as names or one comma-separated string (label order stays
    sorted). Deterministic for a given seed.
    Raises SportsdetError for a bad strategy, unknown classes, or classes too small for it.
    """
    scan = scan_or_root if isinstance(scan_or_root, ScanResult) else scan_dataset(scan_or_root)
    parsed = parse_split_strategy(strategy)
    labels = _select_classes(scan, classes)
    by_class: dict[str, list[ImageRecord]] = {c: [] for c in labels}
    for record in scan.records:
        if record.label in by_class:
            by_class[record.label].append(record)

    notes: list[str] = []
    chosen: dict[str, list[ImageRecord]] = {s: [] for s in SPLITS}
    if parsed.kind == "official":
        _official(scan, by_class, seed, chosen, notes)
    else:
        for label in labels:
            parts = (_random if parsed.kind == "random" else _per_class)(
                by_class[label], label, parsed, seed, scan.root
            )
            for split, records in zip(SPLITS, parts, strict=True):
                chosen[split].extend(records)

    splits = {s: [(r.rel, r.label) for r in sorted(chosen[s], key=lambda r: r.rel)] for s in SPLITS}
    if not splits["train"]:
        raise SportsdetError(f"{scan.root}: the split {parsed.text!r} leaves no training images")
    return SplitManifest(scan.root, parsed.text, int(seed), labels, splits, notes)


def keep_copies_together(
    manifest: SplitManifest, near: dict[str, str | None] | None = None
) -> SplitManifest:
    """The split with every group of copies in one split, where a seeded draw placed them.

    A random or per-class split draws each photo alone, so a photo saved twice (byte copies, or
    near copies: resized or re-saved, `data.check`) can land in train and in test, and the test
    then scores a photo the model trained on. Each such group moves whole into the split of one
    of its photos, chosen by a hash of (seed, path): as if the group were drawn as one photo
    (into another split instead when the move would take a class's last photos out of one:
    train first, then test, then valid).
    Photos an official split placed (a source's own train/valid/test folders) never move; the
    others of their group join them. Only the validation photos an official split drew from a
    train folder (a tree without a valid folder) move, between train and valid. Copies that
    cannot be brought together stay where they are (training warns about them). `near`: each
    photo's near-copy hash by path, when already made (hashed here otherwise, only if some photo
    may move).
    """
    from sportsdet.data.check import manifest_copies
    from sportsdet.near_copies import near_hashes

    placed = {
        rel: (split, label, origin)
        for split in SPLITS
        for (rel, label), origin in zip(
            manifest.splits.get(split, []),
            manifest.item_sources.get(split) or [""] * len(manifest.splits.get(split, [])),
            strict=True,
        )
    }
    may_go = _destinations(manifest, placed)
    if all(len(where) == 1 for where in may_go.values()):
        return manifest
    if near is None:
        near = near_hashes(manifest.root / rel for rel in placed)
    counts = Counter((split, label) for split, label, _ in placed.values())
    moved = groups = 0
    for group in _merged([group.files for group in manifest_copies(manifest, near)]):
        # The splits every copy of the group may go to; an official photo's own split, if it has one.
        reachable = set(SPLITS).intersection(*(may_go[rel] for rel in group))
        if len({placed[rel][0] for rel in group}) < 2 or not reachable:
            continue  # together already, or no split they can all go to (training warns)
        candidates = [rel for rel in group if placed[rel][0] in reachable]
        drawn = placed[min(candidates, key=lambda rel: _rank(manifest.seed, rel))][0]
        target = _target_emptying_nothing(group, placed, counts, drawn, reachable)
        if target is None:
            if "train" not in reachable:  # an official split holds a copy elsewhere: leave it
                continue
            target = "train"  # a class of one photo saved many times: its training photos come first
        movers = [rel for rel in group if placed[rel][0] != target]
        for rel in movers:
            counts[placed[rel][:2]] -= 1
            counts[target, placed[rel][1]] += 1
            placed[rel] = (target, *placed[rel][1:])
        moved, groups = moved + len(movers), groups + 1
    if not moved:
        return manifest
    ordered = sorted(placed.items())
    splits = {s: [(rel, label) for rel, (split, label, _) in ordered if split == s] for s in SPLITS}
    origins = {s: [origin for _, (split, _, origin) in ordered if split == s] for s in SPLITS}
    note = (
        f"{moved} photo(s) moved into the split of their copies ({groups} group(s) of identical or "
        "resized/re-saved photos), so that no photo is scored as new while a copy of it trains"
    )
    return replace(
        manifest,
        splits=splits,
        item_sources=origins if manifest.item_sources else {},
        notes=[*manifest.notes, note],
    )


def _target_emptying_nothing(
    group: list[str],
    placed: dict[str, tuple[str, str, str]],
    counts: Counter,
    drawn: str,
    reachable: set[str],
) -> str | None:
    """The split a group of copies moves to: the drawn one, unless the move takes the last photos
    of a class out of a split (a class whose two test photos were copies lost its test share),
    then train, test, valid: the first that empties nothing; None if each empties something."""
    for target in dict.fromkeys((drawn, "train", "test", "valid")):
        leaving = Counter(placed[rel][:2] for rel in group if placed[rel][0] != target)
        if target in reachable and all(counts[key] > n for key, n in leaving.items()):
            return target
    return None


def _destinations(
    manifest: SplitManifest, placed: dict[str, tuple[str, str, str]]
) -> dict[str, frozenset[str]]:
    """The splits each photo may be moved to (its own alone: it stays where it is)."""
    anywhere = frozenset(SPLITS)
    drawn: dict[str, bool] = {}  # source -> placed by a seeded draw
    carved: set[str] = set()  # official sources whose valid photos were drawn from a train folder
    for rel, (split, _, origin) in placed.items():
        if origin not in drawn:
            drawn[origin] = _is_drawn(manifest, origin)
        if split == "valid" and not drawn[origin] and origin not in carved and (
            _folder_split(manifest, rel, origin) == "train"
        ):
            carved.add(origin)
    return {
        rel: anywhere if drawn[origin]
        else frozenset(("train", "valid")) if origin in carved and split in ("train", "valid")
        else frozenset((split,))
        for rel, (split, _, origin) in placed.items()
    }  # fmt: skip


def _is_drawn(manifest: SplitManifest, source: str) -> bool:
    """Whether a seeded draw placed this source's photos (random or per-class), not its folders."""
    strategy = manifest.sources[source]["strategy"] if manifest.sources else manifest.strategy
    try:
        return parse_split_strategy(strategy).kind != "official"
    except SportsdetError:  # a strategy this version does not know: leave its photos where they are
        return False


def _folder_split(manifest: SplitManifest, rel: str, source: str) -> str | None:
    """The split named by the folder a photo lives in (train/, val/, ...), None if none."""
    root = Path(manifest.sources[source]["root"]) if manifest.sources else manifest.root
    try:
        first = (manifest.root / rel).relative_to(root).parts[0]
    except (ValueError, IndexError):
        return None
    return SPLIT_FOLDERS.get(first.lower())


def _rank(seed: int, rel: str) -> bytes:
    return hashlib.sha256(f"{int(seed)}\0{rel}".encode("utf-8", "surrogateescape")).digest()


def _merged(groups: list[list[str]]) -> list[list[str]]:
    """Groups that share a photo, merged (a byte-copy group inside a near-copy group)."""
    parent: dict[str, str] = {}

    def root(rel: str) -> str:
        while parent.setdefault(rel, rel) != rel:
            parent[rel] = parent[parent[rel]]
            rel = parent[rel]
        return rel

    for group in groups:
        for rel in group:
            parent[root(rel)] = root(group[0])
    merged: dict[str, list[str]] = {}
    for rel in parent:
        merged.setdefault(root(rel), []).append(rel)
    return list(merged.values())


def is_saved_split(text: str | Path | None) -> bool:
    """Whether a `--split` value names a saved manifest (a .json file) rather than a strategy."""
    return text is not None and str(text).strip().lower().endswith(".json")


def reuse_saved_split(
    path: str | Path,
    root: Path,
    photos: Iterable[tuple[str, str, str]],
    classes: str | Iterable[str] | None = None,
    sources: dict[str, dict[str, Any]] | None = None,
) -> SplitManifest:
    """The split saved in `path` (`data split --out`, or another run's split.json) for the photos
    DATA holds now, so that runs made later are scored on the very same test photos.

    `photos`: (path relative to `root`, label, source name; "" for one folder) of every photo found
    now; `sources`: the multi-source table of DATA (name -> root, map; strategy and classes are
    filled in here). Photos the saved split lists but DATA no longer holds, and photos added since,
    are left out and said in the notes. DATA of other sources, or a photo whose class differs, is
    an error naming the file.
    """
    path = Path(path)
    saved = SplitManifest.load(path)
    sources = sources or {}

    def described(names: Iterable[str]) -> str:
        names = sorted(names)
        return f"the sources {', '.join(names)}" if names else "one folder"

    if sorted(saved.sources) != sorted(sources):
        # One folder with a --map (or in a dataset file) is a source of its own: the same folder.
        one_source = {len(saved.sources), len(sources)} == {0, 1}
        hint = (
            "give the same DATA as when the split was made (the same folder or dataset file, and the "
            "same --map)" if one_source else "give the same DATA"
        )
        raise SportsdetError(
            f"{path}: the saved split is of {described(saved.sources)}, but DATA is "
            f"{described(sources)}; {hint}, or leave out --split to make a new split"
        )
    wanted = set(saved.classes)
    if classes is not None:
        names = class_list(classes)  # none given is that error, not "no training photo in DATA"
        unknown = [c for c in names if c not in wanted]
        if unknown:
            raise SportsdetError(
                f"--classes: {', '.join(quoted_with_hint(c, saved.classes) for c in unknown)} is not in the "
                f"saved split {path}"
            )
        wanted = set(names)
    here = {(rel, source): label for rel, label, source in photos}
    where_now = _moved_sources(saved, root, sources)
    splits: dict[str, list[tuple[str, str]]] = {s: [] for s in SPLITS}
    origins: dict[str, list[str]] = {s: [] for s in SPLITS}
    listed: set[tuple[str, str]] = set()
    kept: list[_Placed] = []
    missing: list[_Placed] = []
    relabelled: list[str] = []
    for split in SPLITS:
        entries = saved.splits.get(split, [])
        for (saved_rel, label), source in zip(
            entries, saved.sources_of(split) or [""] * len(entries), strict=True
        ):
            rel = where_now(saved_rel, source)
            listed.add((rel, source))
            if label not in wanted:
                continue
            now = here.get((rel, source))
            if now is None:
                missing.append(_Placed(split, rel, label, source, saved.digests.get(saved_rel)))
            elif now != label:
                relabelled.append(f"{rel} is '{label}' there, '{now}' here")
            else:
                kept.append(_Placed(split, rel, label, source, saved.digests.get(saved_rel)))
    if relabelled:
        raise SportsdetError(
            f"{path}: {len(relabelled)} photo(s) have another class in DATA than in the saved split "
            f"(e.g. {relabelled[0]}); give the same --map, or leave out --split to make a new split"
        )
    unlisted = [(rel, label, source) for (rel, source), label in here.items() if (rel, source) not in listed]
    found = _by_content(root, kept, missing, [entry for entry in unlisted if entry[1] in wanted])
    for entry in found.kept + found.renamed:
        splits[entry.split].append((entry.rel, entry.label))
        origins[entry.split].append(entry.source)
    if not splits["train"]:
        elsewhere = Path(saved.root).resolve() != Path(root).resolve()
        raise SportsdetError(
            f"{path}: none of the saved split's training photos is in DATA ({root}); "
            + (f"it was made for {saved.root}: train on that folder, or " if elsewhere else "they are gone: ")
            + "leave out --split to make a new split"
        )
    notes = [f"the split saved in {path} ({saved.strategy}, seed {saved.seed})"]
    notes += found.notes()
    taken = {(entry.rel, entry.source) for entry in found.renamed}
    added = sorted(rel for rel, label, source in unlisted if label in wanted and (rel, source) not in taken)
    if added:
        notes.append(
            f"{len(added)} photo(s) in DATA are not in the saved split (e.g. {added[0]}); left out "
            "(leave out --split to make a new split that uses them)"
        )
    new_classes = sorted(set(here.values()) - set(saved.classes))
    if new_classes:
        notes.append(
            f"class(es) {', '.join(new_classes)} in DATA are not in the saved split; left out "
            "(leave out --split to make a new split that has them)"
        )
    present = sorted({label for split in SPLITS for _, label in splits[split]})
    vanished = sorted(set(saved.classes) & wanted - set(present))
    if vanished:  # only "N classes" said it: the class was gone from the run without a word
        notes.append(
            f"class(es) {', '.join(map(repr, vanished))} have none of the saved split's photos left in DATA: "
            "left out of this run; leave out --split to make a new split"
        )
    for split in SPLITS:  # a class whose photos of one split are all gone: never learnt, or never tested
        had = {label for _, label in saved.splits.get(split, [])}
        emptied = sorted(had & set(present) - {label for _, label in splits[split]})
        if emptied:
            notes.append(
                f"class(es) {', '.join(map(repr, emptied))} have no {split} photos left in DATA (the saved "
                f"split's are gone): {_EMPTIED[split]}; leave out --split to make a new split"
            )
    table = {}
    for name, info in sources.items():
        pairs = ((label, o) for s in SPLITS for (_, label), o in zip(splits[s], origins[s], strict=True))
        classes_here = {label for label, origin in pairs if origin == name}
        table[name] = {
            **info,
            "strategy": saved.sources[name].get("strategy", saved.strategy),
            "classes": sorted(classes_here),
        }
    # The hashes just checked or made, so that saving this split does not read every photo again.
    digests = {entry.rel: entry.digest for entry in found.kept + found.renamed if entry.digest}
    return SplitManifest(
        root, saved.strategy, saved.seed, present, splits, notes, table, origins if table else {}, digests
    )


@dataclass
class _Placed:
    """A photo of a saved split: its split, its path now, class, source and saved content hash."""

    split: str
    rel: str
    label: str
    source: str
    digest: str | None


@dataclass
class _ByContent:
    kept: list[_Placed]  # at their saved path, the same photo (or a split file without hashes)
    renamed: list[_Placed]  # found again by content under another name: their saved split kept
    gone: list[_Placed]  # nowhere in DATA
    replaced: list[_Placed]  # their saved path holds another photo of the split now
    resaved: list[_Placed] = field(default_factory=list)  # other bytes under their name: kept (in `kept`)

    def notes(self) -> list[str]:
        said = []
        if self.resaved:
            said.append(
                f"{len(self.resaved)} photo(s) of the saved split have other bytes now (e.g. "
                f"{self.resaved[0].rel}: re-saved or re-compressed since?): kept in their split, known by "
                "name"
            )
        if self.renamed:
            said.append(
                f"{len(self.renamed)} photo(s) of the saved split were renamed or moved since (found by "
                f"content, e.g. {self.renamed[0].rel}): each kept in its split"
            )
        lost = self.replaced + self.gone
        if lost:
            named = f"; {len(self.replaced)} of them by a name another photo has now" if self.replaced else ""
            said.append(
                f"{len(lost)} photo(s) of the saved split are gone from DATA (e.g. {lost[0].rel}{named}); "
                "left out"
            )
        return said


def _by_content(
    root: Path, kept: list[_Placed], missing: list[_Placed], unlisted: list[tuple[str, str, str]]
) -> _ByContent:
    """Which saved photos are still what the split says, by their content hashes: a folder
    renumbered since (photo_04.jpg now named photo_03.jpg) moved test photos into training under
    the names of training photos, without a word. A photo found again under another name keeps
    its split; a saved path that holds another photo now is left out. A split file of an older
    sportsdet has no hashes: its photos are known by name alone."""
    if not any(entry.digest for entry in kept + missing):
        return _ByContent(kept, [], missing, [])
    now = photo_digests([root / entry.rel for entry in kept])
    of_the_split = {entry.digest for entry in kept + missing if entry.digest}
    same, resaved, replaced = [], [], []
    for entry, digest in zip(kept, now, strict=True):
        if entry.digest in (None, digest):
            same.append(entry)
        elif digest in of_the_split:  # another photo of the split has this name now (renumbered)
            replaced.append(entry)
        else:  # new bytes under its name (re-compressed, metadata stripped): the same photo, kept
            resaved.append(replace(entry, digest=digest))
    # The photos to look for: gone or replaced ones; where to look: unlisted paths and replaced ones.
    wanted: dict[tuple[str, str, str], list[_Placed]] = {}
    for entry in missing + replaced:
        if entry.digest:
            wanted.setdefault((entry.digest, entry.label, entry.source), []).append(entry)
    candidates = unlisted + [(entry.rel, entry.label, entry.source) for entry in replaced]
    renamed: list[_Placed] = []
    if wanted and candidates:
        hashes = photo_digests([root / rel for rel, _, _ in candidates])
        for (rel, label, source), digest in zip(candidates, hashes, strict=True):
            waiting = wanted.get((digest or "", label, source))
            if waiting:
                was = waiting.pop(0)
                renamed.append(_Placed(was.split, rel, label, source, digest))
    still_lost = {id(entry) for entries in wanted.values() for entry in entries}
    return _ByContent(
        same + resaved,
        renamed,
        [entry for entry in missing if not entry.digest or id(entry) in still_lost],
        [entry for entry in replaced if id(entry) in still_lost],
        resaved,
    )


_EMPTIED = {
    "train": "the model learns nothing of them",
    "valid": "nothing checks how it does on them while it trains",
    "test": "the test score says nothing of them",
}


def _moved_sources(
    saved: SplitManifest, root: Path, sources: dict[str, dict[str, Any]]
) -> Callable[[str, str], str]:
    """A saved entry's path -> where that photo is now relative to `root`: a multi-source split
    keeps paths relative to the folder holding every source, so a source moved since (or all of
    them, elsewhere) had every photo "gone from DATA" though each was in its source's folder."""

    def within(folder: str | Path, top: str | Path) -> str:
        return Path(os.path.relpath(Path(folder).resolve(), Path(top).resolve())).as_posix()

    moves = {}
    for name, info in saved.sources.items():
        if name in sources and info.get("root") and sources[name].get("root"):
            before, now = within(info["root"], saved.root), within(sources[name]["root"], root)
            if before != now:
                moves[name] = (before, now)

    def where_now(rel: str, source: str) -> str:
        if source not in moves:
            return rel
        before, now = moves[source]
        inner = rel if before == "." else rel.removeprefix(before + "/")
        if inner == rel and before != ".":
            return rel  # not under its source's folder: left as written (reported as gone)
        return inner if now == "." else f"{now}/{inner}"

    return where_now


def _official(
    scan: ScanResult,
    by_class: dict[str, list[ImageRecord]],
    seed: int,
    chosen: dict[str, list[ImageRecord]],
    notes: list[str],
) -> None:
    if scan.layout != "split":
        raise SportsdetError(
            f"{scan.root}: --split official needs train/valid/test folders, but this tree is one folder "
            "per class; use --split random:0.2 (80/20, stratified) or per-class:TRAIN,TEST"
        )
    for records in by_class.values():
        for record in records:
            chosen[record.split or "train"].append(record)
    if "valid" not in scan.split_folders:
        # Early stopping needs a validation set: carve 10% of each class's training images.
        carved = []
        for label, records in by_class.items():
            train = [r for r in records if r.split == "train"]
            # At least one, as random:0.2 keeps: round(5 * 0.1) is 0, and early stopping then had
            # nothing of the class to look at.
            n_valid = max(1, int(round(len(train) * DEFAULT_RANDOM_VALID))) if len(train) >= 2 else 0
            carved.extend(_shuffled(train, seed, label)[:n_valid])
        taken = {r.rel for r in carved}
        chosen["train"] = [r for r in chosen["train"] if r.rel not in taken]
        chosen["valid"] = carved
        notes.append(
            f"the tree has no valid folder: {len(carved)} training images "
            "(10% per class, at least 1) became valid"
        )
    if "test" not in scan.split_folders:
        notes.append("the tree has no test folder: the test split is empty")
    train_labels = {r.label for r in chosen["train"]}
    lacking = [label for label in by_class if label not in train_labels]
    if lacking:
        notes.append(f"class(es) with no training images: {', '.join(lacking)}")


def _random(
    records: list[ImageRecord], label: str, strategy: SplitStrategy, seed: int, root: Path
) -> tuple[list[ImageRecord], list[ImageRecord], list[ImageRecord]]:
    n = len(records)
    if n < 2:
        raise SportsdetError(
            f"{root}: class '{label}' has only {n} image; --split {strategy.text} needs at least 2 per class "
            "(add images or leave the class out with --classes)"
        )
    shuffled = _shuffled(records, seed, label)
    # Round, but keep at least one test and one training image in every class.
    n_test = min(max(1, int(round(n * float(strategy.test)))), n - 1)
    rest = n - n_test
    valid_share = DEFAULT_RANDOM_VALID if strategy.valid is None else float(strategy.valid)
    n_valid = min(max(1, int(round(rest * valid_share))), rest - 1) if valid_share > 0 and rest >= 2 else 0
    test = shuffled[:n_test]
    valid = shuffled[n_test : n_test + n_valid]
    train = shuffled[n_test + n_valid :]
    return train, valid, test


def _per_class(
    records: list[ImageRecord], label: str, strategy: SplitStrategy, seed: int, root: Path
) -> tuple[list[ImageRecord], list[ImageRecord], list[ImageRecord]]:
    n = len(records)
    n_train, n_test = int(strategy.train), int(strategy.test)
    explicit_valid = strategy.valid is not None
    needed = n_train + n_test + (int(strategy.valid) if explicit_valid else 0)
    if n < needed:
        n_valid = int(strategy.valid) if explicit_valid else 0
        test = n_test if n - n_test - n_valid >= 1 else max(1, (n - n_valid) // 5)  # TEST alone too big
        # Without VALID the validation photos come from what TRAIN and TEST leave: a TRAIN that
        # took all the rest (the suggestion it was) left none, and training went without any. So
        # the suggestion names a VALID of its own.
        if not explicit_valid:
            n_valid = max(1, round((n - test) * DEFAULT_PER_CLASS_VALID / (1 + DEFAULT_PER_CLASS_VALID)))
        train = n - test - n_valid
        example = f" (e.g. per-class:{train},{test},{n_valid})" if train >= 1 else ""
        raise SportsdetError(
            f"{root}: class '{label}' has {n} images, but --split {strategy.text} needs {needed} "
            f"per class; lower the numbers{example} or leave the class out with --classes"
        )
    shuffled = _shuffled(records, seed, label)
    leftover = n - n_train - n_test
    n_valid = (
        int(strategy.valid)
        if explicit_valid
        # At least one when any is left over: per-class:3,1 of 5 photos gave no validation photo
        # (round(0.3) = 0) and left one unused, in silence.
        else min(leftover, max(1, int(round(n_train * DEFAULT_PER_CLASS_VALID))))
    )
    test = shuffled[:n_test]
    train = shuffled[n_test : n_test + n_train]
    valid = shuffled[n_test + n_train : n_test + n_train + n_valid]
    return train, valid, test
