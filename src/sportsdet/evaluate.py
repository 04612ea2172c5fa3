"""Run a bundle over labelled images and write the evaluation folder.

    DIR/metrics.json          every number from `sportsdet.metrics.compute_metrics` + where it came from
    DIR/predictions.csv       path,true_label,pred_label,confidence,true_prob,uncertain (a row per image)
    DIR/probs.npy             float32 [n, num_classes], rows in predictions.csv order
    DIR/confusion_matrix.png  row-normalised, readable from 3 to 100+ classes
    DIR/gallery_correct.png   the notebook's 3x3 grids: "pred: X (p%) / true: Y" per tile
    DIR/gallery_wrong.png

Which images: when DATA is the tree the model was trained on, the run's saved split manifest
decides (so training images never leak into the test numbers); any other folder is scanned as
a folder-per-class or split tree whose class names must be among the model's labels. Either way
a photo the model was trained or validated on (by content: the bundle's seen_photos.json, e.g. a
test photo that is a byte copy of a training one) is left out and counted, unless --keep-seen.
Images go through the bundle's own preprocessing (`sportsdet.preprocess`) and the engine
`sportsdet predict` would use (`runtime.load_backend`: the bundle's ONNX file when it has one,
else PyTorch), named in metrics.json as "backend".
"""

from __future__ import annotations

import csv
import json
import shlex
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sportsdet import plots
from sportsdet.bundle import Bundle
from sportsdet.data.discover import name_list
from sportsdet.data.sources import is_dataset_file
from sportsdet.errors import SportsdetError, quoted_with_hint
from sportsdet.files import (
    UNDECODABLE,
    StagedFiles,
    check_writable_folder,
    json_writer,
    photo_digests,
    sha256_file,
)
from sportsdet.run_folder import (
    EVAL_FILES,
    REPORT,
    RunFolder,
    find_split_manifest,
    holding_run_of,
    open_bundle,
    run_of_bundle,
    seen_photos_of,
    split_manifest_candidates,
    unrecognised_seen_note,
)
from sportsdet.runtime import is_cpu, load_backend, preferred_batch_size, stream_predictions
from sportsdet.seen_photos import (
    LeftOut,
    seen_summary,
    split_off_seen,
)

SPLIT_NAMES = ("train", "valid", "test")
_SPLIT_ALIASES = {"val": "valid", "validation": "valid"}
LISTED = 8  # class folders named in one message; the rest are counted


@dataclass
class EvalData:
    """The images to evaluate: (path, label index in the bundle's labels), and how they were chosen."""

    items: list[tuple[Path, int]]
    root: Path
    source: str  # "split-manifest" or "folder"
    split: str | None
    manifest: Path | None = None
    notes: list[str] = field(default_factory=list)
    sources: list[str] | None = None  # the data source of each item (multi-source runs)
    left_out: LeftOut = field(default_factory=LeftOut)  # photos the model was trained on, left out
    # Label index -> the class folder's own name where it is another name of the label (an alias:
    # a sports100 `football` folder is the built-in model's `american football`).
    folder_names: dict[int, str] = field(default_factory=dict)
    classes_left_out: dict[str, int] = field(default_factory=dict)  # --known-only: folder -> photos
    seen_kept: dict[str, int] = field(default_factory=dict)  # --keep-seen: seen photos scored, by split
    classes_all_seen: list[str] = field(default_factory=list)  # every photo of these left out as seen
    digests: list[str | None] | None = None  # each item's photo_digest, once hashed (None: unreadable)
    of_source: str | None = None  # the one training source whose part of the saved split is scored


@dataclass
class EvalResult:
    """One evaluation: the folder written (metrics.json, predictions.csv, probs.npy, figures), its
    metrics (accuracy with its 95% interval, balanced accuracy, macro-F1, top-5, per_class,
    confusion_matrix, calibration, abstain, per_source for several sources, and what was scored),
    the photos scored in order with their true class indices and probabilities [N, classes], and
    the photos that could not be read ({"path", "error"})."""

    out_dir: Path
    metrics: dict[str, Any]
    paths: list[Path]
    y_true: np.ndarray
    probs: np.ndarray
    skipped: list[dict[str, str]]
    files: dict[str, Path]


# ----------------------------------------------------------------------------- locating things


def default_out_dir(bundle_dir: Path, chosen: EvalData, *, int8: bool = False) -> Path:
    """RUN/eval for the run's own test split; RUN/eval-<data folder>[-<split>][-int8] for other
    photos, another split or the INT8 model, so they never replace the evaluation the run's report
    shows. Outside a run: ./eval-<bundle folder name>[-<data folder>][-<split>][-int8]."""
    # One source of the run's split is other photos than RUN/eval's: `evaluate RUN A` replaced it.
    own_split = chosen.source == "split-manifest" and chosen.of_source is None
    parts = [] if own_split else [chosen.root.name or "data"]
    if chosen.split not in (None, "test"):
        parts.append(chosen.split)
    if int8:
        parts.append("int8")
    run = run_of_bundle(bundle_dir)
    if run is None:  # `evaluate builtin A` then `evaluate builtin B` both wrote ./eval-builtin
        name, where = "-".join([Path(bundle_dir).resolve().name, *parts]), lambda n: Path.cwd() / f"eval-{n}"
    elif not parts:
        return run.eval
    else:
        name, where = "-".join(parts), run.other_eval
    out, number = where(name), 2
    # /a/photos and /b/photos both made RUN/eval-photos: the second replaced the first in silence.
    while _evaluated_other_data(out, chosen.root):
        out, number = where(f"{name}-{number}"), number + 1
    return out


def _evaluated_other_data(folder: Path, root: Path) -> bool:
    """`folder` holds an evaluation of photos under another folder than `root`."""
    try:
        data = json.loads((folder / "metrics.json").read_text(encoding="utf-8")).get("data")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(data, str) and not _same_dir(data, root)


def normalise_split(split: str) -> str:
    name = _SPLIT_ALIASES.get(split.lower(), split.lower())
    if name not in SPLIT_NAMES:
        raise SportsdetError(f"--split {split!r}: use one of {', '.join(SPLIT_NAMES)}")
    return name


def _same_dir(a: Path | str, b: Path | str) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _from_manifest(
    bundle: Bundle,
    data_root: Path,
    split: str,
    warn: Callable[[str], None],
    keep_seen: bool = False,
    only_source: str | None = None,
) -> EvalData:
    """The split's photos from the run's saved manifest; `only_source`: those of one of its sources."""
    from sportsdet.data.splits import SplitManifest

    found = find_split_manifest(bundle)
    if found is None:
        candidates = split_manifest_candidates(bundle)
        where = ", ".join(str(c) for c in candidates) or "(the bundle records no manifest)"
        raise SportsdetError(
            f"{data_root} is the data this model was trained on, but its split manifest is gone "
            f"(looked for {where}). Without it the test images cannot be told apart from the training "
            "images: restore split.json in the run folder, or evaluate on a separate folder of test images"
        )
    expected_hash = bundle.data.get("manifest_sha256")
    if expected_hash and sha256_file(found) != expected_hash:
        warn(f"{found} has changed since the model was trained; evaluating with the file as it is now")
    manifest = SplitManifest.load(found).with_root(data_root)
    rows, sources = manifest.splits.get(split, []), manifest.sources_of(split) or None
    if only_source is not None and sources is not None:
        kept = [i for i, name in enumerate(sources) if name == only_source]
        rows, sources = [rows[i] for i in kept], [sources[i] for i in kept]
    missing = [rel for rel, _ in rows if not (manifest.root / rel).is_file()]
    if missing:
        raise SportsdetError(
            f"{found}: {len(missing)} {split} image(s) are gone from {data_root} (e.g. {missing[0]}); "
            "restore them, or evaluate on a folder of test images instead"
        )
    index = bundle.class_index()  # a renamed label's data name too (sports100's `football`)
    unknown = sorted(set(manifest.classes) - set(index))
    if unknown:
        raise SportsdetError(
            f"{found}: class(es) {name_list(unknown)} are not among the model's labels; wrong run folder?"
        )
    items = [(manifest.root / rel, index[label]) for rel, label in rows]
    if not items:
        which = f" of source {only_source!r}" if only_source is not None else ""
        raise SportsdetError(
            f"{found}: the saved split ({manifest.strategy}) has no {split} images{which}; try --split valid"
        )
    chosen = EvalData(items, data_root, "split-manifest", split, manifest=found, sources=sources)
    if only_source is not None:
        chosen.root, chosen.of_source = Path(manifest.sources[only_source]["root"]), only_source
        chosen.notes.append(
            f"{chosen.root} is source {only_source!r} of this model's training data: its {split} photos "
            "of the saved split are scored, under the run's class names"
        )
    if split != "test":  # the model's own photos, scored because asked for: recorded and said
        chosen.seen_kept = {split: len(items)}
        used = "trained" if split == "train" else "validated"
        chosen.notes.append(
            f"the {len(items):,} {split} photos of the saved split are the ones the model was {used} on: "
            "the score says how well it fits them, not how it does on new photos"
        )
        return chosen
    # A test photo byte-identical to a training one (sports100 has 5) is left out, like elsewhere.
    return _leave_out_seen(bundle, chosen, keep=keep_seen)


def _from_folder(
    bundle: Bundle,
    data_root: Path,
    split: str,
    split_given: bool,
    keep_seen: bool = False,
    known_only: bool = False,
) -> EvalData:
    from sportsdet.data.discover import for_checking, scan_dataset

    scan = scan_dataset(data_root)
    notes = for_checking(scan.warnings)  # balanced accuracy is reported; nothing to fix
    if scan.layout == "split":
        records = [r for r in scan.records if r.split == split]
        if not records:
            present = sorted({r.split for r in scan.records if r.split})
            raise SportsdetError(
                f"{data_root}: no '{split}' images in this split tree (it has {', '.join(present)}); "
                f"pick one with --split"
            )
        chosen_split: str | None = split
    else:
        records = list(scan.records)
        chosen_split = None
        if split_given:
            notes.append(f"{data_root} is a folder-per-class tree: --split is ignored, every image is used")
    index = bundle.class_index()  # a renamed label's data name too (sports100's `football`)
    shown = {name: quoted_with_hint(name, bundle.labels) for name in {r.label for r in records} - set(index)}
    # Those with a "did you mean" first: listed LISTED at a time, the one fixable hint was cut off.
    unknown = sorted(shown, key=lambda name: ("(did you mean" not in shown[name], name))
    if unknown:
        # At most LISTED names: 195 folders the built-in model lacks made a 3,000-character error.
        hints = ", ".join(shown[name] for name in unknown[:LISTED])
        hints += f" and {len(unknown) - LISTED} more" if len(unknown) > LISTED else ""
        known = f" ({', '.join(bundle.labels)})" if len(bundle.labels) <= 10 else ""
        if not known_only or len(unknown) == len({r.label for r in records}):
            raise SportsdetError(
                f"{data_root}: class folder(s) {hints} are not among the model's {len(bundle.labels)} "
                f"labels{known}; rename or remove them, or leave them out with --known-only "
                f"(`sportsdet info {_shown_model(bundle)} --labels` lists the labels)"
            )
        # A folder one cannot rename (read-only, shared data) with a sport the model lacks.
        count = {label: sum(r.label == label for r in records) for label in unknown}
        listed, more = unknown[:LISTED], unknown[LISTED:]
        notes.append(
            f"left out (--known-only) {len(unknown)} class folder(s) the model does not know: "
            + ", ".join(f"{shown[name]} ({count[name]} photos)" for name in listed)
            + (f" and {len(more)} more ({sum(count[name] for name in more)} photos)" if more else "")
        )
        records = [r for r in records if r.label in index]
    else:
        count = {}
    items = [(r.path, index[r.label]) for r in records]
    aliased = {index[r.label]: r.label for r in records if r.label not in bundle.labels}
    chosen = EvalData(items, data_root, "folder", chosen_split, notes=notes, folder_names=aliased,
                      classes_left_out=count)  # fmt: skip
    return _leave_out_seen(bundle, chosen, keep=keep_seen)


def _shown_model(bundle: Bundle) -> str:
    """The bundle as a user names it on a command line: `builtin` for the built-in model."""
    from sportsdet.bundle import builtin_bundle_path

    builtin = builtin_bundle_path()
    if builtin is not None and bundle.path.resolve() == builtin.resolve():
        return "builtin"
    return shlex.quote(str(bundle.path))


def _leave_out_seen(bundle: Bundle, chosen: EvalData, keep: bool = False) -> EvalData:
    """`chosen` without the photos the model was trained or validated on (by content, byte copies
    and near copies), kept in `left_out` (metrics.json `seen_left_out`, ...) and said in a note: a
    copy of a training photo tests nothing. `keep` (--keep-seen): scored all the same, counted
    (`seen_kept`) and said, since the score then flatters the model."""
    seen = seen_photos_of(bundle)
    unrecognised = unrecognised_seen_note(bundle, seen)
    if unrecognised:
        chosen.notes.append(unrecognised)
    if not seen:
        return chosen
    chosen.digests = photo_digests([path for path, _ in chosen.items])  # hashed once: copies too
    kept, left_out = split_off_seen([path for path, _ in chosen.items], seen, chosen.digests)
    if not left_out:
        return chosen
    counts, total = seen_summary(left_out.by_split, left_out.near_copies), len(chosen.items)
    photos = f"{chosen.split} photos" if chosen.split else "photos"  # a split tree's too
    if keep:
        chosen.seen_kept = left_out.by_split
        chosen.notes.append(
            f"{total - len(kept):,} of the {total:,} {photos} under {chosen.root} the model was trained or "
            f"validated on ({counts}): scored anyway (--keep-seen), so the score flatters it"
        )
        return chosen
    if not kept:
        raise SportsdetError(
            f"{chosen.root}: every {photos[:-1]} here is one the model was trained or validated on "
            f"({counts}); "
            "give it photos it has not seen (--keep-seen scores these anyway)"
        )
    gone = total - len(kept)
    # A class whose every photo goes is not scored at all: said, or it silently left the count.
    emptied = {label for _, label in chosen.items} - {chosen.items[i][1] for i in kept}
    chosen.classes_all_seen = [bundle.labels[label] for label in sorted(emptied)]
    whole = ""
    if chosen.classes_all_seen:
        listed = ", ".join(chosen.classes_all_seen[:LISTED]) + (" ..." if len(emptied) > LISTED else "")
        whole = f"; every photo of {len(emptied)} class(es) among them ({listed}): not scored at all"
    chosen.notes.append(
        f"{gone:,} of the {total:,} {photos} under {chosen.root} "
        + ("is one" if gone == 1 else "are ones")
        + f" the model was trained or validated on ({counts}): left out, so the score is on photos it has "
        "not seen "
        "(--keep-seen scores " + ("it" if gone == 1 else "them") + f" too){whole}"
    )
    chosen.items = [chosen.items[i] for i in kept]
    chosen.digests = [chosen.digests[i] for i in kept]
    if chosen.sources is not None:
        chosen.sources = [chosen.sources[i] for i in kept]
    chosen.left_out = left_out
    return chosen


def select_eval_data(
    bundle: Bundle,
    data: str | Path | None,
    split: str = "test",
    *,
    split_given: bool = False,
    keep_seen: bool = False,
    known_only: bool = False,
    warn: Callable[[str], None] = lambda message: None,
) -> EvalData:
    """Decide which images to evaluate (see the module doc). `data` None: the run's own split.
    `known_only`: a folder's classes the model does not know are left out (else an error)."""
    split = normalise_split(split)
    recorded_root = bundle.data.get("root")
    if data is not None and is_dataset_file(data):
        _refuse_other_sources(bundle, Path(data))
    if data is None or is_dataset_file(data):
        # The data the model was trained on (one folder, several sources or their dataset file):
        # its saved split manifest says which images are test images.
        if not isinstance(recorded_root, str) or not recorded_root:
            sources = ", ".join(bundle.data.get("sources") or {})  # the built-in model names its sources
            raise SportsdetError(
                f"{bundle.path}: the bundle records no training data folder"
                + (f" (it was trained on {sources})" if sources else "")
                + "; give a folder of labelled photos to evaluate on, one subfolder per class"
            )
        return _from_manifest(bundle, Path(recorded_root), split, warn, keep_seen)
    data_root = Path(data).expanduser()
    if data_root.is_file():
        raise SportsdetError(
            f"{data_root}: a file, not a folder; evaluate scores a folder of labelled photos (one "
            "subfolder per class); `sportsdet predict` labels single photos"
        )
    if not data_root.is_dir():
        raise SportsdetError(
            f"{data_root}: no such folder; give the folder of labelled images to evaluate on"
        )
    data_root = data_root.resolve()
    if isinstance(recorded_root, str) and recorded_root and _same_dir(recorded_root, data_root):
        return _from_manifest(bundle, data_root, split, warn, keep_seen)
    source = _source_at(bundle, data_root)
    if source is not None and isinstance(recorded_root, str) and recorded_root:
        # One source of a multi-source run: its part of the saved split, through its label map (as
        # a folder of its own, a mapped class was "not among the model's labels").
        return _from_manifest(bundle, Path(recorded_root), split, warn, keep_seen, only_source=source)
    return _from_folder(bundle, data_root, split, split_given, keep_seen, known_only)


def _copies_among(chosen: EvalData) -> int:
    """How many of the photos to score are byte copies of another one of them, said in a note:
    each copy is scored, so a photo saved twice counts twice (a web folder often holds some)."""
    if chosen.digests is None:
        chosen.digests = photo_digests([path for path, _ in chosen.items])
    digests = Counter(d for d in chosen.digests if d is not None)
    extra = sum(count - 1 for count in digests.values())
    if extra:
        groups = sum(count > 1 for count in digests.values())
        chosen.notes.append(
            f"{extra:,} of the {len(chosen.items):,} photos under {chosen.root} are byte copies of others "
            f"there ({groups:,} photo(s) saved more than once): each copy is scored, so those photos count "
            "more than once (`sportsdet data check` lists them)"
        )
    return extra


def _source_at(bundle: Bundle, folder: Path) -> str | None:
    """The name of the model's training source whose folder `folder` is, if any."""
    from sportsdet.data.splits import SplitManifest

    found = find_split_manifest(bundle)
    if found is None:
        return None
    try:
        sources = SplitManifest.load(found).sources
    except SportsdetError:
        return None  # a damaged manifest: the folder is scored as a folder
    return next((name for name, info in sources.items() if _same_dir(info.get("root", ""), folder)), None)


def _refuse_other_sources(bundle: Bundle, dataset_file: Path) -> None:
    """A dataset file given to evaluate must name the sources the model was trained on (their test
    photos are scored through its split); any other is refused rather than silently ignored."""
    from sportsdet.data.sources import read_dataset_file
    from sportsdet.data.splits import SplitManifest

    named = sorted({source.path.resolve() for source in read_dataset_file(dataset_file).sources})
    found = find_split_manifest(bundle)
    if found is None:  # no split to score through: the checks after this one say so, truly
        return
    manifest = SplitManifest.load(found)
    # A one-source run records no sources: its one folder is the source it was trained on.
    roots = [info["root"] for info in manifest.sources.values()] if manifest.sources else [manifest.root]
    trained = sorted({Path(root).resolve() for root in roots})
    if named != trained:
        raise SportsdetError(
            f"{dataset_file}: names {', '.join(map(str, named))}, not the sources this model was trained on"
            + (f" ({', '.join(map(str, trained))})" if trained else "")
            + "; to score other photos, give one folder of labelled photos (one subfolder per class)"
        )


# ----------------------------------------------------------------------------- running the model


def run_model(
    bundle: Bundle,
    items: Sequence[tuple[Path, int]],
    *,
    batch_size: int | None = None,
    device: str = "cpu",
    backend: Any = None,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[list[int], np.ndarray, list[dict[str, str]]]:
    """Probabilities for every readable item, in order; unreadable ones are skipped and reported.
    `batch_size` None: the backend's fastest, as predict runs it (onnxruntime: 2 per run; 32 held
    600 MB more for the same speed).

    Returns (kept item positions, probs [kept, C] float32, skipped [{"path", "error"}]).
    Runs through the predictor's streaming pipeline (decoding overlaps the model; memory bounded).
    """
    if backend is None:
        backend = load_backend(bundle.path, device=device)
    kept: list[int] = []
    rows: list[np.ndarray] = []
    skipped: list[dict[str, str]] = []
    named = ((str(path), path) for path, _ in items)
    size = batch_size if batch_size is not None else preferred_batch_size(backend)
    for result in stream_predictions(named, backend, bundle.preprocessing, batch_size=size):
        if result.ok:
            if result.probs.shape != (bundle.num_classes,):
                raise SportsdetError(
                    f"model returned {result.probs.shape} class scores, the bundle has {bundle.num_classes}"
                )
            kept.append(result.index)
            rows.append(result.probs)
        else:
            skipped.append({"path": result.name, "error": result.error})
        if on_progress is not None:
            on_progress(1)
    probs = np.stack(rows).astype(np.float32) if rows else np.zeros((0, bundle.num_classes), np.float32)
    return kept, probs, skipped


# ----------------------------------------------------------------------------- writing


def _write_csv(path: Path, rows: list[list[Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8", errors=UNDECODABLE) as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "true_label", "pred_label", "confidence", "true_prob", "uncertain"])
        writer.writerows(rows)


def _check_still_its_model(run: RunFolder, scored: Bundle) -> None:
    """The run's own model, scored for RUN/eval, must still be the run's when the results are
    written: a `train --force` started meanwhile (and stopped) left a new run with the old model's
    results and no model."""
    if scored.path.resolve() != run.model.resolve():
        return  # another model's evaluation kept in the run folder
    try:
        now = json.loads(run.model_manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        now = None
    sha = (scored.manifest.get("weights") or {}).get("sha256")
    if not isinstance(now, dict) or (now.get("weights") or {}).get("sha256") != sha:
        raise SportsdetError(
            f"{run.path}: its model was replaced or removed while it was being evaluated (by another "
            "`sportsdet train`); nothing written. Evaluate it again once that run has a model"
        )


def _pick(indices: np.ndarray, rng: np.random.Generator) -> list[int]:
    if len(indices) <= plots.GALLERY_SIZE:
        return sorted(int(i) for i in indices)
    return sorted(int(i) for i in rng.choice(indices, size=plots.GALLERY_SIZE, replace=False))


def evaluate(
    bundle_path: str | Path,
    data: str | Path | None = None,
    *,
    split: str = "test",
    split_given: bool = False,
    keep_seen: bool = False,
    known_only: bool = False,
    out_dir: str | Path | None = None,
    batch_size: int | None = None,
    device: str = "cpu",
    seed: int = 0,
    int8: bool = False,
    backend: Any = None,
    progress: bool = False,
    warn: Callable[[str], None] = lambda message: None,
    on_out: Callable[[Path], None] | None = None,
) -> EvalResult:
    """Evaluate a bundle (or a run folder) on DATA and write the evaluation folder.

    DATA None (or the run's dataset file): the run's own saved split, every source of it; a
    folder: its class folders (a train/valid/test tree: its `split`). `split_given`: whether
    `split` was chosen (a folder-per-class tree then says it is ignored). Photos the model was
    trained or validated on are left out by content unless `keep_seen`; class folders the model
    does not know are refused unless `known_only` (then left out, and said). `out_dir` default:
    RUN/eval for the run's own test split, else RUN/eval-DATA, or ./eval-MODEL-DATA outside a run.
    `batch_size` None: the backend's fastest; `seed` draws the gallery photos; `backend`: any
    object with predict_proba (default: the engine predict uses). `int8` scores the bundle's
    model.int8.onnx (what `predict --int8` and `serve --int8` run). `warn(message)` hears each
    note; `on_out(folder)` hears where the results will go, before any photo is scored.
    """
    from sportsdet.metrics import (
        abstain_metrics,
        compute_metrics,
        mostly_given_another,
        per_group_accuracy,
        photos_scored,
        rename_hint,
    )

    if batch_size is not None and batch_size < 1:
        raise SportsdetError(f"--batch-size must be at least 1, got {batch_size}")
    if int8 and not is_cpu(device):
        raise SportsdetError(f"--device {device}: --int8 runs on onnxruntime, on the CPU; drop one of them")
    bundle = open_bundle(bundle_path)  # a run folder, or `builtin`, too
    chosen = select_eval_data(
        bundle, data, split, split_given=split_given, keep_seen=keep_seen, known_only=known_only, warn=warn
    )
    copies = _copies_among(chosen)
    for note in chosen.notes:
        warn(note)
    # A bundle that ships only its INT8 model (the built-in one) runs it by default: the same scores,
    # not a second folder of them.
    named_int8 = int8 and not bundle.ships_only_int8
    out = Path(out_dir) if out_dir is not None else default_out_dir(bundle.path, chosen, int8=named_int8)
    if out.exists() and not out.is_dir():
        raise SportsdetError(f"{out}: exists and is not a folder; choose another --out")
    if chosen.source == "folder" and out.resolve().is_relative_to(chosen.root.resolve()):
        # Its figures were scored as photos of a class the next time, or its folder refused as a
        # class the model does not know.
        raise SportsdetError(
            f"{out}: inside {chosen.root}, the folder of photos being evaluated; the results would be "
            "read as photos the next time. Give --out a folder outside it"
        )
    if out_dir is not None:  # before the photos are scored, not after
        check_writable_folder(out, "--out", out)
    else:  # not "--out ...", an option never given
        check_writable_folder(out, "the evaluation folder", out, fix="give --out a folder to write in")
    if on_out is not None:
        on_out(out)

    if backend is None:
        # Another device is torch's (a bundle with model.onnx, the built-in model too, was refused
        # "runs on onnxruntime; --backend torch", an option evaluate does not have).
        if int8:  # before any photo is scored: a bundle without it is told how to make it
            backend = load_backend(bundle.path, "onnx", int8=True)
        else:
            backend = load_backend(bundle.path, "auto" if is_cpu(device) else "torch", device=device)
    # Timed from here: the speed is the scoring's; with the model's loading in it, 9 photos
    # "ran" at 3 images/s after `evaluate` and at 470 in training's own evaluation.
    started = time.monotonic()
    bar = None
    if progress:
        from rich.console import Console
        from rich.progress import Progress

        # stderr: stdout is kept for results.
        shown = Console(stderr=True)
        # Not drawn where stderr is no terminal: it left a blank line there and nothing else.
        bar = Progress(
            *Progress.get_default_columns(), console=shown, transient=True, disable=not shown.is_terminal
        )
        task = bar.add_task("evaluating", total=len(chosen.items))
        bar.start()
    try:
        kept, probs, skipped = run_model(
            bundle,
            chosen.items,
            batch_size=batch_size,
            device=device,
            backend=backend,
            on_progress=(lambda n: bar.advance(task, n)) if bar is not None else None,
        )
    finally:
        if bar is not None:
            bar.stop()
    seconds = time.monotonic() - started
    for entry in skipped:
        warn(f"skipped {entry['error']}")
    if not kept:
        raise SportsdetError(f"{chosen.root}: none of the {len(chosen.items)} images could be read")

    labels = bundle.labels
    paths = [chosen.items[i][0] for i in kept]
    y_true = np.array([chosen.items[i][1] for i in kept], dtype=np.int64)
    metrics = compute_metrics(y_true, probs, labels)
    metrics["abstain"] = abstain_metrics(y_true, probs, bundle.abstain)
    # What predict would say of each photo (None: the model has no abstain rule in force).
    ruled = bundle.abstain is not None and bundle.abstain.active
    doubted = np.asarray(bundle.abstain.uncertain(probs), dtype=bool) if ruled else None
    if chosen.source == "folder":  # the user's own folder names: one may mean another class to the model
        # Counted on the photos the model answers: a best guess it would not say ("uncertain")
        # is no evidence that the folder means another class.
        answered = ~doubted if doubted is not None else np.ones(len(y_true), dtype=bool)
        confusion = np.zeros((len(labels), len(labels)), dtype=np.int64)
        np.add.at(confusion, (y_true[answered], probs[answered].argmax(1)), 1)
        in_folder = np.bincount(y_true, minlength=len(labels))
        # ... and only when they are at least half of the folder: 18 of 54 'tennis' photos called
        # 'badminton' (of 35 answered) is a confusion, and the hint said to rename the folder.
        metrics["mostly_given_another"] = [
            entry for entry in mostly_given_another(confusion, bundle.labels)
            if 2 * entry["count"] >= in_folder[labels.index(entry["class"])]
        ]  # fmt: skip
        for entry in metrics["mostly_given_another"]:  # the hint counts the answered ones only
            row = labels.index(entry["class"])
            entry["in_folder"] = int(in_folder[row])
            if row in chosen.folder_names:  # the hint names the folder the user has, not the label
                entry["folder"] = chosen.folder_names[row]
        for entry in metrics["mostly_given_another"]:
            warn(rename_hint(entry))
    if chosen.sources is not None:  # a multi-source run: accuracy per source as well
        metrics["per_source"] = per_group_accuracy(y_true, probs, [chosen.sources[i] for i in kept])
    metrics = {
        "split": chosen.split,
        "source": chosen.source,
        **metrics,
        "bundle": str(bundle.path.resolve()),
        # Which weights were scored: a run retrained in place must not show an old evaluation as its own.
        "weights_sha256": (bundle.manifest.get("weights") or {}).get("sha256"),
        "backend": getattr(backend, "name", type(backend).__name__),
        "data": str(chosen.root),
        "manifest": str(chosen.manifest) if chosen.manifest else None,
        "seen_left_out": chosen.left_out.by_split,
        "seen_near_copies": chosen.left_out.near_copies,
        "seen_photos_left_out": chosen.left_out.to_json(),
        "seen_kept": chosen.seen_kept,
        "classes_all_seen": chosen.classes_all_seen,
        "classes_left_out": chosen.classes_left_out,
        "copies_scored": copies,
        "skipped": skipped,
        "seconds": round(seconds, 3),
        "images_per_second": round(len(kept) / seconds, 2) if seconds > 0 else None,
    }

    pred = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    # `uncertain` empty when the model has no abstain rule; pred_label is its best guess either
    # way, as the accuracy counts it.
    rows = [
        [str(p), labels[t], labels[q], f"{c:.6f}", f"{probs[i, t]:.6f}",
         ("true" if doubted[i] else "false") if doubted is not None else ""]
        for i, (p, t, q, c) in enumerate(zip(paths, y_true, pred, confidence, strict=True))
    ]  # fmt: skip
    rng = np.random.default_rng(seed)
    correct = _pick(np.flatnonzero(pred == y_true), rng)
    wrong = _pick(np.flatnonzero(pred != y_true), rng)

    def tiles(indices: list[int]) -> list[tuple[Path, str, str, float]]:
        return [(paths[i], labels[pred[i]], labels[y_true[i]], float(confidence[i])) for i in indices]

    files = {name: out / name for name in EVAL_FILES if name != REPORT}
    split_name = photos_scored(metrics)
    cm = np.asarray(metrics["confusion_matrix"])
    # Every file is written under a temporary name first and all are renamed into place together:
    # Ctrl-C while the figures are drawn (seconds) had left an earlier evaluation without its
    # metrics.json, half replaced. An earlier page goes when they are published: it showed the old
    # photos beside the new results (written again after, by the command).
    with holding_run_of(out) as run, StagedFiles(out) as staged:
        if run is not None:
            _check_still_its_model(run, bundle)
        staged.write("predictions.csv", lambda p: _write_csv(p, rows))
        staged.write("probs.npy", lambda p: np.save(p, probs.astype(np.float32), allow_pickle=False))
        staged.write(
            "confusion_matrix.png",
            lambda p: plots.plot_confusion_matrix(
                cm,
                labels,
                p,
                f"{bundle.model_name} on {split_name}: accuracy {metrics['accuracy']:.1%} (rows sum to 1)",
            ),
        )
        staged.write(
            "gallery_correct.png",
            lambda p: plots.plot_gallery(
                tiles(correct), p, f"correct predictions ({split_name})", "no correct predictions"
            ),
        )
        staged.write(
            "gallery_wrong.png",
            lambda p: plots.plot_gallery(
                tiles(wrong), p, f"wrong predictions ({split_name})", "no wrong predictions"
            ),
        )
        staged.write("metrics.json", json_writer(metrics, indent=2))
        # metrics.json last: its presence means the folder is complete.
        staged.publish(remove=("metrics.json", REPORT), last="metrics.json")
    return EvalResult(out, metrics, paths, y_true, probs, skipped, files)
