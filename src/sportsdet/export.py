"""ONNX export (fp32 and static INT8) with a parity check against PyTorch.

The exported file carries everything needed to predict in its `metadata_props` (labels,
preprocessing, model name, versions, output kind; keys in `sportsdet.runtime`), so an .onnx
file alone is a model. Softmax is inside the graph: outputs are probabilities.

Exporter: `sportsdet.onnx_graph.torch_to_onnx` (TorchScript exporter, opset 17, fixed "SAME"
padding folded into the convolutions, which keeps onnxruntime in its fast convolution layout).

Parity (fp32): on real training images, top-1 agreement >= PARITY_MIN_AGREEMENT and largest
absolute probability difference <= PARITY_MAX_PROB_DIFF, or the export fails and leaves no file.
INT8: onnxruntime static quantisation (QDQ, per-channel weights, MinMax calibration on training
images, each ReLU6 folded into its convolution's output range); the accuracy change on the
held-out split is reported and the export fails when it drops more than `max_int8_drop` points.
"""

from __future__ import annotations

import json
import math
import os
import random
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np

from sportsdet.bundle import (
    MANIFEST_NAME,
    ONNX_INT8_NAME,
    ONNX_NAME,
    Bundle,
    builtin_bundle_path,
    bundle_folder,
    library_versions,
)
from sportsdet.errors import SportsdetError, quoted_with_hint
from sportsdet.files import (
    atomic_write,
    file_in_folder,
    iter_image_files,
    remove_abandoned_temps,
    remove_untouched,
    signals_deferred,
    temp_beside,
    write_target,
)
from sportsdet.onnx_graph import OPSET, torch_to_onnx
from sportsdet.preprocess import Preprocessing, load_and_preprocess
from sportsdet.run_folder import (
    open_bundle,
    seen_photos_of,
    split_manifest_candidates,
    unrecognised_seen_note,
)
from sportsdet.runtime import (
    META_ABSTAIN,
    META_FORMAT,
    META_LABELS,
    META_MODEL,
    META_OUTPUT,
    META_PREPROCESSING,
    META_QUANTIZATION,
    META_VERSIONS,
    META_WEIGHTS_SHA256,
    ONNX_FORMAT,
    OnnxBackend,
    stream_predictions,
)
from sportsdet.seen_photos import split_off_seen

# Thresholds of the fp32 parity check. ORT and PyTorch differ by float rounding only (~1e-6 on a
# probability); 1e-3 leaves room for fused kernels while catching any real mismatch (a wrong op,
# a missing layer, a different normalisation shifts probabilities by far more).
PARITY_MIN_AGREEMENT = 0.99  # not 1.0: two classes tied to within rounding may swap
PARITY_MAX_PROB_DIFF = 1e-3
PARITY_IMAGES = 64
CALIBRATION_IMAGES = 200
# Default INT8 guard: refuse a quantised model that loses more than this many accuracy points.
MAX_INT8_DROP = 1.0
QUANT_FORMATS = ("qdq", "qoperator")  # onnxruntime's QuantFormat.QDQ and .QOperator
# The first convolutions (stem and first block) stay in float. Measured on a lite0 trained on
# sports100 (500 test photos): everything quantised -5.6 points; stem kept -0.8; stem and first
# block kept -0.2, still 1.6x faster than fp32. The image-facing layers see the widest range.
FLOAT_CONVS = 3

Progress = Callable[[str], None]


@dataclass
class ParityReport:
    n: int
    top1_agreement: float
    max_prob_diff: float
    data: str  # where the images came from ("synthetic" when there were none)

    @property
    def ok(self) -> bool:
        return self.top1_agreement >= PARITY_MIN_AGREEMENT and self.max_prob_diff <= PARITY_MAX_PROB_DIFF


@dataclass
class Int8Report:
    path: str
    quant_format: str
    calibration_images: int
    heldout: str  # what the accuracy was measured on
    n: int
    fp32_accuracy: float | None
    int8_accuracy: float | None
    top1_agreement: float
    seconds: float
    # The bundle's abstain rule on the held-out photos: photos answered (not "uncertain") by the
    # fp32 and the INT8 model, and photos whose answer-or-abstain decision differs (None: no rule).
    abstain_answered: tuple[int, int] | None = None
    abstain_changed: int | None = None

    @property
    def accuracy_change_points(self) -> float | None:
        if self.fp32_accuracy is None or self.int8_accuracy is None:
            return None
        return 100.0 * (self.int8_accuracy - self.fp32_accuracy)


@dataclass
class ExportReport:
    path: str
    parity: ParityReport
    int8: Int8Report | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["parity"]["ok"] = self.parity.ok
        if self.int8 is not None:
            data["int8"]["accuracy_change_points"] = self.int8.accuracy_change_points
        return data


# --- writing the ONNX file ------------------------------------------------------------------


def onnx_metadata(
    *,
    labels: Sequence[str],
    preprocessing: Preprocessing,
    model_name: str,
    model_config: dict[str, Any] | None = None,
    weights_sha256: str | None = None,
    output: str = "probabilities",
    quantization: Any = "none",
    abstain: Any = None,
) -> dict[str, str]:
    """The metadata_props an exported file carries (all values are strings; JSON where structured)."""
    meta = {
        META_FORMAT: ONNX_FORMAT,
        META_LABELS: json.dumps(list(labels), ensure_ascii=False),
        META_PREPROCESSING: json.dumps(preprocessing.to_dict(), ensure_ascii=False),
        META_OUTPUT: output,
        META_MODEL: json.dumps({"name": model_name, "config": model_config or {}}),
        META_VERSIONS: json.dumps(library_versions()),
        META_QUANTIZATION: quantization if isinstance(quantization, str) else json.dumps(quantization),
    }
    if weights_sha256:
        meta[META_WEIGHTS_SHA256] = weights_sha256
    if abstain is not None:  # an abstain.Abstain: the bare file decides like its bundle
        meta[META_ABSTAIN] = abstain.to_json()
    return meta


def set_metadata(path: str | Path, metadata: dict[str, str | None]) -> Path:
    """Replace (None: remove) the given entries of an ONNX file's metadata_props, keeping the others;
    the file is replaced in one rename."""
    import onnx

    model = onnx.load(str(path))
    keep = [p for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in metadata.items():
        if value is not None:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
    model.producer_name = "sportsdet"
    return atomic_write(path, lambda temp: onnx.save(model, str(temp)))


def export_torch_model(model: Any, path: str | Path, input_size: int) -> Path:
    """Write `softmax(model(x))` as ONNX with a dynamic batch axis (no metadata yet), in the
    CPU-friendly form of `sportsdet.onnx_graph.torch_to_onnx`."""
    import torch

    class WithSoftmax(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.softmax(self.inner(x), dim=1)

    data = torch_to_onnx(
        WithSoftmax(model),
        input_size,
        input_names=["image"],
        output_names=["probabilities"],
        dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}},
    )
    Path(path).write_bytes(data)
    return Path(path)


# --- finding real images for parity, calibration and the held-out check ---------------------


@dataclass
class ExportData:
    """Labelled images found for a bundle: (path, label or None)."""

    train: list[tuple[Path, str | None]]
    heldout: list[tuple[Path, str | None]]
    origin: str
    why_none: str = "the bundle records no split or data root"  # said when no training image is found
    # What `train` is, as the parity line says it: "training photos of ..." only when they are.
    train_source: str = ""
    notes: list[str] = field(default_factory=list)  # said with the export's other notes


def _from_manifest(path: Path, names: dict[str, str]) -> ExportData | None:
    """Train and held-out images of a run's split manifest (None when it is unreadable or stale);
    `names`: class name -> label (Bundle.class_names)."""
    from sportsdet.data.splits import SplitManifest

    try:
        manifest = SplitManifest.load(path)
    except SportsdetError:
        return None
    if not manifest.root.is_dir():
        return None
    def items(name: str) -> list[tuple[Path, str | None]]:
        pairs = manifest.splits.get(name) or []
        return [(manifest.root / rel, names[label]) for rel, label in pairs if label in names]

    heldout_name = "test" if manifest.splits.get("test") else "valid"
    origin = f"{path} ({manifest.root}, held-out: {heldout_name})"
    return ExportData(items("train"), items(heldout_name), origin, train_source=f"training photos of {path}")


def _recorded_roots(bundle: Bundle) -> list[str]:
    """The data folders the bundle's split manifests and its data record name."""
    from sportsdet.data.splits import SplitManifest

    roots = []
    for candidate in split_manifest_candidates(bundle):
        try:
            if candidate.is_file():
                roots.append(str(SplitManifest.load(candidate).root))
        except SportsdetError:
            continue
    root = bundle.data.get("root")
    return [*roots, root] if isinstance(root, str) and root else roots


def _from_folder(folder: Path, names: dict[str, str]) -> list[tuple[Path, str | None]]:
    """Images under a folder; the label is that of the nearest parent folder named like a class
    (`names`: class name -> label, Bundle.class_names)."""
    found = []
    for file in iter_image_files(folder):
        label = next((names[p.name] for p in file.parents if p.name in names), None)
        found.append((file, label))
    return sorted(found)


def _left_out_note(unknown: list[Path], folder: Path, labels: Sequence[str]) -> str:
    """--eval-data's photos in no folder named like a label, by folder (relative to `folder`; a
    misspelt class anywhere in it gets a did-you-mean)."""
    by_folder = Counter(path.parent.relative_to(folder).as_posix() for path in unknown)

    def shown(rel: str) -> str:
        if rel == ".":
            return "photos outside any class folder"
        hints = (quoted_with_hint(part, labels).removeprefix(repr(part)) for part in rel.split("/"))
        return repr(rel) + next((hint for hint in hints if hint), "")

    listed = [f"{shown(rel)}: {n}" for rel, n in sorted(by_folder.items())]
    more = f" and {len(listed) - 5} more" if len(listed) > 5 else ""
    return (
        f"--eval-data: {len(unknown)} photo(s) in folders not named like any of the model's labels were "
        f"left out of the INT8 check ({', '.join(listed[:5])}{more})"
    )


def _recorded_data(bundle: Bundle) -> ExportData | None:
    """Training and held-out images from what the bundle records: its split manifest (its `data`
    entry, or split.json of its run folder), else its data root; None when neither is there."""
    for candidate in split_manifest_candidates(bundle):
        if candidate.is_file():
            data = _from_manifest(candidate, bundle.class_names())
            if data is not None and data.train:
                return data
    root = bundle.data.get("root")
    if not (isinstance(root, str) and Path(root).is_dir()):
        return None
    images = _from_folder(Path(root), bundle.class_names())
    # Split folders below the root only: a root under /data/test/ made every photo a test one.
    train = [item for item in images if "train" in _parts_below(item[0], Path(root))]
    test = [item for item in images if "test" in _parts_below(item[0], Path(root))]
    # A flat folder has no train/: all its photos, test ones too, and said so.
    source = f"training photos of {root}" if train else f"all photos of {root} (no train/ folder)"
    return ExportData(train or images, test, f"{root} (bundle data root)", train_source=source)


def find_export_data(
    bundle: Bundle,
    calibration_data: str | Path | None = None,
    eval_data: str | Path | None = None,
    *,
    int8: bool = False,
) -> ExportData:
    """Training images for parity/calibration and a labelled held-out split.

    Training images: `calibration_data` (a folder of <label>/<image> files) when given, else
    those of the bundle's split manifest, else of its recorded data root. Held-out images:
    `eval_data` when given, else the test (or valid) split of what the bundle records, also when
    `calibration_data` is given (which once left no held-out photos, and no INT8 accuracy check);
    with `int8`, those held-out photos are then taken out of the calibration images.
    """
    recorded = _recorded_data(bundle)
    data: ExportData | None = recorded
    if calibration_data is not None:
        folder = Path(calibration_data)
        if not folder.is_dir():
            raise SportsdetError(
                f"{folder}: calibration data folder not found; pass a folder of training images"
            )
        images = _from_folder(folder, bundle.class_names())
        if not images:
            raise SportsdetError(f"{folder}: no images found for calibration")
        given = f"{folder} (--calibration-data)"
        heldout = recorded.heldout if recorded is not None else []
        origin = f"{given}; held-out: {recorded.origin}" if heldout and recorded is not None else given
        data = ExportData(images, heldout, origin, train_source=f"photos of {given}")
    if data is None:
        data = ExportData([], [], "synthetic")
        gone = [str(r) for r in _recorded_roots(bundle) if not Path(r).is_dir()]
        if gone:  # it said "the bundle records no split/data root" of a run whose data moved
            data.why_none = f"the run's photos are not at {gone[0]} any more (moved?)"
    if eval_data is not None:
        folder = Path(eval_data)
        if not folder.is_dir():
            raise SportsdetError(
                f"{folder}: evaluation data folder not found; pass a folder of <label>/<image>"
            )
        found = _from_folder(folder, bundle.class_names())
        data.heldout = [item for item in found if item[1] is not None]
        if not data.heldout:
            raise SportsdetError(f"{folder}: no images in folders named like the model's labels")
        unknown = [path for path, label in found if label is None]
        if unknown and int8:  # left out without a word, where evaluate refuses such folders
            data.notes.append(_left_out_note(unknown, folder, bundle.labels))
        elif not int8:  # taken, and nothing was checked on it
            data.notes.append("--eval-data is for the INT8 accuracy check: add --int8, or nothing is scored")
        data.origin += f"; held-out: {folder} (--eval-data)"
    if int8 and calibration_data is not None and eval_data is None and data.heldout:
        # A data root given as --calibration-data holds the bundle's held-out photos too: calibrated
        # on the photos it is then checked on, the INT8 check measured nothing. (Both folders given
        # by hand, the same one too, are the user's choice.)
        held = {os.path.realpath(path) for path, _ in data.heldout}
        kept = [item for item in data.train if os.path.realpath(item[0]) not in held]
        if not kept:
            raise SportsdetError(
                f"{calibration_data}: every image here is a held-out one the INT8 check scores; give "
                "training images for calibration"
            )
        if len(kept) < len(data.train):
            data.train_source += f" (its {len(data.train) - len(kept)} held-out ones left out)"
        data.train = kept
    return data


def _sample(items: list[Any], n: int, seed: int = 0) -> list[Any]:
    if len(items) <= n:
        return list(items)
    return random.Random(seed).sample(items, n)


def _decode_many(paths: Iterable[Path], spec: Preprocessing) -> np.ndarray:
    arrays = []
    for path in paths:
        try:
            arrays.append(load_and_preprocess(path, spec))
        except SportsdetError:
            continue  # a broken training file is not the exporter's business; skip it
    if not arrays:
        return np.zeros((0, 3, spec.input_size, spec.input_size), dtype=np.float32)
    return np.stack(arrays)


def _synthetic(spec: Preprocessing, n: int) -> np.ndarray:
    """Smooth random images in the model's input space (used only when no real data is found)."""
    rng = np.random.default_rng(0)
    size = spec.input_size
    coarse = rng.integers(0, 256, size=(n, 8, 8, 3)).astype(np.float32)
    pixels = coarse.repeat(size // 8 + 1, axis=1).repeat(size // 8 + 1, axis=2)[:, :size, :size]
    mean = np.asarray(spec.mean, np.float32) * 255.0
    std = np.asarray(spec.std, np.float32) * 255.0
    return np.ascontiguousarray(((pixels - mean) / std).transpose(0, 3, 1, 2))


# --- parity and INT8 ------------------------------------------------------------------------


def check_parity(
    model: Any, onnx_path: str | Path, images: np.ndarray, data: str, batch: int = 16
) -> ParityReport:
    """Compare PyTorch and onnxruntime probabilities on the same preprocessed images."""
    import torch

    backend = OnnxBackend(onnx_path)
    agree, worst, n = 0, 0.0, len(images)
    with torch.inference_mode():
        for start in range(0, n, batch):
            chunk = images[start : start + batch]
            expected = torch.softmax(model(torch.from_numpy(chunk)), dim=1).numpy()
            got = backend.predict_proba(chunk)
            agree += int((expected.argmax(1) == got.argmax(1)).sum())
            worst = max(worst, float(np.abs(expected - got).max()))
    return ParityReport(n=n, top1_agreement=agree / max(n, 1), max_prob_diff=worst, data=data)


class _Calibration:
    """onnxruntime CalibrationDataReader over preprocessed images, a few at a time."""

    def __init__(self, input_name: str, images: np.ndarray, batch: int = 8) -> None:
        self.input_name = input_name
        self.chunks = iter([images[i : i + batch] for i in range(0, len(images), batch)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        chunk = next(self.chunks, None)
        return None if chunk is None else {self.input_name: chunk}

    def rewind(self) -> None:  # pragma: no cover - not used by MinMax calibration
        pass


def distance_head_nodes(graph: Any) -> list[str]:
    """Names of the nodes between the pooled features and the Softmax other than the classifier's
    Gemm: the distance head's similarity and scaling (none for a plain Linear classifier)."""
    producer = {out: node for node in graph.node for out in node.output}

    def ancestors(tensor: str) -> set[str]:
        seen: set[str] = set()
        stack = [tensor]
        while stack:
            node = producer.get(stack.pop())
            if node is not None and node.name not in seen:
                seen.add(node.name)
                stack.extend(node.input)
        return seen

    softmax = [n for n in graph.node if n.op_type == "Softmax"]
    gemm = [n for n in graph.node if n.op_type == "Gemm"]
    if not softmax or not gemm:
        return []
    head = ancestors(softmax[-1].input[0]) - ancestors(gemm[-1].input[0]) - {gemm[-1].name}
    return [n.name for n in graph.node if n.name in head]


def quantize_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    calibration: np.ndarray,
    *,
    quant_format: str = "qdq",
    fold_activations: bool = True,
) -> None:
    """Static INT8 quantisation: per-channel INT8 weights, UINT8 activations, MinMax calibration.

    `fold_activations=False` leaves each ReLU6 in float, as exports did before (only
    bench/throughput.py asks for it, to time the difference)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fmt = {"qdq": QuantFormat.QDQ, "qoperator": QuantFormat.QOperator}[quant_format]
    # What a killed export left in the temporary folder (a model-sized prepared.onnx each time).
    left = Path(tempfile.gettempdir()).glob("sportsdet-quant-*")
    remove_untouched(p for p in left if p.is_dir() and not p.is_symlink())
    with tempfile.TemporaryDirectory(prefix="sportsdet-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        # Shape inference + graph cleanup first, as onnxruntime recommends before quantising.
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        import onnx

        input_name = OnnxBackend(fp32_path).input_name
        graph = onnx.load(str(prepared)).graph  # nodes come in topological order
        keep_float = [node.name for node in graph.node if node.op_type == "Conv"][:FLOAT_CONVS]
        # The distance head's similarity (models.heads) stays in float: it decides abstaining,
        # which must not change with the engine; it is one small matrix product.
        keep_float += distance_head_nodes(graph)
        quantize_static(
            str(prepared),
            str(out_path),
            _Calibration(input_name, calibration),
            quant_format=fmt,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=keep_float,
            # The final Softmax stays in float: quantising probabilities costs accuracy for no speed.
            # Clip (ReLU6) and Relu listed so that the quantiser folds them into the convolution's
            # output range; left out, each stays in float between a Dequantize and a Quantize that
            # onnxruntime cannot fuse away (folded, the INT8 model runs 1.5-1.7x faster: bench/throughput.py).
            op_types_to_quantize=["Conv", "MatMul", "Gemm", "Add", "Mul", "GlobalAveragePool"]
            + (["Clip", "Relu"] if fold_activations else []),
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )


def _parts_below(path: Path, root: Path) -> tuple[str, ...]:
    try:
        return path.relative_to(root).parts
    except ValueError:
        return ()


def _accuracy_and_preds(
    backend: OnnxBackend, items: list[tuple[Path, str | None]]
) -> tuple[np.ndarray, list[int], np.ndarray]:
    """Predicted class per held-out item (-1 for unreadable files), the true class index, and the
    probabilities (a row of NaN for an unreadable file)."""
    index = {label: i for i, label in enumerate(backend.labels)}
    preds = np.full(len(items), -1, dtype=np.int64)
    probs = np.full((len(items), len(backend.labels)), np.nan, dtype=np.float32)
    for result in stream_predictions((str(p) for p, _ in items), backend):
        if result.ok:
            preds[result.index] = int(np.argmax(result.probs))
            probs[result.index] = result.probs
    truth = [index.get(label, -1) if label is not None else -1 for _, label in items]
    return preds, truth, probs


def _output_file(out: str | Path | None, bundle: Bundle) -> Path:
    """--out as the file to write: default BUNDLE/model.onnx; a folder (or a name ending in /) gets
    model.onnx inside, as `report -o DIR/` does, unless it is a model bundle or run folder: this
    bundle's own means the default, another's is refused (its model.onnx would not be its weights')."""
    if out is None:
        return bundle.path / ONNX_NAME
    folder = Path(out).expanduser()
    found = bundle_folder(folder) if folder.is_dir() else None
    if found is not None and (found / MANIFEST_NAME).is_file():
        if found.resolve() != bundle.path.resolve():
            raise SportsdetError(
                f"--out {out}: holds another model bundle ({found}), whose model.onnx must come from "
                "its own weights; give a file name (ending in .onnx)"
            )
        return bundle.path / ONNX_NAME
    return file_in_folder(out, ONNX_NAME)


def _check_target(target: Path) -> None:
    """An output file name that can be written: not a folder, its parent a folder or none yet."""
    if target.is_dir():
        raise SportsdetError(f"{target}: is a folder; give the ONNX file's name (ending in .onnx)")
    target = write_target(target)  # a link's target is what gets written
    parent = next((folder for folder in (target.parent, *target.parent.parents) if folder.exists()), None)
    if parent is not None and not parent.is_dir():
        raise SportsdetError(f"{target}: {parent} is a file, not a folder; choose another --out")
    if parent is not None and not os.access(parent, os.W_OK | os.X_OK):  # also a read-only file system
        raise SportsdetError(f"{target}: cannot write in {parent}; choose another --out")


def _atomic_target(out: Path) -> Path:
    """The temporary file `out` is written into; what a killed export left beside it goes first."""
    remove_abandoned_temps(out)
    return temp_beside(out, named_by="--out")


def export_bundle(
    bundle_path: str | Path,
    *,
    out: str | Path | None = None,
    int8: bool = False,
    calibration_data: str | Path | None = None,
    eval_data: str | Path | None = None,
    int8_out: str | Path | None = None,
    max_int8_drop: float = MAX_INT8_DROP,
    quant_format: str = "qdq",
    parity_images: int = PARITY_IMAGES,
    calibration_images: int = CALIBRATION_IMAGES,
    progress: Progress | None = None,
) -> ExportReport:
    """Export a bundle to ONNX (default BUNDLE/model.onnx), check parity, optionally add INT8.

    `bundle_path`: a bundle folder, a run folder or "builtin" (which needs `out`). `int8`: also
    write an INT8 model (default OUT with .int8.onnx, or `int8_out`), calibrated on
    `calibration_data` (default: the bundle's training photos, else synthetic ones) and refused
    when it loses more than `max_int8_drop` accuracy points on `eval_data` (default: held-out
    photos of the bundle's data); `quant_format`: "qdq" or "qoperator". `parity_images` and
    `calibration_images`: how many photos each check uses. `progress(message)` hears each step.
    Files are written under a temporary name and renamed only once every check passed, so a
    failed export never leaves a file behind nor replaces a good one.
    """
    if quant_format not in QUANT_FORMATS:  # a KeyError after the float export had run
        raise SportsdetError(f"unknown quant_format {quant_format!r}; use {' or '.join(QUANT_FORMATS)}")
    for name, count in (("parity_images", parity_images), ("calibration_images", calibration_images)):
        whole = isinstance(count, Integral) and not isinstance(count, bool)  # numpy's integers too
        if not whole or count < 1:  # 0 was "does not match PyTorch ... please report"
            raise SportsdetError(f"{name} must be a whole number of at least 1, got {count!r}")
    say = progress or (lambda message: None)
    bundle = open_bundle(bundle_path)  # a run folder, or `builtin`, too
    out = _output_file(out, bundle)
    builtin = builtin_bundle_path()
    if builtin is not None and out.parent.resolve() == builtin.resolve():  # --out its folder too
        raise SportsdetError(
            "the built-in model lives inside the installed package; give --out FILE.onnx elsewhere to "
            "export it"
        )
    if out.suffix.lower() != ".onnx":
        raise SportsdetError(f"{out}: the output file name must end in .onnx")
    int8_path = Path(int8_out) if int8_out else out.with_name(out.stem + ".int8.onnx")
    if int8_out is None and out.name == ONNX_NAME:
        int8_path = out.with_name(ONNX_INT8_NAME)
    # Said before the export runs (minutes with the parity and INT8 checks), naming the real path
    # (it was the temp file's name, and an INT8 target that could not be written came after the
    # fp32 file had replaced the old one).
    for target in (out, int8_path) if int8 else (out,):
        _check_target(target)
    if not (math.isfinite(max_int8_drop) and 0 <= max_int8_drop <= 100):  # NaN turned the guard off
        raise SportsdetError(f"--max-int8-drop {max_int8_drop}: accuracy points, from 0 to 100")
    spec = bundle.preprocessing
    data = find_export_data(bundle, calibration_data, eval_data, int8=int8)
    notes: list[str] = list(data.notes)
    if not int8 and bundle.ships_only_int8:
        notes.append(
            f"{bundle.path} predicts with its {ONNX_INT8_NAME}; this float export scores a little "
            "differently (a few photos change label or answer, and the abstain threshold was fitted on "
            "the INT8 scores); add --int8 to export the INT8 form too"
        )

    say(f"images for the checks: {data.origin}")
    if data.train:
        parity_set = _decode_many((p for p, _ in _sample(data.train, parity_images, seed=1)), spec)
    else:
        parity_set = np.zeros((0,), np.float32)
    parity_origin = data.train_source or data.origin
    if len(parity_set) == 0:
        notes.append(
            f"no training images found ({data.why_none}; give --calibration-data DIR): "
            "parity checked on synthetic images only"
        )
        parity_set, parity_origin = _synthetic(spec, parity_images), "synthetic"

    model = bundle.build_torch_model()
    sha = (bundle.manifest.get("weights") or {}).get("sha256")
    out_file, int8_file = write_target(out), write_target(int8_path)  # through symbolic links
    temp = _atomic_target(out_file)
    temp_int8: Path | None = None

    def stamp(path: Path, **quantization: Any) -> None:
        """The bundle's labels, preprocessing and weights hash, written into an exported file."""
        metadata = onnx_metadata(
            labels=bundle.labels,
            preprocessing=spec,
            model_name=bundle.model_name,
            model_config=bundle.model_config,
            weights_sha256=sha,
            abstain=bundle.abstain,
            **quantization,
        )
        set_metadata(path, metadata)

    try:
        say(f"exporting to ONNX (opset {OPSET})")
        export_torch_model(model, temp, spec.input_size)
        stamp(temp)
        say(f"parity check on {len(parity_set)} images")
        parity = check_parity(model, temp, parity_set, parity_origin)
        if not parity.ok:
            raise SportsdetError(
                f"{out}: ONNX export does not match PyTorch on {parity.n} images "
                f"(top-1 agreement {parity.top1_agreement:.1%}, needs >= {PARITY_MIN_AGREEMENT:.0%}; "
                f"largest probability difference {parity.max_prob_diff:.2e}, "
                f"allowed {PARITY_MAX_PROB_DIFF:.0e}); "
                "nothing was written. Please report this with the model name."
            )
        report = ExportReport(path=str(out), parity=parity, notes=notes)

        if int8:
            started = time.perf_counter()
            if data.train:
                chosen = _sample(data.train, calibration_images, seed=2)
                calibration = _decode_many((p for p, _ in chosen), spec)
            else:
                calibration = np.zeros((0,), np.float32)
            synthetic = len(calibration) == 0
            if synthetic:
                notes.append("INT8 calibrated on synthetic images: expect a large accuracy loss")
                calibration = _synthetic(spec, 32)
            say(f"INT8 quantisation ({quant_format}), calibrated on {len(calibration)} images")
            temp_int8 = _atomic_target(int8_file)
            quantize_int8(temp, temp_int8, calibration, quant_format=quant_format)
            stamp(
                temp_int8,
                quantization={
                    "method": "onnxruntime static",
                    "format": quant_format,
                    "weights": "int8 per-channel",
                    "activations": "uint8",
                    "calibration": "minmax",
                    "float_convs": FLOAT_CONVS,
                    "calibration_images": int(len(calibration)),
                    # `info` said "minmax calibration on 32 photos" of made-up pictures
                    **({"calibration_data": "synthetic"} if synthetic else {}),
                },
            )
            left_out = _leave_out_seen(bundle, data, notes)  # the photos `evaluate` scores, and said so
            what = "held-out images"
            if left_out:
                what += f" ({left_out} it was trained or validated on left out, as evaluate does)"
            elif left_out is None:  # nothing else to score them on: said plainly
                what = "images, every one of them a photo it was trained or validated on"
            report.int8 = _int8_report(temp, temp_int8, int8_path, data, calibration, quant_format, say, what)
            report.int8.seconds = time.perf_counter() - started
            moved = report.int8.abstain_changed
            if moved and moved > max(1, 0.05 * report.int8.n):
                notes.append(
                    f"the abstain threshold, fitted on the float model's scores, decides {moved} of "
                    f"{report.int8.n} held-out photos otherwise in INT8; predict --int8 answers "
                    f"{report.int8.abstain_answered[1]} of them, the float model "
                    f"{report.int8.abstain_answered[0]} (--min-score sets another threshold)"
                )
            change = report.int8.accuracy_change_points
            if change is not None and -change > max_int8_drop:
                one = 100 / report.int8.n if report.int8.n else 0.0
                few = (f" On {report.int8.n} images one photo is {one:.2f} points: the check cannot tell a "
                       "photo or two from a real loss; give more held-out photos (--eval-data)"
                       if one > max_int8_drop else "")  # fmt: skip
                raise SportsdetError(
                    f"{int8_path}: INT8 loses {-change:.2f} accuracy points on {report.int8.heldout} "
                    f"(allowed {max_int8_drop:.2f}); nothing was written. Use the fp32 model, or raise "
                    f"--max-int8-drop if that loss is acceptable.{few}"
                )
        with signals_deferred():  # not a new float model beside the old INT8 one
            os.replace(temp, out_file)
            if temp_int8 is not None:
                os.replace(temp_int8, int8_file)
        return report
    finally:
        for leftover in (temp, temp_int8):
            if leftover is not None and leftover.exists():
                leftover.unlink()


def _leave_out_seen(bundle: Bundle, data: ExportData, notes: list[str]) -> int | None:
    """Drop from `data.heldout` the photos the model was trained or validated on (its
    seen_photos.json, or an older bundle's run split: run_folder.seen_photos_of), as evaluate leaves
    them out; how many went (None: every one is seen, and they stay: the INT8 check measures them
    rather than nothing). INT8's accuracy was measured on 210 photos where evaluate scored 209: two
    numbers alike, of other sets. What cannot be looked for is added to `notes`."""
    seen = seen_photos_of(bundle)
    unrecognised = unrecognised_seen_note(bundle, seen) if data.heldout else None
    if unrecognised:
        notes.append(unrecognised)
    if not seen or not data.heldout:
        return 0
    kept, _ = split_off_seen([path for path, _ in data.heldout], seen)
    if not kept:
        return None
    gone = len(data.heldout) - len(kept)
    data.heldout = [data.heldout[i] for i in kept]
    return gone


def _int8_report(
    fp32_path: Path,
    int8_path: Path,
    final_path: Path,
    data: ExportData,
    calibration: np.ndarray,
    quant_format: str,
    say: Progress,
    what: str = "held-out images",
) -> Int8Report:
    fp32, quantised = OnnxBackend(fp32_path), OnnxBackend(int8_path)
    labelled = [item for item in data.heldout if item[1] is not None]
    if labelled:
        say(f"accuracy of fp32 and INT8 on {len(labelled)} held-out images")
        pred32, truth, probs32 = _accuracy_and_preds(fp32, labelled)
        pred8, _, probs8 = _accuracy_and_preds(quantised, labelled)
        truth_arr = np.asarray(truth)
        n = len(labelled)
        answered, changed = None, None
        rule = fp32.abstain
        if rule is not None and rule.active:  # fitted on float scores, carried into the INT8 file
            read = ~np.isnan(probs32).any(1) & ~np.isnan(probs8).any(1)
            unsure32, unsure8 = rule.uncertain(probs32[read]), rule.uncertain(probs8[read])
            answered = (int((~unsure32).sum()), int((~unsure8).sum()))
            changed = int((unsure32 != unsure8).sum())
        return Int8Report(
            path=str(final_path),
            quant_format=quant_format,
            calibration_images=int(len(calibration)),
            heldout=f"{n} {what}",
            n=n,
            fp32_accuracy=float((pred32 == truth_arr).mean()),
            int8_accuracy=float((pred8 == truth_arr).mean()),
            top1_agreement=float((pred32 == pred8).mean()),
            seconds=0.0,
            abstain_answered=answered,
            abstain_changed=changed,
        )
    # No labelled held-out split: the best we can say is how often INT8 agrees with fp32.
    say("no labelled held-out split found: measuring INT8 agreement with fp32 only")
    sample = calibration[:64]
    same = fp32.predict_proba(sample).argmax(1) == quantised.predict_proba(sample).argmax(1)
    agreement = float(same.mean())
    return Int8Report(
        path=str(final_path),
        quant_format=quant_format,
        calibration_images=int(len(calibration)),
        heldout="none found (agreement with fp32 on calibration images only)",
        n=int(len(sample)),
        fp32_accuracy=None,
        int8_accuracy=None,
        top1_agreement=agreement,
        seconds=0.0,
    )
