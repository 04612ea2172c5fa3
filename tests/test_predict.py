"""Predictor and `sportsdet predict` / `sportsdet info`: inputs, order, errors, formats, exit codes."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import CLASSES, LocalServer, allow_heif_writing, image_bytes, make_image
from PIL import Image
from typer.testing import CliRunner

from sportsdet.bundle import builtin_bundle_path, load_bundle
from sportsdet.cli import app
from sportsdet.errors import BundleError, SportsdetError
from sportsdet.predict import Predictor, expand_inputs

runner = CliRunner()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import make_tiny_bundle

    return make_tiny_bundle(tmp_path_factory.mktemp("model") / "bundle")


@pytest.fixture(scope="module")
def predictor(bundle: Path) -> Predictor:
    return Predictor(bundle, batch_size=3, top_k=3)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """photos/a.jpg, photos/b.png, photos/sub/deeper/c.jpg, plus things that must be skipped."""
    root = tmp_path / "photos"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / ".hidden").mkdir()
    make_image((200, 30, 30), seed=1).save(root / "a.jpg")
    make_image((30, 200, 30), seed=2).save(root / "b.png")
    make_image((30, 30, 200), seed=3).save(root / "sub" / "deeper" / "c.jpg")
    make_image((30, 30, 200), seed=4).save(root / ".hidden" / "skip.jpg")
    make_image((30, 30, 200), seed=5).save(root / ".skip.jpg")
    (root / "notes.txt").write_text("not an image")
    return root


def _names(items) -> list[str]:
    return [Path(item.name).name for item in items]


# ----------------------------------------------------------------------------- input expansion


def test_folder_is_recursive_sorted_and_skips_hidden_and_non_images(photos: Path) -> None:
    items = list(expand_inputs([str(photos)]))
    assert [Path(i.name).relative_to(photos).as_posix() for i in items] == [
        "a.jpg",
        "b.png",
        "sub/deeper/c.jpg",
    ]
    assert all(i.error is None for i in items)


def test_globs_are_expanded_by_us(photos: Path) -> None:
    assert _names(expand_inputs([str(photos / "*.jpg")])) == ["a.jpg"]  # .skip.jpg is hidden
    assert _names(expand_inputs([str(photos / "**" / "*.jpg")])) == ["a.jpg", "c.jpg"]
    (item,) = expand_inputs([str(photos / "*.gif")])
    assert item.error == "no image files match this pattern"


def test_a_quoted_pattern_that_matches_folders_searches_them_as_the_shell_would(photos: Path) -> None:
    # 'photo*' matched the folder `photos` and found nothing; unquoted (the shell's match) it worked.
    assert _names(expand_inputs([str(photos.parent / "photo*")])) == ["a.jpg", "b.png", "c.jpg"]
    assert _names(expand_inputs([str(photos / "s*")])) == ["c.jpg"]
    assert _names(expand_inputs([str(photos / "**")])) == ["a.jpg", "b.png", "c.jpg"]  # no repeats


def test_a_pattern_keeps_a_linked_photo_as_a_folder_does(photos: Path) -> None:
    (photos / "link.jpg").symlink_to(photos / "a.jpg")  # the glob alone dropped it (same real file)
    from_folder = [Path(item.name).name for item in expand_inputs([str(photos)])]
    assert _names(expand_inputs([str(photos / "*.jpg")])) == ["a.jpg", "link.jpg"]
    assert "link.jpg" in from_folder


def test_a_url_given_twice_is_one_item() -> None:
    # `predict URL URL` fetched and labelled it twice; a path given twice was one row already.
    urls = ["http://127.0.0.1:9/a.jpg", "http://127.0.0.1:9/b.jpg", "http://127.0.0.1:9/a.jpg"]
    assert [item.source for item in expand_inputs(urls)] == urls[:2]


def test_a_model_named_with_a_tilde_or_a_bundle_folder_ending_in_onnx(bundle, photos, tmp_path, monkeypatch):
    import shutil

    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copy(builtin_bundle_path() / "model.int8.onnx", tmp_path / "m.onnx")
    # `--model=~/m.onnx` (a ~ the shell leaves alone): "no such ONNX model file" for info.
    for command in (["info", "~/m.onnx"], ["predict", str(photos / "a.jpg"), "--model=~/m.onnx"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 0, result.output
    folder = tmp_path / "bundle.onnx"  # a bundle folder, named like a file: taken for an ONNX file
    shutil.copytree(bundle, folder)
    for command in (["info", str(folder)], ["predict", str(photos / "a.jpg"), "-m", str(folder)]):
        result = runner.invoke(app, command)
        assert result.exit_code == 0, result.output
    # The Predictor (predict, serve) reads it as the bundle it is (bundle.json's labels and rule).
    assert Predictor(folder).bundle is not None


def test_a_pattern_below_a_folder_with_brackets_in_its_name(tmp_path: Path) -> None:
    # "[2024] trip" read as a character class: the pattern matched nothing, or the wrong folder.
    trip = tmp_path / "[2024] trip"
    trip.mkdir()
    make_image((200, 30, 30), seed=1).save(trip / "a.jpg")
    (tmp_path / "2 trip").mkdir()
    make_image((200, 30, 30), seed=2).save(tmp_path / "2 trip" / "wrong.jpg")
    assert _names(expand_inputs([str(trip / "*.jpg")])) == ["a.jpg"]
    assert _names(expand_inputs([str(tmp_path / "[2]*" / "*.jpg")])) == ["wrong.jpg"]  # still a pattern


def test_an_empty_input_is_an_error_not_the_current_folder(photos: Path, monkeypatch) -> None:
    # Path("") is "."; `sportsdet predict "$UNSET"` labelled every photo below the current folder.
    monkeypatch.chdir(photos)
    empty, dash = expand_inputs(["", "-"])
    assert empty.error == "empty input: give a file, folder, pattern or URL"
    assert "standard input" in (dash.error or "")


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS file names must be UTF-8")
def test_a_file_name_that_is_not_utf8_is_shown_escaped(tmp_path: Path) -> None:
    # Printed raw, it raised UnicodeEncodeError under a strict UTF-8 locale (en_US.UTF-8), in
    # every output format; the file itself is still read by its real name.
    Image.new("RGB", (40, 40), (200, 100, 50)).save(tmp_path / "a.jpg")
    os.rename(bytes(tmp_path / "a.jpg"), bytes(tmp_path) + b"/\xff\xfe.jpg")
    (item,) = expand_inputs([str(tmp_path)])
    assert item.name.endswith("\\xff\\xfe.jpg") and item.name.encode("utf-8")
    assert isinstance(item.source, Path) and item.source.is_file()


def test_expansion_is_lazy(photos: Path) -> None:
    def sources():
        yield str(photos / "a.jpg")
        raise AssertionError("read past the first input")

    assert next(expand_inputs(sources())).name.endswith("a.jpg")


def test_empty_folder_missing_file_and_other_schemes_are_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    items = list(expand_inputs([str(tmp_path / "empty"), str(tmp_path / "nope.jpg"), "ftp://host/a.jpg"]))
    assert [i.error for i in items] == [
        "no image files found in this folder (looked for .jpg, .png, ... recursively)",
        "file not found",
        "unsupported URL scheme; only http:// and https:// URLs are fetched",
    ]




def test_a_folders_camera_raw_files_and_broken_photo_links_are_said_not_passed_over(
    photos: Path, tmp_path: Path
) -> None:
    (photos / "IMG_0001.dng").write_bytes(b"\x00raw camera data")
    (photos / "gone.jpg").symlink_to(tmp_path / "moved-away.jpg")
    items = list(expand_inputs([str(photos)]))
    errors = {Path(i.name).name: i.error for i in items if i.error}
    assert errors == {
        "IMG_0001.dng": "a picture format sportsdet cannot read: convert it to JPEG, PNG, HEIC, WebP, "
        "AVIF, GIF, BMP or TIFF",
        "gone.jpg": "not a regular file (a link to nothing, a pipe or a device)",
    }
    # The photos are labelled as before, in their order; notes.txt and hidden files stay unsaid.
    assert [Path(i.name).name for i in items if not i.error] == ["a.jpg", "b.png", "c.jpg"]
    # A folder holding only raw files says what they are, not "no image files found".
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "a.NEF").write_bytes(b"raw")
    (item,) = expand_inputs([str(tmp_path / "raw")])
    assert item.error.startswith("a picture format sportsdet cannot read")
    # A pattern says them as the folder does (it skipped them: "no image files match").
    (pattern,) = expand_inputs([str(tmp_path / "raw" / "*")])
    assert pattern.error.startswith("a picture format sportsdet cannot read")
    assert pattern.name.endswith("a.NEF")
    named = {Path(i.name).name: i.error for i in expand_inputs([str(photos / "*")])}
    assert named["IMG_0001.dng"].startswith("a picture format") and named["a.jpg"] is None
# ----------------------------------------------------------------------------- Predictor


def test_results_match_direct_model_output(predictor: Predictor, photos: Path) -> None:
    from PIL import Image

    results = list(predictor.predict_sources([str(photos)]))
    assert len(results) == 3
    for result in results:
        with Image.open(result.input) as image:
            probs = predictor.predict_image(image)
        assert probs.shape == (len(CLASSES),)
        assert probs.sum() == pytest.approx(1.0, abs=1e-5)
        best = int(np.argmax(probs))
        assert result.label == CLASSES[best]
        assert result.score == pytest.approx(float(probs[best]), abs=1e-5)


def test_iphone_heic_in_a_folder_is_predicted_like_the_same_photo_as_png(
    predictor: Predictor, tmp_path: Path
) -> None:
    allow_heif_writing()
    folder = tmp_path / "DCIM"
    folder.mkdir()
    photo = make_image((200, 30, 30), size=64, seed=7)
    photo.save(folder / "IMG_0001.HEIC", quality=95)
    photo.save(folder / "IMG_0001.png")
    heic, png = predictor.predict_sources([str(folder)])
    assert Path(heic.input).name == "IMG_0001.HEIC" and heic.error is None
    assert heic.label == png.label
    assert heic.score == pytest.approx(png.score, abs=0.02)  # lossy HEVC, same picture


def test_heic_url_without_an_image_content_type_is_still_a_photo(
    bundle: Path, http_server: LocalServer, tmp_path: Path
) -> None:
    import json
    import subprocess
    import sys

    heic = image_bytes((200, 30, 30), "HEIF", 64)  # predict below runs in a fresh process
    url = http_server.add("/IMG_0003.HEIC", heic, "application/octet-stream")
    done = subprocess.run(
        [sys.executable, "-m", "sportsdet", "predict", url, "--model", str(bundle), "--format", "jsonl"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    (record,) = map(json.loads, done.stdout.splitlines())
    assert record["error"] is None and record["label"] in CLASSES


def test_top_k_sorted_and_clamped(predictor: Predictor, bundle: Path, photos: Path) -> None:
    (result,) = predictor.predict_sources([str(photos / "a.jpg")])
    scores = [s for _, s in result.top_k]
    assert len(result.top_k) == 3 and scores == sorted(scores, reverse=True)
    assert result.top_k[0] == (result.label, result.score)
    assert sorted(label for label, _ in result.top_k) == sorted(CLASSES)
    one = Predictor(bundle, top_k=1)
    (result1,) = one.predict_sources([str(photos / "a.jpg")])
    assert result1.top_k == [(result.label, pytest.approx(result.score))]
    assert Predictor(bundle, top_k=50).top_k == len(CLASSES)


def test_mixed_inputs_keep_order_and_report_errors(
    predictor: Predictor, photos: Path, tmp_path: Path, http_server: LocalServer
) -> None:
    html = tmp_path / "page.jpg"
    html.write_text("<!doctype html><html><body>404</body></html>")
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    truncated = tmp_path / "truncated.jpg"
    whole = image_bytes(size=64)
    truncated.write_bytes(whole[: len(whole) // 2])
    sources = [
        str(photos / "a.jpg"),
        str(tmp_path / "missing.jpg"),
        str(html),
        http_server.url("/good.jpg"),
        http_server.url("/missing.jpg"),
        str(empty),
        http_server.url("/page.html"),
        str(photos / "sub"),
        str(truncated),
        str(photos / "b.png"),
    ]
    results = list(predictor.predict_sources(sources))  # batch_size 3: errors straddle batches
    assert [r.input for r in results] == sources[:7] + [str(photos / "sub" / "deeper" / "c.jpg")] + sources[
        8:
    ]
    ok = [r.ok for r in results]
    assert ok == [True, False, False, True, False, False, False, True, False, True]
    assert results[1].error == "file not found"
    assert "HTML page" in results[2].error
    assert "HTTP 404 from URL" in results[4].error
    assert "empty" in results[5].error
    assert "web page, not an image" in results[6].error
    assert "truncated" in results[8].error.lower()
    for failed in (r for r in results if not r.ok):
        assert failed.label is None and failed.score is None and failed.top_k == []


def test_url_result_equals_file_result(
    predictor: Predictor, http_server: LocalServer, tmp_path: Path
) -> None:
    local = tmp_path / "same.jpg"
    local.write_bytes(LocalServer.GOOD_JPEG())
    by_url, by_file = predictor.predict_sources([http_server.url("/good.jpg"), str(local)])
    assert by_url.top_k == by_file.top_k


def test_batch_size_does_not_change_results(bundle: Path, photos: Path) -> None:
    one = [r.top_k for r in Predictor(bundle, batch_size=1).predict_sources([str(photos)])]
    many = [r.top_k for r in Predictor(bundle, batch_size=16).predict_sources([str(photos)])]
    assert len(one) == 3
    for a, b in zip(one, many, strict=True):
        assert [label for label, _ in a] == [label for label, _ in b]
        assert [s for _, s in a] == pytest.approx([s for _, s in b], abs=1e-5)


def test_bytes_input(predictor: Predictor) -> None:
    (result,) = predictor.predict_sources([image_bytes()])
    assert result.ok and result.input == "<bytes #0>"


class _FixedBackend:
    """A torch-free stand-in: the seam another engine (onnxruntime) plugs into."""

    def __init__(self, probs: list[float]) -> None:
        self.probs = np.asarray(probs, dtype=np.float32)
        self.calls: list[int] = []

    def predict_proba(self, batch: np.ndarray) -> np.ndarray:
        assert batch.dtype == np.float32 and batch.shape[1:] == (3, 32, 32)
        self.calls.append(len(batch))
        return np.tile(self.probs, (len(batch), 1))


def test_custom_backend_and_batching(bundle: Path, photos: Path) -> None:
    backend = _FixedBackend([0.2, 0.5, 0.3])
    predictor = Predictor(bundle, batch_size=2, top_k=2, backend=backend)
    results = list(predictor.predict_sources([str(photos), str(photos / "nope.jpg")]))
    assert sorted(backend.calls) == [1, 2]  # batches of 2 (two workers: either may finish first)
    assert [r.label for r in results[:3]] == ["polo"] * 3
    assert results[0].top_k == [("polo", pytest.approx(0.5)), ("rowing", pytest.approx(0.3))]
    assert results[3].error == "file not found"


def test_backend_with_wrong_output_shape_is_an_error(bundle: Path, photos: Path) -> None:
    predictor = Predictor(bundle, backend=_FixedBackend([0.5, 0.5]))
    with pytest.raises(SportsdetError, match=r"shape \(1, 2\), expected \(1, 3\)"):
        list(predictor.predict_sources([str(photos / "a.jpg")]))


def test_bad_bundle_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no such model bundle"):
        Predictor(tmp_path / "nothing")


def test_run_folder_uses_its_model(bundle: Path, tmp_path: Path, photos: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copytree(bundle, run / "model")
    predictor = Predictor(run)
    assert predictor.bundle.path == run / "model"


# ----------------------------------------------------------------------------- CLI


def test_cli_jsonl_schema_and_exit_code(bundle: Path, photos: Path, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.jpg")
    result = runner.invoke(
        app,
        ["predict", str(photos / "a.jpg"), missing, "--model", str(bundle), "--format", "jsonl", "-k", "2"],
    )
    assert result.exit_code == 1, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2
    good, bad = (json.loads(line) for line in lines)
    assert list(good) == ["input", "label", "score", "uncertain", "top_k", "error", "warning"]
    assert good["input"] == str(photos / "a.jpg") and good["error"] is None
    assert isinstance(good["label"], str) and isinstance(good["score"], float)
    assert [list(entry) for entry in good["top_k"]] == [["label", "score"]] * 2
    assert good["top_k"][0] == {"label": good["label"], "score": good["score"]}
    assert bad == {
        "input": missing,
        "label": None,
        "score": None,
        "uncertain": None,  # not labelled: neither certain nor uncertain (false before)
        "top_k": [],
        "error": "file not found",
        "warning": None,
    }
    assert "1 of 2" in result.stderr  # the summary goes to stderr, not into the jsonl


def test_a_file_named_with_an_escape_code_keeps_its_name_and_never_reaches_the_terminal(
    bundle: Path, photos: Path, tmp_path: Path
) -> None:
    name, folder = "esc\x1b[31mred.jpg", tmp_path / "odd"
    folder.mkdir()
    (folder / name).write_bytes((photos / "a.jpg").read_bytes())
    # CSV wrote 'escred.jpg' (click strips ANSI codes when stdout is no terminal): another file.
    for form in ("csv", "jsonl"):
        result = runner.invoke(app, ["predict", str(folder), "-m", str(bundle), "--format", form])
        assert result.exit_code == 0, result.output
        if form == "csv":
            assert list(csv.reader(io.StringIO(result.stdout)))[1][0] == str(folder / name)
        else:
            assert json.loads(result.stdout)["input"] == str(folder / name)
    # The table is for a person: the code is shown, not obeyed.
    result = runner.invoke(app, ["predict", str(folder), "-m", str(bundle)], color=True)
    assert result.exit_code == 0 and "\x1b" not in result.stdout
    input_column = "".join(line.split("│")[1].strip() for line in result.stdout.splitlines() if "│" in line)
    assert input_column.endswith("esc\\x1b[31mred.jpg")  # folded over lines in the table


def test_ctrl_c_keeps_what_was_labelled_and_says_so(bundle: Path, photos: Path, monkeypatch) -> None:
    # typer printed a blank line and exited 130: the table of the photos already labelled was lost.
    real = Predictor.predict_sources

    def interrupted_after_two(self, sources):
        for number, result in enumerate(real(self, sources)):
            if number == 2:
                raise KeyboardInterrupt
            yield result

    monkeypatch.setattr(Predictor, "predict_sources", interrupted_after_two)
    result = runner.invoke(app, ["predict", str(photos), "-m", str(bundle)], env={"COLUMNS": "200"})
    assert result.exit_code == 130
    assert "a.jpg" in result.stdout and "b.png" in result.stdout  # the table of the two labelled
    assert "interrupted after 2 photo(s) (those labelled are listed above)" in result.stderr


def test_one_photo_named_two_ways_is_labelled_once(photos: Path, monkeypatch) -> None:
    monkeypatch.chdir(photos.parent)
    names = [str(photos / "a.jpg"), "photos/a.jpg", "photos/./sub/../a.jpg"]
    assert [item.name for item in expand_inputs(names)] == [str(photos / "a.jpg")]


def test_a_top_k_of_zero_is_refused(bundle: Path, photos: Path) -> None:
    result = runner.invoke(app, ["predict", str(photos), "-m", str(bundle), "--top-k", "0"])
    assert result.exit_code == 2 and "--top-k" in result.output


def test_every_csv_record_has_every_column_an_error_row_too(bundle: Path, photos: Path) -> None:
    # An error row has no top-k: its empty cells keep the warning column where the header says.
    (photos / "broken.jpg").write_text("<html>not a photo</html>")
    result = runner.invoke(
        app, ["predict", str(photos), "-m", str(bundle), "--format", "csv", "--top-k", "2"]
    )
    header, *records = list(csv.reader(io.StringIO(result.stdout)))
    assert result.exit_code == 1 and len(records) == 4
    assert all(len(record) == len(header) for record in records)
    broken = next(dict(zip(header, r, strict=True)) for r in records if r[0].endswith("broken.jpg"))
    assert broken["error"] and broken["label"] == broken["top1_label"] == broken["warning"] == ""


def test_cli_all_good_exits_zero_and_csv_header(bundle: Path, photos: Path) -> None:
    result = runner.invoke(
        app, ["predict", str(photos), "-m", str(bundle), "--format", "csv", "--top-k", "2"]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == [
        "input",
        "label",
        "score",
        "uncertain",
        "error",
        "top1_label",
        "top1_score",
        "top2_label",
        "top2_score",
        "warning",
    ]
    assert len(rows) == 4
    # The tiny bundle has no abstain rule: `uncertain` is empty (no check ran), not "false".
    assert all(row[1] in CLASSES and row[3:5] == ["", ""] and row[5] == row[1] for row in rows[1:])


def test_cli_table(bundle: Path, photos: Path) -> None:
    args = ["predict", str(photos / "a.jpg"), str(photos / "zz.jpg"), "-m", str(bundle)]
    result = runner.invoke(app, args, env={"COLUMNS": "250"})
    assert result.exit_code == 1
    assert "a.jpg" in result.stdout and "file not found" in result.stdout
    # The error sat under "next 2" as if it were a runner-up label.
    header = next(line for line in result.stdout.splitlines() if "input" in line and "label" in line)
    assert "next 2, notes" in header
    alone = runner.invoke(app, [*args[:2], *args[3:]], env={"COLUMNS": "250"})  # a.jpg alone: no notes
    assert "next 2 " in alone.stdout and "notes" not in alone.stdout
    # --top-k 1: the last column holds only notes and errors, and says so (it had no name).
    result = runner.invoke(app, [*args, "--top-k", "1"], env={"COLUMNS": "250"})
    header = next(line for line in result.stdout.splitlines() if "input" in line and "label" in line)
    assert "notes" in header and "file not found" in result.stdout


def test_cli_table_names_photos_inside_the_folder_they_share(bundle: Path, photos: Path) -> None:
    result = runner.invoke(app, ["predict", str(photos), "-m", str(bundle)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert any(line.strip() == f"in {photos}/" for line in lines)  # the shared folder, said once
    shown = sorted(line.split("│")[1].strip() for line in lines if line.startswith("│"))
    assert shown == ["a.jpg", "b.png", "sub/deeper/c.jpg"]
    # One photo (or photos from unrelated places): its path as given.
    single = runner.invoke(app, ["predict", str(photos / "a.jpg"), "-m", str(bundle)], env={"COLUMNS": "250"})
    assert f"│ {photos / 'a.jpg'} " in single.stdout and f"in {photos}/" not in single.stdout


def test_cli_without_model_says_no_builtin(monkeypatch: pytest.MonkeyPatch, photos: Path) -> None:
    import sportsdet.bundle

    monkeypatch.setattr(sportsdet.bundle, "builtin_bundle_path", lambda: None)
    result = runner.invoke(app, ["predict", str(photos / "a.jpg")])
    assert isinstance(result.exception, SportsdetError)
    assert "no built-in model is installed yet; pass --model RUN/model" in str(result.exception)


def test_console_script_turns_errors_into_one_line(tmp_path: Path) -> None:
    # Through the real entry point: exit code 2, one "error:" line, no traceback.
    code = "import sys; from sportsdet.cli import main; sys.argv = ['sportsdet', *sys.argv[1:]]; main()"
    proc = subprocess.run(
        [sys.executable, "-c", code, "predict", "x.jpg", "--model", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "250"},
    )
    assert proc.returncode == 2
    assert "error:" in proc.stderr and "no such model bundle" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_info_json(bundle: Path) -> None:
    result = runner.invoke(app, ["info", str(bundle), "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["labels"] == CLASSES and info["num_classes"] == 3
    assert info["model"]["name"] == "seed-cnn"
    assert info["preprocessing"]["input_size"] == 32
    assert set(info["files"]) == {"bundle.json", "weights.safetensors"}
    assert info["files"]["weights.safetensors"] == (bundle / "weights.safetensors").stat().st_size
    assert info["weights"]["sha256"] == load_bundle(bundle).manifest["weights"]["sha256"]


def test_info_table(bundle: Path) -> None:
    result = runner.invoke(app, ["info", str(bundle)])
    assert result.exit_code == 0, result.output
    assert (
        "seed-cnn" in result.stdout
        and "air hockey" in result.stdout
        and "weights.safetensors" in result.stdout
    )


def test_info_says_in_words_what_the_builtin_model_was_trained_on() -> None:
    result = runner.invoke(app, ["info"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in result.stdout.splitlines()
        if line.count("│") == 3
    }
    assert rows["sources"] == "sports100 (100 classes), websports (5 classes)"
    assert rows["split"].startswith("train 14,652 / valid 620 / test 799 (sports100: official;")
    assert rows["input"].startswith("300 px, crop") and "mean 0.498, std 0.502" in rows["input"]
    # In % as train, evaluate and the report say it (it read "ECE 0.210 -> 0.016" here alone).
    assert re.search(r"validation photos, ECE \d+\.\d% -> \d+\.\d%$", rows["calibration"])
    # "entropy < 0.85" read as if the sure photos (low entropy) were the uncertain ones.
    assert rows["abstain"].startswith("uncertain when its certainty (1 - entropy / ln classes) <")
    assert rows["seen photos"].endswith(
        "620 validation photos known by content: `evaluate` leaves them and their resized or re-saved "
        "copies out"
    )
    # No key dumps of nested records: those are what `info --json` is for.
    assert not any(name.startswith(("training.", "data.", "metrics.")) for name in rows)
    assert not any("{" in value for value in rows.values())
    assert "sportsdet info --json prints everything recorded" in result.stdout
    exported = builtin_bundle_path() / "model.int8.onnx"
    onnx = runner.invoke(app, ["info", str(exported)], env={"COLUMNS": "200"})
    assert onnx.exit_code == 0, onnx.output
    assert "int8 per-channel weights, uint8 activations" in onnx.stdout and '{"method"' not in onnx.stdout


def test_info_says_when_the_scores_are_not_calibrated(bundle: Path, tmp_path: Path) -> None:
    # Training that fits no temperature records 1.0 and why; info read it as a calibration.
    copy = tmp_path / "uncalibrated"
    shutil.copytree(bundle, copy)
    manifest = json.loads((copy / "bundle.json").read_text())
    why = "the validation split (5 images, 4 wrong) is too small to fit a temperature on"
    manifest["training"] = {"calibration": {"temperature": 1.0, "method": "none", "why": why}}
    (copy / "bundle.json").write_text(json.dumps(manifest))
    result = runner.invoke(app, ["info", str(copy)], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    [row] = [line for line in result.stdout.splitlines() if "calibration" in line]
    assert f"not calibrated: {why}" in row and "temperature 1.000" not in row


def test_info_of_a_fixed_threshold_says_so(bundle: Path, tmp_path: Path) -> None:
    # A rule stored from --min-score has no coverage: info said "fitted to answer 0% of --min-score".
    from sportsdet.abstain import Abstain
    from sportsdet.abstain_bundle import store_abstain

    copy = tmp_path / "fixed"
    shutil.copytree(bundle, copy)
    store_abstain(copy, Abstain.min_score(0.6))
    result = runner.invoke(app, ["info", str(copy)], env={"COLUMNS": "250"})
    [row] = [line for line in result.stdout.splitlines() if "abstain" in line]
    assert "uncertain when its top probability < 0.6000 (a fixed threshold: --min-score)" in row
    assert "0%" not in row


def test_info_labels_lists_every_class_the_model_knows(bundle: Path) -> None:
    result = runner.invoke(app, ["info", str(bundle), "--labels"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == CLASSES
    builtin = runner.invoke(app, ["info", "--labels"]).stdout.splitlines()
    assert len(builtin) == 105 and {"soccer", "badminton", "american football"} <= set(builtin)
    # With --json: the whole record came out and --labels went unsaid.
    as_json = runner.invoke(app, ["info", str(bundle), "--labels", "--json"])
    assert json.loads(as_json.stdout) == CLASSES


def test_no_blank_line_where_stderr_is_no_terminal(bundle: Path, photos: Path) -> None:
    # The progress bar, drawn nowhere there, left a blank line at the top of every log.
    command = [sys.executable, "-m", "sportsdet", "predict", str(photos / "a.jpg"), "-m", str(bundle)]
    done = subprocess.run([*command, "--no-abstain"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stderr == "", repr(done.stderr)
    # A model without an abstain rule: one line says every photo got a label, however unsure ("no
    # uncertain photos" read as "the model was sure of every one").
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stderr.startswith("this model has no abstain rule: every photo got")
    assert done.stderr.count("\n") == 1, repr(done.stderr)


def test_a_long_table_says_that_csv_and_jsonl_stream(bundle: Path, photos: Path, monkeypatch) -> None:
    # 20,000 photos: a spinner, then 14 s of drawing, and nothing said of the formats that stream.
    import sportsdet.cli.predict as predicting

    monkeypatch.setattr(predicting, "TABLE_HINT_ROWS", 2)
    args = ["predict", str(photos), "-m", str(bundle), "--no-abstain"]
    table = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert table.exit_code == 0
    assert "2 photos so far: the table is drawn once all are labelled" in table.stderr
    streamed = runner.invoke(app, [*args, "--format", "csv"], env={"COLUMNS": "200"})
    assert streamed.exit_code == 0 and "so far" not in streamed.stderr


def test_output_a_reader_stopped_taking_exits_141_not_1(tmp_path: Path) -> None:
    # `sportsdet predict ... | head -1` exited 1, the code for "some input could not be labelled".
    done = subprocess.Popen([sys.executable, "-m", "sportsdet", "info", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    done.stdout.close()  # the reader goes before a line is written
    _, err = done.communicate(timeout=60)
    assert done.returncode == 141, err.decode()


def test_info_shows_recorded_scores_and_their_engine(bundle: Path, tmp_path: Path) -> None:
    from sportsdet.bundle import set_bundle_metrics

    copy = tmp_path / "scored"
    shutil.copytree(bundle, copy)
    weights = (copy / "weights.safetensors").read_bytes()
    metrics = {
        "test": {"n": 40, "top1": 0.925,
                 "per_source": {"web": {"n": 10, "top1": 0.7}, "lab": {"n": 30, "top1": 1.0}}},
        "realworld_dev": {"n": 8, "top1": 0.625, "per_class": {"polo": "5/8"}},
        "engine": "onnxruntime int8 (model.int8.onnx)",
    }
    set_bundle_metrics(copy, metrics)
    assert load_bundle(copy).metrics == metrics  # only "metrics" changed; the weights still verify
    assert (copy / "weights.safetensors").read_bytes() == weights
    result = runner.invoke(app, ["info", str(copy)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "recorded scores (top-1, onnxruntime int8 (model.int8.onnx))" in result.stdout
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") > 3}
    assert "70.0%" in rows["web test"] and "100.0%" in rows["lab test"]
    world = rows["realworld-dev (never trained on)"]
    assert "62.5%" in world and "polo 5/8" in world


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_under_the_table_names_stdout(photos: Path) -> None:
    # "error: a file: No space left on device": the table is printed by rich, whose console held
    # the file being written; jsonl and csv said <stdout> already.
    import subprocess

    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "sportsdet", "predict", str(photos / "a.jpg")],
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=120,
        )  # fmt: skip
    assert done.returncode == 2 and "error: <stdout>: No space left on device" in done.stderr, done.stderr


def test_info_of_a_moved_run_keeps_its_test_score_and_a_damaged_seen_list_costs_one_line(tmp_path) -> None:
    import shutil

    from conftest import make_tiny_bundle

    from sportsdet.cli.predict import bundle_info

    run = tmp_path / "run"
    model = make_tiny_bundle(run / "model")
    weights = json.loads((model / "bundle.json").read_text())["weights"]["sha256"]
    (run / "eval").mkdir()
    metrics = {"bundle": str(model), "weights_sha256": weights, "accuracy": 0.75, "n": 8, "split": "test"}
    (run / "eval" / "metrics.json").write_text(json.dumps(metrics))
    assert bundle_info(model)["evaluation"]["accuracy"] == 0.75
    moved = tmp_path / "moved"
    shutil.move(run, moved)  # the path recorded in metrics.json is gone: the score was dropped
    assert bundle_info(moved / "model")["evaluation"]["accuracy"] == 0.75
    damaged = {"format": "sportsdet-seen/2", "splits": {"train": [1]}}
    (moved / "model" / "seen_photos.json").write_text(json.dumps(damaged))
    result = runner.invoke(app, ["info", str(moved / "model"), "--labels"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["info", str(moved / "model")])
    assert result.exit_code == 0 and "unreadable" in result.stdout, result.output


def test_a_picture_the_model_must_enlarge_more_than_twice_is_labelled_with_a_warning(tmp_path: Path) -> None:
    # The built-in model (300 px) got 41 of 100 sports100 photos right at 64 px, with a confident
    # label and no word: the warning began below 32 px.
    for size in (64, 149, 150, 224):
        make_image((200, 40, 40), size=size).save(tmp_path / f"{size}.jpg", quality=95)
    result = runner.invoke(app, ["predict", str(tmp_path), "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    rows = map(json.loads, result.stdout.splitlines())
    warnings = {Path(row["input"]).stem: row["warning"] for row in rows}
    assert warnings["64"] == (
        "only 64x64 pixels, enlarged 4.7x to the model's 300 px: labels of pictures this small are less "
        "reliable"
    )
    assert warnings["149"].startswith("only 149x149 pixels, enlarged 2.0x")
    assert warnings["150"] is None and warnings["224"] is None
    # As the model's own resizing enlarges it: letterboxed, the longer side is what is scaled.
    from sportsdet.imageio import load_image_checked
    from sportsdet.preprocess import Preprocessing

    make_image((200, 40, 40), size=140).resize((140, 280)).save(tmp_path / "tall.png")
    pad, crop = Preprocessing(300, resize="pad"), Preprocessing(300, resize="crop", crop_pct=0.875)
    assert load_image_checked(tmp_path / "tall.png", model=pad)[1] is None  # enlarged 1.07x
    assert load_image_checked(tmp_path / "tall.png", model=crop)[1].startswith(
        "only 140x280 pixels, enlarged 2.5x to the model's 300 px"
    )  # 343 px / 140: the crop keeps 87.5%


def test_a_list_of_photos_given_as_an_input_is_told_how_to_give_its_lines(
    predictor: Predictor, photos: Path, tmp_path: Path
) -> None:
    # A .txt of 20,000 paths got "not an image: the file holds text": listings are --engine ray's.
    listing = tmp_path / "photos.txt"
    listing.write_text(f"{photos / 'a.jpg'}\n{photos / 'b.png'}\n")
    notes = tmp_path / "notes.md"
    notes.write_text("# notes\n")
    given = [str(listing), str(notes), str(photos / "a.jpg")]
    results = {r.input: r for r in predictor.predict_sources(given)}
    assert results[str(listing)].error.startswith("a list of photos? predict reads photos, folders")
    assert "--engine ray, which reads .txt listings" in results[str(listing)].error
    table = tmp_path / "photos.csv"
    table.write_text(f"path,label\n{photos / 'a.jpg'},polo\n")
    [result] = predictor.predict_sources([str(table)])
    assert "--engine ray reads a .csv listing's 'path' column" in result.error and "xargs" not in result.error
    assert results[str(notes)].error == "not an image: the file holds text"  # not a list by its name
    assert results[str(photos / "a.jpg")].error is None
    (tmp_path / "photo.txt").write_bytes((photos / "a.jpg").read_bytes())  # a JPEG named .txt: a photo
    assert next(iter(predictor.predict_sources([str(tmp_path / "photo.txt")]))).error is None
