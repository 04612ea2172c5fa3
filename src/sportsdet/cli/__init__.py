"""`sportsdet` command line: one module per verb, all registered on one Typer app.

Verb modules import heavy libraries (torch, matplotlib) inside their functions so that
`sportsdet --help` and `sportsdet predict` stay quick.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import re
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from rich.console import Console

from sportsdet.cli.app import app, err_console, plain, reflow_help
from sportsdet.errors import DROPPED_INTERRUPTS, InterruptSaid, SportsdetError, Terminated
from sportsdet.files import published_path

# Importing the verb modules registers their commands on `app`.
from sportsdet.cli import data as _data  # noqa: E402,F401  isort: skip
from sportsdet.cli import train as _train  # noqa: E402,F401  isort: skip
from sportsdet.cli import evaluate as _evaluate  # noqa: E402,F401  isort: skip
from sportsdet.cli import predict as _predict  # noqa: E402,F401  isort: skip
from sportsdet.cli import models as _models  # noqa: E402,F401  isort: skip
from sportsdet.cli import report as _report  # noqa: E402,F401  isort: skip
from sportsdet.cli import export as _export  # noqa: E402,F401  isort: skip
from sportsdet.cli import serve as _serve  # noqa: E402,F401  isort: skip

reflow_help(app)

EXIT_USER_ERROR = 2
# What the `train` extra brings (pyproject.toml): a command that needs one of them says so.
TRAIN_EXTRA_MODULES = frozenset({"torch", "torchvision", "timm", "sklearn", "matplotlib", "onnx"})

# What to do about the environment errors a user can fix (errno -> advice).
_OS_ADVICE = {
    errno.ENOSPC: "the disk is full; free some space or write somewhere else",
    errno.EDQUOT: "the disk quota is used up; free some space or write somewhere else",
    errno.EFBIG: "the file is larger than this system allows here",
    errno.EACCES: "permission denied; check the folder's permissions or choose another place",
    errno.EPERM: "operation not permitted; check the folder's permissions or choose another place",
    errno.EROFS: "the file system is read-only; choose another place to write",
}


def _os_error_message(exc: OSError, path: str | None = None) -> str:
    """One line for an OSError: the path, the system's words and, where we know it, what to do."""
    where = path or exc.filename or _path_from_traceback(exc)
    # The file being written, not the hidden temporary one it is written through.
    where = str(published_path(where)) if isinstance(where, (str, os.PathLike)) else str(where or "a file")
    words = exc.strerror or str(exc)
    advice = _OS_ADVICE.get(exc.errno) if exc.errno is not None else None
    return f"{where}: {words}" + (f" ({advice})" if advice else "")


def _path_from_traceback(exc: BaseException) -> str | None:
    """The file being written when `exc` was raised, for errors that do not carry it.

    A failed `handle.write(...)` raises OSError without a file name, and safetensors reports
    I/O failures as SafetensorError("... (os error 28)") without the path. The innermost frame
    holding an open file object, or a safetensors `save_file(tensors, filename)` call, says it.
    """
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame)
        tb = tb.tb_next
    for frame in reversed(frames):
        if frame.f_code.co_name in ("save_file", "save") and "filename" in frame.f_locals:
            return str(frame.f_locals["filename"])
        for value in frame.f_locals.values():
            # rich's Console writes to its `.file` (the table printed to a full disk: "a file").
            handle = value.file if isinstance(value, Console) else value
            if isinstance(handle, io.IOBase) and isinstance(getattr(handle, "name", None), str):
                return handle.name
    return None


def _safetensors_message(exc: BaseException) -> str:
    text = str(exc)
    match = re.search(r"os error (\d+)|code: (\d+)", text)
    found = _path_from_traceback(exc)
    path = str(published_path(found)) if found else "model weights (safetensors)"
    if match:
        code = int(match.group(1) or match.group(2))
        return _os_error_message(OSError(code, os.strerror(code)), path)
    return f"{path}: cannot write ({text.splitlines()[0][:200] if text else type(exc).__name__})"


def _fail(message: str) -> None:
    # plain(): messages often hold [lists] that rich would read as markup
    err_console.print(f"[bold red]error:[/] {plain(message)}", highlight=False, soft_wrap=True)
    sys.exit(EXIT_USER_ERROR)


_sigterm_received: list[int] = []


def _stop_on_sigterm_as_on_ctrl_c() -> None:
    """SIGTERM (`timeout`, `docker stop`, a scheduler taking the machine back) ends a command
    the way Ctrl-C does: partial downloads and unpacked folders are removed, training keeps its
    last checkpoint and says how to resume. Python's default ends the process on the spot."""
    if threading.current_thread() is not threading.main_thread():
        return
    own_pid = os.getpid()

    def stop(signum: int, frame: object) -> None:
        if os.getpid() != own_pid:  # a forked worker (data loading, hashing): end as before
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        _sigterm_received.append(signum)
        raise Terminated

    signal.signal(signal.SIGTERM, stop)


# Commands whose results are files or a service, not text on stdout: with stdout closed (`>&-`,
# a daemon's) they run, their few lines to stdout dropped. Any other refuses at once: predict,
# info and data check printed nothing, said nothing and exited 0, and evaluate failed only once
# its photos were scored.
_RUN_WITHOUT_STDOUT = frozenset({"train", "serve", "export", "report", "data fetch"})


def _command_named() -> str | None:
    """The verb on the command line (`sportsdet data fetch URL`: "data fetch"), None for none."""
    words = [arg for arg in sys.argv[1:] if not arg.startswith("-")]
    if not words:
        return None
    return " ".join(words[:2]) if words[0] == "data" else words[0]


def _names_that_are_not_utf8_print() -> None:
    """A file name that is not UTF-8 (read by Python with surrogate escapes) stopped a command half way
    with UnicodeEncodeError wherever it was printed to a strict UTF-8 stdout (a desktop's UTF-8
    locale, PYTHONIOENCODING=utf-8): such characters are written as backslash escapes instead."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def _interrupted(exc: BaseException) -> bool:
    """Whether Ctrl-C (or SIGTERM) is what an error comes from: a KeyboardInterrupt raised while a
    module was being imported (onnxruntime's, at export) surfaced as "ImportError: initialization
    failed" with a traceback."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def _keep_dropped_interrupts(unraisable: Any, previous: Callable[[Any], object]) -> None:
    # Ctrl-C that Python dropped: raised inside a garbage-collection or weakref callback, it was
    # printed as "Exception ignored in ..." with a traceback, and the command ran on to exit code 0.
    # Kept in errors.DROPPED_INTERRUPTS: training raises it again between batches; what finishes says so.
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        DROPPED_INTERRUPTS.append(unraisable.exc_value)
        return
    previous(unraisable)


def _typer_caught_an_interrupt(exc: SystemExit) -> bool:
    """Whether exit code 130 is typer's own for a Ctrl-C no command handled (it prints a blank
    line and nothing else), not a command's `typer.Exit(130)` after saying what it kept."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        if isinstance(link.__cause__, KeyboardInterrupt):
            return not isinstance(link.__cause__, InterruptSaid)  # training said what to do itself
        seen.add(id(link))
        link = link.__context__
    return False


def _exit_code(exc: SystemExit) -> int | str | None:
    """The exit code, after saying what a Ctrl-C left that no command spoke of."""
    code = exc.code
    if code in (0, None) and DROPPED_INTERRUPTS:
        err_console.print(
            "[yellow]interrupted[/] as the command was finishing; it finished all the same (its results "
            "are written)",
            highlight=False,
        )
        code = 130
    elif code == 130 and _typer_caught_an_interrupt(exc):
        # Every file sportsdet writes is renamed into place whole (files.atomic_write).
        err_console.print(
            "[yellow]interrupted[/]: no file is left half written; run the same command again to finish",
            highlight=False,
        )
    if code == 130 and _sigterm_received:  # typer turns any KeyboardInterrupt into 130; SIGTERM is 143
        return 143
    if code == 1 and isinstance(exc.__context__, OSError) and exc.__context__.errno == errno.EPIPE:
        # `sportsdet predict ... | head -1`: the reader had enough. Typer's 1 read as "some photo
        # could not be labelled"; 141 is what a shell reports for a tool ended by SIGPIPE.
        return 141
    return code


def main() -> None:
    """Console entry point: user errors become one red line and exit code 2, never a traceback.

    Besides SportsdetError, errors of the environment that the user can act on (disk full, no
    permission, read-only file system, in Python's OSError or safetensors' SafetensorError) become
    one `error:` line naming the file too; anything else is a bug and keeps its traceback.
    Ctrl-C exits with 130, SIGTERM with 143, after the same clean-up.
    """
    _stop_on_sigterm_as_on_ctrl_c()
    if sys.stdout is None and _command_named() not in _RUN_WITHOUT_STDOUT:
        _fail("standard output is closed (>&-), so the output has nowhere to go; send it to a file or "
              "to /dev/null")
    _names_that_are_not_utf8_print()
    previous_hook = sys.unraisablehook
    sys.unraisablehook = functools.partial(_keep_dropped_interrupts, previous=previous_hook)
    try:
        app(standalone_mode=True)
    except SystemExit as exc:
        code = _exit_code(exc)
        if code == exc.code:
            raise
        sys.exit(code)
    except SportsdetError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(_os_error_message(exc))
    except MemoryError:
        _fail("out of memory; use smaller batches (--batch-size) or fewer workers, or free some memory")
    except ModuleNotFoundError as exc:
        # The light install (`pip install sportsdet`) predicts without these; train, evaluate and
        # export ended in a traceback.
        root = (exc.name or "").split(".")[0]
        if root not in TRAIN_EXTRA_MODULES:
            raise
        _fail(f"this command needs {root}, which the light install leaves out: pip install "
              "'sportsdet[train]'")
    except Exception as exc:
        if type(exc).__name__ == "SafetensorError":
            _fail(_safetensors_message(exc))
        if _interrupted(exc):  # Ctrl-C inside an import turns into its ImportError: a traceback
            err_console.print("[yellow]interrupted[/]")
            sys.exit(143 if _sigterm_received else 130)
        raise
    except KeyboardInterrupt as exc:
        if not isinstance(exc, InterruptSaid):
            err_console.print("[yellow]interrupted[/]")
        sys.exit(143 if isinstance(exc, Terminated) or _sigterm_received else 130)
    finally:
        # The hook stays for the interpreter's shutdown: a second Ctrl-C that lands in Python's
        # wait for its threads there printed "Exception ignored in: <module 'threading'>" and a
        # traceback under the first one's message.
        DROPPED_INTERRUPTS.clear()


__all__ = ["app", "main"]
