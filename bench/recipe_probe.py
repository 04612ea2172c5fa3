"""Cheap recipe probes on frozen features: which choices help on photos from elsewhere?

    python bench/recipe_probe.py --run runs/v2a          # a multi-source run's split and model

Full fine-tuning of Lite2 costs ~40 minutes a run on this CPU, too much to try every idea that
way. The frozen trunk's pooled features are already cached by training, so a linear head on them
(scikit-learn logistic regression, seconds) shows the direction each choice pushes:

- train views: the photo alone vs the photo + one random crop/colour view ("photo" augmentation);
- test views: the centre crop (the model's preprocessing) vs the whole photo letterboxed ("pad")
  vs both averaged (a test-time view);
- the head itself: L2 strength, websports photos weighted down (source balancing), the
  directions that tell the two sources apart projected out of the features (iterative nullspace
  projection, so "looks like a web photo" cannot be a shortcut), and letterboxed train views.

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
    pad = dataclasses.replace(pre, resize="pad")
    x = {view: features(spec.name, [p for p, _ in train], pre, view, model) for view in ("center", "aug0")}
    x["pad"] = features(spec.name, [p for p, _ in train], pad, "center", model)
    evals = {
        "valid": (valid, {"crop": features(spec.name, [p for p, _ in valid], pre, "center", model),
                          "pad": features(spec.name, [p for p, _ in valid], pad, "center", model)}),
        "realworld-dev": (world, {"crop": features(spec.name, [p for p, _ in world], pre, "center", model),
                                  "pad": features(spec.name, [p for p, _ in world], pad, "center", model)}),
    }  # fmt: skip
    extract_s = time.perf_counter() - started

    train_sources = np.array(manifest.sources_of("train"))
    rows = []
    for train_views, variant in [
        (("center",), "plain"), (("center", "aug0"), "plain"), (("center", "pad"), "plain"),
        (("center",), "C=0.1"), (("center",), "C=2"), (("center",), "websports weight 0.5"),
        (("center",), "source directions removed (4)"),
    ]:  # fmt: skip
        head, project = fit_head(variant, [x[v] for v in train_views], y_train, train_sources, args.C)
        for test_view in ("crop", "pad", "crop+pad"):
            row = {"train views": "+".join(train_views), "head": variant, "test view": test_view}
            for name, (items, feats) in evals.items():
                truth = np.array([y for _, y in items])
                parts = test_view.split("+")
                probs = np.mean([head.predict_proba(project(feats[v])) for v in parts], axis=0)
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


def fit_head(variant: str, views: list[np.ndarray], y: np.ndarray, sources: np.ndarray, C: float):
    """(logistic-regression head, feature projection) for one probe variant."""
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate(views)
    y_all = np.tile(y, len(views))
    weights = None
    project = lambda f: f  # noqa: E731
    if variant.startswith("C="):
        C = float(variant[2:])
    elif variant == "websports weight 0.5":
        weights = np.tile(np.where(sources == "websports", 0.5, 1.0), len(views))
    elif variant.startswith("source directions removed"):
        # Iterative nullspace projection: fit "which source?" and remove that direction, 4 times.
        mean = x.mean(0)
        basis = np.eye(x.shape[1])
        is_web = np.tile(sources == "websports", len(views)).astype(int)
        for _ in range(4):
            w = LogisticRegression(C=0.1, max_iter=300).fit((x - mean) @ basis, is_web).coef_[0]
            w /= np.linalg.norm(w)
            basis = basis @ (np.eye(len(w)) - np.outer(w, w))
        project = lambda f: (f - mean) @ basis  # noqa: E731
        x = project(x)
    head = LogisticRegression(C=C, max_iter=400).fit(x, y_all, sample_weight=weights)
    return head, project


def wilson_text(right: int, n: int) -> str:
    from sportsdet.metrics import wilson_interval

    lo, hi = wilson_interval(right, n)
    return f"{right / n:.1%} ({lo:.0%}-{hi:.0%}) {right}/{n}"


def render(payload: dict) -> str:
    rows = payload["rows"]
    columns = [k for k in rows[0] if k not in ("train views", "head", "test view")]
    lines = [
        START,
        "## Recipe probes on frozen features (bench/recipe_probe.py)",
        "",
        f"Run {payload['when']} on {payload['model']} features of `{payload['run']}`'s split; load "
        f"{[round(v, 1) for v in payload['load']]}. A logistic-regression head (C={payload['C']}) on the "
        "pooled frozen features: a quick, fine-tuning-free signal of what each choice does. `valid` = the "
        "validation photos of every source; realworld-dev (rw) is never trained on. No test split used.",
        "",
        "| train views | head | test view | " + " | ".join(columns) + " |",
        "|---|---|---|" + "---|" * len(columns),
    ]
    for row in rows:
        cells = [wilson_text(*row[c]) for c in columns]
        first = f"| {row['train views']} | {row['head']} | {row['test view']} | "
        lines.append(first + " | ".join(cells) + " |")
    lines += ["", "Raw numbers: `bench/results/recipe_probe.json`.", END]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
