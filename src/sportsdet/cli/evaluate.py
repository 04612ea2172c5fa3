"""CLI verb: `sportsdet evaluate BUNDLE DATA` -- metrics, plots and galleries for a trained model."""

from __future__ import annotations

import contextlib
import shlex
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from sportsdet.cli.app import app, console, err_console, given_path, plain, warn


@app.command("evaluate")
def evaluate_command(
    bundle: Path = typer.Argument(
        ...,
        metavar="MODEL",
        help="Model bundle folder, a run folder (its model/ is used), or `builtin` for the sports model "
        "that ships with sportsdet (then give DATA: your own labelled photos).",
        show_default=False,
    ),
    data: Path | None = typer.Argument(
        None,
        metavar="DATA",
        help="Labelled images: the training data folder (its saved test split is used) or another "
        "folder-per-class / split tree whose classes are among the model's labels. Default: the data the "
        "run was trained on (every source of a multi-source run), through its saved split.",
        show_default=False,
    ),
    split: str | None = typer.Option(
        None,
        "--split",
        "-s",
        help="Which split to score: test (default), valid or train; for split trees and saved splits.",
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Folder for the results. Default: RUN/eval for the run's own test split, RUN/eval-<data "
        "folder> for other photos (RUN/eval is kept), or ./eval-<bundle name>-<data folder> outside a "
        "run (./eval-builtin-<data folder> for the built-in model).",
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", "-b", min=1,
        help="Images per model run. Default: the fastest for the backend, as predict (onnxruntime: 2; "
        "torch: 16).",
    ),
    device: str = typer.Option("cpu", "--device", help="Torch device to run on, e.g. cpu or cuda."),
    seed: int = typer.Option(0, "--seed", help="Seed for picking the gallery images."),
    keep_seen: bool = typer.Option(
        False,
        "--keep-seen",
        help="Also score photos the model was trained or validated on. By default a folder's photos "
        "that match the bundle's seen_photos.json (by content) are left out, and counted.",
    ),
    int8: bool = typer.Option(
        False,
        "--int8",
        help="Score the bundle's INT8 model (model.int8.onnx, from `sportsdet export --int8`): what "
        "`predict --int8` and `serve --int8` run. Results go to RUN/eval-int8 (RUN/eval is kept). A "
        "bundle that ships only its INT8 model (the built-in one) runs it anyway.",
    ),
    known_only: bool = typer.Option(
        False,
        "--known-only",
        help="Leave out class folders the model does not know (listed, with their photo counts), "
        "instead of refusing DATA; for folders you cannot rename.",
    ),
) -> None:
    """Score a model on labelled images: accuracy (95% CI), balanced accuracy, macro-F1, top-5,
    a per-class table, a confusion matrix and galleries of right and wrong predictions."""
    from sportsdet.evaluate import evaluate
    from sportsdet.run_folder import holding_run_of

    out = given_path(out)
    _refuse_swapped(bundle, data)
    chosen: dict[str, Any] = {}  # where the results go, and the metrics.json there before
    held = contextlib.ExitStack()

    def remember(folder: Path) -> None:
        chosen.update(out=folder, before=_file_stamp(folder / "metrics.json"))
        # A run being written by `train` is refused now, not after the photos are scored; held
        # through the report pages too.
        held.enter_context(holding_run_of(folder))

    try:
        result = evaluate(
            bundle,
            data,
            split=split or "test",
            split_given=split is not None,
            keep_seen=keep_seen,
            known_only=known_only,
            out_dir=out,
            batch_size=batch_size,
            device=device,
            seed=seed,
            int8=int8,
            progress=True,
            warn=warn,
            on_out=remember,
        )
        print_summary(result.metrics)
        err_console.print(f"results written to {plain(result.out_dir)}", highlight=False)
        _write_reports(Path(result.out_dir))
    except KeyboardInterrupt:
        _say_interrupted(chosen.get("out"), chosen.get("before"))
        raise typer.Exit(130) from None
    finally:
        held.close()


def _refuse_swapped(bundle: Path, data: Path | None) -> None:
    """`evaluate PHOTOS RUN`: said so, not "PHOTOS: bundle.json is missing; not a model bundle"."""
    from sportsdet.bundle import MANIFEST_NAME, bundle_folder
    from sportsdet.errors import SportsdetError

    def is_model(path: Path) -> bool:
        try:
            return (bundle_folder(path) / MANIFEST_NAME).is_file()  # `builtin` too, unless a folder here
        except SportsdetError:
            return False

    if data is not None and bundle.expanduser().is_dir() and not is_model(bundle) and is_model(data):
        raise SportsdetError(
            f"{bundle} is no model and {data} is one: the model comes first "
            f"(`sportsdet evaluate {shlex.quote(str(data))} {shlex.quote(str(bundle))}`)"
        )


def _file_stamp(path: Path) -> tuple[int, int] | None:
    """Which file is at `path` (a rename into place makes another inode), None for none."""
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_ino, found.st_mtime_ns


def _say_interrupted(out: Path | None, before: tuple[int, int] | None) -> None:
    """What Ctrl-C left: an evaluation's files are published together (StagedFiles), so either
    the new one is whole or the folder is as it was; typer alone printed a blank line."""
    after = _file_stamp(out / "metrics.json") if out is not None else None
    if out is not None and after is not None and after != before:
        run = _owning_run(out)
        target = _report_target(out, run)
        # RUN/eval-DATA has two pages: its own and the run's, which lists it (only its own was said).
        pages = [target] + ([run] if run is not None and target != run else [])
        commands = " and ".join(f"`sportsdet report {escape(shlex.quote(str(page)))}`" for page in pages)
        message = (
            f"the evaluation is written in {escape(str(out))}, but its report "
            f"{'pages are' if len(pages) > 1 else 'page is'} not up to date: {commands} "
            f"{'write them' if len(pages) > 1 else 'writes it'}"
        )
    elif after is not None:
        message = f"nothing written; the earlier evaluation in {escape(str(out))} is kept as it was"
    else:
        message = "nothing written"
    err_console.print(f"[yellow]interrupted[/]: {message}", highlight=False, soft_wrap=True)


def _owning_run(out_dir: Path) -> Path | None:
    """The run whose model this evaluation scored (RUN/eval, RUN/eval-<data>); None outside a
    run, or for another model's evaluation kept in a run folder (the run's page leaves it out)."""
    from sportsdet.report.inputs import scored_another_bundle
    from sportsdet.run_folder import RunFolder

    run = out_dir.parent if RunFolder(out_dir.parent).model.is_dir() else None
    return None if run is None or scored_another_bundle(out_dir, run) else run


def _report_target(out_dir: Path, run: Path | None) -> Path:
    """RUN/eval belongs to its run: its report covers training and evaluation together (the run
    folder's page). Any other evaluation folder gets its own page."""
    from sportsdet.run_folder import RunFolder

    return run if run is not None and out_dir == RunFolder(run).eval else out_dir


def _write_reports(out_dir: Path) -> None:
    """The evaluation's page, and the run's page again when the evaluation is one of a run's
    (RUN/eval-<data>): the run's page lists every evaluation of its model."""
    from sportsdet.report import write_report_after

    run = _owning_run(out_dir)
    target = _report_target(out_dir, run)
    report = write_report_after(target, warn)
    if report is not None:
        err_console.print(f"report: {plain(report)}", highlight=False)
    if run is not None and target != run:
        run_report = write_report_after(run, warn)
        if run_report is not None:
            err_console.print(f"run report (lists this evaluation too): {plain(run_report)}", highlight=False)


ONLY_GIVEN_ROWS = 10  # classes with no photos here that the model gave some to, listed at most


def print_summary(metrics: dict) -> None:
    """The headline numbers and the per-class table, on stdout."""
    from rich.table import Table

    from sportsdet.metrics import confusion_layout, photos_scored

    lo, hi = metrics["accuracy_ci95"]
    where = photos_scored(metrics)
    headline = Table(show_header=False, title=f"{metrics['n']} images ({plain(where)})", title_justify="left")
    headline.add_column(style="bold")
    headline.add_column(justify="right")
    abstain = metrics.get("abstain") or {}
    # With a rule in force, the rows below score every photo's best guess, the "uncertain" ones too.
    every = " (every photo's best guess)" if abstain.get("threshold") is not None else ""
    headline.add_row(f"accuracy{every}", f"{metrics['accuracy']:.1%}  (95% CI {lo:.1%} - {hi:.1%})")
    headline.add_row("balanced accuracy", f"{metrics['balanced_accuracy']:.1%}")
    headline.add_row("macro-F1", f"{metrics['macro_f1']:.1%}")  # as the report and the other rows
    headline.add_row(f"top-{metrics['top_k']} accuracy", f"{metrics['top5_accuracy']:.1%}")
    if metrics.get("backend"):  # INT8 or not, said up front (the folder name alone said it)
        headline.add_row("engine", plain(metrics["backend"]))
    headline.add_row("calibration error (ECE)", f"{metrics['ece']:.1%}")  # in % as train, info and the report
    if abstain.get("answered") is not None:  # what `predict` answers of these photos (it was report-only)
        answered = abstain.get("accuracy_answered")
        headline.add_row(
            "answered (not 'uncertain')",
            f"{abstain['answered']} of {abstain['n']} ({abstain['coverage']:.1%})"
            + (f", {answered:.1%} of them right" if answered is not None else ""),
        )
    console.print(headline)

    if metrics.get("per_source"):
        sources = Table(title="per source", title_justify="left")
        for column, justify in (("source", "left"), ("images", "right"), ("accuracy", "right"),
                                ("95% CI", "right"), (f"top-{metrics['top_k']}", "right")):  # fmt: skip
            sources.add_column(column, justify=justify)
        for name, row in metrics["per_source"].items():
            low, high = row["accuracy_ci95"]
            sources.add_row(plain(name), str(row["n"]), f"{row['accuracy']:.1%}", f"{low:.1%} - {high:.1%}",
                            f"{row['top5_accuracy']:.1%}")  # fmt: skip
        console.print(sources)

    table = Table(title="per class", title_justify="left")
    table.add_column("class")
    for column in ("precision", "recall", "F1", "support"):
        table.add_column(column, justify="right")
    # The classes of the photos scored, then those with no photos here that the model gave some
    # photos to (wrong answers only, the most given first): the report's order (confusion_layout).
    per_class, order = metrics["per_class"], metrics.get("labels") or []
    layout = confusion_layout(metrics["confusion_matrix"]) if order else None
    shown = [order[j] for j in layout[1] if order[j] in per_class] if layout else list(per_class)
    only_given = len(layout[1]) - len(layout[0]) if layout else 0
    # Of those, the most given only: 605 photos of 5 sports listed 50 rows of "0.00 - -".
    listed_given = min(only_given, ONLY_GIVEN_ROWS)
    shown = shown[: len(shown) - only_given + listed_given]
    for label in shown:
        row = per_class[label]
        absent = not row["support"]  # nothing to find: no recall, no F1
        table.add_row(
            plain(label),
            f"{row['precision']:.2f}",
            "-" if absent else f"{row['recall']:.2f}",
            "-" if absent else f"{row['f1']:.2f}",
            str(row["support"]),
        )
    if only_given:
        which = f"the last {only_given}" if listed_given == only_given else (
            f"the last {listed_given} (the most given, of {only_given}; all in metrics.json and the report)"
        )
        table.caption = f"{which}: no photos here, but given to some (wrong answers only)"
    console.print(table)
    if metrics.get("most_confused"):
        pairs = ", ".join(
            f"{plain(c['true'])} -> {plain(c['predicted'])} ({c['count']})"
            for c in metrics["most_confused"][:5]
        )
        console.print(f"most confused: {pairs}", highlight=False)
