"""`sportsdet predict` on onnxruntime (the default) and torch (on request), same answers.

Uses the shared tiny seed-cnn bundle (conftest) exported with `sportsdet.export`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import CLASSES, make_image, make_tiny_bundle
from typer.testing import CliRunner

pytest.importorskip("torch", reason="exporting the test model needs the [train] install")

from sportsdet import files as files_module  # noqa: E402
from sportsdet.cli import app  # noqa: E402
from sportsdet.export import export_bundle  # noqa: E402
from sportsdet.predict import Predictor, expand_inputs  # noqa: E402
from sportsdet.runtime import OnnxBackend, TorchBackend  # noqa: E402

runner = CliRunner()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle = make_tiny_bundle(tmp_path_factory.mktemp("model") / "bundle")
    export_bundle(bundle, int8=True, max_int8_drop=100.0)  # no data recorded: synthetic parity check
    return bundle


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    root.mkdir()
    for i, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200), (120, 120, 20)]):
        make_image(colour, seed=i, size=48 + 8 * i).save(root / f"{i}.jpg")
    return root


def test_onnx_is_the_default_and_agrees_with_torch(exported: Path, photos: Path) -> None:
    onnx = Predictor(exported, batch_size=3)
    torch = Predictor(exported, batch_size=3, backend="torch")
    assert isinstance(onnx.backend, OnnxBackend) and isinstance(torch.backend, TorchBackend)
    a, b = list(onnx.predict_sources([str(photos)])), list(torch.predict_sources([str(photos)]))
    assert [r.input for r in a] == [r.input for r in b] and len(a) == 4
    for x, y in zip(a, b, strict=True):
        assert x.label == y.label
        assert [s for _, s in x.top_k] == pytest.approx([s for _, s in y.top_k], abs=1e-5)


def test_onnx_file_alone_and_int8(exported: Path, photos: Path) -> None:
    alone = Predictor(exported / "model.onnx", top_k=2)
    assert alone.bundle is None and alone.labels == CLASSES
    (result,) = alone.predict_sources([str(photos / "0.jpg")])
    assert result.ok and len(result.top_k) == 2
    int8 = Predictor(exported, int8=True)
    assert int8.backend.path.name == "model.int8.onnx"
    (quantised,) = int8.predict_sources([str(photos / "0.jpg")])
    assert quantised.ok and quantised.label in CLASSES
    assert int8.backend.info.quantization["format"] == "qdq"


def test_a_bundle_with_only_int8_onnx_uses_it_by_default(exported: Path, tmp_path: Path) -> None:
    """The built-in bundle ships model.int8.onnx alone (size); auto must pick it, not torch."""
    import shutil

    only_int8 = tmp_path / "only-int8"
    shutil.copytree(exported, only_int8)
    (only_int8 / "model.onnx").unlink()
    predictor = Predictor(only_int8)
    assert predictor.backend.path.name == "model.int8.onnx"


def test_cli_backends_and_info_on_an_onnx_file(exported: Path, photos: Path) -> None:
    outputs = {}
    for backend in ("onnx", "torch"):
        result = runner.invoke(
            app, ["predict", str(photos), "--model", str(exported), "--backend", backend, "--format", "jsonl"]
        )
        assert result.exit_code == 0, result.output
        outputs[backend] = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["label"] for r in outputs["onnx"]] == [r["label"] for r in outputs["torch"]]
    info = runner.invoke(app, ["info", str(exported / "model.onnx"), "--json"])
    assert info.exit_code == 0, info.output
    data = json.loads(info.stdout)
    assert data["labels"] == CLASSES and data["model"]["name"] == "seed-cnn"
    # The table too: a plain export records its quantization as "none" (a traceback before).
    table = runner.invoke(app, ["info", str(exported / "model.onnx")], env={"COLUMNS": "200"})
    assert table.exit_code == 0, table.output
    assert "seed-cnn" in table.stdout and "quantization" not in table.stdout


def test_int8_with_a_float_onnx_file_is_an_error_not_ignored(exported: Path, photos: Path) -> None:
    def run(name: str):
        return runner.invoke(app, ["predict", str(photos), "--model", str(exported / name), "--int8"])

    result = run("model.onnx")
    assert result.exit_code != 0 and "but this is a float ONNX file" in str(result.exception)
    assert run("model.int8.onnx").exit_code == 0


def test_missing_onnx_is_a_clear_cli_error(tmp_path: Path, photos: Path) -> None:
    bundle = make_tiny_bundle(tmp_path / "plain")
    result = runner.invoke(app, ["predict", str(photos), "--model", str(bundle), "--backend", "onnx"])
    assert result.exit_code != 0
    assert "sportsdet export" in str(result.exception) and str(bundle) in str(result.exception)


def test_huge_folders_are_read_in_bounded_sorted_chunks(tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(7):
        (folder / f"{i}.jpg").write_bytes(b"x")
    monkeypatch.setattr(files_module, "WALK_CHUNK", 3)
    names = [Path(item.name).name for item in expand_inputs([str(folder)])]
    assert sorted(names) == sorted(f"{i}.jpg" for i in range(7))
    # Each run of 3 comes sorted; never more than 3 entries are held.
    for start in range(0, 7, 3):
        assert names[start : start + 3] == sorted(names[start : start + 3])


def test_results_stream_before_the_input_ends(exported: Path, photos: Path, tmp_path: Path) -> None:
    predictor = Predictor(exported, batch_size=2)
    pulled = 0
    data = (photos / "0.jpg").read_bytes()
    for i in range(1000):  # 1000 photos: one photo named 1000 times is labelled once
        (tmp_path / f"{i}.jpg").write_bytes(data)

    def sources():  # a long input: the first answer must come long before it is all read
        nonlocal pulled
        for i in range(1000):
            pulled += 1
            yield str(tmp_path / f"{i}.jpg")

    stream = predictor.predict_sources(sources())
    first = next(stream)
    assert first.ok and pulled <= 20
    stream.close()
    assert np.isfinite(first.score)
