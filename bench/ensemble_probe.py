"""Would an ensemble of backbones be worth shipping as the built-in model? Measured, not assumed.

    python bench/train_builtin_model.py --model lite1 --out runs/b-lite1     # same split (seed 0)
    python bench/train_builtin_model.py --model lite0 --out runs/b-lite0
    python bench/ensemble_probe.py --model lite2=runs/b-lite2 --model lite1=runs/b-lite1 \\
        --model lite0=runs/b-lite0

Every model is a run trained with the built-in recipe on the same split (checked). Each runs
through the prediction engine in float (torch), and an ensemble averages its members'
calibrated probabilities. Rows: every model alone, every pair, all of them. Columns: the
validation photos of every source (what training selects on), sports100 test, websports
held-out (the split's test part), realworld-dev (never trained on; the generalisation signal),
with Wilson 95% intervals, and the seconds per photo the members cost together in this run (an
ensemble costs the sum of its members).

This answers the issue's "ensemble of backbones distilled into one": an ensemble's accuracy is
the most that distilling it into one network could keep. The table goes to bench/RESULTS.md
(section ensemble-probe), raw numbers to bench/results/ensemble_probe.json.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from realworld import photo_sets, predict, read_once  # noqa: E402
from results_file import write_results  # noqa: E402

START, END = "<!-- ensemble-probe:start -->", "<!-- ensemble-probe:end -->"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", action="append", required=True, help="NAME=RUN (a run folder)")
    parser.add_argument("--note", default="", help="a sentence for RESULTS.md about this run")
    args = parser.parse_args(argv)

    from sportsdet.metrics import wilson_interval
    from sportsdet.run_folder import resolve_bundle_dir
    from sportsdet.runtime import load_backend

    runs = dict(m.split("=", 1) for m in args.model)
    splits = {name: Path(run) / "split.json" for name, run in runs.items()}
    texts = {name: path.read_text() for name, path in splits.items()}
    if len(set(texts.values())) != 1:
        listed = ", ".join(map(str, splits.values()))
        raise SystemExit(f"error: the runs were trained on different splits ({listed})")
    sets = photo_sets(next(iter(splits.values())))
    read_once(sets)  # the first model timed is the cost baseline: no cold disk reads for it alone
    load = os.getloadavg()
    probs: dict[str, dict[str, np.ndarray]] = {}
    seconds: dict[str, float] = {}
    labels: list[str] = []
    for name, run in runs.items():
        backend = load_backend(resolve_bundle_dir(run), "torch")
        labels = labels or backend.labels
        if backend.labels != labels:
            raise SystemExit(f"error: {run} has other classes than {next(iter(runs.values()))}")
        started = time.perf_counter()
        probs[name] = {}
        for set_name, items in sets.items():
            p, kept = predict(backend, items)
            if len(kept) != len(items):
                raise SystemExit(f"error: {len(items) - len(kept)} unreadable photo(s) in {set_name}")
            probs[name][set_name] = p
        photos = sum(len(v) for v in sets.values())
        seconds[name] = (time.perf_counter() - started) / photos
        print(f"{name}: {seconds[name] * 1000:.0f} ms/photo", flush=True)

    truth = {k: np.array([labels.index(t) if t in labels else -1 for _, t in v]) for k, v in sets.items()}
    names = list(runs)
    combos = [c for r in range(1, len(names) + 1) for c in itertools.combinations(names, r)]
    rows = []
    for combo in combos:
        cost = round(sum(seconds[n] for n in combo), 4)
        row: dict = {"models": list(combo), "seconds_per_photo": cost, "sets": {}}
        for set_name in sets:
            p = np.mean([probs[n][set_name] for n in combo], axis=0)
            hits = int((p.argmax(axis=1) == truth[set_name]).sum())
            n = len(p)
            row["sets"][set_name] = {"right": hits, "n": n, "accuracy": hits / n,
                                     "ci95": list(wilson_interval(hits, n))}  # fmt: skip
        rows.append(row)
        scores = ", ".join(f"{k} {v['accuracy']:.1%}" for k, v in row["sets"].items())
        print(" + ".join(combo) + ": " + scores)
    payload = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_before": load,
               "load_after": os.getloadavg(), "runs": runs, "rows": rows, "note": args.note,
               "photos_read_first": True}  # fmt: skip
    section = render(payload)
    print(section)
    write_results(payload, ROOT / "bench" / "results" / "ensemble_probe.json", section, START, END)
    return 0


def render(payload: dict) -> str:
    rows = payload["rows"]
    set_names = list(rows[0]["sets"])
    base = rows[0]["seconds_per_photo"]
    lines = [
        START,
        "## Ensembles of fine-tuned backbones (bench/ensemble_probe.py)",
        "",
        f"Run {payload['when']}; load average before {[round(x, 2) for x in payload['load_before']]}. "
        "Runs: " + ", ".join(f"{k} = {v}" for k, v in payload["runs"].items()) + ". Float (torch) engine; "
        "an ensemble averages its members' calibrated probabilities; Wilson 95% intervals.",
        "",
        "| models | " + " | ".join(set_names) + f" | cost vs {rows[0]['models'][0]} |",
        "|---|" + "---|" * (len(set_names) + 1),
    ]
    for row in rows:
        cells = []
        for name in set_names:
            s = row["sets"][name]
            lo, hi = s["ci95"]
            cells.append(f"{s['accuracy']:.1%} ({lo:.1%}-{hi:.1%})")
        cost = f"{row['seconds_per_photo'] / base:.1f}x"
        lines.append(f"| {' + '.join(row['models'])} | " + " | ".join(cells) + f" | {cost} |")
    if payload.get("note"):
        lines += ["", payload["note"]]
    if not payload.get("photos_read_first"):
        lines += ["", f"Times measured before the script read every photo once ahead of timing: "
                  f"{rows[0]['models'][0]}, timed first and the cost baseline, alone read them from disk, "
                  "so the other costs may be understated (by how much was not measured)."]
    lines += ["", "Raw numbers: bench/results/ensemble_probe.json.", END]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
