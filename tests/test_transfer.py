"""The transfer recipe end to end on a tiny generated dataset (Lite0, small input, 1 epoch)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CLASSES, make_image_tree

from sportsdet.errors import SportsdetError
from sportsdet.training.options import TransferOptions
from sportsdet.training.recipes.transfer import ArrayBatches
from sportsdet.training.schedule import extra_views, parse_duration, plan_schedule

TINY = {"input_size": 64, "head_epochs": 3, "epochs": 1, "batch_size": 8, "head_lr": 1e-2}


@pytest.fixture
def cache(tmp_path: Path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("SPORTSDET_CACHE_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def split_tree(tmp_path_factory) -> Path:
    splits = {"train": 6, "valid": 3, "test": 2}
    return make_image_tree(tmp_path_factory.mktemp("data"), splits=splits, size=72)


def _train(data: Path, out: Path, **options):
    from sportsdet.train import train

    torch.set_num_threads(2)
    return train(data, out=out, model="lite0", options={**TINY, **options})


def test_transfer_trains_both_stages_and_writes_the_run_folder(
    split_tree: Path, tmp_path: Path, cache, monkeypatch
):
    from sportsdet.bundle import load_bundle

    # A tiny, all-correct validation split is below the calibration minimums; lift them here.
    monkeypatch.setattr("sportsdet.training.calibration.MIN_CALIBRATION_IMAGES", 1)
    monkeypatch.setattr("sportsdet.training.calibration.MIN_CALIBRATION_ERRORS", 0)

    result = _train(split_tree, tmp_path / "run")
    run = tmp_path / "run"
    rows = list(csv.DictReader(open(run / "metrics.csv", encoding="utf-8")))
    assert [r["stage"] for r in rows] == ["head"] * 3 + ["finetune"]
    # The learning rate logged is the epoch's mean: the fine-tuning epoch starts at its 3e-4 peak and
    # decays within the epoch (cosine per batch), so its mean is well below the peak.
    assert 0 < float(rows[-1]["lr"]) < 0.9 * 3e-4
    assert (run / "curves.png").is_file() and (run / "checkpoints" / "best.safetensors").is_file()
    # Colour classes are easy: the pretrained features must separate them.
    assert result.best["val_acc"] == 1.0
    bundle = load_bundle(run / "model")
    assert bundle.model_name == "lite0" and bundle.labels == CLASSES
    assert bundle.preprocessing.input_size == 64
    assert bundle.training["transfer"]["views"] == ["center", "flip"]
    # The bundle rebuilds and predicts the validation photos right, through THE preprocessing.
    from sportsdet.preprocess import load_and_preprocess

    model = bundle.build_torch_model()
    photos = sorted((split_tree / "valid").rglob("*.jpg"))
    batch = torch.from_numpy(np.stack([load_and_preprocess(p, bundle.preprocessing) for p in photos]))
    with torch.inference_mode():
        logits = model(batch)
        predicted = [CLASSES[i] for i in logits.argmax(1).tolist()]
    assert predicted == [p.parent.name for p in photos]
    # The distance head was fitted on the final network's features (and rebuilt from the bundle).
    from sportsdet.models.heads import DistanceScaledLinear

    assert bundle.model_config["distance_head"] is True and isinstance(model.classifier, DistanceScaledLinear)
    fitted = bundle.training["transfer"]["distance_head"]
    assert 0 < fitted["reference"] <= 1
    assert float(model.classifier.reference) == pytest.approx(fitted["reference"], abs=1e-4)
    assert fitted["sharpness"] == float(model.classifier.sharpness) == 2.0  # the default power, stored
    assert fitted["reference_images"] == len(photos)
    norms = model.classifier.prototypes.norm(dim=1)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-4)  # one unit-length mean per class
    # The temperature was fitted on logits from the cached activations; the saved (calibrated)
    # model on the photos themselves gives the validation loss recorded for it.
    from sportsdet.metrics import softmax_nll

    calibration = bundle.training["calibration"]
    assert calibration["valid_images"] == len(photos)
    assert calibration["temperature"] != 1.0
    labels = np.array([CLASSES.index(p.parent.name) for p in photos])
    assert softmax_nll(logits.numpy(), labels) == pytest.approx(calibration["valid_nll_after"], abs=0.02)
    assert calibration["valid_nll_after"] <= calibration["valid_nll_before"]
    # Features were cached: a second run extracts nothing new.
    shards = sorted(cache.rglob("shard-*.safetensors"))
    assert shards
    _train(split_tree, tmp_path / "run2", head_epochs=1)
    assert sorted(cache.rglob("shard-*.safetensors")) == shards
    # grey_view adds the black-and-white view (extracted once) and draws it for that share.
    _train(split_tree, tmp_path / "run3", head_epochs=1, grey_view=0.3)
    transfer = load_bundle(tmp_path / "run3" / "model").training["transfer"]
    assert transfer["views"] == ["center", "flip", "grey"]
    assert transfer["view_weights"] == pytest.approx([0.35, 0.35, 0.3])
    assert len(sorted(cache.rglob("shard-*.safetensors"))) > len(shards)


def test_patience_is_said_to_be_unused_by_the_transfer_recipe(split_tree, tmp_path, cache, capsys):
    # It was silently ignored: every epoch ran and no early stop was said.
    _train(split_tree, tmp_path / "run", patience=1)
    assert "--patience 1 is not used by the transfer recipe" in capsys.readouterr().err


def test_bad_photo_in_training_data_is_a_clear_error(tmp_path: Path, cache) -> None:
    data = make_image_tree(tmp_path / "data", splits={"train": 3, "valid": 1}, size=72)
    bad = data / "train" / "polo" / "zz_bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    with pytest.raises(SportsdetError) as info:
        _train(data, tmp_path / "run", head_epochs=1)
    assert "zz_bad.jpg" in str(info.value)


def test_parse_duration() -> None:
    assert parse_duration("10m") == 600
    assert parse_duration("90s") == 90
    assert parse_duration("1h30m") == 5400
    assert parse_duration(45) == 45
    assert parse_duration(None) is None
    for bad in ("soon", "-5", "0"):
        with pytest.raises(SportsdetError):
            parse_duration(bad)


def _all_missing(options: TransferOptions, n: int) -> dict[str, int]:
    return {view: n for view in ["center", *extra_views(options)]}


def test_budget_drops_views_that_do_not_fit() -> None:
    options = TransferOptions(aug_views=2, feature_flip=True, epochs=3, time_budget="10m")
    # 13,500 photos at 45 img/s is 300 s per view: only the photo itself fits in 60% of 600 s.
    plan = plan_schedule(options, _all_missing(options, 13500), 45.0)
    assert plan["aug_views"] == 0 and plan["feature_flip"] is False
    assert plan["dropped"] == ["aug1", "aug0", "flip"] and plan["views"] == ["center"]
    # Everything cached already: all views are free.
    plan = plan_schedule(options, {}, 45.0)
    assert plan["aug_views"] == 2 and plan["feature_flip"] is True and plan["dropped"] == []
    assert plan_schedule(TransferOptions(aug_views=1, epochs=2), {"center": 10}, 1.0)["budget_s"] is None
    # Black and white goes before the mirror: 100 s per view, 60% of 400 s holds only one extra.
    options = TransferOptions(grey_view=0.2, feature_flip=True, epochs=1, time_budget="400s")
    plan = plan_schedule(options, _all_missing(options, 4500), 45.0)
    assert plan["grey_view"] is False and plan["feature_flip"] is True
    assert plan_schedule(options, {}, 45.0)["grey_view"] is True


def test_budget_charges_each_view_its_own_missing_photos() -> None:
    # The mirror view is cached and the crop view is not: keeping the mirror costs nothing, and
    # the crop's 300 s do not fit in 60% of 400 s (it was charged the mirror's count: 0).
    options = TransferOptions(aug_views=1, feature_flip=True, epochs=1, time_budget="400s")
    plan = plan_schedule(options, {"center": 0, "flip": 0, "aug0": 13500}, 45.0)
    assert plan["feature_flip"] is True and plan["aug_views"] == 0 and plan["dropped"] == ["aug0"]
    # The other way round: the crop view is cached, the mirror is not and does not fit.
    plan = plan_schedule(options, {"center": 0, "flip": 13500, "aug0": 0}, 45.0)
    assert plan["feature_flip"] is False and plan["aug_views"] == 1


def test_array_batches_mix_views_and_cover_every_row() -> None:
    torch.manual_seed(0)
    a = np.zeros((10, 2), np.float32)
    b = np.ones((10, 2), np.float32)
    labels = np.arange(10)
    batches = list(ArrayBatches([a, b], labels, 4, shuffle=True))
    assert len(batches) == 3
    seen = torch.cat([y for _, y in batches]).sort().values.tolist()
    assert seen == list(range(10))
    values = torch.cat([x for x, _ in batches])[:, 0]
    assert 0 < values.sum() < 10  # both views were drawn
    plain = list(ArrayBatches([a, b], labels, 4, shuffle=False))
    assert torch.cat([x for x, _ in plain]).sum() == 0  # evaluation uses the first view only


def test_array_batches_draw_views_by_weight() -> None:
    torch.manual_seed(0)
    n = 4000
    photo, grey = np.zeros((n, 1), np.float32), np.ones((n, 1), np.float32)
    batches = ArrayBatches([photo, grey], np.zeros(n), 500, shuffle=True, weights=[0.8, 0.2])
    share = float(torch.cat([x for x, _ in batches]).mean())
    assert 0.17 < share < 0.23  # about a fifth of the photos in their second view


class _StopIn:
    """Interrupts training (as Ctrl-C or a kill would) in epoch `epoch`: after its checkpoint, or
    (`mid_epoch`) during its first batch, when the last checkpoint is the epoch before."""

    def __init__(self, epoch: int, mid_epoch: bool = False) -> None:
        self.epoch, self.mid_epoch, self.current = epoch, mid_epoch, 0

    def on_train_begin(self, ctx): ...
    def on_train_end(self, ctx): ...

    def on_epoch_begin(self, ctx, epoch, stage, batches):
        self.current = epoch

    def on_batch_end(self, ctx, batch, logs):
        if self.mid_epoch and self.current == self.epoch:
            raise KeyboardInterrupt

    def on_epoch_end(self, ctx, epoch, logs):
        if epoch == self.epoch and not self.mid_epoch:
            raise KeyboardInterrupt


def _history(run: Path) -> list[tuple]:
    rows = list(csv.DictReader(open(run / "metrics.csv", encoding="utf-8")))
    return [
        (r["epoch"], r["stage"], r["train_loss"], r["train_acc"], r["val_loss"], r["val_acc"]) for r in rows
    ]


def test_resume_inside_the_finetune_stage_continues_exactly(split_tree: Path, tmp_path: Path, cache) -> None:
    from sportsdet.train import train

    torch.set_num_threads(2)
    options = {**TINY, "epochs": 2, "calibrate": False}
    # Cold cache first, then the same run on the warm cache: the numbers must not depend on it.
    train(split_tree, out=tmp_path / "cold", model="lite0", options=options, evaluate=False, report=False)
    train(split_tree, out=tmp_path / "warm", model="lite0", options=options, evaluate=False, report=False)
    assert _history(tmp_path / "warm") == _history(tmp_path / "cold")

    # Stopped after the first fine-tuning epoch (4), and inside it (the last checkpoint is then
    # the head's; resuming used to start fine-tuning from a random classifier: 0.29 vs 0.60).
    for name, stop in (("after", _StopIn(4)), ("inside", _StopIn(4, mid_epoch=True))):
        broken = tmp_path / name
        with pytest.raises(KeyboardInterrupt):
            train(split_tree, out=broken, model="lite0", options=options, callbacks=[stop])
        train(None, out=broken, resume=True, evaluate=False, report=False)
        assert _history(broken) == _history(tmp_path / "cold"), name

    # Resuming a finished run: nothing to do, and said so by finishing, not by "training finished
    # without any epoch; nothing to save" (its best epoch was not set back).
    result = train(None, out=tmp_path / "cold", resume=True, evaluate=False, report=False)
    epochs = {row[0] for row in _history(tmp_path / "cold")}
    assert result.best is not None and str(result.best["epoch"]) in epochs
    assert _history(tmp_path / "cold") == _history(tmp_path / "warm")


def test_a_resumed_run_keeps_the_fine_tuning_epochs_its_time_budget_planned(
    split_tree: Path, tmp_path: Path, cache, monkeypatch
) -> None:
    # The resumed process planned again from its own clock: other epochs, and the learning-rate
    # schedule stretched to them. Here the first process's budget allows 2 of 3 epochs, the
    # resumed one's would allow 3.
    import sportsdet.training.recipes.transfer as transfer
    from sportsdet.train import train

    torch.set_num_threads(2)
    options = {**TINY, "epochs": 3, "calibrate": False}
    monkeypatch.setattr(transfer, "_epochs_within_budget", lambda ctx, epochs, *args: 2)
    broken = tmp_path / "broken"
    with pytest.raises(KeyboardInterrupt):
        train(split_tree, out=broken, model="lite0", options=options, callbacks=[_StopIn(4)])
    monkeypatch.setattr(transfer, "_epochs_within_budget", lambda ctx, epochs, *args: 3)
    train(None, out=broken, resume=True, evaluate=False, report=False)
    assert [row[1] for row in _history(broken)] == ["head"] * 3 + ["finetune"] * 2



def test_a_run_a_budget_cut_short_is_extended_with_a_new_budget(split_tree, tmp_path, cache) -> None:
    # --resume kept the run's 1s budget (ignoring the new one) and trained no epoch, exit 0.
    import json

    from sportsdet.train import train

    torch.set_num_threads(2)
    run = tmp_path / "run"
    options = {**TINY, "calibrate": False, "time_budget": "1s"}
    train(split_tree, out=run, model="lite0", options=options, evaluate=False, report=False)
    assert [row[1] for row in _history(run)] == ["head"] * 3  # the budget left no fine-tuning
    more = {"epochs": 2, "time_budget": "10m"}
    train(None, out=run, resume=True, options=more, evaluate=False, report=False)
    assert [row[1] for row in _history(run)] == ["head"] * 3 + ["finetune"] * 2
    assert json.loads((run / "config.json").read_text())["options"]["time_budget"] == "10m"


def test_a_budget_that_leaves_nothing_to_train_says_so(split_tree, tmp_path, cache) -> None:
    # head_epochs=0 and no fine-tuning epoch in the budget: "checkpoints/best.safetensors: checkpoint
    # not found".
    from sportsdet.errors import SportsdetError

    with pytest.raises(SportsdetError, match="nothing was trained: head_epochs is 0 and the time budget"):
        _train(split_tree, tmp_path / "run", head_epochs=0, time_budget="1s")


def test_a_budget_drops_an_uncached_view_aloud_and_keeps_a_cached_one(split_tree, tmp_path, cache, capsys):
    from sportsdet.bundle import load_bundle
    from sportsdet.train import train

    def run(name: str, **options) -> list[str]:
        options = {**TINY, "calibrate": False, **options}
        train(split_tree, out=tmp_path / name, model="lite0", options=options, evaluate=False, report=False)
        return load_bundle(tmp_path / name / "model").training["transfer"]["views"]

    torch.set_num_threads(2)
    # 1 s cannot hold extracting 18 photos twice: the mirror view is dropped, and said to be.
    assert run("tight", time_budget="1s") == ["center"]
    assert "leaves no time to extract the mirror view" in capsys.readouterr().err
    # Once a run has cached the mirror view, the same budget keeps it: it costs nothing.
    assert run("full") == ["center", "flip"]
    assert run("cached", time_budget="1s") == ["center", "flip"]
    assert "leaves no time" not in capsys.readouterr().err


def test_fine_tuning_speed_is_timed_at_the_batch_the_epochs_run(split_tree, tmp_path, cache, monkeypatch):
    # --batch-size 4096 on 18 photos: the timing step built a 4096-row batch (memory in GBs at
    # full size) although no epoch ever runs more than 18 rows at once.
    import sportsdet.training.recipes.transfer as transfer

    timed: list[int] = []
    real = transfer.measure_train_speed

    def spy(module, sample, batch: int) -> float:
        timed.append(batch)
        return real(module, sample, batch)

    monkeypatch.setattr(transfer, "measure_train_speed", spy)
    _train(split_tree, tmp_path / "run", batch_size=4096, calibrate=False)
    assert timed == [18]


def test_more_finetune_stages_than_the_model_has_are_recorded_as_trained(split_tree, tmp_path, cache, capsys):
    # finetune_stages=20 trained Lite0's 8 stages above the stem, and the bundle said 20; --workers
    # (the scratch recipe's photo loader) was recorded and used by nothing, in silence.
    from sportsdet.bundle import load_bundle

    _train(split_tree, tmp_path / "run", finetune_stages=20, workers=1, calibrate=False)
    assert load_bundle(tmp_path / "run" / "model").training["transfer"]["trainable_stages"] == 8
    said = " ".join(capsys.readouterr().err.split())
    assert "lite0 has 8 trunk stages that can be fine-tuned; training those, not finetune_stages=20" in said
    assert "--workers 1 not used by the transfer recipe" in said


def test_resume_with_more_epochs_extends_a_finished_fine_tuning(split_tree, tmp_path, cache) -> None:
    # The finished stage was skipped: nothing trained, while config.json and the bundle said 2.
    import json

    from sportsdet.train import train

    torch.set_num_threads(2)
    run = tmp_path / "run"
    options = {**TINY, "batch_size": 256, "calibrate": False}
    train(split_tree, out=run, model="lite0", options=options, evaluate=False, report=False)
    train(None, out=run, resume=True, options={"epochs": 2}, evaluate=False, report=False)
    assert [row[1] for row in _history(run)] == ["head"] * 3 + ["finetune"] * 2
    bundle = json.loads((run / "model" / "bundle.json").read_text())
    assert bundle["training"]["transfer"]["finetune_epochs"] == 2
    # The added epoch trains at the longer schedule's rate: it kept the end of the old cosine, 0.
    rates = [float(row["lr"]) for row in csv.DictReader(open(run / "metrics.csv", encoding="utf-8"))]
    assert rates[-1] > 0, rates  # one step per epoch (batch_size above the photos): that step's rate


def test_the_fine_tuning_plan_counts_the_time_before_a_resume() -> None:
    # A run stopped before fine-tuning, resumed: the new process planned from its own clock, as if
    # none of the budget were spent (29 epochs where the whole run had room for 22; 79 s of 40).
    import time
    from types import SimpleNamespace

    from rich.console import Console

    import sportsdet.training.recipes.transfer as transfer

    ctx = SimpleNamespace(
        options=TransferOptions(time_budget="120s"),
        manifest=SimpleNamespace(items=lambda split: []),
        console=Console(quiet=True),
        started=time.time() - 100,  # 100 s of the run were spent before this process started
        recipe_state={},
    )
    # 10 s an epoch: 120 - 100 - 5 s of margin leaves room for 1, not the 11 a fresh clock gives.
    assert transfer._epochs_within_budget(ctx, 50, speed=10.0, n_train=100) == 1


def test_the_fine_tuning_plan_counts_what_an_epoch_costs_beyond_its_photos() -> None:
    # 18 photos at 100 img/s "allowed" 300 epochs of a 40 s budget: each epoch's checkpoints and
    # curves were left out, and the run took 237 s. A head epoch's wall time is now counted too.
    import time
    from types import SimpleNamespace

    from rich.console import Console

    import sportsdet.training.recipes.transfer as transfer

    ctx = SimpleNamespace(
        options=TransferOptions(time_budget="40s"), manifest=SimpleNamespace(items=lambda split: []),
        console=Console(quiet=True), started=time.time(), recipe_state={"head_epoch_s": 0.7},
    )  # fmt: skip
    planned = transfer._epochs_within_budget(ctx, 300, speed=100.0, n_train=18)
    assert 35 <= planned <= 39  # (40 - 5) / (0.18 + 0.7) = 39.8 -> 39, less as the clock runs; 194 without


def test_a_budget_that_is_not_the_limit_says_so() -> None:
    # --time-budget 20m on a small folder said nothing at all: as if it had been ignored.
    import time
    from types import SimpleNamespace

    from rich.console import Console

    import sportsdet.training.recipes.transfer as transfer

    console = Console(record=True, width=200)
    ctx = SimpleNamespace(
        options=TransferOptions(time_budget="20m"), manifest=SimpleNamespace(items=lambda split: []),
        console=console, started=time.time(), recipe_state={},
    )  # fmt: skip
    assert transfer._epochs_within_budget(ctx, 2, speed=10.0, n_train=100) == 2
    assert "time budget: 1200s leaves room for all 2 fine-tuning epoch(s) of ~10s" in console.export_text()


def test_the_summary_counts_epochs_by_stage(split_tree, tmp_path, cache, run_cli, capsys) -> None:
    # "epochs run: 4" of a run whose config says epochs 1: the head epochs were not said apart.
    args = ["train", str(split_tree), "--out", str(tmp_path / "run"), "--model", "lite0", "--epochs", "1",
            "--set", "input_size=64", "--set", "head_epochs=3", "--set", "batch_size=8",
            "--no-eval"]  # fmt: skip
    assert run_cli(*args) == 0
    captured = capsys.readouterr()
    assert "epochs run: 4 (3 head, 1 finetune)" in captured.out
    # Every epoch line counts out of the whole run (the head stage's said 1/3, 2/3, 3/3, then 4/4).
    lines = [line.split()[1] for line in captured.err.splitlines() if line.startswith("epoch ")]
    assert lines == ["1/4", "2/4", "3/4", "4/4"], captured.err
