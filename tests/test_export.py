"""ONNX export of a bundle: parity with PyTorch, metadata inside the file, INT8, failure modes.

A tiny registered CNN (a few thousand weights, 32 px) keeps each export under a second or two.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch", reason="export needs the [train] install (torch)")

from sportsdet import export as export_module  # noqa: E402
from sportsdet.bundle import load_bundle, save_bundle  # noqa: E402
from sportsdet.errors import SportsdetError  # noqa: E402
from sportsdet.export import export_bundle  # noqa: E402
from sportsdet.models import REGISTRY, ModelSpec  # noqa: E402
from sportsdet.preprocess import Preprocessing, load_and_preprocess  # noqa: E402
from sportsdet.runtime import OnnxBackend, load_backend  # noqa: E402

LABELS = ["air hockey", "bowling", "curling"]  # spaces on purpose, like sports100
SPEC = Preprocessing(input_size=32, resize="crop", mean=(0.5, 0.4, 0.3), std=(0.25, 0.25, 0.25))
TINY = "tiny-export-test"


def build_tiny(num_classes: int, pretrained: bool = False, **config) -> torch.nn.Module:
    """Conv-BN-ReLU6 twice, pooled, linear: the same op kinds as the real CNNs."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1),
        torch.nn.BatchNorm2d(8),
        torch.nn.ReLU6(),
        torch.nn.Conv2d(8, 16, 3, stride=2, padding=1),
        torch.nn.BatchNorm2d(16),
        torch.nn.ReLU6(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, num_classes),
    )


@pytest.fixture()
def tiny_spec(monkeypatch) -> ModelSpec:
    spec = ModelSpec(
        name=TINY,
        description="tiny test CNN",
        builder=f"{__name__}:build_tiny",
        preprocessing=SPEC,
        output_key="8.weight",
    )
    monkeypatch.setitem(REGISTRY, TINY, spec)
    return spec


def write_photos(root: Path, split: str, per_class: int, seed: int) -> list[list[str]]:
    """Noisy photos whose dominant colour follows the class (so a model can be told apart)."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, label in enumerate(LABELS):
        folder = root / split / label
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 90, size=(40, 52, 3))
            pixels[..., k] += 150
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.jpg", quality=90)
            rows.append([f"{split}/{label}/{i}.jpg", label])
    return rows


@pytest.fixture()
def run_folder(tmp_path: Path, tiny_spec: ModelSpec) -> Path:
    """runs/NAME layout: split.json beside model/ (docs/ARCHITECTURE.md), with real image files."""
    data = tmp_path / "data"
    splits = {"train": write_photos(data, "train", 6, 0), "test": write_photos(data, "test", 4, 1)}
    run = tmp_path / "run"
    run.mkdir()
    manifest = {"format": "sportsdet-split/1", "root": str(data), "strategy": "official", "seed": 0,
                "classes": LABELS, "splits": splits}
    (run / "split.json").write_text(json.dumps(manifest))
    torch.manual_seed(0)
    model = build_tiny(len(LABELS))
    # A trained-looking head: class k responds to colour channel k of the pooled features.
    with torch.no_grad():
        for module in model:
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    save_bundle(
        run / "model", state_dict=model.state_dict(), model_name=TINY, model_config={}, labels=LABELS,
        preprocessing=SPEC, output_key="8.weight",
    )
    return run


def test_export_round_trip_matches_torch(run_folder: Path) -> None:
    bundle_dir = run_folder / "model"
    report = export_bundle(bundle_dir)
    onnx_file = bundle_dir / "model.onnx"
    assert Path(report.path) == onnx_file and onnx_file.is_file()
    # Parity ran on the training images recorded in split.json, not on synthetic ones.
    assert report.parity.data != "synthetic" and report.parity.n == 18 and report.parity.ok
    assert report.parity.max_prob_diff < 1e-4 and report.notes == []

    backend = OnnxBackend(onnx_file)  # the .onnx alone: labels and preprocessing come from it
    assert backend.labels == LABELS and backend.preprocessing == SPEC
    assert backend.info.model["name"] == TINY
    assert backend.info.weights_sha256 == load_bundle(bundle_dir).manifest["weights"]["sha256"]
    assert torch.__version__.startswith(backend.info.versions["torch"])

    photos = sorted((run_folder.parent / "data" / "test").rglob("*.jpg"))
    batch = np.stack([load_and_preprocess(p, SPEC) for p in photos])
    model = load_bundle(bundle_dir).build_torch_model()
    with torch.inference_mode():
        expected = torch.softmax(model(torch.from_numpy(batch)), dim=1).numpy()
    got = backend.predict_proba(batch)  # batch of 12: the batch axis is dynamic
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert (got.argmax(1) == expected.argmax(1)).all()
    # auto picks the ONNX file inside the bundle; torch on request gives the same answer.
    assert isinstance(load_backend(bundle_dir), OnnxBackend)
    torch_backend = load_backend(bundle_dir, backend="torch")
    np.testing.assert_allclose(torch_backend.predict_proba(batch[:3]), expected[:3], atol=1e-6)


def test_a_graph_that_ranks_alike_but_scores_otherwise_fails_parity(run_folder: Path, monkeypatch) -> None:
    # Same top class on every photo, other probabilities (logits x3): the scores, the abstain
    # rule and the calibration would all be off, so it is no match either.
    import torch

    real_export = export_module.export_torch_model

    class Sharper(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x) * 3

    def export_sharper(model, path, input_size, **kwargs):
        return real_export(Sharper(model), path, input_size, **kwargs)

    monkeypatch.setattr(export_module, "export_torch_model", export_sharper)
    with pytest.raises(SportsdetError, match="does not match PyTorch") as info:
        export_bundle(run_folder / "model")
    assert "top-1 agreement 100.0%" in str(info.value)  # failed on the probabilities alone


def test_failed_parity_leaves_nothing_and_keeps_the_old_file(run_folder: Path, monkeypatch) -> None:
    bundle_dir = run_folder / "model"
    old = bundle_dir / "model.onnx"
    old.write_bytes(b"previous export")
    real_export = export_module.export_torch_model

    def export_wrong_model(model, path, input_size, **kwargs):
        broken = build_tiny(len(LABELS)).eval()  # other weights: the graph disagrees with PyTorch
        return real_export(broken, path, input_size, **kwargs)

    monkeypatch.setattr(export_module, "export_torch_model", export_wrong_model)
    with pytest.raises(SportsdetError) as info:
        export_bundle(bundle_dir)
    assert "does not match PyTorch" in str(info.value) and "nothing was written" in str(info.value)
    assert old.read_bytes() == b"previous export"
    left = sorted(p.name for p in bundle_dir.iterdir())
    assert left == ["bundle.json", "model.onnx", "weights.safetensors"]


def test_int8_export_reports_heldout_accuracy(run_folder: Path) -> None:
    bundle_dir = run_folder / "model"
    report = export_bundle(bundle_dir, int8=True, max_int8_drop=100.0, calibration_images=12)
    q = report.int8
    assert q is not None and Path(q.path) == bundle_dir / "model.int8.onnx"
    assert q.n == 12 and q.calibration_images == 12  # the 12 test photos of split.json
    assert 0.0 <= q.fp32_accuracy <= 1.0 and 0.0 <= q.int8_accuracy <= 1.0
    assert q.accuracy_change_points == pytest.approx(100 * (q.int8_accuracy - q.fp32_accuracy))
    backend = load_backend(bundle_dir, int8=True)
    assert backend.labels == LABELS and backend.info.quantization["format"] == "qdq"
    assert "QuantizeLinear" in {node.op_type for node in __import__("onnx").load(q.path).graph.node}


def test_int8_export_leaves_out_photos_the_model_has_seen_as_evaluate_does(run_folder: Path) -> None:
    # Its accuracy was on 210 photos where evaluate scored 209 (a test photo copying a training one):
    # two numbers alike, of other sets.
    from sportsdet.seen_photos import SEEN_NAME, seen_photos_json

    bundle_dir = run_folder / "model"
    split = json.loads((run_folder / "split.json").read_text())
    root = Path(split["root"])
    first_test = root / split["splits"]["test"][0][0]
    (bundle_dir / SEEN_NAME).write_bytes(seen_photos_json({"train": [first_test]}))
    q = export_bundle(bundle_dir, int8=True, max_int8_drop=100.0, calibration_images=12).int8
    assert q.n == 11
    assert q.heldout == "11 held-out images (1 it was trained or validated on left out, as evaluate does)"
    # Every one seen: measured on them all the same, but not called held-out.
    tests = [root / rel for rel, _ in split["splits"]["test"]]
    (bundle_dir / SEEN_NAME).write_bytes(seen_photos_json({"train": tests}))
    q = export_bundle(bundle_dir, int8=True, max_int8_drop=100.0, calibration_images=12).int8
    assert q.heldout == "12 images, every one of them a photo it was trained or validated on"


def test_int8_export_says_what_the_abstain_rule_does_on_its_scores(run_folder: Path, monkeypatch) -> None:
    # The rule, fitted on float scores, went into the INT8 file unchecked (a tiny model: 5 of 78
    # photos uncertain in float, 16 in INT8).
    from sportsdet.abstain import Abstain
    from sportsdet.abstain_bundle import store_abstain

    bundle_dir = run_folder / "model"
    assert export_bundle(bundle_dir, int8=True, max_int8_drop=100.0).int8.abstain_answered is None  # no rule
    for threshold, answered in ((0.0, 12), (1.0, 0)):  # every photo answered; none
        rule = Abstain(method="max_prob", threshold=threshold, coverage=0.9, fitted_on="x", valid_images=70)
        store_abstain(bundle_dir, rule)
        q = export_bundle(bundle_dir, int8=True, max_int8_drop=100.0).int8
        assert q.abstain_answered == (answered, answered) and q.abstain_changed == 0
    # Decisions that move are said in the export's notes.
    real = export_module._int8_report

    def moved(*args, **kwargs):
        report = real(*args, **kwargs)
        report.abstain_answered, report.abstain_changed = (12, 7), 5
        return report

    monkeypatch.setattr(export_module, "_int8_report", moved)
    notes = export_bundle(bundle_dir, int8=True, max_int8_drop=100.0).notes
    assert any("decides 5 of 12 held-out photos otherwise in INT8" in note for note in notes)


def test_the_cli_says_how_the_int8_model_is_used(run_folder: Path) -> None:
    # predict and serve keep the float model unless asked: the export did not say so.
    from typer.testing import CliRunner

    from sportsdet.cli import app

    command = ["export", str(run_folder), "--int8", "--max-int8-drop", "100"]
    result = CliRunner().invoke(app, command, env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "predict, serve and evaluate use it with --int8" in " ".join(result.stdout.split())
    # Which photos the parity was checked on: "42 images (split.json (..., held-out: test))" read
    # as the held-out ones.
    assert f"parity vs PyTorch on 18 images (training photos of {run_folder / 'split.json'})" in result.stdout


def test_int8_folds_relu6_into_the_quantised_convolution(run_folder: Path, monkeypatch) -> None:
    """A ReLU6 after a quantised convolution must not stay in float between a Dequantize and a
    Quantize (onnxruntime cannot fuse that; folded, the built-in INT8 model runs 1.5-1.7x faster);
    the one after the float stem conv stays, reading float."""
    import onnx

    monkeypatch.setattr(export_module, "FLOAT_CONVS", 1)
    report = export_bundle(run_folder / "model", int8=True, max_int8_drop=100.0, calibration_images=12)
    graph = onnx.load(report.int8.path).graph
    producer = {out: node.op_type for node in graph.node for out in node.output}
    clip_inputs = [producer.get(node.input[0]) for node in graph.node if node.op_type == "Clip"]
    assert clip_inputs == ["Conv"]  # the float stem's ReLU6 only
    assert [node.op_type for node in graph.node].count("QLinearConv") == 0  # QDQ form on disk
    conv_inputs = [producer.get(node.input[0]) for node in graph.node if node.op_type == "Conv"]
    assert sorted(conv_inputs, key=str) == ["DequantizeLinear", None]  # quantised conv, float stem


@pytest.fixture()
def int8_two_points_worse(monkeypatch) -> None:
    """The INT8 model scores 2 accuracy points under the float one (measured otherwise as usual)."""
    real_report = export_module._int8_report

    def worse_by_two_points(*args, **kwargs):
        report = real_report(*args, **kwargs)
        report.int8_accuracy = report.fp32_accuracy - 0.02
        return report

    monkeypatch.setattr(export_module, "_int8_report", worse_by_two_points)


def test_int8_accuracy_guard_writes_nothing(run_folder: Path, int8_two_points_worse) -> None:
    bundle_dir = run_folder / "model"
    with pytest.raises(SportsdetError, match=r"INT8 loses 2.00 accuracy points") as refused:
        export_bundle(bundle_dir, int8=True, max_int8_drop=1.0, calibration_images=12)
    # A held-out set so small that one photo is more than the allowed drop is said to be so.
    n = int(re.search(r"On (\d+) images one photo is", str(refused.value)).group(1))
    assert f"one photo is {100 / n:.2f} points" in str(refused.value) and 100 / n > 1.0
    assert sorted(p.name for p in bundle_dir.iterdir()) == ["bundle.json", "weights.safetensors"]
    report = export_bundle(bundle_dir, int8=True, max_int8_drop=2.5, calibration_images=12)
    assert report.int8.accuracy_change_points == pytest.approx(-2.0)
    assert (bundle_dir / "model.onnx").is_file() and (bundle_dir / "model.int8.onnx").is_file()


def test_the_cli_applies_max_int8_drop(run_folder: Path, int8_two_points_worse, run_cli, capsys) -> None:
    command = ["export", str(run_folder), "--int8"]
    assert run_cli(*command, "--max-int8-drop", "1") == 2
    assert "INT8 loses 2.00 accuracy points" in " ".join(capsys.readouterr().err.split())
    assert not (run_folder / "model" / "model.int8.onnx").exists()
    assert run_cli(*command, "--max-int8-drop", "2.5") == 0
    assert (run_folder / "model" / "model.int8.onnx").is_file()


def test_export_without_data_uses_synthetic_images_and_says_so(tmp_path: Path, tiny_spec: ModelSpec) -> None:
    save_bundle(
        tmp_path / "lonely", state_dict=build_tiny(len(LABELS)).state_dict(), model_name=TINY,
        model_config={}, labels=LABELS, preprocessing=SPEC, output_key="8.weight",
    )
    out = tmp_path / "elsewhere" / "m.onnx"
    report = export_bundle(tmp_path / "lonely", out=out)
    assert out.is_file() and report.parity.data == "synthetic" and report.parity.ok
    assert any("synthetic" in note for note in report.notes)
    # INT8 calibrated on made-up pictures says so in the file (info read "calibration on 32 photos").
    from sportsdet.cli.predict import _summary_rows, onnx_info

    export_bundle(tmp_path / "lonely", out=out, int8=True, max_int8_drop=100)
    rows = dict(_summary_rows(onnx_info(out.with_name("m.int8.onnx"))))
    assert "minmax calibration on 32 synthetic images" in rows["quantization"]


def test_export_of_a_run_whose_photos_moved_says_where_it_looked(run_folder: Path, tmp_path: Path) -> None:
    # "bundle records no split/data root": it does; the folder has moved.
    (tmp_path / "data").rename(tmp_path / "moved")
    report = export_bundle(run_folder, out=tmp_path / "m.onnx")
    assert report.parity.data == "synthetic"
    assert any(f"the run's photos are not at {tmp_path / 'data'} any more" in note for note in report.notes)


def test_calibration_data_folder_is_used(run_folder: Path, tmp_path: Path) -> None:
    (run_folder / "split.json").unlink()
    report = export_bundle(run_folder / "model", calibration_data=tmp_path / "data" / "train")
    assert "--calibration-data" in report.parity.data and report.parity.n == 18
    with pytest.raises(SportsdetError, match="calibration data folder not found"):
        export_bundle(run_folder / "model", calibration_data=tmp_path / "nope")


def test_calibration_data_keeps_the_held_out_accuracy_check(run_folder, tmp_path, int8_two_points_worse):
    # --calibration-data replaced the bundle's split entirely: no held-out photos, so
    # --max-int8-drop was never checked ("none found (agreement with fp32 ...)").
    with pytest.raises(SportsdetError, match=r"INT8 loses 2.00 accuracy points"):
        export_bundle(run_folder / "model", int8=True, max_int8_drop=1.0, calibration_images=12,
                      calibration_data=tmp_path / "data" / "train")  # fmt: skip
    report = export_bundle(run_folder / "model", int8=True, max_int8_drop=2.5, calibration_images=12,
                           calibration_data=tmp_path / "data" / "train")  # fmt: skip
    assert report.int8.heldout == "12 held-out images" and "--calibration-data" in report.parity.data
    from sportsdet.bundle import load_bundle
    from sportsdet.export import find_export_data

    data = find_export_data(load_bundle(run_folder), calibration_data=tmp_path / "data" / "train")
    recorded = f"{run_folder / 'split.json'} ({tmp_path / 'data'}, held-out: test)"
    assert data.origin.endswith(f"; held-out: {recorded}")
    # The data root itself given: its test photos are the held-out ones, so they calibrate nothing.
    whole = find_export_data(load_bundle(run_folder), calibration_data=tmp_path / "data", int8=True)
    assert len(whole.train) == 18 and len(whole.heldout) == 12
    assert not {p for p, _ in whole.train} & {p for p, _ in whole.heldout}
    assert whole.train_source.endswith("(its 12 held-out ones left out)")
    with pytest.raises(SportsdetError, match="every image here is a held-out one the INT8 check scores"):
        find_export_data(load_bundle(run_folder), calibration_data=tmp_path / "data" / "test", int8=True)
    # A float export has no INT8 check: those photos serve its parity check as well as any.
    floated = export_bundle(run_folder / "model", calibration_data=tmp_path / "data" / "test",
                                     out=tmp_path / "float.onnx")  # fmt: skip
    assert floated.parity.n == 12 and floated.int8 is None


def test_what_a_killed_int8_export_left_in_the_temp_folder_goes(run_folder, tmp_path, monkeypatch):
    import os
    import tempfile
    import time

    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    left = temp / "sportsdet-quant-k1ll3d"  # kill -9 mid-quantisation: a model-sized prepared.onnx
    left.mkdir()
    (left / "prepared.onnx").write_bytes(b"x" * 1000)
    os.utime(left, (time.time() - 7200, time.time() - 7200))
    export_bundle(run_folder, int8=True, max_int8_drop=100.0, calibration_images=4)
    assert not left.exists() and not list(temp.glob("sportsdet-quant-*"))  # its own went too


def test_an_older_bundle_without_seen_photos_leaves_its_runs_photos_out_as_evaluate_does(run_folder: Path,
                                                                                         tmp_path: Path):
    # evaluate falls back on the run's split for a bundle made before seen_photos.json; export's INT8
    # check did not, and measured the model's own training photos as held out.
    assert not (run_folder / "model" / "seen_photos.json").exists()
    report = export_bundle(run_folder, int8=True, max_int8_drop=100.0, calibration_images=4,
                           eval_data=tmp_path / "data" / "train")  # fmt: skip
    assert report.int8.heldout.endswith("images, every one of them a photo it was trained or validated on")


def test_eval_data_folders_named_like_no_label_are_said_not_dropped_silently(run_folder: Path,
                                                                           tmp_path: Path) -> None:
    # evaluate refuses class folders the model does not know; export's INT8 check left them out
    # without a word, so a misspelt folder shrank the check unseen.
    heldout = tmp_path / "heldout"
    shutil.copytree(tmp_path / "data" / "test", heldout)
    (heldout / LABELS[0]).rename(heldout / (LABELS[0] + "x"))
    report = export_bundle(run_folder, int8=True, max_int8_drop=100.0, calibration_images=4,
                           eval_data=heldout)  # fmt: skip
    assert report.int8.n == 4 * (len(LABELS) - 1)
    said = [note for note in report.notes if note.startswith("--eval-data:")]
    assert len(said) == 1 and "4 photo(s)" in said[0]
    assert f"'{LABELS[0]}x' (did you mean '{LABELS[0]}'?): 4" in said[0]
    # A misspelt class with days inside it, and a loose photo: named by where they are.
    (heldout / f"{LABELS[0]}x").rename(heldout / "day1")
    (heldout / "curlng").mkdir()
    (heldout / "day1").rename(heldout / "curlng" / "day1")
    shutil.copy(next((heldout / LABELS[1]).iterdir()), heldout / "stray.jpg")
    report = export_bundle(run_folder, int8=True, max_int8_drop=100.0, calibration_images=4,
                           eval_data=heldout)  # fmt: skip
    said = next(note for note in report.notes if note.startswith("--eval-data:"))
    assert "'curlng/day1' (did you mean 'curling'?): 4" in said
    assert "photos outside any class folder: 1" in said
    # Without --int8 nothing is scored on it: said too.
    plain = export_bundle(run_folder, eval_data=heldout)
    assert any("add --int8" in note for note in plain.notes) and plain.int8 is None


def test_cli_export_bad_input_is_one_line_error(tmp_path: Path) -> None:
    cli = [sys.executable, "-c", "from sportsdet.cli import main; main()", "export"]
    env = {**os.environ, "COLUMNS": "400"}  # one line, however long the temp path is
    missing = subprocess.run(cli + [str(tmp_path / "nothing")], capture_output=True, text=True, env=env)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert f"{tmp_path / 'nothing'}: no such model bundle" in missing.stderr
    fmt = subprocess.run(cli + [str(tmp_path), "--format", "tflite"], capture_output=True, text=True, env=env)
    assert fmt.returncode == 2 and "unsupported export format" in fmt.stderr


def test_an_output_that_cannot_be_written_is_said_before_exporting(run_folder: Path, tmp_path: Path) -> None:
    # It failed after the whole export, naming the temp file (".x.onnx.tmp-...: Is a directory"),
    # and with --int8 an INT8 target that was a folder came after the fp32 file was replaced.
    from sportsdet.export import export_bundle

    (tmp_path / "dir.onnx" / "model.onnx").mkdir(parents=True)
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "e.int8.onnx").mkdir()
    for out, int8, message in [
        (tmp_path / "dir.onnx", False, r"dir.onnx/model.onnx: is a folder; give the ONNX file's name"),
        (tmp_path / "a.jpg" / "x.onnx", False, r"a.jpg is a file, not a folder"),
        (tmp_path / "e.onnx", True, r"e.int8.onnx: is a folder"),
    ]:
        with pytest.raises(SportsdetError, match=message):
            export_bundle(run_folder / "model", out=out, int8=int8)
    assert not (tmp_path / "e.onnx").exists()
    for drop in (-1.0, float("nan")):  # "loses -0.00 points (allowed -1.00)", or no guard at all
        with pytest.raises(SportsdetError, match="--max-int8-drop .*: accuracy points, from 0 to 100"):
            export_bundle(run_folder / "model", out=tmp_path / "ok.onnx", int8=True, max_int8_drop=drop)


def test_a_folder_given_as_out_gets_model_onnx_inside(run_folder: Path, tmp_path: Path) -> None:
    # It was refused as "the output file name must end in .onnx"; report -o DIR and cp write inside.
    from sportsdet.export import export_bundle

    (tmp_path / "models").mkdir()
    report = export_bundle(run_folder / "model", out=tmp_path / "models", int8=True, max_int8_drop=100.0,
                           calibration_images=4)  # fmt: skip
    assert Path(report.path) == tmp_path / "models" / "model.onnx"
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["model.int8.onnx", "model.onnx"]
    # A name ending in / is a folder to make; the run's own folder means its bundle's model.onnx.
    assert Path(export_bundle(run_folder, out=f"{tmp_path / 'new'}/").path) == tmp_path / "new" / "model.onnx"
    assert Path(export_bundle(run_folder, out=run_folder).path) == run_folder / "model" / "model.onnx"
    # Another bundle's folder is refused: its model.onnx would not match its weights any more.
    other = tmp_path / "other"
    shutil.copytree(run_folder / "model", other)
    with pytest.raises(SportsdetError, match=r"holds another model bundle .* give a file name"):
        export_bundle(run_folder, out=other)


def test_export_through_a_symbolic_link_writes_its_target(run_folder: Path, tmp_path: Path) -> None:
    # The final rename replaced the link with the file; the shared folder it pointed at kept the
    # old model.
    from sportsdet.export import export_bundle

    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "current.onnx").write_bytes(b"old model")
    link = tmp_path / "model.onnx"
    link.symlink_to(shared / "current.onnx")
    export_bundle(run_folder / "model", out=link, parity_images=2)
    assert link.is_symlink()
    assert (shared / "current.onnx").read_bytes()[:9] != b"old model"
    assert sorted(p.name for p in shared.iterdir()) == ["current.onnx"]  # no temporary file left
    pipe = tmp_path / "pipe.onnx"
    os.mkfifo(pipe)
    with pytest.raises(SportsdetError, match="pipe.onnx: is a device, pipe, socket or stream"):
        export_bundle(run_folder / "model", out=pipe, parity_images=2)


def test_a_read_only_place_is_named_by_the_file_asked_for(run_folder: Path, tmp_path: Path, monkeypatch):
    # A read-only file system (root writes anywhere else): the error named a hidden temp file,
    # ".x.onnx.tmp-k9_a13fu.onnx: Read-only file system", and came after the export's work.
    import errno
    import os

    import sportsdet.export as export

    real_access = os.access
    read_only = tmp_path / "ro"
    read_only.mkdir()
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != read_only and real_access(path, mode))
    with pytest.raises(SportsdetError, match=r"ro/x.onnx: cannot write in .*ro; choose another --out"):
        export.export_bundle(run_folder / "model", out=read_only / "x.onnx")

    def refused(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(export.tempfile, "mkstemp", refused)
    said = r"late.onnx: cannot write here \(Read-only file system\); choose another --out$"
    with pytest.raises(SportsdetError, match=said):
        export._atomic_target(tmp_path / "late.onnx")


def test_held_out_photos_are_told_by_folders_below_the_data_root(tmp_path: Path) -> None:
    # A root under a folder named "test" made every photo (training ones too) "held out".
    from types import SimpleNamespace

    from sportsdet.export import find_export_data

    root = tmp_path / "test" / "data"
    for split in ("train", "test"):
        (root / split / "polo").mkdir(parents=True)
        Image.new("RGB", (40, 40), (200, 30, 30)).save(root / split / "polo" / "a.jpg")
    bundle = SimpleNamespace(
        path=tmp_path / "nowhere", labels=["polo"], data={"root": str(root)},
        class_names=lambda: {"polo": "polo"},
    )
    data = find_export_data(bundle)
    assert [p.relative_to(root).parts[0] for p, _ in data.train] == ["train"]
    assert [p.relative_to(root).parts[0] for p, _ in data.heldout] == ["test"]
    assert data.train_source == f"training photos of {root}"
    # A flat folder has no train/: every photo is used for the parity check, and said so (it was
    # called "training photos", test and validation ones among them).
    import shutil

    shutil.rmtree(root / "train")
    flat = find_export_data(bundle)
    assert flat.train_source == f"all photos of {root} (no train/ folder)" and len(flat.train) == 1


def test_a_run_folder_and_builtin_are_exported_like_predict_takes_them(run_folder: Path, tmp_path: Path):
    # predict, info and serve took a run folder or `builtin`; export said "bundle.json is missing".
    report = export_bundle(run_folder, int8=True, max_int8_drop=100.0, calibration_images=12)
    assert Path(report.path) == run_folder / "model" / "model.onnx"
    # A bundle that predicts with its INT8 file alone (as the built-in model ships): a float
    # export is told it will score a little differently.
    (run_folder / "model" / "model.onnx").unlink()
    notes = export_bundle(run_folder, out=tmp_path / "float.onnx").notes
    assert any("predicts with its model.int8.onnx" in note for note in notes)
    # The built-in model lives in the installed package: never written into it.
    with pytest.raises(SportsdetError, match="give --out FILE.onnx"):
        export_bundle("builtin")
    from sportsdet.bundle import builtin_bundle_path

    for into in (builtin_bundle_path(), builtin_bundle_path() / "model.onnx"):  # by --out too
        with pytest.raises(SportsdetError, match="lives inside the installed package"):
            export_bundle("builtin", out=into)


def test_ctrl_c_while_onnxruntime_is_imported_is_an_interrupt(run_folder: Path, run_cli, capsys, monkeypatch):
    # Ctrl-C landing inside `import onnxruntime` surfaced as "ImportError: initialization failed"
    # chained from the KeyboardInterrupt: a traceback and exit code 1.
    import sportsdet.export as export_module

    def importing(*args, **kwargs):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise ImportError("initialization failed") from None  # as pybind11 raises it: a context

    monkeypatch.setattr(export_module, "export_bundle", importing)
    assert run_cli("export", str(run_folder)) == 130
    assert "interrupted" in capsys.readouterr().err
    def broken(*args, **kwargs):
        raise ImportError("x")

    monkeypatch.setattr(export_module, "export_bundle", broken)
    with pytest.raises(ImportError):  # an ImportError of its own stays a bug's traceback
        run_cli("export", str(run_folder))


def test_exporting_into_a_run_another_process_is_writing_is_refused(run_folder: Path, tmp_path: Path) -> None:
    # export took no lock: `train --force` into the run meanwhile swept its temporary file aside.
    from conftest import held_by_another_process
    from typer.testing import CliRunner

    from sportsdet.cli import app

    with held_by_another_process(run_folder) as pid:
        result = CliRunner().invoke(app, ["export", str(run_folder)])
        assert isinstance(result.exception, SportsdetError)
        assert f"another sportsdet process (pid {pid}) is writing this run" in str(result.exception)
        assert not (run_folder / "model" / "model.onnx").exists()
        elsewhere = CliRunner().invoke(app, ["export", str(run_folder), "--out", str(tmp_path / "x.onnx")])
        assert elsewhere.exit_code == 0, elsewhere.output  # written outside the run: not held


def test_bad_export_arguments_are_refused_before_any_work(run_folder: Path) -> None:
    # quant_format="bogus" was a KeyError after the float export had run; parity_images=0 said the
    # export "does not match PyTorch on 0 images" (please report); -3 a ValueError from random.
    from sportsdet.export import export_bundle

    for arguments, said in (
        ({"int8": True, "quant_format": "bogus"}, r"unknown quant_format 'bogus'; use qdq or qoperator"),
        ({"parity_images": 0}, r"parity_images must be a whole number of at least 1, got 0"),
        ({"parity_images": -3}, r"parity_images must be a whole number of at least 1, got -3"),
        ({"calibration_images": 2.5}, r"calibration_images must be a whole number of at least 1, got 2.5"),
    ):
        with pytest.raises(SportsdetError, match=said):
            export_bundle(run_folder, **arguments)
    assert not list((run_folder / "model").glob("*.onnx")) and not list((run_folder / "model").glob(".*"))
