"""Run a bundle over labelled images and write the evaluation folder.

    DIR/metrics.json          every number from `sportsdet.metrics.compute_metrics` + where it came from
    DIR/predictions.csv       path,true_label,pred_label,confidence,true_prob (one row per image)
    DIR/probs.npy             float32 [n, num_classes], rows in predictions.csv order
    DIR/confusion_matrix.png  row-normalised, readable from 3 to 100+ classes
    DIR/gallery_correct.png   the notebook's 3x3 grids: "pred: X (p%) / true: Y" per tile
    DIR/gallery_wrong.png

Which images: when DATA is the tree the model was trained on, the run's saved split manifest
decides (so training images never leak into the test numbers); any other folder is scanned as
a folder-per-class or split tree whose class names must be among the model's labels.
Images go through the bundle's own preprocessing (`sportsdet.preprocess`) and network
(`Bundle.build_torch_model`, via the predict backend).
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sportsdet.bundle import Bundle, load_bundle, sha256_file
from sportsdet.errors import SportsdetError
from sportsdet.runtime import stream_predictions

SPLIT_NAMES = ("train", "valid", "test")
_SPLIT_ALIASES = {"val": "valid", "validation": "valid"}
GALLERY_SIZE = 9  # the notebook's 3x3 grids


@dataclass
class EvalData:
    """The images to evaluate: (path, label index in the bundle's labels), and how they were chosen."""

    items: list[tuple[Path, int]]
    root: Path
    source: str  # "split-manifest" or "folder"
    split: str | None
    manifest: Path | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class EvalResult:
    out_dir: Path
    metrics: dict[str, Any]
    paths: list[Path]
    y_true: np.ndarray
    probs: np.ndarray
    skipped: list[dict[str, str]]
    files: dict[str, Path]


# ----------------------------------------------------------------------------- locating things


def find_run_dir(bundle_dir: Path) -> Path | None:
    """The run folder a bundle sits in (RUN/model with RUN/split.json or RUN/config.json), else None."""
    parent = bundle_dir.resolve().parent
    if bundle_dir.resolve().name == "model" and any(
        (parent / f).is_file() for f in ("split.json", "config.json")
    ):
        return parent
    return None


def default_out_dir(bundle_dir: Path) -> Path:
    """RUN/eval for a bundle inside a run folder, else ./eval-<bundle folder name>."""
    run = find_run_dir(bundle_dir)
    return run / "eval" if run is not None else Path.cwd() / f"eval-{bundle_dir.resolve().name}"


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


def _manifest_candidates(bundle: Bundle) -> list[Path]:
    """Where the split manifest may be: next to the bundle in its run folder, then where training wrote it."""
    candidates = []
    run = find_run_dir(bundle.path)
    if run is not None:
        candidates.append(run / "split.json")
    recorded = bundle.data.get("manifest")
    if isinstance(recorded, str) and recorded:
        candidates.append(Path(recorded))
    return candidates


def _index_map(bundle: Bundle) -> dict[str, int]:
    return {label: i for i, label in enumerate(bundle.labels)}


def _from_manifest(bundle: Bundle, data_root: Path, split: str, warn: Callable[[str], None]) -> EvalData:
    from sportsdet.data.splits import SplitManifest

    candidates = _manifest_candidates(bundle)
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
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
    missing = [rel for rel, _ in manifest.splits.get(split, []) if not (manifest.root / rel).is_file()]
    if missing:
        raise SportsdetError(
            f"{found}: {len(missing)} {split} image(s) are gone from {data_root} (e.g. {missing[0]}); "
            "restore them, or evaluate on a folder of test images instead"
        )
    index = _index_map(bundle)
    unknown = sorted(set(manifest.classes) - set(index))
    if unknown:
        raise SportsdetError(
            f"{found}: classes {unknown} are not among the model's labels; wrong run folder?"
        )
    items = [(manifest.root / rel, index[label]) for rel, label in manifest.splits.get(split, [])]
    if not items:
        raise SportsdetError(
            f"{found}: the saved split ({manifest.strategy}) has no {split} images; try --split valid"
        )
    return EvalData(items, data_root, "split-manifest", split, manifest=found)


def _from_folder(bundle: Bundle, data_root: Path, split: str, split_given: bool) -> EvalData:
    from sportsdet.data.discover import scan_dataset

    scan = scan_dataset(data_root)
    notes = list(scan.warnings)
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
    index = _index_map(bundle)
    unknown = sorted({r.label for r in records} - set(index))
    if unknown:
        known = ", ".join(bundle.labels[:10]) + (" ..." if len(bundle.labels) > 10 else "")
        raise SportsdetError(
            f"{data_root}: class folder(s) {', '.join(repr(u) for u in unknown)} are not among the model's "
            f"{len(bundle.labels)} labels ({known}); rename or remove them (see `sportsdet info`)"
        )
    items = [(r.path, index[r.label]) for r in records]
    return EvalData(items, data_root, "folder", chosen_split, notes=notes)


def select_eval_data(
    bundle: Bundle,
    data: str | Path,
    split: str = "test",
    *,
    split_given: bool = False,
    warn: Callable[[str], None] = lambda message: None,
) -> EvalData:
    """Decide which images to evaluate (see the module doc)."""
    data_root = Path(data).expanduser()
    if not data_root.is_dir():
        raise SportsdetError(
            f"{data_root}: no such folder; give the folder of labelled images to evaluate on"
        )
    data_root = data_root.resolve()
    split = normalise_split(split)
    recorded_root = bundle.data.get("root")
    if isinstance(recorded_root, str) and recorded_root and _same_dir(recorded_root, data_root):
        return _from_manifest(bundle, data_root, split, warn)
    return _from_folder(bundle, data_root, split, split_given)


# ----------------------------------------------------------------------------- running the model


def run_model(
    bundle: Bundle,
    items: Sequence[tuple[Path, int]],
    *,
    batch_size: int = 32,
    device: str = "cpu",
    backend: Any = None,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[list[int], np.ndarray, list[dict[str, str]]]:
    """Probabilities for every readable item, in order; unreadable ones are skipped and reported.

    Returns (kept item positions, probs [kept, C] float32, skipped [{"path", "error"}]).
    Runs through the predictor's streaming pipeline (decoding overlaps the model; memory bounded).
    """
    if backend is None:
        from sportsdet.predict import TorchBackend

        backend = TorchBackend(bundle, device)
    kept: list[int] = []
    rows: list[np.ndarray] = []
    skipped: list[dict[str, str]] = []
    named = ((str(path), path) for path, _ in items)
    for result in stream_predictions(named, backend, bundle.preprocessing, batch_size=batch_size):
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


# ----------------------------------------------------------------------------- plots


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width=width, break_long_words=True)) or text


def plot_confusion_matrix(cm: np.ndarray, labels: Sequence[str], path: Path, title: str = "") -> None:
    """Row-normalised confusion matrix; the figure grows with the class count, fonts shrink,
    and per-cell numbers are drawn only while they fit (up to 20 classes)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(labels)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    side = float(np.clip(0.22 * n + 3.5, 5.0, 26.0))
    tick_font = float(np.clip(150.0 / max(n, 1), 5.0, 10.0))
    fig = Figure(figsize=(side + 1.2, side))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(labels, rotation=90, fontsize=tick_font)
    ax.set_yticklabels(labels, fontsize=tick_font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix (each row sums to 1)", fontsize=11)
    if n <= 20:
        cell_font = float(np.clip(120.0 / max(n, 1), 6.0, 11.0))
        for t in range(n):
            for p in range(n):
                if cm[t, p]:
                    colour = "white" if norm[t, p] > 0.5 else "black"
                    ax.text(
                        p, t, f"{norm[t, p]:.2f}", ha="center", va="center", fontsize=cell_font, color=colour
                    )
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_gallery(
    tiles: Sequence[tuple[Path, str, str, float]], path: Path, title: str, empty_message: str
) -> None:
    """A 3x3 grid of (image path, predicted, true, confidence) tiles, as in the notebook."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from sportsdet.imageio import load_image

    fig = Figure(figsize=(9, 10.5))
    FigureCanvasAgg(fig)
    fig.suptitle(title, fontsize=13)
    if not tiles:
        ax = fig.add_subplot(1, 1, 1)
        ax.axis("off")
        ax.text(0.5, 0.5, empty_message, ha="center", va="center", fontsize=14)
    for i, (image_path, pred, true, confidence) in enumerate(tiles[:GALLERY_SIZE]):
        ax = fig.add_subplot(3, 3, i + 1)
        ax.axis("off")
        try:
            picture = load_image(image_path, min_size=256)
            picture.thumbnail((256, 256))
            ax.imshow(np.asarray(picture))
        except SportsdetError:
            ax.text(0.5, 0.5, "(image unreadable)", ha="center", va="center")
        caption = _wrap(f"pred: {pred} ({confidence:.0%}) /", 34) + "\n" + _wrap(f"true: {true}", 34)
        ax.set_title(caption, fontsize=9, color="darkgreen" if pred == true else "darkred")
    fig.tight_layout(rect=(0, 0, 1, 0.96), h_pad=1.5)
    fig.savefig(path, dpi=100)


# ----------------------------------------------------------------------------- writing


def _atomic_write(path: Path, writer: Callable[[Path], None]) -> None:
    """Write via a temporary file in the same folder and rename: a crash never leaves half a file."""
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    temp = Path(temp_name)
    try:
        writer(temp)
        os.chmod(temp, 0o644)  # mkstemp makes files private; results are meant to be shared
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def _write_csv(path: Path, rows: list[list[Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "true_label", "pred_label", "confidence", "true_prob"])
        writer.writerows(rows)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, ensure_ascii=False)
        handle.write("\n")


def _pick(indices: np.ndarray, rng: np.random.Generator) -> list[int]:
    if len(indices) <= GALLERY_SIZE:
        return sorted(int(i) for i in indices)
    return sorted(int(i) for i in rng.choice(indices, size=GALLERY_SIZE, replace=False))


def evaluate(
    bundle_path: str | Path,
    data: str | Path,
    *,
    split: str = "test",
    split_given: bool = False,
    out_dir: str | Path | None = None,
    batch_size: int = 32,
    device: str = "cpu",
    seed: int = 0,
    backend: Any = None,
    progress: bool = False,
    warn: Callable[[str], None] = lambda message: None,
) -> EvalResult:
    """Evaluate a bundle (or a run folder) on DATA and write the evaluation folder."""
    from sportsdet.metrics import compute_metrics
    from sportsdet.predict import resolve_bundle_dir

    if batch_size < 1:
        raise SportsdetError(f"--batch-size must be at least 1, got {batch_size}")
    bundle_dir = resolve_bundle_dir(bundle_path)
    bundle = load_bundle(bundle_dir)
    chosen = select_eval_data(bundle, data, split, split_given=split_given, warn=warn)
    for note in chosen.notes:
        warn(note)
    out = Path(out_dir) if out_dir is not None else default_out_dir(bundle.path)
    if out.exists() and not out.is_dir():
        raise SportsdetError(f"{out}: exists and is not a folder; choose another --out")

    started = time.monotonic()
    bar = None
    if progress:
        from rich.console import Console
        from rich.progress import Progress

        # stderr: stdout is kept for results.
        bar = Progress(*Progress.get_default_columns(), console=Console(stderr=True), transient=True)
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
    metrics = {
        "split": chosen.split,
        "source": chosen.source,
        **metrics,
        "bundle": str(bundle.path.resolve()),
        "data": str(chosen.root),
        "manifest": str(chosen.manifest) if chosen.manifest else None,
        "skipped": skipped,
        "seconds": round(seconds, 3),
        "images_per_second": round(len(kept) / seconds, 2) if seconds > 0 else None,
    }

    pred = probs.argmax(axis=1)
    confidence = probs.max(axis=1)
    rows = [
        [str(p), labels[t], labels[q], f"{c:.6f}", f"{probs[i, t]:.6f}"]
        for i, (p, t, q, c) in enumerate(zip(paths, y_true, pred, confidence, strict=True))
    ]
    rng = np.random.default_rng(seed)
    correct = _pick(np.flatnonzero(pred == y_true), rng)
    wrong = _pick(np.flatnonzero(pred != y_true), rng)

    def tiles(indices: list[int]) -> list[tuple[Path, str, str, float]]:
        return [(paths[i], labels[pred[i]], labels[y_true[i]], float(confidence[i])) for i in indices]

    out.mkdir(parents=True, exist_ok=True)
    files = {name: out / name for name in (
        "metrics.json", "predictions.csv", "probs.npy",
        "confusion_matrix.png", "gallery_correct.png", "gallery_wrong.png",
    )}  # fmt: skip
    split_name = chosen.split or "all images"
    cm = np.asarray(metrics["confusion_matrix"])
    _atomic_write(files["predictions.csv"], lambda p: _write_csv(p, rows))
    _atomic_write(files["probs.npy"], lambda p: np.save(p, probs.astype(np.float32), allow_pickle=False))
    _atomic_write(
        files["confusion_matrix.png"],
        lambda p: plot_confusion_matrix(
            cm,
            labels,
            p,
            f"{bundle.model_name} on {split_name}: accuracy {metrics['accuracy']:.1%} (rows sum to 1)",
        ),
    )
    _atomic_write(
        files["gallery_correct.png"],
        lambda p: plot_gallery(
            tiles(correct), p, f"correct predictions ({split_name})", "no correct predictions"
        ),
    )
    _atomic_write(
        files["gallery_wrong.png"],
        lambda p: plot_gallery(tiles(wrong), p, f"wrong predictions ({split_name})", "no wrong predictions"),
    )
    # metrics.json last: its presence means the folder is complete.
    _atomic_write(files["metrics.json"], lambda p: _write_json(p, metrics))
    return EvalResult(out, metrics, paths, y_true, probs, skipped, files)
