"""Errors a user can act on.

Anything raised as a `SportsdetError` is shown by the CLI as a one-line message (no traceback)
and ends the command with exit code 2. The message must name the file and the problem and,
where possible, what to do about it.
"""


class SportsdetError(Exception):
    """A problem with the user's input or environment, with a message meant for people."""


class ImageLoadError(SportsdetError):
    """An image could not be read. `kind` says why, in one machine-readable word."""

    def __init__(self, path: str, kind: str, detail: str) -> None:
        self.path = path
        self.kind = kind
        self.detail = detail
        super().__init__(f"{path}: {detail}")


class BundleError(SportsdetError):
    """A model bundle is missing, incomplete or inconsistent."""
