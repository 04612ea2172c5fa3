"""CLI verbs: `sportsdet data scan | check | split | fetch`. Thin: parse options, call
sportsdet.data, print."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from sportsdet.cli.app import (
    MAX_SECONDS,
    console,
    data_app,
    err_console,
    given_path,
    plain,
    print_data,
    seconds_from,
    warn,
)
from sportsdet.errors import SportsdetError
from sportsdet.files import check_writable_file, write_json

if TYPE_CHECKING:
    from sportsdet.data.check import CheckReport
    from sportsdet.data.discover import ScanResult
    from sportsdet.data.splits import SplitManifest

_PROBLEM_ROWS = 30  # problem files listed on screen; the JSON report has them all
_DUPLICATE_ROWS = 15
_FILES_PER_GROUP = 10  # files listed of one copy group (all of them in --report)


def _print_warnings(warnings: list[str]) -> None:
    for message in warnings:
        warn(message)


def _counts_table(title: str, classes: list[str], counts: dict[str, dict[str, int]]) -> Any:
    from rich.table import Table

    splits = list(counts)
    table = Table(title=title or None, show_footer=True, title_justify="left")
    table.add_column("class", footer="total")
    for split in splits:
        total = sum(counts[split].values())
        table.add_column(split, justify="right", footer=f"{total:,}")
    if len(splits) > 1:
        table.add_column("all", justify="right", footer=f"{sum(sum(c.values()) for c in counts.values()):,}")
    for name in classes:
        row = [counts[s][name] for s in splits]
        cells = [f"[red]{n}[/]" if n == 0 else str(n) for n in row]
        if len(splits) > 1:
            cells.append(str(sum(row)))
        table.add_row(plain(name), *cells)
    return table


def _print_scan(scan: ScanResult) -> None:
    from sportsdet.data.discover import describe_ignored

    if scan.layout == "split":
        layout = "split tree (" + ", ".join(plain(f) for f in scan.split_folders.values()) + ")"
    else:
        layout = "one folder per class"
    console.print(f"[bold]{plain(scan.root)}[/]: {layout}", highlight=False)
    console.print(_counts_table("", scan.classes, scan.counts()))
    line = f"{len(scan.classes)} classes, {len(scan.records):,} images"
    if scan.layout == "split":
        line += " (" + " / ".join(f"{split} {sum(c.values()):,}" for split, c in scan.counts().items()) + ")"
    console.print(line, highlight=False)
    if scan.ignored:
        console.print(f"skipped: {plain(describe_ignored(scan.ignored))}", highlight=False)


_MAP_HELP = "Rename a source's class: SOURCE:OLD=NEW (or OLD=NEW for every source that has OLD)."
_MERGE_HELP = "A class name several sources share on purpose ('all' for every shared name)."


def scan_sources_from_cli(
    paths: list[Path], maps: list[str], merge: list[str], classes: list[str] | None = None
) -> list[Any]:
    """Several DATA (or a dataset file, or one with --map): each source scanned with its label map
    (and seen through `--classes`, when given)."""
    from sportsdet.data.sources import scan_sources, sources_from_args

    return scan_sources(sources_from_args(paths, maps, merge), classes)


def _refuse_photo_folders_among_sources(paths: list[Path], mapped: bool = False) -> None:
    """A plain folder of photos (no class folders) is checked on its own; among several sources it
    was refused as "no class folders found", as if it could not be checked at all. `mapped`: a
    --map was given (one folder with a --map is a source too)."""
    from sportsdet.data.discover import scan_dataset
    from sportsdet.data.sources import is_dataset_file

    for path in paths:
        if path.is_dir() and not is_dataset_file(path):
            try:
                plain_photos = scan_dataset(path, allow_photos=True).layout == "photos"
            except SportsdetError:
                continue  # scan_sources says what is wrong with it
            if plain_photos and len(paths) == 1 and mapped:
                raise SportsdetError(
                    f"{path}: a folder of photos with no class folders: --map renames class folders; "
                    f"check it without --map (`sportsdet data check {shlex.quote(str(path))}`)"
                )
            if plain_photos:
                raise SportsdetError(
                    f"{path}: a folder of photos with no class folders; check it on its own "
                    f"(`sportsdet data check {shlex.quote(str(path))}`): several folders are checked as "
                    "sources of one dataset, each with its class folders"
                )


def _is_multi(paths: list[Path], maps: list[str]) -> bool:
    from sportsdet.data.sources import is_multi_source

    return is_multi_source(paths, maps)


@data_app.command("scan")
def scan(
    paths: list[Path] = typer.Argument(
        ...,
        metavar="DATA",
        help="Image folder(s): ROOT/<class>/<images> or ROOT/{train,valid,test}/<class>/<images>; several "
        "folders or a dataset file (.toml/.json) are scanned as the sources of one run.",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print a machine-readable JSON summary instead of the table."
    ),
    preview: Path | None = typer.Option(
        None,
        "--preview",
        help="Draw a few photos of every class, per source, into this PNG (see how the sources differ).",
    ),
    maps: list[str] = typer.Option([], "--map", help=_MAP_HELP),
    merge: list[str] = typer.Option([], "--merge", help=_MERGE_HELP),
) -> None:
    """Count images per class and split, list what was skipped, and warn about gaps and imbalance.

    Nothing is decoded (fast); use `sportsdet data check` to open every image.
    """
    from sportsdet.data.discover import scan_dataset
    from sportsdet.data.sources import Source, SourceScan

    preview = given_path(preview)
    if preview is not None:  # refused before the scan, not after it
        if preview.suffix.lower() != ".png":
            raise SportsdetError(f"--preview {preview}: give a .png file name")
        check_writable_file(preview, "--preview", "preview.png")
    if _is_multi(paths, maps):
        scans = scan_sources_from_cli(paths, maps, merge)
    else:
        result = scan_dataset(paths[0])
        scans = [SourceScan(Source(result.root.name, result.root), result)]
    if as_json:
        if len(scans) == 1 and not maps:
            print_data(json.dumps(scans[0].scan.to_dict(), indent=1, ensure_ascii=False))
        else:
            payload = {"sources": {item.source.name: item.scan.to_dict() for item in scans}}
            print_data(json.dumps(payload, indent=1, ensure_ascii=False))
    else:
        for item in scans:
            if len(scans) > 1:
                console.print(f"[bold]source {plain(item.source.name)}[/]", highlight=False)
            _print_scan(item.scan)
        if len(scans) > 1:
            union = sorted({c for item in scans for c in item.scan.classes})
            total = sum(len(item.scan.records) for item in scans)
            console.print(f"all sources: {len(union)} classes, {total:,} images", highlight=False)
    for item in scans:
        prefix = f"{item.source.name}: " if len(scans) > 1 else ""
        _print_warnings([prefix + w for w in item.scan.warnings])
    if preview is not None:
        from sportsdet.data.sources import preview_rows
        from sportsdet.files import atomic_write
        from sportsdet.plots import contact_sheet_png

        rows = preview_rows(scans)
        atomic_write(preview, contact_sheet_png(rows, [item.source.name for item in scans]))
        err_console.print(f"preview of {len(rows)} classes written to {plain(preview)}", highlight=False)


def _print_check(report: CheckReport) -> None:
    from rich.table import Table

    from sportsdet.data.discover import IGNORED_NOT_REGULAR, IGNORED_UNSUPPORTED, reason_in_words

    data = report.to_dict()
    console.print(
        f"[bold]{plain(report.root)}[/]: {data['checked']:,} files checked in {report.seconds:.1f} s",
        highlight=False,
    )
    summary = Table()
    summary.add_column("finding")
    summary.add_column("files", justify="right")
    # "ok" counts every good file, copies among them: the rows below are findings, not a sum.
    copies = report.duplicates or report.cross_split_duplicates or report.near_copies
    copies = copies or report.cross_split_near_copies
    ok = "[green]ok[/] (readable; copies below are among them)" if copies else "[green]ok[/] (readable)"
    summary.add_row(ok, f"{data['ok']:,}")
    for kind, n in report.problem_counts.items():
        summary.add_row(f"[red]{plain(kind)}[/]", f"{n:,}")
    for groups, finding in (
        (report.duplicates, "[yellow]exact duplicates[/]"),
        (report.cross_split_duplicates, "[bold red]duplicates across splits (leakage)[/]"),
        (report.near_copies, "[yellow]near copies: resized or re-saved[/]"),
        (report.cross_split_near_copies, "[bold red]near copies across splits (leakage)[/]"),
    ):
        if groups:
            named = f"{len(groups):,} group{'s' if len(groups) != 1 else ''}"  # was "(1 groups)"
            summary.add_row(f"{finding} ({named})", f"{sum(len(g.files) for g in groups):,}")
    if report.misnamed and not report.renamed:
        summary.add_row(
            "[yellow]image with a misleading name[/] (used; --rename-misnamed fixes)",
            f"{len(report.misnamed):,}",
        )
    info = data["info"]
    for mode, n in info["modes"].items():
        if mode != "RGB":
            summary.add_row(f"[dim]info: mode {plain(mode)} (converted to RGB when loaded)[/]", str(n))
    for reason, n in report.ignored.items():
        # Unsupported formats, FIFOs and dangling links are problem files above already.
        if reason not in (IGNORED_UNSUPPORTED, IGNORED_NOT_REGULAR):
            summary.add_row(f"[dim]skipped by scan: {plain(reason_in_words(reason))}[/]", str(n))
    console.print(summary)

    if report.misnamed and not report.renamed:
        table = Table(title="images with a misleading name (used as photos)", title_justify="left")
        for column in ("file", "content"):
            table.add_column(column, overflow="fold")
        for rel, image_format in list(report.misnamed.items())[:_PROBLEM_ROWS]:
            table.add_row(plain(rel), image_format)
        console.print(table)
        if len(report.misnamed) > _PROBLEM_ROWS:
            console.print(f"... and {len(report.misnamed) - _PROBLEM_ROWS} more (all in --report)")
    problems = report.problems
    if problems:
        table = Table(title="problem files", title_justify="left")
        for column in ("file", "problem", "detail"):
            table.add_column(column, overflow="fold")
        for result in problems[:_PROBLEM_ROWS]:
            table.add_row(plain(result.rel), plain(result.kind or ""), plain(result.detail))
        console.print(table)
        if len(problems) > _PROBLEM_ROWS:
            console.print(f"... and {len(problems) - _PROBLEM_ROWS} more (all in --report)")
    _print_groups(report.duplicates, "exact duplicates (--quarantine moves all but the first of each group)")
    _print_groups(
        report.near_copies, "near copies: one photo saved again, resized or re-saved (--quarantine moves all "
        "but the first of each group)"
    )


def _print_groups(groups: list[Any], title: str) -> None:
    """Duplicate (or near-copy) groups, those that cross splits or labels marked."""

    def note(group: Any) -> str:
        notes = []
        if group.cross_split:
            splits = plain(" / ".join(dict.fromkeys(group.splits)))
            notes.append(f"[bold red]across splits: {splits}[/]")
        if group.conflicting_labels:
            notes.append("[bold red]different labels[/]")
        return "; ".join(notes)

    _group_table(groups, title, {"note": note})


def _group_table(groups: list[Any], title: str, columns: dict[str, Callable[[Any], str]]) -> None:
    """Copy groups, one numbered row each, ruled apart (27 groups without the lines read as one
    column of names), the copy --quarantine keeps first; `columns`: more cells of each group."""
    from rich.table import Table

    if not groups:
        return
    table = Table(title=title, title_justify="left", show_lines=True)
    table.add_column("group", justify="right")
    table.add_column("files (the first is the copy kept)", overflow="fold")
    for name in columns:
        table.add_column(name)
    for number, group in enumerate(groups[:_DUPLICATE_ROWS], 1):
        files = group.files[:_FILES_PER_GROUP]
        if len(group.files) > _FILES_PER_GROUP:  # 3,000 saves of one placeholder were 3,000 lines
            files = [*files, f"... and {len(group.files) - _FILES_PER_GROUP:,} more (all in --report)"]
        table.add_row(str(number), plain("\n".join(files)), *(cell(group) for cell in columns.values()))
    console.print(table)
    if len(groups) > _DUPLICATE_ROWS:
        console.print(f"... and {len(groups) - _DUPLICATE_ROWS} more groups (all in --report)")


@data_app.command("check")
def check(
    paths: list[Path] = typer.Argument(
        ...,
        metavar="DATA",
        help="Image folder(s) to check (same layouts as `data scan`; several folders or a dataset file "
        "check every source).",
    ),
    report_path: Path | None = typer.Option(
        None,
        "--report",
        help="Write the full JSON report (every file, every finding) to this file; '-' prints it on "
        "stdout (the tables then go to stderr).",
    ),
    strict: bool = typer.Option(
        False, "--strict", help="Exit with code 1 when any bad file, duplicate or near copy is found (CI)."
    ),
    quarantine: Path | None = typer.Option(
        None,
        "--quarantine",
        help="Move bad files and extra duplicate and near copies (the test, else valid, copy stays) to this "
        "folder, "
        "keeping their relative paths. "
        "Never deletes or overwrites; must be outside the data tree (or a hidden folder inside it).",
    ),
    keep_duplicates: bool = typer.Option(
        False, "--keep-duplicates",
        help="With --quarantine: move only bad files, leave duplicates and near copies in place.",
    ),
    rename_misnamed: bool = typer.Option(
        False,
        "--rename-misnamed",
        help="Give photos with a misleading name (a JPEG saved as photo.php) their image ending, in place "
        "(photo.jpg, or photo~1.jpg when taken). Never overwrites.",
    ),
    workers: int | None = typer.Option(
        None, "--workers", min=0,
        help="Decoding processes (default: one per CPU core; 0: in the main process, as train's --workers).",
    ),
    maps: list[str] = typer.Option([], "--map", help=_MAP_HELP + " The report names classes so."),
    merge: list[str] = typer.Option(
        [], "--merge", help=_MERGE_HELP + " Without it, shared names are not refused: each source is "
        "checked on its own."
    ),
) -> None:
    """Decode every image; report bad files, exact duplicates, near copies and copies across splits.

    DATA may also be a plain folder of photos with no class folders (e.g. before predicting on it).
    Photos are known by content: a JPEG named photo.php is checked, used by training and predict,
    and listed as an image with a misleading name.

    Bad files: unreadable (also FIFOs and devices) or truncated, empty, not an image (e.g. HTML saved
    as .jpg), unsupported format, too large, tiny, or a strip (more than 8 times longer than wide).
    Near copies are one photo saved again with other bytes (resized, re-compressed, a few pixels
    trimmed), found by how it looks. Copies across splits, exact or near, leak test images into
    training. Exit code 0 unless --strict finds something or a file cannot be moved or renamed (then
    1); 2 for a bad DATA or option.
    """
    report_path = given_path(report_path)
    to_stdout = report_path is not None and str(report_path) == "-"
    with _tables_on_stderr(to_stdout):  # `--report -`: stdout holds the JSON alone
        _check(paths, report_path, strict, quarantine, keep_duplicates, rename_misnamed, workers, to_stdout,
               (maps, merge))  # fmt: skip


def _check(
    paths: list[Path],
    report_path: Path | None,
    strict: bool,
    quarantine: Path | None,
    keep_duplicates: bool,
    rename_misnamed: bool,
    workers: int | None,
    to_stdout: bool,
    labels: tuple[list[str], list[str]] = ([], []),
) -> None:
    """`labels`: the --map and --merge options, as `train` takes them (a train command's sources,
    checked with the same options)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from sportsdet.data import check as checking
    from sportsdet.data.discover import for_checking, scan_dataset

    if report_path is not None and not to_stdout:  # refused before the check and the moves it records
        check_writable_file(report_path, "--report", also="- for standard output")
    maps, merge = labels
    if _is_multi(paths, maps):
        _refuse_photo_folders_among_sources(paths, mapped=bool(maps))
        # Without --merge, names shared across sources are not refused here (each source is checked
        # on its own); with it, as train takes it (a mistyped name is an error).
        sources = scan_sources_from_cli(paths, maps, merge or ["all"])
        scans = [(item.source.name, item.scan) for item in sources]
    else:
        scans = [("", scan_dataset(paths[0], allow_photos=True))]
    if quarantine is not None:
        for name, scanned in scans:  # refuse before spending minutes decoding
            checking.validate_quarantine_dir(scanned.root, quarantine / name if name else quarantine)
    reports = {}
    not_done = 0  # files --quarantine or --rename-misnamed could not move
    for name, scanned in scans:
        if name:
            console.print(f"[bold]source {plain(name)}[/] ({plain(scanned.root)})", highlight=False)
        prefix = f"{name}: " if name else ""
        _print_warnings([prefix + w for w in for_checking(scanned.warnings)])
        with Progress(
            TextColumn("checking"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=err_console,
            transient=True,
            disable=not err_console.is_terminal,  # elsewhere it drew nothing but a blank line
        ) as progress:
            task = progress.add_task("check", total=len(scanned.records))
            report = checking.check_dataset(
                scanned, workers=workers, on_progress=lambda n, task=task: progress.advance(task, n)
            )
        if quarantine is not None:
            target = quarantine / name if name else quarantine
            moves = checking.quarantine_files(report, target, include_duplicates=not keep_duplicates)
            _print_moves(moves)
            not_done += len(moves["failed"])
        if rename_misnamed:
            done = checking.rename_misnamed(report)
            not_done += len(done["failed"])
            err_console.print(f"renamed {len(done['renamed'])} misnamed photo(s)", highlight=False)
            for failure in done["failed"]:
                err_console.print(
                    f"[red]could not rename[/] {plain(failure['path'])}: {plain(failure['error'])}",
                    highlight=False,
                    soft_wrap=True,
                )
        _print_check(report)
        reports[name] = report
    across = checking.duplicates_across_sources(reports) if len(reports) > 1 else []
    moved_across = None
    if across and quarantine is not None and not keep_duplicates:
        moved_across = checking.quarantine_across_sources(across, reports, quarantine)
        _print_moves(moved_across)
        not_done += len(moved_across["failed"])
    if len(reports) > 1:
        _print_across_sources(across)
    if report_path is not None:
        from sportsdet.data.check import CHECK_FORMAT

        document = next(iter(reports.values())).to_dict() if len(reports) == 1 else {
            "format": CHECK_FORMAT,  # what `sportsdet report --check` takes
            "sources": {name: r.to_dict() for name, r in reports.items()},
            "across_sources": {"duplicates": [g.to_dict() for g in across], "quarantine": moved_across},
        }
        if to_stdout:
            print_data(json.dumps(document, indent=1, ensure_ascii=False))
        else:
            write_json(report_path, document)
            err_console.print(f"report written to {plain(report_path)}", highlight=False)
    if not_done:
        # `data check --quarantine q && sportsdet train` went on with the files still in place.
        err_console.print(
            f"[red]error:[/] {not_done} file(s) could not be moved or renamed (listed above); "
            "they are where they were",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)
    if strict and (across or any(r.found_problems for r in reports.values())):
        raise typer.Exit(1)


@contextmanager
def _tables_on_stderr(wanted: bool) -> Iterator[None]:
    """Print what goes to stdout (tables) on stderr instead, while `wanted`."""
    if not wanted:
        yield
        return
    console.file = sys.stderr
    try:
        yield
    finally:
        console.file = None  # back to whatever sys.stdout is


def _print_moves(moved: dict[str, Any]) -> None:
    err_console.print(f"moved {len(moved['moved'])} file(s) to {plain(moved['dir'])}", highlight=False)
    for failure in moved["failed"]:
        err_console.print(
            f"[red]could not move[/] {plain(failure['path'])}: {plain(failure['error'])}",
            highlight=False,
            soft_wrap=True,
        )


def _print_across_sources(groups: list[Any]) -> None:
    """Photos that two sources share: one may be a test photo of the run that trains on both."""

    if not groups:
        console.print("[green]no photo is in more than one source[/]")
        return
    console.print(
        f"[bold red]{len(groups)} photo(s) are in more than one source[/]: training on these sources "
        "together may test on photos it trained on (--quarantine moves every copy but the first)",
        highlight=False,
    )
    _group_table(groups, "duplicates across sources", {
        "labels": lambda group: plain("\n".join(group.labels)),
        "copies": lambda group: "near: resized or re-saved" if group.near else "exact",
    })  # fmt: skip


def _print_split(manifest: SplitManifest) -> None:
    counts = manifest.counts
    how = manifest.strategy if manifest.sources else f"--split {manifest.strategy}"  # each source's own
    title = f"[bold]{plain(manifest.root)}[/]: {plain(how)} --seed {manifest.seed}"
    console.print(title, highlight=False, soft_wrap=True)
    console.print(_counts_table("", manifest.classes, counts))
    totals = " / ".join(f"{split} {sum(c.values()):,}" for split, c in counts.items())
    console.print(f"{len(manifest.classes)} classes: {totals}", highlight=False)


@data_app.command("split")
def split(
    paths: list[Path] = typer.Argument(
        ...,
        metavar="DATA",
        help="Image folder(s) to split (same layouts as `data scan`); several folders or a dataset file "
        "(.toml/.json) are split as the sources of one run, each its own way.",
    ),
    strategy: str | None = typer.Option(
        None,
        "--split",
        help="official (the tree's train/valid/test folders) | random:TEST[,VALID] (e.g. random:0.2, "
        "stratified) | per-class:TRAIN,TEST[,VALID] (e.g. per-class:70,60 images per class) "
        "(default, as in `train`: official for a split tree, else random:0.2).",
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed always gives the same split."),
    classes: str | None = typer.Option(
        None, "--classes", help='Use only these classes, comma-separated (e.g. "croquet,polo,rowing").'
    ),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Write the split manifest to this .json file; `sportsdet train --split FILE` trains on it.",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the whole manifest as JSON instead of a table."
    ),
    maps: list[str] = typer.Option([], "--map", help=_MAP_HELP),
    merge: list[str] = typer.Option([], "--merge", help=_MERGE_HELP),
) -> None:
    """Make a train/valid/test split and show its counts; `--out` saves it, and `sportsdet train
    --split FILE` trains on exactly that split later, even after photos are added to DATA.

    A random or per-class split keeps copies of one photo (identical, or resized and re-saved)
    in one split, so that the test never scores a photo the model trained on."""
    from sportsdet.data.discover import scan_dataset
    from sportsdet.data.splits import keep_copies_together, make_split, parse_split_strategy

    out = given_path(out)
    if strategy is not None:
        parse_split_strategy(strategy)  # a bad --split fails before the tree is walked
    if out is not None and out.suffix.lower() != ".json":
        raise SportsdetError(f"--out {out}: give a .json file name (e.g. split.json)")
    if out is not None:  # refused before the split and the copy search, not after them
        check_writable_file(out, "--out", "split.json")
    names = classes.split(",") if classes is not None else None
    if _is_multi(paths, maps):
        from sportsdet.data.sources import make_multi_split

        manifest = make_multi_split(scan_sources_from_cli(paths, maps, merge, names), strategy, seed, names)
    else:
        scanned = scan_dataset(paths[0])
        default = "official" if scanned.layout == "split" else "random:0.2"
        manifest = make_split(scanned, strategy or default, seed=seed, classes=names)
    with err_console.status("keeping copies of one photo in one split"):  # as `train` does
        manifest = keep_copies_together(manifest)
    if as_json:  # the manifest as --out writes it, photo hashes and all
        print_data(json.dumps(manifest.hash_photos().to_dict(), indent=1, ensure_ascii=False))
    else:
        _print_split(manifest)
    for note in manifest.notes:  # as `train` prints them
        warn(note, label="note")
    if out is not None:
        manifest.save(out)
        err_console.print(f"split written to {plain(out)}", highlight=False)


@data_app.command("fetch")
def fetch(
    source: str = typer.Argument(
        None,
        metavar="SOURCE",
        help="A known dataset name (see --list) or the http(s) URL of a .zip, .tar.gz or .rar archive "
        "of class folders.",
        show_default=False,
    ),
    dest: Path = typer.Option(Path("data"), "--dest", "-d", help="Folder to put datasets in."),
    force: bool = typer.Option(
        False,
        "--force",
        help="Download and unpack again even when the dataset is already there (only a folder that data "
        "fetch made is ever replaced).",
    ),
    timeout: float = typer.Option(
        60.0,
        "--timeout",
        callback=seconds_from(1.0),
        help="Seconds for lookup, connect, headers and redirects in all, and the longest stall of the body.",
    ),
    max_time: float | None = typer.Option(
        None, "--max-time", callback=seconds_from(1.0, 7 * MAX_SECONDS),
        help="Seconds for the whole download (default: none, while data flows).",
    ),
    list_known: bool = typer.Option(False, "--list", help="List the datasets known by name and exit."),
) -> None:
    """Download a dataset, unpack it, and show its classes, ready for `sportsdet train`.

    The archive is kept in DEST/downloads/ and unpacked into DEST/NAME only once complete, so an
    interrupted fetch never leaves a half dataset; run the same command again to finish it.
    """
    from sportsdet.data.discover import scan_dataset
    from sportsdet.data.fetch_dataset import KNOWN_DATASETS, fetch_dataset

    if list_known:
        for known in KNOWN_DATASETS.values():
            console.print(
                f"[bold]{known.name}[/]  {known.title}\n  {known.url}\n  {known.note}", highlight=False
            )
        return
    if source is None:
        raise SportsdetError("name a dataset (e.g. `sportsdet data fetch uiuc-sports`) or pass --list")
    root = fetch_dataset(
        source, dest, force=force, timeout=timeout, max_seconds=max_time,
        say=lambda message: warn(message, label="note"),
    )  # fmt: skip
    scan_result = scan_dataset(root)
    _print_scan(scan_result)
    _print_warnings(scan_result.warnings)
    if len(scan_result.classes) < 2:  # not ready: training needs two classes at least
        warn(f"{root} holds {len(scan_result.classes)} class folder(s); look inside it for the folder "
             "of one folder per sport, and train on that")
        return
    console.print(f'ready: sportsdet train "{plain(root)}" --out runs/NAME', highlight=False, soft_wrap=True)
