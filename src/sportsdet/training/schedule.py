"""Time and learning-rate schedules: durations, the transfer recipe's time-budget plan, warm-up + cosine."""

from __future__ import annotations

import math
import re
from typing import Any

from sportsdet.errors import SportsdetError


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
        if (parts.group(1) or parts.group(2)) and parts.group(3) and not text.endswith("s"):
            # "1h30" read as 1 h 30 s; most mean 90 minutes: the unit of the last number is asked for
            raise SportsdetError(f"time budget {value!r}: give the last number its unit, e.g. 1h30m or 1m30s")
        hours, minutes, secs = (float(g) if g else 0.0 for g in parts.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if seconds <= 0:
        raise SportsdetError(f"time budget must be positive, got {value!r}")
    return seconds


def extra_views(options: Any) -> list[str]:
    """The cached train views asked for besides the photo itself ("center"), in feature_cache's names."""
    views = ["flip"] if options.feature_flip else []
    views += [f"aug{i}" for i in range(int(options.aug_views or 0))]
    return views + (["grey"] if float(getattr(options, "grey_view", 0.0) or 0.0) > 0 else [])


def plan_schedule(options: Any, missing: dict[str, int], extract_img_s: float) -> dict[str, Any]:
    """Views and epochs to run within options.time_budget (unchanged without a budget).

    `options` is a TransferOptions; `missing` is how many train photos each view ("center",
    "flip", "aug0", ..., "grey") still has to extract (a view not in it counts as cached). That
    extraction is charged first (it is reused by later runs), then stage 1 (a few seconds);
    what remains goes to stage 2 epochs, decided once their speed is measured. Crop views are
    dropped before the budget runs out for the photos themselves (the last crop first), then
    black and white, then the mirror; `views` lists the ones kept, `dropped` the others.
    """
    kept = ["center", *extra_views(options)]
    plan: dict[str, Any] = {
        "finetune_epochs": int(options.epochs or 0),
        "budget_s": parse_duration(options.time_budget),
    }
    budget = plan["budget_s"]

    def extract_s() -> float:
        return sum(missing.get(view, 0) for view in kept) / max(extract_img_s, 1e-6)

    dropped: list[str] = []
    if budget is not None:
        # Keep the views whose extraction fits in 60% of the budget.
        crops = [view for view in kept if view.startswith("aug")]
        for view in [*reversed(crops), "grey", "flip"]:
            if view in kept and missing.get(view, 0) and extract_s() > 0.6 * budget:  # a cached view is free
                kept.remove(view)
                dropped.append(view)
        plan["extract_s_estimate"] = round(extract_s(), 1)
    plan.update(
        views=kept,  # in extraction order: the photo itself first
        aug_views=sum(view.startswith("aug") for view in kept),
        grey_view="grey" in kept,
        feature_flip="flip" in kept,
        dropped=dropped,
    )
    return plan


def cosine_with_warmup(optimizer: Any, total_steps: int, warmup_steps: int) -> Any:
    """Linear warm-up over `warmup_steps`, then cosine decay to 0 at `total_steps` (stepped per batch)."""
    import torch

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
