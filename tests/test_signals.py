"""SIGTERM ends a command the way Ctrl-C does, and a checkpoint write finishes before either."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler

import pytest
from conftest import LocalServer

from sportsdet.files import signals_deferred


def test_a_signal_during_a_deferred_write_takes_effect_after_it(ctrl_c_raises) -> None:
    finished = []
    with pytest.raises(KeyboardInterrupt):
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler would have run by now
            finished.append(True)
    assert finished == [True]

    seen: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        with signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            assert seen == []  # not yet: the write is not finished
        assert seen == [signal.SIGTERM]  # then the handler in place before gets it
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_sigterm_during_a_download_leaves_nothing_and_exits_143(http_server: LocalServer, tmp_path) -> None:
    # Python's default ended the process on the spot: every SIGTERM (timeout, docker stop, a
    # scheduler) left a hidden .part file of the archive, and a rerun added another.
    def endless(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/zip")
        h.send_header("Content-Length", str(50_000_000))
        h.end_headers()
        for _ in range(400):
            h.wfile.write(b"\0" * 4096)
            h.wfile.flush()
            time.sleep(0.02)

    http_server.routes["/slow/photos.zip"] = endless
    dest = tmp_path / "data"
    process = subprocess.Popen(
        [sys.executable, "-m", "sportsdet", "data", "fetch", http_server.url("/slow/photos.zip"), "--dest",
         str(dest)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for _ in range(300):  # the .part file appears once the body flows
            if any((dest / "downloads").glob(".photos.zip.part-*")):
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the download never started")
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 143, err
    assert "Traceback" not in err
    assert list((dest / "downloads").iterdir()) == []


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_stopping_predict_mid_stream_exits_cleanly(tmp_path, signum: int, code: int) -> None:
    # The workers were left inside onnxruntime's run at exit: the process aborted ("terminate
    # called without an active exception", exit 134) on every Ctrl-C or SIGTERM while labelling.
    from conftest import image_bytes

    folder = tmp_path / "photos"
    folder.mkdir()
    photo = image_bytes((40, 120, 200), "JPEG", size=320)
    for i in range(2000):  # many: the run is still going when the signal comes, on a fast machine too
        (folder / f"{i:04d}.jpg").write_bytes(photo)
    process = subprocess.Popen(
        [sys.executable, "-m", "sportsdet", "predict", str(folder), "--format", "csv", "--top-k", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # As from a terminal: a test run started in the background (CI) ignores SIGINT, and the
        # child would inherit that, label every photo and exit 0.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    try:
        assert process.stdout is not None
        for _ in range(3):  # the header, then photos being labelled: workers are in the model now
            assert process.stdout.readline()
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == code, stderr
    assert "terminate called" not in stderr


def test_a_signal_as_the_partial_file_is_made_leaves_nothing(http_server: LocalServer, tmp_path, monkeypatch,
                                                             ctrl_c_raises) -> None:
    # The test above failed once in a full run: the SIGTERM came between mkstemp and the try that
    # removes the .part file, which stayed. Here the signal comes exactly there, every time.
    import tempfile

    from sportsdet.fetch import download_file

    made = tempfile.mkstemp

    def mkstemp_then_ctrl_c(*args, **kwargs):
        made_file = made(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the handler runs here unless it is held off
        return made_file

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp_then_ctrl_c)
    dest = tmp_path / "downloads" / "photos.bin"
    with pytest.raises(KeyboardInterrupt):
        download_file(http_server.url("/download.bin"), dest, timeout=5, progress=False)
    assert list(dest.parent.iterdir()) == []


def test_ctrl_c_no_command_speaks_of_says_what_it_left(run_cli, capsys, monkeypatch, tmp_path) -> None:
    # typer turned it into exit code 130 with a blank line: `data split`, `export`, `report` and
    # `data fetch` said nothing at all.
    import sportsdet.data.discover as discover

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(discover, "scan_dataset", interrupted)
    assert run_cli("data", "split", str(tmp_path)) == 130
    assert "interrupted: no file is left half written; run the same command again" in capsys.readouterr().err


def _drop_an_interrupt() -> None:
    """A Ctrl-C raised inside a weakref callback: Python cannot raise it, it goes to
    sys.unraisablehook (as one landing in torch's many callbacks does)."""
    import weakref

    class Thing:
        pass

    def callback(ref):
        raise KeyboardInterrupt

    thing = Thing()
    watch = weakref.ref(thing, callback)
    del thing
    assert watch() is None


def test_ctrl_c_python_dropped_in_a_callback_is_not_lost(run_cli, capsys, monkeypatch, tmp_path) -> None:
    # Ctrl-C landing in a weakref or garbage-collection callback was printed as "Exception ignored
    # in ..." with a traceback, and the command (train's evaluation) ran on to exit code 0.
    from conftest import make_image_tree

    import sportsdet.data.discover as discover

    real_scan = discover.scan_dataset

    def scan_with_a_dropped_interrupt(*args, **kwargs):
        _drop_an_interrupt()
        return real_scan(*args, **kwargs)

    monkeypatch.setattr(discover, "scan_dataset", scan_with_a_dropped_interrupt)
    tree = make_image_tree(tmp_path / "data", per_class=4)
    assert run_cli("data", "scan", str(tree)) == 130
    err = capsys.readouterr().err
    assert "interrupted as the command was finishing; it finished all the same" in err
    assert "Exception ignored" not in err


def test_ctrl_c_python_dropped_during_training_stops_it(run_cli, capsys, monkeypatch, tmp_path) -> None:
    # Dropped in a weakref callback (torch makes many), the Ctrl-C was only said at the end: the run
    # went on to its last epoch, minutes later. It stops at the next batch, resumable.
    from conftest import make_image_tree

    import sportsdet.training.loop as loop

    real_lr, calls = loop.current_lr, []

    def lr_with_a_dropped_interrupt(optimizer):
        calls.append(1)
        if len(calls) == 3:
            _drop_an_interrupt()
        return real_lr(optimizer)

    monkeypatch.setattr(loop, "current_lr", lr_with_a_dropped_interrupt)
    tree = make_image_tree(tmp_path / "data", per_class=4)
    run = tmp_path / "run"
    args = ["train", str(tree), "--out", str(run), "--model", "seed-cnn", "--epochs", "50",
            "--batch-size", "4", "--set", "input_size=32", "--no-eval"]  # fmt: skip
    assert run_cli(*args) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Exception ignored" not in err and "finished all the same" not in err
    epochs = (run / "metrics.csv").read_text().splitlines()[1:] if (run / "metrics.csv").exists() else []
    assert len(epochs) < 5  # stopped, not 50 epochs later


def test_ctrl_c_training_spoke_of_gets_no_second_word(run_cli, capsys, monkeypatch, tmp_path) -> None:
    # Training said "nothing to resume. Start again with --force", then the entry point added "run
    # the same command again", which was refused ("already holds a run").
    from conftest import make_image_tree

    import sportsdet.training.run as running

    def interrupted(ctx):
        raise KeyboardInterrupt

    monkeypatch.setattr(running, "get_recipe", lambda name: interrupted)
    tree = make_image_tree(tmp_path / "data", per_class=4)
    assert run_cli("train", str(tree), "--out", str(tmp_path / "run"), "--model", "seed-cnn") == 130
    err = capsys.readouterr().err
    assert "interrupted before the first checkpoint was written" in err
    assert "run the same command again" not in err


def test_ctrl_c_while_the_command_line_loads_is_one_line(tmp_path) -> None:
    # Ctrl-C in the first tenths of a second (typer, rich, numpy loading) ended in a
    # KeyboardInterrupt traceback: the console script imported sportsdet.cli before main ran.
    (tmp_path / "typer.py").write_text("raise KeyboardInterrupt\n")  # as if Ctrl-C came right then
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run([sys.executable, "-m", "sportsdet", "info"], capture_output=True, text=True,
                          env=env, timeout=60)  # fmt: skip
    assert done.returncode == 130 and done.stderr == "interrupted\n", done.stderr
