"""The confusion matrix as inline SVG: crisp at any zoom, and every cell names itself on hover.

At 100 classes a picture of 10,000 cells is only useful if a person can tell which row and
column a square belongs to; SVG gives each non-empty cell a tooltip ("true X / predicted Y:
3 images, 60% of X") and keeps the class names as real text (searchable with Ctrl-F).
Counts are drawn exactly as metrics.json holds them; rows are normalised only for the colour.
"""

from __future__ import annotations

from html import escape

import numpy as np

# Matplotlib's "Blues" at 9 stops (sequential, readable in greyscale print too).
_BLUES = ["#f7fbff", "#deebf7", "#c6dbef", "#9ecae1", "#6baed6", "#4292c6", "#2171b5", "#08519c", "#08306b"]
_RGB = np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in _BLUES], dtype=float)


def colour(share: float) -> str:
    """0..1 -> a Blues colour, linearly between the stops."""
    x = float(np.clip(share, 0.0, 1.0)) * (len(_BLUES) - 1)
    low = int(np.floor(x))
    high = min(low + 1, len(_BLUES) - 1)
    rgb = _RGB[low] + (_RGB[high] - _RGB[low]) * (x - low)
    return "#{:02x}{:02x}{:02x}".format(*(int(round(v)) for v in rgb))


def ink_on(fill: str) -> str:
    """Black or white, whichever reads better on `fill` (WCAG contrast: white only on fills darker
    than relative luminance 0.179; at "share > 0.5" a mid blue got white text at 3:1)."""
    channels = [int(fill[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return "#ffffff" if luminance < 0.179 else "#000000"


def confusion_svg(
    matrix: list[list[int]], labels: list[str], columns: list[str] | None = None, readout_id: str = ""
) -> str:
    """Row-normalised heatmap with class names on the left and on top; hover a cell for its numbers.

    `columns`: the predicted classes, when they differ from the true classes of the rows (an
    evaluation holding photos of only a few of the model's classes); default `labels`.
    `readout_id`: the element the report's script writes a hovered or tapped cell's numbers into.
    """
    columns = labels if columns is None else columns
    counts = np.asarray(matrix, dtype=np.int64).reshape(len(labels), len(columns))
    n_rows, n_cols = len(labels), len(columns)
    n = max(n_rows, n_cols)
    totals = counts.sum(axis=1)
    cell = int(np.clip(560 // max(n, 1), 14, 44))  # 14 px per class at 100 classes, bigger when few
    font = min(12.0, cell * 0.78)

    def margin(names: list[str]) -> int:  # room for the longest name (about 0.58 em a character)
        return int(max(len(name) for name in names) * font * 0.58) + 14 if names else 20

    left, top = margin(labels) + 18, margin(columns) + 18
    wide, tall = n_cols * cell, n_rows * cell
    width, height = left + wide + 8, top + tall + 8
    parts = [
        f'<svg class="confusion" data-readout="{escape(readout_id)}" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="{font:.1f}" role="img" '
        'aria-label="confusion matrix">',
        f'<rect x="{left}" y="{top}" width="{wide}" height="{tall}" fill="{_BLUES[0]}"/>',
    ]

    def grid(every: int, faint: bool) -> str:
        lines = [f"M{left + k * cell} {top}v{tall}" for k in range(n_cols + 1) if (k % every != 0) == faint]
        lines += [f"M{left} {top + k * cell}h{wide}" for k in range(n_rows + 1) if (k % every != 0) == faint]
        return "".join(lines)

    # Grid: a faint line between classes, a darker one every 5 (helps counting across 100).
    if n > 15:
        parts.append(f'<path d="{grid(5, True)}" stroke="#e6e6e6" stroke-width="0.5"/>')
    parts.append(f'<path d="{grid(5, False)}" stroke="#c8c8c8" stroke-width="0.7"/>')
    column_of = {name: j for j, name in enumerate(columns)}
    for i, true in enumerate(labels):
        y = top + i * cell
        parts.append(
            f'<text class="row" data-row="{i}" x="{left - 5}" y="{y + cell / 2:.1f}" text-anchor="end" '
            'dominant-baseline="central">'
            f"{escape(true)}</text>"
        )
        for j in np.flatnonzero(counts[i]):
            share = counts[i, j] / totals[i]
            name = "right" if columns[j] == true else "wrong"
            tip = (
                f"true: {true}\npredicted: {columns[j]}\n{counts[i, j]} of {totals[i]} images "
                f"({100 * share:.0f}%)"
            )
            parts.append(
                f'<rect class="cell {name}" x="{left + j * cell}" y="{y}" width="{cell}" height="{cell}" '
                f'fill="{colour(share)}" data-count="{counts[i, j]}" data-row="{i}" data-col="{j}">'
                f"<title>{escape(tip)}</title></rect>"
            )
            if n <= 15:
                ink = ink_on(colour(share))
                parts.append(
                    f'<text x="{left + (j + 0.5) * cell:.1f}" y="{y + cell / 2:.1f}" text-anchor="middle" '
                    f'dominant-baseline="central" fill="{ink}" pointer-events="none">{counts[i, j]}</text>'
                )
        own = column_of.get(true)
        if totals[i] and own is not None and counts[i, own] == 0:  # never recognised: outline its cell
            parts.append(
                f'<rect x="{left + own * cell + 1}" y="{y + 1}" width="{cell - 2}" height="{cell - 2}" '
                f'fill="none" stroke="#c62828" stroke-width="1.2"><title>{escape(true)}: none of its '
                f"{totals[i]} images recognised</title></rect>"
            )
    for j, predicted in enumerate(columns):
        x = left + (j + 0.5) * cell
        parts.append(
            f'<text class="col" data-col="{j}" x="{x:.1f}" y="{top - 5}" '
            f'transform="rotate(-90 {x:.1f} {top - 5})" dominant-baseline="central">'
            f"{escape(predicted)}</text>"
        )
    parts.append(f'<text x="{left}" y="12" font-size="12" fill="#555">predicted class →</text>')
    parts.append(
        f'<text x="12" y="{top}" font-size="12" fill="#555" transform="rotate(90 12 {top})">'
        "true class →</text>"
    )
    parts.append("</svg>")
    return "".join(parts)


def legend_html() -> str:
    """The colour scale, as a small CSS gradient (no picture needed)."""
    stops = ", ".join(_BLUES)
    return (
        '<div class="scale"><span>0%</span><span class="bar-scale" '
        f'style="background: linear-gradient(to right, {stops})"></span>'
        "<span>100% of the true class's images</span></div>"
    )
