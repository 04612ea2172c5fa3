"""Training on several datasets at once: sources, a label map that unifies their class names, one split.

No single dataset covers the world: sports100 has no soccer, websports no polo. A run may name
several image trees (sources), on the command line or in a small dataset file:

    # sports.toml                               (JSON with the same keys works too)
    merge = ["basketball"]                      # class names two sources share on purpose
    [[source]]
    name = "sports100"
    path = "../shared/data/sports100"           # relative to this file; a split tree keeps its split
    map = { football = "american football" }    # this source's `football` is American football
    [[source]]
    name = "websports"
    path = "../shared/data/websports"
    split = "random:0.2"                        # a folder-per-class tree is split seeded + stratified

`sportsdet train A B --map sports100:football='american football' --merge basketball` says the same.

Each source keeps its own official split when it has one and is split seeded and stratified
when it has none; the manifest records which source every photo came from, so evaluate can
report accuracy per source. Two sources that share a class name are merged only when the user
says so (`merge`): the same word can mean different sports in two datasets (sports100's
`football` is American football), and a silent merge teaches the model nonsense.
"""

from __future__ import annotations

import json
import os
import shlex
import tomllib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sportsdet.data.discover import (
    ScanResult,
    case_clashes,
    class_name,
    how_they_differ,
    scan_dataset,
    scan_warnings,
    shown_name,
)
from sportsdet.errors import SportsdetError

DATASET_FILE_SUFFIXES = (".toml", ".json")


@dataclass(frozen=True)
class Source:
    """One image tree of a multi-source run."""

    name: str
    path: Path
    split: str | None = None  # this source's --split; None: the run's, else official / random:0.2
    label_map: dict[str, str] = field(default_factory=dict)  # folder name -> class name in the run
    defined_in: str = ""  # the dataset file that lists it ("" for a folder given on the command line)


@dataclass
class Sources:
    """The sources of a run and which shared class names may merge (None: any)."""

    sources: list[Source]
    merge: frozenset[str] | None = frozenset()
    origin: str = "the command line"
    # `--map OLD=NEW` with no source: for every source that has OLD (at least one must).
    shared_map: dict[str, str] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sources]


@dataclass
class SourceScan:
    """A source's scan with its label map applied."""

    source: Source
    scan: ScanResult


def is_dataset_file(path: str | Path) -> bool:
    path = Path(path)
    return path.suffix.lower() in DATASET_FILE_SUFFIXES and path.is_file()


def is_multi_source(data: Sequence[Any], maps: Sequence[str] = ()) -> bool:
    """Whether DATA arguments make a multi-source run: several of them, a dataset file, a Sources
    object, or a label map (one plain folder keeps the plain split manifest)."""
    first = data[0]
    return len(data) > 1 or bool(maps) or isinstance(first, Sources) or is_dataset_file(first)


def read_dataset_file(path: str | Path) -> Sources:
    """A dataset file (TOML or JSON, see the module doc) -> Sources; paths relative to the file."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix.lower() == ".toml" else json.loads(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise SportsdetError(f"{path}: cannot read the dataset file ({exc})") from None
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise SportsdetError(f"{path}: not a valid {path.suffix[1:].upper()} dataset file ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("source"), list) or not data["source"]:
        raise SportsdetError(
            f'{path}: a dataset file lists its sources as [[source]] tables (TOML) or a "source" list '
            "(JSON), each with a name and a path"
        )
    unknown = sorted(set(data) - {"source", "merge"})
    if unknown:
        raise SportsdetError(f"{path}: unknown key(s) {', '.join(unknown)}; known: source, merge")
    sources = [_source_entry(entry, i, path) for i, entry in enumerate(data["source"])]
    named = [bool(entry.get("name")) for entry in data["source"]]
    merge = _merge_setting(data.get("merge", []), path)
    _refuse_overlaps([source.path for source in sources], str(path))
    return Sources(_distinct_names(sources, named, path), merge, str(path))


def _distinct_names(sources: list[Source], named: list[bool], where: Path) -> list[Source]:
    """Sources named after their folder take the parent folder too when two folders share a name
    (a/data, b/data), as on the command line; names that still clash are an error (a source's
    name keys its split, its per-source scores and its quarantine folder)."""
    first = [source.name for source in sources]
    names = list(first)
    for i, source in enumerate(sources):
        if not named[i] and first.count(source.name) > 1:
            names[i] = "/".join(source.path.resolve().parts[-2:])
    clash = next((name for name in names if names.count(name) > 1), None)
    if clash is not None:
        raise SportsdetError(f'{where}: two sources are named {clash!r}; give each its own name = "..."')
    return [replace(source, name=name) for source, name in zip(sources, names, strict=True)]


def _source_entry(entry: Any, index: int, where: Path) -> Source:
    # Unknown keys first: `pth = "..."` was only "needs a path".
    unknown = sorted(set(entry) - {"name", "path", "split", "map"}) if isinstance(entry, dict) else []
    if unknown:
        raise SportsdetError(
            f"{where}: source #{index + 1} has unknown key(s) {', '.join(unknown)}; "
            "known: name, path, split, map"
        )
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str) or not entry["path"].strip():
        # An empty path was the dataset file's own folder: its sub-folders taken as classes.
        raise SportsdetError(f"{where}: source #{index + 1} needs a path (a folder of photos)")
    given = Path(entry["path"]).expanduser()
    folder = where.parent / given
    if not folder.is_dir():  # said here, with the file and the rule: "ds/A: no such folder" named neither
        what = "is a file, not a folder" if folder.exists() else "no such folder"
        counted = "" if given.is_absolute() else " (a relative path counts from the dataset file's folder)"
        raise SportsdetError(
            f"{where}: source #{index + 1}: path {entry['path']!r} is {folder}: {what}{counted}"
        )
    label_map = entry.get("map", {})
    if not isinstance(label_map, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in label_map.items()
    ):
        raise SportsdetError(f"{where}: source #{index + 1}: map must be a table of folder name = class name")
    split = entry.get("split")
    if split is not None and not isinstance(split, str):
        raise SportsdetError(f'{where}: source #{index + 1}: split must be text such as "random:0.2"')
    if split is not None:
        from sportsdet.data.splits import parse_split_strategy

        try:
            parse_split_strategy(split)
        except SportsdetError as exc:
            raise SportsdetError(f"{where}: source #{index + 1}: {exc}") from None
    name = str(entry.get("name") or folder.resolve().name or folder)
    if not name.strip() or any(part in ("", ".", "..") for part in name.split("/")) or name.startswith("/"):
        # A source's name is a folder under `data check --quarantine DIR`: it must stay inside DIR.
        raise SportsdetError(
            f"{where}: source #{index + 1}: {name!r} cannot name a source; give it a name = \"...\""
        )
    label_map = {
        class_name(k): _new_class_name(v.strip(), f"{where}: source #{index + 1}: map")
        for k, v in label_map.items()
    }
    return Source(name, folder, split, label_map, defined_in=str(where))


def _merge_setting(value: Any, where: Path | str) -> frozenset[str] | None:
    if value == "all":
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SportsdetError(f'{where}: merge must be a list of class names (or "all")')
    return frozenset(class_name(v.strip()) for v in value)


def sources_from_args(
    data: Sequence[str | Path], maps: Iterable[str] = (), merge: Iterable[str] = ()
) -> Sources:
    """DATA arguments (folders, or one dataset file) plus --map SOURCE:OLD=NEW and --merge NAME."""
    data = [Path(d).expanduser() for d in data]
    files = [d for d in data if is_dataset_file(d)]
    if files:
        if len(data) > 1:
            raise SportsdetError(
                f"{files[0]}: a dataset file names all the sources itself; give it alone, not with other DATA"
            )
        sources = read_dataset_file(files[0])
    else:
        _refuse_overlaps(data, "the command line")
        sources = Sources([Source(name, path) for name, path in zip(_unique_names(data), data, strict=True)])
    extra_maps: dict[str, dict[str, str]] = defaultdict(dict)
    shared_map: dict[str, str] = {}
    for text in maps:
        target, old, new = _parse_map(text, sources.names)
        (extra_maps[target] if target else shared_map)[old] = new
    merged = [class_name(name.strip()) for name in merge]
    merge_setting = None if sources.merge is None or "all" in merged else sources.merge | frozenset(merged)
    return Sources(
        [replace(s, label_map={**s.label_map, **extra_maps.get(s.name, {})}) for s in sources.sources],
        merge_setting,
        sources.origin,
        shared_map,
    )


def _unique_names(paths: list[Path]) -> list[str]:
    """Folder names as source names; a clash takes the parent folder too (a/data, b/data)."""
    resolved = [path.resolve() for path in paths]
    first = [path.name or str(path) for path in resolved]
    names = [
        "/".join(path.parts[-2:]) if first.count(name) > 1 else name
        for path, name in zip(resolved, first, strict=True)
    ]
    clash = next((name for name in names if names.count(name) > 1), None)
    if clash is not None:
        raise SportsdetError(
            f"two sources would both be named {clash!r}; name them in a dataset file (name = \"...\")"
        )
    return names


def _refuse_overlaps(paths: list[Path], where: str) -> None:
    """The same folder twice, or one source inside another, would count every photo twice (and
    `data check --quarantine` would move the copies it made up)."""
    resolved = [(path, path.resolve()) for path in paths]
    for i, (one, one_real) in enumerate(resolved):
        for other, other_real in resolved[i + 1 :]:
            if one_real == other_real:
                raise SportsdetError(f"{where}: the same folder is given twice ({one}, {other})")
            if one_real.is_relative_to(other_real) or other_real.is_relative_to(one_real):
                inner, outer = (one, other) if one_real.is_relative_to(other_real) else (other, one)
                raise SportsdetError(
                    f"{where}: {inner} is inside {outer}: its photos would count twice; give one or the other"
                )


def _parse_map(text: str, names: list[str]) -> tuple[str | None, str, str]:
    """'[SOURCE:]OLD=NEW' -> (source or None for every source, OLD, NEW). OLD is kept as typed
    (`_folder_named` matches it to a folder: 'rowing ' with its trailing space is one)."""
    head, sep, new = text.partition("=")
    # A source whose name holds ':' (a folder named so) is named whole, not cut at its first ':'.
    named = max((n for n in names if head.startswith(f"{n}:")), key=len, default=None)
    target, colon, old = (named, ":", head[len(named) + 1 :]) if named else head.partition(":")
    if not colon:
        target, old = "", head
    if not sep or not old.strip() or not new.strip():
        raise SportsdetError(
            f"--map {text!r}: write SOURCE:OLD=NEW, e.g. --map sports100:football='american football'"
        )
    if target and target not in names:
        raise SportsdetError(f"--map {text!r}: no source named {target!r}; sources: {', '.join(names)}")
    if "=" in new:  # 'polo=rowing=tennis' made a class named 'rowing=tennis'
        raise SportsdetError(
            f"--map {text!r}: one = only: SOURCE:OLD=NEW (a class folder whose name holds = is mapped "
            "in a dataset file)"
        )
    return target or None, class_name(old), _new_class_name(new.strip(), f"--map {text!r}")


def _folder_named(old: str, folders: set[str]) -> str:
    """The class folder a label map's OLD names: as typed ('rowing ', trailing space and all), else
    without the spaces around it ('--map "a: rowing = b"')."""
    return old if old in folders or old.strip() not in folders else old.strip()


def _new_class_name(name: str, where: str) -> str:
    """A label map's new class name, refused when no class folder could be named so: evaluate reads
    photos by folder name, and a class named '../../etc' could never be scored."""
    if name in (".", "..") or "/" in name:
        raise SportsdetError(f"{where}: {name!r} cannot name a class (no folder can: no /, nor . or ..)")
    return class_name(name)


def scan_sources(sources: Sources, classes: str | Iterable[str] | None = None) -> list[SourceScan]:
    """Scan every source, apply its label map, and refuse maps and merges that would mislead.

    `classes` (`--classes`): each scan is seen through that subset (a class name every source
    lacks is an error), so warnings, summaries and the merge check speak only of those classes.
    """
    scans = []
    unused = set(sources.shared_map)
    merges: dict[str, dict[str, list[str]]] = {}
    for source in sources.sources:
        scan = scan_dataset(source.path)
        folders = set(scan.classes) | set(scan.empty_classes) | set(scan.unreadable_folders.values())
        as_folders = {_folder_named(old, folders): new for old, new in source.label_map.items()}
        source = replace(source, label_map=as_folders)
        unknown = sorted(set(source.label_map) - folders)
        if unknown:
            raise SportsdetError(
                f"{sources.origin}: the label map names class(es) {', '.join(map(shown_name, unknown))} "
                f"that source {source.name!r} ({scan.root}) does not have; its classes: "
                + _short([shown_name(c) for c in scan.classes])
            )
        here = {old: _folder_named(old, folders) for old in sources.shared_map}
        shared = {here[old]: new for old, new in sources.shared_map.items() if here[old] in folders}
        unused -= {old for old, folder in here.items() if folder in folders}
        source = replace(source, label_map={**shared, **source.label_map})  # what it was, as recorded
        scans.append(SourceScan(source, _relabelled(scan, source.label_map)))
        merges[source.name] = _map_merges(scan.classes, source.label_map)
    if unused:
        raise SportsdetError(
            f"--map: no source has a class {', '.join(repr(u) for u in sorted(unused))}; "
            f"sources: {', '.join(sources.names)}"
        )
    _refuse_unshared_merges(scans, sources)
    if classes is not None:
        wanted = _wanted_classes(classes, sorted({label for item in scans for label in item.scan.classes}))
        scans = [replace(item, scan=item.scan.restricted_to(sorted(wanted))) for item in scans]
    for item in scans:
        _warn_map_merges(item, merges[item.source.name])
    _refuse_silent_merges(scans, sources)
    _warn_case_clashes(scans)
    return scans


def _warn_case_clashes(scans: list[SourceScan]) -> None:
    """Two sources' class names that differ only in case (Basketball, basketball) or spaces stay two classes:
    said in the second source's warnings, with the --map that would make them one."""
    first_owner: dict[str, str] = {}
    for item in scans:
        for label in item.scan.classes:
            first_owner.setdefault(label, item.source.name)
    order = {item.source.name: i for i, item in enumerate(scans)}
    for spellings in case_clashes(list(first_owner)):
        owners = {label: first_owner[label] for label in spellings}
        if len(set(owners.values())) < 2:
            continue  # within one source: its own scan warns
        first, *others = sorted(spellings, key=lambda label: (order[owners[label]], label))
        for other in others:
            item = next(i for i in scans if i.source.name == owners[other])
            item.scan.warnings.append(
                f"class {shown_name(other)} differs {how_they_differ([first, other])} from "
                f"{shown_name(first)} ({owners[first]}): they are trained as different classes; if they "
                "are one sport, --map "
                + shlex.quote(f"{item.source.name}:{_folder_of(item.source, other)}={first}")
            )


def _folder_of(source: Source, label: str) -> str:
    """The folder name a source's class comes from (before its label map): what --map must name."""
    return next((old for old, new in source.label_map.items() if new == label), label)


def _relabelled(scan: ScanResult, label_map: dict[str, str]) -> ScanResult:
    if not label_map:
        return scan
    records = [replace(r, label=label_map.get(r.label, r.label)) for r in scan.records]
    relabelled = replace(
        scan,
        records=records,
        classes=sorted({r.label for r in records}),
        empty_classes=sorted({label_map.get(c, c) for c in scan.empty_classes}),
        unreadable_folders={rel: label_map.get(c, c) for rel, c in scan.unreadable_folders.items()},
    )
    relabelled.warnings = scan_warnings(relabelled)
    return relabelled


def _map_merges(folders: list[str], label_map: dict[str, str]) -> dict[str, list[str]]:
    """Classes a label map makes of two or more folders of one source -> those folders."""
    merged: dict[str, list[str]] = defaultdict(list)
    for folder in folders:
        merged[label_map.get(folder, folder)].append(folder)
    return {label: names for label, names in sorted(merged.items()) if len(names) > 1}


def _warn_map_merges(item: SourceScan, merges: dict[str, list[str]]) -> None:
    """Two folders of one source mapped to one name become one class: said, as --merge is across
    sources (for the classes the run keeps)."""
    item.scan.warnings[:0] = [
        f"the label map makes the folders {', '.join(repr(f) for f in names)} one class, {label!r}"
        for label, names in merges.items()
        if label in item.scan.classes
    ]


def _refuse_unshared_merges(scans: list[SourceScan], sources: Sources) -> None:
    """A merge name that no two sources share merges nothing: a typo (--merge basketbal) passed
    without a word, while the shared name it meant was then refused as unconfirmed."""
    if sources.merge is None or len(scans) < 2:
        return
    shared = _shared_classes(scans)
    unshared = sorted(name for name in sources.merge if name not in shared)
    if unshared:
        where = "--merge" if sources.origin == "the command line" else f"{sources.origin}: merge"
        raise SportsdetError(
            f"{where} {', '.join(repr(n) for n in unshared)}: no two sources have a class of that name, so "
            f"it merges nothing; class names in more than one source: {_short(sorted(shared)) or 'none'}"
        )


def _shared_classes(scans: list[SourceScan]) -> dict[str, list[str]]:
    """Class names found in more than one source, each with the sources that have it."""
    owners: dict[str, list[str]] = defaultdict(list)
    for item in scans:
        for label in item.scan.classes:
            owners[label].append(item.source.name)
    return {label: names for label, names in owners.items() if len(names) > 1}


def _refuse_silent_merges(scans: list[SourceScan], sources: Sources) -> None:
    shared = _shared_classes(scans)
    # A name a source's label map renames a folder into is merged on purpose: `--map A:football=soccer`
    # beside a source with `soccer` says they are one sport (it was refused until --merge said so too).
    # That map speaks for A's folder only: two other sources' own 'soccer' folders still need --merge.
    mapped_into = {
        item.source.name: {new for old, new in item.source.label_map.items() if old != new} for item in scans
    }
    unconfirmed = sorted(
        label
        for label, owners in shared.items()
        if sources.merge is not None
        and label not in sources.merge
        and sum(label not in mapped_into[owner] for owner in owners) > 1
    )
    if unconfirmed:
        example = unconfirmed[0]
        renamed = next(item for item in scans if item.source.name == shared[example][-1])
        listed = "; ".join(f"{label!r} ({', '.join(shared[label])})" for label in unconfirmed[:8])
        raise SportsdetError(
            f"{len(unconfirmed)} class name(s) appear in more than one source and would be merged: {listed}. "
            f"The same word can mean different sports in two datasets. If they are the same sport, say so "
            f"(--merge {example!r}, or merge = [...] in the dataset file; --merge all for every shared "
            "name); "
            f"if not, rename one (--map {renamed.source.name}:{_folder_of(renamed.source, example)}=NEW_NAME)"
        )


def _short(names: list[str], limit: int = 12) -> str:
    return ", ".join(names[:limit]) + (f" ... ({len(names)} in all)" if len(names) > limit else "")


def common_root(paths: Iterable[Path]) -> Path:
    """The deepest folder holding every source (manifest paths are relative to it)."""
    return Path(os.path.commonpath([str(Path(p).resolve()) for p in paths]))


def make_multi_split(
    scans: list[SourceScan],
    strategy: str | None,
    seed: int,
    classes: str | Iterable[str] | None = None,
) -> Any:
    """One SplitManifest over every source: each split its own way, every entry tagged with its source.

    `strategy` applies to sources that name no split of their own (default: official for a split
    tree, random:0.2 for a folder per class). Paths are relative to the folder holding every source.
    """
    from sportsdet.data.splits import SPLITS, SplitManifest, make_split, parse_split_strategy

    root = common_root(item.scan.root for item in scans)
    union = sorted({label for item in scans for label in item.scan.classes})
    wanted = _wanted_classes(classes, union)
    rows: dict[str, list[tuple[str, str, str]]] = {split: [] for split in SPLITS}
    table: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for item in scans:
        name, scan = item.source.name, item.scan
        text = item.source.split or strategy or ("official" if scan.layout == "split" else "random:0.2")
        here = [label for label in scan.classes if label in wanted]
        # A source with none of the chosen classes stays listed (with no classes), so that the same
        # DATA reuses this split later (--split FILE).
        table[name] = {"root": str(scan.root), "strategy": text, **_origin(item.source)}
        table[name]["classes"] = here
        if not here:
            notes.append(f"{name}: none of the chosen classes; left out")
            continue
        if item.source.split and scan.layout != "split" and parse_split_strategy(text).kind == "official":
            # make_split's own message advises --split, which does not reach a source's own split.
            raise SportsdetError(
                f'{item.source.defined_in}: source {name!r} has split = "official", but {scan.root} is one '
                'folder per class, with no train/valid/test folders; write split = "random:0.2" (80/20, '
                'stratified) or "per-class:TRAIN,TEST" for it, or leave split out'
            )
        part = make_split(scan, text, seed, here)
        table[name]["strategy"] = part.strategy
        prefix = Path(os.path.relpath(scan.root, root))
        for split in SPLITS:
            rows[split].extend(((prefix / rel).as_posix(), label, name) for rel, label in part.splits[split])
        notes.extend(f"{name}: {note}" for note in part.notes)
    splits = {split: [(rel, label) for rel, label, _ in sorted(rows[split])] for split in SPLITS}
    origins = {split: [src for _, _, src in sorted(rows[split])] for split in SPLITS}
    if not splits["train"]:
        raise SportsdetError(f"{root}: the sources leave no training images")
    described = "; ".join(f"{name}: {info['strategy']}" for name, info in table.items())
    return SplitManifest(root, described, int(seed), sorted(wanted), splits, notes, table, origins)


def reuse_multi_split(
    scans: list[SourceScan], path: str | Path, classes: str | Iterable[str] | None = None
) -> Any:
    """The split saved in `path` for these sources (see splits.reuse_saved_split)."""
    from sportsdet.data.splits import reuse_saved_split

    root = common_root(item.scan.root for item in scans)
    photos = []
    table = {}
    for item in scans:
        name, scan = item.source.name, item.scan
        prefix = Path(os.path.relpath(scan.root, root))
        photos += [((prefix / r.rel).as_posix(), r.label, name) for r in scan.records if r.label]
        table[name] = {"root": str(scan.root), **_origin(item.source)}
    return reuse_saved_split(path, root, photos, classes, table)


def _origin(source: Source) -> dict[str, Any]:
    """A source's label map and the dataset file that lists it (when one does), as the split file
    keeps them: the `data check` a report suggests names that file, not its folders without maps."""
    listed_in = {"file": str(Path(source.defined_in).resolve())} if source.defined_in else {}
    return {"map": dict(source.label_map), **listed_in}


def _wanted_classes(classes: str | Iterable[str] | None, union: list[str]) -> set[str]:
    from sportsdet.data.splits import class_list

    if classes is None:
        return set(union)
    names = class_list(classes)  # none given was "the sources leave no training images"
    unknown = [c for c in names if c not in union]
    if unknown:
        raise SportsdetError(
            f"--classes: {', '.join(repr(u) for u in unknown)} is in none of the sources; their classes: "
            f"{_short(union)}"
        )
    return set(names)


def sources_summary(scans: list[SourceScan], manifest: Any) -> dict[str, Any]:
    """data_summary.json for a multi-source run: the union, and each source's own scan."""
    counts = manifest.counts
    ignored: dict[str, int] = defaultdict(int)
    for item in scans:
        for reason, n in item.scan.ignored.items():
            ignored[reason] += n
    return {
        "root": str(manifest.root),
        "layout": "sources",
        "num_classes": len(manifest.classes),
        "classes": list(manifest.classes),
        "empty_classes": sorted(
            {c for item in scans for c in item.scan.empty_classes} - set(manifest.classes)
        ),
        "unreadable_folders": [
            f"{item.source.name}: {rel}" for item in scans for rel in sorted(item.scan.unreadable_folders)
        ],
        "total": sum(sum(per.values()) for per in counts.values()),
        "splits": {split: {"total": sum(per.values()), "per_class": per} for split, per in counts.items()},
        "ignored": dict(sorted(ignored.items())),
        "warnings": [f"{item.source.name}: {w}" for item in scans for w in item.scan.warnings],
        "sources": {item.source.name: item.scan.to_dict() for item in scans},
    }


def preview_rows(
    scans: list[SourceScan], per_class: int = 4, seed: int = 0
) -> list[tuple[str, dict[str, list[Path]]]]:
    """A seeded sample of each class's photos in each source (for plots.contact_sheet_png)."""
    import random

    rows: dict[str, dict[str, list[Path]]] = defaultdict(dict)
    for item in scans:
        by_class: dict[str, list[Path]] = defaultdict(list)
        for record in item.scan.records:
            by_class[record.label].append(record.path)
        for label, paths in by_class.items():
            picked = random.Random(f"{seed}:{item.source.name}:{label}").sample(
                paths, min(per_class, len(paths))
            )
            rows[label][item.source.name] = sorted(picked)
    return sorted(rows.items())
