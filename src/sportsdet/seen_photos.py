"""Which photos a model has seen, so that scoring it on them is never mistaken for a test.

A bundle made by `sportsdet train` carries `seen_photos.json`: a short content hash of every photo
in its training and validation splits. `sportsdet evaluate MODEL FOLDER` hashes the photos it is
given and leaves out the ones the model has seen, wherever they now live (a copy of the training
data, a folder that mixes training photos with new ones, the built-in model's own sources), and
says how many it left out. Without it, the built-in model scored on all of websports reads 97.7%,
though 1,200 of those 1,500 photos are ones it was trained or validated on. A bundle made before
this file existed is checked against its run's split manifest instead, while that is still there.

    {"format": "sportsdet-seen/1", "digest": "sha256, first 16 hex digits",
     "splits": {"train": ["0a1b...", ...], "valid": [...]}}

16 hex digits (64 bits) keep the file small (about 18 bytes a photo) while two different photos
sharing one stay vanishingly unlikely at any dataset size this tool meets.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from sportsdet.bundle import SEEN_NAME
from sportsdet.errors import SportsdetError

__all__ = [
    "SEEN_NAME",
    "load_seen",
    "photo_digest",
    "seen_from_split",
    "seen_photos_json",
    "seen_summary",
    "split_off_seen",
]
SEEN_FORMAT = "sportsdet-seen/1"
DIGEST = "sha256, first 16 hex digits"
SEEN_SPLITS = ("train", "valid")  # test photos are what evaluation is for


def photo_digest(path: str | Path) -> str:
    """The short content hash of one file (the bytes as stored: a re-saved photo is another photo)."""
    from sportsdet.files import sha256_file

    return sha256_file(path)[:16]


def seen_photos_json(splits: dict[str, Iterable[str | Path]]) -> bytes:
    """seen_photos.json for the photos of each split (train and valid; others are ignored)."""
    digests = {
        split: sorted({photo_digest(path) for path in splits.get(split, ())}) for split in SEEN_SPLITS
    }
    payload = {"format": SEEN_FORMAT, "digest": DIGEST, "splits": digests}
    return (json.dumps(payload, separators=(",", ":")) + "\n").encode()


def load_seen(bundle_dir: str | Path) -> dict[str, set[str]] | None:
    """The seen photos of a bundle, by split; None when it has no such file (older bundles)."""
    path = Path(bundle_dir) / SEEN_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SportsdetError(f"{path}: unreadable ({exc}); delete it to evaluate without it") from None
    splits = data.get("splits") if isinstance(data, dict) else None
    if data.get("format") != SEEN_FORMAT or not isinstance(splits, dict) or not all(
        isinstance(v, list) and all(isinstance(d, str) for d in v) for v in splits.values()
    ):
        raise SportsdetError(f"{path}: not a {SEEN_FORMAT} file; delete it to evaluate without it")
    return {split: set(values) for split, values in splits.items()}


def seen_from_split(manifest_path: str | Path) -> dict[str, set[str]]:
    """The same record, made from a run's split manifest: for bundles trained before training wrote
    seen_photos.json. Photos no longer on disk are skipped (nothing to compare them with)."""
    from sportsdet.data.splits import SplitManifest

    manifest = SplitManifest.load(manifest_path)
    seen: dict[str, set[str]] = {}
    for split in SEEN_SPLITS:
        digests = set()
        for path, _ in manifest.items(split):
            try:
                digests.add(photo_digest(path))
            except SportsdetError:  # moved or deleted since training
                continue
        seen[split] = digests
    return seen


def split_off_seen(
    paths: Sequence[Path], seen: dict[str, set[str]]
) -> tuple[list[int], dict[str, int]]:
    """Positions of the photos not seen, and how many of the others each split holds."""
    kept, left_out = [], dict.fromkeys(seen, 0)
    for i, path in enumerate(paths):
        try:
            digest = photo_digest(path)
        except SportsdetError:  # unreadable: scoring skips it and says why
            kept.append(i)
            continue
        split = next((name for name, digests in seen.items() if digest in digests), None)
        if split is None:
            kept.append(i)
        else:
            left_out[split] += 1
    return kept, {split: count for split, count in left_out.items() if count}


def seen_summary(left_out: dict[str, int]) -> str:
    """'1,080 training and 120 validation photos': what `split_off_seen` left out, in words."""
    names = {"train": "training", "valid": "validation"}
    parts = [f"{count:,} {names.get(split, split)}" for split, count in left_out.items() if count]
    if not parts:
        return "no photos"
    return " and ".join(parts) + (" photo" if sum(left_out.values()) == 1 else " photos")
