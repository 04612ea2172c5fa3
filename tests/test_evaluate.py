"""evaluate: which images are scored, what is written, and that the files agree with each other."""

from __future__ import annotations

import csv
import html
import json
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CLASSES, make_image, make_image_tree, make_tiny_bundle
from PIL import Image
from typer.testing import CliRunner

from sportsdet.cli import app
from sportsdet.data.splits import SplitManifest
from sportsdet.errors import SportsdetError
from sportsdet.evaluate import evaluate
from sportsdet.metrics import compute_metrics
from sportsdet.plots import plot_confusion_matrix

EXPECTED_FILES = {
    "metrics.json",
    "predictions.csv",
    "probs.npy",
    "confusion_matrix.png",
    "gallery_correct.png",
    "gallery_wrong.png",
}


class ColourOracle:
    """A torch-free backend that answers by the dominant colour channel (red, green, blue ->
    class 0, 1, 2), so the right answers are known. `swap` makes green images come out as blue."""

    def __init__(self, swap: bool = False) -> None:
        self.swap = swap

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        winner = batch.mean(axis=(2, 3)).argmax(axis=1)
        if self.swap:
            winner = np.where(winner == 1, 2, winner)
        probs = np.full((len(batch), 3), 0.1, dtype=np.float32)
        probs[np.arange(len(batch)), winner] = 0.8
        return probs


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_image_tree(tmp_path / "data", per_class=4)


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_tiny_bundle(tmp_path / "bundle")


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_a_default_folder_that_cannot_be_written_does_not_name_an_option_never_given(
    bundle: Path, tree: Path, tmp_path: Path, monkeypatch
) -> None:
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: not mode & os.W_OK and real_access(path, mode))
    with pytest.raises(SportsdetError, match=r"^the evaluation folder .*\(no permission\); give --out"):
        evaluate(bundle, tree, backend=ColourOracle())
    with pytest.raises(SportsdetError, match=r"^--out .*\(no permission\); choose another --out$"):
        evaluate(bundle, tree, out_dir=tmp_path / "ev", backend=ColourOracle())


def test_byte_copies_among_the_photos_are_said_and_counted(bundle: Path, tree: Path, tmp_path: Path) -> None:
    # realworld-dev holds 27 photos saved twice or more: each copy was scored without a word.
    import shutil

    first = sorted((tree / "polo").iterdir())[0]
    shutil.copy(first, tree / "polo" / "again.jpg")
    shutil.copy(first, tree / "polo" / "and again.jpg")
    said: list[str] = []
    evaluate(bundle, tree, out_dir=tmp_path / "eval", backend=ColourOracle(), warn=said.append)
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["copies_scored"] == 2
    from sportsdet.report import write_report

    page = html.unescape(write_report(tmp_path / "eval").read_text(encoding="utf-8"))  # the terminal's alone
    assert "<th>copies scored</th><td>2 of the photos scored are byte copies of others among them" in page
    assert any("2 of the 14 photos under" in line and "1 photo(s) saved more than once" in line
               for line in said)  # fmt: skip


def test_writes_every_file_and_they_agree(bundle: Path, tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    result = evaluate(bundle, tree, out_dir=out, backend=ColourOracle(swap=True))
    assert {p.name for p in out.iterdir()} == EXPECTED_FILES
    metrics = json.loads((out / "metrics.json").read_text())
    rows = _read_csv(out / "predictions.csv")
    probs = np.load(out / "probs.npy", allow_pickle=False)

    # 12 images; green (polo) images are answered "rowing": 8 right.
    assert metrics["n"] == len(rows) == probs.shape[0] == 12
    assert probs.dtype == np.float32 and probs.shape == (12, 3)
    assert metrics["accuracy"] == pytest.approx(8 / 12)
    assert metrics["per_class"]["polo"]["recall"] == 0.0
    assert metrics["per_class"]["rowing"]["precision"] == pytest.approx(0.5)
    assert metrics["confusion_matrix"] == [[4, 0, 0], [0, 0, 4], [0, 0, 4]]
    assert metrics["labels"] == CLASSES and metrics["split"] is None and metrics["source"] == "folder"

    # predictions.csv, probs.npy and metrics.json tell the same story
    assert sum(r["true_label"] == r["pred_label"] for r in rows) / len(rows) == metrics["accuracy"]
    index = {label: i for i, label in enumerate(CLASSES)}
    for row, p in zip(rows, probs, strict=True):
        assert CLASSES[int(p.argmax())] == row["pred_label"]
        assert float(row["confidence"]) == pytest.approx(p.max(), abs=1e-6)
        assert float(row["true_prob"]) == pytest.approx(p[index[row["true_label"]]], abs=1e-6)
        assert Path(row["path"]).parent.name == row["true_label"]
    y_true = np.array([index[r["true_label"]] for r in rows])
    again = compute_metrics(y_true, probs, CLASSES)
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "confusion_matrix", "per_class"):
        assert again[key] == metrics[key]
    assert result.metrics["accuracy"] == metrics["accuracy"]
    for png in ("confusion_matrix.png", "gallery_correct.png", "gallery_wrong.png"):
        with Image.open(out / png) as image:
            assert image.format == "PNG" and image.width > 300


def test_real_torch_model_matches_predict(bundle: Path, tree: Path, tmp_path: Path) -> None:
    from sportsdet.predict import Predictor

    result = evaluate(bundle, tree, out_dir=tmp_path / "eval", batch_size=5)
    predictor = Predictor(bundle, top_k=3)
    by_path = {r.input: r for r in predictor.predict_sources([str(p) for p in result.paths])}
    for path, row in zip(result.paths, result.probs, strict=True):
        assert by_path[str(path)].label == CLASSES[int(row.argmax())]
        assert by_path[str(path)].score == pytest.approx(float(row.max()), abs=1e-5)


def test_unknown_class_is_an_error_listing_it(bundle: Path, tree: Path, tmp_path: Path) -> None:
    shutil.copytree(tree / "polo", tree / "curling")
    out = tmp_path / "eval"
    with pytest.raises(SportsdetError, match=r"'curling' are not among the model's 3 labels") as caught:
        evaluate(bundle, tree, out_dir=out, backend=ColourOracle())
    assert not out.exists()
    # The labels of this model, not the built-in one's (`sportsdet info --labels` lists those).
    assert f"`sportsdet info {bundle} --labels` lists the labels" in str(caught.value)
    assert "or leave them out with --known-only" in str(caught.value)
    # A folder one cannot rename (shared, read-only): the known classes scored, the rest said.
    notes: list[str] = []
    result = evaluate(bundle, tree, out_dir=out, backend=ColourOracle(), known_only=True, warn=notes.append)
    assert result.metrics["n"] == 12 and "curling" not in str(result.metrics["per_class"])
    assert any("left out (--known-only) 1 class folder(s) the model does not know: 'curling' (4 photos)" in n
               for n in notes)  # fmt: skip
    # Recorded, and on the page: the report said "(all images)" of a folder missing a class.
    assert result.metrics["classes_left_out"] == {"curling": 4}
    from sportsdet.report import write_report

    page = html.unescape(write_report(out).read_text(encoding="utf-8"))
    assert "curling (4 photos): sports the model does not know (--known-only)" in page
    assert f"{tree} (all images but those left out)" in page and "(all images)" not in page
    only_unknown = make_image_tree(tmp_path / "other", classes=["curling"], per_class=2)
    with pytest.raises(SportsdetError, match="not among the model's"):  # nothing known: still refused
        evaluate(bundle, only_unknown, out_dir=tmp_path / "e2", backend=ColourOracle(), known_only=True)


def test_subset_of_classes_is_fine(bundle: Path, tmp_path: Path) -> None:
    data = make_image_tree(tmp_path / "two", classes=["air hockey", "rowing"], per_class=3)
    # make_image_tree colours by position: "rowing" is drawn green here, so it reads as polo.
    metrics = evaluate(bundle, data, out_dir=tmp_path / "eval", backend=ColourOracle()).metrics
    assert metrics["n"] == 6
    assert metrics["per_class"]["polo"]["support"] == 0
    assert metrics["accuracy"] == pytest.approx(0.5)
    assert metrics["balanced_accuracy"] == pytest.approx(0.5)  # mean over the 2 classes present


def test_the_console_lists_a_class_given_photos_it_has_none_of(bundle: Path, tmp_path: Path, capsys) -> None:
    # polo has no photos here but got the 3 rowing photos; the console hid it (its precision is 0,
    # as for a class never given any) while the report listed it.
    from sportsdet.cli.evaluate import print_summary

    data = make_image_tree(tmp_path / "two", classes=["air hockey", "rowing"], per_class=3)
    print_summary(evaluate(bundle, data, out_dir=tmp_path / "eval", backend=ColourOracle()).metrics)
    table = capsys.readouterr().out.split("per class", 1)[1]
    assert [line.split("│")[1].strip() for line in table.splitlines() if line.startswith("│")] == [
        "air hockey", "rowing", "polo"
    ]  # fmt: skip
    assert "the last 1: no photos here, but given to some" in table


def test_uneven_photo_counts_are_no_warning_when_evaluating(bundle: Path, tmp_path: Path) -> None:
    data = make_image_tree(tmp_path / "uneven", per_class=8)
    for extra in sorted((data / "polo").iterdir())[2:]:  # 8 air hockey, 2 polo: training would warn
        extra.unlink()
    (data / "rowing" / "photo.jxl").write_bytes(b"\xff\x0a" + bytes(40))  # a warning that still applies
    said: list[str] = []
    evaluate(bundle, data, out_dir=tmp_path / "eval", backend=ColourOracle(), warn=said.append)
    assert not any("imbalance" in w for w in said)
    assert any("photo.jxl" in w for w in said), said


def test_split_tree_uses_the_chosen_split(bundle: Path, tmp_path: Path) -> None:
    data = make_image_tree(tmp_path / "split", splits={"train": 3, "valid": 1, "test": 2})
    test = evaluate(bundle, data, out_dir=tmp_path / "e1", backend=ColourOracle())
    assert test.metrics["n"] == 6 and test.metrics["split"] == "test"
    assert all(p.parts[-3] == "test" for p in test.paths)
    valid = evaluate(bundle, data, split="val", out_dir=tmp_path / "e2", backend=ColourOracle())
    assert valid.metrics["n"] == 3 and valid.metrics["split"] == "valid"
    with pytest.raises(SportsdetError, match="use one of train, valid, test"):
        evaluate(bundle, data, split="holdout", out_dir=tmp_path / "e3", backend=ColourOracle())


def _run_folder(tmp_path: Path, tree: Path) -> tuple[Path, list[str]]:
    """A run folder like `sportsdet train` leaves: RUN/split.json and RUN/model (bundle)."""
    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    train, test = [], []
    for label in CLASSES:
        files = sorted(p.relative_to(tree).as_posix() for p in (tree / label).iterdir())
        train += [(rel, label) for rel in files[:3]]
        test += [(rel, label) for rel in files[3:]]
    manifest = SplitManifest(
        tree.resolve(), "random:0.25", 0, list(CLASSES), {"train": train, "valid": [], "test": test}
    )
    manifest.save(run / "split.json")
    # The bundle records where its data and manifest are, as train.py does.
    from sportsdet.bundle import load_bundle, save_bundle

    source = load_bundle(make_tiny_bundle(tmp_path / "plain"))
    save_bundle(
        run / "model",
        state_dict=source.numpy_state_dict(),
        model_name=source.model_name,
        model_config=source.model_config,
        labels=source.labels,
        preprocessing=source.preprocessing,
        output_key=source.output_key,
        data={"root": str(tree.resolve()), "split": "random:0.25", "manifest": str(run / "split.json")},
    )
    return run, [rel for rel, _ in test]


def test_training_tree_uses_the_saved_test_split(tmp_path: Path, tree: Path) -> None:
    run, test_files = _run_folder(tmp_path, tree)
    result = evaluate(run, tree, backend=ColourOracle())  # a run folder: its model/ is used
    assert result.out_dir == run / "eval"  # default output for a bundle inside a run
    assert result.metrics["source"] == "split-manifest"
    assert result.metrics["n"] == len(test_files) == 3
    assert sorted(p.relative_to(tree.resolve()).as_posix() for p in result.paths) == sorted(test_files)
    assert result.metrics["accuracy"] == 1.0


def test_other_photos_never_replace_the_runs_own_evaluation(tmp_path: Path, tree: Path) -> None:
    run, _ = _run_folder(tmp_path, tree)
    own = evaluate(run, backend=ColourOracle())
    assert own.out_dir == run / "eval"
    before = (run / "eval" / "metrics.json").read_bytes()
    other = tmp_path / "web photos"
    shutil.copytree(tree, other)
    elsewhere = evaluate(run, other, backend=ColourOracle())
    assert elsewhere.out_dir == run / "eval-web photos"
    scored = json.loads((run / "eval-web photos" / "metrics.json").read_text())
    assert scored["source"] == "folder"
    weights = json.loads((run / "model" / "bundle.json").read_text())["weights"]
    assert scored["weights_sha256"] == weights["sha256"]  # which model was scored
    notes: list[str] = []
    train = evaluate(run, split="train", backend=ColourOracle(), warn=notes.append)
    assert train.out_dir == run / "eval-train"
    # The model's own photos, scored because asked for: recorded and said (no trace before).
    assert train.metrics["seen_kept"] == {"train": 9} and any("the model was trained on" in n for n in notes)
    from sportsdet.report import write_report

    page = html.unescape(write_report(run / "eval-train").read_text(encoding="utf-8"))  # it said --keep-seen
    assert "9 training photos (--split train): the score counts photos the model has seen" in page
    assert (run / "eval" / "metrics.json").read_bytes() == before  # the report's evaluation, untouched
    # Another folder of the same name gets a folder of its own (it replaced the first in silence);
    # the same folder again goes where it went before.
    namesake = tmp_path / "b" / "web photos"
    shutil.copytree(tree, namesake)
    assert evaluate(run, namesake, backend=ColourOracle()).out_dir == run / "eval-web photos-2"
    assert json.loads((run / "eval-web photos" / "metrics.json").read_text())["data"] == str(other.resolve())
    assert evaluate(run, other, backend=ColourOracle()).out_dir == run / "eval-web photos"


def test_int8_scores_the_int8_model_beside_the_runs_own_evaluation(tmp_path: Path, tree: Path) -> None:
    from sportsdet.export import export_bundle

    run, test_files = _run_folder(tmp_path, tree)
    made_how = r"no model\.int8\.onnx; create it with `sportsdet export .* --int8`"
    with pytest.raises(SportsdetError, match=made_how):
        evaluate(run, int8=True)
    assert not (run / "eval-int8").exists()
    with pytest.raises(SportsdetError, match="--int8 runs on onnxruntime, on the CPU"):
        evaluate(run, int8=True, device="cuda")
    export_bundle(run / "model", int8=True, max_int8_drop=100.0)
    own = evaluate(run)  # model.onnx, in float
    quantised = evaluate(run, int8=True)
    assert own.out_dir == run / "eval" and quantised.out_dir == run / "eval-int8"
    assert own.metrics["backend"] == "onnxruntime (model.onnx)"
    assert quantised.metrics["backend"] == "onnxruntime int8 (model.int8.onnx)"
    assert quantised.metrics["n"] == len(test_files)
    other = evaluate(run, tree, split="train", int8=True)
    assert other.out_dir == run / "eval-train-int8"
    result = CliRunner().invoke(app, ["evaluate", str(run), "--int8"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "eval-int8" in " ".join(result.output.split())
    assert re.search(r"engine\s+│\s+onnxruntime int8 \(model.int8.onnx\)", result.stdout)  # said up front
    # A bundle that ships only its INT8 model runs it by default: --int8 is the same evaluation,
    # not a second folder of the same scores.
    (run / "model" / "model.onnx").unlink()
    assert evaluate(run, int8=True).out_dir == run / "eval"


def test_training_tree_without_manifest_says_so(tmp_path: Path, tree: Path) -> None:
    run, _ = _run_folder(tmp_path, tree)
    (run / "split.json").unlink()
    with pytest.raises(SportsdetError, match="split manifest is gone"):
        evaluate(run / "model", tree, backend=ColourOracle())
    assert not (run / "eval").exists()


def test_unreadable_images_are_skipped_and_reported(bundle: Path, tree: Path, tmp_path: Path) -> None:
    bad = tree / "polo" / "zz-broken.jpg"
    bad.write_text("<html>not really a photo</html>")
    warnings: list[str] = []
    result = evaluate(bundle, tree, out_dir=tmp_path / "eval", backend=ColourOracle(), warn=warnings.append)
    assert result.metrics["n"] == 12
    assert [s["path"] for s in result.metrics["skipped"]] == [str(bad.resolve())]
    assert any("zz-broken.jpg" in w for w in warnings)


def test_photos_after_a_skipped_one_are_scored_against_their_own_class(bundle, tree, tmp_path) -> None:
    # The first photo of the first class cannot be read: every later photo's true class must still
    # be its own (taken by the kept photos' places, not by their count).
    (tree / CLASSES[0] / "00-broken.jpg").write_text("<html>not really a photo</html>")
    result = evaluate(bundle, tree, out_dir=tmp_path / "eval", backend=ColourOracle())
    assert result.metrics["n"] == 12 and result.metrics["accuracy"] == 1.0
    assert result.metrics["confusion_matrix"] == [[4, 0, 0], [0, 4, 0], [0, 0, 4]]
    rows = _read_csv(tmp_path / "eval" / "predictions.csv")
    assert all(Path(row["path"]).parent.name == row["true_label"] == row["pred_label"] for row in rows)


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS file names must be UTF-8")
def test_a_file_name_that_is_not_utf8_is_scored_and_written(bundle: Path, tree: Path, tmp_path: Path) -> None:
    # Old zip archives keep Latin-1 names; Python hands them over with lone surrogates, which
    # crashed writing predictions.csv after the whole model run.
    os.rename(bytes(tree / "polo" / "000.jpg"), bytes(tree / "polo") + b"/caf\xe9 \xff.jpg")
    out = tmp_path / "eval"
    result = evaluate(bundle, tree, out_dir=out, backend=ColourOracle())
    assert result.metrics["n"] == 12 and (out / "metrics.json").is_file()
    assert any(row["path"].endswith("caf\\udce9 \\udcff.jpg") for row in _read_csv(out / "predictions.csv"))
    # ... and the report finds the photo by that name (its tile said "image not found").
    from sportsdet.report.inputs import read_predictions

    found = {p.path: p.image for p in read_predictions(out / "predictions.csv", [tree])}
    assert all(found.values()) and bytes(tree / "polo") + b"/caf\xe9 \xff.jpg" in map(bytes, found.values())


def test_nothing_readable_is_an_error(bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "junk" / "polo").mkdir(parents=True)
    (tmp_path / "junk" / "polo" / "a.jpg").write_bytes(b"")
    with pytest.raises(SportsdetError, match="none of the 1 images could be read"):
        evaluate(bundle, tmp_path / "junk", out_dir=tmp_path / "eval", backend=ColourOracle())


def test_bad_arguments(bundle: Path, tree: Path, tmp_path: Path) -> None:
    with pytest.raises(SportsdetError, match="no such folder"):
        evaluate(bundle, tmp_path / "nope", out_dir=tmp_path / "eval", backend=ColourOracle())
    photo = next(tree.rglob("*.jpg"))  # one photo: it exists (it was "no such folder")
    with pytest.raises(SportsdetError, match="a file, not a folder; .*`sportsdet predict` labels single"):
        evaluate(bundle, photo, out_dir=tmp_path / "eval", backend=ColourOracle())
    (tmp_path / "file").write_text("x")
    with pytest.raises(SportsdetError, match="not a folder"):
        evaluate(bundle, tree, out_dir=tmp_path / "file", backend=ColourOracle())
    # Inside the photos: its figures were scored as photos the next time (or it was a class).
    for inside in (tree / "results", tree / "polo"):
        with pytest.raises(SportsdetError, match="inside .*, the folder of photos being evaluated"):
            evaluate(bundle, tree, out_dir=inside, backend=ColourOracle())
    assert not (tree / "results").exists()


def test_model_with_the_wrong_class_count_is_refused(bundle: Path, tree: Path, tmp_path: Path) -> None:
    class TwoClasses(ColourOracle):
        def predict_proba(self, batch: np.ndarray) -> np.ndarray:
            return super().predict_proba(batch)[:, :2]

    with pytest.raises(SportsdetError, match="the bundle has 3"):
        evaluate(bundle, tree, out_dir=tmp_path / "eval", backend=TwoClasses())
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_rerun_replaces_results_cleanly(bundle: Path, tree: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    evaluate(bundle, tree, out_dir=out, backend=ColourOracle(swap=True))
    evaluate(bundle, tree, out_dir=out, backend=ColourOracle())
    assert {p.name for p in out.iterdir()} == EXPECTED_FILES  # no temporary files left
    assert json.loads((out / "metrics.json").read_text())["accuracy"] == 1.0


def test_the_evaluation_speed_leaves_out_loading_the_model(bundle, tree, tmp_path, monkeypatch) -> None:
    # The timer started before the model was loaded: 9 photos "ran" at 3 images/s.
    import time

    import sportsdet.evaluate as evaluating

    def slow_load(*args, **kwargs):
        time.sleep(3.0)
        return ColourOracle()

    monkeypatch.setattr(evaluating, "load_backend", slow_load)
    evaluate(bundle, tree, out_dir=tmp_path / "eval")
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["seconds"] < 3.0


def test_another_device_runs_the_bundle_on_torch(bundle, tree, tmp_path, monkeypatch) -> None:
    # A bundle with model.onnx (the built-in model too) was refused for --device cuda with
    # advice to use --backend torch, which evaluate does not have.
    import sportsdet.evaluate as evaluating

    asked: list[tuple[str, str]] = []

    def recording(path, backend="auto", **options):
        asked.append((backend, options.get("device")))
        return ColourOracle()

    monkeypatch.setattr(evaluating, "load_backend", recording)
    evaluate(bundle, tree, out_dir=tmp_path / "gpu", device="cuda:0")
    evaluate(bundle, tree, out_dir=tmp_path / "cpu")
    assert asked == [("torch", "cuda:0"), ("auto", "cpu")]


@pytest.mark.parametrize("stop", [RuntimeError("disk"), KeyboardInterrupt()], ids=["error", "ctrl-c"])
def test_a_rerun_that_stops_half_way_leaves_the_earlier_evaluation_whole(
    bundle, tree, tmp_path, monkeypatch, stop
):
    # The earlier metrics.json (and page) went first, then the new files one by one: Ctrl-C while
    # the galleries were drawn left half of each evaluation and no metrics.json.
    from sportsdet import plots

    out = tmp_path / "eval"
    evaluate(bundle, tree, out_dir=out, backend=ColourOracle())
    (out / "report.html").write_text("the first evaluation's page")  # as the command writes it
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(plots, "plot_gallery", lambda *a, **k: (_ for _ in ()).throw(stop))
    with pytest.raises(type(stop)):
        evaluate(bundle, tree, out_dir=out, backend=ColourOracle(swap=True))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temporary file either
    fresh = tmp_path / "fresh" / "a" / "b"
    with pytest.raises(type(stop)):
        evaluate(bundle, tree, out_dir=fresh, backend=ColourOracle(swap=True))
    assert not (tmp_path / "fresh").exists()  # the folders made for it go too


def test_a_rerun_replaces_the_earlier_page_with_its_results(bundle, tree, tmp_path) -> None:
    # The earlier page showed the old photos beside the new results; the command writes it again.
    out = tmp_path / "eval"
    evaluate(bundle, tree, out_dir=out, backend=ColourOracle())
    (out / "report.html").write_text("the first evaluation's page")
    evaluate(bundle, tree, out_dir=out, backend=ColourOracle(swap=True))
    assert not (out / "report.html").exists()
    assert json.loads((out / "metrics.json").read_text())["accuracy"] < 1.0  # the new one


def test_ctrl_c_says_what_it_left(bundle, tree, tmp_path, monkeypatch) -> None:
    # typer printed a blank line: nothing said whether the earlier evaluation was still there.
    import sportsdet.evaluate as evaluating
    import sportsdet.report as reporting
    from sportsdet import plots

    monkeypatch.setattr(evaluating, "load_backend", lambda *a, **k: ColourOracle())
    out = tmp_path / "eval"
    command = ["evaluate", str(bundle), str(tree), "--out", str(out)]

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(plots, "plot_gallery", interrupt)
        result = CliRunner().invoke(app, command, env={"COLUMNS": "300"})
    assert result.exit_code == 130
    assert "interrupted: nothing written" in result.output and not out.exists()

    assert CliRunner().invoke(app, command).exit_code == 0
    with monkeypatch.context() as patched:
        patched.setattr(plots, "plot_gallery", interrupt)
        result = CliRunner().invoke(app, command, env={"COLUMNS": "300"})
    assert result.exit_code == 130
    assert f"nothing written; the earlier evaluation in {out} is kept as it was" in result.output

    with monkeypatch.context() as patched:
        patched.setattr(reporting, "write_report_after", interrupt)
        result = CliRunner().invoke(app, command, env={"COLUMNS": "300"})
    assert result.exit_code == 130
    assert f"the evaluation is written in {out}, but its report page is not up to date" in result.output
    assert f"`sportsdet report {out}` writes it" in result.output
    # Into RUN/eval-DATA: its own page and the run's (which lists it); only its own was named.
    run = _run_with_model(tmp_path / "run")
    with monkeypatch.context() as patched:
        patched.setattr(reporting, "write_report_after", interrupt)
        result = CliRunner().invoke(app, ["evaluate", str(run), str(tree)], env={"COLUMNS": "400"})
    assert result.exit_code == 130
    assert (f"its report pages are not up to date: `sportsdet report {run / 'eval-data'}` and "
            f"`sportsdet report {run}` write them") in result.output  # fmt: skip


@pytest.mark.parametrize("n", [8, 100])
def test_confusion_matrix_scales_with_classes(tmp_path: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    cm = rng.integers(0, 5, size=(n, n)) + np.eye(n, dtype=int) * 20
    path = tmp_path / f"cm{n}.png"
    plot_confusion_matrix(cm, [f"class number {i}" for i in range(n)], path)
    with Image.open(path) as image:
        width = image.width
    assert width >= (2500 if n == 100 else 600)


def test_class_names_with_dollar_signs_are_drawn_as_written(tmp_path: Path) -> None:
    # Two '$' in a class name read as matplotlib math: 'a$^$b' failed to parse, and train and
    # evaluate stopped with a traceback after scoring every photo.
    from sportsdet.plots import plot_gallery

    labels = ["a$^$b", "cost $5 or $6", "polo"]
    plot_confusion_matrix(np.eye(3, dtype=int) * 4, labels, tmp_path / "cm.png")
    photo = tmp_path / "p.png"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(photo)
    plot_gallery([(photo, labels[0], labels[1], 0.5)], tmp_path / "g.png", "wrong: $x$ and $^$", "none")
    assert (tmp_path / "cm.png").stat().st_size > 0 and (tmp_path / "g.png").stat().st_size > 0


def test_a_very_long_class_name_does_not_take_the_confusion_matrix(tmp_path: Path) -> None:
    # Drawn whole, a 200-character name left no room: matplotlib warned that it could not lay
    # the figure out (on the user's terminal) and clipped every label.
    import warnings

    labels = ["x" * 200, "polo", "rowing"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plot_confusion_matrix(np.eye(3, dtype=int) * 4, labels, tmp_path / "cm.png")
    assert [str(w.message) for w in caught] == []


def test_confusion_matrix_of_a_few_of_many_classes_draws_only_their_rows(tmp_path: Path) -> None:
    # The built-in model (105 sports) on a user's 5: 5 rows, not 105 (100 of them empty).
    cm = np.zeros((105, 105), dtype=int)
    for i in range(5):
        cm[i * 20, i * 20], cm[i * 20, 101] = 8, 2
    plot_confusion_matrix(cm, [f"sport {i}" for i in range(105)], tmp_path / "few.png")
    plot_confusion_matrix(np.eye(105, dtype=int), [f"sport {i}" for i in range(105)], tmp_path / "all.png")
    with Image.open(tmp_path / "few.png") as few, Image.open(tmp_path / "all.png") as every:
        assert few.height < every.height / 3 and few.width < every.width / 3  # 5 rows x 6 columns


def test_cli_prints_summary_and_defaults_out(
    bundle: Path, tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["evaluate", str(bundle), str(tree)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.stdout and "95% CI" in result.stdout and "macro-F1" in result.stdout
    assert re.search(r"macro-F1\s*│\s*\d+\.\d%", result.stdout)  # 0.716 beside the report's 71.6%
    assert re.search(r"calibration error \(ECE\)\s*│\s*\d+\.\d%", result.stdout)  # as train, info, report
    assert "air hockey" in result.stdout  # the per-class table
    # the CLI also writes the HTML report beside the results
    assert {p.name for p in (tmp_path / "eval-bundle-data").iterdir()} == EXPECTED_FILES | {"report.html"}


def test_cli_unknown_class_error(bundle: Path, tree: Path, tmp_path: Path) -> None:
    shutil.copytree(tree / "polo", tree / "curling")
    result = CliRunner().invoke(app, ["evaluate", str(bundle), str(tree), "--out", str(tmp_path / "e")])
    assert isinstance(result.exception, SportsdetError)
    assert "curling" in str(result.exception)


def test_the_builtin_model_is_evaluated_by_name(
    run_cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    # "How good is the ready-made model on MY photos?" needs no path into site-packages.
    from sportsdet.bundle import builtin_bundle_path

    make_image_tree(tmp_path / "mine", ["tennis", "soccer"], per_class=3)
    monkeypatch.chdir(tmp_path)
    assert run_cli("evaluate", "builtin", "mine") == 0
    metrics = json.loads((tmp_path / "eval-builtin-mine" / "metrics.json").read_text())
    assert metrics["n"] == 6 and set(metrics["per_class"]) >= {"tennis", "soccer"}
    assert metrics["labels"] == json.loads((builtin_bundle_path() / "bundle.json").read_text())["labels"]
    # Other photos never replace it (both went to ./eval-builtin, the first lost in silence), nor
    # do other photos in a folder of the same name.
    make_image_tree(tmp_path / "theirs", ["tennis"], per_class=2)
    make_image_tree(tmp_path / "b" / "mine", ["soccer"], per_class=2)
    assert run_cli("evaluate", "builtin", "theirs") == 0 and run_cli("evaluate", "builtin", "b/mine") == 0
    scored = {p.name: json.loads((p / "metrics.json").read_text())["n"] for p in tmp_path.glob("eval-*")}
    assert scored == {"eval-builtin-mine": 6, "eval-builtin-theirs": 2, "eval-builtin-mine-2": 2}
    # Without DATA: its training data is not here to use; the error says what to give instead.
    capsys.readouterr()
    assert run_cli("evaluate", "builtin") == 2
    error = capsys.readouterr().err
    assert "(it was trained on sports100, websports); give a folder of labelled photos" in error
    # A folder named in other capitals: the error says which label it means.
    (tmp_path / "mine" / "soccer").rename(tmp_path / "mine" / "Soccer")
    capsys.readouterr()
    assert run_cli("evaluate", "builtin", "mine") == 2
    error = capsys.readouterr().err
    assert "'Soccer' (did you mean 'soccer'?) are not among the model's 105 labels;" in error
    # A folder of that name where the user works is theirs: it is what they mean.
    make_tiny_bundle(tmp_path / "builtin")
    capsys.readouterr()
    assert run_cli("evaluate", "builtin", "mine", "--out", "own") == 2
    assert "are not among the model's 3 labels (air hockey, polo, rowing)" in capsys.readouterr().err


def test_a_folder_name_that_means_another_class_to_the_model_gets_a_hint(
    bundle: Path, tmp_path: Path
) -> None:
    # A user's 'polo' folder whose photos the model reads as 'rowing' (its 'football' being the
    # model's 'soccer', say): the evaluation says which name the model would use.
    tree = make_image_tree(tmp_path / "mine", per_class=6)
    notes: list[str] = []
    swapped = ColourOracle(swap=True)
    result = evaluate(bundle, tree, out_dir=tmp_path / "eval", backend=swapped, warn=notes.append)
    hint = {"class": "polo", "photos": 6, "given": "rowing", "count": 6, "in_folder": 6}
    assert result.metrics["mostly_given_another"] == [hint]
    assert notes == [
        "6 of the 6 photos in 'polo' were labelled 'rowing': if your 'polo' is what this model calls "
        "'rowing', rename that folder and evaluate again"
    ]
    # The report says it too.
    from sportsdet.report import write_report

    page = html.unescape(write_report(tmp_path / "eval").read_text(encoding="utf-8"))
    assert "if your 'polo' is what this model calls 'rowing', rename that folder" in page
    # A folder named by another name of a renamed label: the hint names that folder, not the label
    # ("rename 'american football'" of a user's `football` folder).
    from sportsdet.bundle_labels import rename_labels

    renamed = Path(shutil.copytree(bundle, tmp_path / "renamed"))
    rename_labels(renamed, {"polo": "water polo"})
    notes.clear()
    aliased = evaluate(renamed, tree, out_dir=tmp_path / "aliased", backend=swapped, warn=notes.append)
    assert aliased.metrics["mostly_given_another"] == [{**hint, "class": "water polo", "folder": "polo"}]
    assert notes == [
        "6 of the 6 photos in 'polo' were labelled 'rowing': if your 'polo' is what this model calls "
        "'rowing', rename that folder and evaluate again"
    ]
    # Right answers: no hint.
    right = evaluate(bundle, tree, out_dir=tmp_path / "ok", backend=ColourOracle())
    assert right.metrics["mostly_given_another"] == []
    # Best guesses the model would not say (all "uncertain" under its rule) are no evidence: the
    # hint told users to rename a folder of photos that predict calls uncertain.
    from sportsdet.abstain import Abstain
    from sportsdet.bundle import set_bundle_abstain

    set_bundle_abstain(bundle, Abstain.min_score(0.9))  # the oracle's top score is 0.8
    unsure = evaluate(bundle, tree, out_dir=tmp_path / "unsure", backend=swapped)
    assert unsure.metrics["mostly_given_another"] == []
    # Most answered photos of a folder, but a third of the folder (the rest uncertain): a confusion,
    # not another name; the hint told a user to rename a right 'tennis' folder.
    set_bundle_abstain(bundle, Abstain.min_score(0.5))

    class SureOfColours(ColourOracle):  # a grey photo gets flat scores: uncertain
        def predict_proba(self, batch: np.ndarray) -> np.ndarray:
            probs = super().predict_proba(batch)
            means = batch.mean(axis=(2, 3))
            probs[means.max(axis=1) - means.min(axis=1) < 0.05] = 1 / 3
            return probs

    for i in range(6, 13):  # beside 6 green polo photos (answered 'rowing'), 7 grey ones (uncertain)
        make_image((120, 120, 120), size=40, seed=i).save(tree / "polo" / f"{i:03d}.jpg", quality=90)
    few = evaluate(bundle, tree, out_dir=tmp_path / "few", backend=SureOfColours(swap=True))
    polo = np.asarray(few.y_true) == CLASSES.index("polo")
    assert sorted(np.round(few.probs[polo].max(axis=1), 2)) == [0.33] * 7 + [0.8] * 6
    assert few.metrics["mostly_given_another"] == []


def test_another_model_evaluated_into_a_run_folder_is_not_said_to_be_in_its_report(
    tree: Path, tmp_path: Path, run_cli, capsys
) -> None:
    # "run report (lists this evaluation too)" was printed, and the run's page rewritten, for an
    # evaluation that page leaves out (another model's).
    make_tiny_bundle(tmp_path / "run" / "model")
    other = make_tiny_bundle(tmp_path / "other", seed=1)
    assert run_cli("evaluate", str(other), str(tree), "--out", str(tmp_path / "run" / "eval-other")) == 0
    said = capsys.readouterr().err
    assert "report:" in said and "lists this evaluation too" not in said


def test_the_runs_page_is_written_again_to_list_an_evaluation_on_other_photos(
    tree: Path, tmp_path: Path, run_cli, capsys
) -> None:
    run, _ = _run_folder(tmp_path, tree)
    other = tmp_path / "web photos"
    shutil.copytree(tree, other)
    assert run_cli("evaluate", str(run), str(other)) == 0
    said = "".join(capsys.readouterr().err.split())  # wrapped at the terminal's width
    assert "".join(f"run report (lists this evaluation too): {run / 'report.html'}".split()) in said
    assert "eval-web photos" in html.unescape((run / "report.html").read_text(encoding="utf-8"))


def test_an_out_folder_that_cannot_be_written_is_said_before_scoring(bundle, tree, tmp_path, monkeypatch):
    # The whole folder was scored (minutes on a real test set), then "Read-only file system".
    import os

    real_access = os.access
    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked and real_access(path, mode))
    scored: list[int] = []

    class Counting(ColourOracle):
        def predict_proba(self, batch):
            scored.append(len(batch))
            return super().predict_proba(batch)

    with pytest.raises(SportsdetError, match=r"--out .*locked/ev: cannot write in .*locked"):
        evaluate(bundle, tree, out_dir=locked / "ev", backend=Counting())
    assert scored == []


def test_the_console_lists_the_most_given_of_many_classes_without_photos(capsys) -> None:
    # 605 photos of 5 sports through a 105-class model: 50 rows of "0.00 - -" on the terminal.
    from sportsdet.cli.evaluate import ONLY_GIVEN_ROWS, print_summary

    labels = ["tennis"] + [f"sport {i:02d}" for i in range(15)]
    matrix = np.zeros((16, 16), dtype=int)
    matrix[0, 0] = 10
    matrix[0, 1:] = np.arange(15, 0, -1)  # sport 00 given 15 photos, sport 14 one
    row = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    per_class = {"tennis": {"precision": 1.0, "recall": 0.08, "f1": 0.15, "support": 130}}
    per_class |= {label: dict(row) for label in labels[1:]}
    metrics = {"accuracy_ci95": [0.04, 0.13], "split": None, "n": 130, "accuracy": 0.08,
               "balanced_accuracy": 0.08, "macro_f1": 0.15, "top_k": 5, "top5_accuracy": 0.5, "ece": 0.1,
               "per_class": per_class, "labels": labels, "confusion_matrix": matrix.tolist()}  # fmt: skip
    print_summary(metrics)
    table = capsys.readouterr().out.split("per class", 1)[1]
    listed = [line.split("│")[1].strip() for line in table.splitlines() if line.startswith("│")]
    assert listed == ["tennis", *(f"sport {i:02d}" for i in range(ONLY_GIVEN_ROWS))]
    assert f"the last {ONLY_GIVEN_ROWS} (the most given, of 15;" in " ".join(table.split())


def test_class_names_the_font_lacks_are_drawn_without_warnings(tmp_path: Path) -> None:
    # A CJK class name printed a dozen matplotlib "Glyph ... missing from font" warnings, with
    # source paths, in the middle of train's and evaluate's output.
    import warnings

    labels = ["相扑", "卡巴迪", "polo"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        plot_confusion_matrix(np.eye(3, dtype=int) * 4, labels, tmp_path / "cm.png")
    assert (tmp_path / "cm.png").stat().st_size > 0


def _run_with_model(path: Path) -> Path:
    make_tiny_bundle(path / "model")
    (path / "config.json").write_text(json.dumps({"model": "colour", "data": "data", "options": {}}))
    return path


def test_a_run_whose_model_is_replaced_meanwhile_gets_no_old_evaluation(tree: Path, tmp_path: Path) -> None:
    # `train --force` started (and stopped) while the run's old model was scored: RUN/eval got the
    # old model's results inside the new run, which had no model.
    run = _run_with_model(tmp_path / "run")

    def replaced(folder: Path) -> None:  # what a new `train --force` does while photos are scored
        manifest = json.loads((run / "model" / "bundle.json").read_text())
        manifest["weights"]["sha256"] = "0" * 64
        (run / "model" / "bundle.json").write_text(json.dumps(manifest))

    with pytest.raises(SportsdetError, match=r"run: its model was replaced or removed while it was being "
                       r"evaluated .*nothing written"):
        evaluate(run, tree, backend=ColourOracle(), on_out=replaced)
    assert not list(run.glob("eval*"))
    make_tiny_bundle(run / "model")
    with pytest.raises(SportsdetError, match="replaced or removed"):
        evaluate(run, tree, backend=ColourOracle(), on_out=lambda folder: shutil.rmtree(run / "model"))


def test_evaluating_a_run_another_process_is_writing_is_refused(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # evaluate took no lock: `train --force` swept its half-written files aside ("cannot write ...
    # free some space") or left it writing into the new run.
    from conftest import held_by_another_process

    # A run still without its model (a `train --force` at work) was told "start it again with --force".
    training = tmp_path / "training"
    (training / "checkpoints").mkdir(parents=True)
    (training / "config.json").write_text('{"model": "colour", "data": "data", "options": {}}')
    with held_by_another_process(training) as pid:
        with pytest.raises(SportsdetError, match=rf"training: this run has no model yet: another sportsdet "
                           rf"process \(pid {pid}\) is writing it; wait for it to finish"):
            evaluate(training, tree, backend=ColourOracle())
    with pytest.raises(SportsdetError, match="start it again with --force"):  # none at work: stopped
        evaluate(training, tree, backend=ColourOracle())
    run = _run_with_model(tmp_path / "run")
    with held_by_another_process(run) as pid:
        busy = rf"run: another sportsdet process \(pid {pid}\) is writing this run"
        with pytest.raises(SportsdetError, match=busy):
            evaluate(run, tree, backend=ColourOracle())
        scored: list[int] = []
        monkeypatch.setattr("sportsdet.evaluate.run_model", lambda *a, **k: scored.append(1))
        result = CliRunner().invoke(app, ["evaluate", str(run), str(tree)])
        assert isinstance(result.exception, SportsdetError) and re.search(busy, str(result.exception))
        assert scored == []  # refused before any photo is scored
        assert not list(run.glob("eval*"))
        monkeypatch.undo()
        evaluate(run, tree, backend=ColourOracle(), out_dir=tmp_path / "elsewhere")  # outside the run: free
    evaluate(run, tree, backend=ColourOracle())
    assert (run / "eval-data" / "metrics.json").is_file()
    # A folder that only looks like a run (a project's own config.json) is neither locked nor
    # given a lock file.
    project = tmp_path / "project"
    project.mkdir()
    (project / "config.json").write_text('{"name": "web app"}')
    evaluate(run, tree, backend=ColourOracle(), out_dir=project / "eval")
    assert sorted(p.name for p in project.iterdir()) == ["config.json", "eval"]


def test_many_unknown_class_folders_are_named_eight_at_a_time(
    bundle: Path, tree: Path, tmp_path: Path
) -> None:
    # 195 folders the built-in model lacks made an error of 3,000 characters, its advice at the end.
    for i in range(20):
        shutil.copytree(tree / "polo", tree / f"sport {i:02d}", dirs_exist_ok=True)
    with pytest.raises(SportsdetError) as caught:
        evaluate(bundle, tree, out_dir=tmp_path / "eval", backend=ColourOracle())
    said = str(caught.value)
    assert "'sport 07' and 12 more are not among the model's 3 labels" in said and "sport 08" not in said
    assert len(said) < 600
    # A folder with a "did you mean" comes first: sorted by name, the one fixable hint was cut.
    shutil.copytree(tree / "polo", tree / "zrowing")
    hinted_first = r"folder\(s\) 'zrowing' \(did you mean 'rowing'\?\), 'sport 00'"
    with pytest.raises(SportsdetError, match=hinted_first):
        evaluate(bundle, tree, out_dir=tmp_path / "eval", backend=ColourOracle())
    shutil.rmtree(tree / "zrowing")
    notes: list[str] = []
    out = tmp_path / "eval"
    evaluate(bundle, tree, out_dir=out, backend=ColourOracle(), known_only=True, warn=notes.append)
    left = next(n for n in notes if n.startswith("left out (--known-only) 20 class folder(s)"))
    assert left.endswith("'sport 07' (4 photos) and 12 more (48 photos)")


def test_photos_and_model_given_the_wrong_way_round_are_said_so(bundle: Path, tree: Path, run_cli,
                                                                capsys, monkeypatch) -> None:
    # `evaluate PHOTOS RUN` said "PHOTOS: bundle.json is missing; this is not a sportsdet model
    # bundle"; `evaluate builtn PHOTOS` said "no such model bundle" and nothing of 'builtin'.
    assert run_cli("evaluate", str(tree), str(bundle)) == 2
    err = capsys.readouterr().err
    assert f"is no model and {bundle} is one: the model comes first" in " ".join(err.split())
    assert run_cli("evaluate", "builtn", str(tree)) == 2
    assert "(did you mean 'builtin', the built-in model?)" in capsys.readouterr().err
    assert run_cli("evaluate", str(tree), "builtin") == 2  # the built-in model by name
    assert "the model comes first (`sportsdet evaluate builtin" in " ".join(capsys.readouterr().err.split())
    # A folder named builtin here is that folder, no model: not "builtin is one".
    monkeypatch.chdir(tree.parent)
    (tree.parent / "builtin").mkdir()
    assert run_cli("evaluate", str(tree), "builtin") == 2
    assert "the model comes first" not in capsys.readouterr().err


def test_the_printed_headline_says_each_number_of_metrics_json(capsys, monkeypatch) -> None:
    # Imbalanced on purpose: accuracy, balanced accuracy, macro-F1 and top-k all differ.
    from sportsdet.cli.evaluate import print_summary

    monkeypatch.setenv("COLUMNS", "200")
    y_true = np.array([0] * 8 + [1] * 2 + [2] * 2)
    predicted = np.array([0] * 8 + [0, 1] + [1, 2])
    probs = np.full((12, 3), 0.1, dtype=np.float32)
    probs[np.arange(12), predicted] = 0.8
    metrics = compute_metrics(y_true, probs, CLASSES)
    metrics["abstain"] = None
    print_summary(metrics)
    said = capsys.readouterr().out
    for name, key in (("balanced accuracy", "balanced_accuracy"), ("macro-F1", "macro_f1"),
                      ("accuracy", "accuracy"), ("calibration error (ECE)", "ece")):  # fmt: skip
        assert re.search(rf"│ {re.escape(name)}\s*│\s*{metrics[key]:.1%}", said), name
    assert len({round(metrics[k], 3) for k in ("accuracy", "balanced_accuracy", "macro_f1")}) == 3


def test_every_name_of_a_split_is_taken_as_data_folders_name_it() -> None:
    from sportsdet.evaluate import normalise_split

    for name, meant in (("Validation", "valid"), ("val", "valid"), ("VALID", "valid"), ("Test", "test")):
        assert normalise_split(name) == meant, name
    with pytest.raises(SportsdetError, match=r"--split 'dev': use one of train, valid, test"):
        normalise_split("dev")
