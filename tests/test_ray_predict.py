"""`sportsdet predict --engine ray`: a local Ray on 127.0.0.1, a few hundred tiny photos.

One Ray is started for the whole module (small, no dashboard). The same inputs go through
plain `sportsdet predict` (the Predictor) and through Ray; labels and scores must match to
float tolerance, bad inputs must be rows with the same error, and a second run into the same
folder must skip everything. Ray is imported without importorskip: the dev install
(scripts/setup.sh) has the cluster extra, and a missing Ray must fail here, not skip quietly.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray
from conftest import held_by_another_process, make_image
from typer.testing import CliRunner

from sportsdet.bundle import builtin_bundle_path
from sportsdet.cluster.ray_predict import part_files, run_ray_predict
from sportsdet.predict import Predictor

PHOTOS = 240  # plus the bad inputs below: "a few hundred"
runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    # 3 logical CPUs on this 2-core machine: two model actors and room for the decode tasks.
    ray.init(
        address="local",
        num_cpus=3,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        logging_level="ERROR",
        log_to_driver=False,
    )
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory, http_server) -> dict:
    """A folder of tiny JPEGs/PNGs in varied shapes, bad files among them, and a listing file."""
    root = tmp_path_factory.mktemp("ray-photos")
    colours = [(220, 40, 40), (40, 200, 60), (50, 70, 230), (230, 220, 40), (240, 240, 240)]
    for i in range(PHOTOS):
        folder = root / "photos" / f"set{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        image = make_image(colours[i % len(colours)], size=40 + (i % 7) * 6, seed=i)
        if i % 3 == 0:
            image = image.resize((image.width + 20, image.height))  # not square: crop matters
        image.save(folder / f"{i:04d}.{'png' if i % 10 == 0 else 'jpg'}")
    bad = root / "photos" / "bad"
    bad.mkdir()
    (bad / "empty.jpg").write_bytes(b"")
    (bad / "text.jpg").write_text("<html>not a photo</html>")
    good = (root / "photos" / "set1" / "0001.jpg").read_bytes()
    (bad / "truncated.jpg").write_bytes(good[: len(good) // 2])
    make_image((10, 10, 10), size=12).save(bad / "tiny.png")  # tiny but valid: predict labels it
    # A listing with relative paths (from the listing's folder), a URL and entries that fail.
    extra = root / "extra"
    extra.mkdir()
    for i in range(6):
        make_image(colours[i % len(colours)], size=50, seed=1000 + i).save(extra / f"x{i}.jpg")
    listing = root / "more.txt"
    listed = [f"extra/x{i}.jpg" for i in range(6)] + [
        "extra/missing.jpg",
        http_server.url("/good.jpg"),
        http_server.url("/missing.jpg"),
    ]
    listing.write_text("\n".join(listed) + "\n")
    return {"root": root, "listing": listing, "listed": listed, "bad": 3 + 2}


def _same_score(got: float | None, want: float | None, name: str) -> None:
    """Equal to float tolerance; both None for a failed or uncertain ("I don't know") input."""
    if want is None:
        assert got is None, name
    else:
        assert got == pytest.approx(want, abs=1e-5), name


def _rows(out: Path) -> dict[str, dict]:
    rows = pq.read_table(out).to_pylist()
    by_input = {row["input"]: row for row in rows}
    assert len(by_input) == len(rows), "an input was written twice"
    return by_input


def test_matches_plain_predict_then_resumes(
    photos: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root: Path = photos["root"]
    monkeypatch.chdir(root)  # relative inputs, as a user types them
    model = builtin_bundle_path()
    assert model is not None
    inputs = ["photos", "more.txt"]
    out = tmp_path / "out"

    summary = run_ray_predict(inputs, out, model=model, top_k=3, workers=2, part_rows=64)
    rows = _rows(out)
    # The same photos, named the same way, through plain `sportsdet predict`.
    expected = {r.input: r for r in Predictor(model, top_k=3).predict_sources(["photos", *photos["listed"]])}
    assert set(rows) == set(expected)
    assert summary.written == len(expected) == PHOTOS + 4 + 9
    assert summary.skipped == 0 and summary.already_done == 0
    failed = {name for name, r in expected.items() if not r.ok}
    assert len(failed) == photos["bad"], failed
    assert summary.failed == len(failed)
    for name, want in expected.items():
        got = rows[name]
        assert got["error"] == want.error, name
        assert got["warning"] == want.warning, name
        if want.ok:
            assert got["label"] == want.label, name
            _same_score(got["score"], want.score, name)
            assert got["uncertain"] == want.uncertain, name  # the built-in model's own abstain rule
            assert [t["label"] for t in got["top_k"]] == [label for label, _ in want.top_k]
            np.testing.assert_allclose(
                [t["score"] for t in got["top_k"]], [s for _, s in want.top_k], atol=1e-5
            )
        else:
            assert got["label"] is None and got["score"] is None and got["top_k"] == []
            assert got["uncertain"] is None
    assert rows["photos/bad/tiny.png"]["warning"]  # labelled, with predict's warning
    assert any(r.uncertain for r in expected.values())  # the uncertain column is really exercised
    assert summary.uncertain == sum(bool(r.ok and r.uncertain) for r in expected.values())
    assert len(summary.parts) > 1  # parts of 64 rows

    # A second run into the same folder skips every labelled input and tries the failed ones
    # again (their rows replaced, not doubled): a file mended since, a URL that failed a while.
    again = run_ray_predict(inputs, out, model=model, top_k=3, workers=1)
    done = len(expected) - len(failed)
    counts = (again.written, again.skipped, again.already_done, again.retried)
    assert counts == (len(failed), done, done, len(failed))
    assert again.failed == len(failed)
    assert set(_rows(out)) == set(expected)

    # A crash: one part lost (and a half-written temp file left): the re-run labels exactly those.
    lost = summary.parts[1]
    lost_inputs = set(pq.read_table(lost, columns=["input"]).column("input").to_pylist())
    lost.unlink()
    (out / f".{lost.name}.tmp").write_bytes(b"half a parquet file")
    resumed = run_ray_predict(inputs, out, model=model, top_k=3, workers=1)
    assert resumed.written == len(lost_inputs | failed)
    assert resumed.skipped == len(expected) - len(lost_inputs | failed)
    assert not list(out.glob(".*.tmp"))
    final = _rows(out)
    assert set(final) == set(expected)
    for name in lost_inputs:
        _same_score(final[name]["score"], expected[name].score, name)


def test_cli_engine_ray(photos: dict, tmp_path: Path) -> None:
    from sportsdet.cli import app

    out = tmp_path / "cli-out"
    folder = str(photos["root"] / "photos" / "set2")
    args = ["predict", "--engine", "ray", folder, "--output", str(out), "--workers", "1", "--top-k", "2"]
    args.append("--no-abstain")  # every photo gets a label, and `uncertain` says no rule was in force
    first = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert first.exit_code == 0, first.output
    count = PHOTOS // 4
    assert f"wrote {count} result(s)" in first.output
    rows = _rows(out)
    assert len(rows) == count and all(len(r["top_k"]) == 2 and r["error"] is None for r in rows.values())
    assert all(r["label"] is not None and r["uncertain"] is None for r in rows.values())
    second = runner.invoke(app, args, env={"COLUMNS": "40"})  # a narrow terminal, or a pipe
    assert second.exit_code == 0, second.output
    # The summary is one line a script can parse (it was wrapped at the terminal's width).
    (line,) = [line for line in second.output.splitlines() if line.startswith("wrote 0 result(s)")]
    assert line.endswith(f"skipped {count} photo(s) already there"), second.output


def test_reruns_retry_failures_and_tell_photos_of_the_same_name_apart(photos: dict, tmp_path: Path) -> None:
    # Failed rows counted as done: a file mended since was never labelled, and the re-run
    # exited 0. Names relative to a listing's folder keyed the done-set: L2/p.jpg, after
    # L1/p.jpg, was "already there". A folder and a photo in it, both given, made two rows.
    model = builtin_bundle_path()
    src = photos["root"] / "photos" / "set1"
    folders = [tmp_path / "L1", tmp_path / "L2"]
    for index, folder in enumerate(folders):
        folder.mkdir()
        (folder / "p.jpg").write_bytes((src / f"{4 * index + 1:04d}.jpg").read_bytes())
        (folder / "list.txt").write_text("p.jpg\nbroken.jpg\n")
        (folder / "broken.jpg").write_bytes(b"")
    out = tmp_path / "out"
    first = run_ray_predict([str(folders[0] / "list.txt")], out, model=model, workers=1)
    assert (first.written, first.failed) == (2, 1)
    (folders[0] / "broken.jpg").write_bytes((src / "0009.jpg").read_bytes())  # mended
    second = run_ray_predict([str(folders[0] / "list.txt")], out, model=model, workers=1)
    assert (second.written, second.failed, second.skipped, second.retried) == (1, 0, 1, 1)
    third = run_ray_predict([str(folders[1] / "list.txt")], out, model=model, workers=1)
    assert (third.written, third.skipped) == (2, 0)  # other photos, though named alike
    rows = pq.read_table(out).to_pylist()
    assert sorted((r["input"], r["source"], r["error"] is None) for r in rows) == [
        ("broken.jpg", str(folders[0] / "broken.jpg"), True),
        ("broken.jpg", str(folders[1] / "broken.jpg"), False),
        ("p.jpg", str(folders[0] / "p.jpg"), True),
        ("p.jpg", str(folders[1] / "p.jpg"), True),
    ]
    twice = tmp_path / "twice"  # also spelled another way: the same photo
    given = [str(folders[0]), str(folders[0] / "p.jpg"), str(folders[1] / ".." / "L1" / "p.jpg")]
    run_ray_predict(given, twice, model=model)
    assert sorted(r["input"] for r in pq.read_table(twice).to_pylist()) == sorted(
        str(folders[0] / name) for name in ("broken.jpg", "p.jpg")
    )


def test_a_run_keeps_the_failures_it_does_not_try_again_and_reads_older_parts(photos, tmp_path, monkeypatch):
    # Every run dropped every error row of the folder, tried again or not ("tried again 1" for a
    # photo it never listed); and parts written before the `source` column matched nothing, so
    # a folder of relative names was labelled all over again.
    import pyarrow.parquet as pq

    model = builtin_bundle_path()
    monkeypatch.chdir(photos["root"])
    out = tmp_path / "out"
    first = run_ray_predict(["photos/bad"], out, model=model, workers=1)
    second = run_ray_predict(["photos/set3"], out, model=model, workers=1)
    assert (first.failed, second.retried) == (3, 0)  # empty, text and truncated; tiny.png is labelled
    rows = pq.read_table(out).to_pylist()
    assert sum(r["error"] is not None for r in rows) == first.failed

    old = tmp_path / "old"
    old.mkdir()
    for part in part_files(out):
        pq.write_table(pq.read_table(part).drop_columns(["source"]), old / part.name)  # an older folder
    again = run_ray_predict(["photos/bad", "photos/set3"], old, model=model, workers=1)
    assert (again.written, again.retried) == (first.failed, first.failed)
    assert again.skipped == again.already_done == first.written + second.written - first.failed

    # An input that failed before it named a photo (missing then made): its error row goes too.
    late = tmp_path / "late.jpg"
    missing = run_ray_predict([str(late)], out, model=model, workers=1)
    late.write_bytes((photos["root"] / "photos" / "set1" / "0001.jpg").read_bytes())
    found = run_ray_predict([str(late)], out, model=model, workers=1)
    assert (missing.failed, found.written, found.failed, found.retried) == (1, 1, 0, 1)
    (row,) = [r for r in pq.read_table(out).to_pylist() if r["input"] == str(late)]
    assert row["error"] is None and row["top_k"]  # labelled (or "uncertain", with its best guess)


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS file names must be UTF-8")
def test_a_photo_whose_name_is_not_utf8_is_labelled_once(photos: dict, tmp_path: Path) -> None:
    # Its path is the row's source and the key a re-run skips it by: text with \xe9 escapes.
    folder = tmp_path / "latin1"
    folder.mkdir()
    (folder / "x.jpg").write_bytes((photos["root"] / "photos" / "set1" / "0001.jpg").read_bytes())
    os.rename(bytes(folder / "x.jpg"), bytes(folder) + b"/caf\xe9.jpg")
    model = builtin_bundle_path()
    first = run_ray_predict([str(folder)], tmp_path / "out", model=model, workers=1)
    again = run_ray_predict([str(folder)], tmp_path / "out", model=model, workers=1)
    (row,) = pq.read_table(tmp_path / "out").to_pylist()
    assert (first.written, first.failed, again.written, again.skipped) == (1, 0, 0, 1)
    assert row["source"] == f"{folder}/caf\\xe9.jpg" and row["error"] is None


def test_ray_init_does_not_keep_the_sigterm_handler_it_sets(monkeypatch) -> None:
    # ray.init installs sys.exit for SIGTERM (exit 15 with a C++ stack dump): the command's own
    # handler (end as on Ctrl-C, exit 143) is put back.
    import signal

    from sportsdet.cluster.ray_predict import _connect

    class FakeRay:
        def is_initialized(self) -> bool:
            return False

        def init(self, **kwargs) -> None:
            signal.signal(signal.SIGTERM, lambda *args: sys.exit(15))

    def ours(*args):
        return None

    previous = signal.signal(signal.SIGTERM, ours)
    try:
        assert _connect(FakeRay(), None, 2) is True
        assert signal.getsignal(signal.SIGTERM) is ours
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_listings_with_a_byte_order_mark_empty_cells_and_misleading_names(photos, tmp_path) -> None:
    # Excel's "CSV UTF-8" starts with a byte-order mark: its 'path' column was not found. A row
    # without a path vanished without a word. Predict's note on a photo named without an image
    # extension was lost on Ray.
    model = builtin_bundle_path()
    photo = photos["root"] / "photos" / "set1" / "0001.jpg"
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "noext").write_bytes(photo.read_bytes())  # found in a folder by its content
    listing = tmp_path / "excel.csv"
    listing.write_bytes(f"\ufeffpath,label\r\n{photo},a\r\n,b\r\nodd,c\r\n".encode())
    summary = run_ray_predict([str(listing)], tmp_path / "out", model=model, workers=1)
    rows = _rows(tmp_path / "out")
    assert summary.written == 3 and summary.failed == 1
    assert rows["<empty path in excel.csv>"]["error"] == f"{listing}: a row with an empty 'path'"
    (plain,) = Predictor(model).predict_sources([str(tmp_path / "odd")])
    assert rows["odd/noext"]["warning"] == plain.warning and "misleading name" in plain.warning
    # And a .txt listing saved with one (Notepad's UTF-8): its first photo was "file not found".
    (tmp_path / "notepad.txt").write_bytes(f"\ufeff{photo}\r\n".encode())
    summary = run_ray_predict([str(tmp_path / "notepad.txt")], tmp_path / "out2", model=model, workers=1)
    assert summary.written == 1 and summary.failed == 0
    assert _rows(tmp_path / "out2")[str(photo)]["error"] is None
    # A photo saved as .txt, given by name: labelled like plain predict labels it (the whole job
    # was refused: "line 1: not UTF-8 text").
    (tmp_path / "photo.txt").write_bytes(photo.read_bytes())
    (plain,) = Predictor(model).predict_sources([str(tmp_path / "photo.txt")])
    summary = run_ray_predict([str(tmp_path / "photo.txt")], tmp_path / "out3", model=model, workers=1)
    row = _rows(tmp_path / "out3")[str(tmp_path / "photo.txt")]
    assert summary.written == 1 and row["error"] is None and row["warning"] == plain.warning
    assert "misleading name" in plain.warning


def test_cli_refuses_bad_options_and_listings(photos: dict, tmp_path: Path) -> None:
    from sportsdet.cli import app

    # The real console script: a user error is one `error:` line and exit code 2.
    cli = [sys.executable, "-m", "sportsdet", "predict", "--engine", "ray"]
    no_output = subprocess.run([*cli, str(photos["root"])], capture_output=True, text=True, timeout=120)
    assert no_output.returncode == 2 and "error: --engine ray writes Parquet files: pass --output" in (
        no_output.stderr
    )
    listing = tmp_path / "list.csv"
    listing.write_text("file,label\na.jpg,polo\n")
    out = tmp_path / "o"
    wrong = subprocess.run(
        [*cli, str(listing), "--output", str(out)], capture_output=True, text=True, timeout=120
    )
    assert wrong.returncode == 2 and "a listing needs a 'path' column" in wrong.stderr, wrong.stderr
    assert "Traceback" not in wrong.stderr
    assert not out.exists()  # refused before the output folder was made
    # Listings Ray Data cannot parse stopped the job half way, after a page of its tracebacks,
    # with Ray's advice on retries for the cause; an address that takes no connection hung.
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("path\na.jpg,extra\nb.jpg\n")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(b"a.jpg\ncaf\xe9.jpg\n")
    for listing, message in [(ragged, "ragged.csv: not a readable CSV listing"),
                             (latin1, "latin1.txt, line 2: not UTF-8 text")]:  # fmt: skip
        command = [*cli, str(listing), "--output", str(out)]
        bad = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
        assert len(bad.stderr.splitlines()) <= 2, bad.stderr
    folder = str(photos["root"] / "photos" / "set0")
    # Plain predict's --format and --device were taken and ignored.
    for extra, message in [(["--format", "csv"], "--format csv is for plain predict"),
                           (["--device", "cuda"], "--device cuda is for plain predict's torch")]:  # fmt: skip
        result = runner.invoke(app, ["predict", "--engine", "ray", folder, "--output", str(out), *extra])
        assert result.exit_code != 0 and message in str(result.exception), result.output
    assert not out.exists()
    command = [*cli, folder, "--output", str(out), "--address", "127.0.0.1:1"]
    away = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert away.returncode == 2 and "cannot reach the Ray cluster at 127.0.0.1:1" in away.stderr, away.stderr
    assert not out.exists()  # the folder it made for a job that never ran is gone (it held a lock file)


def test_one_run_at_a_time_writes_into_an_output_folder(photos: dict, tmp_path: Path) -> None:
    # Two runs at once wrote every row twice.
    from sportsdet.errors import SportsdetError

    out = tmp_path / "out"
    with held_by_another_process(out):
        busy = r"another sportsdet process \(pid \d+\) is writing into this"
        with pytest.raises(SportsdetError, match=busy):
            run_ray_predict([str(photos["root"] / "photos" / "set0")], out, model=builtin_bundle_path())
    assert part_files(out) == []


def test_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from sportsdet.cluster.ray_predict import import_ray
    from sportsdet.errors import SportsdetError

    monkeypatch.setitem(sys.modules, "ray", None)  # what an install without the extra looks like
    with pytest.raises(SportsdetError, match=r"sportsdet\[cluster\]"):
        import_ray()


def test_plain_predict_does_not_import_ray() -> None:
    code = "import sys, sportsdet, sportsdet.cli, sportsdet.predict; print('ray' in sys.modules)"
    env = {**os.environ}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_actor_failure_is_one_clear_error(photos: dict, tmp_path: Path) -> None:
    """The model vanishing before the actors load it (as on a node without the file): a
    SportsdetError naming the way on, not a traceback or a hung job."""
    from conftest import make_colour_onnx

    from sportsdet.errors import SportsdetError

    model = make_colour_onnx(tmp_path / "colour.onnx")
    folder = photos["root"] / "photos" / "set3"
    with pytest.raises(SportsdetError, match="the Ray job stopped: .*no such ONNX model file.*run again"):
        run_ray_predict(
            [str(folder)], tmp_path / "out", model=model, workers=1, on_start=lambda _: model.unlink()
        )


def test_object_storage_uris(photos: dict, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Objects and prefixes read through pyarrow's file systems (file:// here; s3:// and gs://
    take the same path): the same labels as plain predict on the same files."""
    root: Path = photos["root"]
    one = root / "photos" / "set0" / "0000.png"
    prefix = root / "photos" / "set1"
    hidden = prefix / ".hidden.jpg"
    hidden.write_bytes(one.read_bytes())  # skipped, as in a local folder
    request.addfinalizer(hidden.unlink)  # the photos are shared by the module's tests
    listing = tmp_path / "objects.txt"
    listing.write_text(f"file://{one}\nfile://{prefix}\nfile://{root}/no/such.jpg\n")
    model = builtin_bundle_path()
    summary = run_ray_predict([str(listing)], tmp_path / "out", model=model, top_k=3, workers=1)
    rows = _rows(tmp_path / "out")
    expected = {r.input: r for r in Predictor(model, top_k=3).predict_sources([str(one), str(prefix)])}
    assert summary.written == len(expected) + 1 == len(rows)
    assert rows[f"file://{root}/no/such.jpg"]["error"] == "no such object or prefix"
    for name, want in expected.items():
        got = rows[f"file://{name}"]
        assert got["error"] is None and got["label"] == want.label, name
        _same_score(got["score"], want.score, name)


def test_inputs_are_read_as_plain_predict_reads_them(photos, tmp_path, monkeypatch) -> None:
    # A photo given by two inputs was labelled twice by plain predict, and on Ray once or twice
    # depending on where (a listing and the command line: twice). Command-line inputs were read
    # as listing lines: '#1.jpg' dropped as a comment, ' lead.jpg' stripped to a missing file, ''
    # dropped, '-' taken for a file name.
    model = builtin_bundle_path()
    photo = photos["root"] / "photos" / "set1" / "0001.jpg"
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("#1.jpg", " lead.jpg", "a.jpg"):
        shutil.copy(photo, folder / name)
    (tmp_path / "list.txt").write_text("# a comment\n\nin/a.jpg\n  in/a.jpg  \n")
    monkeypatch.chdir(tmp_path)
    inputs = ["in/#1.jpg", "", "in/ lead.jpg", "-", "in", "in/a.jpg", "in/*.jpg"]
    results = list(Predictor(model).predict_sources(inputs))
    plain = {r.input: r for r in results}
    assert sorted(r.input for r in results) == sorted(["in/#1.jpg", "''", "in/ lead.jpg", "-", "in/a.jpg"])
    assert plain["in/a.jpg"].top_k and plain["-"].error and plain["''"].error
    summary = run_ray_predict([*inputs, "list.txt"], tmp_path / "out", model=model, workers=1)
    rows = pq.read_table(tmp_path / "out").to_pylist()
    assert sorted(row["input"] for row in rows) == sorted(plain), rows
    for row in rows:
        want = plain[row["input"]]
        assert row["label"] == want.label and (row["error"] is None) == (want.error is None), row
    assert summary.written == 5 and summary.repeated == 2  # in/a.jpg of the listing, twice
    # Run again: each photo already there is skipped once, however many inputs reach it ("skipped
    # 10 input(s)" of 7 rows). The failed inputs ('', '-') are tried again.
    again = run_ray_predict([*inputs, "list.txt"], tmp_path / "out", model=model, workers=1)
    assert again.skipped == 3 and again.written == 2, again


def test_a_folder_of_results_is_not_mixed_with_results_made_another_way(photos, tmp_path) -> None:
    # A re-run with another --top-k (or model, or abstain rule) kept the old rows and wrote new
    # ones beside them: a folder of top-5 and top-2 lists, some photos with the old abstain rule.
    from sportsdet.errors import SportsdetError

    model, out = builtin_bundle_path(), tmp_path / "out"
    folder = [str(photos["root"] / "extra")]
    run_ray_predict([str(photos["root"] / "extra" / "x0.jpg")], out, model=model, workers=1)
    for options, said in [({"top_k": 2}, "--top-k 5 (now 2)"), ({"abstain": False}, "the abstain rule")]:
        with pytest.raises(SportsdetError, match=re.escape(said)):
            run_ray_predict(folder, out, model=model, workers=1, **options)
    summary = run_ray_predict(folder, out, model=model, workers=1)  # the same options: it goes on
    assert summary.already_done == 1 and summary.written == 5
    assert {len(row["top_k"]) for row in _rows(out).values()} == {5}
    # The same weights with renamed labels (the built-in model's 'football' became 'american
    # football'): the same model id, rows of other names. A record of an older version, without
    # the labels, is taken as it was.
    import json

    from sportsdet.bundle_labels import rename_labels

    renamed = Path(shutil.copytree(model, tmp_path / "renamed"))
    rename_labels(renamed, {"polo": "horse polo"})
    with pytest.raises(SportsdetError, match="labels '[0-9a-f]{12}' \\(now '[0-9a-f]{12}'\\)"):
        run_ray_predict(folder, out, model=renamed, workers=1)
    record = out / ".sportsdet-settings.json"
    older = json.loads(record.read_text())
    del older["labels"]
    record.write_text(json.dumps(older))
    assert run_ray_predict(folder, out, model=model, workers=1).already_done == 6
    # An older sportsdet's parts called `uncertain` `abstain`: its rows are not mixed with these.
    part = part_files(out)[0]
    pq.write_table(pq.read_table(part).rename_columns(
        ["abstain" if name == "uncertain" else name for name in pq.read_schema(part).names]), part)
    with pytest.raises(SportsdetError, match="older sportsdet .its `abstain` column is called `uncertain`"):
        run_ray_predict(folder, out, model=model, workers=1)


def test_a_listing_that_names_no_photo_is_refused(tmp_path: Path) -> None:
    # It "wrote 0 result(s)" and exited 0, where plain predict says an empty folder holds no photo.
    import pyarrow as pa

    from sportsdet.errors import SportsdetError

    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "comments.txt").write_text("# photos to do\n\n   \n")
    (tmp_path / "header.csv").write_text("path,label\n")
    pq.write_table(pa.table({"path": pa.array([], pa.string())}), tmp_path / "none.parquet")
    for name in ("empty.txt", "comments.txt", "header.csv", "none.parquet"):
        with pytest.raises(SportsdetError, match=f"{name}: the listing names no photo"):
            run_ray_predict([str(tmp_path / name)], tmp_path / "out", model=builtin_bundle_path(), workers=1)
        assert not (tmp_path / "out").exists()
