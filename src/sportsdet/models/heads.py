"""A classifier that is less sure of photos unlike anything it was trained on.

A softmax classifier can be confidently wrong on a photo that shows no sport at all (an
astronaut labelled "shooting" at 93%): its logits only say which class is *nearest*, not how
near. `DistanceScaledLinear` multiplies the logits by how similar the photo's features are to
the nearest class's mean features (cosine), relative to a typical validation photo:

    logits = (W f + b) * clamp(max_c cos(f, prototype_c) / reference, 0, 1) ** sharpness

A photo at least as close to its class as the median validation photo keeps its logits; one far
from every class gets flatter probabilities, which the entropy abstain rule then turns into
"uncertain". The ranking of classes, and so every accuracy, is unchanged. `sharpness` 2 (the
default since it was measured; 1 before) flattens far photos more: a photo with very large logits
(a bar chart read as "chess") is no longer labelled just because it is only somewhat far. The
prototypes, the reference and the sharpness are buffers in the state dict, so torch, ONNX and INT8
all compute the same thing with no extra step. Measured in bench/RESULTS.md (abstain and
distance-sharpness sections).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# Buffers a file written before they existed may lack (filled in by _load_from_state_dict).
DEFAULTED_BUFFERS = ("sharpness",)


class DistanceScaledLinear(nn.Linear):
    """nn.Linear whose logits are scaled by feature similarity to the class prototypes.

    `prototypes` [classes, features]: unit-length class means; `reference`: the similarity at
    which scaling stops (0: scaling off, a plain Linear); `sharpness`: the power of the scale.
    Same parameter names as nn.Linear, so temperature folding and every state-dict key of the
    weights stay as they were.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__(in_features, out_features, bias)
        self.register_buffer("prototypes", torch.zeros(out_features, in_features))
        self.register_buffer("reference", torch.zeros(()))
        self.register_buffer("sharpness", torch.ones(()))

    def similarity(self, features: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of each row of `features` to its nearest class prototype."""
        return (F.normalize(features, dim=1) @ self.prototypes.t()).amax(dim=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits = super().forward(features)
        if float(self.reference) <= 0:  # not fitted (a constant when exported: no branch in ONNX)
            return logits
        scale = torch.clamp(self.similarity(features) / self.reference, 0.0, 1.0)
        return logits * torch.pow(scale, self.sharpness)[:, None]

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kw: Any) -> None:
        # A checkpoint written before the prototypes existed loads as a plain Linear (scaling off),
        # one written before `sharpness` with the power it was made with (1).
        for name in ("prototypes", "reference"):
            state_dict.setdefault(prefix + name, getattr(self, name).detach().clone().zero_())
        state_dict.setdefault(prefix + "sharpness", torch.ones_like(self.sharpness))
        super()._load_from_state_dict(state_dict, prefix, *args, **kw)

    @torch.no_grad()
    def fit(
        self,
        features: torch.Tensor,
        labels: torch.Tensor,
        reference_features: torch.Tensor,
        sharpness: float = 2.0,
    ) -> dict:
        """Prototypes = unit-length class means of `features`; reference = the median similarity of
        `reference_features` (validation photos). Classes with no photo keep a zero prototype."""
        if not sharpness > 0:
            raise ValueError(f"sharpness must be above 0, got {sharpness}")
        self.sharpness.fill_(float(sharpness))
        prototypes = torch.zeros_like(self.prototypes)
        for cls in labels.unique():
            prototypes[cls] = features[labels == cls].float().mean(dim=0)
        self.prototypes.copy_(F.normalize(prototypes, dim=1))
        self.reference.zero_()
        similarity = self.similarity(reference_features.float())
        self.reference.fill_(float(similarity.median()))
        return {
            "method": "logits scaled by cosine similarity to the nearest class mean, capped at the median "
            "validation photo's, to the power `sharpness`",
            "reference": round(float(self.reference), 4),
            "sharpness": float(sharpness),
            "reference_images": int(len(reference_features)),
            "scaled_share": round(float((similarity < self.reference).float().mean()), 4),
        }


def use_distance_head(model: Any) -> DistanceScaledLinear:
    """Swap the model's final Linear (`model.classifier`, the last Linear inside it, or the last
    Linear of a plain Sequential model) for a DistanceScaledLinear with the same weights."""
    holder, name = model, "classifier"
    head = getattr(model, "classifier", model)
    if isinstance(head, nn.Sequential):
        linear = [i for i, m in enumerate(head) if isinstance(m, nn.Linear)]
        if not linear:
            raise TypeError(f"{type(model).__name__}: classifier is not a Linear layer")
        holder, name, head = head, str(linear[-1]), head[linear[-1]]
    if isinstance(head, DistanceScaledLinear):
        return head
    if not isinstance(head, nn.Linear):
        raise TypeError(f"{type(model).__name__}: classifier is not a Linear layer")
    with torch.random.fork_rng(devices=[]):  # its throw-away init must not shift a seeded run
        scaled = DistanceScaledLinear(head.in_features, head.out_features, bias=head.bias is not None)
    scaled.load_state_dict(head.state_dict(), strict=False)
    setattr(holder, name, scaled)
    return scaled
