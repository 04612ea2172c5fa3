"""The epoch loop every recipe shares, the context it runs in, and the callbacks protocol.

    ctx = TrainContext(...)                                # built by sportsdet.training.run
    loop = run_epochs(ctx, model, optimizer, scheduler, train_batches, val_batches, epochs, stage="head")

`run_epochs` trains one stage: it runs the callbacks (progress, metrics.csv, curves.png,
checkpoints; sportsdet.training.callbacks), decides the best epoch and early stopping, numbers
epochs globally across stages, and resumes by itself when `ctx.resume` holds a checkpoint of
the same stage. A multi-stage recipe resumed inside a later stage skips the earlier stages
itself (`ctx.skip_finished_stage`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn
from torch.utils.data import DataLoader

from sportsdet.data.augment import augmentation
from sportsdet.data.dataset import EpochShuffleSampler, ImageDataset, make_loader, seed_worker
from sportsdet.data.splits import SplitManifest
from sportsdet.errors import SportsdetError, raise_dropped_interrupt
from sportsdet.models import ModelSpec
from sportsdet.preprocess import Preprocessing
from sportsdet.run_folder import BEST_CHECKPOINT, RunFolder
from sportsdet.training import distributed
from sportsdet.training.checkpoint import (
    model_tensors,
    read_checkpoint,
    set_rng_state,
    unflatten_optimizer_state,
)
from sportsdet.training.options import TrainOptions

BEST_KEYS = ("epoch", "stage", "val_loss", "val_acc", "train_loss", "train_acc")


class Callback:
    """Keras-style hooks. `logs` of on_epoch_end is the epoch's row (see METRICS_COLUMNS)."""

    def on_train_begin(self, ctx: TrainContext) -> None: ...
    def on_epoch_begin(self, ctx: TrainContext, epoch: int, stage: str, batches: int) -> None: ...
    def on_batch_end(self, ctx: TrainContext, batch: int, logs: dict[str, float]) -> None: ...
    def on_epoch_end(self, ctx: TrainContext, epoch: int, logs: dict[str, Any]) -> None: ...
    def on_train_end(self, ctx: TrainContext) -> None: ...


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
    trainer: nn.Module | None = None  # what the steps call: `model`, or DDP around it when distributed


@dataclass
class TrainContext:
    """Everything a recipe needs; see the module docstring.

    options: the resolved, typed training options (sportsdet.training.options), also in
    config.json. resume: the last checkpoint's (tensors, state) when continuing a run, else None.
    recipe_state: a JSON-able dict a recipe may fill (saved in every last checkpoint, given back
    in `resume[1]["recipe_state"]`).
    """

    run_dir: Path
    spec: ModelSpec
    labels: list[str]
    manifest: SplitManifest
    options: TrainOptions
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
    # A multi-stage recipe's whole plan while an early stage runs, so that the progress's "epoch 1/N"
    # counts the stages to come (it read 1/3 in the head stage, then 4/23); None: the loop's own count.
    planned_epochs: int | None = None

    @property
    def checkpoint_dir(self) -> Path:
        return RunFolder(self.run_dir).checkpoints

    def stage_done(self, stage: str) -> bool:
        """True when resuming a run whose history already finished `stage` (skip it)."""
        if self.resume is None:
            return False
        state = self.resume[1]
        finished = {row["stage"] for row in state["history"]}
        return stage in finished and (state["stage"] != stage or state.get("stage_done", False))

    def skip_finished_stage(self, stage: str) -> bool:
        """True when resuming a run that already finished `stage`: the recipe skips it.

        When the run stopped right after that stage, the loop's state (history, best epoch, RNG) is
        set back to that moment, so the next stage starts exactly as it would have uninterrupted.
        """
        if not self.stage_done(stage):
            return False
        tensors, state = self.resume
        if state["stage"] == stage:
            self.history = list(state["history"])
            self.best = state["best"]
            self.epochs_since_best = int(state.get("epochs_since_best", 0))
            self.recipe_state = dict(state.get("recipe_state") or {})
            set_rng_state(state["rng"], tensors)
            self.resume = None
        return True

    def datasets(
        self, augment: Any = None, *, shard_valid: bool = False
    ) -> tuple[ImageDataset, ImageDataset | None]:
        """Train and validation datasets; augment=True uses the "light" `data.augment.augmentation`.

        shard_valid: only this rank's share of the validation photos (distributed; summed by
        `evaluate_loader`).
        """
        if augment is True:
            augment = augmentation(self.preprocessing, "light")
        cache = self.options.cache
        root = self.manifest.data_roots
        train = ImageDataset(
            self.manifest.items("train"), self.preprocessing, augment=augment or None, cache=cache, root=root,
            augment_seed=self.seed,
        )  # fmt: skip
        all_valid = self.manifest.items("valid")
        val_items = all_valid[distributed.rank() :: distributed.world_size()] if shard_valid else all_valid
        # A rank whose share is empty (3 validation photos, 4 processes) still gets a loader: with
        # None it skipped `evaluate_loader`'s collective sum and the other ranks waited for it (a
        # hang until the 30-minute timeout).
        val = ImageDataset(val_items, self.preprocessing, cache=cache, root=root) if all_valid else None
        return train, val

    def loaders(self, augment: Any = None) -> tuple[DataLoader, DataLoader | None]:
        """DataLoaders for the train and validation splits (validation None when it is empty)."""
        train, val = self.datasets(augment, shard_valid=distributed.active())
        workers = self.options.workers
        threads = max(1, torch.get_num_threads())
        cached = [d for d in (train, val) if d is not None and d.cache_enabled]
        if cached:
            total = sum(len(d) for d in cached)
            self.console.print(f"decoding {total} images into memory (once for all epochs)", soft_wrap=True)
            for dataset in cached:
                dataset.preload(threads)
        batch = self.options.batch_size
        train_workers = 0 if train.cache_enabled else workers
        if distributed.active():  # each rank takes its part of every global batch of `batch`
            train_loader = DataLoader(
                distributed.PaddingMarked(train),
                batch_sampler=distributed.RankBatches(EpochShuffleSampler(len(train), self.seed), batch),
                num_workers=train_workers,
                worker_init_fn=seed_worker if train_workers > 0 else None,
            )
        else:
            train_loader = make_loader(
                train, batch_size=batch, train=True, seed=self.seed, workers=train_workers
            )
        val_loader = None
        if val is not None:
            val_workers = 0 if val.cache_enabled else workers
            val_loader = make_loader(val, batch_size=batch, train=False, workers=val_workers)
        return train_loader, val_loader

    def loss_function(self) -> nn.Module:
        """The training loss: cross-entropy with the run's label smoothing and class weights.

        class_weight=balanced weights class c by n / (C * n_c) over the train photos (scikit-learn's
        "balanced"). PyTorch divides a batch's weighted loss by its weights' sum, so the loss keeps
        its scale; the validation loss in metrics.csv is weighted the same way.
        """
        weight = None
        if self.options.class_weight == "balanced":
            labels = [label for _, label in self.manifest.items("train")]
            counts = np.bincount(labels, minlength=len(self.labels)).astype(np.float64)
            # A class with no training photos keeps weight 1: at 0, a validation batch of only that
            # class had a weight sum of 0, a NaN loss, and the run stopped as "diverged".
            weights = np.ones_like(counts)
            present = counts > 0
            weights[present] = len(labels) / (present.sum() * counts[present])
            weight = torch.from_numpy(weights).float()
        return BatchLoss(weight=weight, label_smoothing=self.options.label_smoothing)

    def load_best(self, model: nn.Module) -> nn.Module:
        """Load the best checkpoint's weights into `model` (rank 0 reads it and sends it to the others)."""
        tensors = None
        if distributed.is_main():
            path = self.checkpoint_dir / BEST_CHECKPOINT
            tensors, state = read_checkpoint(path)
            saved = (state.get("best") or {}).get("epoch")
            wanted = (self.best or {}).get("epoch")
            if wanted is not None and saved != wanted:
                # A process killed between the best and the last checkpoint's writes: the bundle
                # would get one epoch's weights and another's scores.
                raise SportsdetError(
                    f"{path}: holds the weights of epoch {saved}, but the run's best epoch is {wanted} "
                    "(it was stopped between writing its two checkpoints); resume it (--resume) to set "
                    "that right"
                )
        model.load_state_dict(model_tensors(distributed.broadcast_tensors(tensors)))
        return model


@dataclass
class TrainResult:
    """What a recipe hands back: the model with its best weights loaded, and what to record."""

    model: nn.Module
    history: list[dict[str, Any]]
    best: dict[str, Any] | None
    info: dict[str, Any] = field(default_factory=dict)
    # The returned model's logits on the validation split, when the recipe has them cheaply
    # (the transfer recipe: from cached activations); else training.run computes them.
    valid_logits: np.ndarray | None = None
    # Filled in by training.run after the recipe: where the run, its test-split
    # evaluation (an EvalResult) and its report are.
    run_dir: Path | None = None
    evaluation: Any = None
    report: Path | None = None


def validation_logits(ctx: TrainContext, model: nn.Module) -> tuple[np.ndarray, np.ndarray] | None:
    """(logits, labels) of `model` on the validation split, or None when there is none."""
    _, val = ctx.datasets()
    if val is None:
        return None
    outputs = []
    model.eval()
    with torch.inference_mode():
        for inputs, _ in make_loader(val, batch_size=ctx.options.batch_size, train=False):
            outputs.append(model(inputs.contiguous(memory_format=torch.channels_last)).float().numpy())
    return np.concatenate(outputs), np.asarray(val.labels)


def is_better(logs: dict[str, Any], best: dict[str, Any] | None) -> bool:
    """Higher validation accuracy wins, ties go to the lower validation loss."""
    if logs.get("val_acc") is None:  # no validation set: the latest epoch is the best we know
        return True
    if best is None or best.get("val_acc") is None:
        return True
    if logs["val_acc"] != best["val_acc"]:
        return logs["val_acc"] > best["val_acc"]
    return logs["val_loss"] < best["val_loss"]


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The effective learning rate of the first group (Adagrad's lr_decay included)."""
    group = optimizer.param_groups[0]
    lr = float(group["lr"])
    decay = float(group.get("lr_decay", 0.0) or 0.0)
    if decay:
        # Called before every batch: the first parameter with a state, without listing them all.
        first = next((optimizer.state[p] for p in group["params"] if p in optimizer.state), None)
        step = float(first["step"]) if first and "step" in first else 0.0
        lr = lr / (1 + step * decay)  # what the next step will use (torch: lr / (1 + (step-1) * decay))
    return lr


class BatchLoss(nn.CrossEntropyLoss):
    """Cross-entropy (class weights, label smoothing) as the mean over the whole batch of every
    process: each rank's share is its rows' weighted sum over the weight of all ranks' rows, times
    the number of ranks (DDP averages the ranks' gradients). In one process it is exactly
    nn.CrossEntropyLoss. Each rank's own weighted mean, averaged, was another loss wherever the
    ranks' halves weigh differently (class_weight=balanced: --nproc 2 trained another model)."""

    def parts(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, float]:
        """(the rows' weighted loss summed, their weight): the mean's numerator and denominator.
        Padding rows (target distributed.IGNORED) count in neither."""
        summed = nn.functional.cross_entropy(
            logits, targets, weight=self.weight, reduction="sum", label_smoothing=self.label_smoothing,
            ignore_index=distributed.IGNORED,
        )  # fmt: skip
        return summed, self._weight_of(targets)

    def _weight_of(self, targets: torch.Tensor) -> float:
        real = targets[targets != distributed.IGNORED]
        return float(self.weight[real].sum()) if self.weight is not None else float(len(real))

    shared: tuple[float, float] | None = None  # the last step's parts, when it took the global mean

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        self.shared = None
        if not distributed.active():
            return super().forward(logits, targets)
        # The ranks' rows weigh differently (class weights; padding rows, which weigh nothing).
        summed, weight = self.parts(logits, targets)
        (whole,) = distributed.all_sum([weight])  # every rank takes this step (shard_rows)
        self.shared = (float(summed.detach()), weight)
        return summed * distributed.world_size() / max(whole, 1e-12)

    def epoch_part(self, loss: torch.Tensor, targets: torch.Tensor) -> tuple[float, float]:
        """What a step adds to the epoch's (weighted) mean loss: (weighted loss sum, weight)."""
        if self.shared is not None:
            return self.shared
        weight = self._weight_of(targets)
        return float(loss.detach()) * weight, weight


def evaluate_loader(model: nn.Module, loader: Iterable, loss_fn: Callable) -> tuple[float, float]:
    """Mean loss and accuracy of `model` over a loader (no gradients, eval mode); with a BatchLoss
    the weighted mean over every rank's photos, as one process gives it."""
    model.eval()
    total_loss, total_weight, correct, seen = 0.0, 0.0, 0, 0
    with torch.inference_mode():
        for inputs, targets in loader:
            inputs = inputs.contiguous(memory_format=torch.channels_last)
            logits = model(inputs)
            if isinstance(loss_fn, BatchLoss):
                summed, weight = loss_fn.parts(logits, targets)
                total_loss, total_weight = total_loss + float(summed), total_weight + weight
            else:
                total_loss += float(loss_fn(logits, targets)) * len(targets)
                total_weight += len(targets)
            correct += int((logits.argmax(1) == targets).sum())
            seen += len(targets)
    # every rank's share
    total_loss, total_weight, correct, seen = distributed.all_sum([total_loss, total_weight, correct, seen])
    return total_loss / max(total_weight, 1e-12), correct / max(seen, 1)


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
    loss_fn = loss_fn or BatchLoss()
    model = model.to(memory_format=torch.channels_last)  # ~1.5x faster convolutions on CPU
    loop = LoopState(model, optimizer, scheduler, stage, epochs)
    ctx.loop = loop
    if ctx.resume is not None and ctx.resume[1]["stage"] == stage:
        _restore(ctx, loop)
    loop.trainer = distributed.wrap_model(model)
    callbacks = list(ctx.callbacks)
    for callback in callbacks:
        callback.on_train_begin(ctx)
    try:
        while loop.stage_epoch < epochs and not loop.stop:
            epoch = len(ctx.history) + 1
            _begin_epoch(train_loader, epoch)
            for callback in callbacks:
                callback.on_epoch_begin(ctx, epoch, stage, len(train_loader))
            started = time.perf_counter()
            train_loss, train_acc, lr = _train_epoch(ctx, loop, train_loader, loss_fn, scheduler_step)
            if scheduler is not None and scheduler_step == "epoch":
                scheduler.step()
            val_loss = val_acc = None
            if val_loader is not None:
                val_loss, val_acc = evaluate_loader(model, val_loader, loss_fn)
            row = {
                "epoch": epoch,
                "stage": stage,
                "lr": lr,
                "train_loss": train_loss,
                "train_acc": train_acc,
                "val_loss": val_loss,
                "val_acc": val_acc,
                "seconds": round(time.perf_counter() - started, 3),
            }
            # The training loss is summed before each step's update: weights that the last steps
            # blew up show only in the validation loss (a NaN model was saved as a success).
            diverged = [v for v in (train_loss, val_loss) if v is not None and not math.isfinite(v)]
            if diverged:
                raise SportsdetError(
                    f"training diverged at epoch {epoch} (loss {diverged[0]}); lower --lr and start "
                    "again with --force"
                )
            stopped_early = _record_epoch(ctx, loop, row, patience)
            for callback in callbacks:
                callback.on_epoch_end(ctx, epoch, row)
            if stopped_early:
                ctx.console.print(
                    f"early stop: no better validation epoch (accuracy, then loss) for {patience} epochs "
                    f"(best epoch {ctx.best['epoch']}, val_acc {ctx.best['val_acc']:.3f})",
                    highlight=False,
                    soft_wrap=True,
                )
    finally:
        for callback in callbacks:
            callback.on_train_end(ctx)
    return loop


def _begin_epoch(train_loader: Iterable, epoch: int) -> None:
    """Tell the sampler and the dataset the epoch (the shuffle and each photo's augmentation depend on
    it); give every rank rank 0's random state."""
    for sampler in (getattr(train_loader, "sampler", None), getattr(train_loader, "batch_sampler", None)):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
    dataset = getattr(train_loader, "dataset", None)
    while dataset is not None:  # distributed.PaddingMarked wraps the ImageDataset
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        dataset = getattr(dataset, "dataset", None)
    distributed.sync_rng()  # the ranks draw the same shuffles, views and dropout masks


def _restore(ctx: TrainContext, loop: LoopState) -> None:
    """Continue a stage from `ctx.resume`: weights, optimizer, scheduler, history, RNG."""
    tensors, state = ctx.resume
    try:
        loop.model.load_state_dict(model_tensors(tensors))
        settings = [set(group) for group in loop.optimizer.param_groups]
        loop.optimizer.load_state_dict(unflatten_optimizer_state(state["optimizer"], tensors))
        if [set(group) for group in loop.optimizer.param_groups] != settings:  # e.g. Adagrad's into SGD
            raise ValueError("the checkpoint's optimizer is of another kind")
    except (RuntimeError, KeyError, ValueError) as exc:
        # config.json or split.json edited since (another class list, input size, optimizer):
        # the checkpoint's tensors no longer fit the network they describe.
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise SportsdetError(
            f"{ctx.checkpoint_dir / 'last.safetensors'}: does not fit the run's config.json and split.json "
            f"({first}); restore them as they were, or start again with --force"
        ) from None
    if loop.scheduler is not None and state.get("scheduler"):
        loop.scheduler.load_state_dict(state["scheduler"])
        _rate_of_the_step_reached(loop.scheduler)
    ctx.history = list(state["history"])
    ctx.best = state["best"]
    ctx.epochs_since_best = int(state.get("epochs_since_best", 0))
    ctx.recipe_state = dict(state.get("recipe_state") or {})
    loop.stage_epoch = int(state["stage_epoch"])
    loop.stop = bool(state.get("stopped_early", False))  # a finished stage may be extended (--epochs)
    set_rng_state(state["rng"], tensors)
    ctx.resume = None
    ctx.console.print(f"resuming {loop.stage} after epoch {state['epoch']} ({ctx.run_dir})", soft_wrap=True)


def _rate_of_the_step_reached(scheduler: Any) -> None:
    """Set each group's rate to the schedule's at the step the checkpoint reached. The optimizer's
    saved rate is the old schedule's: `--resume --epochs N` makes the schedule longer, and the rate
    at the end of the old cosine (0) trained the added epochs' first steps (a whole epoch of a
    one-batch run) at 0."""
    lambdas = getattr(scheduler, "lr_lambdas", None)
    if not lambdas:
        return
    rates = [base * fn(scheduler.last_epoch) for base, fn in zip(scheduler.base_lrs, lambdas, strict=True)]
    for group, rate in zip(scheduler.optimizer.param_groups, rates, strict=True):
        group["lr"] = rate
    scheduler._last_lr = rates  # what get_last_lr() reports


def _train_epoch(
    ctx: TrainContext, loop: LoopState, batches: Iterable, loss_fn: Callable, scheduler_step: str
) -> tuple[float, float, float]:
    """One pass over the training batches; returns (mean loss, accuracy, mean learning rate).

    The learning rate is the mean over the epoch's steps: with a per-batch schedule the rate at the
    epoch's start says little (a warm-up epoch starts near 0 and ends at the peak).
    """
    model, optimizer, scheduler = loop.trainer or loop.model, loop.optimizer, loop.scheduler
    model.train()
    total_loss, total_weight, correct, seen = 0.0, 0.0, 0, 0
    rates: list[float] = []
    for batch, (inputs, targets) in enumerate(batches):
        raise_dropped_interrupt()  # a Ctrl-C Python dropped in a callback stops the run here
        rates.append(current_lr(optimizer))
        inputs = inputs.contiguous(memory_format=torch.channels_last)
        logits = model(inputs)
        loss = loss_fn(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None and scheduler_step == "batch":
            scheduler.step()
        if isinstance(loss_fn, BatchLoss):  # the weighted mean over the epoch, as validation's
            part, weight = loss_fn.epoch_part(loss, targets)
        else:
            part, weight = float(loss.detach()) * len(targets), len(targets)
        total_loss, total_weight = total_loss + part, total_weight + weight
        correct += int((logits.detach().argmax(1) == targets).sum())
        seen += int((targets != distributed.IGNORED).sum())  # padding rows are no photos
        logs = {"loss": total_loss / max(total_weight, 1e-12), "acc": correct / max(seen, 1)}
        for callback in ctx.callbacks:
            callback.on_batch_end(ctx, batch, logs)
    # the global epoch
    total_loss, total_weight, correct, seen = distributed.all_sum([total_loss, total_weight, correct, seen])
    lr = float(np.mean(rates)) if rates else current_lr(optimizer)
    return total_loss / max(total_weight, 1e-12), correct / max(seen, 1), lr


def _record_epoch(ctx: TrainContext, loop: LoopState, row: dict[str, Any], patience: int | None) -> bool:
    """Add the epoch to the history, update the best epoch; True when early stopping triggers.

    Decided before the callbacks run, so the checkpoint written for this epoch knows both.
    """
    ctx.history.append(row)
    loop.stage_epoch += 1
    if is_better(row, ctx.best):
        ctx.best = {k: row.get(k) for k in BEST_KEYS}
        ctx.epochs_since_best = 0
    else:
        ctx.epochs_since_best += 1
    stopped_early = bool(patience) and row["val_acc"] is not None and ctx.epochs_since_best >= int(patience)
    loop.stop = loop.stop or stopped_early
    return stopped_early
