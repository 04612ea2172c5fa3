"""Checkpoints: the model, optimizer, scheduler and every RNG state, in one safetensors file.

Tensors (weights, the flattened optimizer state, RNG states) are the file's tensors; the JSON
state (epoch, history, best, RNG, scheduler, recipe state) lives in its metadata, so one
`os.replace` publishes a consistent checkpoint. `last.json`/`best.json` beside it are readable
copies. No pickle anywhere.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sportsdet.errors import SportsdetError
from sportsdet.files import atomic_write, signals_deferred, write_json

CHECKPOINT_FORMAT = "sportsdet-checkpoint/1"
_STATE_KEY = "sportsdet.state"  # safetensors metadata entry holding the JSON state


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch; ask torch for deterministic kernels (cheap on CPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def rng_state() -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Every random source's state as (JSON part, tensor part)."""
    py_version, py_internal, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    info = {
        "python": [py_version, list(py_internal), py_gauss],
        "numpy": [np_kind, int(np_pos), int(np_has_gauss), float(np_gauss)],
    }
    tensors = {
        "rng.numpy_keys": torch.from_numpy(np.asarray(np_keys, dtype=np.uint32).astype(np.int64)),
        "rng.torch": torch.random.get_rng_state(),
    }
    return info, tensors


def set_rng_state(info: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    version, internal, gauss = info["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, pos, has_gauss, cached = info["numpy"]
    keys = tensors["rng.numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state((kind, keys, pos, has_gauss, cached))
    torch.random.set_rng_state(tensors["rng.torch"])


def jsonable(value: Any) -> Any:
    """Scheduler/optimizer hyper-parameters to JSON (tensors become numbers or lists)."""
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return None  # e.g. a lambda in LambdaLR's state: rebuilt by the recipe, not stored


def flatten_optimizer_state(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """optimizer.state_dict() -> (JSON part, {"optim.<param>.<name>": tensor})."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, param_state in state["state"].items():
        for name, value in param_state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{param_id}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(param_id), {})[name] = value
    return {"param_groups": jsonable(state["param_groups"]), "scalars": scalars}, tensors


def unflatten_optimizer_state(info: dict[str, Any], tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, param_id, name = key.split(".", 2)
            state.setdefault(int(param_id), {})[name] = value
    for param_id, values in info.get("scalars", {}).items():
        state.setdefault(int(param_id), {}).update(values)
    return {"state": state, "param_groups": info["param_groups"]}


def write_checkpoint(path: Path, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    """Atomically write `path` (.safetensors) with the JSON state embedded, then a readable .json copy."""
    from safetensors.torch import save_file

    state = {"format": CHECKPOINT_FORMAT, **state}
    text = json.dumps(state, ensure_ascii=False)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with signals_deferred():
        # The checkpoint is published by this one rename; the .json copy is for people.
        atomic_write(path, lambda temp: save_file(tensors, str(temp), metadata={_STATE_KEY: text}))
        write_json(path.with_suffix(".json"), state)


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, JSON state) of a checkpoint written by `write_checkpoint`."""
    from safetensors import safe_open

    if not path.is_file():
        raise SportsdetError(f"{path}: checkpoint not found")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        state = json.loads(meta[_STATE_KEY])
    except Exception as exc:  # damaged header, missing metadata, bad JSON
        raise SportsdetError(
            f"{path}: damaged checkpoint ({exc}); start again with --force or restore the file"
        ) from None
    if state.get("format") != CHECKPOINT_FORMAT:
        raise SportsdetError(f"{path}: not a sportsdet checkpoint (format {state.get('format')!r})")
    return tensors, state


def checkpoint_epoch(path: Path) -> int | None:
    """The epoch a checkpoint holds, read from its header alone; None if it cannot be read."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            epoch = json.loads((handle.metadata() or {})[_STATE_KEY]).get("epoch")
    except Exception:  # noqa: BLE001  missing or damaged: the caller says less
        return None
    return epoch if isinstance(epoch, int) else None


def model_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The model's state dict inside a checkpoint's tensors."""
    return {key[len("model.") :]: value for key, value in tensors.items() if key.startswith("model.")}
