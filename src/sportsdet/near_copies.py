"""Near copies: the same photo saved again (resized, re-compressed, lightly trimmed), found by sight.

A content hash (files.sha256_file) finds byte-identical copies only. The web is full of the same
photo at other sizes and JPEG qualities: sports100's official test split holds 5 byte copies of
training or validation photos and 7 more copies with other bytes (bench/near_copies.py). This
module gives each photo a 128-bit difference hash (a 9x8 and an 8x9 greyscale thumbnail; one bit
per pair of neighbouring pixels: is the right one / the lower one brighter), which stays nearly
the same when a photo is resized or re-saved, and calls two photos near copies when their hashes
differ in at most MAX_DISTANCE bits.

The threshold was chosen on sports100 + websports + realworld-dev (bench/near_copies.py): every
pair within it was checked by eye to be one photo; photos of different sports never came closer
than 21 bits in 21 million pairs; the closest pair of different photos seen (two studio shots of
racing cars on white) was 15 bits apart. Some true copies lie further out (a watermark strip, a
tighter crop, a dark picture: 14-16 bits) and are missed: the rule prefers missing a copy to
calling a new photo seen. Torch-free.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sportsdet.errors import ImageLoadError
from sportsdet.files import cpu_count, stop_workers, worker_processes

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "DECODE_SIZE",
    "HASH_NAME",
    "MAX_DISTANCE",
    "NearCopies",
    "differing_bits",
    "hash_picture",
    "near_copy_hash",
    "near_copy_hashes",
    "near_copy_groups",
    "near_hashes",
]

HASH_NAME = "difference hash, 128 bits (9x8 and 8x9 grey thumbnails), hex"
MAX_DISTANCE = 10
# JPEGs decode at reduced scale to at least this many pixels a side (Pillow's draft): enough for
# a 9-pixel thumbnail, and every photo is hashed from about the same detail whatever its size.
# Hash only images decoded this way (`near_copy_hash`, or `load_image(..., min_size=DECODE_SIZE)`
# then `hash_picture`): the threshold was measured on them.
DECODE_SIZE = 64
# A thumbnail whose grey levels span less than this has no picture to compare (a blank or flat
# photo): its bits are noise, so it gets no hash and can only match byte for byte.
_FLAT_RANGE = 8
# Bits set in each byte value: a popcount that works on every numpy this package supports.
_BITS_IN_BYTE = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(1).astype(np.uint8)


def differing_bits(hashes: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Bits that differ between hashes as (n, 16) bytes and `other` ((16,) or (n, 16)): (n,) counts."""
    return _BITS_IN_BYTE[hashes ^ other].sum(axis=1, dtype=np.int32)


def near_copy_hash(source: str | Path | bytes) -> str | None:
    """The photo's (a path or a file's bytes) difference hash, 32 hex digits; None for a flat picture
    or one that cannot be decoded (whoever reads it next reports those)."""
    from sportsdet.imageio import load_image

    try:
        return hash_picture(load_image(source, min_size=DECODE_SIZE))
    except ImageLoadError:
        return None


def near_copy_hashes(paths: Sequence[str | Path], workers: int | None = None) -> list[str | None]:
    """`near_copy_hash` of every path, in worker processes when there are many: decoding and
    thumbnailing hold Python's lock for much of the work, so threads ran slower than one loop."""
    paths = [str(path) for path in paths]
    workers = min(workers or cpu_count(), len(paths) // 256)
    if workers <= 1:
        return [near_copy_hash(path) for path in paths]
    pool = worker_processes(workers)
    try:
        hashes = list(pool.map(near_copy_hash, paths, chunksize=64))
    except (OSError, BrokenProcessPool):  # no processes to be had here (limits, a killed worker)
        stop_workers(pool)
        return [near_copy_hash(path) for path in paths]
    except BaseException:  # Ctrl-C: end the workers instead of hashing the queued photos first
        stop_workers(pool)
        raise
    pool.shutdown()
    return hashes


def near_hashes(paths: Iterable[str | Path]) -> dict[str, str | None]:
    """Each photo's near-copy hash by path (None: flat or unreadable). Training makes them once,
    for keeping copies in one split, its near-copy warning and the bundle's seen_photos.json."""
    paths = [str(path) for path in paths]
    return dict(zip(paths, near_copy_hashes(paths), strict=True))


def hash_picture(image: Image.Image) -> str | None:
    """`near_copy_hash` of a photo already decoded with `load_image(..., min_size=DECODE_SIZE)`."""
    from PIL import Image

    grey = image.convert("L")
    rows = np.asarray(grey.resize((9, 8), Image.Resampling.BOX), dtype=np.int16)
    columns = np.asarray(grey.resize((8, 9), Image.Resampling.BOX), dtype=np.int16)
    if max(np.ptp(rows), np.ptp(columns)) < _FLAT_RANGE:
        return None
    bits = np.concatenate([(rows[:, 1:] > rows[:, :-1]).ravel(), (columns[1:] > columns[:-1]).ravel()])
    return np.packbits(bits).tobytes().hex()


class NearCopies:
    """Hashes of known photos, by group (a split); `group_of` finds a photo's near copy among them.

    Indexed by the pieces of `near_copy_groups`: a photo is compared only with the known photos
    that share a piece of its hash (against the built-in model's 15,255: 0.27 ms a photo, where
    comparing with every one took 1.8 ms).
    """

    def __init__(self, groups: dict[str, Iterable[str]]) -> None:
        names, rows = [], []
        for name, hashes in groups.items():
            for value in hashes:
                rows.append(bytes.fromhex(value))
                names.append(name)
        self._groups = np.array(names, dtype=object)
        self._hashes = np.frombuffer(b"".join(rows), dtype=np.uint8).reshape(len(rows), 16)
        self._by_piece: list[dict[int, np.ndarray]] = []
        for keys in _piece_keys(self._hashes) if len(rows) else []:
            order = np.argsort(keys, kind="stable")
            values, starts = np.unique(keys[order], return_index=True)
            self._by_piece.append(dict(zip(values.tolist(), np.split(order, starts[1:]), strict=True)))

    def __len__(self) -> int:
        return len(self._hashes)

    def group_of(self, value: str | None) -> str | None:
        """The group of the nearest known photo within MAX_DISTANCE bits of `value`, else None."""
        if value is None or not len(self._hashes):
            return None
        query = np.frombuffer(bytes.fromhex(value), dtype=np.uint8)
        keys = [int(key[0]) for key in _piece_keys(query[None, :])]
        found = [index[key] for index, key in zip(self._by_piece, keys, strict=True) if key in index]
        if not found:
            return None  # no piece in common: more than MAX_DISTANCE bits from every known photo
        candidates = np.unique(np.concatenate(found))  # ascending: ties go to the first, as argmin
        distances = differing_bits(self._hashes[candidates], query)
        nearest = int(distances.argmin())
        return str(self._groups[candidates[nearest]]) if distances[nearest] <= MAX_DISTANCE else None


def _piece_keys(rows: np.ndarray) -> list[np.ndarray]:
    """Hashes as (n, 16) bytes cut into MAX_DISTANCE + 1 pieces of bits: each piece's value per row.
    Two hashes within MAX_DISTANCE bits of each other are equal in at least one piece."""
    bits = np.unpackbits(rows, axis=1)
    return [
        bits[:, piece] @ (1 << np.arange(len(piece), dtype=np.int64))
        for piece in np.array_split(np.arange(128), MAX_DISTANCE + 1)
    ]


def near_copy_groups(hashes: Sequence[str | None]) -> list[list[int]]:
    """Photos that are near copies of each other, grouped: each group (ascending indices, two or
    more) holds photos linked by chains of hashes within MAX_DISTANCE bits (None: never grouped).

    Comparing every photo with every other is n^2; instead the 128 bits are cut into
    MAX_DISTANCE + 1 pieces: two hashes that differ in at most MAX_DISTANCE bits are equal in at
    least one piece, so only photos sharing a piece are compared, and only while they are not yet
    in one group. Equal hashes are one photo to compare: 3,000 saves of one placeholder picture
    took 49 s and 2.5 GB as a list of every pair; they are one group now.
    """
    present = np.array([i for i, value in enumerate(hashes) if value is not None], dtype=np.int64)
    if len(present) < 2:
        return []
    rows = np.frombuffer(b"".join(bytes.fromhex(hashes[i]) for i in present), dtype=np.uint8)
    rows, same_hash = np.unique(rows.reshape(len(present), 16), axis=0, return_inverse=True)
    group = np.arange(len(rows))  # each distinct hash's group, named by its smallest member
    for keys in _piece_keys(rows):
        order = np.argsort(keys, kind="stable")
        ranked = keys[order]
        for step in range(1, len(order)):  # hashes `step` apart in key order that share the key
            shared = ranked[:-step] == ranked[step:]
            if not shared.any():
                break  # no bucket holds more than `step` hashes
            first, second = order[:-step][shared], order[step:][shared]
            apart = group[first] != group[second]  # already one group: nothing to learn
            first, second = first[apart], second[apart]
            close = differing_bits(rows[first], rows[second]) <= MAX_DISTANCE
            _join(group, first[close], second[close])
    members = group[same_hash.reshape(-1)]
    groups: dict[int, list[int]] = {}
    for index, name in zip(present.tolist(), members.tolist(), strict=True):
        groups.setdefault(name, []).append(index)
    return sorted((found for found in groups.values() if len(found) > 1), key=lambda found: found[0])


def _join(group: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    """Merge the groups of each pair (a[k], b[k]) in place: every entry of `group` names its
    group's root (the smallest index), roots point at themselves."""
    while len(a):
        root_a, root_b = group[a], group[b]
        apart = root_a != root_b
        if not apart.any():
            return
        a, b, root_a, root_b = a[apart], b[apart], root_a[apart], root_b[apart]
        np.minimum.at(group, np.maximum(root_a, root_b), np.minimum(root_a, root_b))
        while True:  # point every entry at its root again
            hop = group[group]
            if np.array_equal(hop, group):
                break
            group[:] = hop
