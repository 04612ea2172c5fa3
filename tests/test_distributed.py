"""Distributed training: 2 gloo processes on 127.0.0.1 against 1 process, on tiny data.

Tolerance: the 2-process run takes the same global batches as the 1-process run (each rank
half of every batch, gradients averaged), so it may differ only by float summation order, the
padding of a last batch that does not split evenly (one photo counted twice), dropout masks
drawn for half batches, and batch-norm statistics of half batches. Stated bounds, epoch by
epoch: validation accuracy within one validation photo, validation loss within 0.002 (scratch,
dropout off: the same arithmetic) or 0.05 (transfer: dropout and batch norm on).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_image_tree
from test_train import make_dataset

from sportsdet.errors import SportsdetError
from sportsdet.train import train
from sportsdet.training import distributed

# Dropout off: then two processes do the same arithmetic as one (up to summation order).
SCRATCH = {"input_size": 32, "batch_size": 8, "model_config": {"dropout": 0.0}}
TRANSFER = {"input_size": 64, "head_epochs": 3, "epochs": 1, "batch_size": 8, "head_lr": 1e-2}
RANK0_ONLY = {
    "config.json",
    "data_summary.json",
    "split.json",
    "metrics.csv",
    "curves.png",
    "checkpoints",
    "model",
}


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _assert_close_to(one: list[dict[str, str]], two: list[dict[str, str]], n_valid: int, loss: float) -> None:
    assert [(r["epoch"], r["stage"]) for r in two] == [(r["epoch"], r["stage"]) for r in one]
    for a, b in zip(one, two, strict=True):
        assert abs(float(a["val_acc"]) - float(b["val_acc"])) <= 1 / n_valid + 1e-9, (a, b)
        assert float(b["val_loss"]) == pytest.approx(float(a["val_loss"]), abs=loss), (a, b)


@pytest.fixture(scope="module")
def data_dir_small(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "small", per_class=4)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "shapes", per_class=12)


def test_scratch_in_two_processes_matches_one_and_resumes(shapes: Path, tmp_path: Path) -> None:
    torch.set_num_threads(2)
    split = "random:0.1,0.3"  # 9 validation photos
    one = tmp_path / "one"
    train(shapes, out=one, model="seed-cnn", seed=3, split=split, options={**SCRATCH, "epochs": 5},
          evaluate=False, report=False)  # fmt: skip

    runs = tmp_path / "runs"
    two = runs / "two"
    first = train(shapes, out=two, model="seed-cnn", seed=3, split=split, options={**SCRATCH, "epochs": 3},
                  nproc=2, evaluate=False, report=False)  # fmt: skip
    assert len(first.history) == 3 and torch.get_num_threads() == 2  # the CPU share is given back
    rows_before = _rows(two)
    result = train(None, out=two, resume=True, options={"epochs": 5}, nproc=2)

    assert [p.name for p in runs.iterdir()] == ["two"]  # one run folder, written by rank 0 alone
    names = {p.name for p in two.iterdir()}
    assert RANK0_ONLY | {"eval", "report.html"} <= names
    assert not names - RANK0_ONLY - {"eval", "report.html", ".sportsdet.lock"}
    rows = _rows(two)
    assert rows[:3] == rows_before and len(rows) == 5  # resumed after epoch 3, like one process
    n_valid = len(json.loads((two / "split.json").read_text())["splits"]["valid"])
    _assert_close_to(_rows(one), rows, n_valid, loss=0.002)
    assert result.evaluation is not None and (two / "eval" / "metrics.json").is_file()
    bundle = json.loads((two / "model" / "bundle.json").read_text())
    assert bundle["training"]["resumed"] is True and bundle["training"]["epochs_run"] == 5


def test_transfer_in_two_processes_shares_feature_extraction(tmp_path: Path, monkeypatch, capfd) -> None:
    torch.set_num_threads(2)
    data = make_image_tree(tmp_path / "data", splits={"train": 6, "valid": 3, "test": 2}, size=72)
    results = {}
    for n in (1, 2):
        cache = tmp_path / f"cache{n}"
        monkeypatch.setenv("SPORTSDET_CACHE_DIR", str(cache))  # the children inherit it
        results[n] = train(data, out=tmp_path / "runs" / f"n{n}", model="lite0", options=TRANSFER, nproc=n,
                           evaluate=n == 2, report=False)  # fmt: skip
        # Each rank extracted its half of the photos: a shard per rank for the flipped train photos,
        # and for the train and the validation photos in the center view's folder.
        shards = sorted(len(list(f.glob("shard-*.safetensors"))) for f in cache.iterdir())
        assert shards == ([1, 2] if n == 1 else [2, 4]), shards
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["n1", "n2"]
    one, two = _rows(tmp_path / "runs" / "n1"), _rows(tmp_path / "runs" / "n2")
    assert [r["stage"] for r in two] == ["head"] * 3 + ["finetune"]
    _assert_close_to(one, two, n_valid=9, loss=0.05)
    assert results[2].best["val_acc"] == pytest.approx(results[1].best["val_acc"], abs=1 / 9 + 1e-9)
    assert results[2].evaluation is not None  # evaluation ran once, on rank 0
    # Rank 0's bar counts its share: "features: train (6 images)" then "3/3 photos" read as lost.
    assert "features train, rank 0's share of 2 processes (lite0, center" in capfd.readouterr().err


def test_ranks_started_differently_stop_with_one_error(shapes: Path, tmp_path: Path, monkeypatch) -> None:
    # As torchrun would start them: rank 0 here, rank 1 the CLI in another process, --epochs differs.
    port = distributed.free_port()
    env = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "2",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}  # fmt: skip
    run = tmp_path / "run"
    command = [sys.executable, "-m", "sportsdet", "train", str(shapes), "--out", str(run), "--model",
               "seed-cnn", "--set", "input_size=32", "--batch-size", "8", "--epochs", "3"]  # fmt: skip
    other = subprocess.Popen(
        command, env={**os.environ, **env, "RANK": "1", "LOCAL_RANK": "1"}, stderr=subprocess.PIPE, text=True
    )
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    try:
        with pytest.raises(SportsdetError, match="option epochs: rank 0 2, rank 1 3"):
            train([shapes], out=str(run), model="seed-cnn", options={**SCRATCH, "epochs": 2})
    finally:
        _, stderr = other.communicate(timeout=120)
    assert other.returncode == 2
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "option epochs" in errors[0], stderr
    assert not run.exists()  # refused before anything was written
    assert not distributed.active()


def test_shard_rows_gives_every_rank_the_same_number_of_rows() -> None:
    batch = list(range(5))
    parts = [distributed.shard_rows(batch, r, 2) for r in range(2)]
    assert parts == [[0, 2, 4], [1, 3, 0]]  # padded with the batch's own first row
    assert [distributed.padding_rows(5, r, 2) for r in range(2)] == [[False] * 3, [False, False, True]]
    assert distributed.shard_rows([7], 1, 3) == [7]
    assert [distributed.shard_rows(batch, r, 3) for r in range(3)] == [[0, 3], [1, 4], [2, 0]]
    assert distributed.shard_rows(batch, 0, 1) is batch  # one process: the batch itself


def test_a_refusal_on_rank_0_stops_every_rank_with_its_message(shapes: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}", encoding="utf-8")
    with pytest.raises(SportsdetError, match="holds files but no sportsdet run"):
        train(shapes, out=run, model="seed-cnn", options={**SCRATCH, "epochs": 1}, nproc=2)
    assert [p.name for p in run.iterdir()] == ["config.json"]  # nothing written, nothing removed
    assert not distributed.active()


def test_rank_0_may_take_longer_than_the_group_timeout_after_training(shapes, tmp_path, monkeypatch) -> None:
    # Rank 1 waited in a last barrier while rank 0 calibrated, evaluated and wrote the report:
    # past SPORTSDET_DIST_TIMEOUT_S (a big test split on CPU) a finished run failed.
    import time

    import sportsdet.train as train_module

    monkeypatch.setenv(distributed.TIMEOUT_ENV, "8")  # the spawned rank inherits it

    def slow_evaluation(*args, **kwargs):
        time.sleep(10)

    monkeypatch.setattr(train_module, "_evaluate_test_split", slow_evaluation)
    result = train(shapes, out=tmp_path / "run", model="seed-cnn", options={**SCRATCH, "epochs": 1}, nproc=2,
                   report=False)  # fmt: skip
    assert len(result.history) == 1 and (tmp_path / "run" / "model" / "bundle.json").is_file()


def test_a_rank_that_is_killed_is_one_error_line_naming_it(shapes: Path, tmp_path: Path) -> None:
    # The out-of-memory killer ends a rank with SIGKILL: rank 0 raised gloo's RuntimeError
    # ("Connection closed by peer") with a traceback; a Ctrl-C took 30 s to come back.
    import multiprocessing
    import signal

    from sportsdet.train import Callback

    class KillRank1(Callback):
        def on_epoch_end(self, ctx, epoch, logs):
            if epoch == 1:
                for child in multiprocessing.active_children():
                    if child.name == "sportsdet-rank1":
                        os.kill(child.pid, signal.SIGKILL)

    run = tmp_path / "run"
    killed = r"sportsdet-rank1 was killed by signal 9 \(out of memory\?\).*--resume"
    with pytest.raises(SportsdetError, match=killed):
        train(shapes, out=run, model="seed-cnn", options={**SCRATCH, "epochs": 3}, nproc=2,
              callbacks=[KillRank1()], evaluate=False, report=False)  # fmt: skip
    assert (run / "checkpoints" / "last.safetensors").is_file() and not distributed.active()



def test_fewer_validation_photos_than_processes(tmp_path: Path, monkeypatch) -> None:
    # One validation photo, two processes: rank 1 had no share, skipped the validation sum the
    # other rank waited in, and the run hung until the group timeout (30 minutes by default).
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "20")  # the spawned rank inherits it
    data = make_image_tree(tmp_path / "data", splits={"train": 4, "valid": 1, "test": 1}, size=40)
    for extra in sorted((data / "valid").rglob("*.jpg"))[1:]:
        extra.unlink()
    result = train(data, out=tmp_path / "run", model="seed-cnn", options={**SCRATCH, "epochs": 2}, nproc=2,
                   evaluate=False, report=False)  # fmt: skip
    assert len(result.history) == 2 and all(row["val_acc"] is not None for row in result.history)


def test_a_rank_that_ends_before_any_checkpoint_is_not_told_to_resume(tmp_path: Path) -> None:
    # "The last checkpoint is kept: continue with --resume" was said with no checkpoint at all.
    from types import SimpleNamespace

    killed = [SimpleNamespace(name="sportsdet-rank1", exitcode=-9)]
    said = distributed._ended_rank(killed, tmp_path / "run", wait=0)
    assert said.startswith("sportsdet-rank1 was killed by signal 9") and "--force" in said
    assert "--resume" not in said
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "last.safetensors").write_bytes(b"x")
    assert "kept: continue with the same command and --resume" in distributed._ended_rank(
        killed, tmp_path / "run", wait=0
    )


def test_balanced_class_weights_train_the_same_in_two_processes(tmp_path: Path) -> None:
    # Each rank took the weighted mean of its own half batch and DDP averaged the two: another loss
    # wherever the halves weigh differently, so --nproc 2 trained another model than one process.
    torch.set_num_threads(2)
    data = make_image_tree(tmp_path / "data", splits={"train": 12, "valid": 3}, size=32)
    for name in ("polo", "rowing"):  # 12 air hockey, 2 polo, 2 rowing: 16, two full batches of 8
        for extra in sorted((data / "train" / name).iterdir())[2:]:
            extra.unlink()
    _one_and_two_processes_train_alike(data, tmp_path, {**SCRATCH, "epochs": 3, "class_weight": "balanced"})


def _one_and_two_processes_train_alike(
    data: Path, tmp_path: Path, options: dict, model: str = "seed-cnn", loss: float = 0.002
) -> list[tuple[dict, dict]]:
    """Train the same in 1 and 2 processes; every epoch's validation and train loss agree. Returns
    the metrics.csv rows of both, paired."""
    for name, nproc in (("one", 1), ("two", 2)):
        train(data, out=tmp_path / name, model=model, seed=1, options=options, nproc=nproc,
              evaluate=False, report=False)  # fmt: skip
    one, two = _rows(tmp_path / "one"), _rows(tmp_path / "two")
    _assert_close_to(one, two, n_valid=9, loss=loss)
    for a, b in zip(one, two, strict=True):
        assert float(b["train_loss"]) == pytest.approx(float(a["train_loss"]), abs=loss), (a, b)
    return list(zip(one, two, strict=True))


def test_a_collective_broken_by_a_rank_that_got_ctrl_c_is_an_interrupt(data_dir_small, tmp_path, monkeypatch):
    # Ctrl-C reaches every rank; rank 1 stopped first, rank 0's collective failed on its exit and
    # the run ended "error: sportsdet-rank1 ended with exit code 130", exit 2, with a traceback.
    from types import SimpleNamespace

    from rich.console import Console

    import sportsdet.training.run as run_module

    def broken(ctx):
        raise RuntimeError("[gloo] Connection closed by peer")

    monkeypatch.setattr(run_module, "get_recipe", lambda name: broken)
    monkeypatch.setattr(distributed, "_local_children", [SimpleNamespace(exitcode=130)])
    console = Console(record=True, width=200)
    with pytest.raises(KeyboardInterrupt):
        train(data_dir_small, out=tmp_path / "run", model="seed-cnn", options=SCRATCH, console=console)
    assert "interrupted before the first checkpoint was written" in console.export_text()
    monkeypatch.setattr(distributed, "_local_children", [SimpleNamespace(exitcode=1)])  # not a Ctrl-C
    with pytest.raises(RuntimeError, match="Connection closed by peer"):
        train(data_dir_small, out=tmp_path / "run2", model="seed-cnn", options=SCRATCH, console=console)


def test_padding_rows_are_counted_once_in_two_processes(tmp_path: Path) -> None:
    # 5 training photos in 2 processes: the global batch was padded to 6 with a photo again, which
    # counted twice in the loss and the gradient, and metrics.csv showed train_acc 0.333 (2 of 6),
    # impossible with 5 photos.
    torch.set_num_threads(2)
    data = make_image_tree(tmp_path / "data", splits={"train": 2, "valid": 3}, size=32)
    next((data / "train" / "rowing").iterdir()).unlink()  # 2 + 2 + 1 training photos
    for a, b in _one_and_two_processes_train_alike(data, tmp_path, {**SCRATCH, "epochs": 3}):
        assert round(float(b["train_acc"]) * 5, 6) == round(float(a["train_acc"]) * 5, 6), (a, b)


def test_padding_rows_are_counted_once_by_the_transfer_recipes_head_too(tmp_path: Path, monkeypatch) -> None:
    # The head trains on cached features through its own batches (not the photo loader): the
    # photo that pads them to an even share must not count twice there either.
    torch.set_num_threads(2)
    monkeypatch.setenv("SPORTSDET_CACHE_DIR", str(tmp_path / "cache"))
    data = make_image_tree(tmp_path / "data", splits={"train": 2, "valid": 3}, size=72)
    next((data / "train" / "rowing").iterdir()).unlink()  # 2 + 2 + 1 training photos
    # Without dropout (masks drawn per process) the head's epochs are the same to the digit; the
    # fine-tuning epoch differs a little (batch norm sees each process's part of a batch).
    options = {**TRANSFER, "dropout": 0.0}
    rows = _one_and_two_processes_train_alike(data, tmp_path, options, model="lite0", loss=0.1)
    head = [(a, b) for a, b in rows if a["stage"] == "head"]
    assert len(head) == 3
    for a, b in head:
        assert round(float(b["train_acc"]) * 5, 6) == round(float(a["train_acc"]) * 5, 6), (a, b)
        assert float(b["train_loss"]) == pytest.approx(float(a["train_loss"]), abs=1e-4), (a, b)
