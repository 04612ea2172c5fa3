"""Does a trained model do better on real-world photos when it looks at them larger? Measured.

    python bench/test_resolution.py --run runs/builtin [--run runs/other] [--sizes 260 280 300 320]
    python bench/test_resolution.py --keep --run runs/new --sizes 300 320   # add a run to the table

EfficientNet-Lite ends in global pooling, so a network trained at one input size runs at any
other. This runs each run's model (float, torch, its own weights unchanged) with only the
preprocessing's input size changed (the photo is scaled so its shorter side fills the larger
input, then centre-cropped, as at the trained size), over the validation photos of every
source, sports100 test, websports held-out and realworld-dev, with Wilson 95% intervals and the
seconds per photo relative to the trained size. Nothing is refitted at the new size (the
temperature, the distance head, the abstain threshold): top-1 is what this measures. Table to
bench/RESULTS.md (section test-resolution), raw numbers to bench/results/test_resolution.json.
With --keep, the runs already in that file stay (run folders are scratch and may be gone; their
recorded numbers are not), each with the time it was measured; a run given again is replaced.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from realworld import photo_sets, predict, read_once  # noqa: E402
from results_file import write_results  # noqa: E402

START, END = "<!-- test-resolution:start -->", "<!-- test-resolution:end -->"


def measure(run: Path, sizes: list[int]) -> dict:
    """Top-1 of every set and the time per photo at every size, for one run."""
    from sportsdet.bundle import load_bundle
    from sportsdet.metrics import wilson_interval
    from sportsdet.runtime import TorchBackend

    bundle = load_bundle(run / "model")
    backend = TorchBackend(bundle)
    trained = bundle.preprocessing.input_size
    sets = photo_sets(run / "split.json")
    read_once(sets)  # the trained size, timed first, is the 1.00x baseline: no cold reads for it alone
    rows = []
    for size in sorted(set(sizes) | {trained}):
        backend.preprocessing = dataclasses.replace(bundle.preprocessing, input_size=size)
        row: dict = {"size": size, "sets": {}}
        seconds, photos = 0.0, 0
        for name, items in sets.items():
            started = time.perf_counter()
            probs, kept = predict(backend, items)
            seconds += time.perf_counter() - started
            photos += len(kept)
            truth = np.array([backend.labels.index(items[i][1]) for i in kept])
            right = probs.argmax(1) == truth
            hits = int(right.sum())
            cell = {"n": len(kept), "right": hits, "ci95": list(wilson_interval(hits, len(kept)))}
            if name == "realworld-dev":
                per_class = {}
                for label in sorted({items[i][1] for i in kept}):
                    mine = truth == backend.labels.index(label)
                    per_class[label] = f"{int(right[mine].sum())}/{int(mine.sum())}"
                cell["per_class"] = per_class
            row["sets"][name] = cell
        row["seconds_per_photo"] = seconds / photos
        rows.append(row)
        scores = ", ".join(f"{k} {v['right'] / v['n']:.1%}" for k, v in row["sets"].items())
        print(run.name, size, scores, flush=True)
    base = next(r for r in rows if r["size"] == trained)["seconds_per_photo"]
    for row in rows:
        row["relative_time"] = row["seconds_per_photo"] / base
    return {"trained_size": trained, "rows": rows, "sets": list(sets), "photos_read_first": True}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, action="append", required=True, help="a run folder, repeatable")
    parser.add_argument("--sizes", type=int, nargs="+", default=[260, 280, 300, 320])
    parser.add_argument("--keep", action="store_true", help="keep the runs already measured in the raw file")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    raw = ROOT / "bench" / "results" / "test_resolution.json"
    runs = {}
    if args.keep and raw.is_file():
        earlier = json.loads(raw.read_text())
        for run, result in earlier["runs"].items():
            runs[run] = {"when": earlier["when"], **result}  # older files give one time for all runs
    for run in args.run:
        runs[str(run)] = {"when": when, **measure(run, args.sizes)}

    names = next(iter(runs.values()))["sets"]
    table = [
        "| run | input size | " + " | ".join(names) + " | realworld-dev per class | time per photo |",
        "|---|---:|" + "---|" * (len(names) + 1) + "---:|",
    ]
    for run, result in runs.items():
        for row in result["rows"]:
            cells = [
                f"{c['right'] / c['n']:.1%} ({c['ci95'][0]:.0%}-{c['ci95'][1]:.0%})"
                for c in row["sets"].values()
            ]
            per_class = ", ".join(f"{k} {v}" for k, v in row["sets"]["realworld-dev"]["per_class"].items())
            bold = "**" if row["size"] == result["trained_size"] else ""
            size = f"{bold}{row['size']}{bold}"
            table.append(
                f"| {Path(run).name} | {size} | " + " | ".join(cells) + f" | {per_class} | "
                f"{row['relative_time']:.2f}x |"
            )
    print("\n".join(table))
    measured = "; ".join(f"`{Path(run).name}` {result['when']}" for run, result in runs.items())
    section = "\n".join(
        [
            START,
            "## Looking at photos larger than the model was trained at (bench/test_resolution.py)",
            "",
            f"Measured: {measured} (load average before the last run "
            f"{[round(x, 2) for x in load_before]}). "
            f"Runs {', '.join(f'`{run}`' for run in runs)} (the trained size in bold), float (torch), "
            "the same weights at every size; "
            "top-1 with Wilson 95% intervals; time per photo (decoding included, all sets) relative "
            "to the trained size.",
            "",
            *table,
            "",
            READING,
            *cold_caveat(runs),
            "",
            "Raw numbers: bench/results/test_resolution.json.",
            END,
        ]
    )
    payload = {"when": when, "runs": runs}
    write_results(payload, raw, section, START, END)
    return 0


def cold_caveat(runs: dict[str, dict]) -> list[str]:
    """Runs measured before the photos were read once ahead of timing: their first size (the
    trained one, the 1.00x) read them from disk, the others from the page cache."""
    cold = [Path(run).name for run, result in runs.items() if not result.get("photos_read_first")]
    if not cold:
        return []
    return ["", f"Times of {', '.join(cold)} were measured before the script read every photo once ahead "
            "of timing: the trained size, timed first, alone read them from disk, so the other sizes' "
            "time ratios may be understated (by how much was not measured)."]


READING = (
    "Reading: the same weights read real-world photos better when they see them larger. "
    "realworld-dev goes from 62.8% at 260 px to 70.6% at 320 px for v2e, and from 64.5% to 68.6% "
    "for v2c, mostly on soccer. Validation and websports held-out stay within their intervals or "
    "gain a little. sports100 test, whose photos are 224 px crops, loses 0.6 to 1.6 points. "
    "Zooming into the centre at 260 px instead (crop_pct 0.9 to 0.75, checked in a scratch "
    "script) loses accuracy everywhere, so what helps is the detail, not a bigger subject. The "
    "cost is 1.1-1.2x per photo at 280 px and 1.6x at 320 px, against the issue's 10% throughput "
    "budget. Nothing else was refitted at the larger size (the temperature, the distance head "
    "and the abstain threshold were fitted at 260 px), so the models that followed were trained "
    "at the larger size instead (`--set input_size`, every fit made at the size it runs at; "
    "builtin-recipes): lite2 at 280 px (v2h280) gained the same 4.6 points on realworld-dev and "
    "lost the same 1.0 on sports100 test, but ran at 89% of v2e's end-to-end rate, outside the "
    "budget as INT8 was exported then (before each ReLU6 was folded into its convolution); lite1 "
    "at 300 px (v2i, now built in) costs about what lite2 at 260 px did and gains "
    "3.3 points on realworld-dev and 0.6 on sports100 test (float). v2i itself, trained at "
    "300 px, gains nothing more from looking larger: 66.9% at 320 px and 66.3% at 340 px against "
    "66.1% (within one interval), while sports100 test and websports held-out lose up to 0.4 and "
    "1.3 points at 340 px; so the built-in model runs at the size it was trained at."
)

if __name__ == "__main__":
    raise SystemExit(main())
