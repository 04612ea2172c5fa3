"""The Typer application objects that every verb module registers its commands on."""

from __future__ import annotations

import typer
from rich.console import Console

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
