"""The callbacks every run gets: progress on stderr, metrics.csv, curves.png, checkpoints.

Keras-style hooks (`sportsdet.training.loop.Callback`); `logs` of on_epoch_end is the epoch's
row (see `sportsdet.run_folder.METRICS_COLUMNS`).
"""

from __future__ import annotations

import csv
import os
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from sportsdet import plots
from sportsdet.files import atomic_write, signals_deferred
from sportsdet.run_folder import BEST_CHECKPOINT, LAST_CHECKPOINT, METRICS_COLUMNS
from sportsdet.training.checkpoint import (
    flatten_optimizer_state,
    jsonable,
    rng_state,
    write_checkpoint,
)
from sportsdet.training.loop import Callback, TrainContext


class ProgressBar(Callback):
    """A rich progress bar per epoch (loss, accuracy, ETA) and one summary line per epoch, on stderr."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress: Progress | None = None
        self.task = None

    @staticmethod
    def total_epochs(ctx: TrainContext) -> int:
        """Epochs of earlier stages plus this stage's (so multi-stage recipes count right)."""
        loop = ctx.loop
        counted = len(ctx.history) if loop is None else len(ctx.history) - loop.stage_epoch + loop.epochs
        return max(counted, ctx.planned_epochs or 0)

    def on_epoch_begin(self, ctx: TrainContext, epoch: int, stage: str, batches: int) -> None:
        if not self.console.is_terminal:  # logs and pipes get the epoch lines only
            return
        self.progress = Progress(
            TextColumn(f"epoch {epoch}/{self.total_epochs(ctx)} [dim]{stage}[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f} acc {task.fields[acc]:.3f}"),
            TimeRemainingColumn(),
            console=self.console,
            transient=True,
            disable=not self.console.is_terminal,  # elsewhere it drew nothing but a blank line
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=batches, loss=float("nan"), acc=float("nan"))

    def on_batch_end(self, ctx: TrainContext, batch: int, logs: dict[str, float]) -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=1, loss=logs["loss"], acc=logs["acc"])

    def on_epoch_end(self, ctx: TrainContext, epoch: int, logs: dict[str, Any]) -> None:
        self.close()
        val = (
            f"val_loss {logs['val_loss']:.4f} val_acc {logs['val_acc']:.3f}"
            if logs.get("val_loss") is not None
            else "no validation set"
        )
        best = " [green]*best[/]" if ctx.best and ctx.best.get("epoch") == epoch else ""
        self.console.print(
            f"epoch {epoch:>3}/{self.total_epochs(ctx)} {logs['stage']}: loss {logs['train_loss']:.4f} "
            f"acc {logs['train_acc']:.3f}  {val}  lr {logs['lr']:.3g}  {logs['seconds']:.1f}s{best}",
            highlight=False,
            soft_wrap=True,
        )

    def on_train_end(self, ctx: TrainContext) -> None:
        self.close()

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class MetricsCSV(Callback):
    """metrics.csv: one row per epoch, appended and flushed at once (rewritten whole on resume)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def rewrite(self, history: list[dict[str, Any]]) -> None:
        def write(temp: Path) -> None:
            with open(temp, "w", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=METRICS_COLUMNS, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(_csv_row(row) for row in history)

        atomic_write(self.path, write)

    def on_train_begin(self, ctx: TrainContext) -> None:
        if not self.path.exists() or ctx.history:
            self.rewrite(ctx.history)

    def on_epoch_end(self, ctx: TrainContext, epoch: int, logs: dict[str, Any]) -> None:
        with open(self.path, "a", newline="", encoding="utf-8") as handle:
            csv.DictWriter(handle, fieldnames=METRICS_COLUMNS, extrasaction="ignore").writerow(_csv_row(logs))
            handle.flush()
            os.fsync(handle.fileno())


def _csv_row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: ("" if row.get(k) is None else (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k]))
        for k in METRICS_COLUMNS
    }


class CurvesPlot(Callback):
    """curves.png: loss, accuracy (train and validation) and learning rate per epoch.

    Redrawn every `every` epochs (default 1; long benchmarks use more to save CPU) and always
    after the last epoch of a stage.
    """

    def __init__(self, path: Path, every: int = 1) -> None:
        self.path = path
        self.every = max(1, int(every))

    def on_epoch_end(self, ctx: TrainContext, epoch: int, logs: dict[str, Any]) -> None:
        loop = ctx.loop
        last = loop is None or loop.stop or loop.stage_epoch >= loop.epochs
        if last or epoch % self.every == 0:
            best = (ctx.best or {}).get("epoch")
            atomic_write(self.path, plots.curves_png(ctx.history, best))


class Checkpointer(Callback):
    """best.* when this epoch is the best so far (see `is_better`), last.* after every epoch."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_epoch_end(self, ctx: TrainContext, epoch: int, logs: dict[str, Any]) -> None:
        # Both files or neither: a Ctrl-C or SIGTERM between them left best.* of this epoch beside
        # last.* of the one before, whose record of the best epoch names another.
        with signals_deferred():
            self._write(ctx, epoch)

    def _write(self, ctx: TrainContext, epoch: int) -> None:
        loop = ctx.loop
        weights = {f"model.{k}": v for k, v in loop.model.state_dict().items()}
        if ctx.best is not None and ctx.best.get("epoch") == epoch:
            write_checkpoint(self.folder / BEST_CHECKPOINT, weights, {"kind": "best", "best": ctx.best})
        optim_info, optim_tensors = flatten_optimizer_state(loop.optimizer.state_dict())
        rng_info, rng_tensors = rng_state()
        state = {
            "kind": "last",
            "epoch": epoch,
            "stage": loop.stage,
            "stage_epoch": loop.stage_epoch,
            "stage_done": loop.stage_epoch >= loop.epochs or loop.stop,
            "stopped_early": loop.stop,
            "history": ctx.history,
            "best": ctx.best,
            "epochs_since_best": ctx.epochs_since_best,
            "optimizer": optim_info,
            "scheduler": jsonable(loop.scheduler.state_dict()) if loop.scheduler is not None else None,
            "rng": rng_info,
            "recipe_state": ctx.recipe_state,
            "seconds": round(time.time() - ctx.started, 1),  # the run's training time so far
        }
        write_checkpoint(self.folder / LAST_CHECKPOINT, {**weights, **optim_tensors, **rng_tensors}, state)
