"""How well the near-copy hash (sportsdet.near_copies) tells copies of a photo from other photos.

    python bench/near_copies.py                  # sports100 + websports as the built-in model split them
    python bench/near_copies.py --sheet out.png  # ... and draw every pair within --show bits, to check by eye

The "known" photos are the training and validation photos of the built-in model's split
(`sportsdet data split sports100 websports`); each test photo and each realworld-dev photo is
compared with all of them. For each set: how many are byte copies of a known photo, how many
more are near copies (within near_copies.MAX_DISTANCE bits), and how far the nearest known photo
is. Photos of two different sports are different photos, so the closest such pair bounds how
near two photos can be without being one: the margin under it is what keeps a new photo from
being called seen. Writes its section of bench/RESULTS.md and bench/results/near_copies.json.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from sportsdet.data.splits import SplitManifest
from sportsdet.near_copies import MAX_DISTANCE, differing_bits, near_copy_hash
from sportsdet.seen_photos import photo_digest

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
START, END = "<!-- near-copies:start -->", "<!-- near-copies:end -->"


def built_in_split(out: Path, sources: tuple[str, ...] = ("sports100", "websports")) -> SplitManifest:
    """The split the built-in model trained on (its sources, folders of ../shared/data), made the
    way a user makes it."""
    command = [sys.executable, "-m", "sportsdet", "data", "split", *(str(SHARED / name) for name in sources),
               "--out", str(out)]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    return SplitManifest.load(out)


def hashed(paths: list[Path]) -> tuple[np.ndarray, list[str], float]:
    """Near-copy hashes as (n, 16) bytes (flat photos: all-zero and marked), digests, ms per photo."""
    started = time.perf_counter()
    hashes = [near_copy_hash(p) for p in paths]
    ms = (time.perf_counter() - started) * 1000 / max(len(paths), 1)
    rows = np.array([list(bytes.fromhex(h)) if h else [0] * 16 for h in hashes], dtype=np.uint8)
    return rows, [photo_digest(p) for p in paths], ms


def distances(queries: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Bits that differ between every query hash and every known hash: (n_queries, n_known)."""
    out = np.empty((len(queries), len(known)), dtype=np.int16)
    for i, row in enumerate(queries):
        out[i] = differing_bits(known, row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show", type=int, default=16, help="list pairs up to this many bits apart")
    parser.add_argument("--sheet", type=Path, help="draw the listed pairs side by side into this PNG")
    args = parser.parse_args()
    load_before = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        manifest = built_in_split(Path(tmp) / "split.json")
    known_items = manifest.items("train") + manifest.items("valid")
    known_paths = [p for p, _ in known_items]
    known_labels = np.array([manifest.classes[y] for _, y in known_items])
    known, known_digests, ms_known = hashed(known_paths)
    flat_known = int((known == 0).all(axis=1).sum())
    sets = {
        "sports100 test": [(p, manifest.classes[y]) for p, y in manifest.items("test", "sports100")],
        "websports test": [(p, manifest.classes[y]) for p, y in manifest.items("test", "websports")],
        "realworld-dev": [(p, p.parent.name) for p in sorted((SHARED / "realworld-dev").glob("*/*.jpg"))],
    }
    rows, pairs, cross_hist, cross_pairs = [], [], np.zeros(MAX_DISTANCE * 3, dtype=int), 0
    known_set = set(known_digests)
    for name, items in sets.items():
        paths = [p for p, _ in items]
        labels = np.array([label for _, label in items])
        queries, digests, _ = hashed(paths)
        d = distances(queries, known)
        d[(queries == 0).all(axis=1)] = 128  # a flat photo has no hash: byte copies only
        nearest = d.min(axis=1)
        exact = np.array([digest in known_set for digest in digests])
        near = (nearest <= MAX_DISTANCE) & ~exact
        different_sport = labels[:, None] != known_labels[None, :]
        cross_hist += np.bincount(d[different_sport].ravel(), minlength=128)[: len(cross_hist)]
        cross_pairs += int(different_sport.sum())
        rows.append({
            "set": name, "photos": len(items), "byte copies": int(exact.sum()),
            "near copies": int(near.sum()),
            "nearest within 11-16 bits": int(((nearest > MAX_DISTANCE) & (nearest <= 16)).sum()),
            "closest photo of another sport": int(d[different_sport].min()),
        })  # fmt: skip
        for i in np.where(nearest <= args.show)[0]:
            j = int(d[i].argmin())
            pairs.append({
                "bits": int(nearest[i]), "byte copy": bool(exact[i]), "photo": str(paths[i]),
                "known": str(known_paths[j]), "same sport": bool(labels[i] == known_labels[j]),
            })  # fmt: skip
    seconds = time.perf_counter() - started
    closest_cross = int(np.nonzero(cross_hist)[0][0]) if cross_hist.any() else None
    if args.sheet:
        draw_sheet([p for p in pairs if not p["byte copy"]], args.sheet)

    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    header = ["set", "photos", "byte copies", "near copies", "nearest within 11-16 bits",
              "closest photo of another sport"]  # fmt: skip
    table = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    table += ["| " + " | ".join(str(r[k]) for k in header) + " |" for r in rows]
    listed = [
        f"- {p['bits']} bits: `{_short(p['photo'])}` ~ `{_short(p['known'])}`"
        + ("" if p["same sport"] else " (another sport)")
        for p in sorted(pairs, key=lambda p: p["bits"])
        if not p["byte copy"]
    ]
    print("\n".join(table))
    print("\n".join(listed))
    section = "\n".join([
        START,
        "## Near copies: the same photo with other bytes (bench/near_copies.py)",
        "",
        f"Run {when}, 2 CPUs, load average before {[round(x, 2) for x in load_before]}; {seconds:.0f} s. "
        f"Known photos: the {len(known_paths):,} training and validation photos of the built-in model's "
        "split "
        f"(sports100 official + websports random:0.2); {flat_known} of them too flat to hash. A near copy is "
        f"within {MAX_DISTANCE} of 128 bits of a known photo's hash (`sportsdet.near_copies`); hashing "
        "costs "
        f"{ms_known:.2f} ms per photo. 'closest photo of another sport' is the fewest bits between any photo "
        "of the set and any known photo of a different sport: certainly two different photos.",
        "",
        *table,
        "",
        f"Pairs within {args.show} bits that are not byte copies (the photo, then the known photo "
        "nearest it):",
        "",
        *listed,
        "",
        f"A photo of one sport and a known photo of another never came closer than {closest_cross} bits, "
        f"in {cross_pairs:,} such pairs. " + READING,
        "",
        "Raw numbers: bench/results/near_copies.json.",
        END,
    ])  # fmt: skip
    from results_file import write_results

    payload = {"when": when, "max_distance": MAX_DISTANCE, "rows": rows, "pairs": pairs,
               "cross_sport_histogram": cross_hist.tolist(), "ms_per_photo": ms_known,
               "seconds": seconds}  # fmt: skip
    write_results(payload, HERE / "results" / "near_copies.json", section, START, END)


READING = (
    "Every pair listed was looked at side by side (`--sheet`, 2026-12-03): each within the threshold is "
    "one photo saved twice (resized, re-compressed, trimmed by a few pixels; the realworld-dev one is a "
    "tighter crop of a sports100 training photo, which the built-in model, trained on it, gets right at "
    "99.6%). Of the 7 at 14-16 bits, 6 are copies too (a watermark strip, a slightly tighter crop, a dark "
    "picture whose bits are noisier) and one is two different photos framed alike (two racing cars shot "
    "in a studio on white, 15 bits). So the threshold stays at 10 bits, under every different photo seen: "
    "a copy further out is scored as a new photo, as before this hash, and a new photo is not called seen."
)


def _short(path: str) -> str:
    return path.split("data/", 1)[-1]


def draw_sheet(pairs: list[dict], out: Path, side: int = 160) -> None:
    from PIL import Image, ImageDraw

    sheet = Image.new("RGB", (2 * side + 10, max(len(pairs), 1) * (side + 18)), "white")
    draw = ImageDraw.Draw(sheet)
    for row, pair in enumerate(sorted(pairs, key=lambda p: p["bits"])):
        top = row * (side + 18)
        draw.text((2, top + 2), f"{pair['bits']} bits: {_short(pair['photo'])}", fill="black")
        for col, path in enumerate((pair["photo"], pair["known"])):
            with Image.open(path) as image:
                thumb = image.convert("RGB")
                thumb.thumbnail((side, side))
            sheet.paste(thumb, (col * (side + 10), top + 16))
    sheet.save(out)


if __name__ == "__main__":
    main()
