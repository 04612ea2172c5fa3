"""CLI verb: `sportsdet train`. Thin: parse options, call sportsdet.train.train, print the result.

Numbers (epochs, learning rate, ...) live in the recipe's options (sportsdet.training.options)
and the model registry; every option here defaults to "not given" so they decide unless the
user says otherwise.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import typer

from sportsdet.cli.app import app, console, err_console, plain
from sportsdet.errors import SportsdetError
from sportsdet.run_folder import RunFolder


def _parse_sets(pairs: list[str]) -> dict[str, Any]:
    """--set key=value pairs; values are read as JSON when they parse (numbers, true, null, lists)."""
    from sportsdet.training.options import NULL

    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise SportsdetError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set label_smoothing=0.1")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        options[key] = NULL if value is None else value  # null: set to none, not "not given"
    return options


def _merge_flags(options: dict[str, Any], flags: dict[str, Any]) -> dict[str, Any]:
    """--set values plus the flags given; a flag and a --set that disagree are refused (which won
    was a silent accident)."""
    for key, value in flags.items():
        if value is None:
            continue
        if key in options and options[key] != value:
            flag = "--" + key.replace("_", "-")
            raise SportsdetError(
                f"{flag} {value} and --set {key}={options[key]!r} disagree; give the option once"
            )
        options[key] = value
    return options


@app.command("train")
def train(
    data: list[Path] | None = typer.Argument(
        None,
        metavar="DATA",
        help="Image folder(s): ROOT/<class>/<images> or ROOT/{train,valid,test}/<class>/<images>. Several "
        "folders (or one dataset file, .toml/.json) train on several sources at once, each keeping its "
        "own split. Not needed with --resume.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to write (e.g. runs/first)."),
    model: str | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Model from `sportsdet models` (default: lite0, pretrained; seed-cnn is the notebook's CNN).",
    ),
    split: str | None = typer.Option(
        None,
        "--split",
        help="official (the tree's train/valid/test), random:TEST[,VALID] (e.g. random:0.2) or "
        "per-class:TRAIN,TEST[,VALID] (e.g. per-class:70,60) (default: official for a split tree, "
        "else random:0.2), or a saved split FILE.json (`sportsdet data split --out`, or another run's "
        "split.json) to train and test on the very same photos.",
    ),
    classes: str | None = typer.Option(
        None, "--classes", help='Train on these classes only, comma-separated: "croquet,polo,rowing".'
    ),
    epochs: int | None = typer.Option(
        None,
        "--epochs",
        help="Epochs to train (default: the model's). Pretrained models: the fine-tuning epochs, after "
        "a head trained for --set head_epochs on cached features.",
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", "-b", help="Images per step (default: the model's)."
    ),
    lr: float | None = typer.Option(None, "--lr", help="Learning rate (default: the model's)."),
    patience: int | None = typer.Option(
        None,
        "--patience",
        help="Stop after N epochs without a better validation epoch (higher accuracy, or the same accuracy "
        "with a lower loss; 0: never); seed-cnn only (the transfer recipe's stages are short and keep "
        "their best epoch). With --resume, a longer patience trains on a run it stopped.",
    ),
    seed: int | None = typer.Option(
        None, "--seed", help="Seed for the split, weights and shuffling (default: 0)."
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        help="Processes decoding images (0: in the main process) for the from-scratch recipe (seed-cnn). "
        "Small datasets are decoded once and cached, which makes 0 the fastest (default: 0); the count "
        "changes no result. "
        "Pretrained models decode each photo once into a feature cache: --set extract_workers=N.",
    ),
    time_budget: str | None = typer.Option(
        None,
        "--time-budget",
        help="Fit training into this much time, e.g. 10m, 90s or 1h: the schedule of a pretrained model "
        "(lite0, lite1, lite2, mobilenetv2) is planned to fit; seed-cnn trains --epochs instead. With "
        "--resume, a new budget for the whole run plans the fine-tuning again.",
    ),
    set_options: list[str] = typer.Option(
        [],
        "--set",
        help="Any other training option as KEY=VALUE (JSON value), e.g. --set label_smoothing=0.1; "
        "an unknown KEY is refused with the list of known ones.",
    ),
    maps: list[str] = typer.Option(
        [],
        "--map",
        help="Rename a source's class: SOURCE:OLD=NEW (or OLD=NEW for every source that has OLD), e.g. "
        "--map sports100:football='american football'.",
    ),
    merge: list[str] = typer.Option(
        [],
        "--merge",
        help="A class name several sources share on purpose (e.g. --merge basketball; 'all' for every "
        "shared name). Without it (or a --map into that name) a shared name is an error: the same word "
        "can mean different sports.",
    ),
    no_eval: bool = typer.Option(
        False, "--no-eval", help="Skip evaluating the test split after training (RUN/eval, in the report)."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run in --out from its last checkpoint."
    ),
    force: bool = typer.Option(
        False,
        "--force",
        help="Replace an existing run in --out (kept aside until the new run's first checkpoint, and "
        "put back if it stops before).",
    ),
    nproc: int | None = typer.Option(
        None,
        "--nproc",
        help="Train in N processes on this machine (DistributedDataParallel; --batch-size stays the global "
        "batch). Across machines, start `torchrun ... -m sportsdet train` instead (see the README).",
    ),
) -> None:
    """Train a model on a folder of images; writes metrics, curves, checkpoints, a model bundle, the
    test split's evaluation and report.html to --out.

    Progress goes to stderr; the final summary (bundle path, accuracies, report) to stdout.
    Ctrl-C keeps the last finished epoch: continue with `sportsdet train --out DIR --resume`.
    """
    from sportsdet.train import train as run_training

    flags = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "patience": patience,
        "workers": workers,
        "time_budget": time_budget,
    }
    options = _merge_flags(_parse_sets(set_options), flags)
    result = run_training(
        data or None,
        out=out,
        model=model,
        split=split,
        # "" is no class at all (an unset shell variable), refused: it trained on every class.
        classes=classes.split(",") if classes is not None else None,
        seed=seed,
        resume=resume,
        force=force,
        options=options,
        console=err_console,
        evaluate=not no_eval,
        maps=maps,
        merge=merge,
        nproc=nproc,
    )
    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 prints the summary
        return
    best = result.best or {}
    # In percent, as the progress lines, evaluate and the report say them (0.9219 beside 92.2%).
    val = f"{best['val_acc']:.1%}" if best.get("val_acc") is not None else "n/a (no validation set)"
    console.print(f"model bundle: {plain(RunFolder(out).model)}", highlight=False, soft_wrap=True)
    # "22" of a run whose config says epochs 2: the head epochs come first (20 head, 2 finetune).
    stages = Counter(str(row.get("stage") or "train") for row in result.history)
    split = f" ({', '.join(f'{n} {name}' for name, n in stages.items())})" if len(stages) > 1 else ""
    console.print(
        f"epochs run: {len(result.history)}{split}; best epoch: {best.get('epoch')}; "
        f"best val accuracy: {val}",
        highlight=False,
    )
    if result.evaluation is not None:
        metrics, where = result.evaluation.metrics, result.evaluation.out_dir
        console.print(
            f"test accuracy: {metrics['accuracy']:.1%} on {metrics['n']} images ({where})",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    if result.report is not None:
        # stdout, with the rest of the summary (--help says so; it alone went to stderr)
        console.print(f"report: {result.report}", highlight=False, markup=False, soft_wrap=True)
