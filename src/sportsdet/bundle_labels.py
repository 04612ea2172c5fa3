"""Naming a bundle's classes for the people who read them, after training.

A dataset's folder names become a model's labels, and some read badly in a prediction: sports100's
`football` is American football (beside websports' `soccer`), and it spells `canoe slamon`. Renaming
a label changes no weight (the labels name the output rows in order); the old name is kept as an
alias in bundle.json, so `sportsdet evaluate` still reads a class folder named the old way.
"""

from __future__ import annotations

import json
from pathlib import Path

from sportsdet.bundle import ALIASES_KEY, load_bundle, set_manifest_entries
from sportsdet.errors import SportsdetError
from sportsdet.runtime import META_LABELS


def rename_labels(bundle_path: str | Path, renames: dict[str, str]) -> list[Path]:
    """Give labels new names ({old: new}) in bundle.json and in every ONNX file of the bundle; each
    old name becomes an alias of its new one. Returns the files written."""
    from sportsdet.export import set_metadata

    bundle = load_bundle(bundle_path, verify_weights=False)
    unknown = sorted(set(renames) - set(bundle.labels))
    if unknown:
        raise SportsdetError(f"{bundle.path}: no label named {', '.join(map(repr, unknown))} to rename")
    labels = [renames.get(label, label) for label in bundle.labels]
    taken = sorted({label for label in labels if labels.count(label) > 1})
    if taken:
        raise SportsdetError(f"{bundle.path}: renaming would give two classes the name {', '.join(taken)}")
    aliases = {old: renames.get(label, label) for old, label in bundle.label_aliases.items()}
    aliases.update({old: new for old, new in renames.items() if old != new})
    aliases = {old: label for old, label in sorted(aliases.items()) if old not in labels}
    # The ONNX files first: a bundle.json whose labels disagree with its model.onnx is refused as
    # stale, so a failure half-way leaves the old names in bundle.json for a rerun to finish.
    written = [set_metadata(path, {META_LABELS: json.dumps(labels, ensure_ascii=False)})
               for path in bundle.onnx_files()]  # fmt: skip
    written.append(set_manifest_entries(bundle.path, {"labels": labels, ALIASES_KEY: aliases or None}))
    return written
