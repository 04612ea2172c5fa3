"""The run folder `sportsdet train --out RUN` writes; finding a run, bundle or split from user input.

    RUN/config.json        the resolved training options, model, data, seed, versions
    RUN/data_summary.json  the scan of the training data
    RUN/split.json         the split manifest (reused by evaluate, export and --resume)
    RUN/metrics.csv        one row per epoch (METRICS_COLUMNS)
    RUN/curves.png         loss, accuracy and learning rate per epoch
    RUN/checkpoints/       last.* and best.* (sportsdet.training.checkpoint)
    RUN/model/             the bundle (sportsdet.bundle)
    RUN/eval/              the test split's evaluation (sportsdet.evaluate)
    RUN/eval-<what>/       evaluations on other photos or another split (`sportsdet evaluate RUN DATA`)
    RUN/report.html        the whole run on one page (sportsdet.report)

Every other module asks this one where these live; none spells the names itself (the model
folder's name, which load_bundle needs too, is bundle.RUN_MODEL_FOLDER, below this module).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sportsdet.bundle import BUNDLE_FILES, MANIFEST_NAME, RUN_MODEL_FOLDER, Bundle, bundle_folder, load_bundle
from sportsdet.errors import SportsdetError
from sportsdet.files import FOLDER_LOCK, folder_holder, hold_folder

METRICS_COLUMNS = ("epoch", "stage", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds")
CONFIG = "config.json"
DATA_SUMMARY = "data_summary.json"
SPLIT = "split.json"
METRICS = "metrics.csv"
CURVES = "curves.png"
CHECKPOINTS = "checkpoints"
LAST_CHECKPOINT = "last.safetensors"  # in CHECKPOINTS: the latest epoch's, with what resumes it
BEST_CHECKPOINT = "best.safetensors"  # in CHECKPOINTS: the best epoch's weights
MODEL = RUN_MODEL_FOLDER
EVAL = "eval"
REPORT = "report.html"
LOCK = FOLDER_LOCK  # held (flock) by the process writing the run; the OS drops it if that dies
EVAL_FILES = (
    "metrics.json", "predictions.csv", "probs.npy", "confusion_matrix.png",
    "gallery_correct.png", "gallery_wrong.png", REPORT,
)  # fmt: skip
# What sportsdet writes in a run folder, by folder; `--force` removes only these (anything else
# a user put there stays, even inside model/ or eval/).
RUN_FILES = (CONFIG, DATA_SUMMARY, SPLIT, METRICS, CURVES, REPORT)
RUN_DIRS = {
    CHECKPOINTS: (LAST_CHECKPOINT, "last.json", BEST_CHECKPOINT, "best.json"),
    MODEL: BUNDLE_FILES,
    EVAL: EVAL_FILES,
}


@dataclass(frozen=True)
class RunFolder:
    """Paths inside one run folder."""

    path: Path

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def data_summary(self) -> Path:
        return self.path / DATA_SUMMARY

    @property
    def split(self) -> Path:
        return self.path / SPLIT

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def curves(self) -> Path:
        return self.path / CURVES

    @property
    def checkpoints(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / LAST_CHECKPOINT

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / BEST_CHECKPOINT

    @property
    def model(self) -> Path:
        return self.path / MODEL

    @property
    def model_manifest(self) -> Path:
        """RUN/model/bundle.json: there once training has written the run's model."""
        return self.model / MANIFEST_NAME

    @property
    def eval(self) -> Path:
        return self.path / EVAL

    def other_eval(self, what: str) -> Path:
        """Where an evaluation on other photos (or another split) goes, beside RUN/eval."""
        return self.path / f"{EVAL}-{what}"

    def other_evals(self) -> list[Path]:
        """The RUN/eval-<what> folders that hold an evaluation's metrics.json, by name."""
        if not self.path.is_dir():
            return []
        found = self.path.glob(f"{EVAL}-*/{EVAL_FILES[0]}")
        return sorted(p.parent for p in found if p.is_file())

    @property
    def report(self) -> Path:
        return self.path / REPORT

    def has_content(self) -> bool:
        return self.path.is_dir() and any(entry.name != LOCK for entry in self.path.iterdir())

    def looks_like_run(self) -> bool:
        """Holds anything `sportsdet train` writes (a half-finished run counts)."""
        return any((self.path / name).exists() for name in (CONFIG, METRICS, SPLIT, MODEL))

    def written_by_sportsdet(self) -> bool:
        """Holds a run `sportsdet train` started: its config.json, split manifest or model bundle,
        read, not just named alike (a folder of one's own may hold a config.json)."""
        if self.model_manifest.is_file():
            return True
        if (self.path / PREVIOUS_RUN).is_dir() and RunFolder(self.path / PREVIOUS_RUN).written_by_sportsdet():
            return True  # a --force killed right after it set the run aside
        for name in (CONFIG, SPLIT):
            try:
                data = json.loads((self.path / name).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, ValueError):
                continue
            if not isinstance(data, dict):
                continue
            # A config.json of one's own may have "options": ours has the model and data beside it.
            ours = name == CONFIG and {"options", "model", "data"} <= set(data)
            if ours or str(data.get("format", "")).startswith("sportsdet"):
                return True
        return False


def is_run_dir(path: str | Path) -> bool:
    return RunFolder(Path(path)).looks_like_run()


def run_of_bundle(bundle_dir: str | Path) -> RunFolder | None:
    """The run folder a bundle sits in (RUN/model beside RUN/split.json or RUN/config.json), else None."""
    bundle_dir = Path(bundle_dir).resolve()
    run = RunFolder(bundle_dir.parent)
    if bundle_dir.name == MODEL and (run.split.is_file() or run.config.is_file()):
        return run
    return None


def resolve_bundle_dir(path: str | Path) -> Path:
    """A bundle folder as given, RUN/model when `path` is a training run folder, or the built-in
    model for the name `builtin` (unless a folder of that name is here)."""
    path = Path(path).expanduser()
    found = bundle_folder(path)
    if found != path:
        return found
    run = RunFolder(path)
    started = run.config.is_file() or run.checkpoints.is_dir()  # not a lone saved split.json
    if not (path / MANIFEST_NAME).is_file() and started and run.written_by_sportsdet():
        # A run whose training has not written its model yet was "not a sportsdet model bundle".
        holder = folder_holder(run.path)
        if holder is not None:  # it was told "start it again with --force" while it trained
            raise SportsdetError(
                f"{path}: this run has no model yet: another sportsdet process (pid {holder}) is writing "
                "it; wait for it to finish"
            )
        kept = run.last_checkpoint.is_file()
        resume = f"`sportsdet train --out {shlex.quote(str(path))} --resume`"
        if not kept and RunFolder(path / PREVIOUS_RUN).written_by_sportsdet():  # a --force killed early
            raise SportsdetError(
                f"{path}: this run has no model yet: a `train --force` into it stopped (killed?) before "
                f"its first checkpoint; the run it was to replace is kept in {PREVIOUS_RUN}: {resume} puts "
                "it back"
            )
        raise SportsdetError(
            f"{path}: this run has no model yet (its training stopped, or is still going); "
            + (f"finish it with {resume}" if kept else "it kept no checkpoint: start it again with --force")
        )
    return path  # load_bundle explains what is wrong with anything else


def open_bundle(path: str | Path, *, verify_weights: bool = True) -> Bundle:
    """Open and validate a model bundle (the public `sportsdet.load_bundle`): a bundle folder or
    its bundle.json, a training run folder (its model/; one with no model yet is said so), or
    `"builtin"`, the sports model shipped in the package. `verify_weights`: check the weights
    file against its recorded hash (slower for big models)."""
    return load_bundle(resolve_bundle_dir(path), verify_weights=verify_weights)


def split_manifest_candidates(bundle: Any) -> list[Path]:
    """Where a bundle's split manifest may be: its run folder's split.json, then where training wrote it."""
    candidates = []
    run = run_of_bundle(bundle.path)
    if run is not None:
        candidates.append(run.split)
    recorded = bundle.data.get("manifest")
    if isinstance(recorded, str) and recorded:
        candidates.append(Path(recorded))
    return candidates


def find_split_manifest(bundle: Any) -> Path | None:
    """The first of `split_manifest_candidates` that exists, else None."""
    return next((c for c in split_manifest_candidates(bundle) if c.is_file()), None)


def seen_photos_of(bundle: Any) -> Any:
    """The photos the model was trained and validated on (a seen_photos.SeenPhotos): its
    seen_photos.json, or for a bundle made before that file, its run's split manifest when still
    there; None when neither is. What evaluate and export's INT8 check both leave out."""
    from sportsdet.seen_photos import load_seen, seen_from_split

    seen = load_seen(bundle.path)
    if seen is None:
        manifest = find_split_manifest(bundle)
        seen = seen_from_split(manifest) if manifest is not None else None
    return seen


def unrecognised_seen_note(bundle: Any, seen: Any) -> str | None:
    """What `seen_photos_of` could not find, said: a bundle made before seen_photos.json whose run's
    split.json, or photos, are not where they were (the bundle copied elsewhere, the data moved).
    Its training photos among those scored were scored as new ones without a word."""
    if seen is not None and not getattr(seen, "missing", 0):
        return None
    # Not made by `sportsdet train` (a bundle saved from Python): it recorded no photos to look for.
    made_by_train = bool(bundle.training.get("recipe")) and bool(bundle.data.get("manifest"))
    if seen is None and not made_by_train:
        return None
    older = f"{bundle.path} was made before bundles recorded the photos they were trained on"
    if seen is None:
        where = "and its run's split.json is not found (the bundle copied out of its run folder?)"
    else:
        where = (f"and {seen.missing:,} of the training and validation photos its run's split.json "
                 "lists are not where it says (moved?)")
    return (f"{older}, {where}: any of them among these photos are scored as new ones (keep the bundle "
            "in its run folder beside its data, or train it again)")


PREVIOUS_RUN = ".previous-run"  # --force: the run replaced, kept until the new one has a checkpoint


def clear_run(run: RunFolder, *, set_aside: bool = False) -> list[Path]:
    """--force: remove what sportsdet wrote in a run folder, nothing else; returns what is left.
    `set_aside`: move it into RUN/.previous-run instead (`restore_previous_run` puts it back,
    `drop_previous_run` deletes it), so that a new run stopped before its first checkpoint does
    not cost the finished one it was to replace.

    Folders (checkpoints/, model/, eval/) go only when nothing of the user's is left in them.
    """
    aside = run.path / PREVIOUS_RUN
    if set_aside and aside.is_dir():  # a --force before this one stopped without settling it
        if RunFolder(run.path).last_checkpoint.is_file():
            shutil.rmtree(aside, ignore_errors=True)  # what is here now is a run: the older one goes
        else:
            set_aside = False  # here are only a stopped run's first files: the run aside stays

    def remove(entry: Path) -> None:
        if set_aside:
            target = aside / entry.relative_to(run.path)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(entry, target)
        elif entry.is_file() or entry.is_symlink():
            entry.unlink()
        else:
            shutil.rmtree(entry)

    for name in RUN_FILES:
        if (run.path / name).is_file():
            remove(run.path / name)
    kept: list[Path] = []
    for folder, names in RUN_DIRS.items():
        path = run.path / folder
        if not path.is_dir():
            continue
        for entry in path.iterdir():
            ours = entry.name in names or (entry.name.startswith(".") and ".tmp" in entry.name)
            if ours:
                remove(entry)
            else:
                kept.append(entry)
        if not any(path.iterdir()):
            path.rmdir()
    return kept


def restore_previous_run(run: RunFolder) -> bool:
    """Put back the run `clear_run(set_aside=True)` moved aside, removing the new run's first files;
    False when there is none."""
    aside = run.path / PREVIOUS_RUN
    if not aside.is_dir():
        return False
    clear_run(run)
    for entry in sorted(aside.rglob("*")):
        if entry.is_file() or entry.is_symlink():
            target = run.path / entry.relative_to(aside)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(entry, target)
    shutil.rmtree(aside, ignore_errors=True)
    return True


def drop_previous_run(run: RunFolder) -> None:
    """The new run has a checkpoint of its own: the run it replaced goes for good."""
    shutil.rmtree(run.path / PREVIOUS_RUN, ignore_errors=True)


@contextmanager
def lock_run(run: RunFolder) -> Iterator[None]:
    """Hold the run folder for this process: a second `sportsdet train` into it is refused.

    An flock on RUN/.sportsdet.lock (`files.hold_folder`): released when the process ends,
    however it ends, so a killed run never leaves a stale lock. Re-entrant within one process.
    """
    with hold_folder(
        run.path,
        cannot="cannot use this run folder",
        fix="get write access to it, or write the results elsewhere with --out (export, evaluate)",
        # Said to train --resume, evaluate and export too, where another --out means nothing.
        busy="is writing this run; wait for it to finish (a new run may also go to another --out)",
    ):
        yield


@contextmanager
def holding_run_of(out: str | Path) -> Iterator[RunFolder | None]:
    """Hold the run folder that `out` is a results folder of (RUN/eval, RUN/eval-int8) while the
    block writes into it (`lock_run`), as training does; the run, or None (nothing held) when `out`
    is in no run. Without it, `train --force` moved an evaluation's files aside as it wrote them,
    and a run it replaced was given the old model's evaluation."""
    run = RunFolder(Path(out).absolute().parent)
    if not run.written_by_sportsdet():  # a project folder with a config.json of its own is no run
        yield None
        return
    with lock_run(run):
        yield run
