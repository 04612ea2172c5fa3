"""The run report: its numbers are metrics.json's, it is self-contained, and bad input fails cleanly."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import re
import shlex
import shutil
import sys
import time
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image
from test_report_fixtures import make_run, write_eval

from sportsdet.errors import SportsdetError
from sportsdet.report import write_comparison, write_report, write_report_after


class Page(HTMLParser):
    """Collects what the tests look at: text by element id, <img> sources, table rows, links."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.by_id: dict[str, str] = {}
        self.images: list[dict[str, str]] = []
        self.links: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.headers: dict[str, list[dict[str, str]]] = {}
        self._open_ids: list[tuple[str, str, list[str]]] = []  # (tag, id, text parts)
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._in_head = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "img":
            self.images.append(a)
            return
        for key in ("href", "src"):
            if key in a:
                self.links.append(a[key])
        if "id" in a:
            self._open_ids.append((tag, a["id"], []))
        if tag == "table" and a.get("id"):
            self._table = a["id"]
            self.tables[self._table] = []
            self.headers[self._table] = []
        elif tag == "thead":
            self._in_head = True
        elif tag == "tr" and self._table and not self._in_head:
            self._row = []
        elif tag in ("td", "th") and self._table:
            self._cell = []
            if self._in_head:
                self.headers[self._table].append(a)

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell).strip()
            if self._in_head:
                self.headers[self._table][-1]["text"] = text
            elif self._row is not None:
                self._row.append(text)
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "thead":
            self._in_head = False
        elif tag == "table":
            self._table = None
        if self._open_ids and self._open_ids[-1][0] == tag:
            _, ident, parts = self._open_ids.pop()
            self.by_id[ident] = "".join(parts).strip()

    def handle_data(self, data):
        for _, _, parts in self._open_ids:
            parts.append(data)
        if self._cell is not None:
            self._cell.append(data)


def percent(text: str) -> float:
    """'51.7%' -> 0.517 (what a person reads on the page)."""
    assert text.endswith("%"), text
    return float(text[:-1]) / 100.0


def close(shown: float, exact: float, digits: int = 1) -> bool:
    """A value shown rounded to `digits` decimals of a percent matches the exact number."""
    return abs(shown - exact) <= 0.5 * 10 ** (-digits) / 100 + 1e-12


@pytest.fixture(scope="module")
def eight(tmp_path_factory):
    fake = make_run(tmp_path_factory.mktemp("eight"), n_classes=8, per_class=4)
    path = write_report(fake.run)
    return fake, path.read_text(encoding="utf-8")


def test_headline_numbers_are_metrics_json(eight):
    fake, text = eight
    metrics = json.loads((fake.eval / "metrics.json").read_text())
    page = Page(text)
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "top5_accuracy", "ece"):
        assert close(percent(page.by_id[f"m-{key}"]), metrics[key]), key
    lo, hi = metrics["accuracy_ci95"]
    sentence = page.by_id["m-accuracy-ci"]
    assert f"n={metrics['n']}" in sentence
    assert f"95% CI {100 * lo:.1f}–{100 * hi:.1f}%" in sentence
    # The accuracy card says the same interval under its number.
    card = re.search(r'id="m-accuracy">[^<]*</div><div class="d">([^<]*)</div>', text).group(1)
    assert html.unescape(card) == f"95% CI {100 * lo:.1f}%–{100 * hi:.1f}%"


def test_accuracy_ci_matches_hand_computed_notebook_case(tmp_path):
    """The notebook's 163 right of 315: 51.7% with a Wilson 95% interval of 46.2-57.2%."""
    labels = ["croquet", "polo", "rowing"]
    y = np.arange(315) % 3
    probs = np.full((315, 3), 0.1, dtype=np.float32)
    pred = np.where(np.arange(315) < 163, y, (y + 1) % 3)
    probs[np.arange(315), pred] = 0.8
    write_eval(tmp_path / "eval", labels, y, probs, [f"x/{i}.jpg" for i in range(315)])
    text = write_report(tmp_path / "eval").read_text(encoding="utf-8")
    assert Page(text).by_id["m-accuracy-ci"] == "51.7% (95% CI 46.2–57.2%, n=315)"


def test_an_evaluation_of_a_folder_counts_the_folders_classes_not_the_models(tmp_path):
    # The built-in model on a folder of 3 sports: the Data section said "classes 105".
    labels = ["croquet", "polo", "rowing", "sailing", "tennis"]
    y = np.array([0, 0, 2, 2])
    probs = np.full((4, 5), 0.05, dtype=np.float32)
    probs[np.arange(4), y] = 0.8
    write_eval(tmp_path / "eval", labels, y, probs, [f"x/{i}.jpg" for i in range(4)])
    text = html.unescape(write_report(tmp_path / "eval").read_text(encoding="utf-8"))
    assert "2 (the model knows 5)" in text and "all 2 class names" in text and "all 5 class names" not in text


def test_per_class_table_equals_metrics_json(eight):
    fake, text = eight
    metrics = json.loads((fake.eval / "metrics.json").read_text())
    page = Page(text)
    rows = page.tables["per-class-table"]
    assert [r[0] for r in rows] == metrics["labels"]  # also proves "<b>bmx & co</b>" is escaped text
    for name, precision, recall, f1, support, _ in rows:
        exact = metrics["per_class"][name]
        assert close(percent(precision), exact["precision"])
        assert close(percent(recall), exact["recall"])
        assert close(percent(f1), exact["f1"])
        assert int(support) == exact["support"]
    pairs = page.tables["confused-pairs"]
    assert [(r[0], r[1], int(r[2])) for r in pairs] == [
        (p["true"], p["predicted"], p["count"]) for p in metrics["most_confused"]
    ]


def confusion_cells(text: str) -> dict[tuple[int, int], int]:
    """(row, column) -> count of every drawn confusion-matrix square."""
    cells = re.findall(r'data-count="(\d+)" data-row="(\d+)" data-col="(\d+)"', text)
    return {(int(r), int(c)): int(n) for n, r, c in cells}


def nonzero_cells(metrics: dict) -> dict[tuple[int, int], int]:
    matrix = metrics["confusion_matrix"]
    return {(i, j): v for i, row in enumerate(matrix) for j, v in enumerate(row) if v}


def test_confusion_matrix_is_metrics_json(eight):
    fake, text = eight
    metrics = json.loads((fake.eval / "metrics.json").read_text())
    assert confusion_cells(text) == nonzero_cells(metrics)
    # every square names its classes and numbers on hover
    row, col = next(iter(nonzero_cells(metrics)))
    count = metrics["confusion_matrix"][row][col]
    total = sum(metrics["confusion_matrix"][row])
    tip = f"true: {metrics['labels'][row]}\npredicted: {metrics['labels'][col]}\n{count} of {total} images"
    assert html.escape(tip) in text


def test_sorting_is_wired(eight):
    _, text = eight
    headers = Page(text).headers["per-class-table"]
    assert [h["text"] for h in headers][:5] == ["class", "precision", "recall", "F1", "support"]
    assert all(h.get("data-type") == "num" for h in headers[1:5])
    assert 'class="sortable" id="per-class-table"' in text
    assert "function sortTable" in text and "addEventListener(\"click\"" in text


def test_self_contained(eight):
    _, text = eight
    page = Page(text)
    assert page.images, "no pictures at all"
    for image in page.images:
        assert image["src"].startswith("data:image/"), image["src"][:40]
        payload = base64.b64decode(image["src"].split(",", 1)[1], validate=True)
        Image.open(io.BytesIO(payload)).verify()
    assert all(link.startswith(("#", "data:")) for link in page.links), page.links
    assert "http://" not in text and "https://" not in text
    assert "<link" not in text and "@import" not in text
    assert "<b>bmx" not in text  # class names are escaped, never markup
    assert "could not be drawn" not in text


def test_galleries_show_true_pred_confidence_and_worst_first(eight):
    fake, text = eight
    with open(fake.eval / "predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    wrong = [r for r in rows if r["true_label"] != r["pred_label"]]
    wrong.sort(key=lambda r: float(r["true_prob"]))
    thumbs = [i for i in Page(text).images if i.get("class") == "thumb"]
    assert thumbs and all(i["src"].startswith("data:image/jpeg;base64,") for i in thumbs)
    # the highest-loss gallery opens on the wrong image with the lowest probability on its true class
    loss_part = text.split('id="gallery-loss"', 1)[1]
    first = loss_part.split("</figure>", 1)[0]
    worst = wrong[0]
    assert f"{100 * float(worst['true_prob']):.1f}%" in first
    assert f"{-math.log(float(worst['true_prob'])):.2f}" in first
    assert f"{100 * float(worst['confidence']):.1f}%" in first
    # Its file is named on the page (only a hover title named it, which touch and keys never show).
    name = worst["path"].rsplit("/", 1)[-1]
    assert f'<span class="file">{html.escape(name)}</span>' in first
    for section in ("gallery-correct", "gallery-wrong", "gallery-loss"):
        assert f'id="{section}"' in text


def test_gallery_is_capped_and_missing_images_are_noted(tmp_path):
    fake = make_run(tmp_path, n_classes=6, per_class=10, with_images=False)
    text = write_report(fake.run, gallery_limit=5).read_text(encoding="utf-8")
    assert text.count('class="noimg"') <= 15 and text.count('class="noimg"') > 0
    assert "were not found (data moved?)" in text
    assert text.count('<figure class="tile') <= 15


def test_the_cli_gallery_option_caps_a_single_runs_galleries(tmp_path, monkeypatch, capsys):
    fake = make_run(tmp_path, n_classes=6, per_class=10)
    code, _, err = _cli(monkeypatch, capsys, "report", str(fake.run), "--gallery", "2")
    assert code == 0, err
    text = (fake.run / "report.html").read_text(encoding="utf-8")
    assert 0 < text.count('<figure class="tile') <= 6  # three galleries of at most 2


def test_gallery_zero_leaves_the_galleries_out_and_says_so(tmp_path):
    fake = make_run(tmp_path, n_classes=3, per_class=3)
    text = write_report(fake.run, gallery_limit=0).read_text(encoding="utf-8")
    # "Wrong predictions (3 of 9; a seeded sample of 0, one per class first)" over each empty gallery.
    assert "seeded sample of 0" not in text and "Galleries left out" in text
    assert '<figure class="tile' not in text


def test_a_photo_that_no_longer_decodes_is_not_called_missing(tmp_path):
    # A photo damaged since evaluation had the tile "image not found" although it was there.
    fake = make_run(tmp_path, n_classes=2, per_class=2)
    for photo in fake.data.rglob("*.jpg"):
        photo.write_bytes(photo.read_bytes()[:300])
    text = write_report(fake.run).read_text(encoding="utf-8")
    assert text.count('class="noimg"') > 0
    assert "image cannot be decoded" in text and "image not found" not in text


def test_hundred_classes_render_fast_and_legible(tmp_path):
    fake = make_run(tmp_path, n_classes=100, per_class=3, skill=3.0)
    started = time.perf_counter()
    path = write_report(fake.run)
    seconds = time.perf_counter() - started
    text = path.read_text(encoding="utf-8")
    page = Page(text)
    assert len(page.tables["per-class-table"]) == 100
    assert seconds < 20, f"report took {seconds:.1f} s at 100 classes"
    assert path.stat().st_size < 3_000_000
    assert confusion_cells(text) == nonzero_cells(json.loads((fake.eval / "metrics.json").read_text()))
    assert text.count('<text class="row"') == 100 and text.count('<text class="col"') == 100
    width = int(re.search(r'<svg class="confusion"[^>]* width="(\d+)"', text).group(1))
    assert width >= 100 * 14  # at least 14 px per class, names at full size
    assert 'class="zoomable zoomed"' in text  # shown at full size first, where names are readable
    # Every square off the diagonal is also text (a keyboard or screen reader reached only the ten
    # most confused pairs): the same counts as the matrix, most first.
    metrics = json.loads((fake.eval / "metrics.json").read_text())
    labels = metrics["labels"]
    every = page.tables["every-confusion"]
    off_diagonal = {(i, j): v for (i, j), v in nonzero_cells(metrics).items() if i != j}
    assert len(every) == len(off_diagonal) > len(metrics["most_confused"])
    assert {(labels.index(r[0]), labels.index(r[1])): int(r[2]) for r in every} == off_diagonal
    assert [int(r[2]) for r in every] == sorted((int(r[2]) for r in every), reverse=True)
    assert f"Every confusion ({len(every)} pairs)" in text
    thumbs = [i for i in page.images if i.get("class") == "thumb"]
    assert 0 < len(thumbs) <= 3 * 24
    assert "could not be drawn" not in text


def test_without_evaluation_shows_training_and_says_what_to_run(tmp_path):
    fake = make_run(tmp_path, with_eval=False)
    text = write_report(fake.run).read_text(encoding="utf-8")
    # The command that fills RUN/eval (with RUN/model DATA it wrote RUN/eval-<folder> instead).
    assert f"Run <code>sportsdet evaluate {fake.run}</code>" in text and "No evaluation yet" in text
    assert any(i["alt"] == "training curves" for i in Page(text).images)
    assert "per-class-table" not in text


def test_evaluation_folder_alone(tmp_path):
    fake = make_run(tmp_path)
    alone = tmp_path / "elsewhere"
    fake.eval.rename(alone)
    (alone / "metrics.json").write_text(
        (alone / "metrics.json").read_text().replace(str(fake.run / "model"), str(tmp_path / "gone"))
    )
    out = write_report(alone)
    assert out == alone / "report.html"
    text = out.read_text(encoding="utf-8")
    assert "No training history" in text and "per-class-table" in text


def test_eval_option_and_data_check_report(tmp_path):
    from sportsdet.data import check_dataset

    fake = make_run(tmp_path, n_classes=3, per_class=3)
    other = tmp_path / "other-eval"
    fake.eval.rename(other)
    # a real `sportsdet data check` report: one truncated file and one test image copied into train
    label = fake.labels[0]
    broken = fake.data / "test" / label / "001.jpg"
    broken.write_bytes(broken.read_bytes()[:200])
    (fake.data / "train" / label).mkdir(parents=True)
    original = (fake.data / "test" / label / "000.jpg").read_bytes()
    (fake.data / "train" / label / "copy.jpg").write_bytes(original)
    check = check_dataset(fake.data, workers=1)
    check.save(tmp_path / "check.json")
    out = write_report(fake.run, tmp_path / "r.html", eval_dir=other, check_report=tmp_path / "check.json")
    with pytest.raises(SportsdetError, match="nosuch: no such folder; --eval takes"):  # not "no metrics.json"
        write_report(fake.run, tmp_path / "r2.html", eval_dir=tmp_path / "nosuch")
    with pytest.raises(SportsdetError, match="no metrics.json or predictions.csv here"):
        write_report(fake.run, tmp_path / "r2.html", eval_dir=fake.data)
    text = out.read_text(encoding="utf-8")
    assert "per-class-table" in text
    assert f"{check.to_dict()['checked']} files" in text
    assert "1 problems: truncated 1" in text
    assert "1 crossing splits" in text and "copy.jpg [train]" in text



def test_an_evaluation_folder_alone_is_told_the_data_check_it_will_read(tmp_path):
    # `sportsdet evaluate builtin PHOTOS` writes an evaluation folder outside any run: the page
    # names those photos and a report path it reads back, not "DATA" and "RUN/...".
    from sportsdet.data import check_dataset

    fake = make_run(tmp_path, n_classes=3, per_class=2)
    alone = tmp_path / "eval-builtin"
    fake.eval.rename(alone)
    metrics = json.loads((alone / "metrics.json").read_text())
    metrics["data"] = str(fake.data)
    (alone / "metrics.json").write_text(json.dumps(metrics))
    text = html.unescape(write_report(alone).read_text(encoding="utf-8"))
    saved = shlex.quote(str(alone / "data_check.json"))
    advice = f"sportsdet data check {shlex.quote(str(fake.data))} --report {saved}"
    assert advice in text
    check_dataset(fake.data, workers=1).save(alone / "data_check.json")
    text = html.unescape(write_report(alone).read_text(encoding="utf-8"))
    assert "No data-check report found" not in text and f"From {alone / 'data_check.json'}" in text

def test_a_data_check_of_another_folder_is_said_to_be_one(tmp_path):
    # `data check OTHER --report RUN/data_check.json` was shown as the run's own check: "No broken
    # files and no duplicates" under the run's data.
    from sportsdet.data import check_dataset

    fake = make_run(tmp_path, n_classes=3, per_class=2)
    other = tmp_path / "other data"
    shutil.copytree(fake.data, other)
    check_dataset(other, workers=1).save(fake.run / "data_check.json")
    text = html.unescape(write_report(fake.run).read_text(encoding="utf-8"))
    assert f"This check is of {other}, not of the photos on this page ({fake.data})" in text
    check_dataset(fake.data, workers=1).save(fake.run / "data_check.json")
    text = html.unescape(write_report(fake.run).read_text(encoding="utf-8"))
    assert "This check is of" not in text and "No broken files and no duplicates" in text


def test_a_json_that_is_no_data_check_is_refused_not_shown_as_clean(tmp_path):
    fake = make_run(tmp_path, n_classes=3, per_class=2)
    with pytest.raises(SportsdetError, match="not a data-check report"):
        write_report(fake.run, tmp_path / "r.html", check_report=fake.eval / "metrics.json")
    (fake.run / "data_check.json").write_text(json.dumps({"classes": 3}))  # found, not named: a note
    text = html.unescape(write_report(fake.run).read_text(encoding="utf-8"))
    assert "No broken files" not in text and "not a data-check report" in text


def test_commands_the_report_suggests_survive_a_path_with_spaces(tmp_path):
    fake = make_run(tmp_path / "my runs", n_classes=3, per_class=2, with_eval=False)
    text = html.unescape(write_report(fake.run).read_text(encoding="utf-8"))
    # "sportsdet evaluate /tmp/.../my runs/run" pasted into a shell named the folder ".../my".
    assert f"sportsdet evaluate {shlex.quote(str(fake.run))}" in text and "'" in shlex.quote(str(fake.run))


WRONG_SHAPE = {"labels": ["a"], "confusion_matrix": [[1], [1]]}


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda r: (r.eval / "metrics.json").write_text("{not json"), "metrics.json"),
        (lambda r: (r.eval / "metrics.json").write_text(json.dumps(WRONG_SHAPE)), "confusion_matrix"),
        (lambda r: (r.run / "metrics.csv").write_text("epoch,train_loss\n1,abc\n"), "metrics.csv, line 2"),
        (lambda r: (r.eval / "predictions.csv").write_text("path,true_label\nx,y\n"), "predictions.csv"),
        (lambda r: (r.run / "config.json").write_text("[1, 2]"), "config.json"),
    ],
)
def test_damaged_input_is_a_clear_error_and_keeps_the_old_report(tmp_path, damage, message):
    fake = make_run(tmp_path, n_classes=3, per_class=2)
    report = write_report(fake.run)
    before = report.read_bytes()
    damage(fake)
    with pytest.raises(SportsdetError, match=message) as caught:
        write_report(fake.run)
    assert str(fake.run) in str(caught.value) or str(fake.eval) in str(caught.value)
    assert report.read_bytes() == before
    assert not list(fake.run.glob(".report.html.*"))  # no temporary file left behind


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(SportsdetError, match="no such folder"):
        write_report(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SportsdetError, match="neither a run folder"):
        write_report(tmp_path / "empty")


def test_comparison_deltas_come_from_each_metrics_json(tmp_path):
    a = make_run(tmp_path / "a", n_classes=5, per_class=6, seed=1)
    b = make_run(tmp_path / "b", n_classes=5, per_class=6, seed=2, skill=3.0)
    out = write_comparison([a.run, b.run], tmp_path / "cmp.html")
    page = Page(out.read_text(encoding="utf-8"))
    ma = json.loads((a.eval / "metrics.json").read_text())
    mb = json.loads((b.eval / "metrics.json").read_text())
    rows = page.tables["compare-classes"]
    assert sorted(r[0] for r in rows) == sorted(ma["labels"])
    for name, f1_a, f1_b, delta in rows:
        assert close(percent(f1_a), ma["per_class"][name]["f1"])
        assert close(percent(f1_b), mb["per_class"][name]["f1"])
        exact = 100 * (mb["per_class"][name]["f1"] - ma["per_class"][name]["f1"])
        assert abs(float(delta) - exact) <= 0.05 + 1e-9
    deltas = [abs(float(r[3])) for r in rows]
    assert deltas == sorted(deltas, reverse=True)
    headline = page.tables["compare-metrics"]
    assert headline[0][1].startswith(f"{100 * ma['accuracy']:.1f}%")
    assert headline[0][2].startswith(f"{100 * mb['accuracy']:.1f}%")
    assert any(i["alt"] == "training curves of all runs" for i in page.images)


def test_comparison_needs_two_runs(tmp_path):
    a = make_run(tmp_path / "a", n_classes=3, per_class=2)
    with pytest.raises(SportsdetError, match="at least two"):
        write_comparison([a.run], tmp_path / "c.html")


def _cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run the real entry point in-process (same error handling as the installed command)."""
    from sportsdet.cli import main

    monkeypatch.setattr(sys, "argv", ["sportsdet", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    return int(exited.value.code or 0), out, err


def test_cli_report_compare_and_errors(tmp_path, monkeypatch, capsys):
    a = make_run(tmp_path / "a", n_classes=3, per_class=3)
    b = make_run(tmp_path / "b", n_classes=3, per_class=3, seed=5)
    monkeypatch.chdir(tmp_path)
    code, out, err = _cli(monkeypatch, capsys, "report", str(a.run))
    assert code == 0, err
    assert out.strip() == str(a.run / "report.html")
    assert (a.run / "report.html").is_file()
    compare = ["report", "--compare", str(a.run), str(b.run), "-o", "both.html"]
    code, out, err = _cli(monkeypatch, capsys, *compare)
    assert code == 0, err
    assert (tmp_path / "both.html").is_file()
    code, out, err = _cli(monkeypatch, capsys, "report", str(tmp_path / "missing"))
    assert code == 2
    assert "error:" in err and "missing" in err and "Traceback" not in err
    code, out, err = _cli(monkeypatch, capsys, "report", str(a.run), str(b.run))
    assert code == 2 and "--compare" in err


def test_write_report_after_warns_instead_of_failing(tmp_path):
    fake = make_run(tmp_path, n_classes=3, per_class=2)
    warnings: list[str] = []
    assert write_report_after(fake.run, warnings.append) == fake.run / "report.html"
    (fake.eval / "metrics.json").write_text("{broken")
    assert write_report_after(fake.run, warnings.append) is None
    assert len(warnings) == 1 and "metrics.json" in warnings[0]
    # The page from before shows the earlier model: a full disk left it there, read as the new run's.
    assert not (fake.run / "report.html").exists()
    assert "the page from before, which showed earlier results, is removed" in warnings[0]
    assert f"(`sportsdet report {fake.run}` writes it once this is fixed)" in warnings[0]
    # Through a symbolic link (a page published elsewhere), the page it leads to goes, not the link.
    published = tmp_path / "site" / "report.html"
    published.parent.mkdir()
    published.write_text("<!doctype html>earlier")
    (fake.run / "report.html").symlink_to(published)
    assert write_report_after(fake.run, warnings.append) is None
    assert not published.exists() and (fake.run / "report.html").is_symlink()


def test_skipped_images_and_plain_folder_evaluation(tmp_path):
    fake = make_run(tmp_path, n_classes=3, per_class=2)
    metrics = json.loads((fake.eval / "metrics.json").read_text())
    metrics.update({"split": None, "skipped": [{"path": "a.jpg", "error": "a.jpg: image data is truncated"}]})
    (fake.eval / "metrics.json").write_text(json.dumps(metrics))
    text = write_report(fake.run).read_text(encoding="utf-8")
    assert "1 image(s) could not be read" in text and "a.jpg: image data is truncated" in text
    assert "None" not in text and "Accuracy on the evaluated images" in text


def test_damaged_bundle_is_noted_not_fatal(tmp_path):
    fake = make_run(tmp_path, n_classes=3, per_class=2)
    (fake.run / "model" / "weights.safetensors").unlink()
    text = write_report(fake.run).read_text(encoding="utf-8")
    assert "model bundle not shown" in text and "weights.safetensors is missing" in text
    assert "per-class-table" in text


def test_evaluation_on_a_few_of_the_models_classes_hides_empty_ones(tmp_path):
    labels = [f"class {i}" for i in range(10)]
    y = np.array([0, 0, 1, 1, 2, 2])
    probs = np.full((6, 10), 0.01, dtype=np.float32)
    probs[np.arange(6), [0, 0, 1, 7, 2, 2]] = 0.91  # one image predicted as class 7 (absent from y)
    write_eval(tmp_path / "eval", labels, y, probs, [f"{i}.jpg" for i in range(6)])
    text = write_report(tmp_path / "eval").read_text(encoding="utf-8")
    rows = {r[0]: r[1:] for r in Page(text).tables["per-class-table"]}
    assert list(rows) == ["class 0", "class 1", "class 2", "class 7"]
    assert "6 of the model's classes had no photos scored here" in text
    # Class 7 has no photos here: no recall or F1 to give (not 0%), only the photo it was wrongly given.
    assert rows["class 7"] == ["0.0%", "–", "–", "0", "no photos of it here; predicted for 1 photo(s)"]
    assert rows["class 1"][1] == "50.0%"  # a class with photos keeps its recall
    # The confusion matrix: a row per class with photos, a column per class with photos or predictions.
    start = text.index('<svg class="confusion"')
    svg = text[start : text.index("</svg>", start)]
    names = re.findall(r'<text class="(row|col)"[^>]*>([^<]+)</text>', svg)
    assert [name for kind, name in names if kind == "row"] == ["class 0", "class 1", "class 2"]
    assert [name for kind, name in names if kind == "col"] == ["class 0", "class 1", "class 2", "class 7"]
    assert confusion_cells(svg) == {(0, 0): 2, (1, 1): 1, (1, 3): 1, (2, 2): 2}  # row 1's miss: column 3
    assert "1 more were only predicted" in text


def test_classes_only_predicted_come_after_the_classes_scored(tmp_path):
    # A many-class model on a user's few sports: their classes first, then the wrong answers,
    # the most given first, whatever the alphabet says.
    labels = ["archery", "badminton", "tennis", "zorbing"]
    y = np.array([2, 2, 2, 2, 2])
    probs = np.full((5, 4), 0.01, dtype=np.float32)
    probs[np.arange(5), [2, 1, 0, 0, 0]] = 0.97  # one right, badminton once, archery three times
    write_eval(tmp_path / "eval", labels, y, probs, [f"{i}.jpg" for i in range(5)])
    text = write_report(tmp_path / "eval").read_text(encoding="utf-8")
    rows = [r[0] for r in Page(text).tables["per-class-table"]]
    assert rows == ["tennis", "archery", "badminton"]
    assert "The last 2 rows are classes with no photos scored here that were given to some" in text
    # The confusion matrix in the same order: the diagonal top left, then the wrong answers.
    start = text.index('<svg class="confusion"')
    svg = text[start : text.index("</svg>", start)]
    names = re.findall(r'<text class="(row|col)"[^>]*>([^<]+)</text>', svg)
    assert [name for kind, name in names if kind == "col"] == ["tennis", "archery", "badminton"]
    assert confusion_cells(svg) == {(0, 0): 1, (0, 1): 3, (0, 2): 1}


def test_tiny_case_against_hand_computed_values(tmp_path):
    """6 images, 3 classes, worked out on paper: the page must show these numbers."""
    labels = ["croquet", "polo", "rowing"]
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = [0, 1, 1, 1, 2, 0]
    probs = np.full((6, 3), 0.2, dtype=np.float32)
    probs[np.arange(6), pred] = 0.6
    write_eval(tmp_path / "eval", labels, y, probs, [f"{i}.jpg" for i in range(6)])
    text = write_report(tmp_path / "eval").read_text(encoding="utf-8")
    page = Page(text)
    assert page.by_id["m-accuracy"] == "66.7%"  # 4 of 6
    assert page.by_id["m-balanced_accuracy"] == "66.7%"  # recalls 1/2, 2/2, 1/2
    assert page.by_id["m-macro_f1"] == "65.6%"  # F1s 1/2, 4/5, 2/3
    assert page.by_id["m-top5_accuracy"] == "100.0%"  # top-3 of 3 classes
    assert page.by_id["m-ece"] == "6.7%"  # one bin: confidence 0.6, accuracy 4/6 -> |0.667 - 0.6|
    rows = {r[0]: r[1:5] for r in page.tables["per-class-table"]}
    assert rows == {
        "croquet": ["50.0%", "50.0%", "50.0%", "2"],
        "polo": ["66.7%", "100.0%", "80.0%", "2"],
        "rowing": ["100.0%", "50.0%", "66.7%", "2"],
    }


def test_run_still_training_and_comparison_without_evaluation(tmp_path):
    """Mid-training: no bundle and no evaluation yet; both pages still render and say what is missing."""
    import shutil

    a = make_run(tmp_path / "a", n_classes=4, per_class=2, with_eval=False)
    shutil.rmtree(a.run / "model")
    # config.json records library versions (as train writes it): that hid the no-bundle line, and
    # the page sent the user to `sportsdet evaluate RUN/model`, which has no model to load.
    config = json.loads((a.run / "config.json").read_text())
    config.update(versions={"torch": "2"}, options={"epochs": 200})
    (a.run / "config.json").write_text(json.dumps(config))
    # Nothing to resume from yet: --resume would refuse ("never finished an epoch").
    model = Page(write_report(a.run).read_text(encoding="utf-8")).by_id["model"]
    assert f"before any checkpoint was kept. Start it again with sportsdet train ... --out {a.run} --force" \
        in model
    (a.run / "checkpoints").mkdir(exist_ok=True)
    (a.run / "checkpoints" / "last.safetensors").write_bytes(b"a checkpoint")
    text = html.unescape(write_report(a.run).read_text(encoding="utf-8"))
    stages = [row.split(",")[1] for row in (a.run / "metrics.csv").read_text().splitlines()[1:]]
    head, tuned = stages.count("head"), len(stages) - stages.count("head")
    assert head and tuned  # --epochs counts the fine-tuning epochs only: "23 epochs of 10" before
    said = f"after {head} head epoch(s) and {tuned} fine-tuning epoch(s) of 200. Continue it with"
    assert said in Page(text).by_id["model"]
    assert f"sportsdet train --out {a.run} --resume" in text and "sportsdet evaluate" not in text
    assert any(i["alt"] == "training curves" for i in Page(text).images)
    b = make_run(tmp_path / "b", n_classes=4, per_class=2)
    page = html.unescape(write_comparison([a.run, b.run], tmp_path / "c.html").read_text(encoding="utf-8"))
    said = "a/run: This run has no model yet: its training stopped (or is still going) after"
    assert f"{said} {head} head" in page
    assert f"sportsdet train --out {a.run} --resume`" in page
    assert "need an evaluation (metrics.json) for at least two runs" in page
    assert "training curves of all runs" in page


def test_the_runs_own_evaluation_of_an_earlier_model_is_not_shown_as_this_ones(tmp_path):
    # `train --resume --no-eval` replaced the model and kept RUN/eval: the report showed the
    # old model's test accuracy beside the new model's training.
    fake = make_run(tmp_path, n_classes=3, per_class=4)
    metrics = json.loads((fake.run / "eval" / "metrics.json").read_text())
    metrics["weights_sha256"] = "0" * 64
    (fake.run / "eval" / "metrics.json").write_text(json.dumps(metrics))
    text = html.unescape(write_report(fake.run).read_text(encoding="utf-8"))
    assert "an evaluation of an earlier model of this run (trained again since); not shown" in text
    assert f"sportsdet evaluate {fake.run}" in text
    assert 'id="gallery-wrong"' not in text  # no galleries of the old model's answers


def test_run_report_lists_the_models_other_evaluations_and_drops_stale_ones(tmp_path):
    fake = make_run(tmp_path, n_classes=3, per_class=4)
    weights = json.loads((fake.run / "model" / "bundle.json").read_text())["weights"]["sha256"]
    half = fake.probs.copy()
    half[::2] = np.roll(half[::2], 1, axis=1)  # another set of photos, scored worse
    other = write_eval(fake.run / "eval-web photos", fake.labels, fake.y_true, half, fake.paths,
                       bundle=fake.run / "model", data=tmp_path / "web photos")
    metrics = json.loads((fake.run / "eval-web photos" / "metrics.json").read_text())
    metrics["weights_sha256"] = weights
    (fake.run / "eval-web photos" / "metrics.json").write_text(json.dumps(metrics))
    write_eval(fake.run / "eval-old", fake.labels, fake.y_true, fake.probs, fake.paths)
    stale = json.loads((fake.run / "eval-old" / "metrics.json").read_text())
    stale["weights_sha256"] = "0" * 64  # scored before the run was retrained in place
    (fake.run / "eval-old" / "metrics.json").write_text(json.dumps(stale))

    page = Page(write_report(fake.run).read_text(encoding="utf-8"))
    rows = page.tables["other-evals-table"]
    assert [row[0] for row in rows] == ["eval-web photos"]
    assert rows[0][2] == str(other["n"])
    assert close(percent(rows[0][3]), other["accuracy"])
    text = html.unescape(write_report(fake.run).read_text(encoding="utf-8"))
    assert "eval-old: an evaluation of an earlier model of this run (trained again since); not shown" in text

    # The other evaluation's own page lists the run's test evaluation in turn, and its title says
    # which photos it scored.
    text = write_report(fake.run / "eval-web photos").read_text(encoding="utf-8")
    assert [row[0] for row in Page(text).tables["other-evals-table"]] == ["eval"]
    assert f"<title>sportsdet report: {fake.run.name}, eval-web photos</title>" in text
    assert "<title>sportsdet report: " + fake.run.name + "</title>" in write_report(fake.run).read_text()


def test_an_evaluation_named_by_hand_of_other_weights_is_said_or_refused(tmp_path, monkeypatch, capsys):
    # Only RUN/eval found by itself was checked: RUN/eval given as the folder, `--eval` of another
    # run and every `--compare` input were shown as the run's model's results without a word.
    a = make_run(tmp_path / "a", n_classes=3, per_class=4)
    b = make_run(tmp_path / "b", n_classes=3, per_class=4, seed=2)
    metrics = json.loads((a.eval / "metrics.json").read_text())
    metrics["weights_sha256"] = "0" * 64  # scored before the run was trained again
    (a.eval / "metrics.json").write_text(json.dumps(metrics))
    said = "scored other weights than"
    for text in (
        write_report(a.eval, tmp_path / "one.html").read_text(encoding="utf-8"),
        write_comparison([a.eval, b.run], tmp_path / "cmp.html").read_text(encoding="utf-8"),
    ):
        text = html.unescape(text)
        assert said in text and f"sportsdet evaluate {a.run / 'model'} DATA" in text
    assert said not in write_report(b.run, tmp_path / "b.html").read_text(encoding="utf-8")

    b_metrics = json.loads((b.eval / "metrics.json").read_text())
    b_metrics["weights_sha256"] = "1" * 64  # b's bundle is another model than a's
    (b.eval / "metrics.json").write_text(json.dumps(b_metrics))
    another = re.escape(str(b.run / "model"))
    with pytest.raises(SportsdetError, match=rf"this evaluation scored {another}, not the model of"):
        write_report(a.run, tmp_path / "ab.html", eval_dir=b.eval)
    assert not (tmp_path / "ab.html").exists()


def test_comparison_says_which_classes_it_cannot_compare_in_either_order(tmp_path):
    # A class the second run alone has was dropped without a word (only the first run's were
    # counted); a class with no photos in one evaluation showed sklearn's F1 of 0 as a -100 point drop.
    a = make_run(tmp_path / "a", n_classes=3, per_class=4)
    b = make_run(tmp_path / "b", n_classes=4, per_class=4, seed=2)
    extra = next(x for x in b.labels if x not in a.labels)
    for order in ([a.run, b.run], [b.run, a.run]):
        page = Page(write_comparison(order, tmp_path / "c.html").read_text(encoding="utf-8"))
        assert f"1 class(es) not in every run are left out: {extra} (only in b/run)" in page.by_id[
            "compare-classes-note"]
        assert sorted(r[0] for r in page.tables["compare-classes"]) == sorted(a.labels)

    metrics = json.loads((b.eval / "metrics.json").read_text())
    gone = a.labels[0]
    metrics["per_class"][gone].update(support=0, f1=0.0, recall=0.0)
    (b.eval / "metrics.json").write_text(json.dumps(metrics))
    page = Page(write_comparison([a.run, b.run], tmp_path / "c.html").read_text(encoding="utf-8"))
    rows = {r[0]: r for r in page.tables["compare-classes"]}
    assert rows[gone][2:] == ["–", "–"]
    assert list(rows)[-1] == gone  # not compared: last, not first as the largest drop
    note = page.by_id["compare-classes-note"]
    assert f"1 class(es) have no photos in some evaluation (–): no F1 there to compare ({gone})" in note
    # A class with photos in neither evaluation (a big model scored on a few sports): not a row of
    # dashes, and not counted as "no photos in some evaluation".
    metrics = json.loads((a.eval / "metrics.json").read_text())
    metrics["per_class"][gone].update(support=0, f1=0.0, recall=0.0)
    (a.eval / "metrics.json").write_text(json.dumps(metrics))
    page = Page(write_comparison([a.run, b.run], tmp_path / "c.html").read_text(encoding="utf-8"))
    assert gone not in {r[0] for r in page.tables["compare-classes"]}
    note = page.by_id["compare-classes-note"]
    assert "1 class(es) with no photos in any evaluation are left out." in note
    assert "some evaluation" not in note and f"{gone} (only in" not in note  # it is in both: said once


def test_comparison_names_each_evaluation_and_refuses_the_same_one_twice(tmp_path, monkeypatch, capsys):
    # Two evaluations of one run were both titled by the run's folder, the page never said what
    # data each had scored, and a 3-class run's top-3 accuracy (always 100%) read "top-5".
    a = make_run(tmp_path / "a", n_classes=3, per_class=4)
    web = tmp_path / "web photos"
    write_eval(a.run / "eval-web", a.labels, a.y_true, a.probs, a.paths, bundle=a.run / "model", data=web)
    page = Page(write_comparison([a.run, a.run / "eval-web"], tmp_path / "c.html").read_text("utf-8"))
    assert [h["text"] for h in page.headers["compare-metrics"]][1:] == ["run", "eval-web"]
    rows = {row[0]: row[1:] for row in page.tables["compare-metrics"]}
    assert rows["data evaluated"][1] == f"{web} (test)" and rows["data evaluated"][0] != "–"
    metrics = json.loads((a.eval / "metrics.json").read_text())
    assert rows["top-k accuracy"][0] == f"{100 * metrics['top5_accuracy']:.1f}% (top-{metrics['top_k']})"
    assert metrics["top_k"] == 3

    for twice in ([a.run, a.run], [a.run, a.eval], [a.run, tmp_path / "a" / "run" / "."]):
        with pytest.raises(SportsdetError, match="are the same run and evaluation"):
            write_comparison(twice, tmp_path / "c2.html")
    assert not (tmp_path / "c2.html").exists()
    code, _, err = _cli(monkeypatch, capsys, "report", "--compare", str(a.run), str(a.eval), "--gallery", "3")
    assert code == 2 and "--gallery apply to a single run's report" in err


def test_risk_coverage_table_ends_on_every_photo_answered(tmp_path):
    # 26 points, every 2nd shown: the table stopped at 96.2% and never showed the row that ties it
    # to the headline accuracy.
    fake = make_run(tmp_path, n_classes=3, per_class=4)
    metrics = json.loads((fake.eval / "metrics.json").read_text())
    points = [{"coverage": i / 26, "accuracy": 1 - i / 100, "threshold": 1 - i / 26} for i in range(1, 27)]
    metrics["abstain"] = {"method": "entropy", "threshold": None, "why": "none", "risk_coverage": points}
    (fake.eval / "metrics.json").write_text(json.dumps(metrics))
    text = write_report(fake.run).read_text(encoding="utf-8")
    rows = Page(text).tables["risk-coverage-table"]
    assert rows[0][0] == "3.8%" and rows[-1][0] == "100.0%" and rows[-1][1] == "74.00%"
    assert len(rows) == 14
    # The thresholds are on the certainty, said so: "score at least" was read as --min-score values
    # (a threshold on the top probability), which answered another share of photos.
    assert "certainty (1 - entropy / ln classes) at least</th>" in text and "score at least" not in text
    assert "--min-score X</code> is a threshold on the top probability instead" in text


def test_out_path_a_new_folder_a_file_in_the_way_and_the_runs_own_files(tmp_path):
    # -o newdir/ wrote a file named newdir; a path through a file said "File exists"; -o
    # RUN/eval/metrics.json wrote the page over the run's metrics, breaking every later report.
    fake = make_run(tmp_path, n_classes=3, per_class=3)
    assert write_report(fake.run, f"{tmp_path / 'pages'}/") == tmp_path / "pages" / "report.html"
    assert (tmp_path / "pages" / "report.html").is_file()
    with pytest.raises(SportsdetError, match=r"config\.json is a file, not a folder"):
        write_report(fake.run, fake.run / "config.json" / "x.html")
    before = (fake.eval / "metrics.json").read_bytes()
    with pytest.raises(SportsdetError, match="exists and is not an HTML page"):
        write_report(fake.run, fake.eval / "metrics.json")
    with pytest.raises(SportsdetError, match="exists and is not an HTML page"):
        write_comparison([fake.run, fake.eval / "."], fake.run / "split.json")
    assert (fake.eval / "metrics.json").read_bytes() == before
    write_report(fake.run, tmp_path / "pages" / "report.html")  # an old page is replaced
    for _ in range(2):  # also one written under a name without .html
        write_report(fake.run, tmp_path / "myreport")


def test_cli_out_folder_with_a_trailing_slash(tmp_path, monkeypatch, capsys):
    fake = make_run(tmp_path, n_classes=3, per_class=3)
    code, out, err = _cli(monkeypatch, capsys, "report", str(fake.run), "-o", f"{tmp_path / 'new'}/")
    assert code == 0, err
    page = tmp_path / "new" / "report.html"
    assert out.strip() == str(page) and page.is_file()


def test_tilde_paths_mean_the_home_folder_for_every_path_report_takes(tmp_path, monkeypatch, capsys):
    # Every other command reads '~/runs/a' (quoted, or --eval=~/...) as the home folder; report
    # said "no such folder" for the run, its --eval, --check and every --compare run.
    monkeypatch.setenv("HOME", str(tmp_path))
    a = make_run(tmp_path / "a", n_classes=3, per_class=3)
    make_run(tmp_path / "b", n_classes=3, per_class=3, seed=2)
    from sportsdet.data import check_dataset

    check = check_dataset(a.data, workers=1)
    check.save(tmp_path / "check.json")
    code, out, err = _cli(monkeypatch, capsys, "report", "~/a/run", "--eval=~/a/run/eval",
                          "--check=~/check.json", "-o", "~/page.html")  # fmt: skip
    assert code == 0, err
    assert out.strip() == str(tmp_path / "page.html")
    assert f"{check.to_dict()['checked']} files" in (tmp_path / "page.html").read_text(encoding="utf-8")
    code, out, err = _cli(monkeypatch, capsys, "report", "--compare", "~/a/run", "~/b/run",
                          "-o", "~/cmp.html")  # fmt: skip
    assert code == 0, err
    assert (tmp_path / "cmp.html").is_file()
    assert write_report("~/a/run") == a.run / "report.html"  # the Python API too


def test_a_model_bundle_given_points_to_its_run(tmp_path):
    fake = make_run(tmp_path, n_classes=3, per_class=2)
    said = f"is a model bundle, not a run; pass its run folder, {fake.run}"
    with pytest.raises(SportsdetError, match=said):
        write_report(fake.run / "model")


def test_an_evaluation_of_another_model_kept_inside_a_run_is_not_called_an_earlier_one(tmp_path):
    # `sportsdet evaluate builtin DATA --out RUN/eval-web`: its page showed RUN's model and called
    # the evaluation "an earlier model's"; the run's own page did too.
    import shutil

    a = make_run(tmp_path / "a", n_classes=3, per_class=4)
    b = make_run(tmp_path / "b", n_classes=3, per_class=4, seed=2)
    shutil.copytree(b.eval, a.run / "eval-web")
    metrics = json.loads((a.run / "eval-web" / "metrics.json").read_text())
    manifest = json.loads((b.run / "model" / "bundle.json").read_text())
    manifest["weights"]["sha256"] = metrics["weights_sha256"] = "e" * 64  # b: weights of its own
    (b.run / "model" / "bundle.json").write_text(json.dumps(manifest))
    (a.run / "eval-web" / "metrics.json").write_text(json.dumps(metrics))
    text = html.unescape(write_report(a.run / "eval-web").read_text(encoding="utf-8"))
    assert "earlier model" not in text and str(b.run / "model") in text and str(a.run / "model") not in text
    text = html.unescape(write_report(a.run).read_text(encoding="utf-8"))
    assert f"eval-web: an evaluation of another model ({b.run / 'model'}); not shown" in text


def test_comparison_takes_training_facts_from_another_model_s_bundle(tmp_path):
    # An evaluation of another model (the built-in one) has no metrics.csv here: its best validation
    # accuracy and epochs showed "–" beside the training time read from the same bundle.
    from sportsdet.bundle import save_bundle
    from sportsdet.preprocess import Preprocessing

    a = make_run(tmp_path / "a", n_classes=3, per_class=4)
    other = tmp_path / "other"
    save_bundle(other, state_dict={"classifier.weight": np.zeros((3, 4), np.float32)},
                model_name="seed-cnn", model_config={}, labels=a.labels,
                preprocessing=Preprocessing(input_size=150, resize="squash"), output_key="classifier.weight",
                training={"recipe": "scratch", "seconds": 75.0, "epochs_run": 23},
                metrics={"best_val_accuracy": 0.9})  # fmt: skip
    write_eval(tmp_path / "eval-other", a.labels, a.y_true, a.probs, a.paths, bundle=other, data=a.data)
    page = Page(write_comparison([a.run, tmp_path / "eval-other"], tmp_path / "c.html").read_text("utf-8"))
    rows = {row[0]: row[1:] for row in page.tables["compare-metrics"]}
    assert rows["best validation accuracy"][1] == "90.0%" and rows["epochs"][1] == "23"


def test_the_curves_star_the_epoch_the_model_was_kept_from(tmp_path, monkeypatch):
    # Two epochs of the same validation accuracy: the trainer keeps the one of lower loss (2), the
    # report and bundle.json said epoch 2, the curves starred epoch 1 (argmax of the accuracy).
    from matplotlib.axes import Axes

    from sportsdet import plots

    history = [
        {"epoch": 1, "train_loss": 1.0, "val_loss": 0.9, "train_acc": 0.5, "val_acc": 0.667},
        {"epoch": 2, "train_loss": 0.8, "val_loss": 0.7, "train_acc": 0.6, "val_acc": 0.667},
    ]
    labels: list[str] = []
    plot = Axes.plot

    def recording(self, *args, **kwargs):
        labels.append(str(kwargs.get("label", "")))
        return plot(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", recording)
    plots.curves_png(history, best_epoch=2)
    assert "best validation 0.667 (epoch 2)" in labels
    # The report stars the epoch bundle.json names (here not the one of highest accuracy).
    fake = make_run(tmp_path, n_classes=3, per_class=2, epochs=4)
    manifest = json.loads((fake.run / "model" / "bundle.json").read_text())
    manifest["training"]["best_epoch"] = 1
    (fake.run / "model" / "bundle.json").write_text(json.dumps(manifest))
    labels.clear()
    write_report(fake.run)
    assert [label for label in labels if label.startswith("best validation")][0].endswith("(epoch 1)")


def test_without_matplotlib_the_report_keeps_its_tables(tmp_path, monkeypatch):
    # The light install: the sample sheet's ModuleNotFoundError cost the whole Data section
    # (split counts, the data check's findings), said as "could not be drawn".
    fake = make_run(tmp_path, n_classes=3, per_class=2)
    split = json.loads((fake.run / "split.json").read_text())
    photos = sorted(fake.data.glob("test/*/*.jpg"))
    split["splits"]["train"] = [[p.relative_to(fake.data).as_posix(), p.parent.name] for p in photos]
    (fake.run / "split.json").write_text(json.dumps(split))
    for name in ["matplotlib", *(key for key in sys.modules if key.startswith("matplotlib."))]:
        monkeypatch.setitem(sys.modules, name, None)
    page = html.unescape(write_report(fake.run).read_text(encoding="utf-8"))
    data = page.split('id="data"')[1].split('id="model"')[0]
    assert "No data-check report found" in data
    assert "sample training photos per class and source: not drawn (needs matplotlib: pip install" in data
    assert 'id="reliability-table"' in page and "reliability diagram: not drawn" in page
    assert "could not be drawn" not in page


def test_an_evaluation_of_the_photos_the_model_trained_on_is_not_given_an_interval(tmp_path):
    # `evaluate RUN --split train`: "the accuracy this model would reach on more photos like these
    # is plausibly between ..." about photos it trained on, listed beside the test score as an equal.
    fake = make_run(tmp_path, n_classes=3, per_class=2)
    trained = fake.run / "eval-train"
    shutil.copytree(fake.eval, trained)
    metrics = json.loads((trained / "metrics.json").read_text())
    metrics.update({"source": "split-manifest", "split": "train"})
    (trained / "metrics.json").write_text(json.dumps(metrics))
    own = html.unescape(write_report(trained).read_text(encoding="utf-8"))
    assert "These are the photos the model trained on" in own and "plausibly" not in own
    run_page = html.unescape(write_report(fake.run).read_text(encoding="utf-8"))
    listed = run_page.split('id="other-evals-table"')[1].split("</table>")[0]
    assert "(photos it trained on: not a measure of new photos)" in listed
    assert "plausibly" in run_page  # the run's own test split keeps its interval


def test_an_evaluation_beside_a_saved_split_is_not_taken_for_a_run(tmp_path):
    # `evaluate builtin PHOTOS` run in a folder holding split.json (from `data split --out`): the
    # page showed that split's data as the model's, titled after the folder.
    fake = make_run(tmp_path / "made", n_classes=3, per_class=2)
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(fake.run / "split.json", project / "split.json")
    alone = project / "eval-builtin"
    shutil.copytree(fake.eval, alone)
    from sportsdet.report.inputs import load_inputs

    inputs = load_inputs(alone)
    assert inputs.run_dir is None and inputs.eval_dir == alone.resolve()
    title = html.unescape(write_report(alone).read_text(encoding="utf-8")).split("</title>")[0]
    assert "project" not in title


def test_comparison_says_when_the_runs_scored_other_photos(tmp_path):
    # Two runs whose own random splits share 3 of their 12 test photos were set side by side, the
    # page saying "the test split of tiny" for both; nor did it say which engine scored each.
    a = make_run(tmp_path / "a", n_classes=3, per_class=4)
    b = make_run(tmp_path / "b", n_classes=3, per_class=4, seed=2)
    text = html.unescape(write_comparison([a.run, b.run], tmp_path / "c.html").read_text(encoding="utf-8"))
    assert "b/run scored other photos than a/run (0 in common of 12 and 12)" in text
    same = shutil.copytree(a.run, tmp_path / "again" / "run")
    metrics = json.loads((same / "eval" / "metrics.json").read_text())
    metrics["backend"] = "onnxruntime int8 (model.int8.onnx)"
    (same / "eval" / "metrics.json").write_text(json.dumps(metrics))
    text = write_comparison([a.run, same], tmp_path / "d.html").read_text(encoding="utf-8")
    assert "scored other photos" not in text
    # Part of the photos in common (two random splits of one folder): said with the count.
    partly = shutil.copytree(a.run, tmp_path / "partly" / "run")
    rows = (partly / "eval" / "predictions.csv").read_text(encoding="utf-8").splitlines()
    (partly / "eval" / "predictions.csv").write_text("\n".join(rows[:-3]) + "\n", encoding="utf-8")
    page = html.unescape(write_comparison([a.run, partly], tmp_path / "e.html").read_text(encoding="utf-8"))
    assert "partly/run scored other photos than a/run (9 in common of 9 and 12)" in page
    engines = {row[0]: row[1:] for row in Page(text).tables["compare-metrics"]}["engine"]
    assert engines[1] == "onnxruntime int8 (model.int8.onnx)"


def _contrast(one: str, other: str) -> float:
    """WCAG 2 contrast ratio of two #rrggbb colours."""

    def luminance(colour: str) -> float:
        linear = [(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4)
                  for c in (int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5))]  # fmt: skip
        return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]

    high, low = sorted((luminance(one), luminance(other)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_counts_on_confusion_squares_are_readable_on_every_shade():
    # White "3" on a 60% square (#4a98c9) was 3.2:1; small text needs 4.5:1 (WCAG AA).
    from sportsdet.report.confusion import colour, confusion_svg

    matrix = [[share, 100 - share] for share in range(4, 101, 8)]  # 13 rows: counts drawn up to 15
    text = confusion_svg(matrix, [f"c{i}" for i in range(len(matrix))], ["a", "b"])
    drawn = re.findall(r'fill="(#[0-9a-f]{6})" data-count="(\d+)" data-row="(\d+)"[^>]*>.*?'
                       r'dominant-baseline="central" fill="(#[0-9a-f]{6})"', text, re.S)  # fmt: skip
    assert len(drawn) >= len(matrix)
    for fill, _count, _row, ink in drawn:
        assert _contrast(fill, ink) >= 4.5, (fill, ink)
    assert colour(1.0) != colour(0.0)


def test_numbers_from_hand_edited_files_are_escaped_like_text(tmp_path):
    # A received run folder whose config.json, data_summary.json or metrics.json holds markup where a
    # number goes ran script in the report (the names were escaped, the counts were not).
    fake = make_run(tmp_path, n_classes=3, per_class=2)
    evil = "<img src=x onerror=alert(1)>"
    metrics = json.loads((fake.eval / "metrics.json").read_text())
    metrics["n"] = evil
    first = next(iter(metrics["per_class"]))
    metrics["per_class"][first]["support"] = evil
    metrics["per_source"] = {"web": {"n": evil, "accuracy": 0.5, "accuracy_ci95": [0.1, 0.9]}}
    metrics["most_confused"] = [{"true": "a", "predicted": "b", "count": evil, "share": 0.5}]
    (fake.eval / "metrics.json").write_text(json.dumps(metrics))
    summary = json.loads((fake.run / "data_summary.json").read_text())
    summary["ignored"] = {"hidden": evil}
    (fake.run / "data_summary.json").write_text(json.dumps(summary))
    page = write_report(fake.run).read_text(encoding="utf-8")
    assert evil not in page and html.escape(evil, quote=False) in page
    # A run without a model yet, whose --epochs was edited into markup.
    shutil.rmtree(fake.run / "model")
    shutil.rmtree(fake.eval)
    config = json.loads((fake.run / "config.json").read_text())
    config["options"] = {**config.get("options", {}), "epochs": evil}
    (fake.run / "config.json").write_text(json.dumps(config))
    page = write_report(fake.run).read_text(encoding="utf-8")
    assert evil not in page and "This run has no model yet" in page


def test_the_runs_own_seed_is_shown_not_only_the_splits(tmp_path):
    # config.json and bundle.json recorded --seed 5; the page showed only "split seed 0".
    fake = make_run(tmp_path, n_classes=3, per_class=2)
    config = json.loads((fake.run / "config.json").read_text())
    # As `sportsdet train` writes it: the seed beside the options, not among them.
    (fake.run / "config.json").write_text(json.dumps({**config, "seed": 5, "options": {"epochs": 6}}))
    page = write_report(fake.run).read_text(encoding="utf-8")
    assert page.count("<th>seed</th><td>5</td>") == 1


def test_each_class_names_the_wrong_class_its_photos_went_to_most() -> None:
    from sportsdet.report.html import _every_confusion, _top_confusion

    labels = ["air hockey", "<b>bmx & co</b>", "curling"]
    matrix = [[5, 1, 0], [0, 2, 3], [4, 0, 1]]
    # Its own column is never "instead", however many photos it holds; names are escaped.
    assert _top_confusion({"confusion_matrix": matrix, "labels": labels}, labels) == {
        "air hockey": "&lt;b&gt;bmx &amp; co&lt;/b&gt; (1)",
        "<b>bmx & co</b>": "curling (3)",
        "curling": "air hockey (4)",
    }
    every = {(p["true"], p["predicted"]): (p["count"], p["share"]) for p in _every_confusion(matrix, labels)}
    # The share is of the true class's photos: 1 of air hockey's 6, 3 of bmx's 5.
    assert every == {
        ("air hockey", "<b>bmx & co</b>"): (1, 1 / 6),
        ("<b>bmx & co</b>", "curling"): (3, 3 / 5),
        ("curling", "air hockey"): (4, 4 / 5),
    }


def test_a_gallery_sample_shows_every_class_once_before_any_twice() -> None:
    from sportsdet.report.gallery import spread_sample
    from sportsdet.report.inputs import Prediction

    classes = ["a"] * 18 + ["b", "c"]  # one class with most of the photos
    predictions = [Prediction(f"{c}/{i}.jpg", c, c, 0.9, 0.9) for i, c in enumerate(classes)]
    for seed in range(5):
        sample = spread_sample(predictions, 3, seed=seed)
        assert sorted(p.true_label for p in sample) == ["a", "b", "c"], seed
    assert spread_sample(predictions, 3, seed=1) == spread_sample(predictions, 3, seed=1)


def test_the_plots_draw_what_they_say(tmp_path, monkeypatch) -> None:
    # The confusion matrix PNG is row-normalised (each true class sums to 1); the reliability bars
    # are each bin's accuracy, not its confidence.
    from matplotlib.axes import Axes

    from sportsdet import plots

    drawn: dict[str, list] = {"imshow": [], "bar": []}
    imshow, bar = Axes.imshow, Axes.bar

    def recording_imshow(self, data, *args, **kwargs):
        drawn["imshow"].append(np.asarray(data))
        return imshow(self, data, *args, **kwargs)

    def recording_bar(self, x, height, *args, **kwargs):
        drawn["bar"].append(np.asarray(height, dtype=float))
        return bar(self, x, height, *args, **kwargs)

    monkeypatch.setattr(Axes, "imshow", recording_imshow)
    monkeypatch.setattr(Axes, "bar", recording_bar)
    plots.plot_confusion_matrix(np.array([[3, 1], [0, 4]]), ["a", "b"], tmp_path / "cm.png")
    np.testing.assert_allclose(drawn["imshow"][0], [[0.75, 0.25], [0.0, 1.0]])
    bins = [
        {"lower": 0.0, "upper": 0.5, "count": 4, "mean_confidence": 0.4, "accuracy": 0.25},
        {"lower": 0.5, "upper": 1.0, "count": 6, "mean_confidence": 0.9, "accuracy": 0.5},
    ]
    plots.reliability_png(bins, 0.2)
    np.testing.assert_allclose(drawn["bar"][0], [0.25, 0.5])  # the accuracy bars
    np.testing.assert_allclose(drawn["bar"][1], [4, 6])  # the counts below
