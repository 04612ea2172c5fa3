"""The whole `sportsdet train` job as one library call: fit, evaluate the test split, write the report.

    from sportsdet.train import train
    result = train("my_photos/", out="runs/first")     # lite0 transfer learning
    print(result.report)                                # runs/first/report.html: the whole story

It sits above both halves it joins: `sportsdet.training` fits the model into the run folder
(options, recipes, checkpoints, bundle), `sportsdet.evaluate` scores the saved test split with
the engine users run, and `sportsdet.report` draws the page. Like the notebook (and Keras and
Ultralytics users' scripts), training ends with the test numbers; `evaluate=False` skips them.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from sportsdet.data.sources import Sources
from sportsdet.errors import SportsdetError
from sportsdet.run_folder import RunFolder
from sportsdet.training import distributed
from sportsdet.training.loop import Callback, TrainResult
from sportsdet.training.run import fit

__all__ = ["train", "TrainResult", "Callback"]


def train(
    data: str | Path | Sequence[str | Path] | Sources | None,
    *,
    out: str | Path,
    model: str | None = None,
    split: str | None = None,
    classes: str | Iterable[str] | None = None,
    seed: int | None = None,
    resume: bool = False,
    force: bool = False,
    options: dict[str, Any] | None = None,
    callbacks: list[Callback] | None = None,
    console: Console | None = None,
    evaluate: bool = True,
    report: bool = True,
    maps: Iterable[str] = (),
    merge: Iterable[str] = (),
    nproc: int | None = None,
) -> TrainResult:
    """Train a model on a folder of images and write the run folder (see docs/ARCHITECTURE.md).

    data: one image folder, several (sources, each split its own way), a dataset file (.toml /
    .json, see sportsdet.data.sources) or a Sources object. maps: "[SOURCE:]OLD=NEW" class
    renames; merge: class names several sources share on purpose ("all" for every one).
    model: a name from `sportsdet models` (default lite0). options: training options over the
    recipe's and model's defaults (epochs, batch_size, lr, patience, workers, input_size,
    label_smoothing, ...; None values are ignored; unknown keys are refused with the known ones).
    resume: continue from `out`/checkpoints/last.* with the run's own config and split (only
    epochs, patience, workers and time_budget may change). callbacks: extra Callback objects.
    evaluate: score the run's test split afterwards (RUN/eval) with the engine `sportsdet
    predict` would use. report: write RUN/report.html.
    nproc: train in N processes on this machine (DistributedDataParallel, see
    sportsdet.training.distributed); under torchrun leave it out: the processes join the group
    torchrun describes. Either way rank 0 writes the run folder and returns the whole result; the
    other ranks return the trained model and history only.
    Raises SportsdetError for bad input; KeyboardInterrupt leaves the last checkpoint in place.
    """
    if nproc is not None and nproc != 1:
        job = dict(
            data=data, out=out, model=model, split=split, classes=classes, seed=seed, resume=resume,
            force=force, options=options, evaluate=evaluate, report=report, maps=list(maps),
            merge=list(merge),
        )  # fmt: skip
        if classes is not None and not isinstance(classes, str):
            job["classes"] = list(classes)
        with distributed.local_group(nproc, train, job):  # this process is rank 0; the others run `job`
            return train(**{**job, "callbacks": callbacks, "console": console})
    console = console or Console(stderr=True, soft_wrap=True, emoji=False)

    def warn(message: str) -> None:
        console.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)

    def finish(result: TrainResult) -> None:  # runs while the run folder is still locked
        run = RunFolder(result.run_dir)
        if evaluate:
            result.evaluation = _evaluate_test_split(run, console, warn)
        if report:
            from sportsdet.report import write_report_after

            result.report = write_report_after(run.path, warn)

    with distributed.from_environment():  # torchrun's (or --nproc's) process group, if any
        return fit(
            data, out=out, model=model, split=split, classes=classes, seed=seed, resume=resume, force=force,
            options=options, callbacks=callbacks, console=console, after=finish, maps=maps, merge=merge,
        )  # fmt: skip


def _evaluate_test_split(run: RunFolder, console: Console, warn: Callable[[str], None]) -> Any:
    """The run's saved test split through the bundle, as `sportsdet evaluate RUN DATA` would."""
    from sportsdet.data.splits import SplitManifest
    from sportsdet.evaluate import evaluate

    manifest = SplitManifest.load(run.split)
    if not manifest.items("test"):
        console.print("[dim]no test split (every image went to train/valid): nothing to evaluate[/]")
        return None
    try:
        evaluation = evaluate(run.model, manifest.root, split="test", warn=warn)
    except SportsdetError as exc:  # the model is saved; a failed evaluation must not hide that
        warn(f"test split not evaluated: {exc}; run `sportsdet evaluate {shlex.quote(str(run.path))}`")
        return None
    metrics = evaluation.metrics
    low, high = metrics.get("accuracy_ci95") or (None, None)
    interval = f" (95% CI {low:.1%}-{high:.1%})" if low is not None else ""
    console.print(
        f"test accuracy {metrics['accuracy']:.1%}{interval} on {metrics['n']} images "
        f"[{metrics.get('backend', '?')}] -> {evaluation.out_dir}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    return evaluation
