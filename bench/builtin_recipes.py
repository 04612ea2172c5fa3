"""The recipes tried for the built-in model, side by side, from their run folders.

    python bench/train_builtin_model.py --out runs/A [--set KEY=VALUE ...]   # once per recipe
    python bench/builtin_recipes.py runs/A runs/B ...                         # this table
    python bench/builtin_recipes.py --keep runs/C --shipped C                 # add C to it

Each run folder holds `builtin_metrics.json` (written by bench/train_builtin_model.py: top-1 on
the validation and test photos of each source and on realworld-dev, all through the prediction
path, torch fp32) and `config.json` (the options). The table says what each run changed from the
registry defaults, and which one was shipped. One seed per recipe, but runs of one recipe with
other seeds get their mean and spread under the table (the Wilson intervals are given too).
Writes bench/results/builtin_recipes.json and the builtin-recipes section of bench/RESULTS.md.
With --keep, the rows already in that file stay (run folders are scratch and may be gone; their
recorded numbers are not), each replaced by the run given again under the same name.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from results_file import write_results  # noqa: E402

START, END = "<!-- builtin-recipes:start -->", "<!-- builtin-recipes:end -->"
RAW = ROOT / "bench" / "results" / "builtin_recipes.json"


def options_text(config: dict) -> str:
    """The options a run set away from the model's registry defaults, as --set arguments."""
    import dataclasses

    from train_builtin_model import changed_options

    from sportsdet.models import get_model_spec
    from sportsdet.training.options import resolve_options

    used = config.get("options", {})
    changed = changed_options(config["model"], used)
    # An option a run does not record did not exist yet (e.g. distance_head before it was added).
    defaults = dataclasses.asdict(resolve_options(get_model_spec(config["model"])))
    changed += [f"no {k} (older run)" for k in sorted(set(defaults) - set(used))]
    if config["model"] != "lite2":  # the backbone every other row uses
        changed.insert(0, f"--model {config['model']}")
    return " ".join(changed) or "registry defaults"


def cell(top1: float, n: int) -> str:
    from sportsdet.metrics import wilson_interval

    right = round(top1 * n)
    lo, hi = wilson_interval(right, n)
    return f"{top1:.1%} ({lo:.0%}-{hi:.0%})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path, help="run folders of bench/train_builtin_model.py")
    parser.add_argument("--shipped", help="name of the run folder that was installed as the built-in model")
    parser.add_argument("--note", action="append", default=[], help="RUN=what else to say about it")
    parser.add_argument("--keep", action="store_true", help=f"keep the rows already in {RAW.name}")
    args = parser.parse_args(argv)
    notes = dict(item.split("=", 1) for item in args.note)
    rows = kept_rows(args.runs, args.shipped, notes) if args.keep else []
    for run in args.runs:
        metrics = json.loads((run / "builtin_metrics.json").read_text())
        config = json.loads((run / "config.json").read_text())
        rows.append({
            "run": run.name,
            "options": options_text(config),
            "valid": metrics["valid"],
            "test": metrics["test"],
            "realworld_dev": metrics["realworld_dev"],
            "test_black_and_white": metrics.get("test_black_and_white"),  # runs measured since it exists
            "train_wall_seconds": metrics.get("train_wall_seconds"),
            "shipped": run.name == args.shipped,
            "note": notes.get(run.name, ""),
        })  # fmt: skip
    payload = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rows": rows}
    section = render(payload)
    print(section)
    write_results(payload, RAW, section, START, END)
    return 0


def kept_rows(runs: list[Path], shipped: str | None, notes: dict) -> list[dict]:
    """The rows of the last table whose runs are not measured again, with the shipped mark moved
    to --shipped (when given) and any new --note applied."""
    if not RAW.is_file():
        return []
    again = {run.name for run in runs}
    rows = [row for row in json.loads(RAW.read_text())["rows"] if row["run"] not in again]
    for row in rows:
        if shipped is not None:
            row["shipped"] = row["run"] == shipped
        row["note"] = notes.get(row["run"], row["note"])
    return rows


def render(payload: dict) -> str:
    lines = [
        START,
        "## Recipes tried for the built-in model (bench/builtin_recipes.py)",
        "",
        f"Table made {payload['when']} from the run folders of `bench/train_builtin_model.py` "
        "(rows of runs no longer measured again keep the numbers recorded when they were; "
        "lite2 unless the options say otherwise, seed 0, sports100 official split + websports "
        "random:0.2; torch fp32 through the "
        "prediction path; the shipped INT8 form is in the realworld section). Within a run, the "
        "epoch and every fit are chosen on the validation photos; realworld-dev is never trained on. "
        "Between recipes, the choice of the one to ship also looked at realworld-dev (the issue's "
        "development set) and, where a run fell under the 99.0% goal (v2h280, v2l_ft3), at sports100 "
        "test: the shipped model's numbers on those two sets were seen when it was chosen, so they "
        "lean optimistic. One seed per recipe but two (v2c, and v2i, the shipped recipe, over three "
        "seeds: their mean and spread are under the table): differences of a few points on "
        "realworld-dev and of a point on sports100 test are within one recipe's seed spread.",
        "",
        "| run | options | valid | sports100 test | sports100 test in black and white | websports test "
        "| realworld-dev | realworld-dev per class | train s | note |",
        "|---|---|---|---|---|---|---|---|---:|---|",
    ]
    for row in payload["rows"]:
        test = row["test"]["per_source"]
        world = row["realworld_dev"]
        grey = row.get("test_black_and_white")
        per_class = ", ".join(f"{k} {v}" for k, v in world["per_class"].items())
        name = f"**{row['run']}** (shipped)" if row["shipped"] else row["run"]
        seconds = f"{row['train_wall_seconds']:.0f}" if row["train_wall_seconds"] else ""
        lines.append(
            f"| {name} | {row['options']} | {cell(row['valid']['top1'], row['valid']['n'])} | "
            f"{cell(test['sports100']['top1'], test['sports100']['n'])} | "
            f"{cell(grey['top1'], grey['n']) if grey else 'not measured'} | "
            f"{cell(test['websports']['top1'], test['websports']['n'])} | "
            f"{cell(world['top1'], world['n'])} | {per_class} | {seconds} | {row['note']} |"
        )
    lines += seed_spread(payload["rows"])
    lines += ["", "Raw numbers: `bench/results/builtin_recipes.json`.", END]
    return "\n".join(lines)


def seed_spread(rows: list[dict]) -> list[str]:
    """Mean and spread of the runs of one recipe (the same options, other seeds), per column."""
    import statistics

    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row["options"], []).append(row)
    lines = []
    for options, runs in groups.items():
        if len(runs) < 2:
            continue
        columns = {
            "valid": [r["valid"]["top1"] for r in runs],
            "sports100 test": [r["test"]["per_source"]["sports100"]["top1"] for r in runs],
            "websports test": [r["test"]["per_source"]["websports"]["top1"] for r in runs],
            "realworld-dev": [r["realworld_dev"]["top1"] for r in runs],
        }
        said = "; ".join(
            f"{name} {100 * statistics.mean(v):.1f} ± {100 * statistics.stdev(v):.1f} "
            f"({', '.join(f'{100 * x:.1f}' for x in v)})"
            for name, v in columns.items()
        )
        names = ", ".join(r["run"] for r in runs)
        lines.append(f"- `{options}` over {len(runs)} seeds ({names}): {said}")
    if lines:
        lines[:0] = ["", "The same recipe with other seeds (mean ± sd over the runs, then each run):", ""]
    return lines


if __name__ == "__main__":
    sys.exit(main())
