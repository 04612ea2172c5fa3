"""The Typer application objects that every verb module registers its commands on."""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from sportsdet.files import printable_name

app = typer.Typer(
    name="sportsdet",
    help="Recognise the sport in a photograph: check data, train, evaluate, predict.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
data_app = typer.Typer(
    help="Find, check and summarise image folders.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(data_app, name="data")

# Results go to stdout; progress, warnings and errors go to stderr so output can be piped.
console = Console(emoji=False)  # ":soccer:" in a class or file name is text, not a ball
err_console = Console(stderr=True, emoji=False)


def plain(value: object) -> str:
    """Any data string (path, class name, message) made safe to put into rich markup.

    Our own styling is markup ("[red]error[/]"), so text from users and data must be escaped
    wherever it reaches a console or a table cell: a class folder named "[bold]polo" would
    otherwise be swallowed as a style tag. Every CLI site goes through this one helper.
    """
    # A file name that is not UTF-8 shows its bytes as \xff escapes, as in CSV and JSON output
    # (the terminal got the raw bytes: 'bad\ufffd' on screen, or a table pushed out of line).
    text = printable_name(str(value))
    return escape(_CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode(), text))


# Control characters but newline and tab: a file named with an ANSI escape must not recolour,
# move the cursor in or retitle the user's terminal; it is shown as \x1b instead.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def given_path(path: Path | None) -> Path | None:
    """An output path as the user meant it: `--report=~/r.json` (or '~/r.json' quoted) made a
    folder named ~ in the working folder, where train --out and every input path read the home
    folder."""
    return None if path is None else Path(os.path.expanduser(path))


def print_data(line: str) -> None:
    """One line of machine-readable output (CSV, JSON) on stdout, exactly as given: click strips
    ANSI escapes when stdout is not a terminal, which wrote a file named with one as another name."""
    typer.echo(line, color=True)


def warn(message: str, *, label: str = "warning") -> None:
    """One yellow `warning: ...` line on stderr, the message shown as plain text."""
    err_console.print(f"[yellow]{label}:[/] {plain(message)}", highlight=False, soft_wrap=True)


# The longest wait any seconds option takes (a day, far beyond what any of them is for): `inf`
# reached socket.settimeout and int() as an OverflowError traceback.
MAX_SECONDS = 86_400.0


def number_from(low: float, high: float, what: str) -> Callable[[float | None], float | None]:
    """A typer callback refusing a number outside low..high, nan and inf included, in words.

    Used instead of typer's min/max, which told 'nan' it "should be less than or equal to" the top.
    """

    def check(value: float | None) -> float | None:
        if value is not None and not low <= value <= high:
            span = f"{_plain_number(low)} to {_plain_number(high)}"
            raise typer.BadParameter(f"{value}: give {what} from {span}")
        return value

    return check


def _plain_number(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)  # 1048576, not 1.04858e+06


def seconds_from(low: float, high: float = MAX_SECONDS) -> Callable[[float | None], float | None]:
    return number_from(low, high, "seconds")


_score = number_from(0, 1, "a score")


def min_score_option() -> typer.models.OptionInfo:
    """--min-score, as `predict` and `serve` take it."""
    return typer.Option(
        None,
        "--min-score",
        callback=_score,
        help="Say 'uncertain' (no label, best guess kept in top-k) when the top score is under this "
        "(0 to 1). Default: the model's own abstain rule, fitted on validation photos (`sportsdet info` "
        "shows it; it may weigh every score, not only the top one).",
    )


def no_abstain_option() -> typer.models.OptionInfo:
    return typer.Option(
        False, "--no-abstain", help="Always give the top label, even for photos the model is unsure of."
    )


def check_abstain_options(no_abstain: bool, min_score: float | None) -> None:
    from sportsdet.errors import SportsdetError

    if no_abstain and min_score is not None:
        raise SportsdetError("--min-score and --no-abstain contradict each other; give one of them")


def _print_version(value: bool) -> None:
    if value:
        from sportsdet._version import __version__

        console.print(f"sportsdet {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _global_options(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Recognise the sport in a photograph: check data, train, evaluate, predict."""


def reflow_help(typer_app: typer.Typer) -> None:
    """Join the lines of each paragraph of every command's help, so that it wraps to the terminal.

    Typer keeps a docstring's line breaks after its first paragraph, so at 80 columns a line
    written 100 long broke into one full and one short line.
    """
    for info in typer_app.registered_commands:
        text = info.help or (info.callback.__doc__ if info.callback else None)
        if text:
            info.help = "\n\n".join(_joined(paragraph) for paragraph in inspect.cleandoc(text).split("\n\n"))
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            reflow_help(group.typer_instance)


def _joined(paragraph: str) -> str:
    """One paragraph on one line; a list, an indented block or a \\b (keep as is) block stays."""
    if re.search(r"^(\s|[-*] |\x08)", paragraph, re.MULTILINE):
        return paragraph
    return " ".join(paragraph.split())
