"""The saved model that every later feature uses.

A bundle is a folder:

    NAME/
      bundle.json          labels, preprocessing, model name + config, data, training, metrics, versions
      weights.safetensors  the state dict (no pickle anywhere)

`bundle.json` records the SHA-256 of the weights, and the folder is written under a temporary
name and renamed into place, so a crash never leaves something at NAME that loads. Loading checks
everything and fails with a `BundleError` that says what is wrong. Torch-free: weights load as
NumPy arrays; `torch_state_dict()` gives tensors when torch is there.
"""

from __future__ import annotations

import glob
import json
import os
import platform
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sportsdet._version import __version__
from sportsdet.abstain import Abstain
from sportsdet.errors import BundleError, SportsdetError, quoted_with_hint
from sportsdet.files import remove_untouched, sha256_file, write_json
from sportsdet.preprocess import Preprocessing

if TYPE_CHECKING:
    import torch

BUNDLE_FORMAT = "sportsdet-bundle/1"
MANIFEST_NAME = "bundle.json"
RUN_MODEL_FOLDER = "model"  # a training run keeps its bundle in RUN/model (run_folder.MODEL)
WEIGHTS_NAME = "weights.safetensors"
ONNX_NAME = "model.onnx"  # the light form of a bundle, written by `sportsdet export`
ONNX_INT8_NAME = "model.int8.onnx"
SEEN_NAME = "seen_photos.json"  # the photos the model was trained and validated on (seen_photos.py)
# What sportsdet writes in a bundle folder; anything else there is the user's and is kept.
BUNDLE_FILES = (MANIFEST_NAME, WEIGHTS_NAME, ONNX_NAME, ONNX_INT8_NAME, SEEN_NAME)
ALIASES_KEY = "label_aliases"  # bundle.json: {other name: label}, e.g. a dataset's name for a renamed class


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries that shape a model's numbers."""
    versions = {"python": platform.python_version(), "sportsdet": __version__}
    for package in ("torch", "torchvision", "timm", "numpy", "pillow", "onnxruntime", "scikit-learn"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


@dataclass
class Bundle:
    """A loaded, validated bundle. `weights_path` is read lazily."""

    path: Path
    model_name: str
    model_config: dict[str, Any]
    labels: list[str]
    preprocessing: Preprocessing
    output_key: str
    data: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def weights_path(self) -> Path:
        return self.path / WEIGHTS_NAME

    @property
    def label_aliases(self) -> dict[str, str]:
        """Other names of its labels, as class folders name them ({"football": "american football"}
        for a model whose labels were renamed after training: `sportsdet.bundle_labels`)."""
        return dict(self.manifest.get(ALIASES_KEY) or {})

    def class_names(self) -> dict[str, str]:
        """Every name a class folder may have -> the label it is: the labels, and their aliases."""
        return {**self.label_aliases, **{label: label for label in self.labels}}

    def class_index(self) -> dict[str, int]:
        """Every name a class folder may have (`class_names`) -> its output row."""
        row = {label: i for i, label in enumerate(self.labels)}
        return {name: row[label] for name, label in self.class_names().items()}

    @property
    def ships_only_int8(self) -> bool:
        """It carries model.int8.onnx and no model.onnx (the built-in model): INT8 is what runs."""
        return not (self.path / ONNX_NAME).is_file() and (self.path / ONNX_INT8_NAME).is_file()

    def onnx_files(self) -> list[Path]:
        """The bundle's exported models (model.onnx, model.int8.onnx) that are there."""
        return [self.path / name for name in (ONNX_NAME, ONNX_INT8_NAME) if (self.path / name).is_file()]

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def abstain(self) -> Abstain | None:
        """The abstain rule stored in bundle.json ("abstain"), or None when it has none."""
        data = self.manifest.get("abstain")
        return None if data is None else Abstain.from_dict(data, f"{self.path / MANIFEST_NAME}")

    def numpy_state_dict(self) -> dict[str, Any]:
        from safetensors.numpy import load_file

        return load_file(str(self.weights_path))

    def torch_state_dict(self) -> dict[str, Any]:
        from safetensors.torch import load_file

        return load_file(str(self.weights_path))

    def build_torch_model(self) -> torch.nn.Module:
        """Rebuild the network from the registry and load the weights, in eval mode (needs torch)."""
        import torch

        from sportsdet.models import build_model
        from sportsdet.models.heads import DEFAULTED_BUFFERS

        state = self.torch_state_dict()
        # Compare shapes on a skeleton on the "meta" device first (no memory): a model.config
        # that does not match the weights (a hand-edited input_size: 40000) must be a clear error,
        # not a multi-GB allocation followed by torch's "size mismatch" traceback.
        with torch.device("meta"):
            skeleton = build_model(
                self.model_name, num_classes=self.num_classes, pretrained=False, **self.model_config
            )
        expected = {key: tuple(value.shape) for key, value in skeleton.state_dict().items()}
        missing = sorted(
            key for key in expected.keys() - state.keys() if key.rsplit(".", 1)[-1] not in DEFAULTED_BUFFERS
        )
        unexpected = sorted(state.keys() - expected.keys())
        wrong = [
            f"{key} is {tuple(state[key].shape)} in the weights, {shape} in the model"
            for key, shape in expected.items()
            if key in state and tuple(state[key].shape) != shape
        ]
        if missing or unexpected or wrong:
            problems = [f"missing {missing[:5]}"] if missing else []
            problems += [f"unexpected {unexpected[:5]}"] if unexpected else []
            problems += wrong[:3]
            raise BundleError(
                f"{self.path}: weights do not fit model {self.model_name!r} with config "
                f"{self.model_config} ({'; '.join(problems)}); the bundle.json does not belong to "
                "these weights"
            )
        model = build_model(
            self.model_name, num_classes=self.num_classes, pretrained=False, **self.model_config
        )
        model.load_state_dict(state, strict=True)
        return model.eval()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _make_readable(folder: Path) -> None:
    """mkdtemp (and some writers) create private 0700/0600 entries; a bundle gets normal modes."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)
    for entry in folder.iterdir():
        os.chmod(entry, 0o666 & ~umask)


def save_bundle(
    path: str | Path,
    *,
    state_dict: dict[str, Any],
    model_name: str,
    model_config: dict[str, Any] | None,
    labels: list[str],
    preprocessing: Preprocessing,
    output_key: str,
    data: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    abstain: Abstain | dict[str, Any] | None = None,
    extra_files: dict[str, bytes] | None = None,
    label_aliases: dict[str, str] | None = None,
) -> Path:
    """Write a bundle atomically. `state_dict` holds torch tensors or NumPy arrays. `label_aliases`:
    other names of its labels that class folders have ({"football": "american football"})."""
    path = Path(path)
    labels = [str(label) for label in labels]
    if output_key not in state_dict:
        raise BundleError(f"cannot save bundle: output layer {output_key!r} is not in the state dict")
    out_rows = int(state_dict[output_key].shape[0])
    if out_rows != len(labels):
        raise BundleError(
            f"cannot save bundle: {len(labels)} labels but the output layer has {out_rows} rows"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_staging(path)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        weights_file = staging / WEIGHTS_NAME
        first = next(iter(state_dict.values()))
        if type(first).__module__.startswith("torch"):
            from safetensors.torch import save_file

            save_file({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, str(weights_file))
        else:
            import numpy as np
            from safetensors.numpy import save_file

            save_file({k: np.ascontiguousarray(v) for k, v in state_dict.items()}, str(weights_file))
        manifest = {
            "format": BUNDLE_FORMAT,
            "model": {"name": model_name, "config": model_config or {}, "output_key": output_key},
            "labels": labels,
            "preprocessing": preprocessing.to_dict(),
            "data": data or {},
            "training": training or {},
            "metrics": metrics or {},
            "versions": library_versions(),
            "weights": {"file": WEIGHTS_NAME, "sha256": sha256_file(weights_file)},
        }
        if abstain is not None:
            manifest["abstain"] = abstain.to_dict() if isinstance(abstain, Abstain) else dict(abstain)
        if label_aliases:
            manifest[ALIASES_KEY] = dict(sorted(label_aliases.items()))
        for name, content in (extra_files or {}).items():
            (staging / name).write_bytes(content)
        with open(staging / MANIFEST_NAME, "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, indent=2, ensure_ascii=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        _make_readable(staging)
        _fsync_dir(staging)
        # Swap into place: the old bundle (if any) stays whole until the new one is complete.
        # Files a user put in the folder move into the new one; the old bundle's own files
        # (a stale model.onnx among them) go.
        old = None
        if path.exists():
            _keep_user_files(path, staging)
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(staging, path)
        _fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def _remove_abandoned_staging(path: Path) -> None:
    """What a killed save left beside the bundle (kill -9, out of memory): a model-sized
    `.NAME.tmp-*` folder, and `.NAME.old-PID`, the bundle it replaced, once the new one is in
    place. Each stayed for ever; a folder written to within the hour may be another save's."""
    pattern = glob.escape(f".{path.name}")
    ours = re.compile(rf"\.{re.escape(path.name)}\.(tmp-[a-z0-9_]{{8}}|old-([1-9][0-9]{{0,6}}))")

    def left_by_save(folder: Path) -> re.Match | None:
        """Named as save_bundle names it (mkdtemp's 8 letters, a process id) and holding a bundle's
        files only: a user's `.model.old-v1` backup, named alike, is never touched."""
        found = ours.fullmatch(folder.name)
        if not found or not folder.is_dir() or folder.is_symlink():
            return None
        return found if all(_ours(entry.name) for entry in folder.iterdir()) else None

    staging, replaced = [], []
    for folder in [*path.parent.glob(f"{pattern}.tmp-*"), *path.parent.glob(f"{pattern}.old-*")]:
        found = left_by_save(folder)
        if found and found.group(2) is None:
            staging.append(folder)
        # The replaced bundle is the only one while its save is between its two renames: kept then.
        elif found and path.is_dir() and not _running(int(found.group(2))):
            replaced.append(folder)
    remove_untouched(staging)
    remove_untouched(replaced, seconds=0)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: it exists
        return True
    return True


def _ours(name: str) -> bool:
    """A bundle's own file or one of our temporary ones; a user's .gitignore or notes are not."""
    return name in BUNDLE_FILES or (name.startswith(".") and ".tmp" in name)


def _keep_user_files(old: Path, new: Path) -> None:
    if not old.is_dir():
        return
    for entry in old.iterdir():
        if not _ours(entry.name) and not (new / entry.name).exists():
            os.replace(entry, new / entry.name)


def _require(manifest: dict[str, Any], key: str, kind: type, where: Path) -> Any:
    if key not in manifest:
        raise BundleError(f"{where}: bundle.json has no {key!r} entry; the bundle is incomplete")
    value = manifest[key]
    if not isinstance(value, kind):
        raise BundleError(f"{where}: bundle.json entry {key!r} should be a {kind.__name__}")
    return value


def bundle_folder(path: str | Path) -> Path:
    """The folder a bundle named by `path` is in: the model shipped in the package for `"builtin"`
    (unless a folder of that name is here), the folder of a bundle.json, a training run folder's
    model/; else `path` itself (load_bundle says what is wrong with it)."""
    path = Path(path).expanduser()
    if str(path) == BUILTIN and not path.exists():
        shipped = builtin_bundle_path()
        if shipped is None:
            raise BundleError("this install has no built-in model; give a model bundle or run folder")
        return shipped
    if path.name == MANIFEST_NAME:
        path = path.parent  # RUN/bundle.json, as it was taken before, still means RUN/model
    if not (path / MANIFEST_NAME).is_file() and (path / RUN_MODEL_FOLDER / MANIFEST_NAME).is_file():
        return path / RUN_MODEL_FOLDER  # a run folder, as Predictor, evaluate and export take it
    return path


def _close_to_builtin(path: Path) -> bool:
    """'builtn', 'Builtin', 'built-in': a misspelt name of the built-in model, not a path."""
    name = str(path)
    return "/" not in name and name != BUILTIN and "(did you mean" in quoted_with_hint(name, [BUILTIN])


def load_bundle(path: str | Path, *, verify_weights: bool = True) -> Bundle:
    """Open and validate a bundle folder (or the bundle.json inside it, or a training run folder:
    its model/); `"builtin"` is the sports model shipped in the package (unless a folder of that
    name is here)."""
    path = bundle_folder(path)
    if not path.exists():
        builtin = " (did you mean 'builtin', the built-in model?)" if _close_to_builtin(path) else ""
        raise BundleError(f"{path}: no such model bundle{builtin}")
    if not path.is_dir():
        onnx = path.suffix.lower() == ".onnx"
        exported = " (this is an exported ONNX file: give the bundle folder it came from)" if onnx else ""
        raise BundleError(
            f"{path}: a model bundle is a folder holding {MANIFEST_NAME} and {WEIGHTS_NAME}{exported}"
        )
    manifest_file = path / MANIFEST_NAME
    if not manifest_file.is_file():
        raise BundleError(f"{path}: {MANIFEST_NAME} is missing; this is not a sportsdet model bundle")
    try:
        manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{manifest_file}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{manifest_file}: expected a JSON object")
    fmt = manifest.get("format")
    if fmt != BUNDLE_FORMAT:
        raise BundleError(
            f"{manifest_file}: unsupported bundle format {fmt!r} (this sportsdet reads {BUNDLE_FORMAT})"
        )
    model = _require(manifest, "model", dict, manifest_file)
    labels = _require(manifest, "labels", list, manifest_file)
    if not labels or not all(isinstance(label, str) and label for label in labels):
        raise BundleError(f"{manifest_file}: 'labels' must be a non-empty list of names")
    if len(set(labels)) != len(labels):
        raise BundleError(f"{manifest_file}: 'labels' holds duplicates")
    for key in ("name", "output_key"):
        if not isinstance(model.get(key), str):
            raise BundleError(f"{manifest_file}: 'model.{key}' is missing")
    stored = _require(manifest, "preprocessing", dict, manifest_file)  # its message names the file
    try:
        preprocessing = Preprocessing.from_dict(stored)
    except SportsdetError as exc:
        raise BundleError(f"{manifest_file}: {exc}") from None
    weights = _require(manifest, "weights", dict, manifest_file)
    weights_file = path / WEIGHTS_NAME
    if not weights_file.is_file():
        raise BundleError(f"{path}: {WEIGHTS_NAME} is missing; the bundle is incomplete")
    if verify_weights and weights.get("sha256") != sha256_file(weights_file):
        raise BundleError(
            f"{weights_file}: checksum does not match bundle.json; the file is damaged or replaced"
        )
    try:
        from safetensors import safe_open

        with safe_open(str(weights_file), framework="numpy") as handle:
            keys = set(handle.keys())
            if model["output_key"] not in keys:
                raise BundleError(
                    f"{weights_file}: output layer {model['output_key']!r} not found in the weights"
                )
            rows = handle.get_slice(model["output_key"]).get_shape()[0]
    except BundleError:
        raise
    except Exception as exc:  # safetensors raises its own error types for damaged headers
        raise BundleError(f"{weights_file}: not a readable safetensors file ({exc})") from None
    if rows != len(labels):
        raise BundleError(
            f"{manifest_file}: {len(labels)} labels but the model's output layer has {rows} outputs"
        )
    # Records read as objects everywhere (info, evaluate, the report): a list or a string in
    # their place was a traceback far from here.
    for where, value in [("model.config", model.get("config"))] + [
        (key, manifest.get(key)) for key in ("data", "training", "metrics", "versions")
    ]:
        if value is not None and not isinstance(value, dict):
            shown = repr(value)[:60]
            raise BundleError(f"{manifest_file}: bundle.json entry {where!r} must be an object, not {shown}")
    aliases = manifest.get(ALIASES_KEY)
    if aliases is not None and not (
        isinstance(aliases, dict)
        and all(isinstance(k, str) and k not in labels and v in labels for k, v in aliases.items())
    ):
        raise BundleError(
            f"{manifest_file}: '{ALIASES_KEY}' must map other names (not labels themselves) to labels"
        )
    if manifest.get("abstain") is not None:
        try:
            Abstain.from_dict(manifest["abstain"], str(manifest_file))
        except SportsdetError as exc:
            raise BundleError(str(exc)) from None
    return Bundle(
        path=path,
        model_name=model["name"],
        model_config=dict(model.get("config") or {}),
        labels=list(labels),
        preprocessing=preprocessing,
        output_key=model["output_key"],
        data=dict(manifest.get("data") or {}),
        training=dict(manifest.get("training") or {}),
        metrics=dict(manifest.get("metrics") or {}),
        versions=dict(manifest.get("versions") or {}),
        manifest=manifest,
    )


def set_manifest_entries(path: str | Path, entries: dict[str, Any]) -> Path:
    """Store (or, with None, remove) top-level entries of an existing bundle's bundle.json.

    Only those entries change (one atomic rewrite); the weights and their checksum stay as they are.
    """
    bundle = load_bundle(path, verify_weights=False)
    manifest = dict(bundle.manifest)
    for key, value in entries.items():
        if value is None:
            manifest.pop(key, None)
        else:
            manifest[key] = value
    return write_json(bundle.path / MANIFEST_NAME, manifest, indent=2)


def _set_manifest_entry(path: str | Path, key: str, value: Any) -> Path:
    return set_manifest_entries(path, {key: value})


def set_bundle_abstain(path: str | Path, abstain: Abstain | None) -> Path:
    """Store (or, with None, remove) the abstain rule in an existing bundle's bundle.json."""
    return _set_manifest_entry(path, "abstain", None if abstain is None else abstain.to_dict())


def set_bundle_metrics(path: str | Path, metrics: dict[str, Any]) -> Path:
    """Replace the recorded scores ("metrics") of an existing bundle, e.g. once measured with the
    engine it ships with."""
    return _set_manifest_entry(path, "metrics", metrics)


BUILTIN = "builtin"  # names the model shipped in the package wherever a bundle is asked for


def builtin_bundle_path() -> Path | None:
    """The sports model shipped inside the package, or None while there is none."""
    candidate = Path(__file__).parent / "assets" / "builtin"
    return candidate if (candidate / MANIFEST_NAME).is_file() else None
