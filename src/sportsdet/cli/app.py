"""The Typer application objects that every verb module registers its commands on."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

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
console = Console()
err_console = Console(stderr=True)


def plain(value: object) -> str:
    """Any data string (path, class name, message) made safe to put into rich markup.

    Our own styling is markup ("[red]error[/]"), so text from users and data must be escaped
    wherever it reaches a console or a table cell: a class folder named "[bold]polo" would
    otherwise be swallowed as a style tag. Every CLI site goes through this one helper.
    """
    return escape(str(value))


def warn(message: str, *, label: str = "warning") -> None:
    """One yellow `warning: ...` line on stderr, the message shown as plain text."""
    err_console.print(f"[yellow]{label}:[/] {plain(message)}", highlight=False, soft_wrap=True)


def _print_version(value: bool) -> None:
    if value:
        from sportsdet import __version__

        console.print(f"sportsdet {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _global_options(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Recognise the sport in a photograph: check data, train, evaluate, predict."""
