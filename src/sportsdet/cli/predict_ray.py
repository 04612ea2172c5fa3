"""`sportsdet predict --engine ray`: the CLI side (progress and summary) of `cluster.ray_predict`.

Kept apart from `cli/predict.py` so that a plain `sportsdet predict` never imports Ray.
"""

from __future__ import annotations

from pathlib import Path

import typer

from sportsdet.cli.app import console, err_console


def predict_on_ray(
    inputs: list[str],
    output: Path,
    *,
    model: Path,
    top_k: int,
    backend: str,
    int8: bool,
    threads: int | None,
    workers: int | None,
    batch_size: int | None,
    address: str | None,
    timeout: float,
    abstain: bool = True,
    min_score: float | None = None,
) -> None:
    """Run the Ray job with a live count, then say what was written, failed and skipped."""
    from rich.markup import escape
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from sportsdet.cluster.ray_predict import import_ray, run_ray_predict

    import_ray()  # the missing-extra message before anything else happens
    where = f"joining the Ray cluster at {address}" if address else "starting a local Ray"
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,  # elsewhere it drew nothing but a blank line
    )

    def on_start(already_done: int) -> None:
        if already_done:
            err_console.print(
                f"{escape(str(output))} already holds {already_done} result(s): those inputs are skipped",
                soft_wrap=True,
            )
        err_console.print(f"{where} ...")

    try:
        with progress:
            task = progress.add_task("starting", total=None)

            def on_progress(summary) -> None:  # noqa: ANN001
                progress.update(
                    task, description=f"labelled {summary.written} images ({summary.failed} failed)"
                )

            summary = run_ray_predict(
                inputs,
                output,
                model=model,
                top_k=top_k,
                backend=backend,
                int8=int8,
                threads=threads or 1,
                workers=workers,
                batch_size=batch_size,
                address=address,
                url_timeout=timeout,
                abstain=abstain,
                min_score=min_score,
                on_start=on_start,
                on_progress=on_progress,
            )
    except KeyboardInterrupt:
        err_console.print(
            f"[yellow]interrupted[/]: what was labelled is in {escape(str(output))}; run the same command "
            "again to go on from there"
        )
        raise typer.Exit(130) from None
    rate = summary.written / summary.seconds if summary.seconds else 0.0
    retried = f", tried again {summary.retried} that had failed" if summary.retried else ""
    if summary.repeated:
        retried += f"; {summary.repeated} photo(s) given by more than one input labelled once"
    console.print(
        f"wrote {summary.written} result(s) to {escape(str(output))} in {len(summary.parts)} part(s) "
        f"({rate:.1f} images/s); skipped {summary.skipped} photo(s) already there{retried}",
        highlight=False,
        soft_wrap=True,  # one line a script can parse, whatever the terminal's width
    )
    if summary.uncertain:  # as plain predict says it
        err_console.print(
            f"{summary.uncertain} of {summary.written} input(s) uncertain: no label, the best guess first "
            "in `top_k` (--min-score or --no-abstain change that)",
            highlight=False,
            soft_wrap=True,
        )
    if summary.failed:
        err_console.print(
            f"[yellow]{summary.failed} of {summary.written} input(s) could not be labelled "
            "(their `error` column says why)[/]"
        )
        raise typer.Exit(1)


def check_ray_options(
    engine: str, output: Path | None, output_format: str = "table", device: str = "cpu"
) -> None:
    """--output and --address belong to --engine ray, and it needs --output; plain predict's
    --format and --device mean nothing to it (they were taken and ignored)."""
    from sportsdet.errors import SportsdetError

    if engine != "ray":
        raise SportsdetError("--output and --address are for --engine ray (plain predict prints its results)")
    if output is None:
        raise SportsdetError("--engine ray writes Parquet files: pass --output DIR")
    if output_format != "table":
        raise SportsdetError(
            f"--format {output_format} is for plain predict; --engine ray writes Parquet files"
        )
    if device != "cpu":
        raise SportsdetError(
            f"--device {device} is for plain predict's torch backend; --engine ray runs on CPUs"
        )
