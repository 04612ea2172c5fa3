"""Which photos a model has seen, so that scoring it on them is never mistaken for a test.

A bundle made by `sportsdet train` carries `seen_photos.json`: a short content hash of every photo
in its training and validation splits. `sportsdet evaluate MODEL FOLDER` hashes the photos it is
given and leaves out the ones the model has seen, wherever they now live (a copy of the training
data, a folder that mixes training photos with new ones, the built-in model's own sources), and
says how many it left out. Without it, the built-in model scored on all of websports reads 97.7%,
though 1,200 of those 1,500 photos are ones it was trained or validated on. A bundle made before
this file existed is checked against its run's split manifest instead, while that is still there.

A photo saved again with other bytes (resized, re-compressed, lightly trimmed: how copies travel
on the web) is found too, by its near-copy hash (near_copies.py); evaluate says how many of the
photos it left out were such near copies.

    {"format": "sportsdet-seen/2", "digest": "sha256, first 16 hex digits",
     "splits": {"train": ["0a1b...", ...], "valid": [...]},
     "near_copies": {"hash": near_copies.HASH_NAME, "splits": {"train": ["3f07...", ...], ...}}}

16 hex digits (64 bits) keep the file small (about 18 bytes a photo) while two different photos
sharing one stay vanishingly unlikely at any dataset size this tool meets. A file of the first
format (sportsdet-seen/1, no near-copy hashes) still works: it finds byte copies only.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sportsdet.bundle import SEEN_NAME
from sportsdet.errors import SportsdetError
from sportsdet.files import photo_digest, photo_digests
from sportsdet.near_copies import HASH_NAME, NearCopies, near_copy_hashes, near_hashes

__all__ = [
    "SEEN_NAME",
    "SPLIT_WORDS",
    "LeftOut",
    "SeenPhotos",
    "load_seen",
    "photo_digest",
    "seen_from_split",
    "seen_photos_json",
    "seen_summary",
    "split_off_seen",
]
SEEN_FORMAT = "sportsdet-seen/2"
READABLE_FORMATS = ("sportsdet-seen/1", SEEN_FORMAT)  # /1: byte copies only
DIGEST = "sha256, first 16 hex digits"
SEEN_SPLITS = ("train", "valid")  # test photos are what evaluation is for
SPLIT_WORDS = {"train": "training", "valid": "validation"}  # "5 training photos"


@dataclass
class SeenPhotos:
    """What a model has seen: content digests by split, and near-copy hashes when the file has them."""

    digests: dict[str, set[str]]
    near: NearCopies | None = None
    missing: int = 0  # made from a split manifest: its photos no longer where it says (seen_from_split)

    def counts(self) -> dict[str, int]:
        return {split: len(digests) for split, digests in self.digests.items()}

    def __bool__(self) -> bool:
        """False for a record of no photos: nothing to look for."""
        return any(self.digests.values()) or bool(self.near)


@dataclass
class LeftOut:
    """What `split_off_seen` left out: each photo, the split of the photo it copies, and whether it
    is a near copy (other bytes) rather than a byte copy."""

    photos: list[tuple[Path, str, bool]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.photos)

    @property
    def by_split(self) -> dict[str, int]:
        """How many copy each split's photos, training before validation (as seen_summary says it)."""
        counts = Counter(split for _, split, _ in self.photos)
        order = [*SEEN_SPLITS, *sorted(set(counts) - set(SEEN_SPLITS))]
        return {split: counts[split] for split in order if counts[split]}

    @property
    def near_copies(self) -> int:
        return sum(near for _, _, near in self.photos)

    def to_json(self) -> list[dict[str, str | bool]]:
        return [{"path": str(path), "split": split, "near_copy": near} for path, split, near in self.photos]


def seen_photos_json(
    splits: dict[str, Iterable[str | Path]],
    near: dict[str, str | None] | None = None,
    on_gone: Callable[[list[str]], None] = lambda paths: None,
) -> bytes:
    """seen_photos.json for the photos of each split (train and valid; others are ignored); `near`:
    their near-copy hashes by path when already made (`near_hashes`). A photo deleted since training
    read it is left out and handed to `on_gone` (it lost a whole trained run, at its very end)."""
    paths = {split: list(splits.get(split, ())) for split in SEEN_SPLITS}
    found = {split: photo_digests(paths[split]) for split in SEEN_SPLITS}
    gone = [str(path) for split in SEEN_SPLITS
            for path, digest in zip(paths[split], found[split], strict=True) if digest is None]  # fmt: skip
    if gone:
        on_gone(gone)
    digests = {split: sorted({d for d in found[split] if d is not None}) for split in SEEN_SPLITS}
    known = near or {}
    missing = [path for split in SEEN_SPLITS for path in paths[split] if str(path) not in known]
    known = {**known, **near_hashes(missing)}
    near_by_split = {
        split: sorted({h for path in paths[split] if (h := known[str(path)]) is not None})
        for split in SEEN_SPLITS
    }
    payload = {
        "format": SEEN_FORMAT,
        "digest": DIGEST,
        "splits": digests,
        "near_copies": {"hash": HASH_NAME, "splits": near_by_split},
    }
    return (json.dumps(payload, separators=(",", ":")) + "\n").encode()


def load_seen(bundle_dir: str | Path) -> SeenPhotos | None:
    """The seen photos of a bundle; None when it has no such file (older bundles)."""
    path = Path(bundle_dir) / SEEN_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SportsdetError(f"{path}: unreadable ({exc}); delete it to evaluate without it") from None
    if not isinstance(data, dict) or data.get("format") not in READABLE_FORMATS:
        raise SportsdetError(f"{path}: not a {SEEN_FORMAT} file; delete it to evaluate without it")
    splits = data.get("splits")
    near = (data.get("near_copies") or {}) if data["format"] == SEEN_FORMAT else {}
    near_splits = near.get("splits", {}) if isinstance(near, dict) else None
    if not _lists_of_strings(splits) or not _lists_of_strings(near_splits):
        raise SportsdetError(f"{path}: not a {SEEN_FORMAT} file; delete it to evaluate without it")
    # Hashes made another way (a later version's) are not comparable with ours: byte copies only.
    same_hash = near.get("hash") == HASH_NAME and all(len(h) == 32 for v in near_splits.values() for h in v)
    try:
        index = NearCopies(near_splits) if near_splits and same_hash else None
    except ValueError:  # not hex
        raise SportsdetError(f"{path}: not a {SEEN_FORMAT} file; delete it to evaluate without it") from None
    return SeenPhotos(digests={split: set(values) for split, values in splits.items()}, near=index)


def _lists_of_strings(value: object) -> bool:
    return isinstance(value, dict) and all(
        isinstance(v, list) and all(isinstance(d, str) for d in v) for v in value.values()
    )


def seen_from_split(manifest_path: str | Path) -> SeenPhotos:
    """The same record, made from a run's split manifest: for bundles trained before training wrote
    seen_photos.json (byte copies only). Photos no longer on disk are skipped (nothing to compare)."""
    from sportsdet.data.splits import SplitManifest

    manifest = SplitManifest.load(manifest_path)
    seen: dict[str, set[str]] = {}
    missing = 0
    for split in SEEN_SPLITS:
        found = photo_digests([path for path, _ in manifest.items(split)])
        missing += found.count(None)  # moved or deleted since training: counted, for the caller to say
        seen[split] = {digest for digest in found if digest is not None}
    return SeenPhotos(seen, missing=missing)


def split_off_seen(
    paths: Sequence[Path], seen: SeenPhotos, digests: Sequence[str | None] | None = None
) -> tuple[list[int], LeftOut]:
    """Positions of the photos not seen, and the others (`LeftOut`). `digests`: each path's
    `photo_digest` when the caller has them already (None: not readable)."""
    found: dict[int, tuple[str, bool]] = {}  # position -> (the split of the photo it copies, near copy)
    unmatched = []
    for i, digest in enumerate(photo_digests(paths) if digests is None else digests):
        if digest is None:  # unreadable: scoring skips it and says why
            continue
        split = next((name for name, digests in seen.digests.items() if digest in digests), None)
        if split is not None:
            found[i] = (split, False)
        elif seen.near is not None:
            unmatched.append(i)
    if unmatched:  # only photos that are no byte copy are decoded for their near-copy hash, in one batch
        hashes = near_copy_hashes([paths[i] for i in unmatched])
        for i, value in zip(unmatched, hashes, strict=True):
            split = seen.near.group_of(value)
            if split is not None:
                found[i] = (split, True)
    kept = [i for i in range(len(paths)) if i not in found]
    return kept, LeftOut([(Path(paths[i]), *found[i]) for i in sorted(found)])


def seen_summary(left_out: dict[str, int], near_copies: int = 0) -> str:
    """'1,080 training and 120 validation photos': what `split_off_seen` left out, in words, with
    how many of them were near copies ('..., 7 of them resized or re-saved copies')."""
    parts = [f"{count:,} {SPLIT_WORDS.get(split, split)}" for split, count in left_out.items() if count]
    if not parts:
        return "no photos"
    total = sum(left_out.values())
    words = " and ".join(parts) + (" photo" if total == 1 else " photos")
    if near_copies:
        which = "a" if total == 1 else "1 of them a" if near_copies == 1 else f"{near_copies:,} of them"
        words += f", {which} resized or re-saved cop{'y' if near_copies == 1 else 'ies'}"
    return words
