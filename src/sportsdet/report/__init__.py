"""The run report: one self-contained HTML page per run, and a side-by-side comparison.

    write_report(run_or_eval_dir, out=None) -> Path     # RUN/report.html by default
    write_comparison([run_a, run_b, ...], out) -> Path

Train and evaluate can call `write_report_after(run_dir, warn)` at the end (a few seconds at
100 classes; it warns instead of failing the command). Reads only the files
docs/ARCHITECTURE.md lists; every metric comes from metrics.json, i.e. from `sportsdet.metrics`.
Raises `SportsdetError` for a missing folder or a damaged file; an existing report is only
replaced once the new one is complete.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Sequence
from pathlib import Path

from sportsdet.errors import SportsdetError
from sportsdet.files import atomic_write, file_in_folder, write_target
from sportsdet.report.inputs import ReportInputs, load_inputs
from sportsdet.run_folder import REPORT as REPORT_NAME  # noqa: E402

__all__ = [
    "REPORT_NAME", "ReportInputs", "load_inputs", "write_comparison", "write_report", "write_report_after",
]


def _write_atomic(path: Path, text: str) -> Path:
    """A crash or error never leaves half a report (sportsdet.files.atomic_write)."""
    return atomic_write(path, text)


def _out_path(out: str | Path | None, default: Path) -> Path:
    """--out as given; a folder (an existing one, or one written with a trailing /) gets
    default's name inside it. An existing file that is not an HTML page is never replaced: -o
    RUN/eval/metrics.json wrote the page over the run's metrics."""
    path = file_in_folder(out if out is not None else default, default.name)
    if path.exists() and path.suffix.lower() not in (".html", ".htm") and not _is_html_page(path):
        raise SportsdetError(f"{path}: exists and is not an HTML page; give the report a new file name")
    return path


def _is_html_page(path: Path) -> bool:
    """A page this command wrote before under a name without .html (`-o myreport`)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(15).lower() == b"<!doctype html>"
    except OSError:
        return False


def write_report(
    run_or_eval_dir: str | Path,
    out: str | Path | None = None,
    *,
    eval_dir: str | Path | None = None,
    check_report: str | Path | None = None,
    gallery_limit: int | None = None,
) -> Path:
    """Write the report for a run folder (or an evaluation folder) and return its path.

    `out` defaults to RUN_OR_EVAL_DIR/report.html; a folder means report.html inside it.
    `eval_dir` names the evaluation to show when it is not RUN/eval; `check_report` names a
    `sportsdet data check --report` file (else RUN/data_check.json is used when present).
    """
    from sportsdet.report.html import GALLERY_LIMIT, render_report

    path = _out_path(out, Path(run_or_eval_dir).expanduser() / REPORT_NAME)
    inputs = load_inputs(run_or_eval_dir, eval_dir=eval_dir, check_report=check_report)
    limit = GALLERY_LIMIT if gallery_limit is None else max(0, int(gallery_limit))
    page = render_report(inputs, gallery_limit=limit)
    return _write_atomic(path, page)


def write_report_after(
    run_or_eval_dir: str | Path, warn: Callable[[str], None] | None = None
) -> Path | None:
    """For the end of `train` / `evaluate`: write the report, but never fail the command for it.

    A damaged input or an unwritable folder becomes one warning (via `warn`) and None; the
    run's own results are already safely on disk by then. The page from before goes (through a
    symbolic link, the page it leads to): it shows earlier results (a full disk left it in place,
    read as this run's).
    """
    try:
        return write_report(run_or_eval_dir)
    except (SportsdetError, OSError) as exc:
        old = Path(run_or_eval_dir) / REPORT_NAME
        try:
            write_target(old).unlink()
            gone = "; the page from before, which showed earlier results, is removed"
        except FileNotFoundError:
            gone = ""
        except (SportsdetError, OSError):
            gone = f"; {old} is from before and shows earlier results"
        if warn is not None:
            again = f"sportsdet report {shlex.quote(str(run_or_eval_dir))}"
            warn(f"report not written: {exc}{gone} (`{again}` writes it once this is fixed)")
        return None


def write_comparison(run_dirs: Sequence[str | Path], out: str | Path) -> Path:
    """Write one page putting several runs side by side; returns its path."""
    from sportsdet.report.html import render_comparison

    if len(run_dirs) < 2:
        raise SportsdetError("comparing needs at least two run folders, e.g. "
                             "`sportsdet report --compare runs/a runs/b --out compare.html`")
    target = _out_path(out, Path("comparison.html"))
    runs = [load_inputs(path) for path in run_dirs]
    seen: dict[tuple[Path | None, Path | None], str | Path] = {}
    for path, run in zip(run_dirs, runs, strict=True):
        key = (run.run_dir, run.eval_dir)
        if key in seen:
            raise SportsdetError(
                f"{seen[key]} and {path} are the same run and evaluation; pass different runs (or "
                "another evaluation of the run, e.g. RUN/eval-web)"
            )
        seen[key] = path
    return _write_atomic(target, render_comparison(runs))
