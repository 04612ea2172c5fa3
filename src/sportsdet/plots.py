"""Every plot sportsdet draws, with matplotlib's Agg renderer (training curves, reliability,
confusion matrix, the notebook's 3x3 galleries): to PNG bytes or a PNG file.

`matplotlib.figure.Figure` is used without pyplot: no global state, no GUI backend, safe to
call from a training callback, `evaluate` or the report in any process.
"""

from __future__ import annotations

import functools
import io
import math
import textwrap
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import numpy as np

# One palette for train/validation everywhere (matplotlib's default cycle, fixed here).
TRAIN_COLOR = "#1f77b4"
VAL_COLOR = "#d62728"
P = ParamSpec("P")
R = TypeVar("R")
RUN_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _words_as_written(draw: Callable[P, R]) -> Callable[P, R]:
    """Draw with every text taken literally: a class or run name holding two '$' (a$^$b) is not
    matplotlib math, which failed to parse and stopped train and evaluate with a traceback. A name
    in a script the font lacks (CJK) is drawn as boxes without a dozen "Glyph ... missing" warnings
    in the middle of the command's output."""

    @functools.wraps(draw)
    def drawn(*args: P.args, **kwargs: P.kwargs) -> R:
        import matplotlib

        with matplotlib.rc_context({"text.parse_math": False}), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from", category=UserWarning)
            return draw(*args, **kwargs)

    return drawn


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


@_words_as_written
def curves_png(history: list[dict[str, Any]], best_epoch: int | None = None) -> bytes:
    """Loss, accuracy (train and validation) and the learning rate per epoch, side by side;
    `best_epoch` (the one the model was kept from) starred, else the highest validation accuracy."""
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
        # The kept epoch, whose tie with another was broken by the lower loss: argmax of the
        # accuracy alone starred the earlier one while the report and bundle named the later.
        kept = np.flatnonzero(xs == best_epoch) if best_epoch is not None else []
        best = int(kept[0]) if len(kept) else int(np.argmax(acc))
        axes[1].plot(
            [xs[best]],
            [acc[best]],
            "*",
            color=VAL_COLOR,
            markersize=11,
            label=f"best validation {acc[best]:.3f} (epoch {xs[best]:g})",
        )
        axes[1].legend(fontsize=8, loc="lower right")  # below a rising curve; "best" sat on the line
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


@_words_as_written
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
    top.set_ylim(0, 1.04)  # a bin right at 1.0 drew half a dot
    top.set_ylabel("accuracy")
    title = "reliability" + (f" (ECE {ece * 100:.1f}%)" if ece is not None and math.isfinite(ece) else "")
    top.set_title(title)
    top.legend(fontsize=7, loc="upper left")
    bottom.bar(lows, counts, width=width, align="edge", color="#999999", edgecolor="white")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence of the predicted class")
    bottom.set_ylabel("images")
    return _png(fig)


@_words_as_written
def risk_coverage_png(abstain: dict[str, Any]) -> bytes:
    """Accuracy of the answered photos against the share answered (metrics.json "abstain"),
    with the bundle's threshold marked when it has one."""
    from matplotlib.figure import Figure

    curve = abstain.get("risk_coverage") or []
    fig = Figure(figsize=(5.2, 4.0))
    ax = fig.subplots()
    if curve:
        ax.plot(
            [p["coverage"] for p in curve], [p["accuracy"] for p in curve], "-", color="#4c78a8",
            label=f"answer the most sure first ({abstain.get('method')})",
        )  # fmt: skip
    if abstain.get("coverage") is not None and abstain.get("accuracy_answered") is not None:
        ax.plot(
            [abstain["coverage"]], [abstain["accuracy_answered"]], "o", color="#f58518",
            label=f"the model's threshold ({abstain['coverage']:.1%} answered)",
        )  # fmt: skip
    ax.set_xlim(0, 1.01)
    low = min([p["accuracy"] for p in curve] + [1.0])
    ax.set_ylim(max(0.0, low - 0.05), 1.005)
    ax.set_xlabel("coverage: share of photos answered")
    ax.set_ylabel("accuracy of the answered photos")
    ax.set_title("risk-coverage")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    return _png(fig)


@_words_as_written
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


GALLERY_SIZE = 9  # the notebook's 3x3 grids


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width=width, break_long_words=True)) or text


def _tick_label(label: str, limit: int = 40) -> str:
    """A class name short enough for an axis: one of 200 characters took the whole figure (the
    matrix shrank to nothing and every other name was clipped)."""
    return label if len(label) <= limit else label[: limit - 1] + "…"


@_words_as_written
def plot_confusion_matrix(cm: np.ndarray, labels: Sequence[str], path: Path, title: str = "") -> None:
    """Row-normalised confusion matrix; the figure grows with the class count, fonts shrink,
    and per-cell numbers are drawn only while they fit (up to 20 classes). When some classes have
    no images, only the rows that do are drawn (metrics.confusion_layout)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from sportsdet.metrics import confusion_layout

    cm = np.asarray(cm)
    row_labels = col_labels = list(labels)
    layout = confusion_layout(cm)
    if layout is not None:
        keep_rows, keep_cols = layout
        cm = cm[np.ix_(keep_rows, keep_cols)]
        row_labels, col_labels = [labels[i] for i in keep_rows], [labels[j] for j in keep_cols]
    n_rows, n_cols = cm.shape
    n = max(n_rows, n_cols)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    width = float(np.clip(0.22 * n_cols + 3.5, 5.0, 26.0))
    height = float(np.clip(0.22 * n_rows + 3.5, 3.0, 26.0))
    tick_font = float(np.clip(150.0 / max(n, 1), 5.0, 10.0))
    fig = Figure(figsize=(width + 1.2, height))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks(range(n_cols))
    ax.set_yticks(range(n_rows))
    ax.set_xticklabels([_tick_label(c) for c in col_labels], rotation=90, fontsize=tick_font)
    ax.set_yticklabels([_tick_label(r) for r in row_labels], fontsize=tick_font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix (each row sums to 1)", fontsize=11)
    if n <= 20:
        cell_font = float(np.clip(120.0 / max(n, 1), 6.0, 11.0))
        for t in range(n_rows):
            for p in range(n_cols):
                if cm[t, p]:
                    colour = "white" if norm[t, p] > 0.5 else "black"
                    ax.text(
                        p, t, f"{norm[t, p]:.2f}", ha="center", va="center", fontsize=cell_font, color=colour
                    )
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


@_words_as_written
def plot_gallery(
    tiles: Sequence[tuple[Path, str, str, float]], path: Path, title: str, empty_message: str
) -> None:
    """A 3x3 grid of (image path, predicted, true, confidence) tiles, as in the notebook."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from sportsdet.errors import SportsdetError
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


def _label_font() -> Any:
    """DejaVu Sans (shipped with matplotlib) when there: Pillow's default font draws every letter
    outside ASCII as a box, so "pétanque" and "pitanque" read alike. CJK still needs a system font."""
    from PIL import ImageFont

    try:
        import matplotlib

        return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans.ttf"), 11)
    except (ImportError, OSError):
        return ImageFont.load_default()


@_words_as_written
def contact_sheet_png(
    rows: Sequence[tuple[str, dict[str, Sequence[Path]]]],
    sources: Sequence[str],
    *,
    thumb: int = 72,
    title: str = "",
) -> bytes:
    """The notebook's "a sample of each sport", per source: one row per class, each source's photos
    side by side, so a source whose photos look unlike another's (framing, size, watermarks) shows.

    rows: (class name, {source: [photo paths]}); a source without that class leaves its cells blank.
    Drawn with Pillow (hundreds of thumbnails; matplotlib would take minutes).
    """
    from PIL import Image, ImageDraw, ImageOps

    from sportsdet.errors import SportsdetError
    from sportsdet.imageio import load_image

    per_source = max((len(paths) for _, found in rows for paths in found.values()), default=1) or 1
    label_w, pad, head = 170, 4, 40
    block = per_source * (thumb + pad) + 2 * pad
    width = label_w + block * len(sources)
    height = head + len(rows) * (thumb + pad) + pad
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    font = _label_font()
    draw.text((pad, 4), title or "sample photos per class and source", fill="black", font=font)
    for s, name in enumerate(sources):
        x = label_w + s * block
        draw.text((x + pad, 22), name[:40], fill="black", font=font)
        draw.line([(x, head - 4), (x, height)], fill="#bbbbbb")
    for r, (label, found) in enumerate(rows):
        y = head + r * (thumb + pad)
        draw.text((pad, y + thumb // 2 - 6), label[:26], fill="black", font=font)
        for s, name in enumerate(sources):
            for i, path in enumerate(found.get(name, [])[:per_source]):
                x = label_w + s * block + pad + i * (thumb + pad)
                try:
                    picture = ImageOps.fit(load_image(path, min_size=thumb), (thumb, thumb))
                except SportsdetError:
                    draw.rectangle([x, y, x + thumb, y + thumb], outline="red")
                    continue
                sheet.paste(picture, (x, y))
    buffer = io.BytesIO()
    sheet.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
