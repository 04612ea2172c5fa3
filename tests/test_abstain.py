"""Saying "I don't know" (issue 15 part 4): the abstain rule, where it is stored, how predict shows it."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import COLOUR_LABELS, COLOUR_SPEC, make_colour_onnx, make_tiny_bundle
from PIL import Image
from typer.testing import CliRunner

from sportsdet.abstain import Abstain, abstain_scores, fit_abstain
from sportsdet.abstain_bundle import fit_bundle_abstain, store_abstain
from sportsdet.bundle import load_bundle, save_bundle
from sportsdet.cli import app
from sportsdet.errors import SportsdetError
from sportsdet.export import onnx_metadata
from sportsdet.predict import Predictor, csv_header, csv_row
from sportsdet.preprocess import Preprocessing
from sportsdet.runtime import META_ABSTAIN, OnnxBackend, parse_onnx_metadata

runner = CliRunner()


def png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def solid(colour: tuple[int, int, int], size: int = 24) -> np.ndarray:
    return np.tile(np.array(colour, np.uint8), (size, size, 1))


# --- the rule -------------------------------------------------------------------------------


def test_scores_rank_sure_above_unsure() -> None:
    probs = np.array([[0.9, 0.05, 0.05], [0.4, 0.35, 0.25], [1 / 3, 1 / 3, 1 / 3]])
    for method in ("max_prob", "margin", "entropy"):
        scores = abstain_scores(probs, method)
        assert scores[0] > scores[1] > scores[2], method
    assert abstain_scores(probs, "max_prob")[1] == pytest.approx(0.4)
    assert abstain_scores(probs, "margin")[1] == pytest.approx(0.05)
    assert abstain_scores(probs, "entropy")[2] == pytest.approx(0.0, abs=1e-9)
    assert float(abstain_scores(probs[0], "max_prob")) == pytest.approx(0.9)  # one row works too
    with pytest.raises(SportsdetError, match="unknown abstain score"):
        abstain_scores(probs, "vibes")


@pytest.mark.parametrize("coverage", [0.95, 0.8, 0.5])
def test_fit_answers_the_stated_share_of_validation(coverage: float) -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(200, 5)) * rng.uniform(0.1, 4, size=(200, 1))
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    truth = probs.argmax(1) if coverage != 0.5 else rng.integers(0, 5, 200)
    for method in ("max_prob", "entropy"):
        policy = fit_abstain(probs, truth, coverage=coverage, method=method)
        answered = ~policy.uncertain(probs)
        assert answered.sum() == round(coverage * 200)  # distinct scores: exactly the stated share
        assert policy.valid_coverage == pytest.approx(coverage)
        assert policy.coverage == coverage and policy.valid_images == 200 and policy.method == method
        # The threshold sits strictly between the last answered score and the first abstained one.
        scores = policy.scores(probs)
        assert scores[answered].min() > policy.threshold > scores[~answered].max()
    # The answered photos' accuracy is measured on them only.
    correct = probs.argmax(1) == truth
    assert policy.valid_accuracy_answered == pytest.approx(correct[answered].mean(), abs=1e-4)


@pytest.mark.parametrize(("n", "coverage"), [(60, 1.0), (60, 0.99), (1, 1.0)])
def test_answering_every_validation_photo_leaves_a_margin_under_the_lowest(n: int, coverage: float) -> None:
    # At exactly the lowest score, the same photo scored 4e-8 lower by ONNX than by torch was
    # "uncertain": one of the photos the rule was fitted to answer. (0.99 of 60 keeps all 60.)
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(n, 4)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    policy = fit_abstain(probs, coverage=coverage, min_images=1)
    lowest = policy.scores(probs).min()
    assert not policy.uncertain(probs).any() and policy.valid_coverage == 1.0
    assert 1e-6 - 1e-12 <= lowest - policy.threshold <= 1e-3 + 1e-12


def test_refitting_on_too_few_photos_keeps_the_rule_there_is(tmp_path: Path, capsys) -> None:
    # It stored "no threshold" over a working rule, and exited 0: the model silently stopped
    # abstaining.
    from sportsdet.abstain_bundle import main

    bundle_dir = make_tiny_bundle(tmp_path / "bundle", COLOUR_LABELS)
    policy = Abstain(method="max_prob", threshold=0.6, coverage=0.9, fitted_on="here", valid_images=70)
    store_abstain(bundle_dir, policy)
    for i, label in enumerate(COLOUR_LABELS):
        (tmp_path / "valid" / label).mkdir(parents=True)
        (tmp_path / "valid" / label / f"{i}.png").write_bytes(png(solid((200, 30, 30))))
    assert main([str(bundle_dir), str(tmp_path / "valid")]) == 2
    assert "too few to fit an abstain threshold" in capsys.readouterr().err
    assert load_bundle(bundle_dir).abstain == policy
    assert main([str(bundle_dir), str(tmp_path / "valid"), "--coverage", "95"]) == 2  # before scoring
    assert "scoring" not in capsys.readouterr().out
    # An exported file holds no bundle.json to store the rule in: said before scoring too.
    (bundle_dir / "model.onnx").write_bytes(b"onnx")
    assert main([str(bundle_dir / "model.onnx"), str(tmp_path / "valid")]) == 2
    said = capsys.readouterr()
    assert "give the folder this file was exported from" in said.err and "scoring" not in said.out


def test_too_few_validation_photos_give_no_threshold() -> None:
    probs = np.full((49, 3), 1 / 3)
    policy = fit_abstain(probs, np.zeros(49, int), coverage=0.95)
    assert policy.threshold is None and not policy.active
    assert "49" in policy.why and "50" in policy.why
    assert not policy.uncertain(probs).any()  # no threshold: nothing abstains
    assert fit_abstain(np.full((50, 3), 1 / 3), coverage=0.95).threshold is not None


def test_stored_rule_is_checked() -> None:
    policy = Abstain(method="margin", threshold=0.25, coverage=0.9, fitted_on="valid", valid_images=80)
    assert Abstain.from_json(policy.to_json()) == policy
    with pytest.raises(SportsdetError, match="unknown abstain score"):
        Abstain.from_dict({"method": "magic", "threshold": 0.5})
    with pytest.raises(SportsdetError, match="number or null"):
        Abstain.from_dict({"threshold": "high"})
    with pytest.raises(SportsdetError, match="--min-score"):
        Abstain.min_score(1.5)


# --- storage: bundle.json -> ONNX metadata -> runtime --------------------------------------


def test_round_trip_through_bundle_and_onnx_metadata(tmp_path: Path) -> None:
    bundle_dir = make_tiny_bundle(tmp_path / "bundle")
    assert load_bundle(bundle_dir).abstain is None  # today's bundles have none
    policy = Abstain(method="entropy", threshold=0.4321, coverage=0.95, fitted_on="valid", valid_images=60)
    store_abstain(bundle_dir, policy)
    bundle = load_bundle(bundle_dir)  # weights untouched: the checksum still holds
    assert bundle.abstain == policy
    assert json.loads((bundle_dir / "bundle.json").read_text())["abstain"]["threshold"] == 0.4321

    meta = onnx_metadata(labels=["a", "b"], preprocessing=COLOUR_SPEC, model_name="x", abstain=bundle.abstain)
    assert parse_onnx_metadata(meta, "m.onnx").abstain == policy
    broken = {**meta, META_ABSTAIN: '{"threshold": "x"}'}
    with pytest.raises(SportsdetError, match="m.onnx"):
        parse_onnx_metadata(broken, "m.onnx")

    (bundle_dir / "bundle.json").write_text(
        (bundle_dir / "bundle.json").read_text().replace('"entropy"', '"nonsense"')
    )
    with pytest.raises(SportsdetError, match="bundle.json"):
        load_bundle(bundle_dir)


def test_store_abstain_rewrites_the_onnx_files_of_a_bundle(tmp_path: Path) -> None:
    bundle_dir = make_tiny_bundle(tmp_path / "bundle", COLOUR_LABELS)
    make_colour_onnx(bundle_dir / "model.onnx", spec=load_bundle(bundle_dir).preprocessing)
    policy = Abstain(method="max_prob", threshold=0.6, coverage=0.9, fitted_on="here", valid_images=70)
    store_abstain(bundle_dir, policy)
    assert OnnxBackend(bundle_dir / "model.onnx").abstain == policy  # the bare file decides alike
    store_abstain(bundle_dir, None)
    assert OnnxBackend(bundle_dir / "model.onnx").abstain is None
    assert load_bundle(bundle_dir).abstain is None


def test_a_bundle_decides_by_its_own_rule_on_every_backend_as_info_says(tmp_path: Path) -> None:
    # bundle.json without a rule, its ONNX file with one (a hand edit): predict abstained on the
    # ONNX backend, never on torch, and `info` said "every photo gets a label".
    bundle_dir = make_tiny_bundle(tmp_path / "bundle", COLOUR_LABELS)
    make_colour_onnx(bundle_dir / "model.onnx", spec=load_bundle(bundle_dir).preprocessing)
    rule = Abstain(method="max_prob", threshold=0.6, coverage=0.9, fitted_on="x", valid_images=70)
    store_abstain(bundle_dir, rule)
    manifest = json.loads((bundle_dir / "bundle.json").read_text())
    del manifest["abstain"]
    (bundle_dir / "bundle.json").write_text(json.dumps(manifest))
    assert OnnxBackend(bundle_dir / "model.onnx").abstain is not None  # the file still has it
    assert Predictor(bundle_dir, backend="onnx").abstain is None
    assert Predictor(bundle_dir, backend="torch").abstain is None
    assert Predictor(bundle_dir / "model.onnx").abstain is not None  # the file alone: its own rule


# --- predict --------------------------------------------------------------------------------


@pytest.fixture()
def colour_model(tmp_path: Path) -> Path:
    """The colour classifier with an abstain rule in its metadata: grey photos are uncertain."""
    policy = Abstain(method="max_prob", threshold=0.6, coverage=0.95, fitted_on="test", valid_images=100)
    meta = onnx_metadata(labels=COLOUR_LABELS, preprocessing=COLOUR_SPEC, model_name="colour", abstain=policy)
    return make_colour_onnx(tmp_path / "colour.onnx", metadata=meta)


@pytest.fixture()
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a_red.png").write_bytes(png(solid((190, 70, 70))))
    (folder / "b_grey.png").write_bytes(png(solid((128, 128, 128))))
    return folder


def test_predictor_marks_an_unsure_photo_and_keeps_the_best_guess(colour_model: Path, photos: Path) -> None:
    red, grey = Predictor(colour_model, top_k=3).predict_sources([photos])
    assert red.ok and not red.uncertain and red.label == "red" and red.score > 0.9
    assert grey.ok and grey.uncertain and grey.label is None and grey.score is None
    assert len(grey.top_k) == 3 and grey.top_k[0][1] < 0.6  # the best guess is still there
    assert grey.to_dict()["uncertain"] is True and grey.to_dict()["label"] is None
    header = csv_header(3)
    row = dict(zip(header, csv_row(grey, 3), strict=True))
    assert row["uncertain"] == "true" and row["label"] == "" and row["top1_label"] == grey.top_k[0][0]

    # --no-abstain answers everything; --min-score replaces the model's threshold.
    plain = list(Predictor(colour_model, abstain=False).predict_sources([photos]))
    assert [r.uncertain for r in plain] == [None, None] and plain[1].label is not None
    lenient = Predictor(colour_model, min_score=0.2)
    assert lenient.abstain_threshold == 0.2
    assert [r.uncertain for r in lenient.predict_sources([photos])] == [False, False]
    assert red.score < 1.0
    strict = Predictor(colour_model, min_score=red.score / 2 + 0.5)  # halfway between red and 100%
    assert [r.uncertain for r in strict.predict_sources([photos])] == [True, True]
    # A threshold that is not a number, or asked for with abstaining off, is refused at once: they
    # were a raw TypeError at the first photo, a rule of "1.0", and a silently ignored threshold.
    for odd in ("0.5", True, float("nan"), -0.1):
        with pytest.raises(SportsdetError, match="min_score"):
            Predictor(colour_model, min_score=odd)
    with pytest.raises(SportsdetError, match="contradict"):
        Predictor(colour_model, abstain=False, min_score=0.5)
    assert Predictor(colour_model, min_score=np.float32(0.25)).abstain_threshold == 0.25


def test_predict_cli_shows_uncertain_in_every_format(colour_model: Path, photos: Path) -> None:
    args = ["predict", str(photos), "--model", str(colour_model), "-k", "2"]
    result = runner.invoke(app, [*args, "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    red, grey = (json.loads(line) for line in result.stdout.splitlines())
    assert red["uncertain"] is False and red["label"] == "red"
    assert grey["uncertain"] is True and grey["label"] is None and grey["score"] is None
    assert len(grey["top_k"]) == 2
    # The summary counts it as uncertain, not as "labelled" (with a warning or not).
    assert "1 of 2 input(s) uncertain: no label" in result.stderr and "labelled" not in result.stderr

    result = runner.invoke(app, [*args, "--format", "csv"])
    lines = result.stdout.splitlines()
    assert lines[0].startswith("input,label,score,uncertain,error")
    assert lines[2].split(",")[1:4] == ["", "", "true"]

    result = runner.invoke(app, args, env={"COLUMNS": "250"})
    assert result.exit_code == 0
    grey_line = next(line for line in result.stdout.splitlines() if "b_grey" in line)
    assert "uncertain" in grey_line and "best guess" in grey_line and "%" in grey_line

    # No rule in force: null, as the service and Ray say (false claimed a check that never ran).
    result = runner.invoke(app, [*args, "--format", "jsonl", "--no-abstain"])
    assert all(json.loads(line)["uncertain"] is None for line in result.stdout.splitlines())
    result = runner.invoke(app, [*args, "--format", "csv", "--no-abstain"])
    assert [line.split(",")[3] for line in result.stdout.splitlines()[1:]] == ["", ""]
    result = runner.invoke(app, [*args, "--format", "jsonl", "--min-score", "0.1"])
    assert all(json.loads(line)["uncertain"] is False for line in result.stdout.splitlines())
    result = runner.invoke(app, [*args, "--no-abstain", "--min-score", "0.5"])
    assert isinstance(result.exception, SportsdetError) and "contradict" in str(result.exception)


def test_non_sport_photos_from_skimage_go_through_the_rule(colour_model: Path) -> None:
    """Plumbing only (the real model's numbers are bench/abstain_scores.py): photos that ship
    with scikit-image and photos made here each get exactly the decision the rule gives."""
    from skimage import data

    sources = [(name, png(getattr(data, name)())) for name in ("astronaut", "coffee", "chelsea", "rocket")]
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3))
    sources += [("noise", png(noise)), ("flat", png(solid((90,) * 3)))]
    predictor = Predictor(colour_model, top_k=3)
    backend = OnnxBackend(colour_model)
    results = list(predictor.predict_sources([b for _, b in sources]))
    assert len(results) == len(sources) and all(r.ok for r in results)
    for (name, image), result in zip(sources, results, strict=True):
        probs = predictor.predict_image(Image.open(io.BytesIO(image)))
        assert result.uncertain == bool(backend.abstain.uncertain(probs)), name
        assert (result.label is None) == result.uncertain
    assert any(r.uncertain for r in results)  # the flat grey one at least


# --- the same decision on torch, ONNX and INT8 ---------------------------------------------

TINY = "tiny-abstain-test"
SPEC = Preprocessing(input_size=16, resize="squash", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def build_colour_cnn(num_classes: int, pretrained: bool = False, **config):
    """Class k = colour channel k: a 1x1 convolution, pooling and a scaled identity head."""
    import torch

    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 3, 1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(3, num_classes),
    )
    with torch.no_grad():
        model[0].weight.copy_(torch.eye(3).reshape(3, 3, 1, 1))
        model[0].bias.fill_(1.0)
        model[4].weight.copy_(4 * torch.eye(num_classes, 3))
        model[4].bias.zero_()
    return model


@pytest.mark.parametrize("distance_head", [False, True])
def test_torch_onnx_and_int8_decide_the_same(tmp_path: Path, monkeypatch, distance_head: bool) -> None:
    pytest.importorskip("torch", reason="torch/INT8 parity needs the [train] install")
    import onnx

    from sportsdet.export import distance_head_nodes, export_bundle
    from sportsdet.models import REGISTRY, ModelSpec, build_model

    spec = ModelSpec(
        name=TINY, description="colour", builder=f"{__name__}:build_colour_cnn", preprocessing=SPEC,
        output_key="4.weight",
    )  # fmt: skip
    monkeypatch.setitem(REGISTRY, TINY, spec)
    rng = np.random.default_rng(0)
    valid = tmp_path / "valid"
    for k, label in enumerate(COLOUR_LABELS):  # 16 clear photos per class, 4 greyish ones
        (valid / label).mkdir(parents=True)
        for i in range(20):
            pixels = rng.integers(100, 140, (16, 16, 3))
            if i < 16:
                pixels[..., k] = 255
            Image.fromarray(pixels.astype(np.uint8)).save(valid / label / f"{i}.png")
    config = {"distance_head": True} if distance_head else {}
    model = build_model(TINY, 3, **config)
    if distance_head:  # clear colours lie near their class prototype, greyish ones far from all
        import torch

        features = torch.eye(3).repeat(8, 1) + 0.05 * torch.rand(24, 3)
        info = model[4].fit(features, torch.arange(3).repeat(8), torch.eye(3) + 0.3)
        assert 0.9 < info["reference"] < 1.0
    bundle_dir = save_bundle(
        tmp_path / "bundle", state_dict=model.state_dict(), model_name=TINY, model_config=config,
        labels=COLOUR_LABELS, preprocessing=SPEC, output_key="4.weight",
    )  # fmt: skip

    policy = fit_bundle_abstain(bundle_dir, valid, coverage=0.8, backend="torch")
    assert policy.threshold is not None and policy.valid_coverage == pytest.approx(0.8)
    store_abstain(bundle_dir, policy)
    export_bundle(bundle_dir, int8=True, calibration_data=valid, eval_data=valid, max_int8_drop=100.0)

    # The bare ONNX files carry the same rule as bundle.json.
    for name in ("model.onnx", "model.int8.onnx"):
        assert OnnxBackend(bundle_dir / name).abstain == load_bundle(bundle_dir).abstain == policy

    photos = sorted(valid.rglob("*.png"))
    decisions = {}
    for backend, int8 in (("torch", False), ("onnx", False), ("onnx", True)):
        predictor = Predictor(bundle_dir, backend=backend, int8=int8)
        assert predictor.abstain == policy
        decisions[(backend, int8)] = [r.uncertain for r in predictor.predict_sources(photos)]
    onnx_file = Predictor(bundle_dir / "model.int8.onnx")  # no bundle folder at all
    decisions["bare int8"] = [r.uncertain for r in onnx_file.predict_sources(photos)]
    first = decisions[("torch", False)]
    assert sum(first) == 12  # the greyish photos, and only they
    assert all(flags == first for flags in decisions.values()), decisions
    graph = onnx.load(bundle_dir / "model.onnx").graph
    assert bool(distance_head_nodes(graph)) == distance_head
    assert any(n.op_type == "Pow" for n in graph.node) == distance_head  # the sharpness, exported
    int8_graph = onnx.load(bundle_dir / "model.int8.onnx").graph
    dequantized = {out for n in int8_graph.node if n.op_type == "DequantizeLinear" for out in n.output}
    similarity = [n for n in int8_graph.node if n.op_type == "MatMul"]
    assert len(similarity) == distance_head
    assert not dequantized & {name for node in similarity for name in node.input}


def test_a_bundle_saved_before_the_sharpness_existed_still_loads(tmp_path: Path, monkeypatch) -> None:
    torch = pytest.importorskip("torch", reason="rebuilding the network needs the [train] install")
    from safetensors.torch import load_file, save_file

    from sportsdet.models import REGISTRY, ModelSpec, build_model

    spec = ModelSpec(
        name=TINY, description="colour", builder=f"{__name__}:build_colour_cnn", preprocessing=SPEC,
        output_key="4.weight",
    )  # fmt: skip
    monkeypatch.setitem(REGISTRY, TINY, spec)
    model = build_model(TINY, 3, distance_head=True)
    model[4].fit(torch.eye(3).repeat(8, 1), torch.arange(3).repeat(8), torch.eye(3) + 0.3, sharpness=2.0)
    bundle_dir = save_bundle(
        tmp_path / "bundle", state_dict=model.state_dict(), model_name=TINY,
        model_config={"distance_head": True}, labels=COLOUR_LABELS, preprocessing=SPEC, output_key="4.weight",
    )  # fmt: skip
    weights = bundle_dir / "weights.safetensors"
    state = load_file(str(weights))
    assert float(state.pop("4.sharpness")) == 2.0
    save_file(state, str(weights))  # as written before the buffer existed

    rebuilt = load_bundle(bundle_dir, verify_weights=False).build_torch_model()
    assert float(rebuilt[4].sharpness) == 1.0  # the power such a model was made with
    assert torch.equal(rebuilt[4].prototypes, model[4].prototypes)


# --- evaluate and the report: accuracy against coverage -------------------------------------


def test_risk_coverage_curve_and_numbers_at_the_threshold() -> None:
    from sportsdet.metrics import abstain_metrics, risk_coverage

    # Scores 0.9 .. 0.1; the two least sure photos are the wrong ones.
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    correct = np.array([1, 1, 1, 1, 1, 1, 1, 0, 0], bool)
    curve = risk_coverage(scores, correct, points=9)
    assert [p["coverage"] for p in curve] == pytest.approx([k / 9 for k in range(1, 10)])
    assert curve[6]["accuracy"] == 1.0 and curve[-1]["accuracy"] == pytest.approx(7 / 9)
    assert curve[0]["threshold"] == 0.9 and curve[-1]["threshold"] == 0.1
    tied = risk_coverage(np.array([0.5, 0.5, 0.5, 0.1]), np.array([1, 0, 1, 1], bool), points=4)
    assert [p["coverage"] for p in tied] == [0.75, 1.0]  # ties are answered together

    probs = np.array([[s, 1 - s] for s in [0.95, 0.9, 0.85, 0.55, 0.52]])
    truth = np.array([0, 0, 0, 1, 1])
    policy = Abstain(method="max_prob", threshold=0.8, coverage=0.95)
    numbers = abstain_metrics(truth, probs, policy)
    assert numbers["answered"] == 3 and numbers["coverage"] == pytest.approx(0.6)
    assert numbers["accuracy_answered"] == 1.0 and numbers["accuracy_all"] == pytest.approx(0.6)
    assert numbers["threshold"] == 0.8 and numbers["fitted_coverage"] == 0.95
    none = abstain_metrics(truth, probs, None)
    assert none["threshold"] is None and len(none["risk_coverage"]) == 5


def test_evaluate_and_report_show_the_abstain_rule(tmp_path: Path) -> None:
    from conftest import make_image_tree

    from sportsdet.evaluate import evaluate
    from sportsdet.report import write_report

    bundle_dir = make_tiny_bundle(tmp_path / "bundle")
    tree = make_image_tree(tmp_path / "data", per_class=4)
    store_abstain(bundle_dir, Abstain(method="max_prob", threshold=0.99, coverage=0.95, fitted_on="made up"))
    result = evaluate(bundle_dir, tree, out_dir=tmp_path / "eval")
    numbers = json.loads((tmp_path / "eval" / "metrics.json").read_text())["abstain"]
    confident = result.probs.max(axis=1) >= 0.99
    assert numbers["threshold"] == 0.99 and numbers["answered"] == int(confident.sum())
    assert numbers["n"] == len(result.probs) and len(numbers["risk_coverage"]) == len(result.probs)
    page = write_report(tmp_path / "eval").read_text(encoding="utf-8")
    assert "risk-coverage" in page and 'id="abstain-text"' in page and "0.990" in page
    # Its own section, linked from the top (it sat at the foot of Calibration) and from Results,
    # which says the headline accuracy counts the "uncertain" photos by their best guess.
    assert '<a href="#abstain">' in page.split("<main>")[0] and '<section id="abstain">' in page
    results = page.split('<section id="results">')[1].split("</section>")[0]
    left = numbers["n"] - numbers["answered"]
    assert f"the {left} of {numbers['n']}" in results and 'href="#abstain"' in results
    # predictions.csv says which photos predict would call "uncertain", as its own csv does.
    with open(tmp_path / "eval" / "predictions.csv", newline="", encoding="utf-8") as handle:
        flags = [row["uncertain"] for row in csv.DictReader(handle)]
    assert flags == ["false" if sure else "true" for sure in confident]
    # ... and the console, which said nothing of it: what `predict` answers of these photos.
    cli = runner.invoke(app, ["evaluate", str(bundle_dir), str(tree), "--out", str(tmp_path / "e2")],
                        env={"COLUMNS": "200"})  # fmt: skip
    assert cli.exit_code == 0, cli.output
    row = next(line for line in cli.stdout.splitlines() if "answered (not 'uncertain')" in line)
    assert f"{numbers['answered']} of {numbers['n']}" in row
    assert "accuracy (every photo's best guess)" in cli.stdout


def test_refitting_leaves_out_the_photos_the_model_was_trained_on(tmp_path: Path) -> None:
    # It fitted on every photo given, training photos too: the model is surest of those, so the
    # threshold rose and new photos were answered far less often than the coverage asked.
    from sportsdet.seen_photos import SEEN_NAME, seen_photos_json

    bundle_dir = make_tiny_bundle(tmp_path / "bundle", COLOUR_LABELS)
    rng = np.random.default_rng(0)
    photos: list[Path] = []
    for label in COLOUR_LABELS:
        (tmp_path / "valid" / label).mkdir(parents=True)
        for i in range(30):
            photos.append(tmp_path / "valid" / label / f"{i}.png")
            # noise: flat colours would all be near copies of one another
            photos[-1].write_bytes(png(rng.integers(0, 256, (24, 24, 3)).astype(np.uint8)))
    trained, validated = photos[::9], photos[1::9]
    (bundle_dir / SEEN_NAME).write_bytes(seen_photos_json({"train": trained, "valid": validated}))
    said: list[str] = []
    policy = fit_bundle_abstain(bundle_dir, tmp_path / "valid", coverage=0.9, progress=said.append)
    # Its validation photos stay: they are what training fits the rule on.
    assert policy.valid_images == len(photos) - len(trained)
    assert any(f"left out {len(trained)} training photos" in line for line in said), said
    (bundle_dir / SEEN_NAME).write_bytes(seen_photos_json({"train": photos}))
    with pytest.raises(SportsdetError, match="every photo here is one the model was trained on"):
        fit_bundle_abstain(bundle_dir, tmp_path / "valid")
    # A bundle made before seen_photos.json: its run's split says what it was trained on (the rule
    # was fitted on training photos too, as evaluate no longer scores them).
    from sportsdet.data.splits import SplitManifest

    (bundle_dir / SEEN_NAME).unlink()
    listed = {"train": [(str(p.relative_to(tmp_path / "valid")), p.parent.name) for p in trained],
              "valid": [], "test": []}  # fmt: skip
    manifest = SplitManifest(tmp_path / "valid", "random:0.2", 0, list(COLOUR_LABELS), listed)
    manifest.save(tmp_path / "split.json")
    record = json.loads((bundle_dir / "bundle.json").read_text())
    record["data"] = {"manifest": str(tmp_path / "split.json")}
    (bundle_dir / "bundle.json").write_text(json.dumps(record))
    said.clear()
    policy = fit_bundle_abstain(bundle_dir, tmp_path / "valid", coverage=0.9, progress=said.append)
    assert policy.valid_images == len(photos) - len(trained)
    assert any(f"left out {len(trained)} training photos" in line for line in said), said


def test_min_score_answers_a_top_score_of_exactly_it() -> None:
    # "--min-score X": answered when the top score is at least X.
    rule = Abstain.min_score(0.5)
    assert rule.uncertain(np.array([0.5, 0.3, 0.2])) is False
    assert rule.uncertain(np.array([0.49, 0.26, 0.25])) is True
    assert rule.uncertain(np.array([[0.5, 0.5, 0.0], [0.4, 0.35, 0.25]])).tolist() == [False, True]
