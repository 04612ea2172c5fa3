"""Training: a plain epoch loop with Keras-style callbacks, and the run folder it writes.

    train(data, model="seed-cnn", out="runs/x")       # what `sportsdet train` calls
      -> scan + split (or reload them on --resume), write config/data_summary/split
      -> RECIPES[spec.train_defaults["recipe"]](ctx)   # "scratch" here, "transfer" elsewhere
      -> bundle from the best checkpoint, in run_dir/model

Plugging in a recipe
--------------------
A recipe is `fit(ctx: TrainContext) -> TrainResult`, named in `RECIPES` as "module:function"
and imported only when used. `ctx` carries the resolved options, the split manifest, the
preprocessing, the seed and the shared helpers, so every recipe writes the same run folder:

    model = build_model(...)
    train_loader, val_loader = ctx.loaders()            # or your own DataLoaders
    run_epochs(ctx, model, optimizer, scheduler, train_loader, val_loader, epochs, stage="head")
    ...                                                 # more stages: call run_epochs again
    ctx.load_best(model)
    return TrainResult(model=model, history=ctx.history, best=ctx.best, info={...})

`run_epochs` runs the callbacks (progress bar, epoch line, metrics.csv, curves.png, best/last
checkpoints, early stopping), numbers epochs globally across stages, and resumes by itself when
`ctx.resume` holds a checkpoint of the same stage. A multi-stage recipe that is resumed inside
a later stage must skip the earlier stages itself: see `ctx.resume_stage` and `ctx.stage_done`.

Checkpoints are safetensors files (tensors: weights, the flattened optimizer state, RNG
states) whose metadata also carries the JSON state (epoch, history, best, RNG, scheduler), so
one `os.replace` publishes a consistent checkpoint; `last.json`/`best.json` are readable copies.
No pickle anywhere.
"""

from __future__ import annotations

import csv
import importlib
import json
import math
import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch import nn
from torch.utils.data import DataLoader

from sportsdet.bundle import library_versions, save_bundle, sha256_file
from sportsdet.data.dataset import DataFileError, ImageDataset, default_train_augmentation, make_loader
from sportsdet.errors import SportsdetError
from sportsdet.models import ModelSpec, build_model, get_model_spec
from sportsdet.preprocess import Preprocessing

# recipe name (a model's train_defaults["recipe"]) -> "module:function" fit(ctx) -> TrainResult
RECIPES: dict[str, str] = {
    "scratch": "sportsdet.train:fit_scratch",
    "transfer": "sportsdet.transfer:fit_transfer",
}

METRICS_COLUMNS = ("epoch", "stage", "lr", "train_loss", "train_acc", "val_loss", "val_acc", "seconds")
# What a run folder holds; --force removes only these (anything else a user put there stays).
BEST_KEYS = ("epoch", "stage", "val_loss", "val_acc", "train_loss", "train_acc")
RUN_FILES = ("config.json", "data_summary.json", "split.json", "metrics.csv", "curves.png")
RUN_DIRS = ("checkpoints", "model", "eval")
CHECKPOINT_FORMAT = "sportsdet-checkpoint/1"
_STATE_KEY = "sportsdet.state"  # safetensors metadata entry holding the JSON state

# Options a resumed run may change; everything else comes from the run's config.json.
RESUME_OVERRIDABLE = ("epochs", "patience", "workers")


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch; ask torch for deterministic kernels (cheap on CPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def rng_state() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Every random source's state as (JSON part, tensor part)."""
    py_version, py_internal, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    info = {
        "python": [py_version, list(py_internal), py_gauss],
        "numpy": [np_kind, int(np_pos), int(np_has_gauss), float(np_gauss)],
    }
    tensors = {
        "rng.numpy_keys": torch.from_numpy(np.asarray(np_keys, dtype=np.uint32).astype(np.int64)),
        "rng.torch": torch.random.get_rng_state(),
    }
    return info, tensors


def set_rng_state(info: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    version, internal, gauss = info["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, pos, has_gauss, cached = info["numpy"]
    keys = tensors["rng.numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state((kind, keys, pos, has_gauss, cached))
    torch.random.set_rng_state(tensors["rng.torch"])


def _jsonable(value: Any) -> Any:
    """Scheduler/optimizer hyper-parameters to JSON (tensors become numbers or lists)."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return None  # e.g. a lambda in LambdaLR's state: rebuilt by the recipe, not stored


def flatten_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """optimizer.state_dict() -> (JSON part, {"optim.<param>.<name>": tensor})."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, param_state in state["state"].items():
        for name, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{param_id}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(param_id), {})[name] = value
    return {"param_groups": _jsonable(state["param_groups"]), "scalars": scalars}, tensors


def unflatten_optimizer_state(info: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, param_id, name = key.split(".", 2)
            state.setdefault(int(param_id), {})[name] = value
    for param_id, values in info.get("scalars", {}).items():
        state.setdefault(int(param_id), {}).update(values)
    return {"state": state, "param_groups": info["param_groups"]}


@contextmanager
def _sigint_deferred():
    """Let a file write finish before Ctrl-C takes effect (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[Any] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            raise KeyboardInterrupt


def write_checkpoint(path: Path, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    """Atomically write `path` (.safetensors) with the JSON state embedded, then a readable .json copy."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": CHECKPOINT_FORMAT, **state}
    text = json.dumps(state, ensure_ascii=False)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    json_path = path.with_suffix(".json")
    json_tmp = json_path.with_name(f".{json_path.name}.tmp-{os.getpid()}")
    with _sigint_deferred():
        try:
            save_file(
                {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
                str(tmp),
                metadata={_STATE_KEY: text},
            )
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, path)  # the checkpoint is published here, in one step
            with open(json_tmp, "w", encoding="utf-8") as handle:
                json.dump(state, handle, indent=1, ensure_ascii=False)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(json_tmp, json_path)
        finally:
            for leftover in (tmp, json_tmp):
                if leftover.exists():
                    leftover.unlink()


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, JSON state) of a checkpoint written by `write_checkpoint`."""
    from safetensors import safe_open

    if not path.is_file():
        raise SportsdetError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        state = json.loads(meta[_STATE_KEY])
    except Exception as exc:  # damaged header, missing metadata, bad JSON
        raise SportsdetError(
            f"{path}: damaged checkpoint ({exc}); start again with --force or restore the file"
        ) from None
    if state.get("format") != CHECKPOINT_FORMAT:
        raise SportsdetError(f"{path}: not a sportsdet checkpoint (format {state.get('format')!r})")
    return tensors, state


def model_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's state dict inside a checkpoint's tensors."""
    return {key[len("model.") :]: value for key, value in tensors.items() if key.startswith("model.")}


# --------------------------------------------------------------------------------------------
# callbacks
# --------------------------------------------------------------------------------------------


class Callback:
    """Keras-style hooks. `logs` of on_epoch_end is the epoch's row (see METRICS_COLUMNS)."""

    def on_train_begin(self, ctx: TrainContext) -> None: ...
    def on_epoch_begin(self, ctx: TrainContext, epoch: int, stage: str, batches: int) -> None: ...
    def on_batch_end(self, ctx: TrainContext, batch: int, logs: dict[str, float]) -> None: ...
    def on_epoch_end(self, ctx: TrainContext, epoch: int, logs: dict[str, Any]) -> None: ...
    def on_train_end(self, ctx: TrainContext) -> None: ...


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
        if loop is None:
            return len(ctx.history)
        return len(ctx.history) - loop.stage_epoch + loop.epochs

    def on_epoch_begin(self, ctx, epoch, stage, batches):
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
        )
        self.progress.start()
        self.task = self.progress.add_task("train", total=batches, loss=float("nan"), acc=float("nan"))

    def on_batch_end(self, ctx, batch, logs):
        if self.progress is not None:
            self.progress.update(self.task, advance=1, loss=logs["loss"], acc=logs["acc"])

    def on_epoch_end(self, ctx, epoch, logs):
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

    def on_train_end(self, ctx):
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
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=METRICS_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(_csv_row(row) for row in history)
        os.replace(tmp, self.path)

    def on_train_begin(self, ctx):
        if not self.path.exists() or ctx.history:
            self.rewrite(ctx.history)

    def on_epoch_end(self, ctx, epoch, logs):
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

    def on_epoch_end(self, ctx, epoch, logs):
        loop = ctx.loop
        last = loop is None or loop.stop or loop.stage_epoch >= loop.epochs
        if last or epoch % self.every == 0:
            write_curves(self.path, ctx.history)


def write_curves(path: Path, history: list[dict[str, Any]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [row["epoch"] for row in history]

    def series(key: str) -> list[float]:
        return [math.nan if row.get(key) is None else row[key] for row in history]

    # Fixed margins instead of tight_layout: this runs every epoch and tight_layout doubles its cost.
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.13, top=0.92, wspace=0.2)
    for ax, key, title in ((axes[0], "loss", "loss"), (axes[1], "acc", "accuracy")):
        ax.plot(epochs, series(f"train_{key}"), marker=".", label="train")
        if any(row.get(f"val_{key}") is not None for row in history):
            ax.plot(epochs, series(f"val_{key}"), marker=".", label="validation")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    lrs = series("lr")
    axes[2].plot(epochs, lrs, marker=".", color="tab:gray")
    axes[2].set_title("learning rate")
    axes[2].set_xlabel("epoch")
    axes[2].grid(alpha=0.3)
    # From zero, without an offset: a slowly decaying rate reads as nearly flat, which it is.
    axes[2].set_ylim(0, max([lr for lr in lrs if math.isfinite(lr)] or [1.0]) * 1.1)
    axes[2].ticklabel_format(axis="y", style="sci", scilimits=(-2, 3), useOffset=False)
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    os.replace(tmp, path)


def is_better(logs: dict[str, Any], best: dict[str, Any] | None) -> bool:
    """Higher validation accuracy wins, ties go to the lower validation loss."""
    if logs.get("val_acc") is None:  # no validation set: the latest epoch is the best we know
        return True
    if best is None or best.get("val_acc") is None:
        return True
    if logs["val_acc"] != best["val_acc"]:
        return logs["val_acc"] > best["val_acc"]
    return logs["val_loss"] < best["val_loss"]


class Checkpointer(Callback):
    """best.* when this epoch is the best so far (see `is_better`), last.* after every epoch."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_epoch_end(self, ctx, epoch, logs):
        loop = ctx.loop
        weights = {f"model.{k}": v for k, v in loop.model.state_dict().items()}
        if ctx.best is not None and ctx.best.get("epoch") == epoch:
            write_checkpoint(self.folder / "best.safetensors", weights, {"kind": "best", "best": ctx.best})
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
            "scheduler": _jsonable(loop.scheduler.state_dict()) if loop.scheduler is not None else None,
            "rng": rng_info,
            "recipe_state": ctx.recipe_state,
        }
        write_checkpoint(self.folder / "last.safetensors", {**weights, **optim_tensors, **rng_tensors}, state)


# --------------------------------------------------------------------------------------------
# context, result and the generic loop
# --------------------------------------------------------------------------------------------


@dataclass
class LoopState:
    """What the callbacks see of the stage that is running."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    stage: str
    epochs: int  # epochs in this stage
    stage_epoch: int = 0  # epochs of this stage completed
    stop: bool = False


@dataclass
class TrainContext:
    """Everything a recipe needs; see the module docstring.

    options: the resolved training options (registry train_defaults < CLI options), also in
    config.json. resume: the last checkpoint's (tensors, state) when continuing a run, else None.
    recipe_state: a JSON-able dict a recipe may fill (saved in every last checkpoint, given back
    in `resume[1]["recipe_state"]`).
    """

    run_dir: Path
    spec: ModelSpec
    labels: list[str]
    manifest: Any  # sportsdet.data.splits.SplitManifest
    options: dict[str, Any]
    seed: int
    preprocessing: Preprocessing
    model_config: dict[str, Any]
    console: Console
    callbacks: list[Callback] = field(default_factory=list)
    resume: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    epochs_since_best: int = 0
    recipe_state: dict[str, Any] = field(default_factory=dict)
    loop: LoopState | None = None
    started: float = field(default_factory=time.time)

    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    @property
    def resume_stage(self) -> str | None:
        return None if self.resume is None else self.resume[1]["stage"]

    def stage_done(self, stage: str) -> bool:
        """True when resuming a run whose history already finished `stage` (skip it)."""
        if self.resume is None:
            return False
        state = self.resume[1]
        finished = {row["stage"] for row in state["history"]}
        return stage in finished and (state["stage"] != stage or state.get("stage_done", False))

    def datasets(self, augment: Any = None) -> tuple[ImageDataset, ImageDataset | None]:
        """Train and validation datasets; augment=True uses `default_train_augmentation`."""
        if augment is True:
            augment = default_train_augmentation(self.preprocessing)
        cache = bool(self.options.get("cache", True))
        root = self.manifest.root
        train = ImageDataset(
            self.manifest.items("train"), self.preprocessing, augment=augment or None, cache=cache, root=root
        )
        val_items = self.manifest.items("valid")
        val = ImageDataset(val_items, self.preprocessing, cache=cache, root=root) if val_items else None
        return train, val

    def loaders(self, augment: Any = None) -> tuple[DataLoader, DataLoader | None]:
        """DataLoaders for the train and validation splits (validation None when it is empty)."""
        train, val = self.datasets(augment)
        workers = int(self.options.get("workers") or 0)
        threads = max(1, torch.get_num_threads())
        cached = [d for d in (train, val) if d is not None and d.cache_enabled]
        if cached:
            total = sum(len(d) for d in cached)
            self.console.print(f"decoding {total} images into memory (once for all epochs)", soft_wrap=True)
            for dataset in cached:
                dataset.preload(threads)
        batch = int(self.options["batch_size"])
        train_loader = make_loader(
            train, batch_size=batch, train=True, seed=self.seed, workers=0 if train.cache_enabled else workers
        )
        val_loader = None
        if val is not None:
            val_workers = 0 if val.cache_enabled else workers
            val_loader = make_loader(val, batch_size=batch, train=False, workers=val_workers)
        return train_loader, val_loader

    def load_best(self, model: nn.Module) -> nn.Module:
        """Load the best checkpoint's weights into `model`."""
        tensors, _ = read_checkpoint(self.checkpoint_dir / "best.safetensors")
        model.load_state_dict(model_tensors(tensors))
        return model


@dataclass
class TrainResult:
    """What a recipe hands back: the model with its best weights loaded, and what to record."""

    model: nn.Module
    history: list[dict[str, Any]]
    best: dict[str, Any] | None
    info: dict[str, Any] = field(default_factory=dict)
    # The returned model's logits on the validation split, when the recipe has them cheaply
    # (the transfer recipe: from cached activations); else train() computes them.
    valid_logits: np.ndarray | None = None


def validation_logits(ctx: TrainContext, model: nn.Module) -> tuple[np.ndarray, np.ndarray] | None:
    """(logits, labels) of `model` on the validation split, or None when there is none."""
    _, val = ctx.datasets()
    if val is None:
        return None
    outputs = []
    model.eval()
    with torch.inference_mode():
        for inputs, _ in make_loader(val, batch_size=int(ctx.options.get("batch_size") or 32), train=False):
            outputs.append(model(inputs.contiguous(memory_format=torch.channels_last)).float().numpy())
    return np.concatenate(outputs), np.asarray(val.labels)


MIN_CALIBRATION_IMAGES = 50
MIN_CALIBRATION_ERRORS = 3


def calibrate_temperature(
    model: nn.Module, output_key: str, logits: np.ndarray, labels: np.ndarray
) -> dict[str, Any]:
    """Fit a softmax temperature T on validation logits and fold it into the classifier (W/T, b/T).

    The saved weights then give calibrated probabilities everywhere (torch, ONNX, INT8) with no
    extra step; the ranking of classes, and so every accuracy, is unchanged. Label smoothing and
    short fine-tuning leave transfer models underconfident (a right answer at 20%); this fixes
    the scores users see.
    """
    from sportsdet.metrics import calibration, fit_temperature, softmax_nll
    from sportsdet.runtime import softmax

    errors = int((logits.argmax(axis=1) != labels).sum())
    if len(labels) < MIN_CALIBRATION_IMAGES or errors < MIN_CALIBRATION_ERRORS:
        # With (nearly) no mistakes to learn from, the NLL keeps falling as T -> 0: the fit
        # would make the model claim ~100% on everything. Better honest raw scores.
        return {
            "temperature": 1.0,
            "method": "none",
            "why": f"the validation split ({len(labels)} images, {errors} wrong) is too small or too clean "
            f"to fit a temperature on (needs >= {MIN_CALIBRATION_IMAGES} images and "
            f">= {MIN_CALIBRATION_ERRORS} mistakes)",
        }
    temperature = fit_temperature(logits, labels)
    state = model.state_dict()  # tensors share storage with the parameters
    bias_key = output_key.rsplit(".", 1)[0] + ".bias"
    with torch.no_grad():
        state[output_key].div_(temperature)
        if bias_key in state:
            state[bias_key].div_(temperature)

    def ece(t: float) -> float:
        probs = softmax(logits / t)
        return calibration(probs.max(axis=1), (probs.argmax(axis=1) == labels).astype(np.float64))[0]

    return {
        "method": "temperature scaling on the validation split, folded into the classifier",
        "temperature": temperature,  # exact: the saved classifier is the best epoch's divided by it
        "valid_images": len(labels),
        "valid_nll_before": round(softmax_nll(logits, labels), 4),
        "valid_nll_after": round(softmax_nll(logits, labels, temperature), 4),
        "valid_ece_before": round(ece(1.0), 4),
        "valid_ece_after": round(ece(temperature), 4),
    }


def _current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The effective learning rate of the first group (Adagrad's lr_decay included)."""
    group = optimizer.param_groups[0]
    lr = float(group["lr"])
    decay = float(group.get("lr_decay", 0.0) or 0.0)
    if decay:
        states = [optimizer.state[p] for p in group["params"] if p in optimizer.state]
        step = float(states[0]["step"]) if states and "step" in states[0] else 0.0
        lr = lr / (1 + step * decay)  # what the next step will use (torch: lr / (1 + (step-1) * decay))
    return lr


def evaluate_loader(model: nn.Module, loader: Iterable, loss_fn: Callable) -> tuple[float, float]:
    """Mean loss and accuracy of `model` over a loader (no gradients, eval mode)."""
    model.eval()
    total_loss, correct, seen = 0.0, 0, 0
    with torch.inference_mode():
        for inputs, targets in loader:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
            logits = model(inputs)
            total_loss += float(loss_fn(logits, targets)) * len(targets)
            correct += int((logits.argmax(1) == targets).sum())
            seen += len(targets)
    return total_loss / max(seen, 1), correct / max(seen, 1)


def run_epochs(
    ctx: TrainContext,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    train_loader: Iterable,
    val_loader: Iterable | None,
    epochs: int,
    *,
    stage: str = "train",
    loss_fn: Callable | None = None,
    scheduler_step: str = "epoch",
    patience: int | None = None,
) -> LoopState:
    """Train `epochs` epochs of one stage, with every callback; returns the final LoopState.

    - If `ctx.resume` holds a checkpoint of this stage, model/optimizer/scheduler/RNG/history
      are restored from it and the stage continues after its last finished epoch (then
      `ctx.resume` is cleared so later stages start fresh).
    - scheduler_step: "epoch" (scheduler.step() after each epoch) or "batch" (after each step).
    - patience: early stopping for this stage (None/0: off). The best/last checkpoints and
      metrics.csv/curves.png are written after every epoch; epochs are numbered across stages.
    """
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    model = model.to(memory_format=torch.channels_last)  # ~1.5x faster convolutions on CPU
    loop = LoopState(model, optimizer, scheduler, stage, epochs)
    ctx.loop = loop
    if ctx.resume is not None and ctx.resume[1]["stage"] == stage:
        tensors, state = ctx.resume
        model.load_state_dict(model_tensors(tensors))
        optimizer.load_state_dict(unflatten_optimizer_state(state["optimizer"], tensors))
        if scheduler is not None and state.get("scheduler"):
            scheduler.load_state_dict(state["scheduler"])
        ctx.history = list(state["history"])
        ctx.best = state["best"]
        ctx.epochs_since_best = int(state.get("epochs_since_best", 0))
        ctx.recipe_state = dict(state.get("recipe_state") or {})
        loop.stage_epoch = int(state["stage_epoch"])
        loop.stop = bool(state.get("stopped_early", False))  # a finished stage may be extended (--epochs)
        set_rng_state(state["rng"], tensors)
        ctx.resume = None
        ctx.console.print(f"resuming {stage} after epoch {state['epoch']} ({ctx.run_dir})", soft_wrap=True)
    callbacks = list(ctx.callbacks)
    for callback in callbacks:
        callback.on_train_begin(ctx)
    try:
        while loop.stage_epoch < epochs and not loop.stop:
            epoch = len(ctx.history) + 1
            sampler = getattr(train_loader, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            lr = _current_lr(optimizer)
            for callback in callbacks:
                callback.on_epoch_begin(ctx, epoch, stage, len(train_loader))
            started = time.perf_counter()
            model.train()
            total_loss, correct, seen = 0.0, 0, 0
            for batch, (inputs, targets) in enumerate(train_loader):
                inputs = inputs.contiguous(memory_format=torch.channels_last)
                logits = model(inputs)
                loss = loss_fn(logits, targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None and scheduler_step == "batch":
                    scheduler.step()
                total_loss += float(loss.detach()) * len(targets)
                correct += int((logits.detach().argmax(1) == targets).sum())
                seen += len(targets)
                logs = {"loss": total_loss / seen, "acc": correct / seen}
                for callback in callbacks:
                    callback.on_batch_end(ctx, batch, logs)
            if scheduler is not None and scheduler_step == "epoch":
                scheduler.step()
            val_loss = val_acc = None
            if val_loader is not None:
                val_loss, val_acc = evaluate_loader(model, val_loader, loss_fn)
            row = {
                "epoch": epoch,
                "stage": stage,
                "lr": lr,
                "train_loss": total_loss / max(seen, 1),
                "train_acc": correct / max(seen, 1),
                "val_loss": val_loss,
                "val_acc": val_acc,
                "seconds": round(time.perf_counter() - started, 3),
            }
            if not math.isfinite(row["train_loss"]):
                raise SportsdetError(
                    f"training diverged at epoch {epoch} (loss {row['train_loss']}); lower --lr and start "
                    "again with --force"
                )
            ctx.history.append(row)
            loop.stage_epoch += 1
            # Best-so-far and early stopping are decided before the callbacks run, so the
            # checkpoint written for this epoch already knows both.
            if is_better(row, ctx.best):
                ctx.best = {k: row.get(k) for k in BEST_KEYS}
                ctx.epochs_since_best = 0
            else:
                ctx.epochs_since_best += 1
            stopped_early = bool(patience) and val_acc is not None and ctx.epochs_since_best >= int(patience)
            loop.stop = loop.stop or stopped_early
            for callback in callbacks:
                callback.on_epoch_end(ctx, epoch, row)
            if stopped_early:
                ctx.console.print(
                    f"early stop: validation accuracy has not improved for {patience} epochs "
                    f"(best epoch {ctx.best['epoch']}, val_acc {ctx.best['val_acc']:.3f})",
                    highlight=False,
                    soft_wrap=True,
                )
    finally:
        for callback in callbacks:
            callback.on_train_end(ctx)
    return loop


# --------------------------------------------------------------------------------------------
# the "scratch" recipe (seed-cnn)
# --------------------------------------------------------------------------------------------


def make_optimizer(name: str, params: Iterable, options: dict[str, Any]) -> torch.optim.Optimizer:
    """The optimizers the registry's train_defaults can name."""
    lr = float(options["lr"])
    weight_decay = float(options.get("weight_decay", 0.0) or 0.0)
    if name == "adagrad":
        return torch.optim.Adagrad(
            params,
            lr=lr,
            lr_decay=float(options.get("lr_decay", 0.0) or 0.0),
            initial_accumulator_value=float(options.get("initial_accumulator_value", 0.0)),
            eps=float(options.get("eps", 1e-10)),
            weight_decay=weight_decay,
        )
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(
            params, lr=lr, momentum=float(options.get("momentum", 0.9)), weight_decay=weight_decay
        )
    raise SportsdetError(f"unknown optimizer {name!r} in the training options; use adagrad, adamw or sgd")


def fit_scratch(ctx: TrainContext) -> TrainResult:
    """Train a registry model from random weights (the notebook's recipe for seed-cnn)."""
    options = ctx.options
    model = build_model(ctx.spec.name, num_classes=len(ctx.labels), pretrained=False, **ctx.model_config)
    optimizer = make_optimizer(str(options.get("optimizer", "adagrad")), model.parameters(), options)
    train_loader, val_loader = ctx.loaders(augment=bool(options.get("augment")))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=float(options.get("label_smoothing", 0.0) or 0.0))
    run_epochs(
        ctx,
        model,
        optimizer,
        None,
        train_loader,
        val_loader,
        int(options["epochs"]),
        stage="train",
        loss_fn=loss_fn,
        patience=options.get("patience"),
    )
    ctx.load_best(model)
    return TrainResult(
        model=model.eval(),
        history=ctx.history,
        best=ctx.best,
        info={"optimizer": options.get("optimizer", "adagrad")},
    )


# --------------------------------------------------------------------------------------------
# the run folder and the `train` entry point
# --------------------------------------------------------------------------------------------


def default_model_name() -> str:
    """ "lite0" once the transfer-learning models are registered, else the notebook's CNN."""
    from sportsdet.models import REGISTRY

    return "lite0" if "lite0" in REGISTRY else "seed-cnn"


def _run_has_content(run_dir: Path) -> bool:
    return run_dir.is_dir() and any(run_dir.iterdir())


def _clear_run(run_dir: Path) -> None:
    """--force: remove what a previous run wrote (only sportsdet's own files)."""
    for name in RUN_FILES:
        (run_dir / name).unlink(missing_ok=True)
    for name in RUN_DIRS:
        if (run_dir / name).is_dir():
            shutil.rmtree(run_dir / name)


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, ensure_ascii=False)
        handle.write("\n")
    os.replace(tmp, path)


def resolve_options(spec: ModelSpec, overrides: dict[str, Any]) -> dict[str, Any]:
    """Registry train_defaults, then the caller's options (None means "not given")."""
    options = dict(spec.train_defaults)
    options.setdefault("recipe", "scratch")
    options.setdefault("epochs", 10)
    options.setdefault("batch_size", 32)
    options.setdefault("lr", 1e-3)
    options.setdefault("workers", 0)
    options.update({k: v for k, v in overrides.items() if v is not None})
    for key in ("epochs", "batch_size"):
        if int(options[key]) < 1:
            raise SportsdetError(f"--{key.replace('_', '-')} must be at least 1, got {options[key]}")
    if float(options["lr"]) <= 0:
        raise SportsdetError(f"--lr must be positive, got {options['lr']}")
    if options.get("time_budget") is not None and options["recipe"] != "transfer":
        raise SportsdetError(
            f"--time-budget plans pretrained (transfer) training; {spec.name} trains a fixed number of "
            "epochs: use --epochs"
        )
    if options.get("patience") is not None and int(options["patience"]) < 0:
        raise SportsdetError(f"--patience must be 0 (off) or more, got {options['patience']}")
    return options


def _preprocessing_and_config(
    spec: ModelSpec, options: dict[str, Any]
) -> tuple[Preprocessing, dict[str, Any]]:
    """The model's preprocessing, with an optional smaller/larger input_size (tests, experiments)."""
    from dataclasses import replace

    preprocessing = spec.preprocessing
    config = dict(options.get("model_config") or {})
    size = options.get("input_size")
    if size is not None and int(size) != preprocessing.input_size:
        preprocessing = replace(preprocessing, input_size=int(size))
        if options.get("recipe") == "scratch":
            config["input_size"] = int(size)  # the from-scratch CNN sizes its dense layer by it
    return preprocessing, config


def _load_recipe(name: str) -> Callable[[TrainContext], TrainResult]:
    if name not in RECIPES:
        raise SportsdetError(f"unknown training recipe {name!r}; known: {', '.join(sorted(RECIPES))}")
    module_name, function_name = RECIPES[name].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise SportsdetError(f"training recipe {name!r} is not available in this install ({exc})") from None
    return getattr(module, function_name)


def train(
    data: str | Path | None,
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
) -> TrainResult:
    """Train a model on a folder of images and write the run folder (see docs/ARCHITECTURE.md).

    options: training options overriding the model's registry defaults (epochs, batch_size, lr,
    patience, workers, input_size, model_config, ...; None values are ignored).
    resume: continue from `out`/checkpoints/last.* with the run's own config and split
    (only epochs, patience and workers may change). callbacks: extra Callback objects.
    Raises SportsdetError for bad input; KeyboardInterrupt leaves the last checkpoint in place.
    """
    from sportsdet.data.discover import scan_dataset
    from sportsdet.data.splits import SplitManifest, make_split

    console = console or Console(stderr=True, soft_wrap=True)  # log lines stay whole in files
    run_dir = Path(out).expanduser()
    overrides = dict(options or {})
    if resume and force:
        raise SportsdetError(
            "--resume and --force contradict each other: resume keeps the run, force restarts it"
        )
    if run_dir.exists() and not run_dir.is_dir():
        raise SportsdetError(f"{run_dir}: is a file; --out needs a folder for the run")

    resume_state = None
    if resume:
        last = run_dir / "checkpoints" / "last.safetensors"
        if not last.is_file():
            raise SportsdetError(
                f"{run_dir}: nothing to resume (no checkpoints/last.safetensors); "
                "start the run without --resume"
            )
        config_path = run_dir / "config.json"
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise SportsdetError(
                f"{config_path}: cannot read the run's config ({exc}); start again with --force"
            ) from None
        resolved = dict(config["options"])
        for key, value in overrides.items():
            if value is None:
                continue
            if key in RESUME_OVERRIDABLE:
                resolved[key] = value
            elif resolved.get(key) != value:
                console.print(
                    f"[yellow]warning:[/] --resume keeps the run's {key}={resolved.get(key)!r}; "
                    f"ignoring {value!r}",
                    highlight=False,
                    soft_wrap=True,
                )
        for given, key in ((model, "model"), (split, "split"), (seed, "seed")):
            if given is not None and given != config[key]:
                console.print(
                    f"[yellow]warning:[/] --resume keeps the run's {key}={config[key]!r}; ignoring {given!r}",
                    highlight=False,
                    soft_wrap=True,
                )
        spec = get_model_spec(config["model"])
        manifest = SplitManifest.load(run_dir / "split.json")
        missing = manifest.missing_files()
        if missing:
            raise SportsdetError(
                f"{run_dir / 'split.json'}: {len(missing)} training file(s) are gone from {manifest.root} "
                f"(e.g. {missing[0]}); restore them or start a new run"
            )
        data_summary = json.loads((run_dir / "data_summary.json").read_text(encoding="utf-8"))
        run_seed = int(config["seed"])
        resume_state = read_checkpoint(last)
        config["options"] = resolved
    else:
        if data is None:
            raise SportsdetError("give the DATA folder to train on")
        if _run_has_content(run_dir):
            if not force:
                raise SportsdetError(
                    f"{run_dir}: already holds a run; use --resume to continue it, --force to replace it, "
                    "or choose another --out"
                )
        model_name = model or default_model_name()
        spec = get_model_spec(model_name)
        run_seed = 0 if seed is None else int(seed)
        resolved = resolve_options(spec, overrides)
        scan = scan_dataset(data)
        strategy = split or ("official" if scan.layout == "split" else "random:0.2")
        manifest = make_split(scan, strategy, run_seed, classes)  # checks the class names first
        if classes:
            scan = scan.restricted_to(manifest.classes)
        for warning in scan.warnings:  # escape: class names such as "[bold]polo" are not markup
            console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
        for note in manifest.notes:
            console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
        if len(manifest.classes) < 2:
            raise SportsdetError(
                f"{scan.root}: training needs at least 2 classes, found {len(manifest.classes)}"
            )
        data_summary = scan.to_dict()
        if force:  # only now that the new run's data and options are known to be good
            _clear_run(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        manifest.save(run_dir / "split.json")
        _write_json(run_dir / "data_summary.json", data_summary)
        config = {
            "model": spec.name,
            "recipe": resolved["recipe"],
            "data": str(scan.root),
            "split": manifest.strategy,
            "classes": list(manifest.classes),
            "seed": run_seed,
            "options": resolved,
            "versions": library_versions(),
        }
    _write_json(run_dir / "config.json", config)

    seed_everything(run_seed)
    preprocessing, model_config = _preprocessing_and_config(spec, resolved)
    ctx = TrainContext(
        run_dir=run_dir,
        spec=spec,
        labels=list(manifest.classes),
        manifest=manifest,
        options=resolved,
        seed=run_seed,
        preprocessing=preprocessing,
        model_config=model_config,
        console=console,
        resume=resume_state,
    )
    if resume_state is not None:
        ctx.history = list(resume_state[1]["history"])  # so callbacks see it from the start
    ctx.callbacks = [
        ProgressBar(console),
        MetricsCSV(run_dir / "metrics.csv"),
        CurvesPlot(run_dir / "curves.png", every=int(resolved.get("curves_every", 1))),
        Checkpointer(ctx.checkpoint_dir),
        *(callbacks or []),
    ]
    counts = {s: len(manifest.items(s)) for s in ("train", "valid", "test")}
    console.print(
        f"training {spec.name} on {len(ctx.labels)} classes: {counts['train']} train, "
        f"{counts['valid']} valid, {counts['test']} test images "
        f"({manifest.strategy}, seed {run_seed}) -> {run_dir}",
        highlight=False,
        soft_wrap=True,
    )
    if counts["valid"] == 0:
        console.print(
            "[yellow]note:[/] no validation images: the best checkpoint is the last epoch and "
            "early stopping is off"
        )
    started = time.time()
    try:
        result = _load_recipe(str(resolved["recipe"]))(ctx)
    except KeyboardInterrupt:
        if (run_dir / "checkpoints" / "last.safetensors").is_file():
            console.print(
                f"[yellow]interrupted[/] after {len(ctx.history)} finished epoch(s); the last checkpoint is "
                f'kept. Continue with: sportsdet train --out "{run_dir}" --resume',
                highlight=False,
                soft_wrap=True,
            )
        else:
            console.print(
                "[yellow]interrupted[/] before the first epoch finished; nothing to resume. "
                "Start again with --force.",
                highlight=False,
                soft_wrap=True,
            )
        raise
    except DataFileError as exc:
        # The split lists the bad file, so this run cannot be resumed once the file is moved.
        raise SportsdetError(f"{exc} with --force (the run in {run_dir} stopped there)") from None
    if result.best is None:
        raise SportsdetError(f"{run_dir}: training finished without any epoch; nothing to save")
    calibrated: dict[str, Any] = {"temperature": 1.0, "method": "none"}
    if resolved.get("calibrate", True):
        if result.valid_logits is not None:
            valid = (result.valid_logits, np.asarray([label for _, label in manifest.items("valid")]))
        else:
            valid = validation_logits(ctx, result.model)
        if valid is None:
            calibrated["why"] = "no validation split to fit a temperature on"
        else:
            calibrated = calibrate_temperature(result.model, spec.output_key, *valid)
            if calibrated["method"] == "none":
                console.print(f"[dim]scores not calibrated: {calibrated['why']}[/]", highlight=False)
            else:
                console.print(
                    f"calibrated scores: temperature {calibrated['temperature']:.3f} (validation ECE "
                    f"{calibrated['valid_ece_before']:.1%} -> {calibrated['valid_ece_after']:.1%})",
                    highlight=False,
                )
    seconds = time.time() - started

    previous_seconds = float(config.get("seconds_before_resume", 0.0))
    manifest_path = run_dir / "split.json"
    save_bundle(
        run_dir / "model",
        state_dict=result.model.state_dict(),
        model_name=spec.name,
        model_config=model_config,
        labels=ctx.labels,
        preprocessing=preprocessing,
        output_key=spec.output_key,
        data={
            "root": str(manifest.root),
            "split": manifest.strategy,
            "manifest": str(manifest_path.resolve()),
            "manifest_sha256": sha256_file(manifest_path),
            "counts": {s: len(manifest.items(s)) for s in ("train", "valid", "test")},
            "scan": data_summary,
        },
        training={
            "recipe": resolved["recipe"],
            "epochs_run": len(result.history),
            "best_epoch": result.best.get("epoch"),
            "seconds": round(previous_seconds + seconds, 1),
            "seed": run_seed,
            "options": resolved,
            "resumed": resume,
            **result.info,
            "calibration": calibrated,
        },
        metrics={
            "best_val_accuracy": result.best.get("val_acc"),
            "best_val_loss": result.best.get("val_loss"),
            "best_epoch_train_accuracy": result.best.get("train_acc"),
            "selected_by": (
                "val_acc" if result.best.get("val_acc") is not None else "last epoch (no validation set)"
            ),
        },
    )
    config["seconds_before_resume"] = round(previous_seconds + seconds, 1)
    _write_json(run_dir / "config.json", config)
    best = result.best
    summary = f"best epoch {best['epoch']}"
    if best.get("val_acc") is not None:
        summary += f": val_acc {best['val_acc']:.3f}, val_loss {best['val_loss']:.4f}"
    console.print(
        f"done in {seconds:.0f}s; {summary}; model bundle: {run_dir / 'model'}",
        highlight=False,
        soft_wrap=True,
    )
    return result
