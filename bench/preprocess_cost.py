"""Where a photo's CPU time goes before the model sees it: `python bench/preprocess_cost.py`.

Times each step of THE preprocessing (sportsdet.preprocess, the built-in model's spec) one
photo at a time on one thread, on sports100 photos (224 px) and on 4000x3000 JPEGs made from
them, and on a few of those saved as HEIC (what an iPhone writes): read + decode (JPEGs at
reduced size with Pillow `draft`; HEIC cannot be decoded smaller), resize + crop, normalise into
a fresh array versus into a reused one (what the streaming predictor does), and the whole
`load_and_preprocess` both ways. Median of `--repeats` passes; per-photo means within a pass.
Writes bench/results/preprocess_cost.json and the preprocess section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import results_file
from throughput import make_large

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "sports100"
RESULTS_JSON = REPO / "bench" / "results" / "preprocess_cost.json"
START, END = "<!-- preprocess:start -->", "<!-- preprocess:end -->"


def per_photo_ms(step: Callable[[Any], Any], inputs: list[Any], repeats: int) -> float:
    """Median over passes of the mean milliseconds per input (one warm-up pass first)."""
    for item in inputs[:5]:
        step(item)
    return float(np.median([_pass_ms(step, inputs) for _ in range(repeats)]))


def _pass_ms(step: Callable[[Any], Any], inputs: list[Any]) -> float:
    """Mean milliseconds per input of one pass over `inputs`."""
    start = time.perf_counter()
    for item in inputs:
        step(item)
    return (time.perf_counter() - start) / len(inputs) * 1000


def paired_ms(
    first: Callable[[Any], Any], second: Callable[[Any], Any], inputs: list[Any], repeats: int
) -> tuple[float, float]:
    """per_photo_ms of two variants timed in alternate passes (which goes first alternates too), so
    a drift of the machine's speed falls on both alike."""
    for item in inputs[:5]:
        first(item)
        second(item)
    passes: dict[int, list[float]] = {0: [], 1: []}
    for number in range(repeats):
        order = (0, 1) if number % 2 == 0 else (1, 0)
        for which in order:
            passes[which].append(_pass_ms((first, second)[which], inputs))
    return float(np.median(passes[0])), float(np.median(passes[1]))


def measure(paths: list[Path], repeats: int) -> dict[str, float]:
    from sportsdet.bundle import builtin_bundle_path, load_bundle
    from sportsdet.imageio import load_image
    from sportsdet.preprocess import load_and_preprocess, normalize, resize_image

    spec = load_bundle(builtin_bundle_path(), verify_weights=False).preprocessing
    decoded = [load_image(p, min_size=spec.decode_size) for p in paths]
    resized = [resize_image(image, spec) for image in decoded]
    reused = np.empty((3, spec.input_size, spec.input_size), np.float32)
    normalise = paired_ms(
        lambda image: normalize(image, spec), lambda image: normalize(image, spec, reused), resized, repeats
    )
    total = paired_ms(
        lambda p: load_and_preprocess(p, spec),
        lambda p: load_and_preprocess(p, spec, out=reused),
        paths,
        repeats,
    )
    return {
        "read_decode_ms": per_photo_ms(lambda p: load_image(p, min_size=spec.decode_size), paths, repeats),
        "resize_crop_ms": per_photo_ms(lambda image: resize_image(image, spec), decoded, repeats),
        "normalise_fresh_ms": normalise[0],
        "normalise_reused_ms": normalise[1],
        "total_fresh_ms": total[0],
        "total_reused_ms": total[1],
    }


def make_heic(paths: list[Path], out: Path) -> list[Path]:
    """The same photos as HEIC at quality 85, an iPhone's default (about 12 s each to encode)."""
    from PIL import Image

    from sportsdet.imageio import enable_decoder

    enable_decoder("HEIF", "bench")  # registers pillow-heif, which also writes HEIF
    made = []
    for path in paths:
        target = out / f"{path.stem}.heic"
        with Image.open(path) as image:
            image.save(target, format="HEIF", quality=85)
        made.append(target)
    return made


def markdown(r: dict[str, Any]) -> str:
    rows = [
        ("read + decode (Pillow `draft` for JPEGs)", "read_decode_ms"),
        ("resize + centre crop (bicubic)", "resize_crop_ms"),
        ("normalise into a fresh array", "normalise_fresh_ms"),
        ("normalise into a reused array (the streaming predictor)", "normalise_reused_ms"),
        ("`load_and_preprocess`, fresh array", "total_fresh_ms"),
        ("`load_and_preprocess`, reused array", "total_reused_ms"),
    ]
    small, large, heic, spec = r["photos_224"], r["photos_large"], r["photos_heic"], r["spec"]
    ratios = [heic[key] / large[key] for key in ("total_fresh_ms", "total_reused_ms")]
    return "\n".join(
        [
            START,
            "## Preprocessing cost per photo (bench/preprocess_cost.py)",
            "",
            f"Run {r['when']} on {r['machine']}; load average before {r['load_before']}, "
            f"after {r['load_after']}. One thread, the built-in model's preprocessing "
            f"({spec['input_size']} px, {spec['resize']}, {spec['interpolation']}); "
            f"median of {r['repeats']} passes.",
            "",
            f"| step | ms per photo, {small['n']} sports100 photos (224 px) | "
            f"ms per photo, {large['n']} 4000x3000 JPEGs | ms per photo, {heic['n']} of them as HEIC |",
            "|---|---:|---:|---:|",
            *[f"| {name} | {small[key]:.3f} | {large[key]:.3f} | {heic[key]:.3f} |" for name, key in rows],
            "",
            "HEIC (HEVC inside, decoded by pillow-heif with one decoding thread here) has no reduced-size",
            f"decoding: each phone photo costs {min(ratios):.0f}x to {max(ratios):.0f}x what the same photo "
            "costs as a JPEG (the last two rows).",
            "",
            f"A fresh array is {3 * spec['input_size'] ** 2 * 4 / 1024:,.0f} KiB per photo (3 x "
            f"{spec['input_size']} x {spec['input_size']} float32); the streaming predictor writes each "
            "photo into its worker's reused batch array instead. The fresh and reused rows are timed in "
            "alternate passes; their difference is "
            + ", ".join(
                f"{c['total_fresh_ms'] - c['total_reused_ms']:+.3f} ms ({what})"
                for c, what in ((small, "224 px"), (large, "4000x3000 JPEG"), (heic, "HEIC"))
            )
            + " per photo for the whole sequence: within the noise where it is small against the row.",
            "Raw numbers: bench/results/preprocess_cost.json.",
            END,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="sports100 folder")
    parser.add_argument("--photos", type=int, default=300, help="224 px photos to time")
    parser.add_argument("--large", type=int, default=16, help="4000x3000 JPEGs to make and time")
    parser.add_argument("--heic", type=int, default=6, help="of the large photos, how many to time as HEIC")
    parser.add_argument("--repeats", type=int, default=5, help="passes per step (median reported)")
    parser.add_argument("--no-write", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)
    if not (args.data / "test").is_dir():
        sys.exit(f"error: {args.data}: sports100 not found (pass --data)")

    from sportsdet.bundle import builtin_bundle_path, load_bundle

    photos = sorted((args.data / "test").rglob("*.jpg"))[: args.photos]
    r: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
        "load_before": [round(x, 2) for x in os.getloadavg()],
        "repeats": args.repeats,
        "spec": load_bundle(builtin_bundle_path(), verify_weights=False).preprocessing.to_dict(),
    }
    r["photos_224"] = {"n": len(photos), **measure(photos, args.repeats)}
    with tempfile.TemporaryDirectory(prefix="sportsdet-bench-") as tmp:
        large = make_large(photos[:: max(1, len(photos) // args.large)][: args.large], Path(tmp))
        r["photos_large"] = {"n": len(large), **measure(large, args.repeats)}
        import pillow_heif

        pillow_heif.options.DECODE_THREADS = 1  # one thread, like every other row
        heic = make_heic(large[: args.heic], Path(tmp))
        r["photos_heic"] = {"n": len(heic), **measure(heic, args.repeats)}
    r["load_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(r, indent=2))
    if not args.no_write:
        results_file.write_results(r, RESULTS_JSON, markdown(r), START, END)
    return 0


if __name__ == "__main__":
    sys.exit(main())
