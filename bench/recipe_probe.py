"""Cheap recipe probes on frozen features: which choices help on photos from elsewhere?

    python bench/recipe_probe.py --run runs/v2a          # a multi-source run's split and model

Full fine-tuning of Lite2 costs ~40 minutes a run on this CPU, too much to try every idea that
way. The frozen trunk's pooled features are already cached by training, so a linear head on them
(scikit-learn logistic regression, seconds) shows the direction each choice pushes:

- train views: the photo alone vs the photo + one random crop/colour view ("photo" augmentation);
- test views: the centre crop (the model's preprocessing) vs the whole photo letterboxed ("pad")
  vs both averaged (a test-time view).

Scored on the validation photos of every source (what training selects on) and on realworld-dev
(web photos from another source, the generalisation signal; never trained on). Not on any test
split. The table goes to bench/RESULTS.md (section recipe-probe), raw numbers to
bench/results/recipe_probe.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from results_file import write_results  # noqa: E402

REALWORLD = ROOT.parent / "shared" / "data" / "realworld-dev"
START, END = "<!-- recipe-probe:start -->", "<!-- recipe-probe:end -->"


def features(model_name, paths, pre, view, model):
    from sportsdet.training.feature_cache import extract_features

    return extract_features(model_name, paths, preprocessing=pre, view=view, model=model, progress=False)[
        "pooled"
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--run", type=Path, required=True, help="a run folder (its split.json and config.json)"
    )
    parser.add_argument("--C", type=float, default=0.5, help="inverse L2 strength of the logistic regression")
    args = parser.parse_args(argv)

    from sklearn.linear_model import LogisticRegression

    from sportsdet.data.splits import SplitManifest
    from sportsdet.models import build_model, get_model_spec

    config = json.loads((args.run / "config.json").read_text())
    manifest = SplitManifest.load(args.run / "split.json")
    spec = get_model_spec(config["model"])
    pre = spec.preprocessing
    model = build_model(spec.name, num_classes=1, pretrained=True)
    labels = manifest.classes
    train = manifest.items("train")
    valid = manifest.items("valid")
    valid_sources = manifest.sources_of("valid")
    world = [
        (p, labels.index(p.parent.name)) for p in sorted(REALWORLD.glob("*/*.jpg")) if p.parent.name in labels
    ]
    y_train = np.array([y for _, y in train])
    started = time.perf_counter()
    x = {view: features(spec.name, [p for p, _ in train], pre, view, model) for view in ("center", "aug0")}
    pad = dataclasses.replace(pre, resize="pad")
    evals = {
        "valid": (valid, {"crop": features(spec.name, [p for p, _ in valid], pre, "center", model),
                          "pad": features(spec.name, [p for p, _ in valid], pad, "center", model)}),
        "realworld-dev": (world, {"crop": features(spec.name, [p for p, _ in world], pre, "center", model),
                                  "pad": features(spec.name, [p for p, _ in world], pad, "center", model)}),
    }  # fmt: skip
    extract_s = time.perf_counter() - started

    rows = []
    for train_views in (("center",), ("center", "aug0")):
        head = LogisticRegression(C=args.C, max_iter=400)
        head.fit(np.concatenate([x[v] for v in train_views]), np.tile(y_train, len(train_views)))
        for test_view in ("crop", "pad", "crop+pad"):
            row = {"train views": "+".join(train_views), "test view": test_view}
            for name, (items, feats) in evals.items():
                truth = np.array([y for _, y in items])
                parts = test_view.split("+")
                probs = np.mean([head.predict_proba(feats[v]) for v in parts], axis=0)
                right = probs.argmax(1) == truth
                row[name] = (int(right.sum()), len(truth))
                if name == "valid":
                    for source in sorted(set(valid_sources)):
                        mask = np.array([s == source for s in valid_sources])
                        row[f"valid {source}"] = (int(right[mask].sum()), int(mask.sum()))
                else:
                    for cls in sorted({labels[y] for y in truth}):
                        mask = truth == labels.index(cls)
                        row[f"rw {cls}"] = (int(right[mask].sum()), int(mask.sum()))
            rows.append(row)
            print(row)
    payload = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "load": os.getloadavg(),
        "run": str(args.run),
        "model": spec.name,
        "C": args.C,
        "feature_seconds": round(extract_s, 1),
        "rows": rows,
    }
    write_results(payload, ROOT / "bench" / "results" / "recipe_probe.json", render(payload), START, END)
    return 0


def wilson_text(right: int, n: int) -> str:
    from sportsdet.metrics import wilson_interval

    lo, hi = wilson_interval(right, n)
    return f"{right / n:.1%} ({lo:.0%}-{hi:.0%}) {right}/{n}"


def render(payload: dict) -> str:
    rows = payload["rows"]
    columns = [k for k in rows[0] if k not in ("train views", "test view")]
    lines = [
        START,
        "## Recipe probes on frozen features (bench/recipe_probe.py)",
        "",
        f"Run {payload['when']} on {payload['model']} features of `{payload['run']}`'s split; load "
        f"{[round(v, 1) for v in payload['load']]}. A logistic-regression head (C={payload['C']}) on the "
        "pooled frozen features: a quick, fine-tuning-free signal of what each choice does. `valid` = the "
        "validation photos of every source; realworld-dev (rw) is never trained on. No test split used.",
        "",
        "| train views | test view | " + " | ".join(columns) + " |",
        "|---|---|" + "---|" * len(columns),
    ]
    for row in rows:
        cells = [wilson_text(*row[c]) for c in columns]
        lines.append(f"| {row['train views']} | {row['test view']} | " + " | ".join(cells) + " |")
    lines += ["", "Raw numbers: `bench/results/recipe_probe.json`.", END]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
