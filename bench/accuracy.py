"""Accuracy of the training recipes on sports100, on this CPU: `python bench/accuracy.py`.

Runs `sportsdet.train.train` (the code `sportsdet train` runs) and measures the resulting bundle
through the real prediction path on the test split, which is used for nothing else:

  1. sports100 official split (train / valid for the epoch choice / test): test top-1 and
     top-5 and training wall time, mean and spread over --seeds, for each --runs entry
     (model:recipe-variant, e.g. lite0:default, lite0:more-views, mobilenetv2:default);
  2. accuracy versus training minutes for the default recipe (--budgets, e.g. 2m,5m,10m);
  3. the six UIUC Sports Event classes that sports100 has, --split per-class:70,50, 5 seeds.

Frozen features are cached on disk (sportsdet.training.feature_cache), so only the first run of a model pays
for them: the table reports the first-run feature time separately from training time, and the
"cold" time (features + training) that a new user waits. Writes bench/results/accuracy.json and
the accuracy section of bench/RESULTS.md (between its markers; other sections are left alone).
The seed-cnn row comes from bench/results/seed_baseline.json when that file exists.
"""

from __future__ import annotations

import argparse
import json
import os
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
from train_builtin_model import SHARED, predict_split  # noqa: E402

DEFAULT_DATA = SHARED / "sports100"

from sportsdet.training.feature_cache import CACHE_ENV  # noqa: E402

RESULTS_JSON = REPO / "bench" / "results" / "accuracy.json"
SEED_JSON = REPO / "bench" / "results" / "seed_baseline.json"
START, END = "<!-- accuracy:start -->", "<!-- accuracy:end -->"
UIUC = ["croquet", "polo", "rock climbing", "rowing", "sailboat racing", "snow boarding"]

# Recipe variants: training options on top of the registry defaults.
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    # Few photos per class: extraction is cheap, so cache the mirror and 4 random crops and train longer.
    "more-views": {"feature_flip": True, "aug_views": 4, "epochs": 6},
}


def variant_options(variant: str) -> dict[str, Any]:
    """A named variant, or "budget-15m": the registry defaults planned to fit `--time-budget 15m`."""
    if variant in VARIANTS:
        return VARIANTS[variant]
    if variant.startswith("budget-"):
        return {"time_budget": variant.removeprefix("budget-")}
    raise SystemExit(f"unknown recipe variant {variant!r}: use {', '.join(VARIANTS)} or budget-<time>")


def run_once(
    data: Path,
    model: str,
    variant: str,
    seed: int,
    split: str,
    options: dict[str, Any],
    classes=None,
    cold: bool = False,
) -> dict[str, Any]:
    """Train one model, then measure test top-1/top-5 through the prediction path.

    cold: use an empty feature cache, so the wall time includes the frozen-feature extraction.
    """
    from sportsdet.bundle import load_bundle
    from sportsdet.data.splits import SplitManifest
    from sportsdet.metrics import top_k_accuracy
    from sportsdet.train import train

    with tempfile.TemporaryDirectory(prefix="sportsdet-acc-") as tmp:
        out = Path(tmp) / "run"
        if cold:  # a fresh feature cache: this run pays the extraction a new user pays
            os.environ[CACHE_ENV] = str(Path(tmp) / "feature-cache")
        started = time.time()
        try:
            result = train(
                data, out=out, model=model, split=split, seed=seed, classes=classes,
                options={**variant_options(variant), **options},
            )  # fmt: skip
        finally:
            if cold:
                os.environ.pop(CACHE_ENV, None)
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
            "finetune_epochs": info.get("finetune_epochs"),
            "cold": cold,
            "options": options,
        }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    top1 = [r["top1"] for r in runs]
    top5 = [r["top5"] for r in runs]
    secs = [r["train_seconds"] for r in runs]
    features = [r["feature_seconds"] for r in runs if r.get("feature_seconds") is not None]
    return {
        "n_seeds": len(runs),
        "top1_mean": statistics.mean(top1),
        "top1_sd": statistics.stdev(top1) if len(top1) > 1 else 0.0,
        "top1_min": min(top1),
        "top1_max": max(top1),
        "top5_mean": statistics.mean(top5),
        "seconds_mean": statistics.mean(secs),
        "seconds_max": max(secs),
        "feature_seconds_mean": statistics.mean(features) if features else None,
        "cold": all(r.get("cold") for r in runs),
    }


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


def markdown(r: dict[str, Any]) -> str:
    lines = [
        START,
        "## Accuracy (transfer learning, sports100)",
        "",
        f"Measured {r['date']} on this 2-core CPU ({r['cpu_note']}). The test split is used only to",
        "score. Wall time is `sportsdet.train.train` from start to saved bundle; a cold run starts",
        "with an empty feature cache, so it includes the frozen-feature extraction a new user waits",
        "for (shown again in its own column); a warm run reuses features cached by an earlier run.",
        "",
        "| model | recipe | seeds | test top-1 (mean ± sd, range) | top-5 | wall time (mean, max) | "
        "of which features | cache | measured |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in r["official"]:
        s = row["summary"]
        epochs = sorted({run.get("finetune_epochs") for run in row["runs"]} - {None})
        recipe = row["variant"] + (f" ({'/'.join(map(str, epochs))} fine-tune epochs)" if epochs else "")
        lines.append(
            f"| {row['model']} | {recipe} | {s['n_seeds']} | {pct(s['top1_mean'])} ± "
            f"{100 * s['top1_sd']:.2f} ({pct(s['top1_min'])}-{pct(s['top1_max'])}) | {pct(s['top5_mean'])} | "
            f"{minutes(s['seconds_mean'])}, {minutes(s['seconds_max'])} | "
            f"{minutes(s.get('feature_seconds_mean'))} | {'cold' if s.get('cold') else 'warm'} | "
            f"{row.get('date', 'earlier session, CPU shared')} |"
        )
    seed = r.get("seed_baseline")
    if seed:
        for s in seed.get("summary", []):
            lines.append(
                f"| seed-cnn | scratch, six UIUC classes {s.get('split')} | {len(s.get('seeds', []))} | "
                f"{pct(s.get('final_mean'))} ± {100 * (s.get('final_std') or 0):.2f} | - | "
                f"{s.get('minutes_per_run', 0):.0f} min | - | - | bench/seed_baseline.py |"
            )
    if r.get("budgets"):
        model = r["budgets"][0]["model"]
        lines += [
            "",
            f"Accuracy versus training minutes: {model}, default recipe planned by `--time-budget`, "
            "cold feature cache, seed 0:",
            "",
            "| budget | test top-1 | top-5 | wall time | fine-tune epochs |",
            "|---|---|---|---|---|",
        ]
        for b in r["budgets"]:
            lines.append(
                f"| {b['budget']} | {pct(b['top1'])} | {pct(b['top5'])} | {minutes(b['train_seconds'])} | "
                f"{b.get('finetune_epochs', '-')} |"
            )
    for u in (r.get("uiuc_by_model") or {}).values():
        s = u["summary"]
        lines += [
            "",
            f"Six UIUC classes ({', '.join(UIUC)}), `--split per-class:70,50`, {s['n_seeds']} seeds, "
            f"{u['model']} {u.get('variant', 'default')} recipe "
            f"(measured {u.get('date', 'in an earlier session')}):",
            "",
            f"- test top-1 {pct(s['top1_mean'])} ± {100 * s['top1_sd']:.2f} (min {pct(s['top1_min'])}, "
            f"max {pct(s['top1_max'])}), {u['runs'][0]['test_n']} test images per seed; "
            f"{s['seconds_mean']:.0f} s per run "
            f"(per seed: {', '.join(pct(run['top1']) for run in u['runs'])})",
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
        # Keyed by cold/warm too: a warm re-run of a cold row is another measurement, kept beside it
        # (it used to drop the old row).
        def key(row: dict[str, Any]) -> str:
            return f"{row['model']}:{row['variant']}:{'cold' if row.get('cold') else 'warm'}"

        old_rows = {key(row): row for row in previous.get("official", [])}
        merged = []
        for row in r["official"]:
            old = old_rows.pop(key(row), None)
            if old is not None:
                # More seeds of the same measurement (--first-seed): one row for all of them; a
                # seed measured again replaces its old run.
                by_seed = {run["seed"]: run for run in old["runs"] + row["runs"]}
                runs = [by_seed[seed] for seed in sorted(by_seed)]
                new_seeds = {run["seed"] for run in row["runs"]}
                kept_old = any(run["seed"] not in new_seeds for run in old["runs"])
                since = old.get("date") if kept_old else row["date"]  # a fully re-run row: new date only
                dates = sorted(set(f"{since}; {row['date']}".split("; ")))
                row = {**row, "runs": runs, "summary": summarise(runs), "date": "; ".join(dates)}
            merged.append(row)
        r["official"] = merged + list(old_rows.values())
        r["budgets"] = r["budgets"] or previous.get("budgets", [])
        uiuc = dict(previous.get("uiuc_by_model") or {})
        if previous.get("uiuc"):  # the file's older form: one model only
            uiuc.setdefault(previous["uiuc"]["model"], previous["uiuc"])
        r["uiuc_by_model"] = {**uiuc, **r.get("uiuc_by_model", {})}
        r["notes"] = r["notes"] or previous.get("notes", [])
        if r.pop("notes_only", False):  # the header describes the last measuring run
            r["date"] = previous.get("date", r["date"])
            r["cpu_note"] = previous.get("cpu_note", r["cpu_note"])
    if SEED_JSON.exists():
        try:
            r["seed_baseline"] = json.loads(SEED_JSON.read_text())
        except json.JSONDecodeError:
            pass
    if not no_write:
        write_results(r)


def cpu_note(before: list[float], after: list[float]) -> str:
    return f"load average (1, 5, 15 min) before {before}, after {after}; " + (
        "nothing else ran" if max(before[0], after[0]) < 2.6 else "other work shared the cores"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="sports100 folder")
    parser.add_argument(
        "--runs", default="lite0:default", help="comma list of model:variant (variant: default, "
        "more-views, or budget-<time> such as budget-14m; budget-2m is the head alone)"
    )  # fmt: skip
    parser.add_argument("--seeds", type=int, default=3, help="seeds per official-split run")
    parser.add_argument("--cold", action="store_true", help="every run starts with an empty feature cache")
    parser.add_argument(
        "--first-seed", type=int, default=0,
        help="start the seeds here; new seeds of a model:variant already measured join its row",
    )  # fmt: skip
    parser.add_argument(
        "--budgets", default="", help="time budgets for the accuracy-vs-minutes table, e.g. 5m,10m"
    )
    parser.add_argument("--budget-model", default="lite0", help="model for --budgets (default lite0)")
    parser.add_argument("--uiuc-seeds", type=int, default=5, help="seeds for the six UIUC classes (0: skip)")
    parser.add_argument(
        "--uiuc-model", default="lite0", help="model for the six UIUC classes (default lite0)"
    )
    parser.add_argument("--uiuc-variant", default="default", help="recipe variant for the six UIUC classes")
    parser.add_argument("--note", action="append", default=[], help="a line to add under the tables")
    parser.add_argument("--no-write", action="store_true", help="print JSON only")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(2)
    load_before = [round(x, 2) for x in os.getloadavg()]
    r: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu_note": cpu_note(load_before, load_before),
        "official": [],
        "budgets": [],
        "notes": args.note,
    }

    def finished_part() -> None:
        r["cpu_note"] = cpu_note(load_before, [round(x, 2) for x in os.getloadavg()])
        save(r, args.no_write)

    for entry in [e for e in args.runs.split(",") if e]:
        model, _, variant = entry.partition(":")
        variant = variant or "default"
        runs = []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            run = run_once(args.data, model, variant, seed, "official", {}, cold=args.cold)
            print(json.dumps(run), flush=True)
            runs.append(run)
        r["official"].append(
            {"model": model, "variant": variant, "runs": runs, "summary": summarise(runs), "date": r["date"],
             "cold": args.cold}
        )  # fmt: skip
        finished_part()
    for budget in [b for b in args.budgets.split(",") if b]:
        run = run_once(
            args.data, args.budget_model, "default", 0, "official", {"time_budget": budget}, cold=True
        )
        run["budget"] = budget
        print(json.dumps(run), flush=True)
        r["budgets"].append(run)
        finished_part()
    if args.uiuc_seeds:
        runs = [
            run_once(args.data, args.uiuc_model, args.uiuc_variant, seed, "per-class:70,50", {}, classes=UIUC)
            for seed in range(args.uiuc_seeds)
        ]
        summary = summarise(runs)
        key = args.uiuc_model + ("" if args.uiuc_variant == "default" else f":{args.uiuc_variant}")
        r["uiuc_by_model"] = {
            key: {
                "model": args.uiuc_model, "variant": args.uiuc_variant, "runs": runs, "summary": summary,
                "date": r["date"],
            }
        }  # fmt: skip
        print(json.dumps(summary), flush=True)
        finished_part()
    if not (r["official"] or r["budgets"] or r.get("uiuc_by_model")):
        r["notes_only"] = True  # nothing measured: only the notes under the tables change
        save(r, args.no_write)
    print(json.dumps({k: v for k, v in r.items() if k != "official"}, default=str)[:2000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
