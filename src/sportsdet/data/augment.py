"""The one train-time augmentation: random framing, mirror and colour, as real photos vary.

    augmentation(pre, "light")   # the scratch recipe's: most of the photo, small colour changes
    augmentation(pre, "photo")   # the transfer recipe's cached views: wide crops, stronger colour

Both end with a picture of exactly input_size x input_size; THE normalisation of
`sportsdet.preprocess` follows (`normalize`), so training never prepares a photo differently
from prediction. The preset parameters are part of what the feature cache and the measured
accuracy depend on: change them only with a benchmark run (bench/accuracy.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sportsdet.preprocess import Preprocessing


@dataclass(frozen=True)
class AugmentPreset:
    min_scale: float  # smallest crop, as a share of the photo's area
    aspect: tuple[float, float] | None  # crop aspect range; None: torchvision's default (3/4, 4/3)
    jitter: float  # brightness, contrast and saturation change
    hue: float


PRESETS = {
    "light": AugmentPreset(min_scale=0.6, aspect=(3 / 4, 4 / 3), jitter=0.2, hue=0.0),
    "photo": AugmentPreset(min_scale=0.25, aspect=None, jitter=0.3, hue=0.03),
}


def interpolation_mode(name: str) -> Any:
    """A Preprocessing interpolation name as torchvision's InterpolationMode."""
    from torchvision.transforms import v2

    return {
        "nearest": v2.InterpolationMode.NEAREST,
        "bilinear": v2.InterpolationMode.BILINEAR,
        "bicubic": v2.InterpolationMode.BICUBIC,
        "lanczos": v2.InterpolationMode.LANCZOS,
    }[name]


def augmentation(pre: Preprocessing, preset: str = "light") -> Any:
    """PIL photo -> augmented PIL picture of input_size x input_size (normalise it afterwards)."""
    from torchvision.transforms import v2

    params = PRESETS[preset]
    aspect = params.aspect
    if preset == "light" and pre.resize == "squash":
        aspect = (0.6, 1.6)  # "squash" models (the notebook's) saw the whole photo stretched
    crop = {"scale": (params.min_scale, 1.0), "interpolation": interpolation_mode(pre.interpolation)}
    if aspect is not None:
        crop["ratio"] = aspect
    jitter = {"brightness": params.jitter, "contrast": params.jitter, "saturation": params.jitter}
    if params.hue:
        jitter["hue"] = params.hue
    return v2.Compose(
        [
            v2.RandomResizedCrop(pre.input_size, **crop),
            v2.RandomHorizontalFlip(),
            v2.ColorJitter(**jitter),
        ]
    )


def normalized_augmentation(pre: Preprocessing, preset: str = "photo") -> Any:
    """`augmentation` followed by THE normalisation: PIL photo -> CHW float32 array."""
    from sportsdet.preprocess import normalize

    transform = augmentation(pre, preset)
    return lambda image: normalize(transform(image), pre)
