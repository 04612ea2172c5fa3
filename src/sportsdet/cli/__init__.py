"""`sportsdet` command line: one module per verb, all registered on one Typer app.

Verb modules import heavy libraries (torch, matplotlib) inside their functions so that
`sportsdet --help` and `sportsdet predict` stay quick.
"""

from __future__ import annotations

import sys

from rich.markup import escape

from sportsdet.cli.app import app, err_console
from sportsdet.errors import SportsdetError

# Importing the verb modules registers their commands on `app`.
from sportsdet.cli import data as _data  # noqa: E402,F401  isort: skip
from sportsdet.cli import train as _train  # noqa: E402,F401  isort: skip
from sportsdet.cli import evaluate as _evaluate  # noqa: E402,F401  isort: skip
from sportsdet.cli import predict as _predict  # noqa: E402,F401  isort: skip
from sportsdet.cli import models as _models  # noqa: E402,F401  isort: skip
from sportsdet.cli import report as _report  # noqa: E402,F401  isort: skip
from sportsdet.cli import export as _export  # noqa: E402,F401  isort: skip
from sportsdet.cli import serve as _serve  # noqa: E402,F401  isort: skip

EXIT_USER_ERROR = 2


def main() -> None:
    """Console entry point: user errors become one red line and exit code 2, never a traceback."""
    try:
        app(standalone_mode=True)
    except SportsdetError as exc:
        # escape(): messages often hold [lists] that rich would read as markup
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)


__all__ = ["app", "main"]
