"""Builders for the report tests: a run folder and an evaluation folder written by hand in tmp_path.

They follow the file contracts in docs/ARCHITECTURE.md, and metrics.json is made by
`sportsdet.metrics.compute_metrics` exactly as `sportsdet evaluate` does, so the report tests
check the report against the same code. (No tests in this module; test_report*.py import it.)
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from sportsdet.bundle import save_bundle
from sportsdet.metrics import compute_metrics
from sportsdet.preprocess import Preprocessing

# Real-looking names: spaces, and one with HTML characters to prove escaping.
EIGHT = ["air hockey", "ampute football", "archery", "arm wrestling", "axe throwing",
         "balance beam", "barell racing", "<b>bmx & co</b>"]


def class_names(n: int) -> list[str]:
    return EIGHT[:n] if n <= len(EIGHT) else sorted(f"sport {i:03d} with spaces" for i in range(n))


@dataclass
class FakeRun:
    run: Path
    eval: Path
    data: Path
    labels: list[str]
    y_true: np.ndarray
    probs: np.ndarray
    paths: list[str]


def make_run(
    root: Path,
    *,
    n_classes: int = 8,
    per_class: int = 4,
    seed: int = 0,
    skill: float = 1.6,
    epochs: int = 6,
    with_eval: bool = True,
    with_images: bool = True,
    absolute_paths: bool = False,
) -> FakeRun:
    """A run folder with a finished training history, a bundle, and (optionally) an evaluation."""
    rng = np.random.default_rng(seed)
    labels = class_names(n_classes)
    run, data = root / "run", root / "data"
    run.mkdir(parents=True)
    # --- the test images: a few small flat-colour JPEGs per class (colour varies by class)
    paths, y_true = [], []
    for index, label in enumerate(labels):
        for k in range(per_class):
            rel = f"test/{label.replace('/', '_')}/{k:03d}.jpg"
            if with_images:
                (data / rel).parent.mkdir(parents=True, exist_ok=True)
                colour = tuple(int(c) for c in rng.integers(0, 255, size=3))
                Image.new("RGB", (48 + 8 * k, 40), colour).save(data / rel, quality=70)
            paths.append(str(data / rel) if absolute_paths else rel)
            y_true.append(index)
    y = np.asarray(y_true)
    # --- probabilities: logits leaning towards the true class, so some right and some wrong
    logits = rng.normal(size=(len(y), n_classes))
    logits[np.arange(len(y)), y] += skill
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    probs = probs.astype(np.float32)
    # --- run folder
    counts = {
        "train": {label: 20 + i for i, label in enumerate(labels)},
        "valid": dict.fromkeys(labels, 2),
        "test": dict.fromkeys(labels, per_class),
    }
    split = {"format": "sportsdet-split/1", "root": str(data), "strategy": "official", "seed": 0,
             "classes": labels, "splits": {"train": [], "valid": [], "test": []}, "counts": counts}
    (run / "split.json").write_text(json.dumps(split), encoding="utf-8")
    (run / "config.json").write_text(json.dumps({"model": "seed-cnn", "recipe": "scratch", "epochs": epochs,
                                                 "batch_size": 32, "lr": 0.001, "seed": 0}), encoding="utf-8")
    summary = {"root": str(data), "layout": "split", "num_classes": n_classes, "classes": labels,
               "warnings": ["strong class imbalance: 'x' has 191 images, 'y' has 59 (3.2x)"],
               "ignored": {"hidden": 2}}
    (run / "data_summary.json").write_text(json.dumps(summary), encoding="utf-8")
    with open(run / "metrics.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "stage", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds"])
        for epoch in range(1, epochs + 1):
            stage = "head" if epoch <= epochs // 2 else "finetune"
            rate = 0.09 + 0.01 * (seed % 3)  # runs with other seeds learn at other speeds
            writer.writerow([epoch, stage, 1e-3 * 0.7 ** epoch, 2.0 / epoch, 0.3 + 0.1 * epoch,
                             2.2 / epoch + 0.1, min(0.99, 0.25 + rate * epoch), 12.5])
    save_bundle(run / "model", state_dict={"classifier.weight": np.zeros((n_classes, 4), np.float32)},
                model_name="seed-cnn", model_config={}, labels=labels,
                preprocessing=Preprocessing(input_size=150, resize="squash"), output_key="classifier.weight",
                training={"recipe": "scratch", "seconds": 75.0})
    ev = run / "eval"
    if with_eval:
        write_eval(ev, labels, y, probs, paths, bundle=run / "model", data=data)
    return FakeRun(run, ev, data, labels, y, probs, paths)


def write_eval(ev: Path, labels: list[str], y: np.ndarray, probs: np.ndarray, paths: list[str],
               *, bundle: Path | None = None, data: Path | None = None) -> dict:
    """metrics.json (from compute_metrics), predictions.csv and probs.npy, as evaluate writes them."""
    ev.mkdir(parents=True, exist_ok=True)
    metrics = compute_metrics(y, probs, labels)
    metrics.update({"split": "test", "bundle": str(bundle) if bundle else None,
                    "data": str(data) if data else None})
    (ev / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    pred = probs.argmax(axis=1)
    with open(ev / "predictions.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "true_label", "pred_label", "confidence", "true_prob"])
        for i, path in enumerate(paths):
            writer.writerow([path, labels[y[i]], labels[pred[i]], f"{probs[i, pred[i]]:.6f}",
                             f"{probs[i, y[i]]:.6f}"])
    np.save(ev / "probs.npy", probs, allow_pickle=False)
    return metrics
