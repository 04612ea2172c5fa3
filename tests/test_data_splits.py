"""Split strategies, the split manifest (save/load/validate) and `sportsdet data split`."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from sportsdet.data import SplitManifest, make_split, parse_split_strategy, scan_dataset
from sportsdet.data.splits import SplitStrategy
from sportsdet.errors import SportsdetError


def _tree(root: Path, counts: dict[str, int], split: str = "") -> Path:
    # Files are never decoded by splitting, so tiny PNGs of one colour are enough.
    for name, n in counts.items():
        folder = root / split / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (i % 256, 0, 0)).save(folder / f"{i:03d}.png")
    return root


@pytest.fixture
def flat(tmp_path: Path) -> Path:
    return _tree(tmp_path / "flat", {"air hockey": 30, "polo": 20, "rowing": 11})


@pytest.fixture
def split_tree(tmp_path: Path) -> Path:
    root = tmp_path / "official"
    _tree(root, {"croquet": 12, "polo": 10}, "train")
    _tree(root, {"croquet": 2, "polo": 2}, "valid")
    _tree(root, {"croquet": 3, "polo": 3}, "test")
    return root


def _per_class(manifest: SplitManifest) -> dict[str, dict[str, int]]:
    return {split: dict(Counter(label for _, label in manifest.splits[split])) for split in manifest.splits}


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "text, expected",
    [
        ("official", SplitStrategy("official")),
        (" Official ", SplitStrategy("official")),
        ("random:0.2", SplitStrategy("random", test=0.2)),
        ("random:0.25,0", SplitStrategy("random", test=0.25, valid=0.0)),
        ("per-class:70,60", SplitStrategy("per-class", train=70, test=60)),
        ("per-class:70,50,5", SplitStrategy("per-class", train=70, test=50, valid=5)),
    ],
)
def test_parse_good_strategies(text: str, expected: SplitStrategy) -> None:
    parsed = parse_split_strategy(text)
    assert parsed == expected
    assert parse_split_strategy(parsed.text) == parsed  # the canonical text round-trips


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("random:1.5", "0 < TEST < 1"),
        ("random:0", "0 < TEST < 1"),
        ("random:-0.1", "0 < TEST < 1"),
        ("random:abc", "fraction such as 0.2"),
        ("random", "random:TEST"),
        ("random:0.2,1", "0 <= VALID < 1"),
        ("random:0.2,0.1,0.1", "random:TEST"),
        ("per-class:70", "per-class:TRAIN,TEST"),
        ("per-class:0,10", "TRAIN must be at least 1"),
        ("per-class:7.5,10", "whole number"),
        ("per-class:-1,10", "whole number"),
        ("official:3", "takes no numbers"),
        ("kfold:5", "unknown strategy"),
        ("", "unknown strategy"),
        ("Per_Klass:5", "unknown strategy 'Per_Klass'"),  # as typed, not 'per-klass'
        ("rnd:0.2", "unknown strategy 'rnd'"),
        ("s_data.txt", "no such file; a saved split is a .json file"),  # was "unknown strategy 's-data.txt'"
        ("runs/a/split", "no such file"),
    ],
)
def test_parse_bad_strategies(text: str, fragment: str) -> None:
    with pytest.raises(SportsdetError) as info:
        parse_split_strategy(text)
    assert fragment in str(info.value) and repr(text.strip()) in str(info.value)


def test_a_folder_given_as_split_is_told_to_give_its_split_file(tmp_path: Path) -> None:
    with pytest.raises(SportsdetError, match=r"a folder; give the saved split in it \(e.g. .*/split.json\)"):
        parse_split_strategy(str(tmp_path))  # it said "no such file"


# ----------------------------------------------------------------------------- random


def test_random_is_stratified(flat: Path) -> None:
    manifest = make_split(flat, "random:0.2", seed=0)
    counts = _per_class(manifest)
    # Per class: test = round(n * 0.2); valid = round(rest * 0.1); train = the remainder.
    assert counts["test"] == {"air hockey": 6, "polo": 4, "rowing": 2}
    assert counts["valid"] == {"air hockey": 2, "polo": 2, "rowing": 1}
    assert counts["train"] == {"air hockey": 22, "polo": 14, "rowing": 8}
    everything = [rel for split in manifest.splits.values() for rel, _ in split]
    assert len(everything) == len(set(everything)) == 61  # every file exactly once
    assert manifest.classes == ["air hockey", "polo", "rowing"]
    assert manifest.strategy == "random:0.2" and manifest.seed == 0


def test_random_without_valid(flat: Path) -> None:
    counts = _per_class(make_split(flat, "random:0.2,0", seed=1))
    assert counts["valid"] == {} and counts["test"]["polo"] == 4 and counts["train"]["polo"] == 16


def test_same_seed_same_split_other_seed_other_split(flat: Path) -> None:
    a = make_split(flat, "random:0.2", seed=3)
    b = make_split(flat, "random:0.2", seed=3)
    c = make_split(flat, "random:0.2", seed=4)
    assert a.to_dict() == b.to_dict()
    assert a.splits["test"] != c.splits["test"]
    assert _per_class(a) == _per_class(c)  # different files, same stratified counts


def test_a_single_source_split_refuses_a_source_filter(flat: Path) -> None:
    split = make_split(flat, "random:0.2", seed=3)
    with pytest.raises(SportsdetError, match="single-source split records no source 'web'"):
        split.items("test", "web")


def test_split_does_not_depend_on_record_order(flat: Path) -> None:
    scan = scan_dataset(flat)
    shuffled = dataclasses.replace(scan, records=list(reversed(scan.records)))
    assert make_split(scan, "random:0.3", seed=7).splits == make_split(shuffled, "random:0.3", seed=7).splits
    assert (
        make_split(scan, "per-class:5,3", seed=7).splits
        == make_split(shuffled, "per-class:5,3", seed=7).splits
    )


def test_a_class_keeps_its_split_when_other_classes_are_dropped(flat: Path) -> None:
    everything = make_split(flat, "random:0.2", seed=0)
    subset = make_split(flat, "random:0.2", seed=0, classes=["polo"])
    for split in ("train", "valid", "test"):
        assert subset.splits[split] == [e for e in everything.splits[split] if e[1] == "polo"]


def test_a_large_valid_share_still_leaves_every_class_a_training_photo(tmp_path: Path) -> None:
    # 4 photos, half to test: of the 2 left, 90% to valid rounds to both; one must stay to train on.
    root = _tree(tmp_path / "t", {"polo": 4, "rowing": 3, "air hockey": 2})
    counts = _per_class(make_split(root, "random:0.5,0.9", seed=0))
    assert counts["test"] == {"polo": 2, "rowing": 2, "air hockey": 1}
    assert counts["valid"] == {"polo": 1}
    assert counts["train"] == {"polo": 1, "rowing": 1, "air hockey": 1}


def test_random_needs_two_images_per_class(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t", {"lonely": 1, "polo": 5})
    with pytest.raises(SportsdetError, match="class 'lonely' has only 1 image"):
        make_split(root, "random:0.2")


def test_random_pools_a_split_tree(split_tree: Path) -> None:
    manifest = make_split(split_tree, "random:0.25,0", seed=0)
    counts = _per_class(manifest)
    assert counts["test"] == {"croquet": 4, "polo": 4}  # 25% of 17 and of 15 pooled images
    assert counts["train"] == {"croquet": 13, "polo": 11}
    test_folders = {rel.split("/")[0] for rel, _ in manifest.splits["test"]}
    assert test_folders > {"train"}  # test images were drawn from the pooled tree


# ----------------------------------------------------------------------------- per-class


def test_per_class_exact_counts_and_default_valid(flat: Path) -> None:
    manifest = make_split(flat, "per-class:8,2", seed=0)
    counts = _per_class(manifest)
    assert counts["train"] == {"air hockey": 8, "polo": 8, "rowing": 8}
    assert counts["test"] == {"air hockey": 2, "polo": 2, "rowing": 2}
    # up to 10% of TRAIN (round(0.8) = 1) from the leftovers; rowing (11) has 1 leftover
    assert counts["valid"] == {"air hockey": 1, "polo": 1, "rowing": 1}


def test_per_class_default_valid_is_limited_by_leftovers(tmp_path: Path) -> None:
    root = _tree(tmp_path / "t", {"a": 32, "b": 30})
    counts = _per_class(make_split(root, "per-class:20,10", seed=0))
    assert counts["valid"] == {"a": 2}  # b has no images left over; valid is only "up to" 10%
    # At least one when any is left over: per-class:3,1 of 5 took none (round(0.3) = 0).
    small = _tree(tmp_path / "small", {"a": 5, "b": 5})
    assert _per_class(make_split(small, "per-class:3,1", seed=0))["valid"] == {"a": 1, "b": 1}


def test_per_class_explicit_valid(flat: Path) -> None:
    counts = _per_class(make_split(flat, "per-class:5,3,3", seed=2))
    assert counts == {
        "train": {"air hockey": 5, "polo": 5, "rowing": 5},
        "valid": {"air hockey": 3, "polo": 3, "rowing": 3},
        "test": {"air hockey": 3, "polo": 3, "rowing": 3},
    }


def test_per_class_too_few_images_names_the_class(flat: Path) -> None:
    with pytest.raises(SportsdetError) as info:
        make_split(flat, "per-class:10,5", seed=0)
    message = str(info.value)
    assert "class 'rowing' has 11 images" in message and "needs 15" in message
    assert "per-class:5,5,1" in message
    # The advice keeps validation photos: per-class:6,5 took all the rest for training, and
    # training went without calibration, an abstain rule or a best epoch.
    assert make_split(flat, "per-class:5,5,1", seed=0).counts["valid"]["rowing"] == 1
    # An explicit VALID counts too: 5 + 5 + 2 of rowing's 11 is one short, not a smaller valid.
    with pytest.raises(SportsdetError, match="class 'rowing' has 11 images.*needs 12"):
        make_split(flat, "per-class:5,5,2", seed=0)


@pytest.mark.parametrize(
    ("strategy", "advice"),
    [("per-class:5,12", "per-class:8,2,1"), ("per-class:5,12,3", "per-class:7,1,3")],
)
def test_per_class_advice_that_would_be_refused_is_not_given(flat: Path, strategy: str, advice: str) -> None:
    # TEST alone above the class (rowing: 11): it advised per-class:0,12, itself refused.
    with pytest.raises(SportsdetError, match=f"e.g. {advice}\\)"):
        make_split(flat, strategy, seed=0)
    make_split(flat, advice, seed=0)  # and the advice works


# ----------------------------------------------------------------------------- official


def test_official_uses_the_folders(split_tree: Path) -> None:
    manifest = make_split(split_tree, "official")
    counts = _per_class(manifest)
    assert counts == {
        "train": {"croquet": 12, "polo": 10},
        "valid": {"croquet": 2, "polo": 2},
        "test": {"croquet": 3, "polo": 3},
    }
    assert all(rel.startswith("test/") for rel, _ in manifest.splits["test"])
    assert manifest.notes == []


def test_official_on_a_flat_tree_gives_advice(flat: Path) -> None:
    with pytest.raises(SportsdetError) as info:
        make_split(flat, "official")
    assert "random:0.2" in str(info.value) and str(flat.resolve()) in str(info.value)


def test_official_without_valid_folder_carves_one(tmp_path: Path) -> None:
    root = tmp_path / "t"
    _tree(root, {"a": 20, "b": 10}, "train")
    _tree(root, {"a": 2, "b": 2}, "test")
    manifest = make_split(root, "official", seed=0)
    counts = _per_class(manifest)
    assert counts["valid"] == {"a": 2, "b": 1}
    assert counts["train"] == {"a": 18, "b": 9}
    assert all(rel.startswith("train/") for rel, _ in manifest.splits["valid"])
    assert any("no valid folder" in note for note in manifest.notes)


def test_official_without_valid_folder_carves_one_from_a_small_class(tmp_path: Path) -> None:
    root = tmp_path / "t"
    _tree(root, {"a": 5, "b": 2, "c": 1}, "train")
    _tree(root, {"a": 2, "b": 2, "c": 2}, "test")
    counts = _per_class(make_split(root, "official", seed=0))
    # round(5 * 0.1) is 0: no class had a validation photo. One photo stays for training.
    assert counts["valid"] == {"a": 1, "b": 1}
    assert counts["train"] == {"a": 4, "b": 1, "c": 1}


# ----------------------------------------------------------------------------- classes


def test_class_subset_keeps_sorted_order(flat: Path) -> None:
    manifest = make_split(flat, "random:0.2", classes=["rowing", " air hockey", "rowing"])
    assert manifest.classes == ["air hockey", "rowing"]
    assert {label for split in manifest.splits.values() for _, label in split} == {"air hockey", "rowing"}


def test_class_subset_as_comma_separated_text(flat: Path) -> None:
    assert make_split(flat, "random:0.2", classes="rowing, air hockey").classes == ["air hockey", "rowing"]
    with pytest.raises(SportsdetError, match="no class names"):
        make_split(flat, "random:0.2", classes=" , ")


def test_unknown_classes_are_listed_with_suggestions(flat: Path) -> None:
    with pytest.raises(SportsdetError) as info:
        make_split(flat, "random:0.2", classes=["Polo", "air-hockey", "curling"])
    message = str(info.value)
    assert "'Polo' (did you mean 'polo'?)" in message
    assert "'air-hockey' (did you mean 'air hockey'?)" in message
    assert "'curling'" in message
    # Close in every word, not overall: 'ampute football' was "did you mean 'american football'?".
    from sportsdet.errors import quoted_with_hint

    assert quoted_with_hint("ampute football", ["american football"]) == "'ampute football'"
    assert "did you mean 'american football'" in quoted_with_hint("amercian football", ["american football"])
    # ... and a one-letter typo in a short word still gets one ('wat' is 0.67 like 'war' on ratio).
    typos = (("tug of wat", "tug of war"), ("shot pot", "shot put"), ("sky jumping", "ski jumping"))
    for typed, meant in typos:
        assert f"did you mean {meant!r}" in quoted_with_hint(typed, [meant, "rowing"]), typed


# ----------------------------------------------------------------------------- manifest


def test_manifest_round_trip_and_items(split_tree: Path, tmp_path: Path) -> None:
    manifest = make_split(split_tree, "random:0.2", seed=5)
    path = manifest.save(tmp_path / "run" / "split.json")
    data = json.loads(path.read_text())
    assert data["format"] == "sportsdet-split/1" and data["root"] == str(split_tree.resolve())
    assert data["counts"]["test"] == {"croquet": 3, "polo": 3}
    assert all(isinstance(e, list) and len(e) == 2 for e in data["splits"]["train"])
    assert [p.name for p in path.parent.iterdir()] == ["split.json"]  # no temporary file left behind

    loaded = SplitManifest.load(path)
    assert loaded.to_dict() == manifest.to_dict()
    items = loaded.items("test")
    assert len(items) == 6
    for file, label in items:
        assert file.is_absolute() and file.is_file()
        assert loaded.classes[label] == file.parent.name
    assert loaded.missing_files() == []
    (split_tree / manifest.splits["train"][0][0]).unlink()
    assert loaded.missing_files() == [manifest.splits["train"][0][0]]


def test_manifest_with_root_moves_paths(split_tree: Path, tmp_path: Path) -> None:
    moved = make_split(split_tree, "official").with_root(tmp_path / "elsewhere")
    assert moved.items("train")[0][0].is_relative_to(tmp_path / "elsewhere")


def _valid_manifest_dict(root: Path) -> dict:
    return make_split(root, "official").to_dict()


@pytest.mark.parametrize(
    "breakage, fragment",
    [
        (lambda d: d.update(format="other/9"), "expected 'sportsdet-split/1' or 'sportsdet-split/2'"),
        (lambda d: d.pop("classes"), "missing field 'classes'"),
        (lambda d: d.update(seed="zero"), "'seed' must be a int"),
        (lambda d: d["splits"]["train"].append(["train/polo/x.png", "curling"]), "'curling'"),
        (lambda d: d["splits"]["test"].append(list(d["splits"]["train"][0])), "in both"),
        (lambda d: d["splits"]["train"].__setitem__(0, ["/etc/passwd", "polo"]), "relative to root"),
        (lambda d: d["splits"]["train"].__setitem__(0, ["../x.png", "polo"]), "relative to root"),
        (lambda d: d["splits"]["train"].__setitem__(0, "train/polo/0.png"), "each entry must be"),
        (lambda d: d["counts"]["train"].update(polo=99), "counts"),
        (lambda d: d.update(strategy="random:2"), "random:2"),
        (lambda d: d["splits"].update(holdout=[]), "holdout"),
    ],
)
def test_manifest_load_rejects_damage(split_tree: Path, tmp_path: Path, breakage, fragment: str) -> None:
    data = _valid_manifest_dict(split_tree)
    breakage(data)
    path = tmp_path / "split.json"
    path.write_text(json.dumps(data))
    with pytest.raises(SportsdetError) as info:
        SplitManifest.load(path)
    assert str(path) in str(info.value) and fragment in str(info.value)


def test_manifest_load_missing_and_not_json(tmp_path: Path) -> None:
    with pytest.raises(SportsdetError, match="not found"):
        SplitManifest.load(tmp_path / "nope.json")
    broken = tmp_path / "split.json"
    broken.write_text('{"format": "sportsdet-split/1", ')
    with pytest.raises(SportsdetError, match="not valid JSON"):
        SplitManifest.load(broken)


def test_failed_save_keeps_the_old_manifest(split_tree: Path, tmp_path: Path, monkeypatch) -> None:
    path = make_split(split_tree, "official").save(tmp_path / "run" / "split.json")
    before = path.read_text()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(json, "dump", boom)
    with pytest.raises(RuntimeError):
        make_split(split_tree, "random:0.2").save(path)
    assert path.read_text() == before
    assert [p.name for p in path.parent.iterdir()] == ["split.json"]  # the temporary file was removed


# ----------------------------------------------------------------------------- CLI


def test_cli_split_writes_manifest(split_tree: Path, tmp_path: Path) -> None:
    from sportsdet.cli import app

    out = tmp_path / "split.json"
    result = CliRunner().invoke(
        app,
        [
            "data",
            "split",
            str(split_tree),
            "--split",
            "per-class:4,2",
            "--seed",
            "3",
            "--classes",
            "polo",
            "--out",
            str(out),
        ],
        terminal_width=200,
    )
    assert result.exit_code == 0, result.output
    assert "train 3 / valid 2 / test 2" in result.stdout  # 4 + 2 + 1 valid; a copy of it kept with it
    manifest = SplitManifest.load(out)
    assert manifest.classes == ["polo"] and manifest.seed == 3 and manifest.strategy == "per-class:4,2"


def test_cli_split_bad_strategy_exits_2_without_traceback(split_tree: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sportsdet", "data", "split", str(split_tree), "--split", "random:1.5"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "random:1.5" in result.stderr and "Traceback" not in result.stderr


# ----------------------------------------------------------------------------- a saved split, reused


def _photos(manifest_root: Path) -> list[tuple[str, str, str]]:
    scan = scan_dataset(manifest_root)
    return [(record.rel, record.label, "") for record in scan.records]


def test_a_saved_split_is_reused_exactly_after_photos_come_and_go(flat: Path, tmp_path: Path) -> None:
    from sportsdet.data.splits import is_saved_split, reuse_saved_split

    saved = make_split(flat, "random:0.2", seed=4)
    path = saved.save(tmp_path / "split.json")
    assert is_saved_split(str(path)) and not is_saved_split("random:0.2") and not is_saved_split(None)
    gone = saved.splits["test"][0][0]
    (flat / gone).unlink()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(flat / "polo" / "new.png")
    # A fresh split of the changed folder moves photos between train and test ...
    assert make_split(flat, "random:0.2", seed=4).splits["test"] != saved.splits["test"]
    # ... the saved one does not: the same photos in every split, less the one that is gone.
    reused = reuse_saved_split(path, flat, _photos(flat))
    assert reused.splits["train"] == saved.splits["train"] and reused.splits["valid"] == saved.splits["valid"]
    assert reused.splits["test"] == saved.splits["test"][1:]
    assert (reused.strategy, reused.seed, reused.classes) == ("random:0.2", 4, saved.classes)
    notes = " | ".join(reused.notes)
    assert f"1 photo(s) of the saved split are gone from DATA (e.g. {gone})" in notes
    assert "1 photo(s) in DATA are not in the saved split (e.g. polo/new.png)" in notes
    # --classes picks from the saved split; a class it does not have is refused.
    only = reuse_saved_split(path, flat, _photos(flat), "polo,rowing")
    assert only.classes == ["polo", "rowing"]
    assert {label for _, label in only.splits["train"]} == {"polo", "rowing"}
    with pytest.raises(SportsdetError, match="'chess' is not in the saved split"):
        reuse_saved_split(path, flat, _photos(flat), "chess")
    # No class named: the error --classes gives anywhere ("no training photo in DATA", it said).
    with pytest.raises(SportsdetError, match="--classes: no class names given"):
        reuse_saved_split(path, flat, _photos(flat), ",")


def test_a_reused_split_says_when_a_class_lost_every_photo_of_a_split(flat: Path, tmp_path: Path) -> None:
    # A class whose training photos were all deleted was trained as an output never shown an
    # example, without a word (a fresh or official split says so).
    from sportsdet.data.splits import reuse_saved_split

    saved = make_split(flat, "random:0.2", seed=4)
    path = saved.save(tmp_path / "split.json")
    for rel, label in saved.splits["train"]:
        if label == "polo":
            (flat / rel).unlink()
    notes = " | ".join(reuse_saved_split(path, flat, _photos(flat)).notes)
    assert "class(es) 'polo' have no train photos left in DATA" in notes
    assert "the model learns nothing of them" in notes and "no test photos" not in notes


def test_a_reused_split_knows_renamed_photos_by_their_content(flat: Path, tmp_path: Path) -> None:
    # A folder renumbered after one photo was deleted (a re-export): by name, test photos of the
    # saved split became training photos under the names of training photos, without a word.
    from sportsdet.data.splits import reuse_saved_split
    from sportsdet.files import photo_digest

    saved = make_split(flat, "random:0.2", seed=4)
    path = saved.save(tmp_path / "split.json")
    assert set(SplitManifest.load(path).digests) == {rel for s in saved.splits.values() for rel, _ in s}
    split_of = {photo_digest(flat / rel): name for name, pairs in saved.splits.items() for rel, label in pairs
                if label == "polo"}  # fmt: skip
    polo = sorted((flat / "polo").iterdir())
    polo[0].unlink()
    for i, photo in enumerate(polo[1:]):
        photo.rename(flat / "polo" / f"{i:03d}.png")
    reused = reuse_saved_split(path, flat, _photos(flat))
    # The hashes checked on the way come with it: saving it reads no photo again.
    listed = [rel for pairs in reused.splits.values() for rel, _ in pairs]
    assert reused.digests == {rel: photo_digest(flat / rel) for rel in listed}
    now = {rel: name for name, pairs in reused.splits.items() for rel, label in pairs if label == "polo"}
    assert len(now) == len(polo) - 1
    assert all(split_of[photo_digest(flat / rel)] == name for rel, name in now.items())
    notes = " | ".join(reused.notes)
    assert "were renamed or moved since (found by content" in notes
    assert "1 photo(s) of the saved split are gone from DATA (e.g. polo/000.png; 1 of them by a name" in notes
    assert "not in the saved split" not in notes
    # Photos re-saved in place (re-compressed, metadata stripped): the same photos, kept by name. A
    # whole class re-saved was dropped from the run ("gone from DATA", though every file was there).
    fresh = make_split(flat, "random:0.2", seed=4)
    path = fresh.save(tmp_path / "fresh.json")
    for photo in (flat / "rowing").iterdir():
        with Image.open(photo) as image:
            image.load()
            image.convert("RGB").save(photo, format="PNG", compress_level=1)  # other bytes, same pixels
    again = reuse_saved_split(path, flat, _photos(flat))
    assert again.splits == fresh.splits and "rowing" in again.classes
    assert "photo(s) of the saved split have other bytes now" in " | ".join(again.notes)
    # A class none of whose saved photos is left is said to be left out (only "N classes" said it).
    import shutil

    shutil.rmtree(flat / "rowing")
    notes = " | ".join(reuse_saved_split(path, flat, _photos(flat)).notes)
    assert "class(es) 'rowing' have none of the saved split's photos left in DATA" in notes
    # A split file of an older sportsdet, without hashes: photos known by name, as before.
    older = json.loads(path.read_text())
    del older["digests"]
    path.write_text(json.dumps(older))
    by_name = reuse_saved_split(path, flat, _photos(flat))
    assert "renamed" not in " | ".join(by_name.notes)


def test_a_split_file_names_each_photo_one_way(flat: Path, tmp_path: Path) -> None:
    # './polo/a.jpg' beside 'polo/a.jpg' passed as two photos (one in train, one in test) and was
    # then called "gone from DATA".
    saved = make_split(flat, "random:0.2", seed=4)
    path = saved.save(tmp_path / "split.json")
    data = json.loads(path.read_text())
    rel = data["splits"]["train"][0][0]
    for odd in (f"./{rel}", rel.replace("/", "//"), f"{rel}\u0000"):
        data["splits"]["test"].append([odd, data["splits"]["train"][0][1]])
        path.write_text(json.dumps(data))
        with pytest.raises(SportsdetError, match="must be written plainly"):
            SplitManifest.load(path)
        data["splits"]["test"].pop()
    # A saved split under another file name is said to be one, not an "unknown strategy".
    other = tmp_path / "split.txt"
    other.write_text(json.dumps(data))
    with pytest.raises(SportsdetError, match="a saved split is read from a .json file"):
        parse_split_strategy(str(other))


def test_a_saved_split_that_does_not_fit_the_data_is_one_clear_error(flat: Path, tmp_path: Path) -> None:
    from sportsdet.data.splits import reuse_saved_split

    path = make_split(flat, "random:0.2").save(tmp_path / "split.json")
    photos = _photos(flat)
    moved = [(rel, "polo" if rel.startswith("rowing/000") else label, src) for rel, label, src in photos]
    relabelled = r"1 photo\(s\) have another class .* is 'rowing' there, 'polo' here"
    with pytest.raises(SportsdetError, match=relabelled):
        reuse_saved_split(path, flat, moved)
    sources = {"a": {"root": str(flat), "map": {}}}
    # One folder with a --map (or in a dataset file) is a source: the folder alone is not the same DATA.
    mapped = r"saved split is of one folder, but DATA is the sources a; give the same DATA as when .*--map"
    with pytest.raises(SportsdetError, match=mapped):
        reuse_saved_split(path, flat, [(rel, label, "a") for rel, label, _ in photos], sources=sources)
    two = {**sources, "b": {"root": str(tmp_path), "map": {}}}
    with pytest.raises(SportsdetError, match="DATA is the sources a, b; give the same DATA, or leave out"):
        reuse_saved_split(path, flat, [(rel, label, "a") for rel, label, _ in photos], sources=two)
    with pytest.raises(SportsdetError, match=r"none of the saved split's training photos is in DATA .*they "
                       r"are gone: leave out --split"):  # fmt: skip
        reuse_saved_split(path, flat, [])
    with pytest.raises(SportsdetError, match=r"none of the saved split's training photos is in DATA .*it was "
                       r"made for .*: train on that folder, or leave out --split"):  # fmt: skip
        reuse_saved_split(path, tmp_path, [])
    with pytest.raises(SportsdetError, match="split manifest not found"):
        reuse_saved_split(tmp_path / "nosuch.json", flat, photos)


def test_cli_split_defaults_like_train_and_takes_several_sources(flat, split_tree, tmp_path, run_cli, capsys):
    # A folder per class: random:0.2 by default (as `train` does), not an error about 'official'.
    assert run_cli("data", "split", str(flat)) == 0
    assert "--split random:0.2 --seed 0" in capsys.readouterr().out
    out = tmp_path / "both.json"
    both = ["data", "split", str(flat), str(split_tree), "--map", "official:croquet=cricket"]
    assert run_cli(*both, "--merge", "polo", "--out", str(out)) == 0
    assert "flat: random:0.2; official: official --seed 0" in capsys.readouterr().out
    manifest = SplitManifest.load(out)
    assert set(manifest.sources) == {"flat", "official"} and "cricket" in manifest.classes
    assert manifest.sources["official"]["map"] == {"croquet": "cricket"}
    assert run_cli("data", "split", str(flat), "--out", str(tmp_path / "s.txt")) == 2
    assert "give a .json file name" in capsys.readouterr().err
    # --json prints the manifest as --out writes it (it lacked the photos' content hashes).
    assert run_cli("data", "split", str(flat), "--json") == 0
    printed = json.loads(capsys.readouterr().out)
    assert run_cli("data", "split", str(flat), "--out", str(tmp_path / "same.json")) == 0
    capsys.readouterr()
    assert printed == json.loads((tmp_path / "same.json").read_text()) and printed["digests"]
    # A folder given as --out is refused before the split is made (it failed after all the work).
    (tmp_path / "dir.json").mkdir()
    assert run_cli("data", "split", str(flat), "--out", str(tmp_path / "dir.json")) == 2
    captured = capsys.readouterr()
    assert "is a folder" in captured.err and captured.out == ""  # no split table drawn first


def _copied_photos(root: Path, classes: dict[str, range]) -> dict[str, list[str]]:
    """Distinct drawn photos, each saved with a resized copy and a byte copy; rel paths per photo."""
    from test_near_copies import distance, drawn_photo

    from sportsdet.near_copies import MAX_DISTANCE, near_copy_hash

    copies = {}
    for name, seeds in classes.items():
        (root / name).mkdir(parents=True)
        for seed in seeds:
            drawn_photo(seed).save(root / name / f"{seed}.jpg", quality=95)
            drawn_photo(seed).resize((120, 120)).save(root / name / f"{seed}-small.jpg", quality=80)
            hashes = [near_copy_hash(root / name / f"{seed}{end}.jpg") for end in ("", "-small")]
            assert distance(*hashes) <= MAX_DISTANCE  # a near copy, as the split must see it
            (root / name / f"{seed}-again.jpg").write_bytes((root / name / f"{seed}.jpg").read_bytes())
            copies[f"{name}/{seed}"] = [f"{name}/{seed}{end}.jpg" for end in ("", "-small", "-again")]
    return copies


@pytest.mark.parametrize("seed", [0, 1])
def test_a_random_split_keeps_copies_of_one_photo_in_one_split(tmp_path: Path, seed: int, run_cli, capsys):
    # Drawn one by one, a photo and its copies land in train and test: the test scores a photo
    # the model trained on. Each group moves whole into the split of one of its photos.
    from sportsdet.data.splits import keep_copies_together

    copies = _copied_photos(tmp_path / "flat", {"polo": range(8), "rowing": range(20, 28)})
    drawn = make_split(tmp_path / "flat", "random:0.25", seed=seed)
    where = {rel: split for split, rels in drawn.splits.items() for rel, _ in rels}
    torn = [photo for photo, rels in copies.items() if len({where[rel] for rel in rels}) > 1]
    assert torn  # the draw alone separates copies (what this guards against)
    kept = keep_copies_together(drawn)
    where = {rel: split for split, rels in kept.splits.items() for rel, _ in rels}
    assert sorted(where) == sorted(rel for rels in copies.values() for rel in rels)  # none lost
    assert all(len({where[rel] for rel in rels}) == 1 for rels in copies.values())
    assert {where[rels[0]] for rels in copies.values()} >= {"train", "test"}
    before = {rel: split for split, rels in drawn.splits.items() for rel, _ in rels}
    moved = sum(before[rel] != where[rel] for rel in where)
    [note] = [n for n in kept.notes if "moved into the split of their copies" in n]
    assert note.startswith(f"{moved} photo(s) moved") and f"({len(torn)} group(s)" in note
    assert all(rels == sorted(rels) for rels in kept.splits.values())
    # The same split, every time, from `data split` and from training (both keep copies together).
    saved = tmp_path / "split.json"
    assert run_cli("data", "split", str(tmp_path / "flat"), "--split", "random:0.25", "--seed", str(seed),
                   "--out", str(saved)) == 0  # fmt: skip
    assert SplitManifest.load(saved).splits == kept.splits
    assert f"note: {moved} photo(s) moved into the split of their copies" in capsys.readouterr().err


def test_copies_never_take_away_a_class_s_last_training_photos(tmp_path: Path) -> None:
    # A class that is one photo saved five times: wherever the draw would put the group, it trains.
    from test_near_copies import drawn_photo

    from sportsdet.data.splits import keep_copies_together

    root = _tree(tmp_path / "flat", {"polo": 10})
    (root / "rowing").mkdir()
    for i in range(5):
        drawn_photo(3).save(root / "rowing" / f"{i}.jpg", quality=90)
    for seed in range(10):
        kept = keep_copies_together(make_split(root, "random:0.2", seed=seed))
        assert kept.counts["train"]["rowing"] == 5, seed


def test_copies_never_take_away_a_class_s_test_photos(tmp_path: Path) -> None:
    # Rowing: 5 photos and one saved 3 times. Where the draw put both of rowing's test photos among
    # the copies and the group went to train, rowing had no test photo left.
    from test_near_copies import drawn_photo

    from sportsdet.data.splits import keep_copies_together

    root = tmp_path / "flat"
    (root / "rowing").mkdir(parents=True)
    (root / "polo").mkdir()
    for i in range(10):
        drawn_photo(100 + i).save(root / "polo" / f"{i}.jpg", quality=90)
    for i in range(5):
        drawn_photo(i).save(root / "rowing" / f"{i}.jpg", quality=90)
    for name in ("copy-a", "copy-b", "copy-c"):
        drawn_photo(50).save(root / "rowing" / f"{name}.jpg", quality=90)
    for seed in range(40):
        kept = keep_copies_together(make_split(root, "random:0.2", seed=seed))
        assert kept.counts["test"].get("rowing", 0) >= 1 and kept.counts["train"]["rowing"] >= 1, seed
        assert kept.counts["valid"].get("rowing", 0) >= 1, seed
        where = {rel: split for split, rels in kept.splits.items() for rel, _ in rels}
        assert len({where[f"rowing/{name}.jpg"] for name in ("copy-a", "copy-b", "copy-c")}) == 1


def test_a_valid_split_carved_from_the_train_folder_keeps_copies_together_too(tmp_path: Path) -> None:
    # A tree with train/ and test/ but no valid/: validation photos are drawn from train/, so a
    # photo and its copy can be split between train and valid. They move between those two only;
    # test/ photos stay where the tree put them.
    from test_near_copies import drawn_photo

    from sportsdet.data.splits import keep_copies_together

    root = tmp_path / "tree"
    for name, seeds in (("polo", range(10)), ("rowing", range(20, 30))):
        _copied_photos(root / "train", {name: seeds})
        (root / "test" / name).mkdir(parents=True)
        drawn_photo(seeds[0] + 100).save(root / "test" / name / "t.jpg", quality=90)
    drawn_photo(5).save(root / "test" / "polo" / "copy-of-train.jpg", quality=90)
    moved_any = False
    for seed in range(3):
        drawn = make_split(root, "official", seed=seed)
        assert any("no valid folder" in note for note in drawn.notes)
        kept = keep_copies_together(drawn)
        where = {rel: split for split, rels in kept.splits.items() for rel, _ in rels}
        for photo in [f"polo/{s}" for s in range(10) if s != 5] + [f"rowing/{s}" for s in range(20, 30)]:
            rels = [f"train/{photo}{end}.jpg" for end in ("", "-small", "-again")]
            assert len({where[rel] for rel in rels}) == 1, (seed, photo)
        assert all(where[rel] == "test" for rel in where if rel.startswith("test/"))
        assert {where[f"train/polo/5{end}.jpg"] for end in ("", "-small", "-again")} <= {"train", "valid"}
        moved_any |= kept is not drawn
    assert moved_any
