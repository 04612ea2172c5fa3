"""Training end to end on a tiny generated dataset: run folder, bundle, resume, errors."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import held_by_another_process
from PIL import Image
from rich.console import Console

from sportsdet.bundle import load_bundle
from sportsdet.data.splits import SplitManifest
from sportsdet.errors import SportsdetError
from sportsdet.evaluate import evaluate
from sportsdet.preprocess import load_and_preprocess
from sportsdet.run_folder import METRICS_COLUMNS
from sportsdet.train import Callback, train
from sportsdet.training.checkpoint import read_checkpoint, write_checkpoint

# Small and fast: 32 px input instead of the notebook's 150 (the CNN sizes its dense layer by it).
TINY = {"input_size": 32, "batch_size": 8}
COLOURS = {"blue square": (30, 40, 210), "green": (30, 190, 40), "red": (210, 30, 30)}


def make_dataset(root: Path, per_class: int = 12, seed: int = 0) -> Path:
    """3 classes of 40x40 noise pictures, each with a square of its class colour."""
    rng = np.random.default_rng(seed)
    for name, colour in COLOURS.items():
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = rng.integers(0, 60, (40, 40, 3), dtype=np.uint8)
            x, y = rng.integers(0, 20, 2)
            pixels[y : y + 20, x : x + 20] = colour
            Image.fromarray(pixels).save(folder / f"{i:02d}.png")
    return root


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "shapes")


def _history(run: Path) -> list[dict]:
    """metrics.csv rows without the wall-clock column."""
    with open(run / "metrics.csv", newline="") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


class InterruptAfter(Callback):
    """Simulates Ctrl-C right after epoch `epoch` was written."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, ctx, epoch, logs):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def test_train_writes_run_folder_and_a_bundle_that_reproduces_the_model(data_dir, tmp_path, monkeypatch):
    # The tiny validation split is below the calibration minimums; lift them to see the folding.
    monkeypatch.setattr("sportsdet.training.calibration.MIN_CALIBRATION_IMAGES", 1)
    monkeypatch.setattr("sportsdet.training.calibration.MIN_CALIBRATION_ERRORS", 0)
    monkeypatch.setattr("sportsdet.abstain.MIN_ABSTAIN_IMAGES", 1)  # and the abstain threshold's
    run = tmp_path / "run"
    result = train(data_dir, out=run, model="seed-cnn", seed=3, options={**TINY, "epochs": 2})

    for name in ("config.json", "data_summary.json", "split.json", "metrics.csv", "curves.png"):
        assert (run / name).is_file(), name
    for name in ("last.safetensors", "last.json", "best.safetensors", "best.json"):
        assert (run / "checkpoints" / name).is_file(), name
    with open(run / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == METRICS_COLUMNS
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(0.0 <= float(r["train_acc"]) <= 1.0 and float(r["train_loss"]) > 0 for r in rows)
    assert all(r["val_acc"] != "" for r in rows)  # random:0.2 on a folder tree keeps a validation split
    assert Image.open(run / "curves.png").size[0] > 200

    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "seed-cnn" and config["seed"] == 3 and config["split"] == "random:0.2"
    assert (
        config["options"]["lr"] == 1e-3 and config["options"]["optimizer"] == "adagrad"
    )  # registry defaults
    assert config["options"]["epochs"] == 2  # the caller's option wins

    bundle = load_bundle(run / "model")
    assert bundle.labels == sorted(COLOURS)  # folder names, spaces kept, sorted
    assert bundle.preprocessing.input_size == 32
    assert bundle.training["epochs_run"] == 2 and bundle.training["seed"] == 3
    assert bundle.training["best_epoch"] == result.best["epoch"]
    assert bundle.metrics["best_val_accuracy"] == pytest.approx(result.best["val_acc"])
    assert bundle.data["manifest_sha256"] and bundle.data["scan"]["num_classes"] == 3

    # The rebuilt model gives the trained model's outputs on real files, through THE preprocessing.
    files = sorted(data_dir.glob("*/*.png"))[:5]
    batch = torch.from_numpy(np.stack([load_and_preprocess(f, bundle.preprocessing) for f in files]))
    rebuilt = bundle.build_torch_model()
    with torch.no_grad():
        expected = result.model.eval()(batch)
        got = rebuilt(batch)
    assert torch.allclose(expected, got, atol=1e-6)

    # Like the notebook, training ends with the test split scored (through the engine predict
    # uses, named in metrics.json) and one report holding it.
    metrics = json.loads((run / "eval" / "metrics.json").read_text())
    assert (
        metrics["split"] == "test"
        and metrics["source"] == "split-manifest"
        and metrics["backend"].startswith("torch")
    )
    assert metrics["n"] == len(json.loads((run / "split.json").read_text())["splits"]["test"]) > 0
    assert result.evaluation.metrics["accuracy"] == metrics["accuracy"]
    page = (run / "report.html").read_text()
    assert result.report == run / "report.html" and "No evaluation yet" not in page

    # The bundle holds the best checkpoint's weights, the classifier divided by the temperature
    # fitted on the validation split (calibrated scores, same ranking).
    best_tensors, best_state = read_checkpoint(run / "checkpoints" / "best.safetensors")
    assert best_state["best"]["epoch"] == result.best["epoch"]
    saved = bundle.torch_state_dict()
    calibration = bundle.training["calibration"]
    temperature = calibration["temperature"]
    assert 0.05 <= temperature <= 20 and calibration["valid_images"] > 0
    assert calibration["valid_nll_after"] <= calibration["valid_nll_before"] + 1e-9
    for name in ("classifier.weight", "classifier.bias"):
        assert torch.allclose(best_tensors[f"model.{name}"] / temperature, saved[name], rtol=1e-6, atol=1e-7)
    assert torch.equal(best_tensors["model.hidden.weight"], saved["hidden.weight"])

    # The abstain threshold is fitted on the calibrated validation scores at 95% coverage, stored
    # as bundle.json's own "abstain" entry, and the evaluation reports what it does on test.
    abstain = bundle.abstain
    assert abstain is not None and abstain.threshold is not None and abstain.coverage == 0.95
    assert abstain.valid_images == calibration["valid_images"] and "abstain" not in calibration
    assert metrics["abstain"]["threshold"] == abstain.threshold and metrics["abstain"]["risk_coverage"]
    assert "risk-coverage" in page

    # The bundle knows its training and validation photos by content, so evaluating it on a copy of
    # its data (a plain folder, not the run's split) scores only the test photos.
    from sportsdet.seen_photos import load_seen, photo_digest

    split = SplitManifest.load(run / "split.json")
    seen = load_seen(run / "model")
    assert set(seen.digests) == {"train", "valid"}
    for name in ("train", "valid"):
        assert seen.digests[name] == {photo_digest(path) for path, _ in split.items(name)}
    shutil.copytree(data_dir, tmp_path / "copy")
    again = evaluate(run / "model", tmp_path / "copy", out_dir=tmp_path / "again")
    assert again.metrics["n"] == len(split.items("test"))
    left_out = {"train": len(split.items("train")), "valid": len(split.items("valid"))}
    assert again.metrics["seen_left_out"] == left_out


def test_a_signal_while_the_best_checkpoint_is_written_waits_for_the_last(
    data_dir, tmp_path, monkeypatch, ctrl_c_raises
):
    # Each file was written in its own deferral: Ctrl-C during best.* took effect before last.*,
    # and a bundle made from that run reported one epoch and held another's weights.
    import os
    import signal

    import sportsdet.training.callbacks as callbacks

    real = callbacks.write_checkpoint

    def interrupted_best(path, tensors, state):
        if path.name == "best.safetensors" and state["best"]["epoch"] == 2:
            os.kill(os.getpid(), signal.SIGINT)
        real(path, tensors, state)

    monkeypatch.setattr(callbacks, "write_checkpoint", interrupted_best)
    run = tmp_path / "run"
    options = {**TINY, "epochs": 3, "lr": 1e-3}
    with pytest.raises(KeyboardInterrupt):
        train(data_dir, out=run, model="seed-cnn", seed=5, options=options)
    _, best = read_checkpoint(run / "checkpoints" / "best.safetensors")
    _, last = read_checkpoint(run / "checkpoints" / "last.safetensors")
    assert best["best"]["epoch"] == last["epoch"] == last["best"]["epoch"] == 2

    # A process killed between the two writes (nothing defers SIGKILL): best.* of epoch 3 beside
    # last.* of epoch 2. Set right when resumed: from last.*'s weights when epoch 2 is the best ...
    from sportsdet.training.checkpoint import model_tensors

    best_file, last_file = run / "checkpoints" / "best.safetensors", run / "checkpoints" / "last.safetensors"
    write_checkpoint(best_file, read_checkpoint(best_file)[0], {"kind": "best", "best": {"epoch": 3}})
    console = Console(record=True, width=200)
    train(None, out=run, resume=True, options={"epochs": 2}, console=console, evaluate=False, report=False)
    assert "rewritten from epoch 2, the best" in console.export_text()
    saved = load_bundle(run / "model").torch_state_dict()
    weights = model_tensors(read_checkpoint(last_file)[0])
    assert saved.keys() == weights.keys() and all(torch.equal(saved[k], weights[k]) for k in saved)

    # ... else (the best was an earlier epoch, whose weights are gone) chosen again from new epochs.
    tensors, state = read_checkpoint(last_file)
    write_checkpoint(last_file, tensors, {**state, "best": {**state["best"], "epoch": 1}})
    write_checkpoint(best_file, read_checkpoint(best_file)[0], {"kind": "best", "best": {"epoch": 3}})
    with pytest.raises(SportsdetError, match=r"weights of the best epoch \(1\) were lost .*more --epochs"):
        train(None, out=run, resume=True, options={"epochs": 2}, evaluate=False, report=False)
    result = train(None, out=run, resume=True, options={"epochs": 3}, evaluate=False, report=False)
    assert result.best["epoch"] == 3 and len(result.history) == 3


def test_resume_after_interrupt_gives_the_uninterrupted_result(data_dir, tmp_path):
    options = {**TINY, "epochs": 4}
    straight = tmp_path / "straight"
    train(data_dir, out=straight, model="seed-cnn", seed=5, options=options)

    broken = tmp_path / "broken"
    with pytest.raises(KeyboardInterrupt):
        train(data_dir, out=broken, model="seed-cnn", seed=5, options=options, callbacks=[InterruptAfter(2)])
    assert len(_history(broken)) == 2
    assert not (broken / "model").exists()
    tensors, state = read_checkpoint(broken / "checkpoints" / "last.safetensors")
    assert state["epoch"] == 2 and 0 < state["seconds"] < 600
    # The time the interrupted process trained counts in the run's time (the bundle had only the
    # last process's): stretched here to 1000 s to tell it from the resumed part.
    write_checkpoint(broken / "checkpoints" / "last.safetensors", tensors, {**state, "seconds": 1000.0})

    result = train(None, out=broken, resume=True)
    assert len(result.history) == 4
    assert 1000 < load_bundle(broken / "model").training["seconds"] < 1600
    assert _history(broken) == _history(straight)  # same losses and accuracies, digit for digit
    a = load_bundle(straight / "model").torch_state_dict()
    b = load_bundle(broken / "model").torch_state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # A finished run can be extended: --resume with more epochs continues where it stopped. DATA and
    # --classes given with it are said to be ignored (they were silently).
    console = Console(file=io.StringIO(), width=200)
    more = {"epochs": 5}
    result = train(data_dir, out=broken, resume=True, options=more, classes=["red"], console=console)
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4, 5]
    assert _history(broken)[:4] == _history(straight)
    assert "--resume continues on the run's saved split and classes; ignoring DATA, --classes" in (
        console.file.getvalue()
    )


def test_sigkill_loses_at_most_the_current_epoch(data_dir, tmp_path):
    """A process killed mid-epoch resumes from its last finished epoch and ends like a clean run."""
    options = {**TINY, "epochs": 3}
    straight = tmp_path / "straight"
    train(data_dir, out=straight, model="seed-cnn", seed=7, options=options)

    killed = tmp_path / "killed"
    script = textwrap.dedent(
        f"""
        import os, signal
        from sportsdet.train import Callback, train

        class KillInEpoch3(Callback):
            def on_batch_end(self, ctx, batch, logs):
                if len(ctx.history) == 2 and batch == 1:
                    os.kill(os.getpid(), signal.SIGKILL)

        train({str(data_dir)!r}, out={str(killed)!r}, model="seed-cnn", seed=7,
              options={options!r}, callbacks=[KillInEpoch3()])
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    assert len(_history(killed)) == 2
    assert not any(p.name.startswith(".") for p in (killed / "checkpoints").iterdir())  # no temp files left

    train(None, out=killed, resume=True)
    assert _history(killed) == _history(straight)


def test_existing_run_is_not_overwritten_without_force(data_dir, tmp_path):
    run = tmp_path / "run"
    train(data_dir, out=run, model="seed-cnn", options={**TINY, "epochs": 1})
    (run / "notes.txt").write_text("mine")
    # A user's files inside the folders a run writes must survive --force too (they did not).
    (run / "model" / "important.txt").write_text("mine")
    (run / "model" / ".gitignore").write_text("*.safetensors\n")  # was taken for ours and deleted
    (run / "eval" / "thesis.tex").write_text("mine")
    before = (run / "model" / "weights.safetensors").read_bytes()

    with pytest.raises(SportsdetError, match="already holds a run.*--resume.*--force"):
        train(data_dir, out=run, model="seed-cnn", options={**TINY, "epochs": 1})
    assert (run / "model" / "weights.safetensors").read_bytes() == before

    # --force with bad options fails before anything is removed.
    with pytest.raises(SportsdetError, match="unknown class"):
        train(data_dir, out=run, model="seed-cnn", force=True, classes=["red", "purple"], options=TINY)
    assert (run / "model" / "weights.safetensors").read_bytes() == before

    train(data_dir, out=run, model="seed-cnn", seed=1, force=True, options={**TINY, "epochs": 1})
    assert (run / "notes.txt").read_text() == "mine"  # --force removes only what a run writes
    assert (run / "model" / "important.txt").read_text() == "mine"
    assert (run / "model" / ".gitignore").read_text() == "*.safetensors\n"
    assert (run / "eval" / "thesis.tex").read_text() == "mine"
    assert (run / "model" / "bundle.json").is_file() and (run / "eval" / "metrics.json").is_file()
    assert len(_history(run)) == 1

    with pytest.raises(SportsdetError, match="nothing to resume"):
        train(None, out=tmp_path / "empty", resume=True)

    # A folder of one's own that never held a run: --force deleted its config.json and metrics.csv.
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "config.json").write_text('{"my": "settings"}')
    (mine / "metrics.csv").write_text("my,numbers\n")
    with pytest.raises(SportsdetError, match="holds files but no sportsdet run"):
        train(data_dir, out=mine, model="seed-cnn", force=True, options={**TINY, "epochs": 1})
    assert (mine / "config.json").read_text() == '{"my": "settings"}' and (mine / "metrics.csv").is_file()
    # ... also when one's own config.json has an "options" entry (it was taken for a run's).
    (mine / "config.json").write_text('{"options": {"lr": 3}}')
    with pytest.raises(SportsdetError, match="holds files but no sportsdet run"):
        train(data_dir, out=mine, model="seed-cnn", force=True, options={**TINY, "epochs": 1})
    assert (mine / "config.json").read_text() == '{"options": {"lr": 3}}'


def test_force_stopped_before_a_checkpoint_gives_the_finished_run_back(data_dir, tmp_path, monkeypatch):
    # --force deleted the finished run before the new one had a single checkpoint: a Ctrl-C (or a
    # bad photo) seconds later left nothing, and said "nothing to resume".
    from sportsdet.errors import InterruptSaid
    from sportsdet.training import run as running

    run = tmp_path / "run"
    train(data_dir, out=run, model="seed-cnn", options={**TINY, "epochs": 1})
    finished = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    real_recipe = running.get_recipe

    def interrupted(ctx):
        raise KeyboardInterrupt

    monkeypatch.setattr(running, "get_recipe", lambda name: interrupted)
    console = Console(record=True, width=300)
    with pytest.raises(InterruptSaid):
        train(data_dir, out=run, model="seed-cnn", seed=1, force=True, options=TINY, console=console)
    assert "is back as it was" in console.export_text()
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == finished
    # ... also when the stop comes before the recipe starts (torch's lazy imports take a second
    # there): the old run was left hidden in .previous-run and the advice given deleted it.
    real_seed = running.seed_everything
    monkeypatch.setattr(running, "seed_everything", interrupted)
    with pytest.raises(InterruptSaid):
        train(data_dir, out=run, model="seed-cnn", seed=1, force=True, options=TINY, console=console)
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == finished
    monkeypatch.setattr(running, "seed_everything", real_seed)
    # A --force killed right after it set the run aside (nothing put back), then --force again,
    # stopped again: the finished run aside is what comes back, not the killed one's first files.
    from sportsdet.run_folder import RunFolder, clear_run

    clear_run(RunFolder(run), set_aside=True)
    with pytest.raises(InterruptSaid):
        train(data_dir, out=run, model="seed-cnn", seed=1, force=True, options=TINY, console=console)
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == finished
    # ... and when the killed one had written its first files: they go, not over the run aside.
    clear_run(RunFolder(run), set_aside=True)
    (run / "config.json").write_text('{"options": {}, "model": "seed-cnn", "data": "the killed run"}')
    with pytest.raises(InterruptSaid):
        train(data_dir, out=run, model="seed-cnn", seed=1, force=True, options=TINY, console=console)
    assert {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()} == finished
    monkeypatch.setattr(running, "get_recipe", real_recipe)
    train(data_dir, out=run, model="seed-cnn", seed=1, force=True, options={**TINY, "epochs": 1})
    assert not (run / ".previous-run").exists()  # replaced for good once the new run had a checkpoint
    assert (run / "model" / "weights.safetensors").read_bytes() != finished[Path("model/weights.safetensors")]


def test_a_force_killed_before_its_first_checkpoint_hides_nothing(data_dir, tmp_path):
    # kill -9 (or the OOM killer) before the new run's first checkpoint: the finished run stayed
    # hidden in .previous-run, predict/evaluate/info said "no model yet ... start it again with
    # --force", and following that advice deleted it.
    import shutil

    from rich.console import Console

    from sportsdet.run_folder import PREVIOUS_RUN, RunFolder, clear_run, resolve_bundle_dir

    run = tmp_path / "run"
    train(data_dir, out=run, model="seed-cnn", options={**TINY, "epochs": 1})
    finished = {p.relative_to(run): p.read_bytes() for p in run.rglob("*") if p.is_file()}
    clear_run(RunFolder(run), set_aside=True)  # what --force does first; then its first files, then -9
    shutil.copy(run / PREVIOUS_RUN / "config.json", run / "config.json")
    with pytest.raises(SportsdetError, match=rf"kept in {PREVIOUS_RUN}: `sportsdet train --out .* --resume`"):
        resolve_bundle_dir(run)
    console = Console(record=True, width=300)
    train(None, out=run, resume=True, console=console)
    assert "the run it was to replace is back as it was" in console.export_text()
    assert not (run / PREVIOUS_RUN).exists() and resolve_bundle_dir(run) == run / "model"
    assert (run / "model" / "weights.safetensors").read_bytes() == finished[Path("model/weights.safetensors")]


def test_augmented_training_does_not_depend_on_the_number_of_workers(data_dir, tmp_path) -> None:
    # Each worker count trained another model: augmentation drew from the global random stream, in
    # the main process (shared with dropout) or in each worker (seeded per worker).
    options = {**TINY, "epochs": 2, "augment": True, "cache": False}
    weights = []
    for workers in (0, 2):
        run = tmp_path / f"w{workers}"
        train(data_dir, out=run, model="seed-cnn", options={**options, "workers": workers}, evaluate=False,
              report=False)  # fmt: skip
        weights.append((run / "model" / "weights.safetensors").read_bytes())
    assert _history(tmp_path / "w0") == _history(tmp_path / "w2") and weights[0] == weights[1]
    # A large seed: each photo's stream is seeded modulo 2**64 (--seed 20000000 overflowed it).
    train(data_dir, out=tmp_path / "big seed", model="seed-cnn", seed=2**40, options={**options, "epochs": 1},
          evaluate=False, report=False)  # fmt: skip


def test_bad_image_stops_training_with_a_clear_message(data_dir, tmp_path):
    data = make_dataset(tmp_path / "data")
    bad = data / "green" / "05.png"
    bad.write_bytes(b"<html><body>404 not found</body></html>")
    for workers in (0, 2):  # in the main process and across DataLoader workers
        with pytest.raises(SportsdetError) as caught:
            train(
                data,
                out=tmp_path / f"run{workers}",
                model="seed-cnn",
                options={**TINY, "epochs": 1, "workers": workers, "cache": False},
                split="random:0.2,0",
            )
        message = str(caught.value)
        assert str(bad) in message and "sportsdet data check" in message and "--force" in message
        assert "Traceback" not in message and "DataLoader worker" not in message


def test_early_stopping_and_no_validation_split(data_dir, tmp_path):
    # A learning rate too small to change float32 weights: validation never improves.
    run = tmp_path / "stop"
    options = {**TINY, "epochs": 6, "patience": 1, "optimizer": "sgd", "lr": 1e-12}
    result = train(data_dir, out=run, model="seed-cnn", options=options)
    assert len(result.history) == 2 and result.best["epoch"] == 1

    # --resume used to end such a run in silence, whatever --patience it was given.
    console = Console(file=io.StringIO(), width=200)
    result = train(None, out=run, resume=True, console=console, evaluate=False, report=False)
    assert len(result.history) == 2
    assert "stopped early after epoch 2" in console.file.getvalue()
    assert "--patience N (more than 1, or 0 for never)" in console.file.getvalue()
    console = Console(file=io.StringIO(), width=200)  # the same patience: it stops where it stopped
    result = train(None, out=run, resume=True, options={"patience": 1}, console=console, report=False)
    assert len(result.history) == 2 and "nothing more to train" in console.file.getvalue()
    console = Console(file=io.StringIO(), width=200)
    result = train(None, out=run, resume=True, options={"patience": 3}, console=console, report=False)
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4] and result.best["epoch"] == 1
    assert "training on to epoch 6 with --patience 3" in console.file.getvalue()
    assert load_bundle(run / "model").training["options"]["patience"] == 3

    # Without a validation split, the last epoch is the one kept and early stopping is off.
    run = tmp_path / "noval"
    result = train(
        data_dir, out=run, model="seed-cnn", split="random:0.2,0", options={**options, "epochs": 3}
    )
    assert len(result.history) == 3 and result.best["epoch"] == 3
    assert all(r["val_acc"] == "" for r in _history(run))
    bundle = load_bundle(run / "model")
    assert bundle.metrics["selected_by"].startswith("last epoch")
    assert bundle.training["calibration"]["temperature"] == 1.0  # nothing to fit it on
    assert "no validation split" in bundle.training["calibration"]["why"]
    assert bundle.abstain is None  # nothing to fit an abstain threshold on either


def test_resume_says_what_it_can_and_cannot_do(data_dir, tmp_path):
    # A mistyped --out was created (with a lock file); a run stopped before its first epoch was
    # sent from --resume ("start without --resume") to "already holds a run; use --resume" and
    # back; a mistyped --set was only warned about; --epochs below the epochs run was recorded
    # as the run's; checkpoint temp files a killed process left were never removed.
    typo = tmp_path / "typo" / "run"
    with pytest.raises(SportsdetError, match=r"nothing to resume \(no sportsdet run here"):
        train(None, out=typo, resume=True)
    assert not (tmp_path / "typo").exists()

    never = tmp_path / "never"
    with pytest.raises(KeyboardInterrupt):
        two = {**TINY, "epochs": 2}
        train(data_dir, out=never, model="seed-cnn", options=two, callbacks=[InterruptAfter(1)])
    (never / "checkpoints" / "last.safetensors").unlink()  # as if stopped during epoch 1
    (never / "checkpoints" / "last.json").unlink()
    with pytest.raises(SportsdetError, match="never finished an epoch, so there is nothing to resume"):
        train(None, out=never, resume=True)
    # And the same command without --resume does not send it back to --resume.
    with pytest.raises(SportsdetError, match="never finished an epoch.*--force starts it over") as said:
        train(data_dir, out=never, model="seed-cnn", options=two)
    assert "--resume" not in str(said.value)

    run = tmp_path / "run"
    train(data_dir, out=run, model="seed-cnn", options={**TINY, "epochs": 2}, evaluate=False, report=False)
    finished = tmp_path / "finished"  # a finished run copied without its checkpoints
    shutil.copytree(run, finished, ignore=shutil.ignore_patterns("checkpoints"))
    with pytest.raises(SportsdetError, match=r"already holds a run; --force replaces it, or choose another"):
        train(data_dir, out=finished, model="seed-cnn", options={**TINY, "epochs": 2})
    with pytest.raises(SportsdetError, match=r"unknown training option\(s\) bogus for seed-cnn"):
        train(None, out=run, resume=True, options={"bogus": 1})
    leftover = run / "checkpoints" / ".last.safetensors.abc123.tmp.safetensors"
    leftover.write_bytes(b"half a checkpoint")
    console = Console(record=True, width=200)
    train(None, out=run, resume=True, options={"epochs": 1}, console=console, evaluate=False, report=False)
    assert "--epochs 1: the run has trained 2 epoch(s) already; it ends now, with 2" in console.export_text()
    assert json.loads((run / "config.json").read_text())["options"]["epochs"] == 2
    assert load_bundle(run / "model").manifest["training"]["options"]["epochs"] == 2
    assert not leftover.exists()
    # What the run was trained with stays: another learning rate is said and ignored, not taken.
    console = Console(record=True, width=200)
    train(None, out=run, resume=True, options={"epochs": 3, "lr": 0.5}, console=console, evaluate=False,
          report=False)  # fmt: skip
    assert "--resume keeps the run's lr=0.001; ignoring 0.5" in console.export_text()
    assert json.loads((run / "config.json").read_text())["options"]["lr"] != 0.5


def test_resume_refuses_a_damaged_checkpoint(data_dir, tmp_path):
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(
            data_dir, out=run, model="seed-cnn", options={**TINY, "epochs": 3}, callbacks=[InterruptAfter(1)]
        )
    last = run / "checkpoints" / "last.safetensors"
    kept = last.read_bytes()
    last.write_bytes(kept[:100])
    with pytest.raises(SportsdetError, match="damaged checkpoint"):
        train(None, out=run, resume=True)
    # A missing one was "this run never finished an epoch ... start it again with --force".
    last.unlink()
    with pytest.raises(SportsdetError, match=r"last.safetensors: missing, though the run has finished "
                       r"epochs \(last.json is here\); restore the file to resume"):
        train(None, out=run, resume=True)
    last.write_bytes(kept)
    # A damaged best.safetensors was explained as a kill between the two checkpoint writes.
    best = run / "checkpoints" / "best.safetensors"
    best.write_bytes(best.read_bytes()[:100])
    tensors, state = read_checkpoint(last)
    write_checkpoint(last, tensors, {**state, "best": {**state["best"], "epoch": 0}})  # an earlier best
    with pytest.raises(SportsdetError, match=r"best epoch \(0\) were lost \(best.safetensors is damaged\)"):
        train(None, out=run, resume=True, options={"epochs": 1})


def _add_a_class(split: dict) -> None:
    split["classes"].append("zebra")
    for per_class in split["counts"].values():
        per_class["zebra"] = 0


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        # Tracebacks, or an error naming a flag that was never given ("--epochs='ten'").
        (lambda config, split: config.update(seed="x"), r"config.json: the run's config is damaged"),
        (lambda config, split: config["options"].update(epochs="ten"), r"config.json: .*epochs='ten'"),
        (lambda config, split: config["options"].update(input_size=48), r"last.safetensors: does not fit"),
        (lambda config, split: config["options"].update(optimizer="sgd"), r"last.safetensors: does not fit"),
        (lambda config, split: _add_a_class(split), r"split.json: its classes are not those"),
    ],
)
def test_resume_of_a_hand_edited_run_is_one_clear_error(data_dir, tmp_path, edit, message):
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(data_dir, out=run, model="seed-cnn", options={**TINY, "epochs": 3},
              callbacks=[InterruptAfter(1)])  # fmt: skip
    config, split = (json.loads((run / name).read_text()) for name in ("config.json", "split.json"))
    edit(config, split)
    (run / "config.json").write_text(json.dumps(config))
    (run / "split.json").write_text(json.dumps(split))
    with pytest.raises(SportsdetError, match=message):
        train(None, out=run, resume=True)


def test_cli_train_prints_result_and_errors_without_traceback(data_dir, tmp_path, run_cli, capsys):
    args = ["train", str(data_dir), "--out", str(tmp_path / "run"), "--model", "seed-cnn", "--epochs", "1",
            "--set", "input_size=32", "--batch-size", "8"]  # fmt: skip
    assert run_cli(*args) == 0
    out, err = capsys.readouterr()
    assert "model bundle:" in out and "epoch   1/1" in err and "model bundle" not in err.splitlines()[-1:]
    # Every line whole in a log (the calibration and abstain lines were wrapped at 80 columns).
    said = [line for line in err.splitlines() if line.startswith(("scores not calibrated:", "abstain:"))]
    assert said and all(line.rstrip().endswith(")") for line in said), err
    assert json.loads((tmp_path / "run" / "config.json").read_text())["options"]["input_size"] == 32
    report = tmp_path / "run" / "report.html"
    # The report's line is part of the summary on stdout (it alone went to stderr).
    assert report.is_file() and f"report: {report}" in out and "<html" in report.read_text()[:500].lower()
    assert "test accuracy:" in out and (tmp_path / "run" / "eval" / "metrics.json").is_file()
    # In percent, as the progress, evaluate and the report say them (it printed 0.9219 beside 92.2%).
    assert re.search(r"test accuracy: \d+\.\d% on", out) and re.search(r"best val accuracy: \d+\.\d%", out)
    # `info` on the run shows that test score (bundle.json holds none: it showed no test score).
    tested = json.loads((tmp_path / "run" / "eval" / "metrics.json").read_text())
    assert run_cli("info", str(tmp_path / "run")) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if "test (RUN/eval)" in line)
    assert f"{tested['accuracy']:.1%}" in row and str(tested["n"]) in row
    no_eval = [a if a != str(tmp_path / "run") else str(tmp_path / "quick") for a in args] + ["--no-eval"]
    assert run_cli(*no_eval) == 0
    out, err = capsys.readouterr()
    assert "test accuracy" not in out and not (tmp_path / "quick" / "eval").exists()
    assert "No evaluation yet" in (tmp_path / "quick" / "report.html").read_text()

    assert run_cli(*args) == 2
    out, err = capsys.readouterr()
    assert "already holds a run" in err and "Traceback" not in err and out == ""
    # --classes "" (an unset shell variable) trained on every class.
    assert run_cli(*args[:3], str(tmp_path / "none"), *args[4:], "--classes", "") == 2
    assert "--classes: no class names given" in capsys.readouterr().err

    assert run_cli("train", str(tmp_path / "nothing-here"), "--out", str(tmp_path / "r2")) == 2
    assert "no such folder" in capsys.readouterr().err

    budget = ["train", str(data_dir), "--out", str(tmp_path / "r3"), "--model", "seed-cnn"]
    budget += ["--time-budget", "1m"]
    assert run_cli(*budget) == 2
    assert "--time-budget" in capsys.readouterr().err and not (tmp_path / "r3" / "model").exists()


def test_calibration_refuses_a_validation_split_without_enough_mistakes():
    from sportsdet.training.calibration import (
        MIN_CALIBRATION_ERRORS,
        MIN_CALIBRATION_IMAGES,
        calibrate_temperature,
    )

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    n = MIN_CALIBRATION_IMAGES + 10
    labels = np.arange(n) % 3
    clean = np.eye(3)[labels] * 5.0  # every image right: the NLL would push T towards 0
    info = calibrate_temperature(model, "0.weight", clean, labels)
    assert info["method"] == "none" and info["temperature"] == 1.0 and "0 wrong" in info["why"]
    assert "is too clean to fit" in info["why"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # Too few photos with mistakes enough is "too small", not "too small or too clean".
    few = np.roll(np.eye(3)[labels[:20]] * 5.0, 1, axis=1)
    assert "is too small to fit" in calibrate_temperature(model, "0.weight", few, labels[:20])["why"]
    # A fit that lowers the NLL but leaves confidence further from accuracy (three very sure
    # mistakes push T up; every right answer then reads 73%) is not kept: ECE 4.8% -> 29.9% was.
    sure_mistakes = np.eye(3)[labels[:50]] * 5.0
    for i in range(3):
        sure_mistakes[i] = np.eye(3)[(labels[i] + 1) % 3] * 20.0
    info = calibrate_temperature(model, "0.weight", sure_mistakes, labels[:50])
    assert info["method"] == "none" and "made the validation calibration error worse" in info["why"]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    noisy = clean.copy()
    wrong = list(range(MIN_CALIBRATION_ERRORS + 2))
    noisy[wrong] = np.roll(noisy[wrong], 1, axis=1)  # a few confident mistakes: T must rise above 1
    info = calibrate_temperature(model, "0.weight", noisy, labels)
    assert info["temperature"] > 1.0 and info["valid_nll_after"] < info["valid_nll_before"]
    assert torch.allclose(model.state_dict()["0.weight"], before["0.weight"] / info["temperature"])
    assert torch.allclose(model.state_dict()["0.bias"], before["0.bias"] / info["temperature"])


def test_a_run_folder_in_use_by_another_process_is_refused(data_dir, tmp_path):
    # Two `train --force` into one folder at once mixed one run's labels with the other's weights.
    run = tmp_path / "run"
    with held_by_another_process(run) as pid:
        with pytest.raises(SportsdetError, match=rf"another sportsdet process \(pid {pid}\)"):
            train(data_dir, out=run, model="seed-cnn", force=True, options={**TINY, "epochs": 1})
        assert not (run / "model").exists() and not (run / "split.json").exists()
        # --resume of a run still in its first epoch was told "never finished an epoch ... --force".
        (run / "config.json").write_text("{}")
        with pytest.raises(SportsdetError, match=rf"another sportsdet process \(pid {pid}\)"):
            train(None, out=run, resume=True)
        # A second `train` (no --force) was told "already holds a run; use --resume ... --force".
        (run / "config.json").write_text('{"options": {}}')
        with pytest.raises(SportsdetError, match=rf"another sportsdet process \(pid {pid}\)"):
            train(data_dir, out=run, model="seed-cnn", options={**TINY, "epochs": 1})
        (run / "config.json").unlink()
    # The lock dies with its process (even a killed one): the folder is free again.
    train(data_dir, out=run, model="seed-cnn", force=True, options={**TINY, "epochs": 1})
    assert (run / "model" / "bundle.json").is_file()


def test_near_copies_across_splits_are_said_before_training_and_hashed_once(tmp_path, monkeypatch):
    # The same photo in train and, smaller and saved again, in test; another filed under two classes.
    from test_near_copies import drawn_photo

    from sportsdet import near_copies
    from sportsdet.near_copies import near_copy_hash

    root = tmp_path / "data"
    for split, seeds in (("train", (1, 2, 3, 4)), ("valid", (5,)), ("test", (6, 7))):
        for name in ("polo", "croquet"):
            (root / split / name).mkdir(parents=True)
            for seed in seeds:
                photo = drawn_photo(seed + (20 if name == "croquet" else 0))
                photo.save(root / split / name / f"{seed}.jpg")
    drawn_photo(2).resize((100, 100)).save(root / "test" / "polo" / "web.jpg", quality=70)
    drawn_photo(3).resize((120, 120)).save(root / "train" / "croquet" / "mislabelled.jpg", quality=75)
    hashed: list[int] = []
    monkeypatch.setattr(near_copies, "near_copy_hash", lambda p: hashed.append(1) or near_copy_hash(p))
    run = tmp_path / "run"
    train(root, out=run, model="seed-cnn", options={**TINY, "epochs": 1}, evaluate=False, report=False)
    warnings = json.loads((run / "data_summary.json").read_text())["warnings"]
    [spread] = [w for w in warnings if "near copies" in w and "more than one split" in w]
    assert spread.startswith("1 photo(s) are near copies (one photo saved again, resized or re-saved) in")
    assert "test/polo/web.jpg ~ train/polo/2.jpg" in spread and "1 test photo(s) are also training" in spread
    [torn] = [w for w in warnings if "filed under two classes as near copies" in w]
    assert "train/croquet/mislabelled.jpg (croquet), train/polo/3.jpg (polo)" in torn
    assert len(hashed) == 16  # each of the 16 photos once, when the run starts: the bundle reuses them
    seen = json.loads((run / "model" / "seen_photos.json").read_text())["near_copies"]["splits"]
    train_photos = sorted((root / "train").rglob("*.jpg"))
    assert seen["train"] == sorted({near_copy_hash(p) for p in train_photos})


def test_a_model_that_blew_up_is_not_saved_as_a_success(data_dir, tmp_path):
    # With lr 1e9 the training loss (summed before each update) stayed finite while the weights
    # did not: 'best epoch 1: val_loss nan', a bundle saved and predictions of "nan%".
    run = tmp_path / "run"
    with pytest.raises(SportsdetError, match=r"training diverged at epoch 1 \(loss nan\); lower --lr"):
        one_step = {**TINY, "epochs": 1, "lr": 1e9, "batch_size": 256}  # the loss is of the start
        train(data_dir, out=run, model="seed-cnn", options=one_step)
    assert not (run / "model" / "bundle.json").exists()


@pytest.mark.skipif(sys.platform == "darwin", reason="macOS file names must be UTF-8")
def test_a_class_folder_named_in_latin1_trains_and_saves(tmp_path):
    # Its name reached bundle.json as a lone surrogate: UnicodeEncodeError after the whole
    # training, and no model saved.
    data = make_dataset(tmp_path / "data", per_class=6)
    os.rename(bytes(data / "green"), bytes(data) + b"/caf\xe9")
    run = tmp_path / "run"
    train(data, out=run, model="seed-cnn", options={**TINY, "epochs": 1})
    labels = load_bundle(run / "model").labels
    assert labels == ["blue square", "caf\\xe9", "red"]
    assert all(label.encode("utf-8") for label in labels)


def test_calibration_turned_off_is_recorded_as_such(data_dir, tmp_path):
    # `info` said "not calibrated: no reason recorded".
    run = tmp_path / "run"
    train(data_dir, out=run, model="seed-cnn", options={**TINY, "epochs": 1, "calibrate": False},
          evaluate=False, report=False)  # fmt: skip
    calibration = load_bundle(run / "model").manifest["training"]["calibration"]
    assert calibration["method"] == "none" and calibration["why"] == "turned off (--set calibrate=false)"


def test_a_run_folder_inside_the_data_is_refused(tmp_path, monkeypatch):
    # Its PNGs (curves, galleries) became photos of a class "run" at the next training; and it
    # is said before every photo is hashed (minutes on a large dataset), not after.
    data = make_dataset(tmp_path / "data")

    def no_hashing(photos):
        raise AssertionError("hashed the photos before refusing --out")

    monkeypatch.setattr("sportsdet.training.run.near_hashes", no_hashing)
    with pytest.raises(SportsdetError, match=r"is inside the data folder .*choose an --out outside"):
        train(data, out=data / "run", model="seed-cnn", options={**TINY, "epochs": 1})
    assert not (data / "run").exists()


def test_ctrl_c_after_the_last_epoch_says_what_is_kept(data_dir, tmp_path, monkeypatch, capsys):
    # It exited 130 without a word: no bundle, no evaluation, and no hint of --resume.
    import sportsdet.train as train_module
    import sportsdet.training.run as run_module

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    run = tmp_path / "my run"  # the commands said are pasted into a shell: quoted
    quoted = shlex.quote(str(run))
    real_save = run_module._save_bundle
    monkeypatch.setattr(run_module, "_save_bundle", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(data_dir, out=run, model="seed-cnn", options={**TINY, "epochs": 1})
    said = " ".join(capsys.readouterr().err.split())
    assert f"model bundle was written: finish with `sportsdet train --out {quoted} --resume`" in said
    monkeypatch.setattr(run_module, "_save_bundle", real_save)
    monkeypatch.setattr(train_module, "_evaluate_test_split", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(None, out=run, resume=True)
    said = " ".join(capsys.readouterr().err.split())
    assert (run / "model" / "bundle.json").is_file()
    assert f"the model bundle is saved in {run / 'model'}" in said
    assert f"`sportsdet evaluate {quoted}`" in said


def test_a_saved_split_is_said_with_its_own_seed(data_dir, tmp_path) -> None:
    # `--split FILE --seed 5` said "(random:0.2, seed 5)" of a split drawn with seed 0.
    from sportsdet.data.splits import make_split

    saved = make_split(data_dir, "random:0.2", seed=0).save(tmp_path / "split.json")
    console = Console(file=io.StringIO(), width=300)
    train(data_dir, out=tmp_path / "run", model="seed-cnn", seed=5, split=str(saved),
          options={**TINY, "epochs": 1}, console=console, evaluate=False, report=False)  # fmt: skip
    assert "(random:0.2, split seed 0, run seed 5)" in console.file.getvalue()


def test_resume_goes_on_without_a_test_photo_but_not_without_a_training_one(data_dir, tmp_path) -> None:
    # A test photo gone since: the resume was refused, "1 training file(s) are gone".
    data = tmp_path / "data"
    shutil.copytree(data_dir, data)
    run = tmp_path / "run"
    train(data, out=run, model="seed-cnn", options={**TINY, "epochs": 1}, evaluate=False, report=False)
    split = SplitManifest.load(run / "split.json")
    (split.root / split.splits["test"][0][0]).unlink()
    train(None, out=run, resume=True, options={"epochs": 2}, evaluate=False, report=False)
    assert len(list(csv.DictReader(open(run / "metrics.csv", encoding="utf-8")))) == 2
    (split.root / split.splits["train"][0][0]).unlink()
    with pytest.raises(SportsdetError, match="1 training or validation file") as one_gone:
        train(None, out=run, resume=True, options={"epochs": 3}, evaluate=False, report=False)
    assert "moved?" not in str(one_gone.value)
    # Every photo gone (the run copied to another machine, its data moved): the split can follow them.
    moved = tmp_path / "moved"
    data.rename(moved)
    said = rf"moved\? `sportsdet train NEW_PLACE --split {run / 'split.json'} --out NEW_RUN` trains on"
    with pytest.raises(SportsdetError, match=said):
        train(None, out=run, resume=True, options={"epochs": 3}, evaluate=False, report=False)
    train(moved, out=tmp_path / "new run", split=str(run / "split.json"), model="seed-cnn",
          options={**TINY, "epochs": 1}, evaluate=False, report=False)  # fmt: skip
    assert SplitManifest.load(tmp_path / "new run" / "split.json").splits["valid"] == split.splits["valid"]


def test_resuming_a_finished_run_says_there_is_nothing_more_to_train(data_dir, tmp_path) -> None:
    run = tmp_path / "run"
    train(data_dir, out=run, model="seed-cnn", options={**TINY, "epochs": 1}, evaluate=False, report=False)
    console = Console(file=io.StringIO(), width=300)
    train(None, out=run, resume=True, console=console, evaluate=False, report=False)
    said = console.file.getvalue()
    assert "the run has trained its 1 epoch(s); nothing more to train" in said
    assert "--resume --epochs N (above 1)" in said
    # Its bundle is kept: written again, it dropped the exports beside it (model.onnx) and, with
    # new weights' hash, made the run's other evaluations read as an earlier model's.
    assert "the model bundle is kept as it is" in said
    before = (run / "model" / "bundle.json").read_bytes()
    (run / "model" / "model.onnx").write_bytes(b"an export")
    train(None, out=run, resume=True, console=Console(file=io.StringIO()), evaluate=False, report=False)
    assert (run / "model" / "bundle.json").read_bytes() == before
    assert (run / "model" / "model.onnx").read_bytes() == b"an export"
    # ... also with another --workers or --patience, which shape no epoch already trained.
    for changed in ({"workers": 0}, {"patience": 2}):
        train(None, out=run, resume=True, options=changed, console=Console(file=io.StringIO()),
              evaluate=False, report=False)  # fmt: skip
        assert (run / "model" / "model.onnx").read_bytes() == b"an export", changed
    (run / "model" / "weights.safetensors").write_bytes(b"damaged")  # written again when it is not whole
    train(None, out=run, resume=True, console=Console(file=io.StringIO()), evaluate=False, report=False)
    assert load_bundle(run / "model").num_classes > 0
    (run / "model" / "seen_photos.json").unlink()  # a part missing: written again too
    train(None, out=run, resume=True, console=Console(file=io.StringIO()), evaluate=False, report=False)
    assert (run / "model" / "seen_photos.json").is_file()
    console = Console(file=io.StringIO(), width=300)
    train(None, out=run, resume=True, options={"epochs": 2}, console=console, evaluate=False, report=False)
    assert "nothing more to train" not in console.file.getvalue()
    assert "kept as it is" not in console.file.getvalue()
    assert load_bundle(run / "model").manifest["training"]["epochs_run"] == 2


def test_ctrl_c_says_the_epochs_the_checkpoint_holds(data_dir, tmp_path, monkeypatch) -> None:
    # Ctrl-C after an epoch's history row, before its checkpoint: "interrupted after 2 finished
    # epoch(s)" of a checkpoint at epoch 1 (and --resume then said "resuming after epoch 1").
    import sportsdet.training.callbacks as callbacks

    real = callbacks.write_checkpoint

    def stopped(path, tensors, state):
        if path.name == "last.safetensors" and state["epoch"] == 2:
            raise KeyboardInterrupt
        real(path, tensors, state)

    monkeypatch.setattr(callbacks, "write_checkpoint", stopped)
    console = Console(record=True, width=200)
    with pytest.raises(KeyboardInterrupt):
        options = {**TINY, "epochs": 3}
        train(data_dir, out=tmp_path / "run", model="seed-cnn", options=options, console=console)
    _, last = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.safetensors")
    assert last["epoch"] == 1
    assert "interrupted after 1 finished epoch(s); the last checkpoint is kept" in console.export_text()


def test_a_training_photo_deleted_after_the_epochs_does_not_lose_the_run(tmp_path) -> None:
    # The bundle's seen_photos.json read every photo again at the end: one deleted during training
    # was "file not found", exit 2, no model/, and --resume refused the run ("files are gone").
    data = make_dataset(tmp_path / "data", per_class=6)

    class DeleteOne(Callback):
        def on_train_end(self, ctx):
            path, _ = ctx.manifest.items("train")[0]
            Path(path).unlink()

    console = Console(record=True, width=200)
    options = {**TINY, "epochs": 1}
    train(data, out=tmp_path / "run", model="seed-cnn", options=options, callbacks=[DeleteOne()],
          console=console, evaluate=False, report=False)  # fmt: skip
    assert (tmp_path / "run" / "model" / "bundle.json").is_file()
    said = console.export_text()
    assert "1 training or validation photo(s) are gone since training read them" in said
    seen = json.loads((tmp_path / "run" / "model" / "seen_photos.json").read_text())
    trained = SplitManifest.load(tmp_path / "run" / "split.json").items("train")
    assert len(seen["splits"]["train"]) == len(trained) - 1  # the gone one left out


def test_a_full_disk_while_training_says_the_last_checkpoint_is_kept(tmp_path: Path, monkeypatch) -> None:
    # "error: .../.last.safetensors.eb20aj8g.tmp.safetensors: No space left on device", and nothing
    # said that epoch 1 was kept nor that --resume would go on once there was room.
    import errno
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from sportsdet.training import run as running
    from sportsdet.training.checkpoint import write_checkpoint

    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    write_checkpoint(checkpoints / "last.safetensors", {"w": torch.zeros(1)}, {"epoch": 3})
    shown = io.StringIO()
    ctx = SimpleNamespace(
        run_dir=tmp_path / "run", checkpoint_dir=checkpoints, history=[], options=SimpleNamespace(recipe="x"),
        console=Console(file=shown, width=300),
    )

    def full(ctx):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(running, "get_recipe", lambda name: full)
    with pytest.raises(OSError):
        running._run_recipe(ctx)
    said = shown.getvalue()
    assert "the checkpoint of epoch 3 is kept" in said
    assert f"sportsdet train --out {tmp_path / 'run'} --resume" in said
    # A --force run that filled the disk before its first checkpoint: the finished run it replaced
    # came back, and the advice to --resume would only have scored that one again.
    monkeypatch.setattr(running, "_settle_replaced_run", lambda ctx: True)
    shown.truncate(0)
    with pytest.raises(OSError):
        running._run_recipe(ctx)
    said = shown.getvalue()
    assert "is back as it was; once this is fixed, start again with --force" in said
    assert "--resume" not in said and "is kept" not in said


def test_the_best_epoch_is_the_higher_accuracy_then_the_lower_loss() -> None:
    from sportsdet.training.loop import is_better

    best = {"val_acc": 0.8, "val_loss": 0.5}
    assert is_better({"val_acc": 0.8, "val_loss": 0.4}, best)  # a tie in accuracy: lower loss wins
    assert not is_better({"val_acc": 0.8, "val_loss": 0.6}, best)
    assert not is_better({"val_acc": 0.8, "val_loss": 0.5}, best)  # an equal epoch keeps the earlier
    assert is_better({"val_acc": 0.9, "val_loss": 9.0}, best)  # accuracy first, whatever the loss
    assert not is_better({"val_acc": 0.7, "val_loss": 0.1}, best)


@pytest.mark.parametrize("preset", ["light", "photo"])
def test_augmentation_mirrors_left_to_right_but_never_turns_a_photo_upside_down(preset: str) -> None:
    # Sports photos have a sky and a ground: an upside-down view is no photo anyone takes.
    from PIL import Image

    from sportsdet.data.augment import augmentation
    from sportsdet.preprocess import Preprocessing

    photo = Image.new("RGB", (64, 64), (220, 20, 20))  # red above (and left), blue below (and right)
    photo.paste((20, 20, 220), (0, 32, 64, 64))
    photo.paste((220, 20, 220), (32, 0, 64, 32))  # the top right quarter magenta: shows a mirror
    transform = augmentation(Preprocessing(input_size=32, resize="crop"), preset)
    mirrored = 0
    for seed in range(40):
        torch.manual_seed(seed)
        view = np.asarray(transform(photo), dtype=float)
        top, bottom = view[:4].mean(axis=(0, 1)), view[-4:].mean(axis=(0, 1))
        assert top[0] - top[2] >= bottom[0] - bottom[2] - 20, seed  # redder at the top, always
        left, right = view[:4, :4].mean(axis=(0, 1)), view[:4, -4:].mean(axis=(0, 1))
        mirrored += left[2] > right[2] + 40  # the magenta quarter came out on the left
    assert 5 <= mirrored <= 35  # mirrored about half the time


def test_each_epoch_shuffles_the_photos_anew_and_the_same_way_every_run() -> None:
    from sportsdet.data.dataset import EpochShuffleSampler

    sampler = EpochShuffleSampler(50, seed=7)
    orders = []
    for epoch in (0, 1, 0):
        sampler.set_epoch(epoch)
        orders.append(list(sampler))
    assert sorted(orders[0]) == list(range(50))
    assert orders[0] != orders[1] and orders[0] == orders[2]
    other_seed = EpochShuffleSampler(50, seed=8)
    assert list(other_seed) != orders[0]
