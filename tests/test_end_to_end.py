"""The whole path through the CLI: train seed-cnn for 2 epochs, evaluate, predict, reload, compare."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import CLASSES, make_image_tree
from typer.testing import CliRunner

from sportsdet.cli import app

runner = CliRunner()
ENV = {"COLUMNS": "200"}


def test_train_evaluate_predict_reload(tmp_path: Path) -> None:
    data = make_image_tree(tmp_path / "data", per_class=8)
    run = tmp_path / "runs" / "tiny"
    trained = runner.invoke(
        app,
        [
            "train", str(data), "--out", str(run), "--model", "seed-cnn", "--epochs", "2",
            "--split", "random:0.25", "--seed", "0", "--batch-size", "8", "--set", "input_size=32",
        ],
        env=ENV,
    )  # fmt: skip
    assert trained.exit_code == 0, trained.output
    assert (run / "model" / "bundle.json").is_file() and (run / "split.json").is_file()

    # evaluate on the training tree -> the run's saved test split, written to RUN/eval
    evaluated = runner.invoke(app, ["evaluate", str(run), str(data)], env=ENV)
    assert evaluated.exit_code == 0, evaluated.output
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    split = json.loads((run / "split.json").read_text())
    test_files = {str(data.resolve() / rel) for rel, _ in split["splits"]["test"]}
    assert metrics["source"] == "split-manifest" and metrics["n"] == len(test_files) > 0
    assert metrics["labels"] == CLASSES
    eval_probs = np.load(run / "eval" / "probs.npy", allow_pickle=False)
    with open(run / "eval" / "predictions.csv", encoding="utf-8") as handle:
        eval_paths = [line.split(",")[0] for line in handle.read().splitlines()[1:]]
    assert set(eval_paths) == test_files

    # predict through the CLI on the whole tree, with the run folder as --model
    predicted = runner.invoke(
        app, ["predict", str(data), "--model", str(run), "--format", "jsonl", "-k", "3"]
    )
    assert predicted.exit_code == 0, predicted.output
    records = [json.loads(line) for line in predicted.stdout.splitlines()]
    assert len(records) == 24 and all(r["error"] is None for r in records)
    by_input = {r["input"]: r for r in records}

    # a fresh process-like reload of the bundle gives the same answers as the CLI and evaluate
    from sportsdet.predict import Predictor

    reloaded = Predictor(run / "model", top_k=3)
    for result in reloaded.predict_sources([str(data)]):
        cli = by_input[result.input]
        assert cli["label"] == result.label
        assert cli["score"] == pytest.approx(result.score, abs=1e-6)
        assert [t["label"] for t in cli["top_k"]] == [label for label, _ in result.top_k]
    for path, row in zip(eval_paths, eval_probs, strict=True):
        (again,) = reloaded.predict_sources([path])
        assert again.label == CLASSES[int(row.argmax())]
        assert again.score == pytest.approx(float(row.max()), abs=1e-5)

    info = runner.invoke(app, ["info", str(run), "--json"])
    assert info.exit_code == 0, info.output
    assert json.loads(info.stdout)["labels"] == CLASSES


def test_version_flag() -> None:
    from typer.testing import CliRunner

    from sportsdet import __version__
    from sportsdet.cli import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"sportsdet {__version__}"
