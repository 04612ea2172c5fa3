"""Which abstain score keeps non-sport photos from a confident sports label? (issue 15, part 4)

Runs the built-in model (INT8 ONNX, what `sportsdet predict` uses) over sports100 valid and
test and over non-sport photos: every photo that ships inside scikit-image's `data` module (no
download), matplotlib's and scikit-learn's sample photos, and a few made here (noise, flat
colour, gradients, stripes, charts, a page of text). For each
score (max probability, margin top1-top2, normalised entropy) the threshold is fitted on
valid at 95% coverage (`sportsdet.abstain.fit_abstain`), then we count test photos answered
and non-sport photos that still get a confident label.

    PYTHONPATH=src python bench/abstain_scores.py [--data ../shared/data/sports100] [--coverage 0.95]
"""

from __future__ import annotations

import argparse
import io
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

from sportsdet.abstain import SCORES, abstain_scores, fit_abstain
from sportsdet.bundle import builtin_bundle_path
from sportsdet.files import iter_image_files
from sportsdet.runtime import load_backend, stream_predictions

HERE = Path(__file__).resolve().parent
START, END = "<!-- abstain:start -->", "<!-- abstain:end -->"
READING = (
    "Reading: every score keeps at least 95% of test photos answered; entropy (1 - H/ln C) leaves "
    "the fewest non-sport photos labelled, so it is the default (`abstain.DEFAULT_SCORE`). The "
    "built-in bundle's own rule is fitted the same way but on the validation photos of both its "
    "sources, so its threshold differs from the rows here, which use sports100 valid only. Since "
    "the distance head (models.heads), photos unlike every class get flat scores (coffee, cat, "
    "hubble: top score about 0.2 or less); what is still labelled is close to a sport in the model's "
    "features (the astronaut reads as 'shooting'). With 36 photos, one or two either way is a small "
    "difference. Since the head's scale is squared (sharpness 2, bench/distance_sharpness.py), the "
    "bar chart, brick and text photos that the first form of the head still labelled get flat scores."
)


def skimage_photos() -> list[tuple[str, bytes]]:
    """scikit-image's bundled photos (RGB or grey) as PNG bytes; the ones needing a download are skipped."""
    from skimage import data

    names = [
        "astronaut", "coffee", "chelsea", "rocket", "cat", "camera", "horse", "coins", "moon", "page",
        "text", "clock", "hubble_deep_field", "immunohistochemistry", "logo", "colorwheel", "grass",
        "gravel", "brick", "retina", "eagle", "microaneurysms", "lily",
    ]  # fmt: skip
    photos = []
    for name in names:
        try:
            array = getattr(data, name)()
        except Exception:  # noqa: BLE001  (needs pooch / network: not shipped in the package)
            continue
        if isinstance(array, tuple):
            array = array[0]
        array = np.asarray(array)
        if array.dtype != np.uint8:
            values = array.astype(np.float64)
            array = (255 * (values - values.min()) / max(np.ptp(values), 1e-9)).astype(np.uint8)
        if array.ndim == 3 and array.shape[2] == 4:
            array = array[:, :, :3]
        if array.ndim not in (2, 3):
            continue
        buffer = io.BytesIO()
        Image.fromarray(array).convert("RGB").save(buffer, format="PNG")
        photos.append((f"skimage:{name}", buffer.getvalue()))
    return photos


def package_photos() -> list[tuple[str, bytes]]:
    """Other non-sport photos that ship inside installed packages: matplotlib's sample photos and
    scikit-learn's two sample images (kept apart from scikit-image's, which the issue names)."""
    photos = []
    try:
        import matplotlib

        sample = Path(matplotlib.get_data_path()) / "sample_data"
        for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png"):
            if (sample / name).is_file():
                photos.append((f"matplotlib:{Path(name).stem}", (sample / name).read_bytes()))
    except ImportError:
        pass
    try:
        from sklearn.datasets import load_sample_images

        for name, array in zip(("china", "flower"), load_sample_images().images, strict=True):
            buffer = io.BytesIO()
            Image.fromarray(array).save(buffer, format="PNG")
            photos.append((f"sklearn:{name}", buffer.getvalue()))
    except ImportError:
        pass
    return photos


def _drawn(seed: int) -> dict[str, Image.Image]:
    """Pictures people do try on a photo classifier: a bar chart, a line chart, a page of text."""
    from PIL import ImageDraw

    rng = np.random.default_rng(seed)
    bars = Image.new("RGB", (400, 300), "white")
    draw = ImageDraw.Draw(bars)
    draw.line([(40, 20), (40, 270), (380, 270)], fill="black", width=2)
    for i, height in enumerate(rng.integers(40, 230, 5)):
        draw.rectangle([60 + 62 * i, 270 - int(height), 100 + 62 * i, 270], fill=(31, 119, 180))
    chart = Image.new("RGB", (400, 300), "white")
    draw = ImageDraw.Draw(chart)
    draw.line([(40, 20), (40, 270), (380, 270)], fill="black", width=2)
    ys = 150 + np.cumsum(rng.normal(0, 12, 34))
    points = [(40 + 10 * i, float(np.clip(y, 25, 265))) for i, y in enumerate(ys)]
    draw.line(points, fill=(214, 39, 40), width=2)
    page = Image.new("RGB", (400, 300), "white")
    draw = ImageDraw.Draw(page)
    for line in range(14):
        draw.text((20, 12 + 20 * line), "Lorem ipsum dolor sit amet, consectetur adipiscing.", fill="black")
    return {"bar chart": bars, "line chart": chart, "text page": page}


def made_photos(seed: int = 0) -> list[tuple[str, bytes]]:
    """Non-sport pictures made here: noise, flat colours, gradients, stripes, charts, text."""
    rng = np.random.default_rng(seed)
    arrays = {
        "noise": rng.integers(0, 256, (256, 256, 3), dtype=np.uint8),
        "grey": np.full((256, 256, 3), 128, np.uint8),
        "black": np.zeros((256, 256, 3), np.uint8),
        "white": np.full((256, 256, 3), 255, np.uint8),
        "red": np.tile(np.array([220, 30, 30], np.uint8), (256, 256, 1)),
        "gradient": np.tile(np.linspace(0, 255, 256, dtype=np.uint8)[None, :, None], (256, 1, 3)),
        "stripes": np.tile(((np.arange(256) // 16) % 2 * 255).astype(np.uint8)[None, :, None], (256, 1, 3)),
    }
    images = {name: Image.fromarray(array) for name, array in arrays.items()} | _drawn(seed)
    out = []
    for name, image in images.items():
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        out.append((f"made:{name}", buffer.getvalue()))
    return out


def labelled(folder: Path, labels: list[str]) -> tuple[list[tuple[str, Path]], np.ndarray]:
    index = {label: i for i, label in enumerate(labels)}
    items, truth = [], []
    for path in iter_image_files(folder):
        label = path.relative_to(folder).parts[0]
        if label in index:
            items.append((str(path), path))
            truth.append(index[label])
    return items, np.asarray(truth)


def run(backend, items) -> np.ndarray:
    rows = []
    for result in stream_predictions(items, backend):
        if not result.ok:
            raise SystemExit(f"error: {result.error}")
        rows.append(result.probs)
    return np.stack(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HERE.parent.parent / "shared" / "data" / "sports100")
    parser.add_argument("--coverage", type=float, default=0.95)
    args = parser.parse_args()
    load_before = os.getloadavg()
    started = time.perf_counter()
    backend = load_backend(builtin_bundle_path(), int8=True)
    valid_items, valid_y = labelled(args.data / "valid", backend.labels)
    test_items, test_y = labelled(args.data / "test", backend.labels)
    others = skimage_photos() + package_photos() + made_photos()
    valid_p, test_p, other_p = run(backend, valid_items), run(backend, test_items), run(backend, others)
    seconds = time.perf_counter() - started

    rows = []
    for method in SCORES:
        policy = fit_abstain(
            valid_p, valid_y, coverage=args.coverage, method=method, fitted_on="sports100 valid"
        )
        test_answered = ~policy.uncertain(test_p)
        other_unsure = policy.uncertain(other_p)
        test_correct = test_p.argmax(1) == test_y
        confident = [name for (name, _), unsure in zip(others, other_unsure, strict=True) if not unsure]
        rows.append(
            {
                "method": method,
                "threshold": policy.threshold,
                "valid_coverage": policy.valid_coverage,
                "valid_accuracy_answered": policy.valid_accuracy_answered,
                "test_coverage": float(test_answered.mean()),
                "test_accuracy_answered": float(test_correct[test_answered].mean()),
                "nonsport_abstained": int(other_unsure.sum()),
                "nonsport_total": len(others),
                "nonsport_confident": confident,
            }
        )
    table = [
        "| score | threshold | valid answered | test answered | test accuracy answered "
        "| non-sport abstained | still labelled |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        table.append(
            f"| {row['method']} | {row['threshold']:.4f} | {row['valid_coverage']:.1%} "
            f"| {row['test_coverage']:.1%} "
            f"| {row['test_accuracy_answered']:.2%} | {row['nonsport_abstained']}/{row['nonsport_total']} "
            f"| {', '.join(n.split(':', 1)[1] for n in row['nonsport_confident']) or '-'} |"
        )
    print("\n".join(table))
    # Per-photo scores of the non-sport photos, for the record.
    detail = {
        name: {method: float(abstain_scores(p, method)) for method in SCORES}
        for (name, _), p in zip(others, other_p, strict=True)
    }
    top = {name: backend.labels[int(p.argmax())] for (name, _), p in zip(others, other_p, strict=True)}
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    section = "\n".join(
        [
            START,
            "## Abstain score: which one keeps non-sport photos unlabelled (bench/abstain_scores.py)",
            "",
            f"Run {when}, {os.cpu_count()} CPUs, load average before {[round(x, 2) for x in load_before]}, "
            f"after {[round(x, 2) for x in os.getloadavg()]}; {seconds:.0f} s. The built-in model "
            f"({backend.name}); each threshold fitted on sports100 valid ({len(valid_y)} photos) at "
            f"{args.coverage:.0%} coverage, then applied to sports100 test ({len(test_y)} photos) and to "
            f"{len(others)} non-sport photos ({sum(n.startswith('skimage') for n, _ in others)} shipped in "
            f"scikit-image's `data` module, {len(package_photos())} in matplotlib's and scikit-learn's "
            "sample data, the rest made here: noise, flat colours, "
            "gradient, stripes, a bar chart, a line chart, a page of text).",
            "",
            *table,
            "",
            "Scores of each non-sport photo (max_prob / margin / entropy, best guess): "
            + "; ".join(
                f"{name.split(':', 1)[1]} {d['max_prob']:.2f}/{d['margin']:.2f}/{d['entropy']:.2f} "
                f"({top[name]})"
                for name, d in detail.items()
            ),
            "",
            READING,
            "Raw numbers: bench/results/abstain_scores.json.",
            END,
        ]
    )
    from results_file import write_results

    payload = {"when": when, "rows": rows, "nonsport_scores": detail, "nonsport_top": top, "seconds": seconds}
    write_results(payload, HERE / "results" / "abstain_scores.json", section, START, END)


if __name__ == "__main__":
    main()
