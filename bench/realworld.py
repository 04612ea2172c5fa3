"""How models hold up on photos people actually take, all measured in one run.

    python bench/realworld.py                                   # the built-in model alone
    python bench/realworld.py --model old=builtin --model v2=RUN --websports-split RUN/split.json

For every model (a bundle, a run folder, or `builtin`), through the engine `sportsdet predict`
uses (runtime.load_backend + stream_predictions; INT8 where the bundle ships only that):

- sports100 test (../shared/data/sports100/test): the curated source most models trained on;
- websports held-out: the test part of the split each model was trained with (the split.json
  its bundle records, when it is still there; else that split made again from ../shared/data and
  checked against the sha256 the bundle records; else `--websports-split RUN/split.json`): photos
  of badminton, soccer, kabaddi, shooting and chess that this model did not train on (runs with
  another seed split websports differently, so one split for all would leak);
- realworld-dev per class (../shared/data/realworld-dev): web photos from yet another source;
  never trained on, the only honest generalisation signal we have;
- scikit-image's photos that show no sport (astronaut, coffee, cat, rocket, ...): the top label
  and its score, and whether the model abstains.

A photo of a class a model does not know counts as wrong (the old built-in model cannot say
"soccer"). Accuracies carry Wilson 95% intervals. The table goes to bench/RESULTS.md, the raw
numbers to bench/results/realworld.json.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from results_file import write_results  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
START, END = "<!-- realworld:start -->", "<!-- realworld:end -->"
NON_SPORT = ("astronaut", "coffee", "chelsea", "cat", "rocket", "camera", "coins", "hubble_deep_field",
             "immunohistochemistry", "motorcycle_left", "page", "moon")  # fmt: skip


def folder_items(root: Path) -> list[tuple[Path, str]]:
    """(photo, class) for ROOT/<class>/<photo>."""
    from sportsdet.files import iter_image_files

    return [(p, cls.name) for cls in sorted(root.iterdir()) if cls.is_dir() for p in iter_image_files(cls)]


def manifest_items(split_json: Path, source: str) -> list[tuple[Path, str]]:
    from sportsdet.data.splits import SplitManifest

    manifest = SplitManifest.load(split_json)
    return [(path, manifest.classes[label]) for path, label in manifest.items("test", source)]


def photo_sets(split_json: Path) -> dict[str, list[tuple[Path, str]]]:
    """(photo, class) of the sets every built-in-model bench scores: the validation photos of
    every source, sports100 test and websports held-out (from a run's split), and realworld-dev."""
    from sportsdet.data.splits import SplitManifest

    manifest = SplitManifest.load(split_json)

    def part(name: str, source: str | None = None) -> list[tuple[Path, str]]:
        return [(path, manifest.classes[label]) for path, label in manifest.items(name, source)]

    return {
        "valid": part("valid"),
        "sports100 test": part("test", "sports100"),
        "websports held-out": part("test", "websports"),
        "realworld-dev": folder_items(DATA / "realworld-dev"),
    }


def read_once(sets: dict[str, list[tuple[Path, str]]]) -> None:
    """Read every photo's bytes once before any timing: the first model (or size) timed, often
    the one others are compared with, read them from disk and the others from the page cache."""
    for items in sets.values():
        for path, _ in items:
            Path(path).read_bytes()


def predict(backend, items: list[tuple[Path, str]]) -> tuple[np.ndarray, list[int]]:
    """Class probabilities of every readable photo (rows in order) and the positions kept."""
    from sportsdet.runtime import stream_predictions

    rows, kept = [], []
    for result in stream_predictions(((str(p), p) for p, _ in items), backend, backend.preprocessing):
        if result.ok:
            rows.append(result.probs)
            kept.append(result.index)
    return np.stack(rows), kept


def score(backend, items: list[tuple[Path, str]], aliases: dict[str, str] | None = None) -> dict:
    """Top-1 of (photo, class folder name) items; `aliases`: the model's other names of its labels
    (the built-in model's `american football` is sports100's `football`)."""
    from sportsdet.metrics import wilson_interval

    probs, kept = predict(backend, items)
    labels = backend.labels
    truth = [(aliases or {}).get(items[i][1], items[i][1]) for i in kept]
    guess = [labels[j] for j in probs.argmax(axis=1)]
    uncertain = _uncertain(backend, probs)
    per_class: dict[str, dict] = {}
    for name in sorted(set(truth)):
        rows = [i for i, t in enumerate(truth) if t == name]
        hits = sum(guess[i] == name for i in rows)
        per_class[name] = {"n": len(rows), "right": int(hits), "known": name in labels}
    hits = sum(g == t for g, t in zip(guess, truth, strict=True))
    n = len(truth)
    return {
        "n": n,
        "right": int(hits),
        "accuracy": hits / n,
        "ci95": list(wilson_interval(hits, n)),
        "answered": None if uncertain is None else int((~uncertain).sum()),
        "answered_right": None
        if uncertain is None
        else int(sum(g == t for g, t, u in zip(guess, truth, uncertain, strict=True) if not u)),
        "per_class": per_class,
        "unreadable": len(items) - n,
    }


def _uncertain(backend, probs: np.ndarray) -> np.ndarray | None:
    """The model's own abstain decision per photo (None when it has no abstain rule)."""
    rule = getattr(backend, "abstain", None)
    return None if rule is None else np.asarray(rule.uncertain(probs), dtype=bool).reshape(len(probs))


def non_sport(backend) -> list[dict]:
    from skimage import data as skdata

    from sportsdet.preprocess import preprocess

    found = []
    for name in NON_SPORT:
        try:
            array = getattr(skdata, name)()
        except Exception:  # noqa: BLE001 - some need optional downloads; skip those
            continue
        from PIL import Image
        from skimage.util import img_as_ubyte

        array = img_as_ubyte(array)
        image = Image.fromarray(array if array.ndim == 3 else np.stack([array] * 3, axis=-1)).convert("RGB")
        probs = backend.predict_proba(preprocess(image, backend.preprocessing)[None])
        uncertain = _uncertain(backend, probs)
        top = int(probs[0].argmax())
        found.append({
            "photo": name,
            "label": backend.labels[top],
            "score": round(float(probs[0, top]), 3),
            "abstained": None if uncertain is None else bool(uncertain[0]),
        })  # fmt: skip
    return found


def model_path(spec: str) -> Path:
    from sportsdet.bundle import builtin_bundle_path
    from sportsdet.run_folder import resolve_bundle_dir

    return Path(builtin_bundle_path() if spec == "builtin" else resolve_bundle_dir(spec))


def open_model(spec: str):
    from sportsdet.runtime import load_backend

    path = model_path(spec)
    return load_backend(path, int8=(path / "model.int8.onnx").is_file())


def own_split(spec: str, scratch: Path) -> Path | None:
    """The split.json the model trained on, when it split websports: the file its bundle names
    when still on disk, else the split made again from ../shared/data the way a user makes it
    (`sportsdet data split SOURCE ...`), kept only when its sha256 is the one the bundle records
    (the built-in bundle records only that). None when neither is there."""
    from sportsdet.bundle import load_bundle
    from sportsdet.data.splits import SplitManifest
    from sportsdet.files import sha256_file

    data = load_bundle(model_path(spec)).data or {}
    recorded = data.get("manifest")
    if recorded and Path(recorded).is_file():
        found = Path(recorded)
    elif data.get("manifest_sha256") and "websports" in (data.get("sources") or {}):
        from near_copies import built_in_split

        found = scratch / f"{len(list(scratch.iterdir()))}-split.json"
        built_in_split(found, tuple(data["sources"]))
        if sha256_file(found) != data["manifest_sha256"]:
            print(f"{spec}: its split made again differs from the one it trained on; no websports row",
                  file=sys.stderr)  # fmt: skip
            return None
    else:
        return None
    return found if "websports" in SplitManifest.load(found).sources_of("test") else None


def main(argv: list[str] | None = None) -> int:
    from sportsdet.bundle import load_bundle
    from sportsdet.files import sha256_file

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", action="append", default=[], help="NAME=PATH (bundle, run or builtin)")
    parser.add_argument(
        "--websports-split", type=Path, help="a multi-source run's split.json (its websports test part)"
    )
    parser.add_argument("--note", default="", help="a sentence for RESULTS.md about this run")
    args = parser.parse_args(argv)
    models = [m.split("=", 1) if "=" in m else (m, m) for m in args.model] or [("built-in", "builtin")]

    common = {"sports100 test": folder_items(DATA / "sports100" / "test")}
    load = os.getloadavg()
    results: dict[str, dict] = {}
    scratch = tempfile.TemporaryDirectory(prefix="sportsdet-realworld-")
    for name, spec in models:
        sets = dict(common)
        split = own_split(spec, Path(scratch.name)) or args.websports_split
        if split:
            sets["websports held-out"] = manifest_items(split, "websports")
        sets["realworld-dev"] = folder_items(DATA / "realworld-dev")
        if split and split.parent == Path(scratch.name):  # its temp path says nothing in RESULTS.md
            split = f"made again by `sportsdet data split` (sha256 {sha256_file(split)[:12]}...)"
        backend = open_model(spec)
        aliases = load_bundle(model_path(spec)).label_aliases
        started = time.perf_counter()
        scored = {k: score(backend, v, aliases) for k, v in sets.items()}
        websports_split = str(split) if split else None
        results[name] = {"engine": backend.name, "sets": scored, "websports_split": websports_split}
        results[name]["non_sport"] = non_sport(backend)
        results[name]["seconds"] = round(time.perf_counter() - started, 1)
        print(f"{name}: " + ", ".join(f"{k} {v['accuracy']:.1%}" for k, v in results[name]["sets"].items()))
    scratch.cleanup()
    payload = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_before": load,
               "load_after": os.getloadavg(), "models": dict(models), "results": results}  # fmt: skip
    section = render(payload, args.note)
    print(section)
    write_results(payload, ROOT / "bench" / "results" / "realworld.json", section, START, END)
    return 0


def _pct(row: dict) -> str:
    lo, hi = row["ci95"]
    return f"{row['accuracy']:.1%} ({lo:.1%}-{hi:.1%}), {row['right']}/{row['n']}"


def render(payload: dict, note: str) -> str:
    results = payload["results"]
    names = list(results)
    lines = [
        START,
        "## Real-world photos (bench/realworld.py)",
        "",
        f"Run {payload['when']}; load average before {[round(x, 2) for x in payload['load_before']]}. "
        "Every number from the engine `sportsdet predict` uses; Wilson 95% intervals; a class the model "
        "does not know counts as wrong.",
        "",
        "| set | " + " | ".join(f"{n} ({results[n]['engine']})" for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    sets = list(next(iter(results.values()))["sets"])
    for key in sets:
        lines.append(f"| {key} | " + " | ".join(_pct(results[n]["sets"][key]) for n in names) + " |")
        if key == "realworld-dev":
            for cls in sorted(next(iter(results.values()))["sets"][key]["per_class"]):
                cells = []
                for n in names:
                    row = results[n]["sets"][key]["per_class"][cls]
                    cells.append(f"{row['right']}/{row['n']}" + ("" if row["known"] else " (unknown class)"))
                lines.append(f"| realworld-dev: {cls} | " + " | ".join(cells) + " |")
    for n in names:
        answered = [(k, v) for k, v in results[n]["sets"].items() if v["answered"] is not None]
        if answered:
            lines.append("")
            lines.append(
                f"{n}, answered (not abstained): "
                + "; ".join(
                    f"{k} {v['answered']}/{v['n']} answered, {v['answered_right']} of them right"
                    for k, v in answered
                )
            )
    lines += ["", "Photos that show no sport (scikit-image), top label and score:", ""]
    for n in names:
        shown = ", ".join(
            f"{x['photo']} -> {x['label']} {x['score']:.0%}" + (" (abstained)" if x["abstained"] else "")
            for x in results[n]["non_sport"]
        )
        lines.append(f"- {n}: {shown}")
    splits = [f"{n}: `{results[n]['websports_split']}`" for n in names if results[n].get("websports_split")]
    if splits:
        lines += ["", "websports held-out: the test part of (the model's own split where its bundle records "
                  "one, else --websports-split) " + "; ".join(splits)]
    if note:
        lines += ["", note]
    lines += ["", "Raw numbers: `bench/results/realworld.json`.", END]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
