"""Would a feature-distance score keep non-sport photos unlabelled better than entropy? (issue 15, part 4)

    sportsdet data split ../shared/data/sports100 ../shared/data/websports --out split.json
    python bench/abstain_distance.py --split split.json [--per-class 20] [--coverage 0.95]

The split above is the one the built-in model was trained on (the same sources, strategies and
seed as bench/train_builtin_model.py). The built-in model (float, torch) is run once over a seeded
sample of its training photos (twice --per-class of each sport), the validation photos of both sources,
sports100 test, websports held-out, realworld-dev and the non-sport photos of
bench/abstain_scores.py, keeping the features its classifier reads. Scores compared, each with a
threshold fitted on the validation photos at the coverage:

- entropy: what ships (`abstain.DEFAULT_SCORE`, on the model's probabilities);
- knn-1 / knn-10: cosine similarity to the nearest / 10th nearest training photo;
- prototype: cosine similarity to the nearest class mean;
- mahalanobis: minus the distance to the nearest class mean, one shared covariance (Ledoit-Wolf);
- entropy + a distance: a photo is answered only if both pass; the distance threshold keeps
  99%, 98% or 97% of validation photos, and entropy's is then set so both together keep the
  coverage.

Then entropy + knn-1 again with --banks other draws of the training photos (its spread).

Table to bench/RESULTS.md (section abstain-distance), raw numbers to
bench/results/abstain_distance.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from abstain_scores import heldout_photos, made_photos, package_photos, skimage_photos  # noqa: E402
from distance_sharpness import features_of  # noqa: E402
from realworld import photo_sets  # noqa: E402
from results_file import write_results  # noqa: E402

START, END = "<!-- abstain-distance:start -->", "<!-- abstain-distance:end -->"
SETS = ("valid", "sports100 test", "websports held-out", "realworld-dev")
DISTANCES = ("knn-1", "knn-10", "prototype", "mahalanobis")
COMBINED_KEEP = (0.99, 0.98, 0.97)


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def distance_scores(train: np.ndarray, train_labels: np.ndarray, feats: np.ndarray) -> dict[str, np.ndarray]:
    """Every distance score of `feats` (higher = more like the training photos)."""
    from sklearn.covariance import LedoitWolf

    classes = np.unique(train_labels)
    means = np.stack([train[train_labels == c].mean(0) for c in classes])
    similarity = unit(feats) @ unit(train).T
    nearest = -np.sort(-similarity, axis=1)
    precision = LedoitWolf().fit(train - means[np.searchsorted(classes, train_labels)]).precision_
    # |f - m|^2_P for every class mean m, expanded so it is one matrix product.
    projected = feats @ precision
    squared = (
        (projected * feats).sum(1, keepdims=True)
        - 2 * projected @ means.T
        + ((means @ precision) * means).sum(1)[None, :]
    )
    return {
        "knn-1": nearest[:, 0],
        "knn-10": nearest[:, 9],
        "prototype": (unit(feats) @ unit(means).T).max(1),
        "mahalanobis": -squared.min(1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--split", type=Path, required=True, help="the built-in model's split (see above)")
    parser.add_argument("--per-class", type=int, default=20, help="training photos sampled per sport")
    parser.add_argument("--coverage", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--banks", type=int, default=5, help="samples of training photos the nearest-photo rule is tried with"
    )
    args = parser.parse_args(argv)

    import torch

    from sportsdet.abstain import abstain_scores
    from sportsdet.bundle import builtin_bundle_path, load_bundle
    from sportsdet.data.splits import SplitManifest
    from sportsdet.models.stages import classifier_of
    from sportsdet.runtime import TorchBackend

    started, load_before = time.perf_counter(), os.getloadavg()
    bundle = load_bundle(builtin_bundle_path())
    backend = TorchBackend(bundle)
    head, labels = classifier_of(backend.model), backend.labels
    index = bundle.class_index()  # the data's names of renamed labels too

    manifest = SplitManifest.load(args.split)
    rng = np.random.default_rng(args.seed)
    by_class: dict[int, list[Path]] = {}
    for path, label in manifest.items("train"):
        by_class.setdefault(label, []).append(path)
    train_items = [
        (path, manifest.classes[label])
        for label, paths in sorted(by_class.items())
        for path in rng.permutation(np.array(paths, dtype=object))[: 2 * args.per_class]
    ]
    photos = photo_sets(args.split) | {"train sample": train_items}
    nonsport = skimage_photos() + package_photos() + made_photos()

    feats = {
        name: features_of(backend, head, [(str(p), p) for p, _ in items]) for name, items in photos.items()
    }
    feats["non-sport"] = features_of(backend, head, nonsport)
    heldout = heldout_photos()  # never looked at while choosing (bench/abstain_scores.py, HELDOUT)
    if heldout:
        feats["held-out"] = features_of(backend, head, heldout)
    truth = {name: np.array([index[c] for _, c in items]) for name, items in photos.items()}
    with torch.inference_mode():
        probs = {k: torch.softmax(head(torch.from_numpy(f)), 1).numpy() for k, f in feats.items()}

    # A pool of twice --per-class photos of each sport; bank 0 is the first --per-class of each (the
    # table), the other banks other draws from the pool (the spread of the nearest-photo rule).
    pool_labels = truth.pop("train sample")
    pool_feats = feats.pop("train sample")
    probs.pop("train sample")

    def bank(number: int) -> np.ndarray:
        draw = np.random.default_rng([args.seed, number])
        rows = []
        for label in np.unique(pool_labels):
            where = np.flatnonzero(pool_labels == label)
            order = where if number == 0 else draw.permutation(where)
            rows += list(order[: args.per_class])
        return np.array(rows)

    first = bank(0)
    train_feats, train_labels = pool_feats[first], pool_labels[first]
    scores = {k: {"entropy": abstain_scores(probs[k])} for k in feats}
    for k in feats:
        scores[k] |= distance_scores(train_feats, train_labels, feats[k])

    def row(name: str, answered: dict[str, np.ndarray], detail: dict) -> dict:
        out: dict = {"score": name, **detail}
        for k in SETS:
            right = probs[k].argmax(1) == truth[k]
            kept = answered[k]
            out[k] = {"n": len(right), "answered": int(kept.sum()), "right": int(right[kept].sum())}
        for key, photos_of in (("non-sport", nonsport), ("held-out", heldout)):
            if key in probs:
                out[f"{key} labelled"] = [
                    f"{n.split(':', 1)[1]} ({labels[int(p.argmax())]} {p.max():.0%})"
                    for (n, _), p, a in zip(photos_of, probs[key], answered[key], strict=True)
                    if a
                ]
        return out

    rows = []
    for name in ("entropy", *DISTANCES):
        threshold = float(np.quantile(scores["valid"][name], 1 - args.coverage))
        answered = {k: scores[k][name] >= threshold for k in scores}
        rows.append(row(name, answered, {"threshold": round(threshold, 4)}))
    need = int(np.ceil(args.coverage * len(truth["valid"])))

    def both(by_set: dict, name: str, keep: float) -> tuple[dict[str, np.ndarray], float]:
        """Answered where entropy and the distance both pass, fitted to keep the coverage
        (`by_set`: each set's scores, those of bank 0 or of another bank)."""
        distance_at = float(np.quantile(by_set["valid"][name], 1 - keep))
        passes = by_set["valid"][name] >= distance_at
        # The entropy threshold that leaves `need` validation photos passing both.
        entropy_at = float(np.sort(by_set["valid"]["entropy"][passes])[::-1][need - 1])
        answered = {k: (s["entropy"] >= entropy_at) & (s[name] >= distance_at) for k, s in by_set.items()}
        return answered, entropy_at

    for name in DISTANCES:
        for keep in COMBINED_KEEP:
            answered, entropy_at = both(scores, name, keep)
            rows.append(row(f"entropy + {name} ({keep:.0%})", answered, {"threshold": round(entropy_at, 4)}))
    spread = []
    for number in range(args.banks):
        rows_of_bank = bank(number)
        unit_bank = unit(pool_feats[rows_of_bank])
        nearest = {
            k: {"entropy": s["entropy"], "knn-1": (unit(feats[k]) @ unit_bank.T).max(1)}
            for k, s in scores.items()
        }
        for keep in COMBINED_KEEP:
            answered, _ = both(nearest, "knn-1", keep)
            spread.append({"bank": number, "keep": keep, **row("entropy + knn-1", answered, {})})
    seconds = time.perf_counter() - started

    def cell(c: dict) -> str:
        return f"{c['answered'] / c['n']:.1%}, {c['right'] / max(c['answered'], 1):.1%}"

    table = [
        "| score | " + " | ".join(f"{k}: answered, right" for k in SETS)
        + " | non-sport labelled | held-out non-sport labelled |",
        "|---|" + "---|" * (len(SETS) + 2),
    ]
    for r in rows:
        labelled, held = r["non-sport labelled"], r.get("held-out labelled", [])
        table.append(
            f"| {r['score']} | " + " | ".join(cell(r[k]) for k in SETS)
            + f" | {len(labelled)}/{len(nonsport)}: {', '.join(labelled) or '-'} "
            + f"| {len(held)}/{len(heldout)}: {', '.join(held) or '-'} |"
        )
    spread_table = [
        f"| entropy + knn-1, distance keeps | {' | '.join(f'bank {b}' for b in range(args.banks))} |",
        "|---|" + "---|" * args.banks,
    ]
    for keep in COMBINED_KEEP:
        cells = []
        for r in (r for r in spread if r["keep"] == keep):
            labelled = ", ".join(n.split(" (")[0] for n in r["non-sport labelled"]) or "-"
            held = ", ".join(n.split(" (")[0] for n in r.get("held-out labelled", [])) or "-"
            cells.append(
                f"{len(r['non-sport labelled'])} ({labelled}); held-out "
                f"{len(r.get('held-out labelled', []))} ({held}); sports100 test "
                f"{r['sports100 test']['answered'] / r['sports100 test']['n']:.1%}, realworld-dev "
                f"{r['realworld-dev']['answered'] / r['realworld-dev']['n']:.1%} answered"
            )
        spread_table.append(f"| {keep:.0%} | " + " | ".join(cells) + " |")
    print("\n".join(table + [""] + spread_table))
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = "\n".join(
        [
            START,
            "## Feature-distance abstain scores against entropy (bench/abstain_distance.py)",
            "",
            f"Run {when}; load average before {[round(x, 2) for x in load_before]}; {seconds:.0f} s. The "
            f"built-in model in float (torch); distances to {len(train_labels)} training photos "
            f"({args.per_class} per sport, seed {args.seed}) in the features its classifier reads; every "
            f"threshold fitted on the {len(truth['valid'])} validation photos at {args.coverage:.0%} "
            f"coverage; {len(nonsport)} non-sport photos (those of bench/abstain_scores.py) and "
            f"{len(heldout)} held-out non-sport photos from other packages' wheels (its HELDOUT, added "
            "after this table's first run and never used to choose).",
            "",
            *table,
            "",
            f"Non-sport and held-out photos entropy + knn-1 leaves labelled, with {args.banks} banks of "
            f"training photos ({args.per_class} per sport, drawn from {2 * args.per_class} per sport; "
            "bank 0 is the one above):",
            "",
            *spread_table,
            "",
            READING,
            "",
            "Raw numbers: bench/results/abstain_distance.json.",
            END,
        ]
    )
    payload = {
        "when": when, "coverage": args.coverage, "per_class": args.per_class, "rows": rows, "banks": spread
    }
    write_results(payload, ROOT / "bench" / "results" / "abstain_distance.json", section, START, END)
    return 0


READING = (
    "Reading: no distance alone beats entropy: at the same validation coverage each answers more "
    "realworld-dev photos but far fewer of them right (66-72% against 84%), and knn-10, prototype and "
    "mahalanobis keep the astronaut, whose features sit among shooting's own photos. Entropy AND the "
    "distance to the nearest training photo (knn-1) can leave none of the 36 non-sport photos "
    "labelled, but how reliably depends on how tight the distance threshold is: with it at 97% of "
    "validation photos, none is labelled with any of the 5 banks of training photos, sports100 test "
    "96.8-98.0% answered (goal 95%), realworld-dev 60.8-64.6% answered against entropy's 65.3% (about "
    "as often right: 83% against 84% on bank 0); at 98% the camera is labelled with 2 banks of 5; at "
    "99% only bank 0 frees the astronaut. Bank 0 alone looked better than the rule is: the spread is "
    "why it is measured. The 12 held-out non-sport photos, added afterwards to check it, do not "
    "confirm a gain: entropy alone leaves 1 labelled (people playing cards round a table, 'chess' "
    "100%), and so does every combined rule with every bank, the same photo: its nearest training "
    "photo is nearer than for most validation photos (chess players at a table). So the nearest-photo rule "
    "is not shipped: it would cost 1-5 points of realworld-dev answers and a bank of training-photo "
    "features inside the bundle and the ONNX graph (20 per sport is 2,100 x 1,280, 5.4 MB in float16 "
    "against a 25 MB budget) for 36 photos that were looked at while choosing. What the held-out "
    "photos show instead: photos of people without a sport are where the rule is weakest (the card "
    "game here; a portrait and a face read 'shooting' 83% and 62%, unlabelled only because entropy "
    "is the stricter score; the INT8 model labels the portrait, bench/abstain_scores.py); the model "
    "has no non-sport training photos to learn them from."
)

if __name__ == "__main__":
    raise SystemExit(main())
