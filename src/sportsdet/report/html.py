"""Assembling the report page: one HTML string with every picture inlined.

Every number on the page is read from metrics.json (written by `sportsdet.metrics`) or from
the run's own files; this module only formats them. Text from files (class names, paths) is
always escaped.
"""

from __future__ import annotations

import base64
import datetime as _dt
import math
import shlex
from collections.abc import Callable, Iterable
from html import escape, unescape
from pathlib import Path
from typing import Any

from sportsdet import plots as figures
from sportsdet._version import __version__
from sportsdet.abstain import DEFAULT_SCORE, score_name
from sportsdet.metrics import confusion_layout, photos_scored, rename_hint, times_predicted
from sportsdet.report.assets import CSS, JS
from sportsdet.report.confusion import confusion_svg, legend_html
from sportsdet.report.gallery import Tile, highest_loss, spread_sample, thumbnail_uri
from sportsdet.report.inputs import Prediction, ReportInputs
from sportsdet.run_folder import RunFolder
from sportsdet.seen_photos import SPLIT_WORDS, seen_summary

GALLERY_LIMIT = 24  # tiles per gallery; about 5 KB each as 128 px JPEG
SPLIT_ORDER = ("train", "valid", "val", "test", "all")
_LISTED = 20  # near copies named in the "left out" row; metrics.json lists every photo left out


# ---------------------------------------------------------------- formatting helpers

def pct(value: float | None, digits: int = 1) -> str:
    """0.5174 -> '51.7%'; None -> an en dash."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{100.0 * value:.{digits}f}%"


def num(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def count(value: Any) -> str:
    """A count read from a file, for the page: escaped like text, since a hand-edited (or received)
    metrics.json, config.json or data_summary.json may hold markup where a number goes."""
    return "–" if value is None else escape(str(value))


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = float(seconds)
    if seconds < 90:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def accuracy_sentence(metrics: dict[str, Any]) -> str:
    """'51.7% (95% CI 46.2–57.2%, n=315)': the headline number with its uncertainty."""
    text = pct(metrics.get("accuracy"))
    ci, n = metrics.get("accuracy_ci95"), metrics.get("n")
    parts = []
    if isinstance(ci, list) and len(ci) == 2:
        parts.append(f"95% CI {100 * ci[0]:.1f}–{100 * ci[1]:.1f}%")
    if n is not None:
        parts.append(f"n={n}")
    return f"{text} ({', '.join(parts)})" if parts else text


def data_uri(png: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(png).decode("ascii")


def img(uri: str, alt: str, cls: str = "fig") -> str:
    picture = f'<img class="{cls}" src="{uri}" alt="{escape(alt)}">'
    # A figure shrunk to a phone's width had 3-pixel tick labels: a tap shows it full size.
    return f'<div class="zoomable">{picture}</div>' if cls == "fig" else picture


def _figure(draw: Callable[[], bytes], alt: str, fallback: bytes | None = None) -> str:
    """A drawn figure; without matplotlib (the light install) `fallback` (a PNG drawn before) or a
    line saying what to install, and the tables and numbers beside it stay."""
    try:
        return img(data_uri(draw()), alt)
    except ModuleNotFoundError as exc:
        if fallback is not None:
            return img(data_uri(fallback), alt)
        module = str(exc.name).split(".")[0]
        return missing(f"{escape(alt)}: not drawn (needs {escape(module)}: pip install 'sportsdet[train]')")


def kv_table(rows: Iterable[tuple[str, Any]]) -> str:
    body = "".join(
        f"<tr><th>{escape(str(k))}</th><td>{v if isinstance(v, Markup) else escape(_plain(v))}</td></tr>"
        for k, v in rows
        if v is not None and v != ""
    )
    return f'<table class="kv">{body}</table>'


class Markup(str):
    """A string that is already HTML (not escaped again by kv_table)."""


def _plain(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_plain(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_plain(v)}" for k, v in value.items())
    return str(value)


def missing(text: str) -> str:
    return f'<div class="missing">{text}</div>'


def _safe(render: Callable[[], str], title: str, notes: list[str]) -> str:
    """Run one section; a drawing failure costs that section, not the whole report."""
    try:
        return render()
    except Exception as exc:  # noqa: BLE001 - matplotlib/Pillow may fail in many ways
        notes.append(f"the {title} section could not be drawn ({type(exc).__name__}: {exc})")
        return missing(f"{escape(title)}: could not be drawn (see the notes at the top).")


# ---------------------------------------------------------------- the single-run page

def render_report(inputs: ReportInputs, *, gallery_limit: int = GALLERY_LIMIT) -> str:
    """The whole self-contained page for one run (and/or its evaluation)."""
    notes = list(inputs.notes)
    thumbs: dict[str, str | None] = {}
    sections = [
        ("results", "Results", _safe(lambda: _results(inputs), "results", notes)),
        ("data", "Data", _safe(lambda: _data(inputs), "data", notes)),
        ("model", "Model and training", _safe(lambda: _model(inputs), "model", notes)),
        ("curves", "Training curves", _safe(lambda: _curves(inputs), "training curves", notes)),
        ("per-class", "Per class", _safe(lambda: _per_class(inputs), "per-class", notes)),
        ("confusion", "Confusion", _safe(lambda: _confusion(inputs), "confusion", notes)),
        ("galleries", "Galleries",
         _safe(lambda: _galleries(inputs, gallery_limit, thumbs), "gallery", notes)),
        ("calibration", "Calibration", _safe(lambda: _calibration(inputs), "calibration", notes)),
    ]
    # Its own section and link: it sat at the foot of Calibration, where no one looked for it.
    if ((inputs.metrics or {}).get("abstain") or {}).get("risk_coverage"):
        sections.append(("abstain", 'Saying "I don\'t know"', _safe(lambda: _abstain(inputs.metrics),
                                                                     "abstain", notes)))
    where, title = inputs.run_dir or inputs.eval_dir or inputs.source, inputs.name
    run, scored = inputs.run_dir, inputs.eval_dir
    if run is not None and scored is not None and scored.parent == run and scored != RunFolder(run).eval:
        # `sportsdet evaluate RUN DATA`'s own page: say which photos, not only which run
        where, title = scored, f"{title}, {scored.name}"
    subtitle = f"{escape(str(where))} · written {_now()} by sportsdet {__version__}"
    return _page(f"sportsdet report: {title}", subtitle, sections, notes)


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _page(title: str, subtitle: str, sections: list[tuple[str, str, str]], notes: list[str]) -> str:
    # Spaces between the links: the lines of a narrow screen break there, not inside "Per class".
    nav = " ".join(f'<a href="#{anchor}">{escape(name)}</a>' for anchor, name, _ in sections)
    note_html = "".join(f'<div class="note">{escape(n)}</div>' for n in notes)
    body = "".join(f'<section id="{a}"><h2>{escape(n)}</h2>{html}</section>' for a, n, html in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f'<header class="top"><h1>{escape(title)}</h1><div class="sub">{subtitle}</div></header>'
        f"<nav>{nav}</nav><main>{note_html}{body}"
        '<footer>One self-contained file: every picture is embedded, nothing is loaded from the '
        "network. Numbers come from metrics.json (sportsdet.metrics) and the run's metrics.csv."
        f"</footer></main><script>{JS}</script></body></html>\n"
    )


def _per_source(m: dict[str, Any]) -> str:
    """Accuracy per data source of a multi-source run: one total can hide a weak source."""
    table = m.get("per_source")
    if not isinstance(table, dict) or not table:
        return ""
    rows = []
    for name, row in table.items():
        ci = row.get("accuracy_ci95") or [None, None]
        rows.append(
            f"<tr><td>{escape(str(name))}</td><td class=\"n\">{count(row.get('n'))}</td>"
            f"<td class=\"n\">{pct(row.get('accuracy'))}</td>"
            f"<td class=\"n\">{pct(ci[0])}–{pct(ci[1])}</td>"
            f"<td class=\"n\">{pct(row.get('top5_accuracy'))}</td></tr>"
        )
    return (
        '<h3>Per source</h3><table id="per-source-table"><thead><tr><th>source</th>'
        '<th class="n">images</th><th class="n">accuracy</th><th class="n">95% CI</th>'
        f'<th class="n">top-{count(m.get("top_k", 5))}</th></tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table>'
    )


def _seen_split(m: dict[str, Any]) -> str | None:
    """What the model did with the photos an evaluation scored, when they are its own train or
    valid split (`evaluate RUN --split train`); None for photos it never learnt from."""
    if m.get("source") != "split-manifest":
        return None
    return {"train": "trained on", "valid": "chose its epoch and calibration on"}.get(str(m.get("split")))


def _other_evals(inputs: ReportInputs) -> str:
    """The same model scored on other photos (`sportsdet evaluate RUN DATA`): the test split alone
    flatters a model when its photos all come from the sources it was trained on."""
    if not inputs.other_evals:
        return ""
    rows = []
    for folder, m in inputs.other_evals:
        ci = m.get("accuracy_ci95") or [None, None]
        used = _seen_split(m)
        caveat = f" (photos it {escape(used)}: not a measure of new photos)" if used else ""
        rows.append(
            f"<tr><td><code>{escape(folder.name)}</code></td><td>{escape(_data_evaluated(m, inputs) or '–')}"
            f"{caveat}</td><td class=\"n\">{escape(str(m.get('n', '–')))}</td>"
            f"<td class=\"n\">{pct(m.get('accuracy'))}</td>"
            f"<td class=\"n\">{pct(ci[0])}–{pct(ci[1])}</td></tr>"
        )
    return (
        '<h3>Other evaluations of this model</h3><table id="other-evals-table"><thead><tr>'
        '<th>folder</th><th>data evaluated</th><th class="n">images</th><th class="n">accuracy</th>'
        f'<th class="n">95% CI</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
        '<p class="muted">Each folder holds its own report.html with its per-class table and galleries.</p>'
    )


def _unfinished(inputs: ReportInputs) -> str | None:
    """For a run folder without a model yet (training stopped or still going): how far it got and
    the command that goes on; None otherwise."""
    run = inputs.run_dir
    has_model = run is not None and RunFolder(run).model_manifest.is_file()
    if run is None or has_model or not (inputs.config or inputs.history):
        return None
    options = (inputs.config or {}).get("options")
    planned = f" of {count(options['epochs'])}" if isinstance(options, dict) and options.get("epochs") else ""
    history = inputs.history or []
    head = sum(r.get("stage") == "head" for r in history)  # --epochs counts the stages after it
    done = f"{len(history) - head} epoch(s){planned}"
    if head:
        done = f"{head} head epoch(s) and {len(history) - head} fine-tuning epoch(s){planned}"
    if not RunFolder(run).last_checkpoint.is_file():  # --resume has nothing to go on from
        return (f"This run has no model yet: its training stopped (or is still going) after {done}, "
                "before any checkpoint was kept. Start it again with <code>sportsdet train ... --out "
                f"{escape(shlex.quote(str(run)))} --force</code>.")
    return (f"This run has no model yet: its training stopped (or is still going) after {done}. "
            f"Continue it with <code>sportsdet train --out {escape(shlex.quote(str(run)))} --resume</code>; "
            "the model, "
            "its evaluation and this report are written at the end.")


def _no_eval(inputs: ReportInputs) -> str:
    unfinished = _unfinished(inputs)
    if unfinished:
        return missing(unfinished)
    # `evaluate RUN` scores the run's own test split into RUN/eval, the one this page shows (with
    # a DATA folder it wrote RUN/eval-<folder>, and this page kept saying "no evaluation yet").
    run = shlex.quote(str(inputs.run_dir)) if inputs.run_dir else "RUN"
    return missing(
        f"No evaluation yet. Run <code>sportsdet evaluate {escape(run)}</code> to score the test split, "
        f"then <code>sportsdet report {escape(shlex.quote(str(inputs.source)))}</code> again."
    )


def _results(inputs: ReportInputs) -> str:
    m = inputs.metrics
    if not m:
        return _no_eval(inputs) + _training_summary_cards(inputs) + _other_evals(inputs)
    ci = m.get("accuracy_ci95") or [None, None]
    k = m.get("top_k", 5)
    split = m.get("split")  # None when evaluate scored a plain folder tree
    where_scored = f"the {split} split" if split else "the evaluated images"
    cards = [
        ("accuracy", f"{split} accuracy" if split else "accuracy", pct(m.get("accuracy")),
         f"95% CI {pct(ci[0])}–{pct(ci[1])}" if ci[0] is not None else ""),
        ("balanced_accuracy", "balanced accuracy", pct(m.get("balanced_accuracy")),
         "mean recall over classes"),
        ("macro_f1", "macro-F1", pct(m.get("macro_f1")), "mean F1 over classes"),
        ("top5_accuracy", f"top-{k} accuracy", pct(m.get("top5_accuracy")), f"true class among the {k} best"),
        ("ece", "calibration error (ECE)", pct(m.get("ece")), "0% = confidence matches accuracy"),
    ]
    html = ['<div class="cards">']
    for key, label, value, detail in cards:
        html.append(
            f'<div class="card"><div class="k">{escape(label)}</div>'
            f'<div class="v" id="m-{key}">{escape(value)}</div><div class="d">{escape(detail)}</div></div>'
        )
    html.append("</div>")
    n = m.get("n")
    sentence = accuracy_sentence(m)
    html.append(
        f'<p class="plain">Accuracy on {escape(where_scored)}: '
        f'<b id="m-accuracy-ci">{escape(sentence)}</b>. '
    )
    used = _seen_split(m)
    if used:  # no interval "on more photos like these": the model learnt from these
        html.append(f"These are the photos the model {escape(used)}: the score says how "
                    "well it fits them, not how it does on photos it has not seen (its test split).</p>")
    elif ci[0] is not None and n:
        html.append(
            f"With {count(n)} images, the accuracy this model would reach on more photos like these is "
            f"plausibly anywhere between {pct(ci[0])} and {pct(ci[1])} (Wilson 95% interval); "
            "differences between runs smaller than that range may be noise.</p>"
        )
    else:
        html.append("</p>")
    html.append(_abstained_in_results(m))
    if isinstance(k, int) and len(inputs.labels) and len(inputs.labels) <= k:
        html.append(f'<p class="muted">With {len(inputs.labels)} classes, top-{k} accuracy is 100% by '
                    "construction.</p>")
    skipped = m.get("skipped") or []
    if isinstance(skipped, list) and skipped:
        html.append(f'<div class="note">{len(skipped)} image(s) could not be read and are not counted: '
                    + escape("; ".join(_plain(x.get("error", x) if isinstance(x, dict) else x)
                                       for x in skipped[:5]))
                    + (" ..." if len(skipped) > 5 else "") + "</div>")
    for entry in m.get("mostly_given_another") or []:  # evaluate's rename hint (metrics.mostly_given_another)
        if isinstance(entry, dict) and {"class", "photos", "given", "count"} <= set(entry):
            html.append(f'<div class="note">{escape(rename_hint(entry))}.</div>')
    html.append(_per_source(m))
    html.append(_other_evals(inputs))
    speed = m.get("images_per_second")
    where = [("evaluation folder", str(inputs.eval_dir) if inputs.eval_dir else None),
             ("model evaluated", m.get("bundle")), ("engine", m.get("backend")),
             ("data evaluated", _data_evaluated(m, inputs)),
             ("left out", _seen_left_out(m)),
             ("class folders left out", _classes_left_out(m)),
             ("seen photos scored", _seen_kept(m)),
             ("copies scored", _copies_scored(m)),
             ("evaluation speed", f"{speed:g} images/s" if isinstance(speed, (int, float)) else None)]
    html.append(kv_table(where))
    return "".join(html)


def _classes_left_out(m: dict[str, Any]) -> str | None:
    """Class folders of a sport the model does not know, left out with --known-only."""
    left = m.get("classes_left_out")
    if not isinstance(left, dict) or not left:
        return None
    listed = ", ".join(f"{name} ({count} photos)" for name, count in left.items())
    return f"{listed}: sports the model does not know (--known-only)"


def _seen_kept(m: dict[str, Any]) -> str | None:
    """Photos the model was trained or validated on, scored anyway (--keep-seen, or the saved
    split's train or valid part asked for by --split): the score flatters it."""
    kept = m.get("seen_kept")
    if not isinstance(kept, dict) or not any(isinstance(v, int) and v for v in kept.values()):
        return None
    own_split = m.get("source") == "split-manifest" and m.get("split") in ("train", "valid")
    why = f"--split {m['split']}" if own_split else "--keep-seen"
    return f"{seen_summary(kept)} ({why}): the score counts photos the model has seen"


def _copies_scored(m: dict[str, Any]) -> str | None:
    """Byte copies among the photos scored (evaluate's `copies_scored`): each counts again."""
    copies = m.get("copies_scored")
    if not isinstance(copies, int) or copies <= 0:
        return None
    return (f"{copies:,} of the photos scored are byte copies of others among them: each copy is "
            "scored, so those photos count more than once (`sportsdet data check` lists them)")


def _seen_left_out(m: dict[str, Any]) -> str | None:
    """The folder's photos the model was trained on, which evaluate did not score (seen_photos.py),
    and which of them were near copies: a resized copy is not obvious, so each is named."""
    left_out = m.get("seen_left_out")
    if not isinstance(left_out, dict) or not any(isinstance(v, int) and v for v in left_out.values()):
        return None
    near = m.get("seen_near_copies") if isinstance(m.get("seen_near_copies"), int) else 0
    text = (f"the model's own, found by content: {seen_summary(left_out, near)}; the score is on the "
            f"{m.get('n', 0):,} photos it has not seen")
    emptied = [str(name) for name in m.get("classes_all_seen") or []]
    if emptied:
        text += (f"; every photo of {len(emptied)} class(es) was one, so they are not scored: "
                 + ", ".join(emptied[:_LISTED]) + (" ..." if len(emptied) > _LISTED else ""))
    copies = [e for e in m.get("seen_photos_left_out") or [] if isinstance(e, dict) and e.get("near_copy")]
    if not copies:
        return text
    def item(entry: dict[str, Any]) -> str:
        split = SPLIT_WORDS.get(str(entry.get("split")), str(entry.get("split")))
        return f"<li>{escape(str(entry.get('path')))} (a copy of a {escape(split)} photo)</li>"

    items = "".join(item(e) for e in copies[:_LISTED])
    more = f", the first {_LISTED}" if len(copies) > _LISTED else ""
    return Markup(f"{escape(text)}<details><summary>the near copies{more}</summary><ul>{items}</ul>"
                  "</details>")


def _data_evaluated(m: dict[str, Any], inputs: ReportInputs) -> str | None:
    """The photos scored: a folder (and which of its splits), or for a run's saved split, which split
    of which source folders (the manifest's own root of a multi-source run is only their common parent)."""
    if m.get("source") != "split-manifest":
        return f"{m['data']} ({photos_scored(m)})" if m.get("data") else None
    sources = m.get("per_source") or {}
    roots = inputs.data_sources
    if sources and roots:
        folders = ", ".join(f"{name} ({roots.get(name, '?')})" for name in sources)
        return f"the {m.get('split', 'test')} split of {folders}"
    return f"the {m.get('split', 'test')} split of {m.get('data')}"


def _training_summary_cards(inputs: ReportInputs) -> str:
    best = _best_epoch(inputs.history or [], inputs.bundle)
    if best is None:
        return ""
    return (
        '<div class="cards" style="margin-top:10px"><div class="card"><div class="k">best validation accuracy'
        f'</div><div class="v">{pct(best["val_acc"])}</div><div class="d">epoch {int(best["epoch"])} '
        "(validation split, not the test)</div></div></div>"
    )


def _best_epoch(history: list[dict[str, Any]], bundle: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The epoch the model was kept from: the bundle says so; before it exists, mirror the
    trainer's rule (best validation accuracy, ties to the lower loss)."""
    recorded = ((bundle or {}).get("training") or {}).get("best_epoch")
    for row in history:
        if recorded is not None and row.get("epoch") == recorded and row.get("val_acc") is not None:
            return row
    scored = [row for row in history if row.get("val_acc") is not None]
    if not scored:
        return None
    return max(scored, key=lambda r: (r["val_acc"], -(r.get("val_loss") or 0.0)))


def _split_counts(inputs: ReportInputs) -> dict[str, int]:
    split = inputs.split or {}
    counts = split.get("counts")
    if isinstance(counts, dict) and counts:
        return {name: int(sum(per.values())) for name, per in counts.items() if isinstance(per, dict)}
    if isinstance(split.get("splits"), dict):
        return {name: len(items) for name, items in split["splits"].items()}
    summary = (inputs.data_summary or {}).get("splits")
    if isinstance(summary, dict):
        return {name: int(v.get("total", 0)) for name, v in summary.items() if isinstance(v, dict)}
    return {}


def _data(inputs: ReportInputs) -> str:
    labels = inputs.labels
    counts = _split_counts(inputs)
    split = inputs.split or {}
    html = []
    folders = [(f"source {name}", root) for name, root in inputs.data_sources.items()]
    classes: Any = len(labels) if labels else None
    per_class_scores = (inputs.metrics or {}).get("per_class")
    if not split and labels and isinstance(per_class_scores, dict):
        # An evaluation of a folder, with no split of its own: the labels are the model's (105 for
        # the built-in model), the folder's classes those with photos.
        present = [x for x in labels if (per_class_scores.get(x) or {}).get("support", 0) > 0]
        emptied = (inputs.metrics or {}).get("classes_all_seen") or []
        if present and len(present) < len(labels):
            scored = f"{len(present)} scored, {len(emptied)} more left out" if emptied else len(present)
            classes, labels = f"{scored} (the model knows {len(labels)})", present
    rows: list[tuple[str, Any]] = [
        *(folders or [("data folder", inputs.data_root)]),
        ("classes", classes),
        ("split", split.get("strategy")),
        ("split seed", split.get("seed")),
    ]
    ordered = sorted(counts, key=lambda s: SPLIT_ORDER.index(s) if s in SPLIT_ORDER else 99)
    for name in ordered:
        rows.append((f"images in {name}", f"{counts[name]:,}"))
    if not any(v is not None for _, v in rows[:2]):
        return missing("No data description found (split.json / data_summary.json are written by "
                       "<code>sportsdet train</code>).")
    html.append(kv_table(rows))
    notes = [note for note in split.get("notes") or [] if isinstance(note, str)]
    if notes:  # how the split was made beyond its strategy: a carved valid split, copies moved together
        html.append("<p>How the split was made:</p><ul>"
                    + "".join(f"<li>{escape(note)}</li>" for note in notes) + "</ul>")
    if labels:
        html.append(f"<details><summary>all {len(labels)} class names</summary><p>"
                    + ", ".join(escape(x) for x in labels) + "</p></details>")
    per_class = split.get("counts")
    if isinstance(per_class, dict) and labels:
        html.append(_per_split_table(per_class, labels))
    html.append(_sample_sheet(split))
    html.append(_findings(inputs))
    return "".join(html)


def _sample_sheet(split: dict[str, Any], per_class: int = 3) -> str:
    """The notebook's "a sample of each sport", per source, from the training split's files."""
    import random

    entries = (split.get("splits") or {}).get("train") or []
    root = split.get("root")
    if not entries or not isinstance(root, str):
        return ""
    grouped: dict[str, dict[str, list[Path]]] = {}
    for entry in entries:
        if isinstance(entry, list) and len(entry) >= 2:
            source = str(entry[2]) if len(entry) > 2 else "data"
            grouped.setdefault(str(entry[1]), {}).setdefault(source, []).append(Path(root) / str(entry[0]))
    sources = sorted({source for found in grouped.values() for source in found})
    rows = []
    for label in sorted(grouped):
        picked = {
            source: sorted(random.Random(f"{source}:{label}").sample(paths, min(per_class, len(paths))))
            for source, paths in grouped[label].items()
        }
        rows.append((label, picked))
    title = "training photos, a few per class and source"
    sheet = _figure(lambda: figures.contact_sheet_png(rows, sources, thumb=64, title=title),
                    "sample training photos per class and source")
    return (
        "<details><summary>sample photos per class and source (look for a source whose photos differ: "
        f"a model can learn the difference instead of the sport)</summary>{sheet}</details>"
    )


def _per_split_table(counts: dict[str, dict[str, int]], labels: list[str]) -> str:
    splits = sorted(counts, key=lambda s: SPLIT_ORDER.index(s) if s in SPLIT_ORDER else 99)
    head = "".join(f'<th class="n" data-type="num">{escape(s)}</th>' for s in splits)
    body = []
    for label in labels:
        cells = "".join(f'<td class="n">{int(counts[s].get(label, 0))}</td>' for s in splits)
        body.append(f"<tr><td>{escape(label)}</td>{cells}</tr>")
    return (
        "<details><summary>images per class and split</summary>"
        '<div class="scroll"><table class="sortable" id="split-counts"><thead><tr><th>class</th>'
        f"{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div></details>"
    )


def _findings(inputs: ReportInputs) -> str:
    """Data-check findings (when a report exists) and the scan's own warnings."""
    html = ["<h3>Data check</h3>"]
    summary = inputs.data_summary or {}
    scan_warnings = [w for w in summary.get("warnings", []) if isinstance(w, str)]
    ignored = summary.get("ignored") or {}
    folders = " ".join(shlex.quote(root) for root in inputs.page_data_args) or "DATA"
    home = inputs.check_home  # where this page looks for the report
    command = (f"sportsdet data check {folders} --report "
               f"{shlex.quote(str(home / 'data_check.json')) if home else 'RUN/data_check.json'}")
    if inputs.check is None:
        html.append(f'<p class="muted">No data-check report found. Run <code>{escape(command)}</code> to '
                    "decode every image and look for broken files and duplicates across splits.</p>")
    else:
        html.append(f'<p class="muted">From {escape(str(inputs.check_path))}</p>')
        if inputs.check_of_other_data:
            # A check of another folder was shown as this data's ("No broken files").
            html.append(f'<p class="low">This check is of {escape(", ".join(inputs.check_of_other_data))}, '
                        f"not of the photos on this page ({escape(', '.join(inputs.page_data_roots))}): "
                        f"what it found is not about them. Run <code>{escape(command)}</code> for "
                        "theirs.</p>")
        html.append(_check_report(inputs.check))
    if scan_warnings:
        html.append("<p>Found while scanning the data:</p><ul>"
                    + "".join(f"<li>{escape(w)}</li>" for w in scan_warnings) + "</ul>")
    if isinstance(ignored, dict) and ignored:
        html.append("<p>Files skipped while scanning: "
                    + ", ".join(f"{escape(str(k))}: {count(v)}" for k, v in ignored.items()) + "</p>")
    return "".join(html)


def _check_report(check: dict[str, Any]) -> str:
    """A `sportsdet data check --report` file: problems by kind, duplicates, image facts; for
    several sources, each source's part and the photos found in more than one source."""
    sources = check.get("sources")
    if isinstance(sources, dict):
        parts = [
            f"<h4>{escape(str(name))}</h4>" + (_check_report(part) if isinstance(part, dict) else "")
            for name, part in sources.items()
        ]
        across = check.get("across_sources")
        shared = across.get("duplicates") if isinstance(across, dict) else None
        if isinstance(shared, list) and shared:
            items = "".join(
                "<li>" + escape(", ".join(f"{f} [{label}]" for f, label in
                                          zip(g.get("files", []), g.get("labels", []), strict=False)))
                + "</li>" for g in shared[:10] if isinstance(g, dict)
            )
            parts.append(f'<h4>Across sources</h4><p class="low">{len(shared)} photo(s) are in more than '
                         "one source (a test picture the model may have trained on).</p>"
                         f"<details><summary>first {min(len(shared), 10)}</summary><ul>{items}</ul>"
                         "</details>")
        elif isinstance(shared, list):
            parts.append('<h4>Across sources</h4><p class="pos">No photo is in more than one source.</p>')
        return "".join(parts)
    html = []
    checked, ok = check.get("checked"), check.get("ok")
    if isinstance(checked, int):
        took = f" in {duration(check['seconds'])}" if isinstance(check.get("seconds"), (int, float)) else ""
        html.append(f"<p>Checked {checked:,} files{took}: {ok if ok is not None else '?':,} decode fine.</p>")
    problems = [p for p in check.get("problems") or [] if isinstance(p, dict)]
    counts = check.get("problem_counts")
    if not isinstance(counts, dict):
        counts = {}
        for item in problems:
            counts[str(item.get("kind") or "problem")] = counts.get(str(item.get("kind") or "problem"), 0) + 1
    if counts:
        html.append(f"<p class=\"low\">{sum(counts.values())} problems: "
                    + ", ".join(f"{escape(str(k))} {v}" for k, v in counts.items()) + "</p>")
    if problems:
        rows = "".join(
            f"<tr><td>{escape(str(p.get('path', '')))}</td><td>{escape(str(p.get('kind', '')))}</td>"
            f"<td>{escape(str(p.get('detail', '')))}</td></tr>" for p in problems[:30]
        )
        more = f" (first 30 of {len(problems)})" if len(problems) > 30 else ""
        html.append(f"<details><summary>problem files{more}</summary><table><thead><tr><th>file</th>"
                    f"<th>problem</th><th>detail</th></tr></thead><tbody>{rows}</tbody></table></details>")
    groups = [g for g in check.get("duplicates") or [] if isinstance(g, dict)]
    near = [g for g in check.get("near_copies") or [] if isinstance(g, dict)]
    html.append(_copy_groups(groups, "identical files", "duplicates"))
    html.append(_copy_groups(near, "near copies (one photo saved again, resized or re-saved)", "near copies"))
    info = check.get("info")
    if isinstance(info, dict):
        facts = [("greyscale images", info.get("greyscale")), ("image modes", info.get("modes")),
                 ("formats", info.get("formats")), ("width (px)", _range(info.get("width"))),
                 ("height (px)", _range(info.get("height")))]
        html.append(kv_table(facts))
    if not any(html):  # an unknown layout: show its simple fields
        rows = [(k, v) for k, v in check.items() if isinstance(v, (int, float, str)) and k != "format"]
        html.append(kv_table(rows))
    if not (counts or groups or near):
        html.append('<p class="pos">No broken files and no duplicates.</p>')
    return "".join(html)


def _copy_groups(groups: list[dict[str, Any]], what: str, name: str) -> str:
    """One kind of copies found by `data check`: how many groups, those crossing splits first."""
    if not groups:
        return ""
    crossing = [g for g in groups if g.get("cross_split")]
    listed = (crossing or groups)[:10]
    items = "".join(
        "<li>" + escape(", ".join(f"{f} [{s}]" for f, s in zip(g.get("files", []), g.get("splits", []),
                                                              strict=False))) + "</li>"
        for g in listed
    )
    return (f"<p>{len(groups)} group(s) of {what}"
            + (f', <span class="low">{len(crossing)} crossing splits (a test picture the model may '
               "have trained on)</span>" if crossing else "") + ".</p>"
            f"<details><summary>{'crossing splits' if crossing else name} "
            f"(first {len(listed)})</summary><ul>{items}</ul></details>")


def _range(pair: Any) -> str | None:
    if isinstance(pair, list) and len(pair) == 2:
        return f"{pair[0]}–{pair[1]}" if pair[0] != pair[1] else str(pair[0])
    return None


def _model(inputs: ReportInputs) -> str:
    config = inputs.config or {}
    bundle = inputs.bundle or {}
    model = bundle.get("model") or {}
    training = bundle.get("training") or {}
    prep = bundle.get("preprocessing") or {}
    history = inputs.history or []
    # The bundle's own record wins (it counts time before a --resume); else add up metrics.csv.
    seconds = training.get("seconds")
    if seconds is None and history:
        seconds = sum(r["seconds"] for r in history if r.get("seconds") is not None)
    best = _best_epoch(history, bundle)
    if not (config or bundle or history):
        return missing("No training record here (config.json, metrics.csv and model/bundle.json are written "
                       "by <code>sportsdet train</code>).")
    stages = list(dict.fromkeys(r["stage"] for r in history if r.get("stage")))  # in order of use
    rows: list[tuple[str, Any]] = [
        ("model", model.get("name") or config.get("model")),
        ("recipe", config.get("recipe") or training.get("recipe")),
        ("seed", config.get("seed") if config.get("seed") is not None else training.get("seed")),
        ("stages", ", ".join(stages) if stages else None),
        ("epochs run", len(history) if history else training.get("epochs")),
        ("best epoch (validation accuracy)",
         f"{int(best['epoch'])} ({pct(best['val_acc'])})" if best else None),
        ("training time", duration(seconds) if seconds is not None else None),
        ("input", f"{prep.get('input_size')} px, resize {prep.get('resize')}" if prep else None),
        ("model bundle", str(inputs.bundle_path) if inputs.bundle_path else None),
    ]
    html = [kv_table(rows)]
    options = config.get("options") if isinstance(config.get("options"), dict) else None
    if options or config:
        shown = options or {k: v for k, v in config.items() if k not in ("classes", "versions")}
        html.append("<details><summary>all training options (config.json)</summary>"
                    + kv_table(sorted(shown.items())) + "</details>")
    versions = bundle.get("versions") or config.get("versions")
    if isinstance(versions, dict) and versions:
        html.append("<h3>Library versions</h3><p>" + " · ".join(
            f"{escape(str(k))} <b>{escape(str(v))}</b>" for k, v in versions.items()) + "</p>")
    if not bundle:
        said = _unfinished(inputs) or "No model bundle (RUN/model is written at the end of training)."
        html.append(f'<p class="muted">{said}</p>')
    return "".join(html)


def _curves(inputs: ReportInputs) -> str:
    if inputs.history:
        best = _best_epoch(inputs.history, inputs.bundle)
        saved = inputs.curves_png.read_bytes() if inputs.curves_png is not None else None
        # Without matplotlib (the light install): the curves training drew, when kept.
        curves = _figure(lambda: figures.curves_png(inputs.history, best["epoch"] if best else None),
                         "training curves", saved)
        return curves + (
            '<p class="muted">Left: loss; middle: accuracy; right: learning rate. Dashed lines mark a '
            "change of training stage.</p>"
        )
    if inputs.curves_png is not None:
        return img(data_uri(inputs.curves_png.read_bytes()), "training curves")
    return missing("No training history (metrics.csv) found: this page was made from an evaluation "
                   "folder alone, or training has not finished an epoch yet.")


def _per_class(inputs: ReportInputs) -> str:
    m = inputs.metrics or {}
    per_class = m.get("per_class")
    if not per_class:
        return _no_eval(inputs)
    labels = [x for x in inputs.labels if x in per_class] or list(per_class)
    hidden: list[str] = []
    only_predicted: list[str] = []
    matrix, order = m.get("confusion_matrix"), m.get("labels")
    layout = confusion_layout(matrix) if matrix and order else None
    if layout is not None:
        # The confusion matrix's columns, in its order: the classes of the photos scored first; a
        # class with none here (a 105-class model on a user's 5 sports) is only a wrong answer,
        # listed after them, the most given first; one neither scored nor given is left out.
        rows, columns = layout
        shown = [order[j] for j in columns if order[j] in per_class]
        hidden = [x for x in labels if x not in shown]
        only_predicted = [order[j] for j in columns[len(rows):] if order[j] in per_class]
        labels = shown
    confused_with = _top_confusion(m, labels)
    predicted = times_predicted(m)
    rows = []
    for label in labels:
        v = per_class[label]
        # A class with no photos here has no recall (nothing to find) and so no F1: only wrong calls.
        absent = v.get("support") == 0
        recall, f1 = (None, None) if absent else (v.get("recall"), v.get("f1"))
        low = ' class="n low"' if f1 is not None and f1 < 0.5 and v.get("support") else ' class="n"'
        note = (f"no photos of it here; predicted for {predicted[label]} photo(s)"
                if absent and predicted.get(label) else confused_with.get(label, ""))
        rows.append(
            f'<tr data-label="{escape(label)}"><td>{escape(label)}</td>'
            f'<td class="n" data-v="{_raw(v.get("precision"))}">{pct(v.get("precision"))}</td>'
            f'<td class="n" data-v="{_raw(recall)}">{pct(recall)}</td>'
            f'<td{low} data-v="{_raw(f1)}">{pct(f1)}</td>'
            f'<td class="n" data-v="{_raw(v.get("support"))}">{count(v.get("support"))}</td>'
            f"<td>{note}</td></tr>"
        )
    # "No photos scored": a class whose every photo the model had seen (left out) has none either.
    note = (f" {len(hidden)} of the model's classes had no photos scored here and were never predicted: "
            "not shown." if hidden else "")
    if only_predicted:
        note += (f" The last {len(only_predicted)} rows are classes with no photos scored here that were "
                 "given to some: wrong answers only, the most given first.")
    return (
        f'<p class="muted">{len(labels)} classes.{note} Click a column header to sort (again to reverse); '
        "F1 below 50% is red. Precision: of the images predicted as this class, the share that were; "
        "recall: of this class's images, the share found.</p>"
        '<input type="search" placeholder="filter classes" data-filter="per-class-table" '
        'aria-label="filter classes">'
        '<div class="scroll"><table class="sortable" id="per-class-table"><thead><tr>'
        '<th>class</th><th class="n" data-type="num">precision</th><th class="n" data-type="num">recall</th>'
        '<th class="n" data-type="num">F1</th><th class="n" data-type="num">support</th>'
        "<th>most often predicted instead</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _raw(value: Any) -> str:
    return "" if value is None else escape(repr(value) if isinstance(value, float) else str(value))


def _top_confusion(metrics: dict[str, Any], labels: list[str]) -> dict[str, str]:
    """For each true class, the wrong class its images went to most (read off the confusion matrix)."""
    matrix, order = metrics.get("confusion_matrix"), metrics.get("labels")
    if not matrix or not order:
        return {}
    out = {}
    for i, label in enumerate(order):
        row = matrix[i]
        best_j, best = None, 0
        for j, count in enumerate(row):
            if j != i and count > best:
                best_j, best = j, count
        if best_j is not None:
            out[label] = f"{escape(order[best_j])} ({best})"
    return out


def _confusion(inputs: ReportInputs) -> str:
    m = inputs.metrics or {}
    matrix, labels = m.get("confusion_matrix"), m.get("labels")
    if not matrix or not labels:
        return _no_eval(inputs)
    # A class only predicted would have an empty row (on 5 of 105 sports, 50 of them): see
    # confusion_layout, which the PNG evaluate writes uses too.
    rows, columns = confusion_layout(matrix) or (list(range(len(labels))), list(range(len(labels))))
    cells = [[matrix[i][j] for j in columns] for i in rows]
    names, column_names = [labels[i] for i in rows], [labels[j] for j in columns]
    # Past ~30 classes the names are only readable at full size: start there (scrollable) and let
    # a click switch to the fit-to-width overview; small matrices start fitted.
    big = len(column_names) > 30
    html = ['<div class="cols"><div style="flex: 1 1 640px; min-width: 0">']
    html.append(
        f'<div class="zoomable{" zoomed" if big else ""}" id="confusion-figure">'
        + confusion_svg(cells, names, column_names, readout_id="confusion-readout") + "</div>"
        + '<p class="readout" id="confusion-readout" aria-live="polite">Hover or tap a square for its '
        "numbers.</p>" + legend_html()
    )
    only_predicted = len(columns) - len(rows)
    rows_note = (f" Only classes with images here get a row; {only_predicted} more were only predicted "
                 "(columns)." if only_predicted else "")
    html.append('<p class="muted">Each row is a true class, coloured by the share of its images that went to '
                "each predicted class; the square of its own column is that class's recall, a red outline "
                f"a class never recognised.{rows_note} Hover or tap a square for its numbers; click the "
                "matrix elsewhere to switch between full size and fit to width.</p></div>")
    pairs = m.get("most_confused") or []
    html.append(f'<div style="flex: {"1 1 100%" if big else "0 1 380px"}"><h3>Most confused pairs</h3>')
    if pairs:
        html.append(_confusion_pairs_table("confused-pairs", pairs))
    else:
        html.append('<p class="muted">No mistakes: nothing was confused.</p>')
    # Every square off the diagonal, as text: the matrix's numbers otherwise need a hover or a tap
    # (no keyboard or screen reader reached them past the ten pairs above).
    every = _every_confusion(matrix, labels)
    if len(every) > len(pairs):
        table = _confusion_pairs_table("every-confusion", every)
        html.append(f'<details><summary>Every confusion ({len(every)} pairs)</summary><div class="scroll">'
                    f"{table}</div></details>")  # fmt: skip
    html.append("</div></div>")
    return "".join(html)


def _every_confusion(matrix: list[list[int]], labels: list[str]) -> list[dict[str, Any]]:
    """Each (true, predicted) pair of different classes with images, most images first."""
    found = []
    for i, row in enumerate(matrix):
        total = sum(row)
        for j, count in enumerate(row):
            if count and i != j:
                found.append({"true": labels[i], "predicted": labels[j], "count": count,
                              "share": count / total})  # fmt: skip
    return sorted(found, key=lambda pair: -pair["count"])


def _confusion_pairs_table(table_id: str, pairs: list[dict[str, Any]]) -> str:
    rows = "".join(
        f'<tr><td>{escape(str(p["true"]))}</td><td>{escape(str(p["predicted"]))}</td>'
        f'<td class="n">{count(p["count"])}</td><td class="n">{pct(p.get("share"))}</td></tr>'
        for p in pairs
    )
    return (f'<table id="{table_id}"><thead><tr><th>true class</th><th>predicted as</th>'
            '<th class="n">images</th><th class="n">share of true class</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>")  # fmt: skip


def _galleries(inputs: ReportInputs, limit: int, thumbs: dict[str, str | None]) -> str:
    predictions = inputs.predictions
    if not predictions:
        return _no_eval(inputs)
    if limit == 0:  # it said "a seeded sample of 0" over each empty gallery
        return '<p class="muted">Galleries left out (<code>--gallery 0</code>).</p>'
    correct = [p for p in predictions if p.correct]
    wrong = [p for p in predictions if not p.correct]
    def shown(count: int) -> str:
        if count <= limit:
            return "all shown"
        return f"a seeded sample of {limit}, one per class first"

    groups = [
        ("gallery-correct",
         f"Correct predictions ({len(correct)} of {len(predictions)}; {shown(len(correct))})",
         spread_sample(correct, limit), False),
        ("gallery-wrong", f"Wrong predictions ({len(wrong)} of {len(predictions)}; {shown(len(wrong))})",
         spread_sample(wrong, limit), False),
        ("gallery-loss", f"Highest-loss mistakes (the {min(limit, len(wrong))} wrong predictions with the "
         "lowest probability on the true class: confidently wrong)", highest_loss(predictions, limit), True),
    ]
    html = []
    for anchor, title, chosen, show_loss in groups:
        html.append(f"<h3>{escape(title)}</h3>")
        if not chosen:
            html.append('<p class="muted">None.</p>')
            continue
        tiles = []
        for prediction in chosen:
            if prediction.path not in thumbs:
                thumbs[prediction.path] = thumbnail_uri(prediction)
            tiles.append(_tile(Tile(prediction, thumbs[prediction.path]), show_loss))
        html.append(f'<div class="gallery" id="{anchor}">{"".join(tiles)}</div>')
    return "".join(html)


def _tile(tile: Tile, show_loss: bool) -> str:
    p: Prediction = tile.prediction
    name = Path(p.path).name
    missing = "image not found" if p.image is None else "image cannot be decoded"  # e.g. damaged since
    picture = (img(tile.data_uri, f"{p.true_label}: {name}", cls="thumb") if tile.data_uri
               else f'<div class="noimg">{missing}<br>{escape(name)}</div>')
    extra = ""
    if show_loss:
        extra = f'<br><span class="t">p(true)</span> {pct(p.true_prob)} · loss {tile.loss:.2f}'
    # The photo's name is on the page (it was only in a hover title, which touch screens and the
    # keyboard never show): the wrong ones are the photos to look at, or to move to their class.
    return (
        f'<figure class="tile {"ok" if p.correct else "bad"}" title="{escape(p.path)}">{picture}<figcaption>'
        f'<span class="t">true</span> <b>{escape(p.true_label)}</b><br>'
        f'<span class="t">pred</span> <b>{escape(p.pred_label)}</b> · {pct(p.confidence)}{extra}'
        f'<br><span class="file">{escape(name)}</span></figcaption></figure>'
    )


def _abstained_in_results(m: dict[str, Any]) -> str:
    """Accuracy counts every photo by its best guess, those `predict` calls "uncertain" too: said
    beside it, with what the answered ones score (the headline alone read as what predict gets)."""
    abstain = m.get("abstain") or {}
    n, answered = abstain.get("n"), abstain.get("answered")
    if abstain.get("threshold") is None or not isinstance(answered, int) or not isinstance(n, int) or n < 1:
        return ""
    return (f'<p class="plain" id="abstain-in-results">These scores count every photo by the model\'s best '
            f"guess, the {n - answered} of {n} ({pct((n - answered) / n)}) that "
            '<code>sportsdet predict</code> leaves without a label ("uncertain") too. On the '
            f'{answered} it answers, accuracy is <b>{pct(abstain.get("accuracy_answered"))}</b>: see '
            '<a href="#abstain">Saying "I don\'t know"</a>.</p>')


def _calibration(inputs: ReportInputs) -> str:
    m = inputs.metrics or {}
    bins = m.get("reliability")
    if not bins:
        return _no_eval(inputs) if not m else missing("metrics.json holds no reliability bins; re-run "
                                                      "<code>sportsdet evaluate</code> with this version.")
    ece = m.get("ece")
    picture = _figure(lambda: figures.reliability_png(bins, ece), "reliability diagram")
    rows = "".join(
        f'<tr><td>{pct(b["lower"], 0)}–{pct(b["upper"], 0)}</td><td class="n">{count(b["count"])}</td>'
        f'<td class="n">{pct(b.get("mean_confidence"))}</td><td class="n">{pct(b.get("accuracy"))}</td></tr>'
        for b in bins if b.get("count")
    )
    table = ('<table id="reliability-table"><thead><tr><th>confidence</th><th class="n">images</th>'
             '<th class="n">mean confidence</th><th class="n">accuracy</th></tr></thead>'
             f"<tbody>{rows}</tbody></table>")
    text = (f'<p class="plain">Expected calibration error: <b id="m-ece-text">{pct(ece)}</b>. '
            "When the model says 80%, it should be right about 80% of the time; bars below the "
            "diagonal mean over-confidence, above it under-confidence.</p>")
    return text + f'<div class="cols"><div>{picture}</div><div>{table}</div></div>'


def _abstain(m: dict[str, Any]) -> str:
    """The abstain outcome: accuracy against coverage, and what the bundle's threshold does."""
    abstain = m.get("abstain")
    if not abstain or not abstain.get("risk_coverage"):
        return ""
    picture = _figure(lambda: figures.risk_coverage_png(abstain), "risk-coverage curve")
    if abstain.get("threshold") is not None:
        said = (f'<p class="plain" id="abstain-text">Photos whose {escape(score_name(abstain["method"]))} is '
                'under '
                f'{num(abstain["threshold"])} get no label ("uncertain", best guess kept). Here that answers '
                f'<b>{pct(abstain.get("coverage"))}</b> of the photos ({count(abstain.get("answered"))} of '
                f'{count(abstain.get("n"))}) with accuracy <b>{pct(abstain.get("accuracy_answered"))}</b> '
                f'(all photos: {pct(abstain.get("accuracy_all"))}); the threshold was fitted to answer '
                f'{pct(abstain.get("fitted_coverage"), 0)} of the validation photos.</p>')
    else:
        why = f" ({escape(str(abstain['why']))})" if abstain.get("why") else ""
        # Named: the table's thresholds were read as --min-score values, which are on another score.
        other = ("; <code>--min-score X</code> is a threshold on the top probability instead"
                 if abstain.get("method") not in (None, "max_prob") else "")
        said = (f'<p class="plain" id="abstain-text">This model has no abstain threshold{why}: every photo '
                f"gets a label. The curve shows what a threshold on its "
                f'{escape(score_name(abstain.get("method") or DEFAULT_SCORE))} would trade{other}.</p>')
    points = abstain["risk_coverage"]
    step = max(1, len(points) // 10)
    shown = points[::step] + ([points[-1]] if (len(points) - 1) % step else [])  # always the 100% row
    rows = "".join(
        f'<tr><td class="n">{pct(p["coverage"])}</td><td class="n">{pct(p["accuracy"], 2)}</td>'
        f'<td class="n">{num(p["threshold"])}</td></tr>'
        for p in shown
    )
    score = escape(score_name(abstain.get("method") or DEFAULT_SCORE))
    table = ('<table id="risk-coverage-table"><thead><tr><th class="n">answered</th>'
             f'<th class="n">accuracy</th><th class="n">{score} at least</th></tr></thead>'
             f"<tbody>{rows}</tbody></table>")
    return said + f'<div class="cols"><div>{picture}</div><div>{table}</div></div>'


# ---------------------------------------------------------------- comparison page

def render_comparison(runs: list[ReportInputs]) -> str:
    """Runs side by side: headline metrics, per-class F1 deltas against the first run, curves."""
    notes: list[str] = []
    names = _unique_names(runs)
    for name, run in zip(names, runs, strict=True):
        notes += [f"{name}: {n}" for n in run.notes]
        if not run.metrics:
            unfinished = _unfinished(run)
            if unfinished:  # the page's sentence as plain text (notes are escaped when drawn)
                said = unescape(unfinished.replace("<code>", "`").replace("</code>", "`"))
                notes.append(f"{name}: {said}")
            else:
                notes.append(f"{name}: no evaluation (metrics.json) found; run `sportsdet evaluate` for it")
    notes += _other_photos(runs, names)
    sections = [
        ("metrics", "Headline metrics", _safe(lambda: _compare_metrics(runs, names), "metrics", notes)),
        ("deltas", "Per-class differences", _safe(lambda: _compare_classes(runs, names), "per-class", notes)),
        ("curves", "Training curves", _safe(lambda: _compare_curves(runs, names), "curves", notes)),
    ]
    subtitle = f"{len(runs)} runs · written {_now()} by sportsdet {__version__}"
    return _page("sportsdet comparison: " + " vs ".join(names), subtitle, sections, notes)


def _unique_names(runs: list[ReportInputs]) -> list[str]:
    """The shortest path endings that tell the runs apart (runs/a/run vs runs/b/run -> a/run, b/run)."""
    paths = [_shown_folder(run).resolve() for run in runs]
    for depth in range(1, max(len(p.parts) for p in paths) + 1):
        names = ["/".join(p.parts[-depth:]) for p in paths]
        if len(set(names)) == len(names):
            return names
    return [f"{i + 1}: {p}" for i, p in enumerate(paths)]  # the same folder given twice


def _shown_folder(run: ReportInputs) -> Path:
    """A run's own eval/ is named by the run; another evaluation (eval-web, a folder elsewhere) by itself."""
    own_eval = run.run_dir is not None and run.eval_dir == RunFolder(run.run_dir).eval
    if run.eval_dir is not None and not own_eval:
        return run.eval_dir
    return run.run_dir or run.source


def _other_photos(runs: list[ReportInputs], names: list[str]) -> list[str]:
    """A note for each evaluation that scored other photos than the first run's: two runs whose
    own random splits share 3 of their 12 test photos were set side by side as if alike."""
    def photos(run: ReportInputs) -> set[str]:
        return {str(p.image or p.path) for p in run.predictions or []}

    scored = [(name, photos(run)) for name, run in zip(names, runs, strict=True)]
    scored = [(name, found) for name, found in scored if found]  # an evaluation without predictions.csv
    if not scored:
        return []
    (base, first), said = scored[0], []
    for name, theirs in scored[1:]:
        if theirs != first:
            said.append(
                f"{name} scored other photos than {base} ({len(first & theirs)} in common of "
                f"{len(theirs)} and {len(first)}): the difference is not the models' alone. Score both on "
                "the same photos: train with the other run's split (--split RUN/split.json), or evaluate "
                "each on one folder (`sportsdet evaluate RUN FOLDER`)"
            )
    return said


def _compare_metrics(runs: list[ReportInputs], names: list[str]) -> str:
    head = "".join(f"<th>{escape(n)}</th>" for n in names)
    lines: list[tuple[str, Callable[[ReportInputs], str]]] = [
        ("accuracy (95% CI, n)", lambda r: accuracy_sentence(r.metrics) if r.metrics else "–"),
        ("balanced accuracy", lambda r: pct((r.metrics or {}).get("balanced_accuracy"))),
        ("macro-F1", lambda r: pct((r.metrics or {}).get("macro_f1"))),
        ("data evaluated", lambda r: (_data_evaluated(r.metrics, r) or "–") if r.metrics else "–"),
        ("engine", lambda r: str((r.metrics or {}).get("backend") or "–")),  # INT8 or float
        ("top-k accuracy", _top_k),
        ("ECE", lambda r: pct((r.metrics or {}).get("ece"))),
        ("best validation accuracy", _best_validation),
        ("model", lambda r: str(((r.bundle or {}).get("model") or {}).get("name")
                                or (r.config or {}).get("model") or "–")),
        ("epochs", _epochs),
        ("training time", _training_time),
        ("classes", lambda r: str(len(r.labels)) if r.labels else "–"),
    ]
    body = "".join(
        f"<tr><th>{escape(label)}</th>" + "".join(f"<td>{escape(get(r))}</td>" for r in runs) + "</tr>"
        for label, get in lines
    )
    text = ('<p class="muted">When two runs\' confidence intervals overlap a lot, the difference between '
            "them may be noise of the test set, not a better model.</p>")
    return (f'<table id="compare-metrics" class="kv"><thead><tr><th></th>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>{text}")


def _best_validation(run: ReportInputs) -> str:
    """From the run's metrics.csv, else as its bundle records it (another model's evaluation, e.g.
    the built-in model's, has no history here: it showed "–" beside that bundle's training time)."""
    best = _best_epoch(run.history or [], run.bundle) or {}
    if best.get("val_acc") is not None:
        return pct(best["val_acc"])
    recorded = ((run.bundle or {}).get("metrics") or {}).get("best_val_accuracy")
    return pct(recorded) if isinstance(recorded, float) else "–"


def _epochs(run: ReportInputs) -> str:
    if run.history:
        return str(len(run.history))
    recorded = ((run.bundle or {}).get("training") or {}).get("epochs_run")
    return str(recorded) if isinstance(recorded, int) else "–"


def _top_k(run: ReportInputs) -> str:
    """Top-k with its k: runs of fewer than 5 classes score top-3 or top-4 (and 100% with 3)."""
    m = run.metrics or {}
    if m.get("top5_accuracy") is None:
        return "–"
    return f"{pct(m['top5_accuracy'])} (top-{m.get('top_k', 5)})"


def _training_time(run: ReportInputs) -> str:
    seconds = ((run.bundle or {}).get("training") or {}).get("seconds")
    if seconds is None and run.history:
        seconds = sum(x["seconds"] or 0 for x in run.history)
    return duration(seconds)


def _compare_classes(runs: list[ReportInputs], names: list[str]) -> str:
    scored = [(n, r) for n, r in zip(names, runs, strict=True) if r.metrics and r.metrics.get("per_class")]
    if len(scored) < 2:
        return missing("Per-class differences need an evaluation (metrics.json) for at least two runs.")
    (base_name, base), others = scored[0], scored[1:]
    tables = [r.metrics["per_class"] for _, r in scored]
    labels = [x for x in base.labels if x in tables[0]] or list(tables[0])
    shared = [x for x in labels if all(x in table for table in tables[1:])]
    if not shared:
        return missing("The runs share no class names, so per-class results cannot be compared.")
    # A 105-class model scored on a user's 3 sports: the other 102 have no photos anywhere, and
    # rows of dashes only buried the classes that can be compared (as the single page leaves them out).
    nowhere = [x for x in shared if all(table[x].get("support") == 0 for table in tables)]
    shared = [x for x in shared if x not in nowhere]

    def f1(table: dict[str, Any], label: str) -> float | None:
        # No photos of the class in that evaluation: no F1 to compare (sklearn's 0 is not a score).
        return None if table[label].get("support") == 0 else table[label]["f1"]

    head = f"<th>class</th><th class=\"n\" data-type=\"num\">F1 {escape(base_name)}</th>"
    for name, _ in others:
        head += (f'<th class="n" data-type="num">F1 {escape(name)}</th>'
                 f'<th class="n" data-type="num">Δ F1 {escape(name)}</th>')

    def delta(table: dict[str, Any], label: str) -> float | None:
        after, before = f1(table, label), f1(tables[0], label)
        return None if after is None or before is None else after - before

    # Largest changes first (by the second run's delta), so the page opens on what moved; classes
    # that cannot be compared last.
    first = tables[1]
    shared.sort(key=lambda x: -abs(delta(first, x)) if delta(first, x) is not None else 1.0)
    rows = []
    for label in shared:
        base_f1 = f1(tables[0], label)
        cells = f'<td class="n" data-v="{_raw(base_f1)}">{pct(base_f1)}</td>'
        for table in tables[1:]:
            value, change = f1(table, label), delta(table, label)
            cls = "pos" if (change or 0) > 0 else ("neg" if (change or 0) < 0 else "")
            shown = "–" if change is None else f"{100 * change:+.1f}"
            cells += (f'<td class="n" data-v="{_raw(value)}">{pct(value)}</td>'
                      f'<td class="n {cls}" data-v="{_raw(change)}">{shown}</td>')
        rows.append(f"<tr><td>{escape(label)}</td>{cells}</tr>")
    extra = ""
    if nowhere:
        extra += f" {len(nowhere)} class(es) with no photos in any evaluation are left out."
    empty = [x for x in shared if any(f1(table, x) is None for table in tables)]
    if empty:
        extra += (f" {len(empty)} class(es) have no photos in some evaluation (–): no F1 there to compare "
                  f"({escape(', '.join(empty[:10]))}{', ...' if len(empty) > 10 else ''}).")
    left_out = []
    for label in dict.fromkeys(x for table in tables for x in table):
        if label not in shared and label not in nowhere:
            holders = ", ".join(n for (n, _), table in zip(scored, tables, strict=True) if label in table)
            left_out.append(f"{escape(label)} (only in {escape(holders)})")
    if left_out:
        extra += (f" {len(left_out)} class(es) not in every run are left out: {', '.join(left_out[:10])}"
                  f"{', ...' if len(left_out) > 10 else ''}; the runs' accuracies are over other classes.")
    return (
        f'<p class="muted" id="compare-classes-note">F1 per class; Δ is in percentage points against '
        f"{escape(base_name)}, sorted by the size of the change. Click a header to sort.{extra}</p>"
        '<input type="search" placeholder="filter classes" data-filter="compare-classes" '
        'aria-label="filter classes">'
        f'<div class="scroll"><table class="sortable" id="compare-classes"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div>"
    )


def _compare_curves(runs: list[ReportInputs], names: list[str]) -> str:
    histories = {n: r.history for n, r in zip(names, runs, strict=True) if r.history}
    if not histories:
        return missing("None of these runs has a training history (metrics.csv).")
    return _figure(lambda: figures.compare_curves_png(histories), "training curves of all runs")
