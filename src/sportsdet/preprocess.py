"""THE image -> array transform. Train, evaluate, predict, export and serve all call it.

A `Preprocessing` travels with the model (inside its bundle), so the code that predicts can
never resize or normalise differently from the code that trained. NumPy and Pillow only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from sportsdet.errors import SportsdetError
from sportsdet.imageio import ImageSource, load_image_checked

RESIZE_POLICIES = ("squash", "crop", "pad")
# Model inputs above this side are a damaged or hostile file, not a model: one 40000 px input
# would need 19 GB. The largest ImageNet models use about 600 px.
MAX_INPUT_SIZE = 2048
_INTERPOLATIONS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


# Photos up to this aspect ratio are scaled whole, then cropped (as every model so far was
# trained); longer strips resample only the part the crop keeps (see resize_image).
_CROP_RESIZE_LIMIT = 4


@dataclass(frozen=True)
class Preprocessing:
    """How a photo becomes the model's input.

    resize:
      - "squash": stretch to input_size x input_size (what the original notebook did);
      - "crop":   scale the shorter side to input_size / crop_pct, then centre-crop;
      - "pad":    scale the longer side to input_size and pad the rest with the mean colour.
    mean/std are per channel on the [0, 1] scale; output is float32, channels first.
    """

    input_size: int
    resize: str = "crop"
    crop_pct: float = 1.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    interpolation: str = "bilinear"
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if (
            not isinstance(self.input_size, int)
            or isinstance(self.input_size, bool)
            or not 8 <= self.input_size <= MAX_INPUT_SIZE
        ):
            raise SportsdetError(
                f"preprocessing: input_size must be an integer from 8 to {MAX_INPUT_SIZE}, "
                f"got {self.input_size!r}"
            )
        if self.resize not in RESIZE_POLICIES:
            raise SportsdetError(
                f"preprocessing: resize must be one of {RESIZE_POLICIES}, got {self.resize!r}"
            )
        if not 0.1 <= float(self.crop_pct) <= 1.0:
            raise SportsdetError(f"preprocessing: crop_pct must be in [0.1, 1], got {self.crop_pct!r}")
        if self.interpolation not in _INTERPOLATIONS:
            raise SportsdetError(
                f"preprocessing: interpolation must be one of {sorted(_INTERPOLATIONS)}, "
                f"got {self.interpolation!r}"
            )
        for key in ("mean", "std"):
            value = getattr(self, key)
            if len(value) != 3 or not all(isinstance(v, (int, float)) for v in value):
                raise SportsdetError(f"preprocessing: {key} must be three numbers, got {value!r}")
            object.__setattr__(self, key, tuple(float(v) for v in value))
        if any(s <= 0 for s in self.std):
            raise SportsdetError(f"preprocessing: std must be positive, got {self.std!r}")

    @property
    def resample(self) -> Image.Resampling:
        return _INTERPOLATIONS[self.interpolation]

    @property
    def decode_size(self) -> int:
        """Shorter side the decoded photo needs before resizing (lets big JPEGs decode small)."""
        if self.resize == "crop":
            return int(np.ceil(self.input_size / self.crop_pct))
        return self.input_size

    def enlargement(self, width: int, height: int) -> float:
        """How many times `resize_image` enlarges a width x height picture (its most enlarged side)."""
        if self.resize == "crop":
            return self.decode_size / min(width, height)
        if self.resize == "pad":
            return self.input_size / max(width, height)
        return self.input_size / min(width, height)  # squash

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        if not isinstance(data, dict) or "input_size" not in data:
            raise SportsdetError("preprocessing: expected an object with at least 'input_size'")
        known = {"input_size", "resize", "crop_pct", "mean", "std", "interpolation", "extra"}
        unknown = set(data) - known
        if unknown:
            raise SportsdetError(f"preprocessing: unknown field(s) {sorted(unknown)}")
        values = dict(data)
        for key in ("mean", "std"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)


def resize_image(image: Image.Image, spec: Preprocessing) -> Image.Image:
    """The geometric half of preprocessing: an RGB image of exactly input_size x input_size."""
    size = spec.input_size
    width, height = image.size
    if spec.resize == "squash":
        return image.resize((size, size), spec.resample)
    if spec.resize == "crop":
        short = spec.decode_size
        scale = short / min(width, height)
        new_w, new_h = max(size, round(width * scale)), max(size, round(height * scale))
        left, top = (new_w - size) // 2, (new_h - size) // 2
        if new_w * new_h > _CROP_RESIZE_LIMIT * short * short:
            # A long strip: scaling all of it would cost memory and time in proportion to its
            # length (a 20000x1 PNG: 5 GB) for pixels the crop throws away. Resample only the
            # source box that becomes the crop: the same sample positions (edges can differ by
            # a few levels from resize-then-crop), bounded work.
            sx, sy = width / new_w, height / new_h
            box = (left * sx, top * sy, (left + size) * sx, (top + size) * sy)
            return image.resize((size, size), spec.resample, box=box)
        image = image.resize((new_w, new_h), spec.resample)
        return image.crop((left, top, left + size, top + size))
    # pad: keep the whole photo visible, letterboxed in the mean colour
    scale = size / max(width, height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    image = image.resize((new_w, new_h), spec.resample)
    fill = tuple(int(round(m * 255)) for m in spec.mean)
    canvas = Image.new("RGB", (size, size), fill)
    canvas.paste(image, ((size - new_w) // 2, (size - new_h) // 2))
    return canvas


def normalize(
    image: Image.Image | np.ndarray, spec: Preprocessing, out: np.ndarray | None = None
) -> np.ndarray:
    """The photometric half: HxWx3 uint8 -> 3xHxW float32, scaled to [0,1] then (x-mean)/std.

    `out`: a float32 [3, H, W] array to write into (e.g. a row of a batch). Between decoding and
    resizing, a fresh array per photo measured ~0.7 ms slower (bench/preprocess_cost.py).
    """
    pixels = np.asarray(image)
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise SportsdetError(f"normalize: expected an HxWx3 RGB image, got shape {pixels.shape}")
    # Channels first before the arithmetic: per-plane loops are 3x faster than broadcasting over
    # a last axis of 3 (same float32 operations, bit-identical result).
    planes = pixels.transpose(2, 0, 1)
    if out is None:
        out = np.empty(planes.shape, dtype=np.float32)
    elif out.shape != planes.shape or out.dtype != np.float32:
        raise SportsdetError(
            f"normalize: output array is {out.dtype} {out.shape}, expected float32 {planes.shape}"
        )
    np.copyto(out, planes, casting="unsafe")  # uint8 -> float32 is exact
    np.subtract(out, (np.asarray(spec.mean, dtype=np.float32) * 255.0)[:, None, None], out=out)
    np.multiply(out, (1.0 / (np.asarray(spec.std, dtype=np.float32) * 255.0))[:, None, None], out=out)
    return out


def preprocess(image: Image.Image, spec: Preprocessing) -> np.ndarray:
    """An RGB Pillow image -> the model's input array (3 x input_size x input_size, float32)."""
    return normalize(resize_image(image, spec), spec)


def load_for_model(
    source: ImageSource, spec: Preprocessing, *, name: str | None = None
) -> tuple[Image.Image, str | None]:
    """The decoded picture (at reduced size when the model needs less) and its warning, if any:
    tiny, a strip, or small for this model's input (`imageio.shape_problem`)."""
    return load_image_checked(source, name=name, min_size=spec.decode_size, model=spec)


def load_and_preprocess(
    source: ImageSource,
    spec: Preprocessing,
    *,
    name: str | None = None,
    out: np.ndarray | None = None,
    notes: list[str] | None = None,
) -> np.ndarray:
    """Decode (at reduced size when possible) and preprocess one image file or its bytes.

    `out`: a float32 [3, input_size, input_size] array to fill (see `normalize`).
    `notes`: a list that receives a warning when the picture is tiny, a strip, or small for the
    model (`imageio.shape_problem`): it is still preprocessed, but its label deserves less trust.
    """
    image, warning = load_for_model(source, spec, name=name)
    if warning is not None and notes is not None:
        notes.append(warning)
    return normalize(resize_image(image, spec), spec, out)
