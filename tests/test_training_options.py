"""Typed training options: one defaults table per recipe, unknown keys refused, values checked."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sportsdet.cli import app
from sportsdet.errors import SportsdetError
from sportsdet.models import get_model_spec
from sportsdet.training.options import NULL, ScratchOptions, TransferOptions, resolve_options


def test_recipe_defaults_model_overrides_and_caller_values_in_that_order() -> None:
    lite0 = resolve_options(get_model_spec("lite0"))
    assert isinstance(lite0, TransferOptions) and lite0 == TransferOptions()  # lite0 is the recipe default
    lite2 = resolve_options(get_model_spec("lite2"), {"lr": None, "dropout": 0.3})
    assert lite2.epochs == 3 and lite2.feature_flip is False and lite2.lr == 5e-4  # the registry's
    assert lite2.dropout == 0.3  # the caller's; None means "not given"
    seed = resolve_options(get_model_spec("seed-cnn"), {"epochs": 5})
    assert isinstance(seed, ScratchOptions) and seed.epochs == 5 and seed.optimizer == "adagrad"


def test_values_are_converted_to_their_declared_types() -> None:
    options = resolve_options(
        get_model_spec("lite0"), {"epochs": "4", "lr": 1, "bf16": "false", "time_budget": 90}
    )
    assert options.epochs == 4 and isinstance(options.lr, float) and options.bf16 is False
    assert options.time_budget == 90
    assert dataclasses.asdict(options)["epochs"] == 4  # what config.json stores
    # --set writes yes/no as people do: 1 and 0, yes and no, any case.
    for text, meant in (("1", True), ("0", False), ("Yes", True), ("no", False), ("TRUE", True)):
        assert resolve_options(get_model_spec("lite0"), {"calibrate": text}).calibrate is meant, text


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"labl_smoothing": 0.1},
         r"unknown training option\(s\) labl_smoothing \(did you mean 'label_smoothing'\?\) .*known: "),
        ({"batch_size": "abc"}, r"batch.size='abc': expected a whole number"),
        ({"input_size": 100000}, r"input_size=100000: must be between 16 and 1024"),
        ({"epochs": 0}, r"--epochs must be at least 1"),
        ({"epochs": 2.5}, r"epochs=2.5: expected a whole number"),  # not 2 in silence
        ({"lr": -1}, r"--lr must be positive"),
        ({"time_budget": "soon"}, r"time budget 'soon' not understood"),
        ({"recipe": "magic"}, r"unknown training recipe 'magic'; known: scratch, transfer"),
        ({"grey_view": 1.5}, r"grey_view=1.5: the share of photos seen in black and white"),
        ({"distance_sharpness": 0}, r"distance_sharpness=0.0: the power of the distance head's scale"),
        ({"distance_sharpness": 100}, r"distance_sharpness=100.0: .*at most 16"),
        ({"class_weight": "inverse"}, r"class_weight='inverse': use none or balanced"),
        # These failed inside PyTorch with a traceback, after the run folder was made.
        ({"label_smoothing": 2}, r"label_smoothing=2.0: must be from 0 to under 1"),
        ({"label_smoothing": -1}, r"label_smoothing=-1.0: must be from 0 to under 1"),
        ({"weight_decay": -1}, r"weight_decay=-1.0: must be 0 or more"),
        ({"lr": "nan"}, r"--lr=nan: must be a finite number"),
        ({"head_batch_size": 0}, r"head_batch_size must be at least 1"),
        ({"head_lr": -1}, r"head_lr=-1.0: must be above 0"),
        ({"dropout": 1.5}, r"dropout=1.5: must be from 0 to under 1"),
        ({"head_epochs": -3}, r"head_epochs=-3: must be 0 or more"),
        # A traceback, a run folder needing --force, or (bf16=off) the opposite of what was asked.
        ({"extract_workers": -1}, r"extract_workers=-1: must be 0 or more"),
        ({"extract_threads": -2}, r"extract_threads=-2: must be at least 1"),
        ({"bf16": "off"}, r"bf16='off': use true, false or auto"),
        ({"warmup_fraction": 5}, r"warmup_fraction=5.0: must be from 0 to under 1"),
        ({"time_budget": "1h30"}, r"time budget '1h30': give the last number its unit, e.g. 1h30m"),
        ({"recipe": "scratch", "optimizer": "adam"}, r"optimizer='adam': use adagrad, adamw, sgd"),
        ({"curves_every": 0}, r"curves_every must be at least 1"),  # was taken for 1 in silence
        ({"epochs": NULL}, r"--epochs=null: expected a whole number \(this option cannot be null\)"),
    ],
)
def test_bad_options_are_refused_before_anything_runs(given: dict, message: str) -> None:
    with pytest.raises(SportsdetError, match=message):
        resolve_options(get_model_spec("seed-cnn" if "optimizer" in given else "lite0"), given)


def test_durations_with_units() -> None:
    from sportsdet.training.schedule import parse_duration

    assert [parse_duration(t) for t in ("90", "90s", "10m", "1h30m", "1m30s", "1h", "2.5m")] == [
        90, 90, 600, 5400, 90, 3600, 150,
    ]


def test_scratch_recipe_refuses_transfer_only_options() -> None:
    with pytest.raises(SportsdetError, match="--time-budget plans pretrained"):
        resolve_options(get_model_spec("seed-cnn"), {"time_budget": "5m"})
    with pytest.raises(SportsdetError, match=r"unknown training option\(s\) head_epochs"):
        resolve_options(get_model_spec("seed-cnn"), {"head_epochs": 3})


def test_recipe_and_model_that_do_not_go_together(image_tree: Path, tmp_path: Path) -> None:
    # seed-cnn with the transfer recipe failed only after the run folder was laid out (--force had
    # removed the old run by then); a pretrained model trained from scratch at another input size
    # got input_size passed to a builder without it: a TypeError traceback and a half-made run.
    from sportsdet.train import train

    with pytest.raises(SportsdetError, match="seed-cnn has no pretrained weights, so it cannot use"):
        resolve_options(get_model_spec("seed-cnn"), {"recipe": "transfer"})
    options = {"recipe": "scratch", "input_size": 32, "epochs": 1, "batch_size": 8}
    run = tmp_path / "run"
    result = train(image_tree, out=run, model="lite0", options=options, evaluate=False, report=False)
    assert len(result.history) == 1 and (run / "model" / "bundle.json").is_file()
    from sportsdet.predict import Predictor

    photo = next(image_tree.rglob("*.jpg"))
    (labelled,) = Predictor(run / "model", backend="torch").predict_sources([str(photo)])
    assert labelled.error is None and labelled.top_k


def test_another_recipe_does_not_take_the_models_own_defaults() -> None:
    # Lite2's registry defaults (feature_flip, finetune epochs...) are for the transfer recipe: with
    # --set recipe=scratch they were refused as "unknown training option(s) feature_flip".
    options = resolve_options(get_model_spec("lite2"), {"recipe": "scratch", "epochs": 2})
    assert isinstance(options, ScratchOptions) and options.epochs == 2 and options.lr == ScratchOptions.lr


def test_null_from_set_means_none_not_the_default() -> None:
    from sportsdet.cli.train import _parse_sets

    given = _parse_sets(["abstain_coverage=null", "label_smoothing=0.2"])
    assert given == {"abstain_coverage": NULL, "label_smoothing": 0.2}
    # abstain_coverage=null stayed 0.95: None was read as "not given".
    assert resolve_options(get_model_spec("lite0"), given).abstain_coverage is None
    assert resolve_options(get_model_spec("lite0"), {"abstain_coverage": None}).abstain_coverage == 0.95


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        # The flag won over the --set in silence.
        (["--epochs", "1", "--set", "epochs=3"], r"--epochs 1 and --set epochs=3 disagree; give the option"),
        # A TypeError traceback from inside the recipe, after the run folder was laid out.
        (["--set", 'model_config={"dropp_rate": 0.5}'], r'model_config=\{"dropp_rate": 0.5\}: lite0 does'),
        # torch's RuntimeError (a negative size) was a traceback; the model's own refusal lacked the option.
        (["--model", "seed-cnn", "--set", 'model_config={"filters": -1}'], r'\{"filters": -1\}: seed-cnn'),
        (["--model", "seed-cnn", "--set", 'model_config={"filtrs": 3}'], r'\{"filtrs": 3\}: seed-cnn'),
        # torch.manual_seed's overflow, a traceback after the run folder was made.
        (["--model", "seed-cnn", "--seed", str(2**64)], r"--seed 18446744073709551616: give a whole number"),
    ],
)
def test_cli_refuses_contradictions_and_a_model_config_the_model_does_not_take(
    image_tree: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    from sportsdet.cli import main  # noqa: F401  (the entry point wraps SportsdetError into one line)

    result = CliRunner().invoke(app, ["train", str(image_tree), "--out", str(tmp_path / "run"), *extra])
    assert result.exit_code != 0 and isinstance(result.exception, SportsdetError)
    assert re.search(message, str(result.exception)), str(result.exception)
    assert not (tmp_path / "run").exists()  # refused before the run folder was made


def test_cli_names_the_unknown_key_and_lists_the_known_ones(image_tree: Path, tmp_path: Path) -> None:
    from sportsdet.cli import main  # noqa: F401  (the entry point wraps SportsdetError into one line)

    result = CliRunner().invoke(
        app, ["train", str(image_tree), "--out", str(tmp_path / "run"), "--model", "seed-cnn",
              "--set", "labl_smoothing=0.1"],
    )  # fmt: skip
    assert result.exit_code != 0
    message = str(result.exception)
    assert "labl_smoothing" in message and "label_smoothing" in message and "optimizer" in message
    assert not (tmp_path / "run").exists()  # refused before the run folder was made


# ----------------------------------------------------------------------------- class weights


def _context(options: TransferOptions, counts: dict[str, int]):
    from rich.console import Console

    from sportsdet.data.splits import SplitManifest
    from sportsdet.training.loop import TrainContext

    classes = sorted(counts)
    train = [(f"{c}/{i}.jpg", c) for c in classes for i in range(counts[c])]
    manifest = SplitManifest(Path("/nowhere"), "random:0.2", 0, classes + ["absent"], {"train": train})
    return TrainContext(
        run_dir=Path("/nowhere"), spec=get_model_spec("lite0"), labels=manifest.classes, manifest=manifest,
        options=options, seed=0, preprocessing=None, model_config={}, console=Console(),
    )  # fmt: skip


def test_balanced_class_weights_make_a_rare_class_count_like_a_common_one() -> None:
    import torch

    counts = {"common": 30, "rare": 10}
    plain = _context(TransferOptions(), counts).loss_function()
    assert plain.weight is None and plain.label_smoothing == 0.1
    balanced = _context(TransferOptions(class_weight="balanced", label_smoothing=0.0), counts).loss_function()
    # n / (C * n_c) over the classes that have train photos: 40/(2*30), 40/(2*10); one with none
    # keeps 1 (at 0, a validation batch of only that class had a NaN loss: "training diverged").
    assert balanced.weight.tolist() == pytest.approx([2 / 3, 2.0, 1.0])
    assert torch.isfinite(balanced(torch.zeros(2, 3), torch.tensor([2, 2])))
    # Every photo of each class together weighs the same, and the mean weight per photo stays 1.
    assert 30 * balanced.weight[0] == pytest.approx(10 * balanced.weight[1])
    assert (30 * balanced.weight[0] + 10 * balanced.weight[1]) / 40 == pytest.approx(1.0)
    logits, rare = torch.zeros(2, 3), torch.tensor([1, 1])
    assert float(balanced(logits, rare)) == pytest.approx(float(plain(logits, rare)))  # weighted mean


def test_training_uses_the_balanced_loss_and_drops_the_imbalance_advice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from conftest import make_image_tree

    from sportsdet.train import train
    from sportsdet.training.loop import TrainContext

    data = make_image_tree(tmp_path / "data", per_class=16)
    for name in ("polo", "rowing"):  # 16 air hockey photos, 4 of each other class
        for extra in sorted((data / name).iterdir())[4:]:
            extra.unlink()
    weights = []
    real = TrainContext.loss_function
    monkeypatch.setattr(
        TrainContext, "loss_function", lambda ctx: weights.append(real(ctx).weight) or real(ctx)
    )
    options = {"input_size": 32, "batch_size": 8, "epochs": 1}
    train(data, out=tmp_path / "plain", model="seed-cnn", options=options, evaluate=False)
    said = " ".join(capsys.readouterr().err.split())
    assert weights == [None] and "(`--set class_weight=balanced`)" in said
    train(data, out=tmp_path / "balanced", model="seed-cnn", options={**options, "class_weight": "balanced"},
          evaluate=False)  # fmt: skip
    from sportsdet.data.splits import SplitManifest

    train_photos = SplitManifest.load(tmp_path / "balanced" / "split.json").splits["train"]
    counts = [sum(label == c for _, label in train_photos) for c in ("air hockey", "polo", "rowing")]
    assert counts[0] > 3 * max(counts[1:])  # still imbalanced after the split
    expected = [len(train_photos) / (3 * n) for n in counts]
    assert weights[1].tolist() == pytest.approx(expected)
    said = capsys.readouterr().err
    assert "class imbalance" not in said and "model bundle" in said
