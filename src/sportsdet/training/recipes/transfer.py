"""The "transfer" recipe: an ImageNet-pretrained network adapted to the user's classes on a CPU.

Full fine-tuning of EfficientNet-Lite0 runs about 19 img/s on two cores, so this recipe spends
the expensive part (the frozen lower network) once, and trains only what sits above it:

  features  the frozen trunk runs once per photo and view in onnxruntime and its outputs are
            cached on disk (sportsdet.training.feature_cache): the pooled features and the activation at the
            "tap" below the last `finetune_stages` stages. Train views are the photo, its mirror
            image, `aug_views` random crops/colour changes (what real photos look like) and, with
            `grey_view`, the photo in black and white; each epoch draws one view per photo.
  stage 1   "head": a fresh Linear classifier on the pooled features (seconds).
  stage 2   "finetune": the top stages + classifier trained from the cached activations with
            label smoothing, AdamW, a warm-up + cosine schedule per step and a larger learning
            rate for the new head than for the pretrained stages (discriminative rates).

Both stages go through `sportsdet.training.loop.run_epochs`, so metrics.csv (with the stage column),
curves.png and the checkpoints are the same as for any recipe; the best epoch over both stages
(by validation accuracy) is the one kept. `time_budget` ("10m", "90s", seconds) plans the number
of views and fine-tuning epochs to fit.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from sportsdet.errors import SportsdetError
from sportsdet.models import build_model
from sportsdet.models.heads import DistanceScaledLinear
from sportsdet.models.stages import TopOfNetwork, default_tap, trunk_stages
from sportsdet.training import distributed
from sportsdet.training.feature_cache import (
    FeatureKey,
    cached_digests,
    extract_features,
    file_digest,
    measured_speed,
)
from sportsdet.training.loop import TrainContext, TrainResult, run_epochs
from sportsdet.training.options import TransferOptions
from sportsdet.training.schedule import cosine_with_warmup, extra_views, parse_duration, plan_schedule

# Throughput assumed before anything was measured on this machine (Lite0, 2-core CPU).
_ASSUMED_EXTRACT_IMG_S = 45.0


def cpu_has_bf16() -> bool:
    """AVX-512 BF16 or AMX: there bf16 autocast trains the top stages ~1.6-2x faster (measured)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class ArrayBatches:
    """Minibatches from in-memory arrays; each sample's view is drawn at random every epoch.

    views: arrays of the same photos (e.g. photo, mirror image, crops), same row order.
    shard: when distributed, yield only this rank's part of each global batch (every rank draws
    the same order: run_epochs gives them the same random state).
    """

    def __init__(
        self,
        views: list[np.ndarray],
        labels: np.ndarray,
        batch_size: int,
        shuffle: bool,
        shard: bool = False,
        weights: list[float] | None = None,
    ) -> None:
        self.views, self.batch_size, self.shuffle, self.shard = views, batch_size, shuffle, shard
        self.weights = weights  # how often each view is drawn (None: equally often)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.n = len(self.labels)

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self):
        import torch

        order = torch.randperm(self.n).numpy() if self.shuffle else np.arange(self.n)
        if not self.shuffle:
            choice = np.zeros(self.n, np.int64)
        elif self.weights is None:
            choice = torch.randint(len(self.views), (self.n,)).numpy()
        else:
            choice = torch.multinomial(torch.tensor(self.weights, dtype=torch.float64), self.n, True).numpy()
        for start in range(0, self.n, self.batch_size):
            rows = order[start : start + self.batch_size]
            picks = choice[start : start + self.batch_size]
            padding = np.zeros(len(rows), dtype=bool)
            if self.shard:
                padding = np.array(distributed.padding_rows(len(rows)), dtype=bool)
                rows, picks = distributed.shard_rows(rows), distributed.shard_rows(picks)
            first = self.views[0]
            batch = np.empty((len(rows), *first.shape[1:]), dtype=first.dtype)
            for v, view in enumerate(self.views):
                mask = picks == v
                if mask.any():
                    batch[mask] = view[rows[mask]]
            labels = self.labels[rows]  # a copy (fancy indexing)
            labels[padding] = distributed.IGNORED  # counted once: not again as padding
            yield torch.from_numpy(batch).float(), torch.from_numpy(labels)


def _valid_batches(features: CachedFeatures, kind: str, batch_size: int) -> ArrayBatches | None:
    """The validation rows in order; when distributed, this rank's share (the loop sums them)."""
    if features.valid is None:
        return None
    part = slice(distributed.rank(), None, distributed.world_size())
    rows = features.valid[kind] if kind == "tap" else _as_4d(features.valid[kind])
    return ArrayBatches([rows[part]], features.valid_labels[part], batch_size, False)


def _chunks(array: np.ndarray, size: int) -> list[np.ndarray]:
    return [array[start : start + size] for start in range(0, len(array), size)]


def _as_4d(pooled: np.ndarray) -> np.ndarray:
    """[n, d] -> [n, d, 1, 1]: the trunk's last stage (pool + flatten) then leaves it unchanged."""
    return pooled.reshape(*pooled.shape, 1, 1)


def measure_train_speed(module: Any, sample: np.ndarray, batch_size: int) -> float:
    """Images per second of one training step of `module` here (weights restored afterwards)."""
    import torch

    state = {k: v.clone() for k, v in module.state_dict().items()}
    x = torch.from_numpy(np.repeat(sample[:1], batch_size, axis=0)).float()
    y = torch.zeros(batch_size, dtype=torch.long)
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.0)
    module.train()
    timings = []
    for _ in range(2):
        started = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(module(x), y)
        optimizer.zero_grad()
        loss.backward()
        timings.append(time.perf_counter() - started)
    module.load_state_dict(state)
    return batch_size / min(timings)


@dataclass
class CachedFeatures:
    """What the frozen trunk gave for this run: per view of the train photos, and for validation."""

    train_views: list[dict[str, np.ndarray]]  # {"pooled", "tap"} per view, rows in train order
    train_labels: np.ndarray
    valid: dict[str, np.ndarray] | None
    valid_labels: np.ndarray
    views: list[str]
    seconds: float
    view_weights: list[float] | None = None  # how often each train view is drawn (None: equally)


def fit_transfer(ctx: TrainContext) -> TrainResult:
    """The transfer recipe (see the module docstring): features, head, then the top stages."""
    started = time.perf_counter()
    options = ctx.options
    assert isinstance(options, TransferOptions)
    if options.patience:
        # Said, not silently ignored: the stages are short and the best epoch of either is kept.
        ctx.console.print(
            f"[yellow]note:[/] --patience {options.patience} is not used by the transfer recipe: its "
            f"{options.head_epochs} head epochs take seconds and its {options.epochs} fine-tuning epochs "
            "are planned; the best epoch of either is kept",
            highlight=False,
            soft_wrap=True,
        )
    unused = ([f"--workers {options.workers}"] if options.workers else []) + (
        ["--set cache=false"] if not options.cache else []
    )
    if unused:  # options of the scratch recipe's photo loader; this recipe decodes each photo once
        ctx.console.print(
            f"[yellow]note:[/] {' and '.join(unused)} not used by the transfer recipe: it decodes each photo "
            "once into its feature cache (its decoding processes: --set extract_workers=N)",
            highlight=False,
            soft_wrap=True,
        )
    model = build_model(ctx.spec.name, num_classes=len(ctx.labels), pretrained=True, **ctx.model_config)
    tap = default_tap(model, options.finetune_stages)
    trainable = len(trunk_stages(model)) - 1 - tap  # the stem always stays frozen
    if trainable < options.finetune_stages:
        ctx.console.print(
            f"[yellow]note:[/] {ctx.spec.name} has {trainable} trunk stages that can be fine-tuned; "
            f"training those, not finetune_stages={options.finetune_stages}",
            highlight=False,
            soft_wrap=True,
        )
    features = _extract(ctx, model, tap, started)
    loss_fn = ctx.loss_function()
    for param in model.parameters():
        param.requires_grad_(False)
    ctx.planned_epochs = options.head_epochs + max(int(options.epochs), 0)  # the head stage's "/N"
    head = _fit_head(ctx, model, features, loss_fn)
    ctx.planned_epochs = None  # the fine-tuning stage's own count is exact (a time budget may cut it)
    top_net, epochs, finetune_speed = _fit_top(ctx, model, tap, head, features, loss_fn)
    if not ctx.history:  # head_epochs=0 and a budget with no fine-tuning epoch: no checkpoint to load
        raise SportsdetError(
            "nothing was trained: head_epochs is 0 and the time budget leaves no fine-tuning epoch; give a "
            "longer --time-budget, or --set head_epochs=1 or more"
        )
    ctx.load_best(top_net)  # the best epoch of either stage (both hold the whole network)
    bf16 = top_net.bf16
    distance_head = _fit_distance_head(top_net, features, options.distance_sharpness)  # before calibration
    valid = features.valid
    valid_logits = _through_top(top_net, valid["tap"]).numpy() if valid is not None else None
    model.eval()
    for param in model.parameters():
        param.requires_grad_(True)
    return TrainResult(
        model=model,
        history=ctx.history,
        best=ctx.best,
        valid_logits=valid_logits,
        info={
            "transfer": {
                "views": features.views,
                **({"view_weights": features.view_weights} if features.view_weights else {}),
                "tap_stage": tap,
                "trainable_stages": trainable,
                "head_epochs": options.head_epochs,
                "finetune_epochs": epochs,
                "feature_seconds": round(features.seconds, 1),
                "finetune_img_per_s": round(finetune_speed, 1) if finetune_speed else None,
                "bf16_autocast": bf16,
                "time_budget_s": parse_duration(options.time_budget),
                "distance_head": distance_head,
            }
        },
    )


def _extract(ctx: TrainContext, model: nn.Module, tap: int, started: float) -> CachedFeatures:
    """Frozen features of every view of the train photos and of the validation photos (cached)."""
    options, spec, pre = ctx.options, ctx.spec, ctx.preprocessing
    train_items = ctx.manifest.items("train")
    valid_items = ctx.manifest.items("valid")
    if not train_items:
        raise SportsdetError(f"{ctx.run_dir}: the split has no training images")
    train_paths = [p for p, _ in train_items]

    threads = options.extract_threads or (max(1, torch.get_num_threads()) if distributed.active() else None)

    def features(paths: list[Any], view: str, what: str) -> dict[str, np.ndarray]:
        ctx.console.print(f"[dim]features: {what}, view {view} ({len(paths)} images)[/]", highlight=False)

        def run(share: list[Any], progress: bool, whose: str = "") -> dict[str, np.ndarray]:
            return extract_features(
                spec.name, share, preprocessing=pre, view=view, tap=tap, model=model, progress=progress,
                num_workers=options.extract_workers, threads=threads, description=f"features {what}{whose}",
            )  # fmt: skip

        if not distributed.active():
            return run(paths, True)
        # Each rank computes its share into the cache, then reads everyone's. On machines that do
        # not share the cache folder the second call computes the rest here: slower, still right.
        share = paths[distributed.rank() :: distributed.world_size()]
        if share:  # rank 0's bar counts its share only ("9/9 photos" of 17): said so
            run(share, distributed.is_main(), f", rank 0's share of {distributed.world_size()} processes")
        distributed.barrier()
        return run(paths, False)

    # Under a time budget, what each view still has to extract (counted before any of it runs).
    budget = options.time_budget is not None
    digests = {file_digest(p) for p in train_paths} if budget else set()
    missing = {
        view: len(digests - cached_digests(FeatureKey(spec.name, pre, view, tap).folder(), want_tap=True))
        for view in (["center", *extra_views(options)] if budget else [])
    }
    # The photos themselves first; then, within the budget, the extra views, planned with the
    # extraction speed just measured on this machine (a fresh cache has no record of it).
    train_views = [features(train_paths, "center", "train")]
    speed = measured_speed(FeatureKey(spec.name, pre, "center", tap)) or _ASSUMED_EXTRACT_IMG_S
    plan = plan_schedule(options, missing, speed)
    plan = distributed.broadcast_json(plan)  # every rank extracts and trains the same views
    if plan["dropped"]:  # said, not silent: config.json keeps what was asked, the bundle what ran
        ctx.console.print(
            f"[yellow]time budget:[/] {plan['budget_s']:.0f}s leaves no time to extract the "
            f"{', '.join(map(_view_name, plan['dropped']))} view(s) "
            f"(~{plan['extract_s_estimate']:.0f}s of extraction kept at {speed:.0f} img/s)",
            highlight=False,
        )
    views = plan["views"]
    # The black-and-white view is drawn for `grey_view` of the photos, the others share the rest.
    grey = float(options.grey_view) if plan["grey_view"] else 0.0
    weights = [grey if v == "grey" else (1 - grey) / (len(views) - 1) for v in views] if grey else None
    train_views += [features(train_paths, view, "train") for view in views[1:]]
    valid = features([p for p, _ in valid_items], "center", "valid") if valid_items else None
    return CachedFeatures(
        train_views=train_views,
        train_labels=np.array([label for _, label in train_items], dtype=np.int64),
        valid=valid,
        valid_labels=np.array([label for _, label in valid_items], dtype=np.int64),
        views=views,
        seconds=time.perf_counter() - started,
        view_weights=weights,
    )


def _view_name(view: str) -> str:
    """A cached view as a user reads it (feature_cache names them "flip", "grey", "aug<N>")."""
    return {"flip": "mirror", "grey": "black-and-white"}.get(view) or f"random-crop {int(view[3:]) + 1}"


def _fit_head(ctx: TrainContext, model: nn.Module, features: CachedFeatures, loss_fn: nn.Module) -> nn.Linear:
    """Stage 1: the classifier alone, on pooled features. Returns the (best) classifier."""
    options = ctx.options
    n_stages = len(trunk_stages(model))
    head_net = TopOfNetwork(model, n_stages - 1, options.dropout)
    head = head_net.head[0]
    for param in head.parameters():
        param.requires_grad_(True)
    batches = ArrayBatches(
        [_as_4d(v["pooled"]) for v in features.train_views],
        features.train_labels,
        options.head_batch_size,
        True,
        shard=True,
        weights=features.view_weights,
    )
    valid = _valid_batches(features, "pooled", 512)
    if options.head_epochs <= 0:
        return head
    if not ctx.skip_finished_stage("head"):
        optimizer = torch.optim.AdamW(
            head.parameters(), lr=options.head_lr, weight_decay=options.head_weight_decay
        )
        scheduler = cosine_with_warmup(optimizer, options.head_epochs * len(batches), len(batches))
        resumed = ctx.resume[1] if ctx.resume is not None and ctx.resume[1].get("stage") == "head" else {}
        started = time.perf_counter()
        run_epochs(
            ctx, head_net, optimizer, scheduler, batches, valid, options.head_epochs,
            stage="head", loss_fn=loss_fn, scheduler_step="batch",
        )  # fmt: skip
        ran = options.head_epochs - int(resumed.get("stage_epoch") or 0)
        if ran > 0:  # what an epoch costs beyond its photos (checkpoints, curves): the budget needs it
            ctx.recipe_state["head_epoch_s"] = (time.perf_counter() - started) / ran
    # Stage 2 starts from the best head, also when a resumed run skipped stage 1 (the fresh
    # network built for this process has a random classifier until then).
    ctx.load_best(head_net)
    return head


def _fit_top(
    ctx: TrainContext,
    model: nn.Module,
    tap: int,
    head: nn.Linear,
    features: CachedFeatures,
    loss_fn: nn.Module,
) -> tuple[TopOfNetwork, int, float | None]:
    """Stage 2: the top stages and the classifier, on the cached activations at the tap.

    Returns (the network above the tap, fine-tuning epochs run, training speed in img/s).
    """
    options = ctx.options
    bf16 = cpu_has_bf16() if options.bf16 == "auto" else bool(options.bf16)
    top_net = TopOfNetwork(model, tap, options.dropout, bf16=bf16)
    top_params = [p for stage in top_net.top for p in stage.parameters()]
    for param in top_params:
        param.requires_grad_(True)
    epochs = int(options.epochs)
    speed = None
    if epochs > 0:
        # Timed at the batch the epochs will run (a --batch-size above the photo count is not
        # allocated just to be timed).
        step = min(options.batch_size, len(features.train_labels))
        speed = measure_train_speed(top_net, features.train_views[0]["tap"], step)
        resumed = (ctx.resume[1].get("recipe_state") or {}) if ctx.resume is not None else {}
        plan = ctx.recipe_state.get("finetune_plan") or resumed.get("finetune_plan") or {}
        same_budget = plan.get("budget", options.time_budget) == options.time_budget
        if plan.get("asked") == epochs and same_budget:  # resumed: the epochs (and schedule) planned
            epochs = int(plan["planned"])
        else:  # a resumed process's clock would plan anew, and stretch the learning-rate schedule
            epochs = _epochs_within_budget(ctx, epochs, speed, len(features.train_labels))
            epochs = distributed.broadcast_json(epochs)  # rank 0's clock plans for all
            ctx.recipe_state["finetune_plan"] = {
                "asked": int(options.epochs), "planned": epochs, "budget": options.time_budget
            }
    # skip_finished_stage, not stage_done: resuming a finished run sets back its best epoch (it
    # ended with "training finished without any epoch").
    if epochs > 0 and not ctx.skip_finished_stage("finetune"):
        batches = ArrayBatches(
            [v["tap"] for v in features.train_views],
            features.train_labels,
            options.batch_size,
            True,
            shard=True,
            weights=features.view_weights,
        )
        valid = _valid_batches(features, "tap", 128)
        optimizer = torch.optim.AdamW(
            [
                {"params": top_params, "lr": options.lr},
                {"params": list(head.parameters()), "lr": options.lr * options.head_lr_mult},
            ],
            weight_decay=options.weight_decay,
        )
        steps = epochs * len(batches)
        scheduler = cosine_with_warmup(optimizer, steps, int(options.warmup_fraction * steps))
        run_epochs(
            ctx, top_net, optimizer, scheduler, batches, valid, epochs,
            stage="finetune", loss_fn=loss_fn, scheduler_step="batch",
        )  # fmt: skip
    return top_net, epochs, speed


def _epochs_within_budget(ctx: TrainContext, epochs: int, speed: float, n_train: int) -> int:
    """Fine-tuning epochs that still fit in the time budget (all of them without one)."""
    budget_s = parse_duration(ctx.options.time_budget)
    if budget_s is None:
        return epochs
    # The run's clock (ctx.started), which a resumed run carries on: this process's own restarted
    # from 0, and a run stopped before fine-tuning planned a second full budget.
    spent = time.time() - ctx.started
    n_valid = len(ctx.manifest.items("valid"))
    # Photos at the measured speed, plus each epoch's fixed cost (two checkpoints of the whole
    # network, the curves), as a head epoch took: without it, 18 photos "allowed" 300 epochs of a
    # 40 s budget and the run took 237 s.
    per_epoch = n_train / speed + (n_valid / (3 * speed)) + float(ctx.recipe_state.get("head_epoch_s", 0.0))
    affordable = int((budget_s - spent - 5.0) // per_epoch)
    if affordable < epochs:
        ctx.console.print(
            f"[yellow]time budget:[/] {budget_s:.0f}s allows {max(affordable, 0)} fine-tuning "
            f"epoch(s) of ~{per_epoch:.0f}s (asked {epochs}; a larger --time-budget, also with "
            "--resume, allows more)",
            highlight=False,
        )
    else:  # said too: a budget that changed nothing read as if it had been ignored
        ctx.console.print(
            f"time budget: {budget_s:.0f}s leaves room for all {epochs} fine-tuning epoch(s) "
            f"of ~{per_epoch:.0f}s",
            highlight=False,
        )
    return max(0, min(epochs, affordable))


def _fit_distance_head(
    top_net: TopOfNetwork, features: CachedFeatures, sharpness: float
) -> dict[str, Any] | None:
    """Class prototypes from the final network's features of the train photos (first view),
    the reference similarity from the validation photos (models.heads); None without that head."""
    head = top_net.head[0]
    if not isinstance(head, DistanceScaledLinear):
        return None
    train = _through_top(top_net, features.train_views[0]["tap"], pooled=True)
    valid = features.valid
    reference = _through_top(top_net, valid["tap"], pooled=True) if valid is not None else train
    return head.fit(train, torch.as_tensor(features.train_labels), reference, sharpness)


def _through_top(top_net: TopOfNetwork, activations: np.ndarray, *, pooled: bool = False) -> torch.Tensor:
    """The network above the tap on cached activations, in float and eval mode (seconds): its
    logits (the score calibration reads them), or with `pooled` the features its classifier
    reads (the distance head's class means)."""
    top_net.eval()
    top_net.bf16 = False
    run = top_net.pooled if pooled else top_net
    with torch.inference_mode():
        return torch.cat([run(torch.from_numpy(batch).float()) for batch in _chunks(activations, 64)])


