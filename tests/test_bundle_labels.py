"""Renaming a bundle's labels after training: every engine names the classes anew, and the old
names still read class folders (evaluate)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import make_image_tree, make_tiny_bundle

from sportsdet.bundle import load_bundle
from sportsdet.bundle_labels import rename_labels
from sportsdet.errors import BundleError, SportsdetError


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sportsdet.export import export_bundle

    bundle = make_tiny_bundle(tmp_path_factory.mktemp("model") / "bundle")
    export_bundle(bundle, int8=True, max_int8_drop=100.0)
    return bundle


@pytest.fixture
def bundle(exported: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(exported, tmp_path / "bundle"))


def test_every_engine_names_the_classes_anew_and_old_folder_names_still_evaluate(bundle, tmp_path) -> None:
    from sportsdet.evaluate import evaluate
    from sportsdet.runtime import load_backend

    weights = (bundle / "weights.safetensors").read_bytes()
    rename_labels(bundle, {"polo": "water polo"})
    renamed = load_bundle(bundle)  # the weights' checksum still holds
    assert renamed.labels == ["air hockey", "water polo", "rowing"]
    assert renamed.label_aliases == {"polo": "water polo"} and renamed.class_index()["polo"] == 1
    assert (bundle / "weights.safetensors").read_bytes() == weights
    for engine in (load_backend(bundle, "torch"), load_backend(bundle), load_backend(bundle, int8=True)):
        assert engine.labels == renamed.labels, engine.name  # not refused as a stale model.onnx either
    tree = make_image_tree(tmp_path / "photos", ["polo", "rowing"], per_class=2)
    result = evaluate(bundle, tree, out_dir=tmp_path / "eval")
    assert result.metrics["n"] == 4 and result.metrics["per_class"]["water polo"]["support"] == 2
    assert "polo" not in result.metrics["per_class"]
    from sportsdet.abstain_bundle import labelled_images
    from sportsdet.export import find_export_data

    heldout = find_export_data(renamed, calibration_data=tree, eval_data=tree).heldout
    assert sorted({label for _, label in heldout}) == ["rowing", "water polo"]  # INT8's accuracy check
    assert sorted(labelled_images(tree, renamed.class_index())[1].tolist()) == [1, 1, 2, 2]
    from sportsdet.abstain_bundle import fit_bundle_abstain

    assert fit_bundle_abstain(bundle, tree).valid_images == 4  # the abstain fit reads 'polo' too
    from typer.testing import CliRunner

    from sportsdet.cli import app

    shown = CliRunner().invoke(app, ["info", str(bundle)], env={"COLUMNS": "200"})
    said = r"renamed\s+│ polo -> water polo \(evaluate reads folders by either name\)"
    assert re.search(said, shown.stdout)
    # Renamed again: the first name follows to the newest one.
    rename_labels(bundle, {"water polo": "polo (horses)"})
    assert load_bundle(bundle).label_aliases == {"polo": "polo (horses)", "water polo": "polo (horses)"}
    # And back: a name that is a label again is no longer an alias of one.
    rename_labels(bundle, {"polo (horses)": "polo"})
    assert load_bundle(bundle).label_aliases == {"polo (horses)": "polo", "water polo": "polo"}


def test_a_rename_that_names_no_label_or_makes_two_classes_one_is_refused(bundle) -> None:
    before = (bundle / "bundle.json").read_bytes()
    with pytest.raises(SportsdetError, match=r"no label named 'curling' to rename"):
        rename_labels(bundle, {"curling": "stones"})
    with pytest.raises(SportsdetError, match=r"renaming would give two classes the name rowing"):
        rename_labels(bundle, {"polo": "rowing"})
    assert (bundle / "bundle.json").read_bytes() == before


def test_aliases_that_name_no_label_are_one_clear_error(bundle) -> None:
    manifest = json.loads((bundle / "bundle.json").read_text())
    for aliases in ({"polo": "rowing"}, {"water polo": "curling"}, ["polo"]):
        manifest["label_aliases"] = aliases
        (bundle / "bundle.json").write_text(json.dumps(manifest))
        with pytest.raises(BundleError, match="'label_aliases' must map other names"):
            load_bundle(bundle)


def test_the_builtin_model_names_sports_as_people_do_and_reads_sports100_folders(tmp_path, monkeypatch):
    # "football 13.1%" beside "soccer" (sports100's football is American football), and "canoe
    # slamon": the dataset's names, shipped as they were.
    from sportsdet.bundle import builtin_bundle_path
    from sportsdet.evaluate import evaluate

    builtin = load_bundle(builtin_bundle_path())
    assert {"american football", "soccer", "canoe slalom", "amputee football", "barrel racing"} <= set(
        builtin.labels
    )
    assert not {"football", "canoe slamon", "ampute football", "barell racing"} & set(builtin.labels)
    tree = make_image_tree(tmp_path / "sports100 test", ["football", "canoe slamon"], per_class=1)
    monkeypatch.chdir(tmp_path)
    result = evaluate("builtin", tree)
    assert result.metrics["n"] == 2
    assert {row for row, counts in result.metrics["per_class"].items() if counts["support"]} == {
        "american football", "canoe slalom"
    }
