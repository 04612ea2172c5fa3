"""Every command's --help: it works, and its prose wraps to the terminal's width."""

from __future__ import annotations

import pytest

COMMANDS = [
    ["train"], ["evaluate"], ["predict"], ["export"], ["serve"], ["report"], ["info"], ["models"],
    ["data", "scan"], ["data", "check"], ["data", "split"], ["data", "fetch"],
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_prose_fills_the_terminal_line_by_line(command, run_cli, capsys, monkeypatch) -> None:
    # A docstring's own line breaks (written ~100 wide) used to survive into the help, so at 80
    # columns each broke again: one full line, then a stub of a few words.
    monkeypatch.setenv("COLUMNS", "80")
    assert run_cli(*command, "--help") == 0
    out = capsys.readouterr().out
    prose = out.split("Usage:", 1)[1].split("╭", 1)[0].splitlines()[2:]
    assert all(len(line) <= 80 for line in out.splitlines())
    for line, following in zip(prose, prose[1:], strict=False):
        if line.strip() and following.strip():  # within a paragraph, a line ends only when full
            assert len(line.rstrip()) + 1 + len(following.split()[0]) > 78, (line, following)


@pytest.mark.parametrize(
    ("command", "usage"),
    [
        (["train"], "[OPTIONS] [DATA]..."),
        (["evaluate"], "[OPTIONS] {MODEL} [DATA]"),
        (["predict"], "[OPTIONS] {INPUTS}..."),
        (["export"], "[OPTIONS] {BUNDLE}"),
        (["info"], "[OPTIONS] [BUNDLE]"),
        (["data", "scan"], "[OPTIONS] {DATA}..."),
        (["data", "fetch"], "[OPTIONS] [SOURCE]"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_the_usage_line_names_arguments_as_the_readme_does(command, usage, run_cli, capsys) -> None:
    # They read {paths}..., {inputs}..., {bundle}: the parameters' Python names.
    assert run_cli(*command, "--help") == 0
    assert f"sportsdet {' '.join(command)} {usage}" in capsys.readouterr().out


def test_a_paragraph_of_the_train_help_reads_as_one(run_cli, capsys, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    assert run_cli("train", "--help") == 0
    assert "to stdout. Ctrl-C keeps the last finished epoch" in capsys.readouterr().out


def test_the_short_options_mean_the_same_in_every_command() -> None:
    # `data split -o x.json` and `train -b 2` were "No such option", while -o and -b worked
    # elsewhere for the same thing.
    import typer.main

    from sportsdet.cli import app

    def names(path: list[str]) -> dict[str, set[str]]:
        command = typer.main.get_command(app)
        for word in path:
            command = command.commands[word]
        return {param.name: set(param.opts) for param in command.params}

    for path in (["train"], ["evaluate"], ["export"], ["report"], ["data", "split"]):
        assert "-o" in names(path)["out"], path
    for path in (["train"], ["evaluate"], ["predict"]):
        assert "-b" in names(path)["batch_size"], path


@pytest.mark.parametrize(
    "args",
    [
        # (--model nowhere: were the number taken, the command stops there, not serve for ever)
        ["serve", "--model", "nowhere", "--max-upload-mb", "inf"],  # int(inf): an OverflowError traceback
        ["serve", "--model", "nowhere", "--max-wait-ms", "inf"],  # taken, then every request a 504
        ["serve", "--model", "nowhere", "--request-timeout", "inf"],
        ["predict", "x.jpg", "--timeout", "inf"],  # socket.settimeout(inf) overflows
        ["data", "fetch", "http://127.0.0.1:9/x.zip", "--timeout", "inf"],
    ],
    ids=" ".join,
)
def test_an_endless_number_is_refused_as_a_usage_error(args, run_cli, capsys) -> None:
    assert run_cli(*args) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "inf: give " in err and " from " in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["predict", "x.jpg", "--timeout", "nan"], "nan: give seconds from 0.1 to 86400"),
        (["serve", "--model", "nowhere", "--max-upload-mb", "nan"], "nan: give MB from 0.001 to 1048576"),
        (["serve", "--model", "nowhere", "--max-wait-ms", "-1"], "-1.0: give milliseconds from 0 to 10000"),
        (["data", "fetch", "http://127.0.0.1:9/x", "--timeout", "0.5"], "0.5: give seconds from 1 to 86400"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else "",
)
def test_a_number_out_of_range_is_told_its_range(args, said, run_cli, capsys) -> None:
    # typer's own range check told 'nan' it "should be less than or equal to 86400".
    assert run_cli(*args) == 2
    assert said in " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize("value", ["nan", "1.5", "-0.1"])
def test_a_min_score_outside_0_to_1_is_refused_in_words(value, run_cli, capsys) -> None:
    # 'nan' was told it "should be less than or equal to 1".
    assert run_cli("predict", "x.jpg", "--min-score", value) == 2
    assert "give a score from 0 to 1" in capsys.readouterr().err


def test_a_batch_wait_as_long_as_the_request_timeout_is_refused(run_cli, capsys) -> None:
    # Taken, it answered every request 504 after waiting for a batch the whole timeout.
    args = ("serve", "--model", "nowhere", "--max-wait-ms", "3000", "--request-timeout", "1")
    assert run_cli(*args) == 2
    said = " ".join(capsys.readouterr().err.split())
    assert "--max-wait-ms 3000 is as long as --request-timeout 1 s" in said
