"""The model registry: name -> how to build it, what it eats, how it is trained by default.

Every entry carries its preprocessing (input size, resize policy, mean/std, interpolation,
crop fraction) so nothing downstream can mismatch it, and its training defaults, so the CLI
holds no per-model numbers. Importing this module never imports torch: builders are named by
"module:function" and imported only when a model is built.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from sportsdet.errors import SportsdetError
from sportsdet.preprocess import Preprocessing

# TF EfficientNet-Lite normalisation: (x*255 - 127) / 128.
_LITE_MEAN = (127.0 / 255.0,) * 3
_LITE_STD = (128.0 / 255.0,) * 3
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    description: str
    builder: str  # "module:function"; function(num_classes, pretrained, **config) -> nn.Module
    preprocessing: Preprocessing
    output_key: str  # state-dict key of the classifier's weight (rows = classes)
    train_defaults: dict[str, Any] = field(default_factory=dict)
    params_millions: float | None = None
    imagenet_top1: float | None = None
    weight_source: str = "none (trained from scratch)"


REGISTRY: dict[str, ModelSpec] = {}


def register(spec: ModelSpec) -> ModelSpec:
    REGISTRY[spec.name] = spec
    return spec


def get_model_spec(name: str) -> ModelSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise SportsdetError(
            f"unknown model {name!r}; available: {', '.join(sorted(REGISTRY))} (see `sportsdet models`)"
        ) from None


def build_model(name: str, num_classes: int, pretrained: bool = False, **config: Any):
    """Build a registered model (imports torch)."""
    spec = get_model_spec(name)
    module_name, function_name = spec.builder.split(":")
    builder = getattr(importlib.import_module(module_name), function_name)
    return builder(num_classes=num_classes, pretrained=pretrained, **config)


register(
    ModelSpec(
        name="seed-cnn",
        description="The original notebook's 3-block CNN, trained from scratch (baseline)",
        builder="sportsdet.models.seed_cnn:build_seed_cnn",
        preprocessing=Preprocessing(input_size=150, resize="squash", crop_pct=1.0, interpolation="bilinear"),
        output_key="classifier.weight",
        train_defaults={
            "recipe": "scratch",
            "epochs": 100,
            "batch_size": 32,
            "optimizer": "adagrad",
            "lr": 1e-3,
            "lr_decay": 1e-6,  # Keras' legacy per-update decay: lr / (1 + decay * iterations)
            "initial_accumulator_value": 0.0,
            "patience": None,
            "augment": False,
        },
    )
)
