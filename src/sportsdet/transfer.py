"""The "transfer" recipe: an ImageNet-pretrained network adapted to the user's classes on a CPU.

Full fine-tuning of EfficientNet-Lite0 runs about 19 img/s on two cores, so this recipe spends
the expensive part (the frozen lower network) once, and trains only what sits above it:

  features  the frozen trunk runs once per photo and view in onnxruntime and its outputs are
            cached on disk (sportsdet.features): the pooled features and the activation at the
            "tap" below the last `finetune_stages` stages. Train views are the photo, its mirror
            image and `aug_views` random crops/colour changes (what real photos look like).
  stage 1   "head": a fresh Linear classifier on the pooled features (seconds).
  stage 2   "finetune": the top stages + classifier trained from the cached activations with
            label smoothing, AdamW, a warm-up + cosine schedule per step and a larger learning
            rate for the new head than for the pretrained stages (discriminative rates).

Both stages go through `sportsdet.train.run_epochs`, so metrics.csv (with the stage column),
curves.png and the checkpoints are the same as for any recipe; the best epoch over both stages
(by validation accuracy) is the one kept. `time_budget` ("10m", "90s", seconds) plans the number
of views and fine-tuning epochs to fit.
"""

from __future__ import annotations

import math
import re
import time
from typing import Any

import numpy as np
from torch import nn

from sportsdet.errors import SportsdetError
from sportsdet.preprocess import Preprocessing

# Throughput assumed before anything was measured on this machine (Lite0, 2-core CPU).
_ASSUMED_EXTRACT_IMG_S = 45.0


def train_augmentation(pre: Preprocessing, *, min_scale: float = 0.25) -> Any:
    """Photo -> normalised CHW array with the random changes real photos bring.

    Random resized crop (other framings, smaller or bigger players), mirror, colour jitter
    (other cameras and light), then THE normalisation from sportsdet.preprocess.
    """
    from torchvision.transforms import v2

    from sportsdet.preprocess import normalize

    interpolation = {
        "nearest": v2.InterpolationMode.NEAREST,
        "bilinear": v2.InterpolationMode.BILINEAR,
        "bicubic": v2.InterpolationMode.BICUBIC,
        "lanczos": v2.InterpolationMode.LANCZOS,
    }[pre.interpolation]
    return v2.Compose(
        [
            v2.RandomResizedCrop(pre.input_size, scale=(min_scale, 1.0), interpolation=interpolation),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.03),
            v2.Lambda(lambda image: normalize(image, pre)),
        ]
    )


def parse_duration(value: Any) -> float | None:
    """ "10m", "90s", "1h", "1h30m" or a number of seconds -> seconds (None stays None)."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower()
        parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?", text)
        if not text or parts is None or not any(parts.groups()):
            raise SportsdetError(f"time budget {value!r} not understood; write e.g. 10m, 90s or 1h30m")
        hours, minutes, secs = (float(g) if g else 0.0 for g in parts.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if seconds <= 0:
        raise SportsdetError(f"time budget must be positive, got {value!r}")
    return seconds


class TopOfNetwork(nn.Module):
    """The part of `net` above trunk stage `start`, plus dropout and its classifier.

    It holds the whole network as `net`, so its state dict (and every checkpoint) is the full
    model's under a "net." prefix: whichever stage wins, the best checkpoint rebuilds it whole.
    """

    def __init__(self, net: Any, start: int, dropout: float, bf16: bool = False) -> None:
        from sportsdet.features import classifier_of, trunk_stages

        super().__init__()
        self.net = net
        self.start = start
        stages = trunk_stages(net)
        self.top = [stages[i] for i in range(start, len(stages))]  # plain list: not re-registered
        self.dropout = nn.Dropout(dropout)
        self.head = [classifier_of(net)]
        self.bf16 = bf16

    def forward(self, x):
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            for stage in self.top:
                x = stage(x)
            logits = self.head[0](self.dropout(x.flatten(1)))
        return logits.float()


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
    """

    def __init__(self, views: list[np.ndarray], labels: np.ndarray, batch_size: int, shuffle: bool) -> None:
        self.views, self.batch_size, self.shuffle = views, batch_size, shuffle
        self.labels = np.asarray(labels, dtype=np.int64)
        self.n = len(self.labels)

    def __len__(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def __iter__(self):
        import torch

        order = torch.randperm(self.n).numpy() if self.shuffle else np.arange(self.n)
        choice = (
            torch.randint(len(self.views), (self.n,)).numpy() if self.shuffle else np.zeros(self.n, np.int64)
        )
        for start in range(0, self.n, self.batch_size):
            rows = order[start : start + self.batch_size]
            picks = choice[start : start + self.batch_size]
            first = self.views[0]
            batch = np.empty((len(rows), *first.shape[1:]), dtype=first.dtype)
            for v, view in enumerate(self.views):
                mask = picks == v
                if mask.any():
                    batch[mask] = view[rows[mask]]
            yield torch.from_numpy(batch).float(), torch.from_numpy(self.labels[rows])


def _chunks(array: np.ndarray, size: int) -> list[np.ndarray]:
    return [array[start : start + size] for start in range(0, len(array), size)]


def _as_4d(pooled: np.ndarray) -> np.ndarray:
    """[n, d] -> [n, d, 1, 1]: the trunk's last stage (pool + flatten) then leaves it unchanged."""
    return pooled.reshape(*pooled.shape, 1, 1)


def _cosine_with_warmup(optimizer: Any, total_steps: int, warmup_steps: int) -> Any:
    import torch

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _measure_train_speed(module: Any, sample: np.ndarray, batch_size: int) -> float:
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


def plan_schedule(
    options: dict[str, Any],
    n_train: int,
    n_missing_extractions: int,
    extract_img_s: float,
) -> dict[str, Any]:
    """Views and epochs to run within options["time_budget"] (unchanged without a budget).

    The feature extraction still to do is charged first (it is reused by later runs), then
    stage 1 (a few seconds); what remains goes to stage 2 epochs, estimated at
    `finetune_img_s` (filled in once measured). Mirror and crop views are dropped before the
    budget runs out for the photos themselves.
    """
    plan = {
        "aug_views": int(options.get("aug_views", 0) or 0),
        "feature_flip": bool(options.get("feature_flip", True)),
        "finetune_epochs": int(options.get("epochs", 0) or 0),
        "budget_s": parse_duration(options.get("time_budget")),
    }
    budget = plan["budget_s"]
    if budget is None:
        return plan
    # Extraction per view (only what is not cached yet counts); keep views that fit in 60%.
    per_view = n_missing_extractions / max(extract_img_s, 1e-6)
    while plan["aug_views"] > 0 and per_view * (1 + plan["feature_flip"] + plan["aug_views"]) > 0.6 * budget:
        plan["aug_views"] -= 1
    if plan["feature_flip"] and per_view * 2 > 0.6 * budget:
        plan["feature_flip"] = False
    plan["extract_s_estimate"] = round(per_view * (1 + plan["feature_flip"] + plan["aug_views"]), 1)
    return plan


def fit_transfer(ctx: Any) -> Any:
    """The transfer recipe (see the module docstring): features, head, then the top stages."""
    import torch

    from sportsdet.features import FeatureKey, default_tap, extract_features, measured_speed, trunk_stages
    from sportsdet.models import build_model
    from sportsdet.train import TrainResult, run_epochs

    started = time.perf_counter()
    options = ctx.options
    spec, pre = ctx.spec, ctx.preprocessing
    model_config = dict(ctx.model_config)
    model = build_model(spec.name, num_classes=len(ctx.labels), pretrained=True, **model_config)
    finetune_stages = int(options.get("finetune_stages", 2))
    tap = default_tap(model, finetune_stages)
    n_stages = len(trunk_stages(model))
    workers = int(options.get("extract_workers", 1))
    threads = options.get("extract_threads")  # None: one single-threaded run per CPU

    train_items = ctx.manifest.items("train")
    valid_items = ctx.manifest.items("valid")
    if not train_items:
        raise SportsdetError(f"{ctx.run_dir}: the split has no training images")
    train_paths = [p for p, _ in train_items]
    train_labels = np.array([label for _, label in train_items], dtype=np.int64)

    # Plan within the time budget, using the extraction speed measured last time here.
    def missing(view: str) -> int:
        from sportsdet.features import _load_shards, file_digest

        folder = FeatureKey(spec.name, pre, view, tap).folder()
        if not folder.is_dir():
            return len(train_paths)
        done = _load_shards(folder, True)
        return sum(file_digest(p) not in done for p in train_paths)

    budget_s = parse_duration(options.get("time_budget"))

    def features(paths: list[str], view: str, what: str) -> dict[str, np.ndarray]:
        ctx.console.print(f"[dim]features: {what}, view {view} ({len(paths)} images)[/]", highlight=False)
        return extract_features(
            spec.name,
            paths,
            preprocessing=pre,
            view=view,
            tap=tap,
            model=model,
            num_workers=workers,
            threads=threads,
            description=f"features {what}",
        )

    # The photos themselves first; then, within the budget, the extra views, planned with the
    # extraction speed just measured on this machine (a fresh cache has no record of it).
    train_views = [features(train_paths, "center", "train")]
    speed = measured_speed(FeatureKey(spec.name, pre, "center", tap)) or _ASSUMED_EXTRACT_IMG_S
    plan = plan_schedule(options, len(train_paths), missing("flip") if budget_s else 0, speed)
    views = ["center"] + (["flip"] if plan["feature_flip"] else [])
    views += [f"aug{i}" for i in range(plan["aug_views"])]
    train_views += [features(train_paths, view, "train") for view in views[1:]]
    valid = features([p for p, _ in valid_items], "center", "valid") if valid_items else None
    extract_s = time.perf_counter() - started

    loss_fn = nn.CrossEntropyLoss(label_smoothing=float(options.get("label_smoothing", 0.1) or 0.0))
    dropout = float(options.get("dropout", 0.2))
    for param in model.parameters():
        param.requires_grad_(False)

    # Stage 1: the classifier alone, on pooled features.
    head_epochs = int(options.get("head_epochs", 20))
    head_net = TopOfNetwork(model, n_stages - 1, dropout)
    head = head_net.head[0]
    for param in head.parameters():
        param.requires_grad_(True)
    head_batch = int(options.get("head_batch_size", 256))
    head_batches = ArrayBatches([_as_4d(v["pooled"]) for v in train_views], train_labels, head_batch, True)
    valid_labels = np.array([label for _, label in valid_items], dtype=np.int64)
    head_valid = ArrayBatches([_as_4d(valid["pooled"])], valid_labels, 512, False) if valid else None
    if head_epochs > 0 and not ctx.stage_done("head"):
        optimizer = torch.optim.AdamW(
            head.parameters(),
            lr=float(options.get("head_lr", 1e-3)),
            weight_decay=float(options.get("head_weight_decay", 1e-4)),
        )
        steps = head_epochs * len(head_batches)
        scheduler = _cosine_with_warmup(optimizer, steps, len(head_batches))
        run_epochs(
            ctx, head_net, optimizer, scheduler, head_batches, head_valid, head_epochs,
            stage="head", loss_fn=loss_fn, scheduler_step="batch",
        )  # fmt: skip
        ctx.load_best(head_net)  # stage 2 starts from the best head

    # Stage 2: the top stages and the classifier, on the cached activations at the tap.
    bf16 = options.get("bf16", "auto")
    bf16 = cpu_has_bf16() if bf16 == "auto" else bool(bf16)
    top_net = TopOfNetwork(model, tap, dropout, bf16=bf16)
    top_params = [p for stage in top_net.top for p in stage.parameters()]
    for param in top_params:
        param.requires_grad_(True)
    ft_batch = int(options.get("batch_size", 64))
    epochs = plan["finetune_epochs"]
    finetune_speed = None
    if epochs > 0:
        finetune_speed = _measure_train_speed(top_net, train_views[0]["tap"], ft_batch)
        if budget_s is not None:
            spent = time.perf_counter() - started
            per_epoch = len(train_paths) / finetune_speed + (len(valid_items) / (3 * finetune_speed))
            affordable = int((budget_s - spent - 5.0) // per_epoch)
            if affordable < epochs:
                ctx.console.print(
                    f"[yellow]time budget:[/] {budget_s:.0f}s allows {max(affordable, 0)} fine-tuning "
                    f"epoch(s) of ~{per_epoch:.0f}s (asked {epochs})",
                    highlight=False,
                )
            epochs = max(0, min(epochs, affordable))
    if epochs > 0 and not ctx.stage_done("finetune"):
        ft_batches = ArrayBatches([v["tap"] for v in train_views], train_labels, ft_batch, True)
        ft_valid = ArrayBatches([valid["tap"]], valid_labels, 128, False) if valid else None
        lr = float(options.get("lr", 3e-4))
        optimizer = torch.optim.AdamW(
            [
                {"params": top_params, "lr": lr},
                {"params": list(head.parameters()), "lr": lr * float(options.get("head_lr_mult", 3.0))},
            ],
            weight_decay=float(options.get("weight_decay", 0.02)),
        )
        steps = epochs * len(ft_batches)
        warmup = int(float(options.get("warmup_fraction", 0.05)) * steps)
        scheduler = _cosine_with_warmup(optimizer, steps, warmup)
        run_epochs(
            ctx, top_net, optimizer, scheduler, ft_batches, ft_valid, epochs,
            stage="finetune", loss_fn=loss_fn, scheduler_step="batch",
        )  # fmt: skip

    ctx.load_best(top_net)  # the best epoch of either stage (both hold the whole network)
    valid_logits = None
    if valid is not None:  # for the score calibration: seconds from the cached activations
        top_net.eval()
        top_net.bf16 = False
        with torch.inference_mode():
            valid_logits = np.concatenate(
                [top_net(torch.from_numpy(batch).float()).numpy() for batch in _chunks(valid["tap"], 64)]
            )
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
                "views": views,
                "tap_stage": tap,
                "trainable_stages": finetune_stages,
                "head_epochs": head_epochs,
                "finetune_epochs": epochs,
                "feature_seconds": round(extract_s, 1),
                "finetune_img_per_s": round(finetune_speed, 1) if finetune_speed else None,
                "bf16_autocast": bf16,
                "time_budget_s": budget_s,
            }
        },
    )
