"""The model bundle: round trip, validation on load, atomic overwrite."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from sportsdet.bundle import MANIFEST_NAME, WEIGHTS_NAME, load_bundle, save_bundle
from sportsdet.errors import BundleError, SportsdetError
from sportsdet.models import build_model, get_model_spec
from sportsdet.preprocess import Preprocessing

LABELS = ["air hockey", "croquet", "polo"]
SMALL = {"input_size": 16}


def _save(path: Path, model: torch.nn.Module | None = None, labels: list[str] = LABELS, **kw) -> Path:
    torch.manual_seed(0)
    model = model or build_model("seed-cnn", num_classes=len(labels), **SMALL)
    spec = get_model_spec("seed-cnn")
    return save_bundle(
        path,
        state_dict=model.state_dict(),
        model_name="seed-cnn",
        model_config=SMALL,
        labels=labels,
        preprocessing=Preprocessing(input_size=16, resize="squash"),
        output_key=spec.output_key,
        data={"root": "/data"},
        training={"epochs_run": 1},
        metrics={"best_val_accuracy": 0.5},
        **kw,
    )


def test_round_trip_rebuilds_the_same_model(tmp_path):
    torch.manual_seed(1)
    model = build_model("seed-cnn", num_classes=3, **SMALL).eval()
    path = _save(tmp_path / "b", model)
    bundle = load_bundle(path)
    assert bundle.labels == LABELS and bundle.model_name == "seed-cnn" and bundle.model_config == SMALL
    assert bundle.preprocessing == Preprocessing(input_size=16, resize="squash")
    assert bundle.metrics == {"best_val_accuracy": 0.5} and bundle.training == {"epochs_run": 1}
    assert "torch" in bundle.versions and bundle.manifest["weights"]["sha256"]
    assert load_bundle(path / MANIFEST_NAME).labels == LABELS  # the bundle.json path works too
    run = tmp_path / "run"  # and RUN/bundle.json for a run folder, as before bundle_folder
    shutil.copytree(path, run / "model")
    assert load_bundle(run / MANIFEST_NAME).path == run / "model"
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(model(x), bundle.build_torch_model()(x))
    assert set(bundle.numpy_state_dict()) == set(model.state_dict())
    assert not list(tmp_path.glob(".b.*"))  # no staging folders left behind


def test_missing_or_damaged_weights_are_refused(tmp_path):
    path = _save(tmp_path / "b")
    weights = path / WEIGHTS_NAME
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF  # one flipped byte in a tensor
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum does not match"):
        load_bundle(path)
    weights.write_bytes(b"not safetensors")
    with pytest.raises(BundleError, match="checksum|not a readable safetensors"):
        load_bundle(path)
    with pytest.raises(BundleError, match="not a readable safetensors"):
        load_bundle(path, verify_weights=False)
    weights.unlink()
    with pytest.raises(BundleError, match="weights.safetensors is missing"):
        load_bundle(path)
    with pytest.raises(BundleError, match="no such model bundle"):
        load_bundle(tmp_path / "nowhere")


def test_labels_must_match_the_output_layer(tmp_path):
    model = build_model("seed-cnn", num_classes=3, **SMALL)
    with pytest.raises(BundleError, match="2 labels but the output layer has 3 rows"):
        _save(tmp_path / "b", model, labels=["a", "b"])
    assert not (tmp_path / "b").exists()

    path = _save(tmp_path / "ok", model)
    manifest = json.loads((path / MANIFEST_NAME).read_text())
    manifest["labels"] = ["a", "b", "c", "d"]
    (path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="4 labels but the model's output layer has 3 outputs"):
        load_bundle(path)
    manifest["labels"] = ["a", "b"]  # fewer: the third output would have no name
    (path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="2 labels but the model's output layer has 3 outputs"):
        load_bundle(path)
    manifest["labels"] = ["a", "a", "b"]
    (path / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="duplicates"):
        load_bundle(path)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda text: text[: len(text) // 2], "not valid JSON"),
        (lambda text: "[1, 2]", "expected a JSON object"),
        (lambda text: text.replace("sportsdet-bundle/1", "other/9"), "unsupported bundle format"),
        (
            lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "labels"}),
            "no 'labels'",
        ),
        (
            lambda text: json.dumps(
                {**json.loads(text), "preprocessing": {"input_size": 16, "resize": "zoom"}}
            ),
            "resize must be one of",
        ),
        # Records that every reader takes for objects: a traceback in info, predict and evaluate.
        (lambda text: json.dumps({**json.loads(text), "data": ["x"]}), "entry 'data' must be an object"),
        (lambda text: json.dumps({**json.loads(text), "metrics": []}), "entry 'metrics' must be an object"),
        (lambda text: json.dumps({**json.loads(text), "versions": "1"}), "entry 'versions' must be an"),
        (lambda text: text.replace('"config": {', '"config": [1], "was": {'), "'model.config' must be"),
        (lambda text: json.dumps({**json.loads(text), "preprocessing": "x"}), "'preprocessing' should be a"),
    ],
)
def test_bad_bundle_json_gives_a_clear_error(tmp_path, damage, message):
    path = _save(tmp_path / "b")
    manifest = path / MANIFEST_NAME
    manifest.write_text(damage(manifest.read_text()))
    with pytest.raises(BundleError, match=message) as caught:
        load_bundle(path)
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, SportsdetError)
    assert str(caught.value).count(str(manifest)) <= 1  # the file named once, not once per wrapper


def test_an_exported_onnx_file_given_for_a_bundle_is_named_as_such(tmp_path):
    # predict and serve take an .onnx file; evaluate and export, which need the bundle, said only
    # "a model bundle is a folder holding bundle.json and weights.safetensors".
    exported = _save(tmp_path / "b") / "model.onnx"
    exported.write_bytes(b"onnx")
    with pytest.raises(BundleError, match="an exported ONNX file: give the bundle folder it came from"):
        load_bundle(exported)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(BundleError, match="holding bundle.json and weights.safetensors$"):
        load_bundle(tmp_path / "notes.txt")


def test_failed_save_leaves_the_old_bundle_intact(tmp_path):
    path = _save(tmp_path / "b")
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    model = build_model("seed-cnn", num_classes=3, **SMALL)
    state = dict(model.state_dict())
    # A tensor safetensors cannot store (it refuses tensors that share memory) fails the save midway.
    state["alias"] = state["hidden.weight"]
    with pytest.raises(Exception):  # noqa: B017 - the library's own error type; what matters is the aftermath
        save_bundle(
            path,
            state_dict=state,
            model_name="seed-cnn",
            model_config=SMALL,
            labels=LABELS,
            preprocessing=Preprocessing(input_size=16),
            output_key="classifier.weight",
        )
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert load_bundle(path).labels == LABELS
    assert [p.name for p in tmp_path.iterdir()] == ["b"]  # staging folder removed

    # A successful overwrite replaces it whole.
    _save(path, labels=["x", "y", "z"])
    assert load_bundle(path).labels == ["x", "y", "z"]
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


def test_numpy_state_dict_saves_too(tmp_path):
    arrays = {k: v.numpy() for k, v in build_model("seed-cnn", num_classes=3, **SMALL).state_dict().items()}
    path = save_bundle(
        tmp_path / "np",
        state_dict=arrays,
        model_name="seed-cnn",
        model_config=SMALL,
        labels=LABELS,
        preprocessing=Preprocessing(input_size=16),
        output_key="classifier.weight",
    )
    loaded = load_bundle(path).numpy_state_dict()
    assert all(np.array_equal(loaded[k], arrays[k]) for k in arrays)


def test_saved_bundle_is_readable_by_others(tmp_path):
    """An installed bundle (the built-in one) must not be private to the user who wrote it."""
    import stat

    import numpy as np

    from sportsdet.bundle import save_bundle
    from sportsdet.preprocess import Preprocessing

    path = save_bundle(
        tmp_path / "b",
        state_dict={"classifier.weight": np.zeros((2, 3), np.float32)},
        model_name="seed-cnn",
        model_config={},
        labels=["a", "b"],
        preprocessing=Preprocessing(input_size=32),
        output_key="classifier.weight",
    )
    assert path.stat().st_mode & stat.S_IROTH and path.stat().st_mode & stat.S_IXOTH
    for entry in path.iterdir():
        assert entry.stat().st_mode & stat.S_IROTH, entry


def test_info_on_a_hand_edited_record_is_one_line(tmp_path):
    # A list where a record of sources was: `sportsdet info` died with an AttributeError traceback.
    from typer.testing import CliRunner

    from sportsdet.cli import app

    path = _save(tmp_path / "b")
    manifest = json.loads((path / MANIFEST_NAME).read_text())
    manifest["data"] = {"sources": [1], "counts": "x"}
    (path / MANIFEST_NAME).write_text(json.dumps(manifest))
    result = CliRunner().invoke(app, ["info", str(path)])
    assert isinstance(result.exception, SportsdetError), result.output
    assert "the bundle's record has an unexpected form" in str(result.exception)


def test_a_run_without_its_model_yet_says_so_not_that_it_is_no_bundle(tmp_path) -> None:
    # `evaluate/export/info RUN` of a run still training: "bundle.json is missing; this is not a
    # sportsdet model bundle".
    from sportsdet.run_folder import resolve_bundle_dir

    saved = tmp_path / "data"  # a folder holding a split.json of `data split --out`: no run
    saved.mkdir()
    (saved / "split.json").write_text(json.dumps({"format": "sportsdet-split/1"}))
    assert resolve_bundle_dir(saved) == saved
    run = tmp_path / "my run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"format": "sportsdet-run/1", "model": "seed-cnn"}))
    (run / "split.json").write_text("{}")
    with pytest.raises(SportsdetError, match="it kept no checkpoint: start it again with --force"):
        resolve_bundle_dir(run)
    (run / "checkpoints" / "last.safetensors").write_bytes(b"x")
    with pytest.raises(SportsdetError, match=r"no model yet .*`sportsdet train --out '.*my run' --resume`"):
        resolve_bundle_dir(run)


def test_what_a_killed_save_left_beside_the_bundle_goes_at_the_next_save(tmp_path) -> None:
    # kill -9 while the bundle was written left a model-sized .model.tmp-XXXX/ for ever (--force
    # runs into the folder and other saves never looked), and .model.old-PID/ once it was replaced.
    import os
    import subprocess
    import time

    from conftest import make_tiny_bundle

    bundle = make_tiny_bundle(tmp_path / "model")
    abandoned = tmp_path / ".model.tmp-k1ll3d_x"
    abandoned.mkdir()
    (abandoned / WEIGHTS_NAME).write_bytes(b"x" * 1000)
    stale = time.time() - 2 * 3600
    os.utime(abandoned, (stale, stale))
    busy = tmp_path / ".model.tmp-0th3r_sv"  # written to a moment ago: another save's, kept
    busy.mkdir()
    finished = subprocess.Popen(["true"])
    finished.wait()
    replaced = tmp_path / f".model.old-{finished.pid}"  # its process is gone, the new bundle in place
    replaced.mkdir()
    saving = subprocess.Popen(["sleep", "30"])
    alive = tmp_path / f".model.old-{saving.pid}"  # a save still between its two renames
    alive.mkdir()
    try:
        make_tiny_bundle(bundle)
    finally:
        saving.kill()
        saving.wait()
    assert not abandoned.exists() and not replaced.exists()
    assert busy.is_dir() and alive.is_dir() and load_bundle(bundle).labels
    # A user's backups named alike are never touched, nor a save's name holding a user's file; a
    # timestamp where a process id goes made the save fail (OverflowError).
    mine = [tmp_path / name for name in (".model.old-v1", ".model.old-20240501120000", ".model.tmp-k1ll3d_y")]
    for folder in mine:
        folder.mkdir()
        (folder / ("notes.txt" if folder.name.endswith("_y") else WEIGHTS_NAME)).write_bytes(b"mine")
        os.utime(folder, (stale, stale))
    make_tiny_bundle(bundle)
    assert all(folder.is_dir() for folder in mine)
