"""CLI verb: report (one self-contained HTML page per run, or several runs side by side)."""

from __future__ import annotations

from pathlib import Path

import typer

from sportsdet.cli.app import app, console, err_console, plain


@app.command("report")
def report(
    run_dirs: list[Path] = typer.Argument(
        ...,
        help="Run folder (from `sportsdet train`) or evaluation folder (from `sportsdet evaluate`); "
        "with --compare, two or more of them.",
        show_default=False,
        metavar="RUN_DIR",
    ),
    out: str | None = typer.Option(  # text: a trailing / (a folder to make) survives
        None,
        "--out",
        "-o",
        help="Where to write the HTML file; a folder (or a name ending in /) gets report.html inside "
        "(comparison.html with --compare) (default: RUN_DIR/report.html; with --compare: "
        "./comparison.html).",
        metavar="PATH",
    ),
    eval_dir: Path | None = typer.Option(
        None,
        "--eval",
        help="Evaluation folder to show when it is not RUN_DIR/eval (e.g. an evaluation on other photos).",
    ),
    check: Path | None = typer.Option(
        None,
        "--check",
        help="A `sportsdet data check --report` JSON file to summarise (default: RUN_DIR/data_check.json "
        "when present).",
    ),
    compare: bool = typer.Option(
        False,
        "--compare",
        help="Put the given runs side by side: headline metrics, per-class F1 differences, curves overlaid.",
    ),
    gallery: int | None = typer.Option(
        None, "--gallery", min=0, max=500,
        help="Pictures per gallery (correct, wrong, highest-loss; default 24); not with --compare.",
    ),
) -> None:
    """Write an HTML report that opens offline and can be mailed: curves, metrics with 95% CI,
    per-class table, confusion matrix, galleries and calibration."""
    from sportsdet.errors import SportsdetError
    from sportsdet.report import write_comparison, write_report

    if compare:
        if eval_dir is not None or check is not None or gallery is not None:
            raise SportsdetError(
                "--eval, --check and --gallery apply to a single run's report; with --compare, pass "
                "run folders (each uses its own eval/) or evaluation folders"
            )
        with err_console.status("writing comparison..."):
            path = write_comparison(run_dirs, out if out is not None else "comparison.html")
    else:
        if len(run_dirs) != 1:
            raise SportsdetError(
                f"got {len(run_dirs)} folders; pass one run folder, or add --compare "
                "to put several side by side"
            )
        with err_console.status("writing report..."):
            path = write_report(
                run_dirs[0], out, eval_dir=eval_dir, check_report=check, gallery_limit=gallery
            )
    size_kb = path.stat().st_size / 1024
    err_console.print(f"report written ({size_kb:,.0f} KB); open it in any browser")
    console.print(plain(path), highlight=False, soft_wrap=True)
