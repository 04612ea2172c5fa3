"""Accuracy of the training recipes on sports100, on this CPU: `python bench/accuracy.py`.

Runs `sportsdet.train.train` (the code `sportsdet train` runs) and measures the resulting bundle
through the real prediction path on the test split, which is used for nothing else:

  1. sports100 official split (train / valid for the epoch choice / test): test top-1 and
     top-5 and training wall time, mean and spread over --seeds, for each --runs entry
     (model:recipe-variant, e.g. lite0:default, lite0:head-only, mobilenetv2:default);
  2. accuracy versus training minutes for the default recipe (--budgets, e.g. 2m,5m,10m);
  3. the six UIUC Sports Event classes that sports100 has, --split per-class:70,50, 5 seeds.

Frozen features are cached on disk (sportsdet.features), so only the first run of a model pays
for them: the table reports the first-run feature time separately from training time, and the
"cold" time (features + training) that a new user waits. Writes bench/results/accuracy.json and
the accuracy section of bench/RESULTS.md (between its markers; other sections are left alone).
The seed-cnn row comes from bench/results/seed_baseline.json when that file exists.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
import results_file  # noqa: E402
from train_builtin_model import DEFAULT_DATA, predict_split  # noqa: E402

RESULTS_JSON = REPO / "bench" / "results" / "accuracy.json"
SEED_JSON = REPO / "bench" / "results" / "seed_baseline.json"
START, END = "<!-- accuracy:start -->", "<!-- accuracy:end -->"
UIUC = ["croquet", "polo", "rock climbing", "rowing", "sailboat racing", "snow boarding"]

# Recipe variants: training options on top of the registry defaults.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "head-only": {"epochs": 1, "finetune_stages": 0},  # stage 2 trains nothing new: frozen + linear
}


def run_once(
    data: Path, model: str, variant: str, seed: int, split: str, options: dict[str, Any], classes=None
) -> dict[str, Any]:
    """Train one model, then measure test top-1/top-5 through the prediction path."""
    from sportsdet.bundle import load_bundle
    from sportsdet.data.splits import SplitManifest
    from sportsdet.metrics import top_k_accuracy
    from sportsdet.train import train

    with tempfile.TemporaryDirectory(prefix="sportsdet-acc-") as tmp:
        out = Path(tmp) / "run"
        started = time.time()
        result = train(
            data, out=out, model=model, split=split, seed=seed, classes=classes,
            options={**VARIANTS.get(variant, {}), **options},
        )  # fmt: skip
        seconds = time.time() - started
        bundle = load_bundle(out / "model")
        manifest = SplitManifest.load(out / "split.json")
        items = manifest.items("test")
        probs = predict_split(bundle, items)
        labels = np.array([label for _, label in items])
        info = bundle.training.get("transfer", {})
        return {
            "model": model,
            "variant": variant,
            "seed": seed,
            "split": split,
            "test_n": len(items),
            "train_n": len(manifest.items("train")),
            "top1": float((probs.argmax(1) == labels).mean()),
            "top5": float(top_k_accuracy(labels, probs, min(5, len(bundle.labels)))),
            "best_val_acc": result.best.get("val_acc"),
            "best_epoch": result.best.get("epoch"),
            "best_stage": result.best.get("stage"),
            "train_seconds": round(seconds, 1),
            "feature_seconds": info.get("feature_seconds"),
            "options": options,
        }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    top1 = [r["top1"] for r in runs]
    top5 = [r["top5"] for r in runs]
    secs = [r["train_seconds"] for r in runs]
    return {
        "n_seeds": len(runs),
        "top1_mean": statistics.mean(top1),
        "top1_sd": statistics.stdev(top1) if len(top1) > 1 else 0.0,
        "top1_min": min(top1),
        "top1_max": max(top1),
        "top5_mean": statistics.mean(top5),
        "seconds_mean": statistics.mean(secs),
        "seconds_max": max(secs),
    }


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def markdown(r: dict[str, Any]) -> str:
    lines = [
        START,
        "## Accuracy (transfer learning, sports100)",
        "",
        f"Measured {r['date']} on this 2-core CPU ({r['cpu_note']}). Test split used only to score.",
        "Training time is wall time of `sportsdet.train.train` with the feature cache warm; the",
        "first run of a model also pays the frozen-feature extraction shown in its own column",
        "(onnxruntime, contended CPU).",
        "",
        "| model | recipe | seeds | test top-1 (mean ± sd, range) | top-5 | train time | features (1st run)|",
        "|---|---|---|---|---|---|---|",
    ]
    for row in r["official"]:
        s = row["summary"]
        lines.append(
            f"| {row['model']} | {row['variant']} | {s['n_seeds']} | {pct(s['top1_mean'])} ± "
            f"{100 * s['top1_sd']:.2f} ({pct(s['top1_min'])}-{pct(s['top1_max'])}) | {pct(s['top5_mean'])} | "
            f"{s['seconds_mean'] / 60:.1f} min | {row.get('feature_seconds_cold', '-')} s |"
        )
    seed = r.get("seed_baseline")
    if seed:
        # The other engineer's file: the six UIUC classes, not the 100-class split.
        for s in seed.get("summary", []):
            lines.append(
                f"| seed-cnn | scratch, six UIUC classes {s.get('split')} | {len(s.get('seeds', []))} | "
                f"{pct(s.get('final_mean'))} ± {100 * (s.get('final_std') or 0):.2f} | - | "
                f"{s.get('minutes_per_run', 0):.0f} min | - |"
            )
    if r.get("budgets"):
        lines += [
            "",
            "Default recipe (lite0) versus training-time budget (`--set time_budget=...`), seed 0:",
            "",
        ]
        lines += ["| budget | test top-1 | top-5 | wall time |", "|---|---|---|---|"]
        for b in r["budgets"]:
            lines.append(
                f"| {b['budget']} | {pct(b['top1'])} | {pct(b['top5'])} | {b['train_seconds'] / 60:.1f} min |"
            )
    if r.get("uiuc"):
        u = r["uiuc"]
        s = u["summary"]
        lines += [
            "",
            f"Six UIUC classes ({', '.join(UIUC)}), `--split per-class:70,50`, {s['n_seeds']} seeds, "
            f"{u['model']} default recipe:",
            "",
            f"- test top-1 {pct(s['top1_mean'])} ± {100 * s['top1_sd']:.2f} (min {pct(s['top1_min'])}, "
            f"max {pct(s['top1_max'])}), {u['runs'][0]['test_n']} test images per seed; "
            f"{s['seconds_mean']:.0f} s per run",
        ]
    if r.get("notes"):
        lines += ["", *[f"- {note}" for note in r["notes"]]]
    lines.append(END)
    return "\n".join(lines)


def write_results(r: dict[str, Any]) -> None:
    results_file.write_results(r, RESULTS_JSON, markdown(r), START, END)


def save(r: dict[str, Any], no_write: bool) -> None:
    """Merge with the previous results file and write; called after each part so partial runs count."""
    r = dict(r)
    # Parts not run this time keep their previous numbers (one run need not redo everything).
    if RESULTS_JSON.exists():
        try:
            previous = json.loads(RESULTS_JSON.read_text())
        except json.JSONDecodeError:
            previous = {}
        ran = {row["model"] + ":" + row["variant"] for row in r["official"]}
        r["official"] = r["official"] + [
            row for row in previous.get("official", []) if row["model"] + ":" + row["variant"] not in ran
        ]
        r["budgets"] = r["budgets"] or previous.get("budgets", [])
        if "uiuc" not in r and "uiuc" in previous:
            r["uiuc"] = previous["uiuc"]
        r["notes"] = r["notes"] or previous.get("notes", [])
    if SEED_JSON.exists():
        try:
            r["seed_baseline"] = json.loads(SEED_JSON.read_text())
        except json.JSONDecodeError:
            pass
    if not no_write:
        write_results(r)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="sports100 folder")
    parser.add_argument("--runs", default="lite0:default", help="comma list of model:variant")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per official-split run")
    parser.add_argument("--budgets", default="", help="time budgets for lite0 default, e.g. 2m,5m,10m")
    parser.add_argument("--uiuc-seeds", type=int, default=5, help="seeds for the six UIUC classes (0: skip)")
    parser.add_argument("--note", action="append", default=[], help="a line to add under the tables")
    parser.add_argument("--no-write", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)

    import torch

    from sportsdet.features import FeatureKey, default_tap, measured_speed
    from sportsdet.models import build_model, get_model_spec

    torch.set_num_threads(2)
    r: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu_note": "2 cores shared with other engineers' jobs while measuring",
        "official": [],
        "budgets": [],
        "notes": args.note,
    }
    for entry in [e for e in args.runs.split(",") if e]:
        model, _, variant = entry.partition(":")
        variant = variant or "default"
        runs = []
        for seed in range(args.seeds):
            run = run_once(args.data, model, variant, seed, "official", {})
            print(json.dumps(run), flush=True)
            runs.append(run)
        spec = get_model_spec(model)
        tap = default_tap(build_model(model, 1), int(spec.train_defaults.get("finetune_stages", 2)))
        speed = measured_speed(FeatureKey(model, spec.preprocessing, "center", tap))
        defaults = spec.train_defaults
        views = 1 + bool(defaults.get("feature_flip")) + int(defaults.get("aug_views") or 0)
        n_train = runs[0]["train_n"] if runs else 0
        # What a first run pays before training: every train view plus the valid photos once.
        cold = round((n_train * views + 500) / speed) if speed else None
        r["official"].append(
            {"model": model, "variant": variant, "runs": runs, "summary": summarise(runs),
             "feature_seconds_cold": cold, "extract_img_per_s": speed}
        )  # fmt: skip
        save(r, args.no_write)
    for budget in [b for b in args.budgets.split(",") if b]:
        run = run_once(args.data, "lite0", "default", 0, "official", {"time_budget": budget})
        run["budget"] = budget
        print(json.dumps(run), flush=True)
        r["budgets"].append(run)
    if args.uiuc_seeds:
        runs = [
            run_once(args.data, "lite0", "default", seed, "per-class:70,50", {}, classes=UIUC)
            for seed in range(args.uiuc_seeds)
        ]
        r["uiuc"] = {"model": "lite0", "runs": runs, "summary": summarise(runs)}
        print(json.dumps(r["uiuc"]["summary"]), flush=True)
        save(r, args.no_write)
    if SEED_JSON.exists():
        try:
            r["seed_baseline"] = json.loads(SEED_JSON.read_text())
        except json.JSONDecodeError:
            pass
    save(r, args.no_write)
    print(json.dumps({k: v for k, v in r.items() if k != "official"}, default=str)[:2000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
