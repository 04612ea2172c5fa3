"""Training options: one typed table of defaults per recipe, and the one place they are resolved.

    resolve_options(spec, {"epochs": 5, "label_smoothing": 0.1})  ->  TransferOptions(...)

Order: the recipe's defaults below < the model's own `train_defaults` in the registry (only
where a model differs, e.g. Lite2 fine-tunes 3 epochs) < what the caller gives (CLI flags,
`--set KEY=VALUE`; None means "not given"). An unknown key is refused with the list of the
recipe's keys, so `--set labl_smoothing=0.1` cannot do nothing in silence, and every value is
checked against its type and range before anything runs.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field, fields
from typing import Any

from sportsdet.errors import SportsdetError, quoted_with_hint

# Powers of the distance head's scale measured: 1 to 4 (bench/distance_sharpness.py). Far above
# them almost every photo less like its class than the median validation photo gets flat scores.
MAX_SHARPNESS = 16.0

# Input sizes outside this range are a typo (a 100000 px input would need terabytes).
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 16, 1024
# Values of `class_weight` (see TrainContext.loss_function).
CLASS_WEIGHTS = ("none", "balanced")
# `--set KEY=null`: the option set to None on purpose (e.g. abstain_coverage=null: no threshold),
# which a plain None ("not given") cannot say. resolve_options turns it into None.
NULL = "\x00null"


def is_null(value: Any) -> bool:
    return isinstance(value, str) and value == NULL


# Options a resumed run may change; everything else comes from the run's config.json. A new
# time_budget plans the fine-tuning again (a run a small budget cut short could not be extended).
RESUME_OVERRIDABLE = ("epochs", "patience", "workers", "time_budget")


@dataclass
class TrainOptions:
    """Options every recipe understands."""

    recipe: str = "scratch"
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    patience: int | None = None  # stop after N epochs without a better epoch (`loop.is_better`; 0: never)
    workers: int = 0  # DataLoader processes decoding images (0: in the main process)
    input_size: int | None = None  # None: the model's own input size
    model_config: dict[str, Any] = field(default_factory=dict)  # extra arguments for the model builder
    calibrate: bool = True  # fit a softmax temperature on the validation split
    abstain_coverage: float | None = 0.95  # abstain threshold: share of validation answered (0/None: off)
    curves_every: int = 1  # redraw curves.png every N epochs (long benchmarks save CPU)
    cache: bool = True  # keep decoded, resized training photos in memory when they fit
    label_smoothing: float = 0.0
    weight_decay: float = 0.0
    # "balanced": each class's loss weighted by 1 / its share of the training photos, so that a
    # class with 3x fewer photos counts as much as a common one ("none": every photo alike).
    class_weight: str = "none"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class ScratchOptions(TrainOptions):
    """The "scratch" recipe: the notebook's CNN from random weights, Keras' Adagrad and schedule."""

    recipe: str = "scratch"
    epochs: int = 100
    batch_size: int = 32
    optimizer: str = "adagrad"  # adagrad, adamw or sgd
    lr: float = 1e-3
    lr_decay: float = 1e-6  # Keras' legacy per-update decay: lr / (1 + decay * iterations)
    # Keras (tf.keras 2.11+ and Keras 3, where the reference re-run was made) updates by
    # lr*g / sqrt(acc + 1e-7); PyTorch by lr*g / (sqrt(acc) + eps). Starting PyTorch's
    # accumulator at 0.0 + 1e-7 with eps 0 is exactly Keras' update with an initial accumulator
    # of 0.0 (GUIDE.md: 75 +- 2% in Keras). eps *outside* the root lets weights with tiny
    # gradients take full lr-sized steps; that cost ~10 points here (64 +- 4%).
    initial_accumulator_value: float = 1e-7
    eps: float = 0.0
    momentum: float = 0.9  # sgd only
    augment: bool = False  # light random crops/mirror/colour (the notebook had none)


@dataclass
class TransferOptions(TrainOptions):
    """The "transfer" recipe: cached frozen features, a head, then the top stages fine-tuned."""

    recipe: str = "transfer"
    head_epochs: int = 20  # stage 1: classifier on cached frozen features (seconds)
    head_batch_size: int = 256
    head_lr: float = 1e-3
    head_weight_decay: float = 1e-4
    feature_flip: bool = True  # cache features of the mirror image too (augmentation for free)
    aug_views: int = 0  # extra cached views: random crop + flip + colour jitter (real-photo framing)
    # Share of each epoch's photos seen in black and white (0: off), for black-and-white photos;
    # that view is cached like the others. Measured in bench/RESULTS.md (builtin-recipes).
    grey_view: float = 0.0
    # Logits scaled down for photos far from every class mean (models.heads): no confident label
    # for a photo that shows no sport. Measured in bench/RESULTS.md (abstain section).
    distance_head: bool = True
    # How much more it flattens photos the further they are (the power of its scale; 1: linear).
    # 2 leaves fewer non-sport photos labelled at the same coverage (bench/distance_sharpness.py).
    distance_sharpness: float = 2.0
    epochs: int = 2  # stage 2: fine-tune the top trunk stages from cached activations
    finetune_stages: int = 2  # trunk stages trained in stage 2 (below them: frozen, cached)
    batch_size: int = 64
    lr: float = 3e-4  # stage 2 pretrained stages; the new classifier gets lr * head_lr_mult
    head_lr_mult: float = 3.0
    weight_decay: float = 0.02
    label_smoothing: float = 0.1
    dropout: float = 0.2
    warmup_fraction: float = 0.05
    bf16: bool | str = "auto"  # bf16 autocast in stage 2 where the CPU has AVX-512 BF16 (1.6-2x faster)
    time_budget: str | float | None = None  # e.g. "10m": views and epochs are planned to fit
    extract_workers: int = 1  # DataLoader processes decoding photos for feature extraction
    extract_threads: int | None = None  # onnxruntime runs at once (None: one per CPU)


RECIPE_OPTIONS: dict[str, type[TrainOptions]] = {"scratch": ScratchOptions, "transfer": TransferOptions}


def option_names(recipe: str) -> list[str]:
    return [f.name for f in dataclasses.fields(options_class(recipe))]


def options_class(recipe: str) -> type[TrainOptions]:
    try:
        return RECIPE_OPTIONS[recipe]
    except KeyError:
        raise SportsdetError(
            f"unknown training recipe {recipe!r}; known: {', '.join(sorted(RECIPE_OPTIONS))}"
        ) from None


def _flag(key: str) -> str:
    return f"--{key.replace('_', '-')}" if key in _FLAGS else f"--set {key}"


_FLAGS = {"epochs", "batch_size", "lr", "patience", "workers", "time_budget"}


def _coerce(key: str, value: Any, annotation: Any) -> Any:
    """`value` as the option's declared type (JSON from --set gives ints for floats, strings...)."""
    union = isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union
    allowed = typing.get_args(annotation) if union else (annotation,)
    if value is None and type(None) in allowed:
        return None
    for kind in allowed:
        if kind is type(None):
            continue
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
                return value.lower() in ("true", "yes", "1")
            continue
        if kind is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, str):
                try:
                    return int(value)
                except ValueError:
                    continue
            continue
        if kind is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    continue
            continue
        if kind is str and isinstance(value, str):
            return value
        if typing.get_origin(kind) is dict and isinstance(value, dict):
            return dict(value)
    names = " or ".join(
        {int: "a whole number", float: "a number", bool: "true/false", str: "text"}.get(k, "an object")
        for k in allowed
        if k is not type(None)
    )
    if value is None:
        raise SportsdetError(f"{_flag(key)}=null: expected {names} (this option cannot be null)")
    raise SportsdetError(f"{_flag(key)}={value!r}: expected {names}")


# Ranges of the numeric options a recipe may have (checked where the recipe has them): out of
# range, they failed deep inside PyTorch with a traceback, after the run folder was made.
_AT_LEAST_ONE = ("epochs", "batch_size", "head_batch_size", "curves_every")
_NOT_NEGATIVE = (
    "head_epochs", "weight_decay", "head_weight_decay", "lr_decay", "eps", "initial_accumulator_value",
    "momentum", "aug_views",
)  # fmt: skip
_POSITIVE = ("head_lr", "head_lr_mult")
_UNDER_ONE = ("label_smoothing", "dropout", "warmup_fraction")
OPTIMIZERS = ("adagrad", "adamw", "sgd")


def _check_ranges(options: TrainOptions, model_name: str) -> None:
    for field_ in fields(options):
        value = getattr(options, field_.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise SportsdetError(f"{_flag(field_.name)}={value}: must be a finite number")
    present = {key: getattr(options, key) for key in vars(options)}
    for key in _AT_LEAST_ONE:
        if key in present and present[key] < 1:
            raise SportsdetError(f"{_flag(key)} must be at least 1, got {present[key]}")
    for key in _NOT_NEGATIVE:
        if key in present and present[key] < 0:
            raise SportsdetError(f"{_flag(key)}={present[key]}: must be 0 or more")
    for key in _POSITIVE:
        if key in present and present[key] <= 0:
            raise SportsdetError(f"{_flag(key)}={present[key]}: must be above 0")
    for key in _UNDER_ONE:
        if key in present and not 0 <= present[key] < 1:
            raise SportsdetError(f"{_flag(key)}={present[key]}: must be from 0 to under 1")
    # Checked here, before the run folder is made: they failed deep inside a recipe (a traceback,
    # or a folder that then needed --force), or were taken for something else (bf16=off: on).
    if "optimizer" in present and present["optimizer"] not in OPTIMIZERS:
        raise SportsdetError(f"{_flag('optimizer')}={present['optimizer']!r}: use {', '.join(OPTIMIZERS)}")
    if present.get("extract_workers", 0) < 0:
        raise SportsdetError(f"{_flag('extract_workers')}={present['extract_workers']}: must be 0 or more")
    threads = present.get("extract_threads")
    if threads is not None and threads < 1:
        raise SportsdetError(f"{_flag('extract_threads')}={threads}: must be at least 1 (unset: one per CPU)")
    if isinstance(present.get("bf16"), str) and present["bf16"] != "auto":
        raise SportsdetError(f"{_flag('bf16')}={present['bf16']!r}: use true, false or auto")
    if options.lr <= 0:
        raise SportsdetError(f"--lr must be positive, got {options.lr}")
    if options.patience is not None and options.patience < 0:
        raise SportsdetError(f"--patience must be 0 (off) or more, got {options.patience}")
    if options.workers < 0:
        raise SportsdetError(f"--workers must be 0 or more, got {options.workers}")
    coverage = options.abstain_coverage
    if coverage is not None and not 0.0 <= coverage <= 1.0:
        raise SportsdetError(
            f"--set abstain_coverage={coverage}: the share of validation photos answered, "
            "between 0 (off) and 1"
        )
    if options.class_weight not in CLASS_WEIGHTS:
        raise SportsdetError(
            f"--set class_weight={options.class_weight!r}: use {' or '.join(CLASS_WEIGHTS)} "
            "(balanced: rare classes count as much as common ones in the loss)"
        )
    size = options.input_size
    if size is not None and not MIN_INPUT_SIZE <= size <= MAX_INPUT_SIZE:
        raise SportsdetError(
            f"--set input_size={size}: must be between {MIN_INPUT_SIZE} and {MAX_INPUT_SIZE} pixels "
            f"(the model's own size is used when it is not given)"
        )
    if isinstance(options, TransferOptions):
        from sportsdet.training.schedule import parse_duration

        parse_duration(options.time_budget)  # a bad duration fails now, not after extraction
        if options.finetune_stages < 1:
            raise SportsdetError(f"--set finetune_stages must be at least 1, got {options.finetune_stages}")
        if not 0.0 < options.distance_sharpness <= MAX_SHARPNESS:
            raise SportsdetError(
                f"--set distance_sharpness={options.distance_sharpness}: the power of the distance "
                f"head's scale, above 0 and at most {MAX_SHARPNESS:g} (default 2; 1 scales linearly)"
            )
        if not 0.0 <= options.grey_view < 1.0:
            raise SportsdetError(
                f"--set grey_view={options.grey_view}: the share of photos seen in black and white, "
                "from 0 (off) to under 1, e.g. 0.2"
            )


def resolve_options(spec: Any, given: dict[str, Any] | None = None) -> TrainOptions:
    """The model's recipe options: recipe defaults < spec.train_defaults < `given` (None: not given)."""
    given = {k.replace("-", "_"): v for k, v in (given or {}).items() if v is not None}
    own_recipe = spec.train_defaults.get("recipe", "scratch")
    recipe = str(given.get("recipe") or own_recipe)
    cls = options_class(recipe)
    if recipe == "transfer" and str(getattr(spec, "weight_source", "")).startswith("none"):
        # Said before the run folder is laid out (or, with --force, an old run removed).
        raise SportsdetError(
            f"{spec.name} has no pretrained weights, so it cannot use the transfer recipe: it is trained "
            "from scratch (leave out --set recipe=transfer, or choose a pretrained model: `sportsdet models`)"
        )
    # The model's own defaults are for its own recipe (Lite2's feature_flip means nothing from scratch).
    defaults = spec.train_defaults if recipe == own_recipe else {}
    values = {**defaults, **given, "recipe": recipe}
    return build_options(cls, values, spec.name)


def build_options(cls: type[TrainOptions], values: dict[str, Any], model_name: str) -> TrainOptions:
    """Check and convert `values` into `cls` (also used to read a run's config.json back)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        recipe = cls.recipe
        if "time_budget" in unknown and recipe == "scratch":
            raise SportsdetError(
                f"--time-budget plans pretrained (transfer) training; {model_name} trains a fixed number of "
                "epochs: use --epochs"
            )
        named = ", ".join(quoted_with_hint(key, sorted(fields)).replace(repr(key), key, 1) for key in unknown)
        raise SportsdetError(
            f"unknown training option(s) {named} for {model_name} (the {recipe} recipe); "
            f"known: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    values = {key: None if is_null(value) else value for key, value in values.items()}
    options = cls(**{key: _coerce(key, value, hints[key]) for key, value in values.items()})
    _check_ranges(options, model_name)
    return options
