"""Give an existing bundle an abstain threshold, fitted on labelled validation photos.

Training fits one right after calibration; this is for bundles made before that (the built-in
model) or to refit at another coverage. The rule goes into bundle.json ("abstain") and into the
metadata of every ONNX file in the bundle folder (`sportsdet.abstain`), so every way of running
the model decides the same. The weights are not touched.

    python -m sportsdet.abstain_bundle BUNDLE VALID_FOLDER [--coverage 0.95] [--int8]

VALID_FOLDER holds one subfolder per class (named like the bundle's labels).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from sportsdet.abstain import DEFAULT_COVERAGE, DEFAULT_SCORE, SCORES, Abstain, check_coverage, fit_abstain
from sportsdet.bundle import MANIFEST_NAME, Bundle, load_bundle, set_bundle_abstain
from sportsdet.errors import SportsdetError
from sportsdet.files import iter_image_files
from sportsdet.runtime import META_ABSTAIN, is_onnx_file, load_backend, stream_predictions


def labelled_images(folder: str | Path, index: dict[str, int]) -> tuple[list[tuple[str, Path]], np.ndarray]:
    """(name, path) items and class indices of FOLDER/<class>/... photos (`index`: class name ->
    output row, Bundle.class_index); other folders are refused."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SportsdetError(f"{folder}: no such folder of labelled validation photos")
    items, truth, unknown = [], [], set()
    for path in iter_image_files(folder):
        parts = path.relative_to(folder).parts
        if len(parts) < 2 or parts[0] not in index:
            unknown.add(parts[0] if len(parts) > 1 else ".")
            continue
        items.append((str(path), path))
        truth.append(index[parts[0]])
    if unknown:
        shown = ", ".join(sorted(unknown)[:5])
        raise SportsdetError(
            f"{folder}: photos outside the model's class folders ({shown}); "
            "give a folder with one subfolder per label"
        )
    if not items:
        raise SportsdetError(f"{folder}: no photos in class subfolders named like the model's labels")
    return items, np.asarray(truth)


def fit_bundle_abstain(
    bundle_path: str | Path,
    valid_folder: str | Path,
    *,
    coverage: float = DEFAULT_COVERAGE,
    method: str = DEFAULT_SCORE,
    int8: bool = False,
    backend: str = "auto",
    progress: Callable[[str], None] | None = None,
) -> Abstain:
    """Fit the rule on the photos under `valid_folder` with the engine `predict` would use
    (`int8`: the bundle's model.int8.onnx). Returns it; `store_abstain` saves it."""
    check_coverage(coverage)  # before scoring a whole folder
    say = progress or (lambda message: None)
    model = load_backend(bundle_path, backend, int8=int8)
    index = {label: i for i, label in enumerate(model.labels)}
    bundle = None if is_onnx_file(bundle_path) else load_bundle(bundle_path, verify_weights=False)
    if bundle is not None:  # a bundle folder: its renamed labels' old names too
        index = bundle.class_index()
    items, truth = labelled_images(valid_folder, index)
    if bundle is not None:
        items, truth = _without_training_photos(bundle, valid_folder, items, truth, say)
    say(f"scoring {len(items)} validation photos with {model.name}")
    rows = []
    for result in stream_predictions(items, model):
        if not result.ok:
            raise SportsdetError(f"{result.error}; fix or remove that photo and run again")
        rows.append(result.probs)
    where = "/".join(Path(valid_folder).resolve().parts[-2:])  # e.g. sports100/valid: no home paths
    fitted_on = f"{where} ({model.name})"
    return fit_abstain(np.stack(rows), truth, coverage=coverage, method=method, fitted_on=fitted_on)


def _without_training_photos(
    bundle: Bundle,
    valid_folder: str | Path,
    items: list[tuple[str, Path]],
    truth: np.ndarray,
    say: Callable[[str], None],
) -> tuple[list[tuple[str, Path]], np.ndarray]:
    """The photos the model was trained on (its seen_photos.json, copies too, or an older bundle's
    run split) are left out: it is surest of those, so a threshold fitted on them answered far fewer
    new photos than asked. Its validation photos stay: they are what training fits the rule on."""
    from sportsdet.run_folder import seen_photos_of, unrecognised_seen_note
    from sportsdet.seen_photos import seen_summary, split_off_seen

    seen = seen_photos_of(bundle)  # an older bundle's: its run's split
    unrecognised = unrecognised_seen_note(bundle, seen)
    if unrecognised:
        say(f"warning: {unrecognised}")
    if not seen:
        return items, truth
    _, left_out = split_off_seen([path for _, path in items], seen)
    trained = {path for path, split, _ in left_out.photos if split == "train"}
    if not trained:
        return items, truth
    keep = [i for i, (_, path) in enumerate(items) if path not in trained]
    counts = seen_summary({"train": len(trained)})
    if not keep:
        raise SportsdetError(
            f"{valid_folder}: every photo here is one the model was trained on ({counts}); give it its "
            "validation photos or others it has not seen"
        )
    say(f"left out {counts} the model was trained on: a rule fitted on them would answer too few new photos")
    return [items[i] for i in keep], truth[keep]


def store_abstain(bundle_path: str | Path, policy: Abstain | None) -> list[Path]:
    """Write `policy` (None: remove it) into bundle.json and every ONNX file of the bundle."""
    from sportsdet.export import set_metadata

    bundle = load_bundle(bundle_path, verify_weights=False)
    rule = None if policy is None else policy.to_json()
    written = [set_metadata(path, {META_ABSTAIN: rule}) for path in bundle.onnx_files()]
    written.append(set_bundle_abstain(bundle.path, policy))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("valid", type=Path, help="folder with one subfolder of photos per label")
    parser.add_argument("--coverage", type=float, default=DEFAULT_COVERAGE, help="share of photos answered")
    parser.add_argument("--score", choices=SCORES, default=DEFAULT_SCORE)
    parser.add_argument("--int8", action="store_true", help="score with the bundle's model.int8.onnx")
    args = parser.parse_args(argv)
    try:
        if is_onnx_file(args.bundle):  # said before scoring a whole folder, not after
            raise SportsdetError(
                f"{args.bundle}: the rule is stored in a bundle folder (its {MANIFEST_NAME} and ONNX "
                "files); give the folder this file was exported from"
            )
        policy = fit_bundle_abstain(
            args.bundle, args.valid, coverage=args.coverage, method=args.score, int8=args.int8, progress=print
        )
        if policy.threshold is None:  # stored, it replaced a working rule with none, and exited 0
            raise SportsdetError(f"{args.valid}: {policy.why}; the bundle's rule is left as it was")
        store_abstain(args.bundle, policy)
    except SportsdetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(policy.to_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
