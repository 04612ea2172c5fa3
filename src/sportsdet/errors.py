"""Errors a user can act on.

Anything raised as a `SportsdetError` is shown by the CLI as a one-line message (no traceback)
and ends the command with exit code 2. The message must name the file and the problem and,
where possible, what to do about it.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence


class SportsdetError(Exception):
    """A problem with the user's input or environment, with a message meant for people."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is (see `sportsdet.cli.main`)."""


class InterruptSaid(KeyboardInterrupt):
    """Ctrl-C, after the command has said what it kept and what to run next (the entry point then
    adds nothing of its own)."""


# Ctrl-C that Python dropped: raised inside a garbage-collection or weakref callback, it cannot
# propagate (the CLI's sys.unraisablehook records it here). Long loops raise it again at a point
# where they can stop on it: a training run went on to its last epoch, minutes later.
DROPPED_INTERRUPTS: list[KeyboardInterrupt] = []


def raise_dropped_interrupt() -> None:
    """Raise the Ctrl-C (or SIGTERM) Python dropped in a callback, if any, here and now."""
    if DROPPED_INTERRUPTS:
        raise DROPPED_INTERRUPTS.pop()


class ImageLoadError(SportsdetError):
    """An image could not be read. `kind` says why, in one machine-readable word."""

    def __init__(self, path: str, kind: str, detail: str) -> None:
        self.path = path
        self.kind = kind
        self.detail = detail
        super().__init__(f"{path}: {detail}")


class WriteError(SportsdetError):
    """A file could not be written (disk full, read-only, no permission): fixable where it runs,
    and what was written before it is still there (training can then be resumed)."""


class BundleError(SportsdetError):
    """A model bundle is missing, incomplete or inconsistent."""


def quoted_with_hint(name: str, known: Sequence[str]) -> str:
    """'name', followed by " (did you mean 'x'?)" when `known` holds names close to it (a typo, or
    the same name in other capitals): for errors about a class name nobody has."""
    # 0.7: 'swiming' -> 'swimming' (0.93) and 'air-hockey' -> 'air hockey' (0.9) are hinted,
    # 'curling' -> 'rowing' (0.62) is not: a wrong hint misleads more than none.
    by_lower = {k.lower(): k for k in known}
    close = [by_lower[k] for k in difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.7)]
    close = [candidate for candidate in close if _word_by_word(name.lower(), candidate.lower())]
    return repr(name) + (f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else "")


def _word_by_word(typed: str, candidate: str) -> bool:
    """Close in each word, not only overall: 'ampute football' is 0.79 like 'american football' (one
    word shared), and the hint sent a user to file amputee football under American football."""
    split = re.compile(r"[\s_\-]+")
    words, others = split.split(typed.strip()), split.split(candidate.strip())
    if len(words) != len(others):  # 'formula1' / 'formula 1': the letters as one
        return difflib.SequenceMatcher(None, "".join(words), "".join(others)).ratio() >= 0.85
    pairs = zip(words, others, strict=True)
    return all(_close_word(a, b) for a, b in pairs)


def _close_word(a: str, b: str) -> bool:
    """One typo apart ('wat' / 'war', 'sky' / 'ski': short words score low on ratio alone), or close."""
    if a == b or difflib.SequenceMatcher(None, a, b).ratio() >= 0.75:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):  # one letter changed
        return sum(x != y for x, y in zip(a, b, strict=True)) == 1
    short, long = sorted((a, b), key=len)  # one letter added or dropped
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))
