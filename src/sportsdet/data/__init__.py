"""The data layer: find labelled images, check them, split them. Torch-free.

Stable entry points (used by `sportsdet train` and `sportsdet evaluate`):

- `scan_dataset(root) -> ScanResult`: every image of a folder-per-class or split tree,
  with class names, ignored files and warnings; nothing is decoded.
- `make_split(scan_or_root, strategy="official", seed=0, classes=None) -> SplitManifest`:
  train/valid/test assignment; `manifest.items("train")` gives (absolute path, label index),
  `manifest.save(path)` / `SplitManifest.load(path)` read and write `split.json`.
- `parse_split_strategy(text)`: validate a `--split` value early.
- `check_dataset(scan_or_root, workers=None) -> CheckReport`: decode every file, find problems
  and duplicates; `quarantine_files(report, dir)` moves bad files out of the tree.
"""

from sportsdet.data.check import CheckReport, DuplicateGroup, FileResult, check_dataset, quarantine_files
from sportsdet.data.discover import ImageRecord, ScanResult, scan_dataset
from sportsdet.data.splits import SplitManifest, SplitStrategy, make_split, parse_split_strategy

__all__ = [
    "CheckReport",
    "DuplicateGroup",
    "FileResult",
    "ImageRecord",
    "ScanResult",
    "SplitManifest",
    "SplitStrategy",
    "check_dataset",
    "make_split",
    "parse_split_strategy",
    "quarantine_files",
    "scan_dataset",
]
