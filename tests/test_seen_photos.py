"""seen_photos: evaluate leaves out the photos a model was trained and validated on, by content."""

from __future__ import annotations

import html
import json
import shutil
from pathlib import Path

import pytest
from conftest import CLASSES, make_image_tree, make_tiny_bundle

from sportsdet.bundle import SEEN_NAME, load_bundle
from sportsdet.errors import SportsdetError
from sportsdet.evaluate import evaluate
from sportsdet.report import write_report
from sportsdet.seen_photos import (
    SeenPhotos,
    load_seen,
    photo_digest,
    seen_photos_json,
    seen_summary,
    split_off_seen,
)


@pytest.fixture
def seen_bundle(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny bundle that 'was trained' on the first two photos of each class (and validated on
    the third), and the folder holding those photos and one more per class."""
    tree = make_image_tree(tmp_path / "photos", per_class=4)
    bundle = make_tiny_bundle(tmp_path / "model")
    photos = {name: sorted((tree / name).iterdir()) for name in CLASSES}
    splits = {
        "train": [p for name in CLASSES for p in photos[name][:2]],
        "valid": [photos[name][2] for name in CLASSES],
        "test": [photos[name][3] for name in CLASSES],  # not recorded: test photos are to be scored
    }
    (bundle / SEEN_NAME).write_bytes(seen_photos_json(splits))
    return bundle, tree


def test_the_file_records_train_and_valid_photos_by_content(seen_bundle: tuple[Path, Path]) -> None:
    bundle, tree = seen_bundle
    seen = load_seen(bundle)
    assert seen.counts() == {"train": 6, "valid": 3}
    a_train_photo = sorted((tree / CLASSES[0]).iterdir())[0]
    assert photo_digest(a_train_photo) in seen.digests["train"]
    assert seen.near is not None and len(seen.near) == 9  # and how each looks, for its near copies
    assert load_bundle(bundle).labels == CLASSES  # the bundle still loads as before
    assert load_seen(make_tiny_bundle(bundle.parent / "older")) is None  # bundles without it: None


def test_evaluate_leaves_seen_photos_out_wherever_they_are(
    seen_bundle: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle, tree = seen_bundle
    # A copy elsewhere, renamed: found by content, not by path.
    copy = tmp_path / "elsewhere"
    shutil.copytree(tree, copy)
    first = sorted((copy / CLASSES[0]).iterdir())[0]
    first.rename(first.with_name("renamed.jpg"))
    notes: list[str] = []
    result = evaluate(bundle, copy, out_dir=tmp_path / "eval", warn=notes.append)
    assert result.metrics["n"] == 3 and result.metrics["seen_left_out"] == {"train": 6, "valid": 3}
    assert [p.name for p in result.paths] == ["003.jpg"] * 3
    assert notes == [
        f"9 of the 12 photos under {copy.resolve()} are ones the model was trained or validated on "
        "(6 training and 3 validation photos): left out, so the score is on photos it has not seen "
        "(--keep-seen scores them too)"
    ]
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert written["seen_left_out"] == {"train": 6, "valid": 3}
    assert len(written["seen_photos_left_out"]) == 9 and not any(
        e["near_copy"] for e in written["seen_photos_left_out"]
    )
    assert {e["split"] for e in written["seen_photos_left_out"]} == {"train", "valid"}
    page = html.unescape(write_report(tmp_path / "eval").read_text(encoding="utf-8"))
    assert "the model's own, found by content: 6 training and 3 validation photos; the score is on" in page
    notes.clear()
    kept = evaluate(bundle, copy, out_dir=tmp_path / "all", keep_seen=True, warn=notes.append)
    assert kept.metrics["n"] == 12 and kept.metrics["seen_left_out"] == {}
    # Scored anyway, but said: a 100% over photos it was trained on left no trace anywhere.
    assert kept.metrics["seen_kept"] == {"train": 6, "valid": 3}
    assert notes == [
        f"9 of the 12 photos under {copy.resolve()} the model was trained or validated on (6 training and "
        "3 validation photos): scored anyway (--keep-seen), so the score flatters it"
    ]
    page = html.unescape(write_report(tmp_path / "all").read_text(encoding="utf-8"))
    said = "6 training and 3 validation photos (--keep-seen): the score counts photos the model has seen"
    assert said in page


def test_a_folder_of_nothing_but_seen_photos_is_an_error(
    seen_bundle: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle, tree = seen_bundle
    for name in CLASSES:
        sorted((tree / name).iterdir())[3].unlink()
    with pytest.raises(SportsdetError, match=r"every photo here is one the model was trained or validated"):
        evaluate(bundle, tree, out_dir=tmp_path / "eval")
    assert not (tmp_path / "eval").exists()


def test_a_class_whose_every_photo_was_seen_is_said_not_dropped_in_silence(
    seen_bundle: tuple[Path, Path], tmp_path: Path
) -> None:
    # sports100's 5 `shot put` test photos all copy training ones: the class left the report's count
    # ("classes 99") and its list of names without a word.
    bundle, tree = seen_bundle
    sorted((tree / CLASSES[0]).iterdir())[3].unlink()  # its one photo the model has not seen
    notes: list[str] = []
    result = evaluate(bundle, tree, out_dir=tmp_path / "eval", warn=notes.append)
    assert result.metrics["classes_all_seen"] == [CLASSES[0]] and result.metrics["n"] == 2
    assert notes[0].endswith(f"; every photo of 1 class(es) among them ({CLASSES[0]}): not scored at all")
    page = html.unescape(write_report(tmp_path / "eval").read_text(encoding="utf-8"))
    assert f"every photo of 1 class(es) was one, so they are not scored: {CLASSES[0]}" in page
    assert "<th>classes</th><td>2 scored, 1 more left out (the model knows 3)</td>" in page


def test_an_older_bundle_whose_split_or_photos_are_gone_says_it_cannot_leave_them_out(tmp_path: Path) -> None:
    # A bundle made before seen_photos.json, copied out of its run folder or with its data moved:
    # evaluate scored its own training photos as new ones, silently (93.8% on 210, 168 of them seen).
    from sportsdet.data.splits import make_split

    tree = make_image_tree(tmp_path / "photos", per_class=4)
    bundle = make_tiny_bundle(tmp_path / "model")
    record = json.loads((bundle / "bundle.json").read_text())
    record["training"] = {"recipe": "transfer"}  # made by `sportsdet train`, before the file existed
    record["data"] = {"manifest": str(tmp_path / "split.json")}
    (bundle / "bundle.json").write_text(json.dumps(record))
    notes: list[str] = []
    evaluate(bundle, tree, out_dir=tmp_path / "e1", warn=notes.append)
    assert any("and its run's split.json is not found" in n and "scored as new ones" in n for n in notes)
    moved = tmp_path / "moved"
    shutil.copytree(tree, moved)
    make_split(moved, "random:0.5", seed=0).save(tmp_path / "split.json")
    shutil.rmtree(moved)
    notes.clear()
    evaluate(bundle, tree, out_dir=tmp_path / "e2", warn=notes.append)
    said = "and 6 of the training and validation photos its run's split.json lists are not where it says"
    assert any(said in n for n in notes)
    # A bundle saved from Python with a training record of its own: nothing was to be found.
    record["training"], record["data"] = {"epochs": 10, "trained_by": "my notebook"}, {}
    (bundle / "bundle.json").write_text(json.dumps(record))
    (tmp_path / "split.json").unlink()
    notes.clear()
    evaluate(bundle, tree, out_dir=tmp_path / "e3", warn=notes.append)
    assert not any("was made before bundles recorded" in n for n in notes)


def test_a_damaged_seen_file_names_itself(seen_bundle: tuple[Path, Path], tmp_path: Path) -> None:
    bundle, tree = seen_bundle
    (bundle / SEEN_NAME).write_text('{"format": "other"}')
    with pytest.raises(SportsdetError, match=rf"{SEEN_NAME}: not a sportsdet-seen/2 file; delete it"):
        evaluate(bundle, tree, out_dir=tmp_path / "eval")
    (bundle / SEEN_NAME).write_text("{not json")
    with pytest.raises(SportsdetError, match=rf"{SEEN_NAME}: unreadable"):
        evaluate(bundle, tree, out_dir=tmp_path / "eval")
    from sportsdet.near_copies import HASH_NAME

    near = {"hash": HASH_NAME, "splits": {"train": ["z" * 32]}}  # not hex
    damaged = {"format": "sportsdet-seen/2", "splits": {}, "near_copies": near}
    (bundle / SEEN_NAME).write_text(json.dumps(damaged))
    with pytest.raises(SportsdetError, match=rf"{SEEN_NAME}: not a sportsdet-seen/2 file"):
        evaluate(bundle, tree, out_dir=tmp_path / "eval")


def test_unreadable_photos_are_kept_for_scoring_to_report(tmp_path: Path) -> None:
    (tmp_path / "fifo.jpg").mkdir()  # not a regular file: hashing refuses it, scoring says why
    ok = tmp_path / "ok.jpg"
    ok.write_bytes(b"x")
    kept, left_out = split_off_seen([tmp_path / "fifo.jpg", ok], SeenPhotos({"train": {photo_digest(ok)}}))
    assert kept == [0] and left_out.by_split == {"train": 1} and left_out.near_copies == 0
    assert seen_summary({"train": 1080, "valid": 120}) == "1,080 training and 120 validation photos"


def test_the_builtin_model_knows_its_own_training_photos() -> None:
    from sportsdet.bundle import builtin_bundle_path

    builtin = builtin_bundle_path()
    seen = load_seen(builtin)
    counts = load_bundle(builtin, verify_weights=False).data["counts"]
    # Byte-identical copies within a split count once, so a split can hold a few fewer digests.
    assert counts["train"] - 20 <= len(seen.digests["train"]) <= counts["train"]
    assert counts["valid"] - 20 <= len(seen.digests["valid"]) <= counts["valid"]
    # ... and how they look, so that resized or re-saved copies of them are left out too
    assert seen.near is not None
    assert counts["train"] - 60 <= len(seen.near) <= counts["train"] + counts["valid"]


def test_an_older_run_without_the_file_is_checked_against_its_split(tmp_path: Path) -> None:
    # A run trained before seen_photos.json: its split.json says which photos it has seen.
    from sportsdet.data.splits import make_split

    tree = make_image_tree(tmp_path / "photos", per_class=5)
    run = tmp_path / "run"
    bundle = make_tiny_bundle(run / "model")
    make_split(tree, "random:0.2", seed=0).save(run / "split.json")
    copy = tmp_path / "copy"
    shutil.copytree(tree, copy)
    result = evaluate(bundle, copy, out_dir=tmp_path / "eval")
    split = json.loads((run / "split.json").read_text())["splits"]
    assert result.metrics["n"] == len(split["test"])
    assert result.metrics["seen_left_out"] == {"train": len(split["train"]), "valid": len(split["valid"])}


def test_a_test_photo_copied_from_training_is_left_out_of_the_saved_split_too(tmp_path: Path) -> None:
    # sports100's official split has 5 test photos that are byte copies of training or validation
    # photos: scoring them tests nothing, so the run's own test split leaves them out as well.
    from sportsdet.data.splits import make_split

    tree = make_image_tree(tmp_path / "photos", splits={"train": 3, "valid": 1, "test": 2})
    shutil.copy(tree / "train" / CLASSES[0] / "000.jpg", tree / "test" / CLASSES[0] / "copy.jpg")
    run = tmp_path / "run"
    bundle = make_tiny_bundle(run / "model")
    manifest = json.loads((bundle / "bundle.json").read_text())
    manifest["data"] = {"root": str(tree.resolve())}
    (bundle / "bundle.json").write_text(json.dumps(manifest))
    make_split(tree, "official", seed=0).save(run / "split.json")
    notes: list[str] = []
    result = evaluate(bundle, tree, out_dir=tmp_path / "eval", warn=notes.append)
    assert result.metrics["source"] == "split-manifest" and result.metrics["n"] == 6
    assert result.metrics["seen_left_out"] == {"train": 1}
    assert notes == [
        f"1 of the 7 test photos under {tree.resolve()} is one the model was trained or validated on "
        "(1 training photo): left out, so the score is on photos it has not seen (--keep-seen scores it too)"
    ]
    # --split valid scores the validation photos, which the model has seen by definition: all kept.
    assert evaluate(bundle, tree, split="valid", out_dir=tmp_path / "valid").metrics["n"] == 3
    assert evaluate(bundle, tree, out_dir=tmp_path / "all", keep_seen=True).metrics["n"] == 7


def test_a_resized_copy_of_a_training_photo_is_left_out_as_a_near_copy(tmp_path: Path) -> None:
    from PIL import Image
    from test_near_copies import drawn_photo

    bundle = make_tiny_bundle(tmp_path / "model")
    trained = tmp_path / "trained"
    for i, name in enumerate(CLASSES):
        (trained / name).mkdir(parents=True)
        drawn_photo(i).save(trained / name / "seen.jpg", quality=95)
    splits = {"train": [trained / name / "seen.jpg" for name in CLASSES]}
    (bundle / SEEN_NAME).write_bytes(seen_photos_json(splits))
    photos = tmp_path / "photos"
    for i, name in enumerate(CLASSES):
        (photos / name).mkdir(parents=True)
        drawn_photo(10 + i).save(photos / name / "new.jpg")
    # The web's copy of a training photo: smaller, saved again at another quality.
    copy = drawn_photo(0).resize((100, 100), Image.Resampling.LANCZOS)
    copy.save(photos / CLASSES[0] / "copy.jpg", quality=70)
    notes: list[str] = []
    result = evaluate(bundle, photos, out_dir=tmp_path / "eval", warn=notes.append)
    assert sorted(p.name for p in result.paths) == ["new.jpg"] * 3
    assert result.metrics["seen_left_out"] == {"train": 1} and result.metrics["seen_near_copies"] == 1
    copy = str(photos.resolve() / CLASSES[0] / "copy.jpg")
    assert result.metrics["seen_photos_left_out"] == [{"path": copy, "split": "train", "near_copy": True}]
    assert notes == [
        f"1 of the 4 photos under {photos.resolve()} is one the model was trained or validated on "
        "(1 training photo, a resized or re-saved copy): left out, so the score is on photos it has not "
        "seen (--keep-seen scores it too)"
    ]
    page = html.unescape(write_report(tmp_path / "eval").read_text(encoding="utf-8"))
    assert "found by content: 1 training photo, a resized or re-saved copy; the score is on the 3" in page
    assert f"<li>{copy} (a copy of a training photo)</li>" in page  # a resized copy is named


def test_a_seen_file_of_the_first_format_still_finds_byte_copies(
    seen_bundle: tuple[Path, Path], tmp_path: Path
) -> None:
    bundle, tree = seen_bundle
    current = json.loads((bundle / SEEN_NAME).read_text())
    first = {"format": "sportsdet-seen/1", "digest": current["digest"], "splits": current["splits"]}
    (bundle / SEEN_NAME).write_text(json.dumps(first))
    seen = load_seen(bundle)
    assert seen.counts() == {"train": 6, "valid": 3} and seen.near is None
    assert evaluate(bundle, tree, out_dir=tmp_path / "eval").metrics["n"] == 3
