"""CLI verb: export a bundle to ONNX (optionally INT8) with a parity check."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import typer

from sportsdet.cli.app import app, console, err_console, given_path, plain, warn
from sportsdet.errors import SportsdetError


@app.command("export")
def export_command(
    bundle: Path = typer.Argument(
        ..., help="Model bundle folder (e.g. runs/NAME/model), a run folder, or builtin (give --out).",
        metavar="BUNDLE",
    ),
    format: str = typer.Option("onnx", "--format", "-f", help="Export format. Only 'onnx' for now."),
    int8: bool = typer.Option(
        False,
        "--int8",
        help="Also write a static INT8 model (model.int8.onnx), calibrated on training images; "
        "reports its accuracy change on the held-out split.",
    ),
    out: str | None = typer.Option(  # text: a trailing / (a folder to make) survives
        None,
        "--out",
        "-o",
        help="Output .onnx file; a folder (or a name ending in /) gets model.onnx inside. Default: "
        "BUNDLE/model.onnx, so the bundle carries it.",
        metavar="PATH",
    ),
    calibration_data: Path | None = typer.Option(
        None,
        "--calibration-data",
        help="Folder of training images (<label>/<image>) for the parity check and INT8 calibration, "
        "instead of the photos the bundle records (needed when it records none, or they moved).",
    ),
    eval_data: Path | None = typer.Option(
        None,
        "--eval-data",
        help="Folder of labelled held-out images (<label>/<image>) for the INT8 accuracy check. "
        "Default: the test (or valid) split of the bundle's split manifest.",
    ),
    max_int8_drop: float = typer.Option(
        1.0, "--max-int8-drop", help="Fail when INT8 loses more than this many accuracy points."
    ),
    quant_format: str = typer.Option(
        "qdq",
        "--quant-format",
        help="INT8 graph form: 'qdq' (default) or 'qoperator' (about as fast here, bench/throughput.py).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the export report as JSON on stdout."),
) -> None:
    """Export a model bundle to ONNX with labels and preprocessing inside, checked against PyTorch."""
    calibration_data, eval_data = given_path(calibration_data), given_path(eval_data)
    if format.lower() != "onnx":
        raise SportsdetError(f"unsupported export format {format!r}; use --format onnx")
    if quant_format not in ("qdq", "qoperator"):  # export.QUANT_FORMATS, said with the flag's name
        raise SportsdetError(f"unknown --quant-format {quant_format!r}; use qdq or qoperator")
    from sportsdet.export import PARITY_MAX_PROB_DIFF, PARITY_MIN_AGREEMENT, export_bundle
    from sportsdet.run_folder import lock_run, resolve_bundle_dir, run_of_bundle

    run = run_of_bundle(resolve_bundle_dir(bundle))
    if run is not None and out is not None and not given_path(Path(out)).resolve().is_relative_to(run.path):
        run = None  # written elsewhere: a read-only run exports too
    # A run written into is held as train holds it: `train --force` into the run meanwhile moved
    # the export's half-written files aside, and a finished export could sit beside a new model.
    with lock_run(run) if run is not None else contextlib.nullcontext(), err_console.status(
        "exporting"
    ) as status:
        report = export_bundle(
            bundle,
            out=out,
            int8=int8,
            calibration_data=calibration_data,
            eval_data=eval_data,
            max_int8_drop=max_int8_drop,
            quant_format=quant_format,
            progress=lambda message: status.update(message),
        )
    for note in report.notes:
        warn(note)
    if as_json:
        console.print_json(json.dumps(report.to_dict()))
        return
    parity = report.parity
    console.print(f"wrote {plain(report.path)}", highlight=False)
    console.print(
        f"parity vs PyTorch on {parity.n} images ({plain(parity.data)}): top-1 agreement "
        f"{parity.top1_agreement:.1%} (needs >= {PARITY_MIN_AGREEMENT:.0%}), largest probability "
        f"difference {parity.max_prob_diff:.1e} (allowed {PARITY_MAX_PROB_DIFF:.0e})",
        highlight=False,
    )
    if report.int8 is not None:
        q = report.int8
        console.print(
            f"wrote {plain(q.path)} (INT8 {q.quant_format}, {q.calibration_images} calibration images; "
            "predict, serve and evaluate use it with --int8)",
            highlight=False,
        )
        if q.fp32_accuracy is not None and q.int8_accuracy is not None:
            console.print(
                f"accuracy on {plain(q.heldout)}: fp32 {q.fp32_accuracy:.2%}, INT8 {q.int8_accuracy:.2%} "
                f"({q.accuracy_change_points:+.2f} points); top-1 agreement {q.top1_agreement:.1%}",
                highlight=False,
            )
        else:
            console.print(f"held-out: {plain(q.heldout)}; INT8 agrees with fp32 on {q.top1_agreement:.1%}",
                          highlight=False)
        if q.abstain_answered is not None:
            # The rule was fitted on float scores; INT8's scores differ a little.
            fp32_answered, int8_answered = q.abstain_answered
            console.print(
                f"abstain rule on the same photos: fp32 answers {fp32_answered}, INT8 {int8_answered}; "
                f"{q.abstain_changed} change between answered and uncertain",
                highlight=False,
            )
