"""`check_dataset`, quarantine and `sportsdet data check` on a small, deliberately messy tree."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from sportsdet.data import check_dataset, quarantine_files
from sportsdet.errors import SportsdetError

# What each bad file in the messy tree must be reported as.
EXPECTED_PROBLEMS = {
    "train/polo/empty.jpg": "empty",
    "train/polo/page.jpg": "not-an-image",
    "train/polo/cut.jpg": "truncated",
    "train/polo/tiny.png": "tiny",
    "train/polo/icon.png": "unsupported-format",
    "train/polo/phone.jxl": "unsupported-format",
}
# Duplicates as reported: the copy that quarantine keeps comes first (test before train).
CROSS_SPLIT = ["test/polo/leak.jpg", "train/polo/000.jpg"]
SAME_SPLIT = ["train/croquet/000.jpg", "train/croquet/dup.jpg"]


def _photo(seed: int, size: int = 40) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def _good_tree(root: Path) -> Path:
    seed = 0
    for split, n in (("train", 4), ("test", 2)):
        for name in ("polo", "croquet"):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                seed += 1
                _photo(seed).save(folder / f"{i:03d}.jpg", quality=90)
    return root


def _messy_tree(root: Path) -> Path:
    _good_tree(root)
    polo = root / "train" / "polo"
    (polo / "empty.jpg").write_bytes(b"")
    (polo / "page.jpg").write_text("<html><body>Access denied</body></html>")
    buffer = io.BytesIO()
    _photo(99, 120).save(buffer, format="JPEG", quality=95)
    (polo / "cut.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    _photo(98, 10).save(polo / "tiny.png")
    _photo(97, 48).save(polo / "icon.png", format="ICO")
    (polo / "phone.jxl").write_bytes(b"\xff\x0a" + b"\0" * 50)  # JPEG XL: no decoder
    Image.new("L", (40, 40), 120).save(polo / "grey.jpg")
    shutil.copyfile(root / CROSS_SPLIT[1], root / CROSS_SPLIT[0])
    shutil.copyfile(root / SAME_SPLIT[0], root / SAME_SPLIT[1])
    (root / "train" / "croquet" / ".DS_Store").write_bytes(b"junk")
    return root


def test_a_copy_in_valid_and_test_keeps_the_test_one(tmp_path: Path) -> None:
    # Test before valid before train: the published test set stays whole; the leaked copy goes.
    root = _good_tree(tmp_path / "data")
    (root / "valid" / "polo").mkdir(parents=True)
    shutil.copyfile(root / "test" / "polo" / "000.jpg", root / "valid" / "polo" / "a.jpg")
    shutil.copyfile(root / "test" / "polo" / "000.jpg", root / "train" / "polo" / "a.jpg")
    (group,) = check_dataset(root, workers=1).duplicates
    assert group.keep == "test/polo/000.jpg"
    (root / "test" / "polo" / "000.jpg").unlink()
    (group,) = check_dataset(root, workers=1).duplicates
    assert group.keep == "valid/polo/a.jpg"


def _contents(*folders: Path) -> list[str]:
    """Hashes of every file below the folders: what must survive a quarantine unchanged."""
    return sorted(
        hashlib.sha256(p.read_bytes()).hexdigest() for f in folders for p in f.rglob("*") if p.is_file()
    )


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    return _messy_tree(tmp_path / "data")


def test_every_problem_is_found(messy: Path) -> None:
    report = check_dataset(messy, workers=1)
    assert {r.rel: r.kind for r in report.problems} == EXPECTED_PROBLEMS
    by_rel = {r.rel: r for r in report.results}
    assert "10x10" in by_rel["train/polo/tiny.png"].detail
    assert by_rel["train/polo/grey.jpg"].kind is None and by_rel["train/polo/grey.jpg"].mode == "L"
    assert len(report.results) == 12 + 2 + 7  # good photos + two copies + polo's extra files
    assert report.problem_counts == {
        "empty": 1,
        "not-an-image": 1,
        "unsupported-format": 2,
        "truncated": 1,
        "tiny": 1,
    }

    groups = {tuple(g.files): g for g in report.duplicates}
    assert set(groups) == {tuple(CROSS_SPLIT), tuple(SAME_SPLIT)}
    assert groups[tuple(CROSS_SPLIT)].cross_split and groups[tuple(CROSS_SPLIT)].keep == CROSS_SPLIT[0]
    assert not groups[tuple(SAME_SPLIT)].cross_split
    assert [g.files for g in report.cross_split_duplicates] == [CROSS_SPLIT]
    assert report.found_problems

    info = report.info()
    assert info["modes"] == {"RGB": 14, "L": 1} and info["greyscale"] == 1
    assert report.ignored == {"hidden": 1, "unsupported-image-type": 1}


def test_duplicates_with_different_labels_are_flagged(tmp_path: Path) -> None:
    root = _good_tree(tmp_path / "data")
    shutil.copyfile(root / "train/polo/001.jpg", root / "train/croquet/copy.jpg")
    (group,) = check_dataset(root, workers=1).duplicates
    assert group.conflicting_labels and group.labels == ["croquet", "polo"]


def test_two_workers_find_the_same(messy: Path) -> None:
    seen: list[int] = []
    one = check_dataset(messy, workers=1).to_dict()
    two = check_dataset(messy, workers=2, on_progress=seen.append).to_dict()
    one.pop("seconds"), two.pop("seconds")
    assert one == two
    assert sum(seen) == 20 and len(seen) > 1  # each decoded file reported once, in several chunks


def test_clean_tree_has_no_findings(tmp_path: Path) -> None:
    report = check_dataset(_good_tree(tmp_path / "data"), workers=1)
    assert not report.problems and not report.duplicates and not report.found_problems


def test_report_json(messy: Path, tmp_path: Path) -> None:
    path = check_dataset(messy, workers=1).save(tmp_path / "out" / "report.json")
    data = json.loads(path.read_text())
    assert data["format"] == "sportsdet-check/1" and data["checked"] == 21 and data["ok"] == 15
    assert {p["path"]: p["kind"] for p in data["problems"]} == EXPECTED_PROBLEMS
    assert data["cross_split_duplicate_groups"] == 1 and data["duplicate_groups"] == 2
    assert len(data["files"]) == 21 and all("sha256" in f for f in data["files"])
    assert [p.name for p in path.parent.iterdir()] == ["report.json"]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_iphone_photos_are_checked_like_any_other(tmp_path: Path, workers: str) -> None:
    from conftest import allow_heif_writing

    allow_heif_writing()  # the check below runs in a fresh process
    for name in ("polo", "croquet"):
        (tmp_path / "phone" / name).mkdir(parents=True)
        for i in range(3):
            _photo(10 * len(name) + i, 64).save(tmp_path / "phone" / name / f"IMG_{i}.HEIC", format="HEIF")
    report = tmp_path / "check.json"
    done = subprocess.run(
        [sys.executable, "-m", "sportsdet", "data", "check", str(tmp_path / "phone"), "--workers", workers,
         "--report", str(report)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(report.read_text())
    assert data["checked"] == data["ok"] == 6
    # Each file's header read as HEIF in every worker, the first file of each included.
    assert {(f["format"], f["mode"], f["width"]) for f in data["files"]} == {("HEIF", "RGB", 64)}


# ----------------------------------------------------------------------------- quarantine


def test_quarantine_moves_bad_files_and_extra_copies_only(messy: Path, tmp_path: Path) -> None:
    jail = tmp_path / "jail"
    before = _contents(messy)
    # Something already in the quarantine at the same relative path must not be overwritten.
    (jail / "train" / "polo").mkdir(parents=True)
    (jail / "train" / "polo" / "empty.jpg").write_bytes(b"an older quarantined file")

    report = check_dataset(messy, workers=1)
    result = quarantine_files(report, jail)
    moved = {m["path"] for m in result["moved"]}
    assert moved == set(EXPECTED_PROBLEMS) | {CROSS_SPLIT[1], SAME_SPLIT[1]}
    assert result["failed"] == []
    for rel in moved:
        assert not (messy / rel).exists()
    assert (messy / CROSS_SPLIT[0]).exists() and (messy / SAME_SPLIT[0]).exists()  # first copies stay
    assert (jail / "train/polo/000.jpg").exists() and (jail / "train/polo/phone.jxl").exists()
    # never overwritten: the old file is intact and the new one got a fresh name beside it
    assert (jail / "train/polo/empty.jpg").read_bytes() == b"an older quarantined file"
    assert (jail / "train/polo/empty~1.jpg").read_bytes() == b""
    # never deleted: every file's bytes are still somewhere
    assert _contents(messy, jail) == sorted(
        [*before, hashlib.sha256(b"an older quarantined file").hexdigest()]
    )
    after = check_dataset(messy, workers=1)
    assert not after.problems and not after.duplicates


def test_quarantine_can_leave_duplicates(messy: Path, tmp_path: Path) -> None:
    result = quarantine_files(check_dataset(messy, workers=1), tmp_path / "jail", include_duplicates=False)
    assert {m["path"] for m in result["moved"]} == set(EXPECTED_PROBLEMS)


def test_quarantine_inside_the_tree_is_refused(messy: Path) -> None:
    before = _contents(messy)
    report = check_dataset(messy, workers=1)
    for inside in (messy / "bad", messy / "train" / "rejects", messy):
        with pytest.raises(SportsdetError, match="data"):
            quarantine_files(report, inside)
    assert _contents(messy) == before
    # A hidden folder inside the tree is skipped by every scan, so it is a fine place.
    quarantine_files(report, messy / ".quarantine")
    assert (messy / ".quarantine" / "train/polo/page.jpg").exists()
    assert not check_dataset(messy, workers=1).problems


# ----------------------------------------------------------------------------- CLI


def test_cli_check_strict_exit_codes_and_report(messy: Path, tmp_path: Path) -> None:
    from sportsdet.cli import app

    runner = CliRunner()
    report = tmp_path / "report.json"
    result = runner.invoke(
        app, ["data", "check", str(messy), "--workers", "1", "--report", str(report)], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    assert "truncated" in result.stdout and "train/polo/page.jpg" in result.stdout
    assert "duplicates across splits" in result.stdout and "test/polo/leak.jpg" in result.stdout
    assert json.loads(report.read_text())["checked"] == 21
    assert "copies below are among them" in result.stdout

    result = runner.invoke(app, ["data", "check", str(messy), "--workers", "1", "--strict"])
    assert result.exit_code == 1

    clean = _good_tree(tmp_path / "clean")
    result = runner.invoke(
        app, ["data", "check", str(clean), "--workers", "1", "--strict"], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    assert "ok (readable)" in result.stdout and "copies below" not in result.stdout  # none are listed


def test_cli_report_dash_prints_the_json_alone_on_stdout(messy: Path, tmp_path: Path, monkeypatch) -> None:
    # `--report -` wrote a file named "-", and the tables on stdout left no way to pipe the JSON.
    from sportsdet.cli import app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["data", "check", str(messy), "--workers", "1", "--report", "-"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["files"] and not (tmp_path / "-").exists()
    assert "exact duplicates" in result.stderr  # the tables, on stderr
    again = CliRunner().invoke(app, ["data", "check", str(messy), "--workers", "1"])
    assert "exact duplicates" in again.stdout  # and back on stdout afterwards


def test_cli_quarantine_then_strict_passes(messy: Path, tmp_path: Path) -> None:
    from sportsdet.cli import app

    runner = CliRunner()
    jail = tmp_path / "jail"
    result = runner.invoke(app, ["data", "check", str(messy), "--workers", "2", "--quarantine", str(jail)])
    assert result.exit_code == 0, result.output
    assert "moved 8 file(s)" in result.stderr
    result = runner.invoke(app, ["data", "check", str(messy), "--workers", "1", "--strict"])
    assert result.exit_code == 0, result.output


def test_cli_quarantine_inside_tree_exits_2_and_moves_nothing(messy: Path) -> None:
    before = _contents(messy)
    result = subprocess.run(
        [sys.executable, "-m", "sportsdet", "data", "check", str(messy), "--quarantine", str(messy / "bad")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "inside the data tree" in " ".join(result.stderr.split()) and "Traceback" not in result.stderr
    assert _contents(messy) == before


def test_report_to_a_folder_is_refused_before_checking(
    messy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sportsdet.cli import app
    from sportsdet.data import check as check_module

    with pytest.raises(SportsdetError, match="is a folder"):
        check_dataset(messy, workers=1).save(tmp_path)

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoding started before the --report path was checked")

    monkeypatch.setattr(check_module, "check_dataset", must_not_run)
    result = CliRunner().invoke(app, ["data", "check", str(messy), "--report", str(tmp_path)])
    assert isinstance(result.exception, SportsdetError) and "is a folder" in str(result.exception)
    # A path through a file, and a --quarantine under one, were found only after every photo was
    # decoded and the moves made (the record of the moves then never written).
    (tmp_path / "afile").write_text("not a folder")
    for extra, said in (
        (["--report", str(tmp_path / "afile" / "r.json")], f"{tmp_path / 'afile'} is a file, not a folder"),
        (["--quarantine", str(tmp_path / "afile" / "q")], f"{tmp_path / 'afile'} is a file, not a folder"),
    ):
        result = CliRunner().invoke(app, ["data", "check", str(messy), *extra])
        assert isinstance(result.exception, SportsdetError) and said in str(result.exception), result.output
    preview = str(tmp_path / "afile" / "p.png")
    result = CliRunner().invoke(app, ["data", "scan", str(messy), "--preview", preview])
    assert isinstance(result.exception, SportsdetError) and "is a file, not a folder" in str(result.exception)


def test_training_says_when_one_photo_is_in_two_splits_or_two_classes(tmp_path: Path) -> None:
    import json
    import shutil

    from conftest import make_image_tree

    from sportsdet.data.check import duplicate_warnings, manifest_duplicates
    from sportsdet.data.splits import make_split
    from sportsdet.train import train

    tree = make_image_tree(
        tmp_path / "data", ["air hockey", "polo"], splits={"train": 5, "valid": 2, "test": 2}
    )
    shutil.copy(tree / "train" / "polo" / "000.jpg", tree / "test" / "polo" / "copy.jpg")  # leaks into test
    shutil.copy(tree / "valid" / "polo" / "000.jpg", tree / "test" / "polo" / "seen.jpg")  # test = valid
    shutil.copy(tree / "train" / "polo" / "001.jpg", tree / "train" / "air hockey" / "odd.jpg")  # two labels
    groups = manifest_duplicates(make_split(tree, "official"))
    assert sorted(len(g.files) for g in groups) == [2, 2, 2]
    lines = duplicate_warnings(groups, tree)
    assert "2 photo(s) are byte-identical copies in more than one split" in lines[0]
    # Says which scores each kind of copy spoils; no kind that is not there.
    assert "1 test photo(s) are also training photos; 1 test photo(s) are also validation photos" in lines[0]
    assert "validation photo(s) are also training" not in lines[0]
    assert "1 photo(s) are filed under two classes" in lines[1] and "(air hockey)" in lines[1]

    run = tmp_path / "run"
    train(
        tree, out=run, model="seed-cnn", options={"input_size": 32, "epochs": 1}, evaluate=False, report=False
    )
    warnings = json.loads((run / "data_summary.json").read_text())["warnings"]
    assert any("more than one split" in w for w in warnings) and any("two classes" in w for w in warnings)


def test_near_copies_across_splits_are_found_moved_and_fail_strict(tmp_path: Path) -> None:
    # The same photo in train and, smaller and saved again, in test: other bytes, one picture.
    from test_near_copies import drawn_photo

    from sportsdet.cli import app

    root = tmp_path / "data"
    for split, seeds in (("train", (1, 2, 3)), ("test", (4, 5))):
        for name in ("polo", "croquet"):
            (root / split / name).mkdir(parents=True)
            for seed in seeds:
                drawn_photo(seed + (10 if name == "croquet" else 0)).save(root / split / name / f"{seed}.jpg")
    drawn_photo(2).resize((110, 110)).save(root / "test" / "polo" / "web.jpg", quality=70)
    report = check_dataset(root, workers=1)
    assert not report.duplicates
    assert [(g.files, g.cross_split, g.near) for g in report.near_copies] == [
        (["test/polo/web.jpg", "train/polo/2.jpg"], True, True)
    ]
    # One decode serves the check and the hash: the same hash as a photo hashed on its own gets.
    from sportsdet.near_copies import near_copy_hash

    assert all(r.near_hash == near_copy_hash(root / r.rel) for r in report.results)
    saved = report.to_dict()
    assert saved["cross_split_near_copy_groups"] == 1 and saved["near_copies"][0]["near"] is True
    from sportsdet.report.html import _check_report

    page = _check_report(saved)  # the run report's Data section
    assert "1 group(s) of near copies (one photo saved again, resized or re-saved)" in page
    assert "test/polo/web.jpg [test], train/polo/2.jpg [train]" in page

    runner = CliRunner()
    check = ["data", "check", str(root), "--workers", "1"]
    result = runner.invoke(app, [*check, "--strict"], terminal_width=200)
    assert result.exit_code == 1
    assert "near copies across splits (leakage)" in result.stdout and "test/polo/web.jpg" in result.stdout
    result = runner.invoke(app, [*check, "--quarantine", str(tmp_path / "q")])
    assert "moved 1 file(s)" in result.stderr and (tmp_path / "q" / "train/polo/2.jpg").exists()
    assert (root / "test/polo/web.jpg").exists()  # the test copy stays: the test set stays as published
    assert runner.invoke(app, [*check, "--strict"]).exit_code == 0
    # A near copy within one split is a near copy, not one across splits.
    drawn_photo(3).resize((100, 100)).save(root / "train" / "polo" / "small.jpg", quality=70)
    saved = check_dataset(root, workers=1).to_dict()
    assert len(saved["near_copies"]) == 1 and saved["cross_split_near_copy_groups"] == 0


def test_quarantine_never_breaks_a_kept_link_nor_leaves_a_copy_when_a_move_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from sportsdet.data.check import rename_misnamed

    # test/polo/extra.jpg links to train/polo/000.jpg: the test copy is the one that stays, and
    # moving its target left it pointing nowhere (the photo in neither split).
    root = _good_tree(tmp_path / "data")
    os.symlink("../../train/polo/000.jpg", root / "test/polo/extra.jpg")
    result = quarantine_files(check_dataset(root, workers=1), tmp_path / "jail")
    assert result["moved"] == []
    assert result["failed"][0]["path"] == "train/polo/000.jpg"
    assert "test/polo/extra.jpg, the copy that stays, is a link to this file" in result["failed"][0]["error"]
    assert (root / "test/polo/extra.jpg").read_bytes() == (root / "train/polo/000.jpg").read_bytes()

    # A file that cannot be removed (read-only tree): the copy made in the quarantine (or under
    # the new name) went on living beside it, and each re-run added one more.
    root = _messy_tree(tmp_path / "messy")
    shutil.copyfile(root / "train/polo/001.jpg", root / "train/polo/named.php")
    real_unlink = os.unlink
    originals = {str(p) for p in root.rglob("*")}  # immutable files: new names beside them can go

    def refuse(path, *args, **kwargs):
        if str(path) in originals:
            raise PermissionError(1, "Operation not permitted")
        return real_unlink(path, *args, **kwargs)

    monkeypatch.setattr(os, "unlink", refuse)
    before = _contents(root)
    report = _quarantine_moves_nothing(root, tmp_path / "jail2")
    renamed = rename_misnamed(report)
    assert renamed["renamed"] == [] and renamed["failed"][0]["path"] == "train/polo/named.php"
    monkeypatch.undo()
    assert not (root / "train/polo/named.jpg").exists() and _contents(root) == before


def _quarantine_moves_nothing(root: Path, jail: Path):
    """Check `root` and quarantine what it finds into `jail`, where every move fails: nothing is
    moved and no file is left in the jail. The check's report is returned."""
    report = check_dataset(root, workers=1)
    result = quarantine_files(report, jail)
    assert result["moved"] == [] and result["failed"]
    assert not [p for p in jail.rglob("*") if p.is_file()]
    return report


def test_a_move_onto_a_full_disk_leaves_no_cut_off_copies(tmp_path: Path, monkeypatch) -> None:
    # Quarantine on another file system (no hard link) that fills up: each failed copy stayed there
    # cut off or empty, took the space a rerun needed, and every rerun added more beside them.
    import errno
    import os

    root = _messy_tree(tmp_path / "messy")

    def no_hard_links(*args, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    def disk_full(src, dst, *args, **kwargs):
        dst.write(src.read(10))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "link", no_hard_links)
    monkeypatch.setattr(shutil, "copyfileobj", disk_full)
    before = _contents(root)
    _quarantine_moves_nothing(root, tmp_path / "jail")
    monkeypatch.undo()
    assert _contents(root) == before


def test_files_outside_the_data_folder_stay_where_they_are(tmp_path: Path) -> None:
    # A class folder linked to a photo library: --quarantine moved that library's files (and
    # --rename-misnamed renamed them), in a folder the user never gave; and exited 0.
    from sportsdet.cli import app

    library = _good_tree(tmp_path / "library") / "train" / "polo"
    (library / "empty.jpg").write_bytes(b"")
    shutil.copyfile(library / "000.jpg", library / "again.jpg")
    _photo(77).save(library / "photo.php", format="JPEG")
    root = _good_tree(tmp_path / "data")
    (root / "train" / "golf").symlink_to(library)
    before = _contents(library)
    result = CliRunner().invoke(
        app,
        ["data", "check", str(root), "--workers", "1", "--quarantine", str(tmp_path / "jail"),
         "--rename-misnamed"],
        terminal_width=300,
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert _contents(library) == before and (library / "photo.php").exists()
    assert f"train/golf/empty.jpg: lies in {library}, outside the data folder" in result.stderr
    assert f"train/golf/photo.php: lies in {library}, outside the data folder" in result.stderr
    assert "error: 3 file(s) could not be moved or renamed (listed above)" in result.stderr


def test_cli_rename_skips_a_misnamed_copy_the_quarantine_took(tmp_path: Path) -> None:
    from sportsdet.cli import app

    # zz.php is a byte copy of polo/000.jpg: quarantined, then "could not rename polo/zz.php: No
    # such file or directory" was printed in red.
    root = _good_tree(tmp_path / "data")
    shutil.copyfile(root / "train/polo/000.jpg", root / "train/polo/zz.php")
    args = ["data", "check", str(root), "--workers", "1", "--quarantine", str(tmp_path / "jail"),
            "--rename-misnamed"]  # fmt: skip
    result = CliRunner().invoke(app, args, terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "could not rename" not in result.stderr and (tmp_path / "jail/train/polo/zz.php").is_file()


def test_file_names_that_are_not_utf8_print_on_a_strict_utf8_terminal(tmp_path: Path) -> None:
    import os

    # A desktop's UTF-8 locale writes stdout strictly: data check, split and scan stopped with a
    # UnicodeEncodeError traceback at the first such name they printed.
    root = _good_tree(tmp_path / "data")
    bad = os.fsencode(root / "train" / "polo") + b"/caf\xe9.jpg"
    with open(bad, "wb") as handle:
        handle.write(b"<html>not a photo</html>")
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    printed = {}
    for command, *options in (["check"], ["split", "--json"], ["scan", "--json"]):
        line = [sys.executable, "-m", "sportsdet", "data", command, str(root), *options]
        done = subprocess.run(line, capture_output=True, env=env, timeout=120)
        err = done.stderr.decode("utf-8")
        assert done.returncode == 0 and "Traceback" not in err, (command, err[-1500:])
        printed[command] = done.stdout.decode("utf-8")
    assert "train/polo/caf\\xe9.jpg" in printed["check"]  # the name said as predict writes it


def test_fifos_and_links_to_nothing_named_as_photos_are_bad_files_by_name(tmp_path, run_cli, capsys) -> None:
    import os
    import re

    # --help says bad files include FIFOs and devices; the check only counted them as "skipped by
    # scan", without a name, and --strict passed.
    root = _good_tree(tmp_path / "data")
    os.mkfifo(root / "train/polo/pipe.jpg")
    os.symlink("/nonexistent/x.jpg", root / "train/polo/dangle.jpg")
    os.symlink("notes.txt", root / "train/polo/notes.txt")  # not named as a photo: not a photo problem
    os.mkfifo(root / "train/polo/control")  # nor is a pipe not named as one
    report = check_dataset(root, workers=1)
    found = {r.rel: (r.kind, r.detail) for r in report.problems}
    assert set(found) == {"train/polo/pipe.jpg", "train/polo/dangle.jpg"}
    assert found["train/polo/pipe.jpg"][0] == "unreadable"
    assert found["train/polo/pipe.jpg"][1].startswith("not a regular file (a FIFO, a socket or a device)")
    assert found["train/polo/dangle.jpg"][1].startswith("a link to /nonexistent/x.jpg, which does not exist")
    # Counted once in the summary: they were "unreadable 2" and again "skipped by scan ... 2".
    assert run_cli("data", "check", str(root)) == 0
    summary = capsys.readouterr().out
    assert re.search(r"unreadable\s*│\s*2\s*│", summary) and "not-a-regular-file" not in summary
    result = quarantine_files(report, tmp_path / "jail")
    assert {m["path"] for m in result["moved"]} == set(found) and result["failed"] == []
    assert (tmp_path / "jail/train/polo/dangle.jpg").is_symlink()
    assert not (root / "train/polo/pipe.jpg").exists() and not (root / "train/polo/dangle.jpg").is_symlink()


def test_a_quarantine_that_cannot_be_written_is_refused_before_checking(
    messy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from sportsdet.cli import app
    from sportsdet.data import check as check_module

    # As another user under a read-only folder: every photo was decoded, then each move failed.
    locked = tmp_path / "ro"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != locked and real_access(p, mode))
    monkeypatch.setattr(check_module, "check_dataset", lambda *a, **k: pytest.fail("checked first"))
    result = CliRunner().invoke(app, ["data", "check", str(messy), "--quarantine", str(locked / "q")])
    assert isinstance(result.exception, SportsdetError)
    assert f"cannot write in {locked} (no permission)" in str(result.exception)
    # --preview given a folder was told to name it "report.json", which --preview refuses.
    (tmp_path / "pv.png").mkdir()
    result = CliRunner().invoke(app, ["data", "scan", str(messy), "--preview", str(tmp_path / "pv.png")])
    assert f"give a file name such as {tmp_path / 'pv.png' / 'preview.png'}" in str(result.exception)


def test_the_console_shows_each_copy_group_apart(messy: Path) -> None:
    # The groups were one long column of names: which files were copies of which was only in the
    # JSON. Each group is numbered and ruled off, the kept copy first.
    from sportsdet.cli import app

    result = CliRunner().invoke(app, ["data", "check", str(messy)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    rows = [line for line in lines if "│" in line and any(name in line for name in CROSS_SPLIT + SAME_SPLIT)]
    cells = [[cell.strip() for cell in row.split("│")[1:-1]] for row in rows]
    assert [(number, name) for number, name, _ in cells] == [
        ("1", CROSS_SPLIT[0]), ("", CROSS_SPLIT[1]), ("2", SAME_SPLIT[0]), ("", SAME_SPLIT[1])
    ]
    between = lines[lines.index(rows[1]) + 1 : lines.index(rows[2])]
    assert any(line.startswith("├") for line in between)  # a rule between the two groups
    assert "files (the first is the copy kept)" in result.stdout


def test_workers_0_decodes_in_the_main_process_as_train_does(
    messy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `--workers 0` meant "one per core" here and "in the main process" for train.
    from sportsdet.cli import app
    from sportsdet.data import check as check_module

    def no_processes(*args: object, **kwargs: object) -> None:
        raise AssertionError("--workers 0 started decoding processes")

    monkeypatch.setattr(check_module, "worker_processes", no_processes)
    monkeypatch.setattr(check_module, "_CHUNK", 1)  # several chunks, which would use processes
    result = CliRunner().invoke(app, ["data", "check", str(messy), "--workers", "0"])
    assert result.exit_code == 0, result.output
    assert "checked" in result.output.lower()


def test_a_big_copy_group_lists_its_first_files_and_counts_the_rest(tmp_path: Path) -> None:
    # 3,000 saves of one placeholder picture printed 3,000 lines in one table cell.
    from sportsdet.cli import app

    photo = io.BytesIO()
    _photo(3, 64).save(photo, format="PNG")
    (tmp_path / "data" / "polo").mkdir(parents=True)
    for i in range(25):
        (tmp_path / "data" / "polo" / f"{i:04d}.png").write_bytes(photo.getvalue())
    result = CliRunner().invoke(app, ["data", "check", str(tmp_path / "data"), "--workers", "1"],
                                env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    listed = [name for name in (f"polo/{i:04d}.png" for i in range(25)) if name in result.stdout]
    assert listed == [f"polo/{i:04d}.png" for i in range(10)]
    assert "... and 15 more (all in --report)" in result.stdout
    assert "exact duplicates (1 group)" in " ".join(result.stdout.split())


def test_a_file_name_that_is_not_utf8_is_shown_as_predict_writes_it(tmp_path: Path) -> None:
    # The problem table wrote the raw bytes ('bad\ufffd' on screen) or '\udcff' escapes, predict's
    # CSV and JSON '\xff': one file under three names.
    import os

    from sportsdet.cli import app

    folder = tmp_path / "data" / "polo"
    folder.mkdir(parents=True)
    _photo(1).save(folder / "good.jpg")
    with open(os.path.join(os.fsencode(folder), b"bad\xff.jpg"), "wb") as handle:
        handle.write(b"not a photo")
    result = CliRunner().invoke(app, ["data", "check", str(tmp_path / "data"), "--workers", "1"],
                                env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "polo/bad\\xff.jpg" in result.stdout and "\udcff" not in result.stdout
