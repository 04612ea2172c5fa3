"""The report's plots, drawn with matplotlib's Agg renderer straight to PNG bytes.

`matplotlib.figure.Figure` is used without pyplot: no global state, no GUI backend, safe to
call from the end of `train` or `evaluate` in any process.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np

# One palette for train/validation everywhere (matplotlib's default cycle, fixed here).
TRAIN_COLOR = "#1f77b4"
VAL_COLOR = "#d62728"
RUN_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _png(fig: Any, dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def _series(history: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, values) for the rows where `key` has a value."""
    points = [(row["epoch"], row[key]) for row in history if row.get(key) is not None]
    if not points:
        return np.array([]), np.array([])
    xs, ys = zip(*points, strict=True)
    return np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)


def _stage_changes(history: list[dict[str, Any]]) -> list[tuple[float, str]]:
    """Epochs where the recipe's stage changes (e.g. head -> finetune), to mark on the plots."""
    marks = []
    for previous, row in zip(history, history[1:], strict=False):
        if row.get("stage") != previous.get("stage"):
            marks.append((row["epoch"] - 0.5, str(row.get("stage") or "")))
    return marks


def curves_png(history: list[dict[str, Any]]) -> bytes:
    """Loss, accuracy (train and validation) and the learning rate per epoch, side by side."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(12, 3.4))
    axes = fig.subplots(1, 3, gridspec_kw={"wspace": 0.28})
    panels = (
        (axes[0], "loss", ("train_loss", "val_loss")),
        (axes[1], "accuracy", ("train_acc", "val_acc")),
    )
    for ax, title, (train_key, val_key) in panels:
        for key, color, label in ((train_key, TRAIN_COLOR, "train"), (val_key, VAL_COLOR, "validation")):
            xs, ys = _series(history, key)
            if len(xs):
                ax.plot(xs, ys, marker="o" if len(xs) <= 30 else None, markersize=3, color=color, label=label)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    xs, acc = _series(history, "val_acc")
    if len(xs):
        best = int(np.argmax(acc))
        axes[1].plot(
            [xs[best]],
            [acc[best]],
            "*",
            color=VAL_COLOR,
            markersize=11,
            label=f"best validation {acc[best]:.3f} (epoch {xs[best]:g})",
        )
        axes[1].legend(fontsize=8)
    xs, lr = _series(history, "lr")
    ax = axes[2]
    if len(xs):
        ax.plot(xs, lr, color="#555555", marker="o" if len(xs) <= 30 else None, markersize=3)
        if np.all(lr > 0) and lr.max() / lr.min() > 20:
            ax.set_yscale("log")
        else:
            # A nearly flat schedule would otherwise be drawn as a steep line around an offset.
            ax.ticklabel_format(axis="y", useOffset=False, style="sci", scilimits=(-3, 3))
            if lr.max() - lr.min() < 0.1 * abs(lr.max()):
                ax.set_ylim(0, lr.max() * 1.15)
    ax.set_title("learning rate")
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
    for each in axes:
        each.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    for epoch, stage in _stage_changes(history):
        for each in axes:
            each.axvline(epoch, color="#999999", linestyle="--", linewidth=0.8)
        axes[0].annotate(
            stage,
            (epoch, 1),
            xycoords=("data", "axes fraction"),
            fontsize=7,
            rotation=90,
            va="top",
            ha="right",
            color="#666666",
        )
    return _png(fig)


def reliability_png(bins: list[dict[str, float]], ece: float | None) -> bytes:
    """Reliability diagram: accuracy against mean confidence per bin, with the bin counts below.

    `bins` are metrics.json's "reliability" entries: lower, upper, count, mean_confidence, accuracy.
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.2, 5.2))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1], "hspace": 0.12})
    used = [b for b in bins if b.get("count")]
    lows = np.array([b["lower"] for b in bins], dtype=float)
    highs = np.array([b["upper"] for b in bins], dtype=float)
    counts = np.array([b.get("count", 0) for b in bins], dtype=float)
    width = highs - lows
    accuracy = np.array([b["accuracy"] if b.get("count") else 0.0 for b in bins], dtype=float)
    top.bar(lows, accuracy, width=width, align="edge", color="#4c78a8", edgecolor="white", label="accuracy")
    if used:
        conf = np.array([b["mean_confidence"] for b in used], dtype=float)
        acc = np.array([b["accuracy"] for b in used], dtype=float)
        top.plot(conf, acc, "o", color="#f58518", markersize=4, label="bin mean confidence")
    top.plot([0, 1], [0, 1], "--", color="#777777", linewidth=1, label="perfect calibration")
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    title = "reliability" + (f" (ECE {ece * 100:.1f}%)" if ece is not None and math.isfinite(ece) else "")
    top.set_title(title)
    top.legend(fontsize=7, loc="upper left")
    bottom.bar(lows, counts, width=width, align="edge", color="#999999", edgecolor="white")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence of the predicted class")
    bottom.set_ylabel("images")
    return _png(fig)


def compare_curves_png(histories: dict[str, list[dict[str, Any]]]) -> bytes:
    """Several runs overlaid (one colour per run): validation accuracy, validation loss, training loss."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(12, 3.6))
    axes = fig.subplots(1, 3, gridspec_kw={"wspace": 0.28})
    for index, (name, history) in enumerate(histories.items()):
        color = RUN_COLORS[index % len(RUN_COLORS)]
        for ax, key, style in (
            (axes[0], "val_acc", "-"),
            (axes[1], "val_loss", "-"),
            (axes[2], "train_loss", "-"),
        ):
            xs, ys = _series(history, key)
            if len(xs):
                ax.plot(xs, ys, style, color=color, label=name)
    for ax, title in zip(axes, ("validation accuracy", "validation loss", "training loss"), strict=True):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    # One legend under the plots: run names can be long and would cover the curves.
    handles = [
        Line2D([], [], color=RUN_COLORS[i % len(RUN_COLORS)], label=name) for i, name in enumerate(histories)
    ]
    fig.legend(
        handles=handles,
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncol=min(len(handles), 3),
        fontsize=8,
        frameon=False,
    )
    return _png(fig)
