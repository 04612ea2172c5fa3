"""Training on several sources at once: label maps, per-source splits, merges said out loud."""

from __future__ import annotations

import html
import json
import shlex
from pathlib import Path

import pytest
from conftest import make_image_tree

from sportsdet.data.sources import make_multi_split, read_dataset_file, scan_sources, sources_from_args
from sportsdet.data.splits import SplitManifest
from sportsdet.errors import SportsdetError
from sportsdet.report import write_report
from sportsdet.train import train

TINY = {"input_size": 32, "batch_size": 8, "epochs": 1}


@pytest.fixture
def two_sources(tmp_path: Path) -> tuple[Path, Path]:
    # A split tree (keeps its own split) and a folder per class (split seeded and stratified).
    official = make_image_tree(
        tmp_path / "first", ["air hockey", "polo"], splits={"train": 6, "valid": 2, "test": 2}
    )
    # Another size: make_image_tree draws the same pictures for the same seeds, and two sources
    # that share every photo are not what these tests are about.
    flat = make_image_tree(tmp_path / "second", ["football", "rowing"], per_class=10, size=44)
    return official, flat


def test_two_sources_train_into_one_model_with_a_label_map(two_sources, tmp_path: Path) -> None:
    official, flat = two_sources
    run = tmp_path / "run"
    result = train([official, flat], out=run, model="seed-cnn", options=TINY, maps=["second:football=soccer"])
    manifest = SplitManifest.load(run / "split.json")
    assert manifest.classes == ["air hockey", "polo", "rowing", "soccer"]  # football renamed
    assert set(manifest.sources) == {"first", "second"}
    assert manifest.sources["first"]["strategy"] == "official"
    assert manifest.sources["second"]["strategy"] == "random:0.2"
    assert manifest.sources["second"]["map"] == {"football": "soccer"}
    # Every entry knows its source; the official source kept its own split exactly.
    for split, count in (("train", 12), ("valid", 4), ("test", 4)):
        firsts = [
            rel
            for (rel, _), src in zip(manifest.splits[split], manifest.sources_of(split), strict=True)
            if src == "first"
        ]
        assert len(firsts) == count and all(rel.startswith(f"first/{split}/") for rel in firsts)
    seconds = [
        label
        for (_, label), src in zip(manifest.splits["test"], manifest.sources_of("test"), strict=True)
        if src == "second"
    ]
    assert sorted(set(seconds)) == ["rowing", "soccer"]  # stratified: both classes in test
    # items(split, source) picks the same photos as the manifest's own source column.
    picked = manifest.items("test", "second")
    assert [manifest.classes[label] for _, label in picked] == seconds
    assert all(path.is_relative_to(manifest.root / "second") for path, _ in picked)
    assert len(manifest.items("test", "first")) == 4 and manifest.items("test", "nosuch") == []
    for path, _ in manifest.items("train"):
        assert path.is_file()

    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert set(metrics["per_source"]) == {"first", "second"}
    assert metrics["per_source"]["first"]["n"] == 4 and metrics["per_source"]["second"]["n"] == 4
    assert sum(row["n"] for row in metrics["per_source"].values()) == metrics["n"]
    assert result.evaluation.metrics["per_source"] == metrics["per_source"]
    assert "second: random:0.2" in json.loads((run / "config.json").read_text())["split"]
    # The data check its report suggests names classes as the run does: with the run's --map.
    folders = f"{shlex.quote(str(official))} {shlex.quote(str(flat))}"
    page = result.report.read_text(encoding="utf-8")
    assert html.escape(f"sportsdet data check {folders} --map second:football=soccer --report") in page


def test_a_dataset_file_says_the_same_as_the_command_line(two_sources, tmp_path: Path) -> None:
    official, flat = two_sources
    spec = tmp_path / "sports.toml"
    spec.write_text(
        f'[[source]]\nname = "one"\npath = "{official.name}"\n'
        f'[[source]]\nname = "two"\npath = "{flat.name}"\nsplit = "random:0.3"\n'
        'map = { football = "soccer" }\n'
    )
    sources = read_dataset_file(spec)
    assert [s.name for s in sources.sources] == ["one", "two"]
    assert sources.sources[1].path == flat and sources.sources[1].label_map == {"football": "soccer"}
    scans = scan_sources(sources)
    assert scans[1].scan.classes == ["rowing", "soccer"]
    as_json = tmp_path / "sports.json"
    as_json.write_text(
        json.dumps({"source": [{"path": official.name}, {"path": flat.name, "map": {"football": "soccer"}}]})
    )
    assert [s.name for s in sources_from_args([as_json]).sources] == ["first", "second"]


def test_a_dataset_files_official_split_on_a_flat_folder_says_to_fix_the_file(two_sources, tmp_path) -> None:
    official, flat = two_sources
    spec = tmp_path / "sports.toml"
    spec.write_text(
        f'[[source]]\npath = "{official.name}"\n[[source]]\npath = "{flat.name}"\nsplit = "official"\n'
    )
    with pytest.raises(SportsdetError) as caught:
        make_multi_split(scan_sources(read_dataset_file(spec)), None, 0)
    # It advised --split, which does not reach a split written in the file.
    message = str(caught.value)
    assert message.startswith(f"{spec}: source 'second'") and 'write split = "random:0.2"' in message
    assert "--split" not in message


def test_a_dataset_file_gives_two_folders_of_the_same_name_two_source_names(tmp_path: Path) -> None:
    for owner in ("kaggle", "scrape"):
        make_image_tree(tmp_path / owner / "data", ["polo", "rowing"], per_class=5)
    spec = tmp_path / "sports.toml"
    spec.write_text('[[source]]\npath = "kaggle/data"\n[[source]]\npath = "scrape/data"\n')
    # As on the command line: the parent folder joins the name (one name would merge two sources'
    # splits, scores and quarantine folders into one).
    assert [s.name for s in read_dataset_file(spec).sources] == ["kaggle/data", "scrape/data"]
    spec.write_text(
        '[[source]]\nname = "web"\npath = "kaggle/data"\n[[source]]\nname = "web"\npath = "scrape/data"\n'
    )
    with pytest.raises(SportsdetError, match=r"two sources are named 'web'; give each its own name"):
        read_dataset_file(spec)
    # An empty path was the dataset file's own folder, its sub-folders (kaggle, scrape) taken as classes.
    spec.write_text('[[source]]\npath = ""\n[[source]]\npath = "scrape/data"\n')
    with pytest.raises(SportsdetError, match=r"sports.toml: source #1 needs a path \(a folder of photos\)"):
        read_dataset_file(spec)
    # A misspelt key is named, not taken for a missing path.
    spec.write_text('[[source]]\npath = "kaggle/data"\n[[source]]\npth = "scrape/data"\n')
    with pytest.raises(SportsdetError, match=r"source #2 has unknown key\(s\) pth; known: name, path"):
        read_dataset_file(spec)
    # A map to a name no class folder can have, as on the command line.
    spec.write_text('[[source]]\npath = "kaggle/data"\nmap = { polo = "a/b" }\n')
    with pytest.raises(SportsdetError, match=r"sports.toml: source #1: map: 'a/b' cannot name a class"):
        read_dataset_file(spec)
    # A relative path that is not there said "ds/kaggle: no such folder", naming neither the file
    # nor that it counts from the file's folder (not the current one); a missing file, "no such folder".
    spec.write_text('[[source]]\npath = "kaggle/data"\n[[source]]\npath = "scrape/photos"\n')
    with pytest.raises(SportsdetError, match=(
        rf"sports.toml: source #2: path 'scrape/photos' is {tmp_path}/scrape/photos: no such folder "
        r"\(a relative path counts from the dataset file's folder\)"
    )):  # fmt: skip
        read_dataset_file(spec)
    from sportsdet.data.discover import scan_dataset

    with pytest.raises(SportsdetError, match=r"missing.toml: no such dataset file"):
        scan_dataset(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("maps", "merge", "message"),
    [
        (["second:footbal=soccer"], [], r"names class\(es\) 'footbal' that source 'second'"),
        (["nowhere:football=soccer"], [], r"no source named 'nowhere'"),
        (["football"], [], r"write SOURCE:OLD=NEW"),
        # Names no class folder can have (evaluate could never score them), and a second '=':
        (["second:football=../../etc"], [], r"'../../etc' cannot name a class \(no folder can"),
        (["second:football=.."], [], r"'\.\.' cannot name a class"),
        (["second:football=rowing=tennis"], [], r"one = only: SOURCE:OLD=NEW"),
        (["cricket=soccer"], [], r"--map: no source has a class 'cricket'; sources: first, second"),
        # A merge of a name no two sources share merges nothing: a typo passed without a word.
        ([], ["rowing"], r"--merge 'rowing': no two sources have a class of that name.*: none$"),
        (["second:football=polo"], ["pollo"], r"--merge 'pollo': .*more than one source: polo$"),
    ],
)
def test_bad_label_maps_and_silent_merges_are_one_clear_error(two_sources, maps, merge, message) -> None:
    with pytest.raises(SportsdetError, match=message):
        scan_sources(sources_from_args(list(two_sources), maps, merge))


def test_a_map_without_a_source_renames_the_class_where_a_source_has_it(two_sources) -> None:
    # `--map football=soccer` is for every source that has a football folder, not an error for
    # the ones that have none; what each source was mapped with is recorded.
    scans = scan_sources(sources_from_args(list(two_sources), ["football=soccer"], []))
    assert [item.scan.classes for item in scans] == [["air hockey", "polo"], ["rowing", "soccer"]]
    assert [item.source.label_map for item in scans] == [{}, {"football": "soccer"}]


def test_data_split_of_several_sources_draws_with_the_seed_given(two_sources, tmp_path, run_cli) -> None:
    official, flat = two_sources
    drawn = {}
    for seed in (3, 4):
        saved = tmp_path / f"split{seed}.json"
        args = ["data", "split", str(official), str(flat), "--seed", str(seed), "--out", str(saved)]
        assert run_cli(*args) == 0
        drawn[seed] = SplitManifest.load(saved)
        assert drawn[seed].seed == seed
    assert drawn[3].splits != drawn[4].splits  # the flat source is drawn again


def test_the_nearest_map_wins_a_source_map_over_a_shared_one_the_command_line_over_the_file(
    two_sources, tmp_path: Path
) -> None:
    maps = ["football=soccer", "second:football=gridiron"]
    scans = scan_sources(sources_from_args(list(two_sources), maps, []))
    assert scans[1].scan.classes == ["gridiron", "rowing"]
    official, flat = two_sources
    spec = tmp_path / "sports.json"
    in_file = [{"path": official.name}, {"path": flat.name, "map": {"football": "soccer"}}]
    spec.write_text(json.dumps({"source": in_file}))
    scans = scan_sources(sources_from_args([spec], ["second:football=gridiron"], []))
    assert scans[1].scan.classes == ["gridiron", "rowing"]


def test_a_folder_given_twice_or_inside_another_is_refused(two_sources, tmp_path: Path, run_cli, capsys):
    # Accepted before: every photo counted twice, and `data check --quarantine` moved every
    # photo out of the dataset as a copy of itself.
    official, flat = two_sources
    for data in ([flat, flat], [flat, flat / ".." / flat.name], [tmp_path, flat]):
        assert run_cli("data", "check", *map(str, data), "--quarantine", str(tmp_path / "q")) == 2
        err = capsys.readouterr().err
        # (not the quarantine folder's own "is inside": tmp_path/q is inside tmp_path too)
        assert "given twice" in err or "its photos would count twice" in " ".join(err.split()), err
    assert not (tmp_path / "q").exists() and len(list(flat.rglob("*.jpg"))) == 20
    spec = tmp_path / "twice.toml"
    spec.write_text('[[source]]\nname = "a"\npath = "second"\n'
                    '[[source]]\nname = "b"\npath = "second/rowing/.."\n')  # fmt: skip
    with pytest.raises(SportsdetError, match="the same folder is given twice"):
        read_dataset_file(spec)


def test_a_dataset_file_source_is_named_after_its_real_folder_and_its_split_is_checked(tmp_path: Path):
    make_image_tree(tmp_path / "photos", ["polo", "rowing"], per_class=3)
    (tmp_path / "photos" / "cfg").mkdir()
    spec = tmp_path / "photos" / "cfg" / "sports.toml"
    spec.write_text('[[source]]\npath = ".."\n')
    # Named '..' before, so `data check --quarantine DIR` moved files to DIR's parent.
    assert [s.name for s in read_dataset_file(spec).sources] == ["photos"]
    spec.write_text('[[source]]\nname = "../up"\npath = ".."\n')
    with pytest.raises(SportsdetError, match=r"source #1: '../up' cannot name a source"):
        read_dataset_file(spec)
    spec.write_text('[[source]]\npath = ".."\nsplit = "bogus"\n')
    with pytest.raises(SportsdetError, match=r"sports.toml: source #1: --split 'bogus': unknown strategy"):
        read_dataset_file(spec)


@pytest.mark.parametrize("classes", ["", " , "])
def test_no_class_names_for_several_sources_says_so(two_sources, classes: str) -> None:
    # It said "the sources leave no training images" (one source said the right thing already).
    with pytest.raises(SportsdetError, match="^--classes: no class names given"):
        make_multi_split(scan_sources(sources_from_args(list(two_sources))), None, 0, classes)


def test_a_name_two_sources_share_merges_only_when_said_or_mapped_into(two_sources) -> None:
    # A label map into a name another source has says they are one sport: the issue's own example
    # (football -> soccer, for a source whose football is soccer) was refused until --merge said it too.
    official, flat = two_sources
    scans = scan_sources(sources_from_args(list(two_sources), ["second:football=polo"], []))
    assert [item.scan.classes for item in scans] == [["air hockey", "polo"], ["polo", "rowing"]]
    # Two folders of the same name, by themselves, are no such word: refused, the folder named.
    (flat / "football").rename(flat / "polo")
    said = r"'polo' \(first, second\).*--merge 'polo'.*--map second:polo=NEW"
    with pytest.raises(SportsdetError, match=said):
        scan_sources(sources_from_args(list(two_sources)))
    # A rename of a third class does not confirm this one.
    with pytest.raises(SportsdetError, match=r"would be merged: 'polo' \(first, second\)"):
        scan_sources(sources_from_args(list(two_sources), ["second:rowing=rowing boats"], []))
    # A third source's map into 'polo' speaks for its own folder, not for the first two's.
    make_image_tree(flat.parent / "third", ["horse polo"], per_class=3, size=40)
    with pytest.raises(SportsdetError, match=r"would be merged: 'polo' \(first, second, third\)"):
        scan_sources(sources_from_args([*two_sources, flat.parent / "third"], ["third:horse polo=polo"], []))


def test_a_merge_said_out_loud_is_allowed(two_sources) -> None:
    sources = sources_from_args(list(two_sources), ["second:football=polo"], ["polo"])
    scans = scan_sources(sources)
    assert scans[1].scan.classes == ["polo", "rowing"]
    assert scan_sources(sources_from_args(list(two_sources), ["second:football=polo"], ["all"]))


def test_cli_trains_on_two_folders_and_evaluates_without_data(two_sources, tmp_path, run_cli, capsys) -> None:
    official, flat = two_sources
    run = tmp_path / "cli-run"
    args = ["train", str(official), str(flat), "--out", str(run), "--model", "seed-cnn", "--epochs", "1",
            "--set", "input_size=32", "--map", "second:football=polo", "--no-eval"]  # fmt: skip
    assert run_cli(*args) == 0  # the map says second's football is first's polo
    capsys.readouterr()
    assert run_cli("evaluate", str(run)) == 0  # no DATA: the run's own test split, every source
    out = capsys.readouterr().out
    assert "per source" in out and "first" in out and "second" in out
    whole = json.loads((run / "eval" / "metrics.json").read_text())
    # One source given: its part of the saved split, through its label map. As a folder of its own
    # its 'football' was "not among the model's labels; rename or remove them".
    assert run_cli("evaluate", str(run), str(flat)) == 0
    captured = capsys.readouterr()
    assert "source 'second' of this model's training data" in captured.out + captured.err
    part = json.loads((run / "eval-second" / "metrics.json").read_text())
    assert part["n"] == whole["per_source"]["second"]["n"] and part["data"] == str(flat.resolve())
    assert set(part["per_class"]) >= {"polo", "rowing"} and part["per_class"]["polo"]["support"] > 0
    # ... written beside the run's own evaluation, not over it.
    assert json.loads((run / "eval" / "metrics.json").read_text()) == whole
    # Other photos in folders named as that source names them: its 'football' is the model's 'polo'
    # (the map is kept as a label alias), not "not among the model's labels".
    assert json.loads((run / "model" / "bundle.json").read_text())["label_aliases"] == {"football": "polo"}
    make_image_tree(tmp_path / "more", ["football", "rowing"], per_class=3, size=52)
    assert run_cli("evaluate", str(run), str(tmp_path / "more")) == 0, capsys.readouterr().err
    more = json.loads((run / "eval-more" / "metrics.json").read_text())
    assert more["n"] == 6 and more["per_class"]["polo"]["support"] == 3


def test_scan_and_check_take_the_same_sources_and_draw_a_preview(two_sources, tmp_path, run_cli, capsys):
    from PIL import Image

    official, flat = two_sources
    sheet = tmp_path / "preview.png"
    assert run_cli("data", "scan", str(official), str(flat), "--preview", str(sheet)) == 0
    out = capsys.readouterr().out
    assert "source first" in out and "source second" in out and "all sources: 4 classes" in out
    width, height = Image.open(sheet).size
    assert height > 4 * 72 and width > 2 * 4 * 72  # a row per class, a block of photos per source
    report = tmp_path / "check.json"
    assert run_cli("data", "check", str(official), str(flat), "--report", str(report)) == 0
    assert set(json.loads(report.read_text())["sources"]) == {"first", "second"}
    assert run_cli("data", "scan", str(official), "--map", "first:nope=x") == 2
    assert "'nope'" in capsys.readouterr().err
    # check takes train's --map and --merge (a train command's sources, checked as they are used);
    # its report names each photo's class through the map. It refused them as unknown options.
    options = ["--map", "second:football=polo", "--merge", "polo", "--report", str(report)]
    assert run_cli("data", "check", str(official), str(flat), *options) == 0
    labels = {row["label"] for row in json.loads(report.read_text())["sources"]["second"]["files"]}
    assert labels == {"polo", "rowing"}
    assert run_cli("data", "check", str(official), str(flat), "--map", "second:nope=x") == 2
    assert "'nope'" in capsys.readouterr().err
    assert run_cli("data", "check", str(official), str(flat), "--merge", "pollo") == 2  # as train says it
    assert "--merge 'pollo'" in capsys.readouterr().err
    # One folder of plain photos with a --map: what --map needs, not "several folders are checked".
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (40, 40), (200, 30, 30)).save(photos / "a.jpg")
    assert run_cli("data", "check", str(photos), "--map", "a=b") == 2
    err = capsys.readouterr().err
    assert "--map renames class folders" in err and "several folders" not in err


def test_the_report_shows_per_source_accuracy_and_the_sample_sheet(two_sources, tmp_path: Path) -> None:
    official, flat = two_sources
    result = train([official, flat], out=tmp_path / "run", model="seed-cnn", options=TINY)
    page = result.report.read_text()
    assert 'id="per-source-table"' in page and ">first<" in page and ">second<" in page
    assert 'alt="sample training photos per class and source"' in page
    # The Data section names each source's folder, and the data check to run names them too.
    assert f"<tr><th>source first</th><td>{official}</td></tr>" in page
    check = tmp_path / "run" / "data_check.json"
    folders = f"{shlex.quote(str(official))} {shlex.quote(str(flat))}"
    assert html.escape(f"sportsdet data check {folders} --report {shlex.quote(str(check))}") in page
    # What the test score was measured on: each source's test photos, not their common parent folder.
    assert f"<td>the test split of first ({official}), second ({flat})</td>" in page


def test_advice_to_run_data_check_names_every_source_folder_not_their_parent(two_sources, tmp_path) -> None:
    import shutil

    official, flat = two_sources
    shutil.copy(official / "train" / "polo" / "000.jpg", official / "test" / "polo" / "copy.jpg")
    run = tmp_path / "run"
    train([official, flat], out=run, model="seed-cnn", options=TINY, evaluate=False, report=False)
    warnings = json.loads((run / "data_summary.json").read_text())["warnings"]
    leak = next(w for w in warnings if "more than one split" in w)
    # The common parent (tmp_path) is no dataset: `data check` there would take 'first' and 'second'
    # for classes.
    folders = f"{shlex.quote(str(official))} {shlex.quote(str(flat))}"
    assert f"`sportsdet data check {folders} --quarantine DIR`" in leak

    for photo in (flat / "rowing").glob("*.jpg"):  # JPEGs cut short: found by the scan, fail to decode
        photo.write_bytes(photo.read_bytes()[:300])
    with pytest.raises(SportsdetError) as caught:
        train([official, flat], out=tmp_path / "run2", model="seed-cnn", options=TINY, evaluate=False)
    message = str(caught.value)
    assert message.startswith(str(flat / "rowing"))
    assert f"`sportsdet data check {shlex.quote(str(flat))} --quarantine DIR`" in message


def test_resume_of_a_run_whose_sources_moved_names_a_dataset_file(two_sources, tmp_path) -> None:
    # The advice was `train NEW_PLACE --split ...`, which a split of several sources refuses.
    import shutil

    official, flat = two_sources
    run = tmp_path / "run"
    train([official, flat], out=run, model="seed-cnn", options={**TINY, "epochs": 1}, evaluate=False,
          report=False)  # fmt: skip
    shutil.move(official, tmp_path / "moved-first")
    shutil.move(flat, tmp_path / "moved-second")
    said = r"moved\? `sportsdet train DATASET_FILE --split .* \(a dataset file of the same source names"
    with pytest.raises(SportsdetError, match=said):
        train(None, out=run, resume=True, options={"epochs": 2}, evaluate=False, report=False)


def test_a_copy_within_one_source_is_that_sources_not_one_across_sources(two_sources, tmp_path, run_cli):
    import shutil

    official, flat = two_sources
    first_photo = min((flat / "rowing").iterdir())
    shutil.copy(first_photo, flat / "rowing" / "again.jpg")
    report = tmp_path / "check.json"
    assert run_cli("data", "check", str(official), str(flat), "--report", str(report)) == 0
    check = json.loads(report.read_text())
    assert check["sources"]["second"]["duplicate_groups"] == 1
    assert check["across_sources"]["duplicates"] == []


def test_check_finds_a_photo_two_sources_share_and_moves_one_copy(two_sources, tmp_path, run_cli, capsys):
    import shutil

    from sportsdet.report.html import _check_report

    official, flat = two_sources
    report = tmp_path / "check.json"
    assert run_cli("data", "check", str(official), str(flat), "--report", str(report), "--strict") == 0
    assert "no photo is in more than one source" in capsys.readouterr().out
    assert json.loads(report.read_text())["across_sources"]["duplicates"] == []

    # A test photo of one source copied into the other (as web scrapes do): each source alone is clean.
    shutil.copy(official / "test" / "polo" / "000.jpg", flat / "rowing" / "scraped.jpg")
    assert run_cli("data", "check", str(official), str(flat), "--report", str(report), "--strict") == 1
    out = capsys.readouterr().out
    assert "1 photo(s) are in more than one source" in out
    assert "files (the first is the copy kept)" in out  # numbered groups, as within one source
    check = json.loads(report.read_text())
    assert all(part["duplicate_groups"] == 0 for part in check["sources"].values())
    [group] = check["across_sources"]["duplicates"]
    assert group["files"] == ["first/test/polo/000.jpg", "second/rowing/scraped.jpg"]
    assert group["sources"] == ["first", "second"] and group["labels"] == ["polo", "rowing"]
    page = _check_report(check)  # the report's Data section: each source, then what they share
    assert "<h4>first</h4>" in page and "<h4>second</h4>" in page
    assert "1 photo(s) are in more than one source" in page and "second/rowing/scraped.jpg [rowing]" in page

    # --quarantine keeps the test copy and moves the other, under the source's name.
    moved_to = tmp_path / "moved"
    assert run_cli("data", "check", str(official), str(flat), "--quarantine", str(moved_to)) == 0
    assert (official / "test" / "polo" / "000.jpg").is_file()
    assert not (flat / "rowing" / "scraped.jpg").exists()
    assert (moved_to / "second" / "rowing" / "scraped.jpg").is_file()
    assert run_cli("data", "check", str(official), str(flat), "--strict") == 0

    # The same photo, smaller and saved again, in the other source: a near copy, found by sight.
    from test_near_copies import drawn_photo

    drawn_photo(1).save(official / "test" / "polo" / "drawn.jpg", quality=95)
    drawn_photo(1).resize((90, 90)).save(flat / "rowing" / "smaller.jpg", quality=70)
    assert run_cli("data", "check", str(official), str(flat), "--report", str(report), "--strict") == 1
    assert "near: resized or re-saved" in capsys.readouterr().out
    [group] = json.loads(report.read_text())["across_sources"]["duplicates"]
    assert group["files"] == ["first/test/polo/drawn.jpg", "second/rowing/smaller.jpg"] and group["near"]
    assert run_cli("data", "check", str(official), str(flat), "--quarantine", str(moved_to)) == 0
    assert (moved_to / "second" / "rowing" / "smaller.jpg").is_file()


def test_copies_in_a_drawn_source_join_the_official_split_of_their_photo(two_sources, tmp_path, run_cli):
    # The first source's own split is kept as it is; a copy of one of its photos in the second
    # source (split at random) goes where that photo is: a copy of a test photo is never trained on.
    from test_near_copies import drawn_photo

    official, flat = two_sources
    placed = {seed: ("test" if seed < 3 else "train") for seed in range(8)}
    for seed, split in placed.items():
        drawn_photo(seed).save(official / split / "polo" / f"drawn{seed}.jpg", quality=95)
        drawn_photo(seed).resize((120, 120)).save(flat / "rowing" / f"copy{seed}.jpg", quality=80)
    saved = tmp_path / "split.json"
    assert run_cli("data", "split", str(official), str(flat), "--out", str(saved)) == 0
    manifest = SplitManifest.load(saved)
    where = {rel: split for split, rels in manifest.splits.items() for rel, _ in rels}
    for seed, split in placed.items():
        assert where[f"first/{split}/polo/drawn{seed}.jpg"] == split  # the official split: unchanged
        assert where[f"second/rowing/copy{seed}.jpg"] == split, seed
    assert any("moved into the split of their copies" in note for note in manifest.notes)
    # Training draws the same split (and so says nothing about copies across splits).
    run = tmp_path / "run"
    tiny = ["--model", "seed-cnn", "--epochs", "1", "--set", "input_size=32", "--no-eval"]
    assert run_cli("train", str(official), str(flat), "--out", str(run), *tiny) == 0
    assert SplitManifest.load(run / "split.json").splits == manifest.splits
    warnings = json.loads((run / "data_summary.json").read_text())["warnings"]
    assert not [w for w in warnings if "more than one split" in w]
    # The report's Data section says how the split was made, the moves included.
    assert "How the split was made" in (run / "report.html").read_text()
    assert "photo(s) moved into the split of their copies" in (run / "report.html").read_text()


def test_an_official_photo_never_moves_even_for_a_class_s_last_training_photo(two_sources) -> None:
    # A drawn class of two photos, one a copy of the other source's test photo: when the draw puts
    # the copy in train, it is that class's only training photo, so it stays, and so does the test
    # photo of the official split (training warns about the pair instead).
    from test_near_copies import drawn_photo

    from sportsdet.data.sources import make_multi_split
    from sportsdet.data.splits import keep_copies_together

    official, flat = two_sources
    drawn_photo(1).save(official / "test" / "polo" / "drawn.jpg", quality=95)
    (flat / "kayak").mkdir()
    drawn_photo(1).resize((120, 120)).save(flat / "kayak" / "copy.jpg", quality=80)
    drawn_photo(2).save(flat / "kayak" / "other.jpg", quality=90)
    scans = scan_sources(sources_from_args([official, flat], [], []))
    kept_apart = 0
    for seed in range(6):
        manifest = keep_copies_together(make_multi_split(scans, None, seed))
        where = {rel: split for split, rels in manifest.splits.items() for rel, _ in rels}
        assert where["first/test/polo/drawn.jpg"] == "test", seed
        assert manifest.counts["train"]["kayak"] == 1, seed
        kept_apart += where["second/kayak/copy.jpg"] == "train"
    assert kept_apart  # some seed drew the copy into train: the case this is about


def test_train_reuses_a_saved_split_after_photos_are_added(two_sources, tmp_path, run_cli, capsys) -> None:
    official, flat = two_sources
    saved = tmp_path / "split.json"
    data = [str(official), str(flat), "--map", "second:football=soccer"]
    assert run_cli("data", "split", *data, "--out", str(saved)) == 0
    # New photos arrive in the folder-per-class source: a fresh random split would move photos
    # between train and test; the saved one keeps every photo where it was and leaves the new out.
    make_image_tree(tmp_path / "more", ["rowing"], per_class=3, size=48)
    for i, photo in enumerate(sorted((tmp_path / "more" / "rowing").iterdir())):
        photo.rename(flat / "rowing" / f"new{i}.jpg")
    capsys.readouterr()
    run = tmp_path / "run"
    tiny = ["--model", "seed-cnn", "--epochs", "1", "--set", "input_size=32", "--no-eval"]
    assert run_cli("train", *data, "--split", str(saved), "--out", str(run), *tiny) == 0
    err = capsys.readouterr().err
    assert "3 photo(s) in DATA are not in the saved split (e.g. second/rowing/new0.jpg)" in err
    before, after = SplitManifest.load(saved), SplitManifest.load(run / "split.json")
    assert after.splits == before.splits and after.item_sources == before.item_sources
    assert after.sources["second"]["strategy"] == "random:0.2" and after.sources["second"]["map"]
    # `info` on the run names its sources from the run's data scan.
    assert run_cli("info", str(run)) == 0
    sources_row = next(line for line in capsys.readouterr().out.splitlines() if "│ sources" in line)
    assert f"{official.name} (" in sources_row and "second (" in sources_row, sources_row
    assert "classes)" in sources_row and "[" not in sources_row
    # The same split without the label map it was made with: one clear error, no run folder.
    unmapped = tmp_path / "r2"
    assert run_cli("train", str(official), str(flat), "--split", str(saved), "-o", str(unmapped), *tiny) == 2
    err = capsys.readouterr().err
    assert "have another class in DATA than in the saved split" in err
    assert "'soccer' there, 'football' here" in err
    assert "Traceback" not in err and not unmapped.exists()


def test_error_text_keeps_colons_as_typed(two_sources, run_cli, capsys) -> None:
    # rich turned ':soccer:' in an error line into a football emoji.
    assert run_cli("data", "scan", *map(str, two_sources), "--map", "nowhere:soccer:x=y") == 2
    assert "--map 'nowhere:soccer:x=y': no source named 'nowhere'" in capsys.readouterr().err


def _trained_and_evaluated_through(spec: Path, train_on: Path, tmp_path: Path, run_cli) -> Path:
    """A tiny seed-cnn run trained on `train_on`, then `evaluate RUN SPEC`, which must score the
    run's own split; returns the run."""
    run = tmp_path / "run"
    tiny = ["--model", "seed-cnn", "--epochs", "1", "--set", "input_size=32", "--no-eval"]
    assert run_cli("train", str(train_on), "--out", str(run), *tiny) == 0
    assert run_cli("evaluate", str(run), str(spec), "--out", str(tmp_path / "ev")) == 0
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["source"] == "split-manifest"
    return run


def test_evaluate_takes_the_run_s_dataset_file_and_refuses_another(two_sources, tmp_path, run_cli, capsys):
    # Any .toml/.json given to evaluate was taken for the run's own: another dataset file's photos
    # were silently not scored (the run's test split was, instead).
    official, flat = two_sources
    spec = tmp_path / "sports.toml"
    spec.write_text(f'[[source]]\npath = "{official.name}"\n[[source]]\npath = "{flat.name}"\n')
    run = _trained_and_evaluated_through(spec, spec, tmp_path, run_cli)
    # The data check its report suggests names the dataset file (the sources' names and maps with
    # it), not its folders: given those, a source's map was lost.
    assert {info["file"] for info in SplitManifest.load(run / "split.json").sources.values()} == {
        str(spec.resolve())
    }
    page = write_report(run).read_text(encoding="utf-8")
    assert html.escape(f"sportsdet data check {shlex.quote(str(spec.resolve()))} --report") in page
    other = tmp_path / "other.toml"
    other.write_text(f'[[source]]\npath = "{flat.name}"\n')
    capsys.readouterr()
    assert run_cli("evaluate", str(run), str(other), "--out", str(tmp_path / "ev2")) == 2
    assert "not the sources this model was trained on" in capsys.readouterr().err
    assert not (tmp_path / "ev2" / "metrics.json").exists()


def test_a_saved_split_follows_sources_that_moved(two_sources, tmp_path, run_cli, capsys) -> None:
    # Paths are kept relative to the folder holding every source: one source moved (or all of
    # them, elsewhere) had its photos "gone from DATA" and the run trained without them.
    import shutil

    from sportsdet.data.sources import reuse_multi_split

    official, flat = two_sources
    saved = tmp_path / "split.json"
    assert run_cli("data", "split", str(official), str(flat), "--out", str(saved)) == 0
    before = SplitManifest.load(saved)
    moved = Path(shutil.move(str(flat), str(tmp_path / "deep" / "second")))
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(official, elsewhere / "a" / "first")
    shutil.copytree(moved, elsewhere / "b" / "second")
    for data in ([official, moved], [elsewhere / "a" / "first", elsewhere / "b" / "second"]):
        scans = scan_sources(sources_from_args(data, [], []))
        again = reuse_multi_split(scans, saved)
        assert not [n for n in again.notes if "gone" in n or "not in the saved split" in n], again.notes
        for split in ("train", "valid", "test"):
            assert sorted(Path(rel).name for rel, _ in again.splits[split]) == sorted(
                Path(rel).name for rel, _ in before.splits[split]
            )
            assert sorted(again.item_sources[split]) == sorted(before.item_sources[split])
            assert all((again.root / rel).is_file() for rel, _ in again.splits[split])


def test_classes_of_one_source_only_make_a_split_that_is_reused_and_warned_about_alone(
    two_sources, tmp_path, run_cli, capsys
):
    # --classes from the second source only: the first is left out of the split but still listed,
    # so the same DATA reuses the saved split (it was refused: 'the saved split is of the sources
    # second'); and nothing is said about the first source's classes.
    official, flat = two_sources
    (official / "train" / "polo" / "000.jpg").unlink()  # uneven polo: no warning about it here
    saved = tmp_path / "split.json"
    data = [str(official), str(flat), "--classes", "football,rowing"]
    assert run_cli("data", "split", *data, "--out", str(saved)) == 0
    manifest = SplitManifest.load(saved)
    assert manifest.sources["first"]["classes"] == [] and manifest.classes == ["football", "rowing"]
    run = tmp_path / "run"
    tiny = ["--model", "seed-cnn", "--epochs", "1", "--set", "input_size=32", "--no-eval"]
    capsys.readouterr()
    assert run_cli("train", *data, "--split", str(saved), "--out", str(run), *tiny) == 0
    assert SplitManifest.load(run / "split.json").splits == manifest.splits
    summary = json.loads((run / "data_summary.json").read_text())
    assert set(summary["classes"]) == {"football", "rowing"}
    assert not [w for w in summary["warnings"] if "polo" in w or "air hockey" in w]
    # A class both sources name, not chosen, is no reason to refuse the run any more.
    (flat / "polo").mkdir()
    (flat / "rowing" / "000.jpg").rename(flat / "polo" / "000.jpg")
    assert run_cli("data", "split", str(official), str(flat), "--classes", "football,rowing") == 0
    assert run_cli("data", "split", str(official), str(flat)) == 2  # chosen (all): refused, as before
    assert "would be merged" in capsys.readouterr().err


def test_a_saved_split_names_classes_added_since_and_a_damaged_sources_table(
    two_sources, tmp_path, run_cli, capsys
):
    official, flat = two_sources
    saved = tmp_path / "split.json"
    assert run_cli("data", "split", str(official), str(flat), "--out", str(saved)) == 0
    make_image_tree(tmp_path / "more", ["kayak"], per_class=3, size=48)
    (tmp_path / "more" / "kayak").rename(flat / "kayak")
    run = tmp_path / "run"
    tiny = ["--model", "seed-cnn", "--epochs", "1", "--set", "input_size=32", "--no-eval"]
    capsys.readouterr()
    assert run_cli("train", str(official), str(flat), "--split", str(saved), "--out", str(run), *tiny) == 0
    err = capsys.readouterr().err
    assert "class(es) kayak in DATA are not in the saved split; left out" in err
    assert "'kayak' has 3" not in err  # no imbalance warning about a class the run leaves out
    damaged = json.loads(saved.read_text())
    damaged["sources"] = {name: "a folder" for name in damaged["sources"]}
    saved.write_text(json.dumps(damaged))
    again = ["train", str(official), str(flat), "--split", str(saved), "--out", str(run / "x"), *tiny]
    assert run_cli(*again) == 2
    err = capsys.readouterr().err
    assert "each entry of 'sources' must be a table" in err and "Traceback" not in err


def test_one_folder_with_a_map_is_named_by_its_folder(two_sources, tmp_path) -> None:
    # It was "the command line", in config.json and in errors ("the command line: training needs...").
    _, flat = two_sources
    run = tmp_path / "run"
    train([flat], out=run, model="seed-cnn", options=TINY, maps=["football=soccer"], evaluate=False)
    assert json.loads((run / "config.json").read_text())["data"] == str(flat)


def test_a_class_saved_by_macos_is_the_same_class_and_case_twins_are_warned_about(tmp_path: Path) -> None:
    # 'pétanque' from a macOS zip (decomposed é) and from elsewhere were two classes that print
    # alike, and --merge/--map typed the usual way matched neither; Basketball vs basketball stayed
    # two classes without a word.
    import unicodedata

    decomposed = unicodedata.normalize("NFD", "pétanque")
    make_image_tree(tmp_path / "mac", [decomposed, "basketball"], per_class=3)
    make_image_tree(tmp_path / "web", ["pétanque", "Basketball"], per_class=3, size=44)
    scans = scan_sources(sources_from_args([tmp_path / "mac", tmp_path / "web"], [], ["pétanque"]))
    assert scans[0].scan.classes == ["basketball", "pétanque"]  # one form, as typed
    [warning] = [w for w in scans[1].scan.warnings if "differs only in case" in w]
    assert "'Basketball' differs only in case from 'basketball' (mac)" in warning
    assert "--map web:Basketball=basketball" in warning
    [mapped] = scan_sources(sources_from_args([tmp_path / "mac"], [f"{decomposed}=boules"], []))
    assert mapped.scan.classes == ["basketball", "boules"]  # a map typed from a macOS listing
    make_image_tree(tmp_path / "one", ["Rowing", "rowing"], per_class=3)
    from sportsdet.data.discover import scan_dataset

    assert any("differ only in case" in w for w in scan_dataset(tmp_path / "one").warnings)
    # A trailing space in one source's folder name: two classes printed alike, not even warned.
    make_image_tree(tmp_path / "spaced", ["rowing ", "golf"], per_class=3, size=40)
    make_image_tree(tmp_path / "plain", ["rowing", "polo"], per_class=3)
    scans = scan_sources(sources_from_args([tmp_path / "plain", tmp_path / "spaced"], [], []))
    [warning] = [w for w in scans[1].scan.warnings if "invisible" in w]
    assert "'rowing ' differs only in case, spaces, invisible characters or ligatures from 'rowing'" in (
        warning
    )
    # ... and the --map it suggests works, quoted for a shell: the trailing space was stripped from
    # OLD, so no map could name that folder ("names class(es) 'rowing' that source does not have").
    suggested = shlex.split(warning.split(" --map ")[1])[0]
    assert suggested == "spaced:rowing =rowing" and "--map 'spaced:rowing =rowing'" in warning
    scans = scan_sources(sources_from_args([tmp_path / "plain", tmp_path / "spaced"], [suggested], []))
    assert scans[1].scan.classes == ["golf", "rowing"]
    # The class list of an error shows such a name as it is.
    with pytest.raises(SportsdetError, match=r"its classes: 'golf', 'rowing '"):
        scan_sources(sources_from_args([tmp_path / "spaced"], ["spaced:swimming=x"], []))


def test_class_names_written_with_hyphens_underscores_or_no_space_are_warned_about(tmp_path: Path) -> None:
    # 'formula 1' and 'formula1', 'ice hockey' and 'ice-hockey': one sport, two classes, no word.
    make_image_tree(tmp_path / "a", ["formula 1", "ice hockey"], per_class=3)
    make_image_tree(tmp_path / "b", ["formula1", "ice-hockey", "ice_hockey"], per_class=3, size=40)
    scans = scan_sources(sources_from_args([tmp_path / "a", tmp_path / "b"], [], []))
    warned = [w for w in scans[1].scan.warnings if "differs only in spaces, hyphens or underscores" in w]
    assert len(warned) == 3 and any("--map 'b:formula1=formula 1'" in w for w in warned), warned
    from sportsdet.data.discover import scan_dataset

    [within] = [w for w in scan_dataset(tmp_path / "b").warnings if "class folders" in w]
    assert "'ice-hockey', 'ice_hockey' differ only in spaces, hyphens or underscores" in within
    # A difference that is more than separators is not called one.
    from sportsdet.data.discover import how_they_differ

    assert "invisible" in how_they_differ(["ice hockey", "ice\u200bhockey"])
    assert "ligatures" in how_they_differ(["\ufb01gure skating", "figure-skating"])


def test_a_source_whose_name_holds_a_colon_can_be_mapped(tmp_path: Path) -> None:
    # 'x:y:old=new' was cut at the first ':' ("no source named 'x'").
    make_image_tree(tmp_path / "2024:sports", ["football", "rowing"], per_class=3)
    [scan] = scan_sources(sources_from_args([tmp_path / "2024:sports"], ["2024:sports:football=soccer"], []))
    assert scan.scan.classes == ["rowing", "soccer"]


def test_preview_draws_accented_class_names_apart():
    # Pillow's default font drew every letter outside ASCII as the same box: "pétanque" and
    # "pëtanque" rows could not be told apart.
    from sportsdet.plots import contact_sheet_png

    sheets = [contact_sheet_png([(name, {"a": []})], ["a"]) for name in ("pétanque", "pëtanque", "pétanque")]
    assert sheets[0] != sheets[1] and sheets[0] == sheets[2]


def test_a_map_that_makes_two_folders_of_one_source_one_class_says_so(two_sources) -> None:
    # Across sources such a merge needs --merge; within one source it happened without a word.
    scans = scan_sources(sources_from_args(list(two_sources), ["second:rowing=football"], []))
    assert scans[1].scan.classes == ["football"]
    said = "the label map makes the folders 'football', 'rowing' one class, 'football'"
    assert scans[1].scan.warnings[0] == said
    # Also when --classes keeps that class (the warnings are made again for the subset).
    mapped = sources_from_args(list(two_sources), ["second:rowing=football"], [])
    scans = scan_sources(mapped, "football,polo")
    assert scans[1].scan.warnings[0] == said


def test_a_misnamed_copy_in_another_source_is_quarantined_after_its_rename(two_sources, tmp_path, run_cli):
    # --rename-misnamed ran source by source first: scraped.php became scraped.jpg, and the
    # quarantine across sources then skipped it without a word ("moved 0 file(s)").
    import shutil

    official, flat = two_sources
    shutil.copy(official / "test" / "polo" / "000.jpg", flat / "rowing" / "scraped.php")
    moved_to = tmp_path / "moved"
    args = ["data", "check", str(official), str(flat), "--quarantine", str(moved_to), "--rename-misnamed"]
    assert run_cli(*args) == 0
    assert not (flat / "rowing" / "scraped.php").exists() and not (flat / "rowing" / "scraped.jpg").exists()
    assert (moved_to / "second" / "rowing" / "scraped.jpg").is_file()
    assert run_cli("data", "check", str(official), str(flat), "--strict") == 0


def test_evaluate_a_one_source_run_with_its_own_dataset_file(two_sources, tmp_path, run_cli, capsys) -> None:
    # A one-source run records no sources: a dataset file naming exactly its folder was refused as
    # "not the sources this model was trained on"; the built-in model (no split at all) too.
    official, _ = two_sources
    spec = tmp_path / "one.toml"
    spec.write_text(f'[[source]]\npath = "{official}"\n')
    _trained_and_evaluated_through(spec, official, tmp_path, run_cli)
    capsys.readouterr()
    assert run_cli("evaluate", "builtin", str(spec), "--out", str(tmp_path / "ev2")) == 2
    err = capsys.readouterr().err
    assert "the bundle records no training data folder" in err and "not the sources" not in err
