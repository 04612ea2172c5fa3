"""CLI verbs: `sportsdet predict` (label photos) and `sportsdet info` (what is inside a bundle)."""

from __future__ import annotations

import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer

from sportsdet.cli.app import (
    app,
    check_abstain_options,
    console,
    err_console,
    min_score_option,
    no_abstain_option,
    plain,
    print_data,
    seconds_from,
)

TABLE_HINT_ROWS = 1000  # past this many photos, `predict` says that csv/jsonl stream the results

NO_BUILTIN_MESSAGE = (
    "no built-in model is installed yet; pass --model RUN/model (train one with `sportsdet train`)"
)


class OutputFormat(StrEnum):
    table = "table"
    jsonl = "jsonl"
    csv = "csv"


class Engine(StrEnum):
    local = "local"
    ray = "ray"


class BackendName(StrEnum):
    auto = "auto"
    onnx = "onnx"
    torch = "torch"


def _bundle_dir(model: Path | None) -> Path:
    """--model given -> that bundle (or RUN/model, or an .onnx file); else the built-in model."""
    from sportsdet.bundle import builtin_bundle_path
    from sportsdet.errors import SportsdetError
    from sportsdet.run_folder import resolve_bundle_dir
    from sportsdet.runtime import is_onnx_file

    if model is not None:
        model = model.expanduser()  # `--model=~/m.onnx`: the shell leaves that ~ alone
        if is_onnx_file(model):
            return model
        return resolve_bundle_dir(model)
    builtin = builtin_bundle_path()
    if builtin is None:
        raise SportsdetError(NO_BUILTIN_MESSAGE)
    return builtin


@app.command("predict")
def predict_command(
    inputs: list[str] = typer.Argument(
        ...,
        metavar="INPUTS",
        help="Image files (JPEG, PNG, HEIC, WebP, AVIF, GIF, BMP, TIFF), folders (searched recursively), "
        "quoted glob patterns such as 'photos/**/*.jpg', or http(s) URLs of images.",
        show_default=False,
    ),
    model: Path | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Model bundle folder, a run folder (its model/ is used), or an exported .onnx file. "
        "Default: the built-in model.",
    ),
    top_k: int = typer.Option(5, "--top-k", "-k", min=1, help="How many best labels to report per image."),
    output_format: OutputFormat = typer.Option(
        OutputFormat.table,
        "--format",
        "-f",
        help="table: readable; jsonl: one JSON object per input; csv: a header and one row per input.",
    ),
    batch_size: int | None = typer.Option(
        None,
        "--batch-size",
        "-b",
        min=1,
        help="Images per model run. Default: the fastest for the backend (onnxruntime: 2, one run per "
        "CPU thread at a time; torch: 16).",
    ),
    timeout: float = typer.Option(
        10.0, "--timeout", callback=seconds_from(0.1), help="Seconds allowed to download each URL."
    ),
    backend: BackendName = typer.Option(
        BackendName.auto,
        "--backend",
        help="auto: onnxruntime when the bundle carries model.onnx or only model.int8.onnx (the built-in "
        "model; see `sportsdet export`), else torch; onnx or torch to choose.",
    ),
    int8: bool = typer.Option(
        False, "--int8", help="Use the bundle's INT8 model (model.int8.onnx, from `sportsdet export --int8`)."
    ),
    threads: int | None = typer.Option(
        None,
        "--threads",
        min=1,
        help="CPU threads for the model. Default: all CPUs this process may use (with --engine ray: 1 per "
        "model actor).",
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        min=1,
        help="Threads that each decode a batch and run the model on it (one decodes while another "
        "runs). Default: CPUs, at least 2. Each worker downloads its own URLs, so more workers "
        "download more at once.",
    ),
    device: str = typer.Option(
        "cpu", "--device", help="Torch device (torch backend only), e.g. cpu or cuda."
    ),
    engine: Engine = typer.Option(
        Engine.local,
        "--engine",
        help="local: this process; ray: a Ray Data job (the `cluster` extra) that writes Parquet to "
        "--output, resumable; inputs may also be s3:// or gs:// URIs and .txt/.csv/.parquet listings "
        "with a `path` column. "
        "With ray, --workers is the number of model actors and --threads the threads of each.",
    ),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="--engine ray: folder for the Parquet results (re-runs skip the photos already there, "
        "known by path).",
    ),
    address: str | None = typer.Option(
        None, "--address", help="--engine ray: a Ray cluster (HOST:PORT). Default: start a local Ray."
    ),
    min_score: float | None = min_score_option(),
    no_abstain: bool = no_abstain_option(),
) -> None:
    """Say which sport each photo shows. Exit code 1 when any input could not be labelled."""
    check_abstain_options(no_abstain, min_score)
    if engine is Engine.ray or output is not None or address is not None:
        from sportsdet.cli.predict_ray import check_ray_options, predict_on_ray

        check_ray_options(engine.value, output, output_format.value, device)
        return predict_on_ray(
            inputs,
            output,
            model=_bundle_dir(model),
            top_k=top_k,
            backend=backend.value,
            int8=int8,
            threads=threads,
            workers=workers,
            batch_size=batch_size,
            address=address,
            timeout=timeout,
            abstain=not no_abstain,
            min_score=min_score,
        )
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from sportsdet.predict import Predictor, csv_header, csv_line, csv_row, to_jsonl

    predictor = Predictor(
        _bundle_dir(model),
        device=device,
        batch_size=batch_size,
        top_k=top_k,
        backend=backend.value,
        int8=int8,
        threads=threads,
        workers=workers,
        url_timeout=timeout,
        abstain=not no_abstain,
        min_score=min_score,
    )
    k = predictor.top_k
    failed = 0
    warned = uncertain = 0
    total = 0
    rows = []
    if output_format is OutputFormat.csv:
        print_data(csv_line(csv_header(k)))
    # The count of inputs is unknown up front (folders are walked lazily): a spinner, not a bar.
    progress = Progress(
        SpinnerColumn(),
        TextColumn("labelling"),
        BarColumn(),
        TextColumn("{task.completed} images"),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not err_console.is_terminal,  # elsewhere it drew nothing but a blank line
    )
    try:
        with progress:
            task = progress.add_task("predict", total=None)
            for result in predictor.predict_sources(inputs):
                total += 1
                failed += not result.ok
                warned += result.warning is not None
                uncertain += bool(result.ok and result.uncertain)
                progress.advance(task)
                if output_format is OutputFormat.jsonl:
                    print_data(to_jsonl(result))
                elif output_format is OutputFormat.csv:
                    print_data(csv_line(csv_row(result, k)))
                else:
                    rows.append(result)
                    if len(rows) == TABLE_HINT_ROWS:  # 20,000 rows took 14 s to draw, at the very end
                        progress.console.print(
                            f"{TABLE_HINT_ROWS:,} photos so far: the table is drawn once all are labelled; "
                            "--format jsonl or csv print each one as it comes",
                            highlight=False,
                            soft_wrap=True,
                        )
    except KeyboardInterrupt:  # typer alone printed a blank line, and the table was lost
        if output_format is OutputFormat.table and rows:
            _print_table(rows, k)
        shown = " (those labelled are listed above)" if total else ""
        err_console.print(f"[yellow]interrupted[/] after {total} photo(s){shown}", highlight=False)
        raise typer.Exit(130) from None
    if output_format is OutputFormat.table:
        _print_table(rows, k)
    # "labelled with a warning" counted photos that got no label (uncertain) as labelled.
    # One line each however narrow the terminal or log (a log wrapped them at 80 columns).
    if warned:
        err_console.print(f"[yellow]{warned} of {total} input(s) came with a warning[/]",
                          highlight=False, soft_wrap=True)  # fmt: skip
    if predictor.abstain is None and not no_abstain and total > failed:
        # Said, since "no uncertain photos" reads as "the model was sure of every one".
        err_console.print("this model has no abstain rule: every photo got its best label, however unsure "
                          "(--min-score X says 'uncertain' under X)", highlight=False, soft_wrap=True)
    if uncertain:
        err_console.print(f"{uncertain} of {total} input(s) uncertain: no label, the best guess kept "
                          "(--min-score or --no-abstain change that)", highlight=False, soft_wrap=True)
    if failed:
        err_console.print(f"[yellow]{failed} of {total} input(s) could not be labelled[/]",
                          highlight=False, soft_wrap=True)  # fmt: skip
        raise typer.Exit(1)


def _shared_folder(inputs: list[str]) -> str:
    """The folder all inputs lie in when there are several local files (the table then names each
    by its path inside it, so long paths do not crowd out the labels); '' when none is shared."""
    if len(inputs) < 2 or any("://" in name for name in inputs):
        return ""
    try:
        folder = os.path.commonpath(inputs)
    except ValueError:  # absolute and relative paths mixed
        return ""
    return "" if folder in ("", ".", os.sep) or folder in inputs else folder


def _print_table(results: list, k: int) -> None:
    from rich.table import Table

    folder = _shared_folder([result.input for result in results])
    table = Table()
    table.add_column("input", overflow="fold")
    table.add_column("label")
    table.add_column("score", justify="right")
    # One last column: the runner-up labels, or why an input failed or is doubtful (with --top-k 1,
    # only that); headed "next 4" alone, a warning sat under it as if it were one of the four.
    noted = any(not result.ok or result.warning for result in results)
    heading = (f"next {k - 1}" + (", notes" if noted else "")) if k > 1 else "notes"
    table.add_column(heading, overflow="fold")
    for result in results:
        name = plain(os.path.relpath(result.input, folder) if folder else result.input)
        if result.ok:
            others = plain(", ".join(f"{label} {score:.1%}" for label, score in result.top_k[1:]))
            if result.warning:  # e.g. a 1x1 picture: labelled, but say why the label is doubtful
                others = f"[yellow]warning: {plain(result.warning)}[/]" + (f"\n{others}" if others else "")
            if result.uncertain:
                guess, guess_score = result.top_k[0]
                said = f"[yellow]uncertain[/] — best guess: {plain(guess)} {guess_score:.1%}"
                table.add_row(name, said, "", others)
            else:
                table.add_row(name, plain(result.label), f"{result.score:.1%}", others)
        else:
            table.add_row(name, "[red]error[/]", "", f"[red]{plain(result.error)}[/]")
    if folder:  # on a line of its own: a long path must not be wrapped to the table's width
        console.print(f"in {plain(folder)}{os.sep}", soft_wrap=True, highlight=False)
    console.print(table)


# ----------------------------------------------------------------------------- info


def _file_sizes(folder: Path) -> dict[str, int]:
    return {
        p.relative_to(folder).as_posix(): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()
    }


def onnx_info(path: Path) -> dict[str, Any]:
    """What `sportsdet info` shows for an exported .onnx file (from its metadata)."""
    from sportsdet.runtime import OnnxBackend

    backend = OnnxBackend(path, threads=1)
    meta = backend.info
    return {
        "path": str(path),
        "format": "onnx (sportsdet-onnx/1)",
        "model": {"name": meta.model.get("name"), "config": meta.model.get("config", {}), "output_key": "-"},
        "num_classes": len(meta.labels),
        "labels": meta.labels,
        "preprocessing": meta.preprocessing.to_dict(),
        "data": {},
        "training": {},
        "metrics": {},
        "versions": meta.versions,
        "quantization": meta.quantization,
        "output": meta.output,
        "abstain": meta.abstain.to_dict() if meta.abstain is not None else None,
        "files": {path.name: path.stat().st_size},
    }


def bundle_info(bundle_dir: Path) -> dict[str, Any]:
    """Everything `sportsdet info` shows, as a JSON-ready dict."""
    from sportsdet.bundle import load_bundle
    from sportsdet.runtime import is_onnx_file

    if is_onnx_file(bundle_dir):
        return onnx_info(bundle_dir)

    from sportsdet.errors import SportsdetError
    from sportsdet.seen_photos import load_seen

    bundle = load_bundle(bundle_dir)
    manifest = bundle.manifest
    try:
        seen = load_seen(bundle.path)
    except SportsdetError as exc:  # a damaged seen_photos.json: the rest of info still holds
        seen, seen_problem = None, str(exc)
    else:
        seen_problem = None
    return {
        "path": str(bundle.path),
        "format": manifest.get("format"),
        "model": {"name": bundle.model_name, "config": bundle.model_config, "output_key": bundle.output_key},
        "num_classes": bundle.num_classes,
        "labels": bundle.labels,
        "label_aliases": bundle.label_aliases,
        "preprocessing": bundle.preprocessing.to_dict(),
        "data": bundle.data,
        "training": bundle.training,
        "metrics": bundle.metrics,
        "versions": bundle.versions,
        "weights": manifest.get("weights", {}),
        "abstain": manifest.get("abstain"),
        "seen_photos": seen.counts() if seen else None,
        "seen_photos_unreadable": seen_problem,
        "seen_near_copies": bool(seen and seen.near),  # resized or re-saved copies found too
        "files": _file_sizes(bundle.path),
        "evaluation": _run_evaluation(bundle),
    }


def _run_evaluation(bundle: Any) -> dict[str, Any] | None:
    """A run's bundle: the test score of its own evaluation (RUN/eval), which bundle.json does not
    hold (`info` on a run showed no test score at all); None when there is none of this model."""
    from sportsdet.run_folder import EVAL_FILES, RunFolder

    found = RunFolder(bundle.path.parent).eval / EVAL_FILES[0]  # metrics.json
    weights = (bundle.manifest.get("weights") or {}).get("sha256")
    try:
        metrics = json.loads(found.read_text(encoding="utf-8"))
        scored = metrics.get("weights_sha256")
        # By the weights scored: a run moved or copied since keeps its evaluation (its path
        # changed); one trained again since does not. By path for evaluations made before.
        if scored and weights:
            same = scored == weights
        else:
            same = Path(metrics["bundle"]).resolve() == bundle.path.resolve()
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not same or not isinstance(metrics.get("accuracy"), float):
        return None
    sources = metrics.get("per_source") if isinstance(metrics.get("per_source"), dict) else {}
    return {
        "file": str(found),
        "split": metrics.get("split"),
        "n": metrics.get("n"),
        "accuracy": metrics["accuracy"],
        "per_source": {
            name: {"n": row.get("n"), "accuracy": row.get("accuracy")}
            for name, row in sources.items()
            if isinstance(row, dict)
        },
    }


def _short(value: Any, limit: int = 100) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _summary_rows(info: dict) -> list[tuple[str, str]]:
    """The bundle's record in a line per topic, in words; `info --json` keeps every field."""
    labels, pre = info["labels"], info["preprocessing"]
    data, training, metrics = info["data"] or {}, info["training"] or {}, info["metrics"] or {}
    config = info["model"]["config"] or {}
    switches = [k.replace("_", " ") for k, v in config.items() if v is True]
    others = {k: v for k, v in config.items() if not isinstance(v, bool)}
    model = (info["model"]["name"] or "unknown") + (f" ({', '.join(switches)})" if switches else "")
    rows = [("model", model + (f" {_short(others)}" if others else ""))]
    more = f", ... ({len(labels) - 8} more; --labels lists them all)" if len(labels) > 8 else ""
    rows.append(("labels", f"{len(labels)}: {', '.join(labels[:8])}{more}"))
    aliases = info.get("label_aliases") or {}
    if aliases:  # the data's names of renamed labels: what a class folder may still be called
        rows.append(("renamed", ", ".join(f"{old} -> {new}" for old, new in aliases.items())
                     + " (evaluate reads folders by either name)"))  # fmt: skip

    def numbers(values: Any) -> str:
        values = values if isinstance(values, list) else [values]
        return ", ".join(f"{v:.3g}" for v in values) if len(set(values)) > 1 else f"{values[0]:.3g}"

    fit = pre.get("resize", "-")
    if fit == "crop":
        fit += f" (crop_pct {pre['crop_pct']:g})"
    rows.append((
        "input",
        f"{pre['input_size']} px, {fit}, {pre.get('interpolation', '-')}, "
        f"mean {numbers(pre['mean'])}, std {numbers(pre['std'])}",
    ))
    quantized = info.get("quantization")
    if isinstance(quantized, str) and quantized.lower() not in ("", "none"):
        rows.append(("quantization", quantized))
    elif isinstance(quantized, dict) and quantized:
        words = [
            f"{quantized[key]} {key}" for key in ("weights", "activations") if quantized.get(key)
        ] + [f"{quantized[key]}" for key in ("method", "format") if quantized.get(key)]
        if quantized.get("calibration"):
            what = "synthetic images" if quantized.get("calibration_data") == "synthetic" else "photos"
            count = quantized.get("calibration_images", "?")
            words.append(f"{quantized['calibration']} calibration on {count} {what}")
        if quantized.get("float_convs"):
            words.append(f"{quantized['float_convs']} convolutions kept in float")
        rows.append(("quantization", ", ".join(words) or _short(quantized)))
    if data:
        # Built-in bundles record their sources by name; a run records them in its data scan.
        sources = data.get("sources") or (data.get("scan") or {}).get("sources") or {}
        roots = [entry["root"] for entry in sources.values() if entry.get("root")]
        rows.append(("data", data.get("name") or ", ".join(roots) or data.get("root") or "-"))
        if sources:

            def classes(entry: dict) -> Any:  # a count (built-in) or the names (a run's scan)
                named = entry.get("classes", entry.get("num_classes", "?"))
                return len(named) if isinstance(named, list) else named

            described = [f"{name} ({classes(entry)} classes)" for name, entry in sources.items()]
            rows.append(("sources", ", ".join(described)))
        counts = " / ".join(f"{part} {n:,}" for part, n in (data.get("counts") or {}).items())
        strategy = data.get("split", "-")
        rows.append(("split", f"{counts} ({strategy})" if counts else str(strategy)))
    if training:
        minutes = training.get("seconds")
        took = f", {minutes / 60:.1f} min" if isinstance(minutes, (int, float)) else ""
        rows.append((
            "training",
            f"{training.get('recipe', '-')}, {training.get('epochs_run', '?')} epochs "
            f"(best {training.get('best_epoch', '?')}){took}, seed {training.get('seed', '-')}"
            + (", resumed" if training.get("resumed") else ""),
        ))
        if training.get("command"):
            rows.append(("trained by", str(training["command"])))
        calibration = training.get("calibration") or {}
        if calibration.get("method") == "none":  # training fitted no temperature, and says why
            rows.append(("calibration", f"not calibrated: {calibration.get('why') or 'no reason recorded'}"))
        elif isinstance(calibration.get("temperature"), (int, float)):
            ece = (calibration.get("valid_ece_before"), calibration.get("valid_ece_after"))
            rows.append((
                "calibration",
                f"temperature {calibration['temperature']:.3f} on {calibration.get('valid_images', '?')} "
                "validation photos" + (f", ECE {ece[0]:.1%} -> {ece[1]:.1%}" if None not in ece else ""),
            ))
    if isinstance(metrics.get("best_val_accuracy"), (int, float)):
        loss = metrics.get("best_val_loss")
        rows.append((
            "validation",
            f"best accuracy {metrics['best_val_accuracy']:.1%}"
            + (f", loss {loss:.3f}" if isinstance(loss, (int, float)) else "")
            + (f" (selected by {metrics['selected_by']})" if metrics.get("selected_by") else ""),
        ))
    if not (data or training or metrics):
        exported = str(info.get("format", "")).startswith("onnx")
        kept = "- (an exported .onnx keeps none; its bundle has it)" if exported else "- (none recorded)"
        rows.append(("training", kept))
    seen = info.get("seen_photos")
    if seen:
        from sportsdet.seen_photos import seen_summary

        copies = "and their resized or re-saved copies " if info.get("seen_near_copies") else ""
        known = f"{seen_summary(seen)} known by content: `evaluate` leaves them {copies}out"
        rows.append(("seen photos", known))
    elif info.get("seen_photos_unreadable"):
        rows.append(("seen photos", f"unreadable: {info['seen_photos_unreadable']}"))
    abstain = info.get("abstain")
    if abstain and abstain.get("threshold") is not None:
        from sportsdet.abstain import score_name

        where = abstain.get("fitted_on", "validation photos")
        how = (
            f"fitted to answer {abstain['coverage']:.0%} of {where}"
            if isinstance(abstain.get("coverage"), (int, float))
            else f"a fixed threshold: {where}"  # no coverage: it said "fitted to answer 0% of"
        )
        said = f"uncertain when its {score_name(abstain['method'])} < {abstain['threshold']:.4f} ({how})"
        rows.append(("abstain", said))
    else:
        rows.append(("abstain", (abstain or {}).get("why") or "- (every photo gets a label)"))
    return rows


def _scores_table(info: dict) -> Any:
    """The model's recorded scores by where the photos came from (built-in model: per source and on
    realworld-dev, photos from a source it never trained on)."""
    from rich.markup import escape
    from rich.table import Table

    metrics = info.get("metrics") or {}
    rows = []
    for split in ("valid", "test"):
        entry = metrics.get(split)
        if not isinstance(entry, dict):
            continue
        for source, row in (entry.get("per_source") or {"all sources": entry}).items():
            rows.append((f"{source} {split}", row.get("n"), row.get("top1"), ""))
    evaluation = info.get("evaluation")
    if isinstance(evaluation, dict) and not rows:  # a run's own evaluation (RUN/eval/metrics.json)
        split = evaluation.get("split") or "evaluated"
        for source, row in (evaluation["per_source"] or {"all sources": evaluation}).items():
            rows.append((f"{source} {split} (RUN/eval)", row.get("n"), row.get("accuracy"), ""))
    world = metrics.get("realworld_dev")
    if isinstance(world, dict):
        detail = ", ".join(f"{k} {v}" for k, v in (world.get("per_class") or {}).items())
        rows.append(("realworld-dev (never trained on)", world.get("n"), world.get("top1"), detail))
    if not rows:
        return None
    engine = metrics.get("engine")
    title = "recorded scores (top-1" + (f", {engine})" if isinstance(engine, str) else ")")
    table = Table(title=escape(title), title_justify="left")
    for column, justify in (("photos", "left"), ("n", "right"), ("top-1", "right"), ("per class", "left")):
        table.add_column(column, justify=justify, overflow="fold")
    for name, n, top1, detail in rows:
        table.add_row(escape(name), str(n), f"{top1:.1%}" if isinstance(top1, float) else "-", escape(detail))
    return table


@app.command("info")
def info_command(
    bundle: Path | None = typer.Argument(
        None,
        metavar="BUNDLE",
        help="Model bundle folder, run folder or exported .onnx file. Default: the built-in model.",
        show_default=False,
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print everything as one JSON object instead of tables."
    ),
    list_labels: bool = typer.Option(
        False,
        "--labels",
        help="Print only the class names the model knows, one per line (with --json: a JSON list).",
    ),
) -> None:
    """Show what is inside a model bundle: model, labels, preprocessing, training, metrics, files."""
    from rich.table import Table

    from sportsdet.errors import SportsdetError

    info = bundle_info(_bundle_dir(bundle))
    labels = info["labels"]
    if list_labels:  # with --json: a JSON list (--json alone gave the whole record, --labels unsaid)
        print_data(json.dumps(labels, ensure_ascii=False) if as_json else "\n".join(labels))
        return
    if as_json:
        print_data(json.dumps(info, indent=2, ensure_ascii=False))
        return
    summary = Table(
        show_header=False,
        title=f"bundle {plain(info['path'])}",
        title_justify="left",
        caption="sportsdet info --json prints everything recorded",
        caption_justify="left",
    )
    summary.add_column(style="bold")
    summary.add_column(overflow="fold")
    try:
        rows, scores = _summary_rows(info), _scores_table(info)
    except (AttributeError, TypeError, KeyError, ValueError) as exc:
        # Its nested records hand-edited or damaged: one line, and where to look, not a traceback.
        raise SportsdetError(
            f"{info['path']}: the bundle's record has an unexpected form ({type(exc).__name__}: {exc}); "
            "`sportsdet info --json` shows it as stored"
        ) from None
    for name, value in rows:
        summary.add_row(name, plain(value))
    summary.add_row("versions", plain(", ".join(f"{k} {v}" for k, v in info["versions"].items())))
    console.print(summary)
    if scores is not None:
        console.print(scores)
    from sportsdet.files import human_size

    files = Table(title="files", title_justify="left")
    files.add_column("file")
    files.add_column("size", justify="right")
    for name, size in info["files"].items():
        files.add_row(plain(name), human_size(size))
    console.print(files)
