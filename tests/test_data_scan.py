"""`scan_dataset` and `sportsdet data scan` on small generated trees of both layouts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from sportsdet.data import scan_dataset
from sportsdet.data.discover import (
    IGNORED_HIDDEN,
    IGNORED_LINKED,
    IGNORED_LOOSE,
    IGNORED_NOT_IMAGE,
    IGNORED_NOT_SPLIT,
    IGNORED_UNSUPPORTED,
)
from sportsdet.errors import SportsdetError


def _jpeg(path: Path, shade: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 40), (shade, 80, 160)).save(path)


def _tree(root: Path, counts: dict[str, int], split: str = "") -> Path:
    for name, n in counts.items():
        for i in range(n):
            _jpeg(root / split / name / f"{i:03d}.jpg", shade=i)
    return root


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sportsdet", *args], capture_output=True, text=True, timeout=120
    )


def test_folder_per_class_with_spaces_and_junk(tmp_path: Path) -> None:
    root = _tree(tmp_path / "photos", {"air hockey": 3, "polo": 2, "rock climbing": 4})
    (root / ".DS_Store").write_bytes(b"\0\0")
    _jpeg(root / "polo" / ".ipynb_checkpoints" / "000-checkpoint.jpg")  # hidden folder inside a class
    _jpeg(root / "__MACOSX" / "polo" / "._000.jpg")  # hidden folder at the root: not a class
    _jpeg(root / "polo" / "._001.jpg")  # macOS resource fork
    (root / "polo" / "notes.txt").write_text("scraped from the web")
    (root / "polo" / "IMG_0001.JXL").write_bytes(b"\xff\x0a" + b"\0" * 10)
    _jpeg(root / "stray.jpg")  # an image outside any class folder
    (root / "README.md").write_text("hi")

    scan = scan_dataset(root)
    assert scan.layout == "folders"
    assert scan.classes == ["air hockey", "polo", "rock climbing"]
    assert scan.counts() == {"all": {"air hockey": 3, "polo": 2, "rock climbing": 4}}
    assert scan.ignored == {
        IGNORED_HIDDEN: 4,
        IGNORED_NOT_IMAGE: 2,
        IGNORED_LOOSE: 1,
        IGNORED_UNSUPPORTED: 1,
    }
    assert "polo/IMG_0001.JXL" in scan.ignored_examples[IGNORED_UNSUPPORTED]
    assert any("cannot read" in w and "JXL" in w for w in scan.warnings)
    assert any("outside any class folder" in w and "stray.jpg" in w for w in scan.warnings)
    assert [r.rel for r in scan.records] == sorted(r.rel for r in scan.records)
    first = scan.records[0]
    assert first.rel == "air hockey/000.jpg" and first.label == "air hockey" and first.split is None
    assert first.path == root.resolve() / "air hockey" / "000.jpg" and first.path.is_absolute()


def test_images_in_subfolders_of_a_class_belong_to_it(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t", {"rowing": 1, "polo": 1})
    _jpeg(root / "rowing" / "2019" / "a.png")
    scan = scan_dataset(root)
    assert scan.counts()["all"] == {"polo": 1, "rowing": 2}


def test_split_tree_with_val_alias_and_missing_class(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    _tree(root, {"croquet": 4, "polo": 5}, "train")
    _tree(root, {"croquet": 1, "polo": 1}, "val")
    _tree(root, {"croquet": 2}, "test")  # polo is missing from test
    _jpeg(root / "extra" / "croquet" / "x.jpg")  # a folder that is not a split
    (root / "sports.csv").write_text("a,b\n")

    scan = scan_dataset(root)
    assert scan.layout == "split"
    assert scan.split_folders == {"train": "train", "valid": "val", "test": "test"}
    assert scan.splits == ["train", "valid", "test"]
    assert scan.counts() == {
        "train": {"croquet": 4, "polo": 5},
        "valid": {"croquet": 1, "polo": 1},
        "test": {"croquet": 2, "polo": 0},
    }
    assert scan.ignored == {IGNORED_NOT_SPLIT: 1, IGNORED_NOT_IMAGE: 1}
    assert any("no images in test" in w and "'polo'" in w for w in scan.warnings)
    assert any("beside the split folders" in w and "'extra'" in w for w in scan.warnings)
    assert {r.split for r in scan.records} == {"train", "valid", "test"}
    assert all(r.rel.startswith(("train/", "val/", "test/")) for r in scan.records)


@pytest.mark.parametrize("folder", ["Validation", "VAL", "dev"])
def test_every_name_of_the_validation_folder_is_read_as_valid(tmp_path: Path, folder: str) -> None:
    root = tmp_path / "ds"
    _tree(root, {"croquet": 2, "polo": 2}, "train")
    _tree(root, {"croquet": 1, "polo": 1}, folder)
    scan = scan_dataset(root)
    if folder == "dev":  # not a name of it: a folder beside the splits, said so
        assert scan.split_folders == {"train": "train"}
        assert any("'dev'" in w for w in scan.warnings)
    else:
        assert scan.split_folders == {"train": "train", "valid": folder}
        assert scan.counts()["valid"] == {"croquet": 1, "polo": 1}


def test_split_tree_without_valid_warns(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    _tree(root, {"a": 2, "b": 2}, "Train")  # any case
    _tree(root, {"a": 1, "b": 1}, "TEST")
    scan = scan_dataset(root)
    assert scan.split_folders == {"train": "Train", "test": "TEST"}
    assert any("no valid folder" in w for w in scan.warnings)


def test_class_named_like_a_split_in_a_flat_tree(tmp_path: Path) -> None:
    # A folder called "test" holding images directly is a class, not a split.
    root = _tree(tmp_path / "t", {"test": 2, "polo": 2})
    scan = scan_dataset(root)
    assert scan.layout == "folders" and scan.classes == ["polo", "test"]
    assert any("named like splits" in w and "'test'" in w for w in scan.warnings)


def test_empty_class_and_imbalance_warnings(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t", {"big one": 13, "small": 4, "medium": 6})
    (root / "empty class").mkdir()
    (root / "only junk").mkdir()
    (root / "only junk" / "a.txt").write_text("x")
    scan = scan_dataset(root)
    assert scan.classes == ["big one", "medium", "small"]
    assert scan.empty_classes == ["empty class", "only junk"]
    assert any("empty class" in w and "'only junk'" in w for w in scan.warnings)
    imbalance = [w for w in scan.warnings if "imbalance" in w]
    assert len(imbalance) == 1 and "'big one' has 13" in imbalance[0] and "'small' has 4" in imbalance[0]


def test_balanced_tree_has_no_imbalance_warning(tmp_path: Path) -> None:
    scan = scan_dataset(_tree(tmp_path / "t", {"a": 3, "b": 9}))  # exactly 3x is not "strong"
    assert not any("imbalance" in w for w in scan.warnings)


def test_both_val_and_valid_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    for split in ("train", "val", "valid"):
        _tree(root, {"a": 1}, split)
    with pytest.raises(SportsdetError, match="'val' and 'valid'"):
        scan_dataset(root)


@pytest.mark.parametrize("case", ["missing", "file", "empty", "no-images"])
def test_bad_roots_raise_clear_errors(tmp_path: Path, case: str) -> None:
    target = tmp_path / "data"
    if case == "file":
        target.write_text("x")
    elif case == "empty":
        target.mkdir()
    elif case == "no-images":
        (target / "polo").mkdir(parents=True)
        (target / "polo" / "list.txt").write_text("x")
    with pytest.raises(SportsdetError) as info:
        scan_dataset(target)
    message = str(info.value)
    assert str(target) in message
    expected = {
        "missing": "no such folder",
        "file": "not a folder",
        "empty": "no class folders",
        "no-images": "no class folders with images",
    }[case]
    assert expected in message
    if case in ("empty", "no-images"):
        assert "ROOT/<class name>/<images>" in message


def test_scan_is_independent_of_listing_order(tmp_path: Path) -> None:
    # Same files created in two different orders give identical records.
    first = _tree(tmp_path / "one", {"b": 3, "a": 3})
    second = tmp_path / "two"
    for name in ("a", "b"):
        for i in reversed(range(3)):
            _jpeg(second / name / f"{i:03d}.jpg", shade=i)
    rels = [r.rel for r in scan_dataset(first).records]
    assert rels == [r.rel for r in scan_dataset(second).records]


# ----------------------------------------------------------------------------- CLI


def test_cli_scan_table_and_json(tmp_path: Path) -> None:
    from sportsdet.cli import app

    root = tmp_path / "ds"
    _tree(root, {"air hockey": 4, "polo": 3}, "train")
    _tree(root, {"air hockey": 1, "polo": 1}, "valid")
    _tree(root, {"air hockey": 1}, "test")
    runner = CliRunner()
    result = runner.invoke(app, ["data", "scan", str(root)], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "air hockey" in result.stdout and "2 classes, 10 images" in result.stdout
    assert "train 7 / valid 2 / test 1" in result.stdout
    assert "no images in test" in result.stderr and "no images in test" not in result.stdout

    result = runner.invoke(app, ["data", "scan", str(root), "--json"])
    assert result.exit_code == 0
    summary = json.loads(result.stdout)
    assert summary["num_classes"] == 2 and summary["total"] == 10 and summary["layout"] == "split"
    assert summary["splits"]["test"] == {"total": 1, "per_class": {"air hockey": 1, "polo": 0}}
    assert summary["warnings"]


def test_cli_scan_error_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = _run_cli("data", "scan", str(tmp_path / "nope"))
    assert result.returncode == 2
    message = " ".join(result.stderr.split())  # rich wraps long lines
    assert message.startswith("error:") and "nope: no such folder" in message
    assert "Traceback" not in result.stderr + result.stdout


def test_restricted_scan_warns_only_about_the_chosen_classes(tmp_path):
    from PIL import Image

    from sportsdet.data import scan_dataset

    for name, count in (("big", 10), ("small", 2), ("mid", 4), ("mid2", 4)):
        folder = tmp_path / name
        folder.mkdir()
        for i in range(count):
            Image.new("RGB", (40, 40), (i * 20, 0, 0)).save(folder / f"{i}.jpg")
    scan = scan_dataset(tmp_path)
    assert any("imbalance" in w and "big" in w for w in scan.warnings)
    subset = scan.restricted_to(["mid", "mid2"])
    assert subset.classes == ["mid", "mid2"] and len(subset.records) == 8
    assert not any("imbalance" in w for w in subset.warnings)
    assert subset.to_dict()["num_classes"] == 2
    # One class chosen (multi-source: one source keeps one) is no sign of a wrapper folder: it
    # was told to "scan .../mid instead", a folder of photos.
    assert not any("only one class" in w for w in scan.restricted_to(["mid"]).warnings)


def test_a_link_into_another_class_does_not_move_its_photos(tmp_path: Path) -> None:
    # croquet/polo_link -> ../polo used to count polo's photos as croquet and report polo empty
    # (the winner depended on which class sorted first).
    root = _tree(tmp_path / "data", {"croquet": 2, "polo": 3})
    (root / "croquet" / "polo_link").symlink_to("../polo")
    (root / "polo" / "loop").symlink_to(".")
    scan = scan_dataset(root)
    assert scan.counts()["all"] == {"croquet": 2, "polo": 3}
    assert scan.empty_classes == []
    assert scan.ignored.get(IGNORED_LINKED) == 2  # the link into polo and polo's loop, both reported


def test_a_photo_linked_from_another_class_is_not_counted_twice(tmp_path: Path) -> None:
    # polo/l.jpg -> ../croquet/0.jpg: one photo counted under two classes (the folder-link guard
    # did not cover a file link), to be trained as both.
    from sportsdet.data.discover import IGNORED_LINKED_PHOTO

    root = _tree(tmp_path / "data", {"croquet": 2, "polo": 3})
    first_croquet = sorted(p.name for p in (root / "croquet").iterdir())[0]
    (root / "polo" / "l.jpg").symlink_to(f"../croquet/{first_croquet}")
    (root / "polo" / "same.jpg").symlink_to(sorted((root / "polo").glob("*.*"))[0].name)  # own class: kept
    scan = scan_dataset(root)
    assert scan.counts()["all"] == {"croquet": 2, "polo": 4}
    assert scan.ignored.get(IGNORED_LINKED_PHOTO) == 1


def test_a_link_to_nothing_is_said_with_where_it_points(tmp_path: Path) -> None:
    # A class on a drive that is not mounted (golf -> /mnt/usb/golf) vanished: counted as one
    # "not-an-image-name", no warning, and training went on without the class.
    from sportsdet.data.discover import IGNORED_BROKEN_LINK, IGNORED_NOT_REGULAR

    root = _tree(tmp_path / "data", {"croquet": 2, "polo": 3})
    (root / "golf").symlink_to(tmp_path / "unmounted" / "golf")
    (root / "polo" / "extra").symlink_to(tmp_path / "unmounted" / "polo")
    (root / "polo" / "gone.jpg").symlink_to("nothing.jpg")  # a photo's link: a problem file, as before
    scan = scan_dataset(root)
    assert scan.classes == ["croquet", "polo"]
    assert scan.ignored.get(IGNORED_BROKEN_LINK) == 2 and scan.ignored.get(IGNORED_NOT_REGULAR) == 1
    warning = next(w for w in scan.warnings if "lead to nothing" in w)
    assert f"golf -> {tmp_path / 'unmounted' / 'golf'}" in warning
    assert f"polo/extra -> {tmp_path / 'unmounted' / 'polo'}" in warning


def test_a_link_to_the_data_root_or_above_takes_in_nothing(tmp_path: Path) -> None:
    # polo/up -> .. counted every class again as polo (and a loose photo the scan said it skipped);
    # a class folder linked to the root's parent took in other datasets' photos.
    root = _tree(tmp_path / "data", {"croquet": 2, "polo": 3})
    _jpeg(root / "loose.jpg")
    _tree(tmp_path / "other", {"golf": 4})
    (root / "polo" / "up").symlink_to("..")
    (root / "parent").symlink_to("..")
    scan = scan_dataset(root)
    assert scan.counts()["all"] == {"croquet": 2, "polo": 3}
    assert scan.ignored.get(IGNORED_LINKED) == 2 and scan.empty_classes == ["parent"]


def test_a_link_from_one_split_into_another_does_not_count_photos_twice(tmp_path: Path) -> None:
    root = tmp_path / "data"
    for split in ("train", "valid"):
        _tree(root / split, {"croquet": 2, "polo": 2})
    (root / "train" / "polo" / "more").symlink_to("../../valid")
    (root / "train" / "croquet" / "theirs").symlink_to("../../valid/croquet")
    _tree(root / "valid" / "polo", {"sub": 2})  # valid/polo/sub: two more polo photos
    (root / "train" / "polo" / "deeper").symlink_to("../../valid/polo/sub")
    (root / "test").symlink_to(tmp_path / "unmounted" / "test")  # a split on a drive not mounted
    scan = scan_dataset(root)
    assert scan.counts()["train"] == {"croquet": 2, "polo": 2}
    assert scan.counts()["valid"] == {"croquet": 2, "polo": 4}  # not taken by train's links
    assert scan.ignored.get(IGNORED_LINKED) == 3
    assert any(f"test -> {tmp_path / 'unmounted' / 'test'}" in w for w in scan.warnings)
    assert not any("no test folder" in w for w in scan.warnings)  # the link is said instead


def test_class_names_that_only_look_alike_are_warned_about_with_the_difference_shown(tmp_path: Path) -> None:
    # A trailing space, a no-break space or a zero-width space made four classes that all print
    # "ice hockey", without a word (only a difference in case was warned about).
    names = ["ice hockey", "ice hockey ", "ice\u00a0hockey", "ice hockey\u200b"]
    scan = scan_dataset(_tree(tmp_path / "data", dict.fromkeys(names, 2)))
    assert len(scan.classes) == 4
    warning = next(w for w in scan.warnings if "invisible" in w)
    assert "'ice hockey', 'ice hockey ', 'ice hockey\\u200b', 'ice\\u00a0hockey'" in warning
    assert "differ only in case, spaces, invisible characters or ligatures" in warning
    # The ligature in 'ﬁgure skating' casefolds to 'fi': it was said to differ "only in case".
    scan = scan_dataset(_tree(tmp_path / "fi", {"figure skating": 2, "\ufb01gure skating": 2}))
    warning = next(w for w in scan.warnings if "ligatures" in w)
    assert "'\\ufb01gure skating'" in warning
    scan = scan_dataset(_tree(tmp_path / "ss", {"Straßenlauf": 2, "STRASSENLAUF": 2}))
    assert any("differ only in case:" in w for w in scan.warnings)  # ß is SS in capitals


def test_a_class_with_a_single_photo_is_said_by_the_scan(tmp_path: Path) -> None:
    # The scan said only that the classes were imbalanced; `data split` and `train` then refused.
    scan = scan_dataset(_tree(tmp_path / "data", {"croquet": 3, "polo": 1}))
    said = "1 class(es) with a single photo: 'polo'; a split needs at least 2"
    assert any(said in warning for warning in scan.warnings)
    from sportsdet.data.discover import for_checking

    assert not any(said in warning for warning in for_checking(scan.warnings))  # evaluate, data check


def test_a_class_folder_linked_to_another_is_that_class_not_an_empty_one(tmp_path: Path) -> None:
    root = _tree(tmp_path / "data", {"croquet": 2, "polo": 3})
    (root / "polo2").symlink_to("polo")  # it said: empty class folder 'polo2'
    (root / "0polo").symlink_to("polo")  # sorted first: its photos were counted under '0polo'
    scan = scan_dataset(root)
    assert scan.classes == ["croquet", "polo"] and scan.empty_classes == []
    assert scan.counts()["all"] == {"croquet": 2, "polo": 3}
    assert scan.ignored.get(IGNORED_LINKED) == 2


def test_json_on_stdout_is_utf8_json_whatever_the_terminal_encoding(tmp_path: Path) -> None:
    # Under PYTHONIOENCODING=ascii, `data scan --json` printed "caf\xe9": not JSON at all.
    import os

    _tree(tmp_path / "data", {"café": 2, "中文": 2})
    env = {**os.environ, "PYTHONIOENCODING": "ascii"}
    for args in (["data", "scan", str(tmp_path / "data"), "--json"],
                 ["data", "split", str(tmp_path / "data"), "--json"]):
        command = [sys.executable, "-m", "sportsdet", *args]
        done = subprocess.run(command, capture_output=True, timeout=120, env=env)
        assert done.returncode == 0, done.stderr
        text = done.stdout.decode("utf-8")
        assert "café" in text and "中文" in text
        json.loads(text)


def test_a_closed_stdout_is_an_error_not_a_silent_success(tmp_path: Path) -> None:
    # `sportsdet predict ... >&-` printed nothing, said nothing and exited 0.
    _tree(tmp_path / "data", {"polo": 3, "rowing": 3})
    for args in ("data scan {} --json", "data scan {}", "models", "evaluate builtin {}"):
        command = f"{sys.executable} -m sportsdet {args.format(tmp_path / 'data')} >&-"
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
        assert done.returncode == 2, (args, done.stderr)
        assert "error: standard output is closed" in done.stderr and "Traceback" not in done.stderr
    # Refused before any work: evaluate wrote its files, then failed printing its summary. A run
    # (files) and a service still go, their lines to stdout dropped: train finished, then exit 2.
    command = (f"{sys.executable} -m sportsdet train {tmp_path / 'data'} --out {tmp_path / 'run'} "
               "-m seed-cnn --epochs 1 --workers 0 --no-eval --set batch_size=2 --set input_size=32 >&-")
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "run" / "model" / "bundle.json").is_file()
    for files_made in ("data fetch --list", f"report {tmp_path / 'run'}"):  # files or nothing to print
        command = f"{sys.executable} -m sportsdet {files_made} >&-"
        done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, (files_made, done.stderr[-2000:])


def test_a_tilde_in_an_output_option_is_the_home_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `--report=~/r.json` (the shell leaves that ~ alone) made a folder named ~ in the working folder;
    # train --out and every input path read it as the home folder.
    from sportsdet.cli import app

    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    _tree(tmp_path / "data", {"polo": 3, "rowing": 3})
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    runner = CliRunner()
    for args in (["data", "check", str(tmp_path / "data"), "--workers", "1", "--report=~/check.json"],
                 ["data", "scan", str(tmp_path / "data"), "--preview=~/sheet.png"],
                 ["data", "split", str(tmp_path / "data"), "--out=~/split.json"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
    assert {"check.json", "sheet.png", "split.json"} <= {p.name for p in home.iterdir()}
    assert not (work / "~").exists()


def test_a_class_folder_with_a_line_break_in_its_name_is_warned_of(tmp_path: Path) -> None:
    # A class named "new\nline" printed as two labels in `info --labels`, tables and warnings.
    _tree(tmp_path / "data", {"new\nline": 2, "tab\there": 2, "polo": 2})
    warnings = scan_dataset(tmp_path / "data").warnings
    said = [w for w in warnings if "control character" in w]
    assert len(said) == 1 and "\n" not in said[0] and "\t" not in said[0]
    assert "'new\\u000aline'" in said[0] and "'tab\\u0009here'" in said[0] and "polo" not in said[0]


def test_a_class_folder_that_cannot_be_read_is_not_called_empty(tmp_path: Path, monkeypatch) -> None:
    # A `chmod 000` class folder was "1 empty class folder(s) (no images, left out)", and train then
    # said "training needs at least 2 classes, found 1", never naming the permission problem.
    import os

    root = _tree(tmp_path / "data", {"polo": 2, "rowing": 2, "tennis": 2})
    locked = str(root / "rowing")
    scandir = os.scandir

    def refused(path=".", *args, **kwargs):
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return scandir(path, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", refused)
    scan = scan_dataset(root)
    assert scan.classes == ["polo", "tennis"] and scan.empty_classes == []
    assert scan.unreadable_folders == {"rowing": "rowing"}
    said = [w for w in scan.warnings if "rowing" in w]
    assert len(said) == 1 and "cannot be read (permission denied?)" in said[0] and "empty" not in said[0]
    assert scan.to_dict()["unreadable_folders"] == ["rowing"]
    # In a split tree, one split's unreadable folder is said though the class has photos elsewhere.
    split = _tree(tmp_path / "split", {"polo": 2, "rowing": 2}, "train")
    _tree(split, {"polo": 1, "rowing": 1}, "valid")
    locked = str(split / "valid" / "rowing")
    scan = scan_dataset(split)
    assert scan.classes == ["polo", "rowing"] and scan.unreadable_folders == {"valid/rowing": "rowing"}
    assert any("cannot be read" in w and "'valid/rowing'" in w for w in scan.warnings)


def test_what_the_scan_skipped_is_said_in_words(tmp_path: Path) -> None:
    # "skipped: 1 not-an-image-name": the JSON key, shown as it is stored.
    root = _tree(tmp_path / "data", {"polo": 2, "rowing": 2})
    (root / "polo" / "notes.txt").write_text("x")
    done = _run_cli("data", "scan", str(root))
    assert done.returncode == 0, done.stderr
    assert "skipped: 1 not an image name" in done.stdout
    assert scan_dataset(root).ignored == {"not-an-image-name": 1}  # the key stays for --json
