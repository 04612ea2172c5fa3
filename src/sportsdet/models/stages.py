"""Network surgery for transfer learning: a network's trunk as stages, its classifier, tap points.

    stages = trunk_stages(net)        # stem, block stages, head conv, pool (applied in order)
    tap = default_tap(net, 2)         # the last 2 stages (and the pool) sit above the tap
    top = TopOfNetwork(net, tap, dropout=0.2)   # stages[tap:] + classifier, trained on cached activations

The frozen stages below a tap run once per photo (`sportsdet.training.feature_cache`); only
what sits above it is trained.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from sportsdet.errors import SportsdetError


def trunk_stages(model: Any) -> list[Any]:
    """The network below its classifier as a list of modules applied in order.

    The last stage pools and flattens, so running all of them gives the classifier's input.
    timm EfficientNet: stem, the 7 block stages, conv_head+bn2, pool.
    torchvision MobileNetV2: features[0..18], pool.
    """
    pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    if hasattr(model, "conv_stem") and hasattr(model, "blocks"):  # timm EfficientNet family
        return [
            nn.Sequential(model.conv_stem, model.bn1),
            *list(model.blocks),
            nn.Sequential(model.conv_head, model.bn2),
            pool,
        ]
    if hasattr(model, "features") and hasattr(model, "classifier"):  # torchvision MobileNetV2
        return [*list(model.features), pool]
    raise SportsdetError(f"cannot split {type(model).__name__} into stages for feature extraction")


def classifier_of(model: Any) -> nn.Linear:
    """The final Linear layer (the one transfer learning replaces and trains first)."""
    head = model.classifier
    if isinstance(head, nn.Sequential):
        head = [m for m in head if isinstance(m, nn.Linear)][-1]
    if not isinstance(head, nn.Linear):
        raise SportsdetError(f"{type(model).__name__}: classifier is not a Linear layer")
    return head


def default_tap(model: Any, trainable_stages: int) -> int:
    """Index that leaves the last `trainable_stages` trunk stages (and the pool) above the tap."""
    stages = trunk_stages(model)
    return max(1, len(stages) - 1 - trainable_stages)


class TopOfNetwork(nn.Module):
    """The part of `net` above trunk stage `start`, plus dropout and its classifier.

    It holds the whole network as `net`, so its state dict (and every checkpoint) is the full
    model's under a "net." prefix: whichever stage wins, the best checkpoint rebuilds it whole.
    """

    def __init__(self, net: Any, start: int, dropout: float, bf16: bool = False) -> None:
        super().__init__()
        self.net = net
        self.start = start
        stages = trunk_stages(net)
        self.top = [stages[i] for i in range(start, len(stages))]  # plain list: not re-registered
        self.dropout = nn.Dropout(dropout)
        self.head = [classifier_of(net)]
        self.bf16 = bf16

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.head[0](self.dropout(self.pooled(x)))
        return logits.float()

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The features the classifier reads (the top stages and the pool, flattened)."""
        for stage in self.top:
            x = stage(x)
        return x.flatten(1)
