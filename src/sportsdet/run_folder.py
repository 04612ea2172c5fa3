"""The run folder `sportsdet train --out RUN` writes; finding a run, bundle or split from user input.

    RUN/config.json        the resolved training options, model, data, seed, versions
    RUN/data_summary.json  the scan of the training data
    RUN/split.json         the split manifest (reused by evaluate, export and --resume)
    RUN/metrics.csv        one row per epoch (METRICS_COLUMNS)
    RUN/curves.png         loss, accuracy and learning rate per epoch
    RUN/checkpoints/       last.* and best.* (sportsdet.training.checkpoint)
    RUN/model/             the bundle (sportsdet.bundle)
    RUN/eval/              the test split's evaluation (sportsdet.evaluate)
    RUN/report.html        the whole run on one page (sportsdet.report)

Every other module asks this one where these live; none spells the names itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sportsdet.bundle import MANIFEST_NAME

METRICS_COLUMNS = ("epoch", "stage", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds")
CONFIG = "config.json"
DATA_SUMMARY = "data_summary.json"
SPLIT = "split.json"
METRICS = "metrics.csv"
CURVES = "curves.png"
CHECKPOINTS = "checkpoints"
MODEL = "model"
EVAL = "eval"
REPORT = "report.html"
# What sportsdet writes in a run folder; `--force` removes only these (anything else a user put
# there stays).
RUN_FILES = (CONFIG, DATA_SUMMARY, SPLIT, METRICS, CURVES, REPORT)
RUN_DIRS = (CHECKPOINTS, MODEL, EVAL)


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
        return self.checkpoints / "last.safetensors"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / "best.safetensors"

    @property
    def model(self) -> Path:
        return self.path / MODEL

    @property
    def eval(self) -> Path:
        return self.path / EVAL

    @property
    def report(self) -> Path:
        return self.path / REPORT

    def has_content(self) -> bool:
        return self.path.is_dir() and any(self.path.iterdir())

    def looks_like_run(self) -> bool:
        """Holds anything `sportsdet train` writes (a half-finished run counts)."""
        return any((self.path / name).exists() for name in (CONFIG, METRICS, SPLIT, MODEL))


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
    """A bundle folder as given, or RUN/model when `path` is a training run folder."""
    path = Path(path).expanduser()
    if not (path / MANIFEST_NAME).is_file() and (path / MODEL / MANIFEST_NAME).is_file():
        return path / MODEL
    return path  # load_bundle explains what is wrong with anything else


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
