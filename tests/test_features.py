"""The frozen-feature cache: right numbers, keyed by content, safe to interrupt, resumable."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_image
from PIL import Image

from sportsdet.errors import SportsdetError
from sportsdet.models import build_model, get_model_spec, stages
from sportsdet.preprocess import load_and_preprocess
from sportsdet.training import feature_cache as features

PRE = replace(get_model_spec("lite0").preprocessing, input_size=64)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("SPORTSDET_CACHE_DIR", str(folder))
    monkeypatch.setattr(features, "SHARD_SIZE", 2)  # several shards from a handful of photos
    return folder


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("lite0", num_classes=1, pretrained=True).eval()


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    paths = []
    for i, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40), (90, 90, 90)]):
        path = tmp_path / "photos" / f"{i}.jpg"
        path.parent.mkdir(exist_ok=True)
        make_image(colour, size=80, seed=i).save(path, quality=90)
        paths.append(path)
    return paths


def _extract(paths, model, **kw):
    return features.extract_features("lite0", paths, preprocessing=PRE, model=model, progress=False, **kw)


def test_features_match_the_torch_model(photos, model, cache) -> None:
    tap = stages.default_tap(model, 2)
    out = _extract(photos, model, tap=tap)
    batch = torch.from_numpy(np.stack([load_and_preprocess(p, PRE) for p in photos]))
    with torch.inference_mode():
        expected = model.forward_head(model.forward_features(batch), pre_logits=True).numpy()
        trunk = stages.trunk_stages(model)
        activation = torch.nn.Sequential(*trunk[:tap])(batch).numpy()
    assert out["pooled"].shape == (5, 1280) and out["pooled"].dtype == np.float32
    np.testing.assert_allclose(out["pooled"], expected, atol=1e-3, rtol=1e-3)
    np.testing.assert_allclose(out["tap"].astype(np.float32), activation, atol=2e-2, rtol=1e-2)
    assert cache in features.FeatureKey("lite0", PRE, "center", tap).folder().parents


def test_cache_is_keyed_by_content_and_reused(photos, model, cache, tmp_path, monkeypatch) -> None:
    first = _extract(photos, model)
    # A renamed copy is the same photo: nothing is computed again.
    copy = tmp_path / "renamed.jpg"
    shutil.copy(photos[0], copy)
    monkeypatch.setattr(features, "_session_for", lambda *a, **k: pytest.fail("recomputed a cached photo"))
    again = _extract([copy, *photos[1:]], model)
    np.testing.assert_array_equal(again["pooled"], first["pooled"])


def test_key_changes_with_preprocessing_and_view(model, cache) -> None:
    folders = {
        features.FeatureKey("lite0", PRE).folder(),
        features.FeatureKey("lite0", replace(PRE, resize="pad")).folder(),
        features.FeatureKey("lite0", PRE, view="flip").folder(),
        features.FeatureKey("lite0", PRE, tap=7).folder(),
        features.FeatureKey("lite1", PRE).folder(),
        # Every preprocessing field changes the numbers, so each must change the folder.
        features.FeatureKey("lite0", replace(PRE, mean=(0.5, 0.5, 0.5))).folder(),
        features.FeatureKey("lite0", replace(PRE, std=(0.5, 0.5, 0.5))).folder(),
        features.FeatureKey("lite0", replace(PRE, crop_pct=0.875)).folder(),
        features.FeatureKey("lite0", replace(PRE, interpolation="bilinear")).folder(),
        features.FeatureKey("lite0", replace(PRE, input_size=96)).folder(),
    }
    assert len(folders) == 10


def test_views_differ_and_augmentation_is_repeatable(photos, model, cache) -> None:
    center = _extract(photos, model)["pooled"]
    flip = _extract(photos, model, view="flip")["pooled"]
    aug = _extract(photos, model, view="aug0")["pooled"]
    assert not np.allclose(center, flip) and not np.allclose(center, aug)
    shutil.rmtree(features.FeatureKey("lite0", PRE, view="aug0").folder())
    np.testing.assert_allclose(_extract(photos, model, view="aug0")["pooled"], aug, atol=1e-5)
    with pytest.raises(SportsdetError, match="view"):
        _extract(photos, model, view="sideways")


def test_the_flip_view_is_the_mirrored_photo_and_each_augmented_view_its_own(photos, model, cache, tmp_path):
    flip = _extract(photos, model, view="flip")["pooled"]
    mirrored = []
    for path in photos:  # the same photos mirrored left to right (PNG: no new JPEG loss)
        copy = tmp_path / "mirrored" / (path.stem + ".png")
        copy.parent.mkdir(exist_ok=True)
        Image.open(path).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(copy)
        mirrored.append(copy)
    np.testing.assert_allclose(flip, _extract(mirrored, model)["pooled"], atol=1e-4)
    aug0, aug1 = (_extract(photos, model, view=view)["pooled"] for view in ("aug0", "aug1"))
    assert not np.allclose(aug0, aug1, atol=1e-2)  # two views, two crops of each photo


def test_grey_view_is_the_black_and_white_photo(photos, model, cache, tmp_path) -> None:
    grey = _extract(photos, model, view="grey")["pooled"]
    copies = []
    for path in photos:  # the same photos saved in black and white (PNG: no new JPEG loss)
        copy = tmp_path / "bw" / (path.stem + ".png")
        copy.parent.mkdir(exist_ok=True)
        Image.open(path).convert("L").save(copy)
        copies.append(copy)
    np.testing.assert_allclose(grey, _extract(copies, model)["pooled"], atol=1e-4)
    assert not np.allclose(grey, _extract(photos, model)["pooled"], atol=1e-2)


def test_bad_photo_fails_clearly_and_finished_shards_are_kept(photos, model, cache, tmp_path) -> None:
    bad = tmp_path / "photos" / "9_bad.jpg"
    bad.write_bytes(b"<html>not found</html>")
    with pytest.raises(SportsdetError) as info:
        _extract([*photos[:4], bad], model, batch_size=2)
    assert "9_bad.jpg" in str(info.value) and "data check" in str(info.value)
    folder = features.FeatureKey("lite0", PRE).folder()
    kept = list(folder.glob("shard-*.safetensors"))
    assert len(kept) == 2  # the 4 good photos, 2 per shard, were saved before the failure
    assert not list(folder.glob(".tmp-*"))
    # Resuming computes only what is missing and gives the same numbers as a fresh run.
    resumed = _extract(photos, model)["pooled"]
    shutil.rmtree(folder)
    np.testing.assert_allclose(_extract(photos, model)["pooled"], resumed, atol=1e-5)


def test_damaged_shard_is_recomputed_not_trusted(photos, model, cache) -> None:
    first = _extract(photos[:2], model)["pooled"]
    folder = features.FeatureKey("lite0", PRE).folder()
    shard = next(folder.glob("shard-*.safetensors"))
    shard.write_bytes(b"garbage")
    np.testing.assert_allclose(_extract(photos[:2], model)["pooled"], first, atol=1e-5)


def test_a_run_reads_only_the_shards_of_its_own_photos_and_drops_damaged_numbers(photos, model, cache):
    # The cache is shared by every run and only grows: a run loaded every shard into memory. And a
    # shard whose numbers were damaged on disk (NaN, bytes intact in shape) trained to a NaN loss.
    from safetensors.numpy import load_file, save_file

    first = _extract(photos[2:4], model)["pooled"]
    folder = features.FeatureKey("lite0", PRE).folder()
    (shard,) = folder.glob("shard-*.safetensors")
    tensors = load_file(str(shard))
    tensors["pooled"][0, 5] = np.nan
    save_file(tensors, str(shard))
    _extract(photos[:2], model)  # other photos: the damaged shard is not even opened for them
    assert shard.is_file() and len(list(folder.glob("shard-*.safetensors"))) == 2
    again = _extract(photos[2:4], model)["pooled"]
    assert np.isfinite(again).all() and np.isfinite(load_file(str(shard))["pooled"]).all()  # written again
    np.testing.assert_allclose(again, first, atol=1e-5)
    # A shard a killed run was writing (kill -9) stayed for ever: its name is never written again.
    import os
    import time

    left = folder / f".{shard.name}.hy0298yg.tmp.safetensors"
    left.write_bytes(b"half a shard")
    os.utime(left, (time.time() - 7200, time.time() - 7200))
    _extract(photos[:1], model)
    assert not left.exists()


def test_features_that_are_not_numbers_are_refused_not_cached(photos, model, cache, monkeypatch) -> None:
    # A shard of them was written, dropped on reading, and the run died on a KeyError, every run.
    class Overflowing:
        def run(self, names, feeds):
            pooled = np.ones((len(feeds["image"]), 1280), np.float32)
            pooled[-1, 3] = np.inf
            return [pooled]

    monkeypatch.setattr(features, "_session_for", lambda *args, **kwargs: Overflowing())
    with pytest.raises(SportsdetError, match=r"features of this photo .* are not finite numbers"):
        _extract(photos[:2], model, batch_size=2)
    assert not list(features.FeatureKey("lite0", PRE).folder().glob("shard-*"))


def test_the_cache_follows_xdg_cache_home_unless_told_where(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("SPORTSDET_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert features.cache_root() == tmp_path / "xdg" / "sportsdet" / "features"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")  # the XDG rule: only absolute paths count
    assert features.cache_root() == tmp_path / "home" / ".cache" / "sportsdet" / "features"
    monkeypatch.setenv("SPORTSDET_CACHE_DIR", str(tmp_path / "mine"))
    assert features.cache_root() == tmp_path / "mine"


def test_a_damaged_speed_record_is_not_known_not_a_traceback(cache) -> None:
    # {"img_per_s": null} was a TypeError in the middle of a time-budgeted run.
    key = features.FeatureKey("lite0", PRE)
    key.folder().mkdir(parents=True)
    records = [('{"img_per_s": 57.5}', 57.5), ('{"img_per_s": null}', None), ('{"img_per_s": [1]}', None),
               ('{"img_per_s": -3}', None), ("[]", None)]  # fmt: skip
    for record, expected in records:
        (key.folder() / "speed.json").write_text(record)
        assert features.measured_speed(key) == expected, record


def test_missing_file_names_the_path(model, cache, tmp_path) -> None:
    with pytest.raises(SportsdetError, match="nope.jpg"):
        _extract([tmp_path / "nope.jpg"], model)


def test_progress_in_a_log_file_is_a_line_at_a_time(photos, model, cache, monkeypatch, capsys) -> None:
    # Under pytest stderr is not a terminal, as in `sportsdet train ... 2> train.log`: a live bar
    # would print nothing until it ends, so extraction prints plain lines instead.
    monkeypatch.setattr(features, "PLAIN_PROGRESS_EVERY", 0.0)  # a line per batch
    features.extract_features("lite0", photos, preprocessing=PRE, model=model, batch_size=2,
                              description="features: train")  # fmt: skip
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("features: train (lite0, center): 2/5 photos, ") and "min left" in lines[0]
    assert lines[1].startswith("features: train (lite0, center): 4/5 photos, ")
    assert lines[-1].startswith("features: train (lite0, center): 5/5 photos in ")
    assert len(lines) == 3


def test_progress_says_byte_copies_are_computed_once(photos, model, cache, tmp_path, capsys) -> None:
    # "features valid: 45/45 photos" beside "50 valid": five copies, computed once, never said.
    copy = tmp_path / "copy.jpg"
    shutil.copy(photos[0], copy)
    features.extract_features("lite0", [*photos, copy], preprocessing=PRE, model=model, batch_size=8,
                              description="features: valid")  # fmt: skip
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("features: valid (lite0, center; 1 byte copy computed once): 5/5 photos in ")
    # And photos already cached: "1346/1346 photos" after "features: train (2194 images)".
    others = [tmp_path / f"more{i}.jpg" for i in range(2)]
    for i, path in enumerate(others):
        Image.new("RGB", (40, 40), (10 * i, 90, 30)).save(path)
    features.extract_features("lite0", [*photos, copy, *others], preprocessing=PRE, model=model, batch_size=8,
                              description="features: valid")  # fmt: skip
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("features: valid (lite0, center; 6 already in the feature cache): 2/2 photos in ")
