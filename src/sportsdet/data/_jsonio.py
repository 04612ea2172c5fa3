"""Small helpers shared by the data modules: atomic JSON writing."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from sportsdet.errors import SportsdetError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json_atomic(path: str | Path, data: Any) -> Path:
    """Write `data` as JSON so that `path` holds either the old file or the complete new one.

    The text goes to a temporary file in the same folder, is flushed to disk, then renamed over
    `path` (a rename within one file system is atomic), so a crash never leaves half a file.
    """
    path = Path(path)
    if path.is_dir():
        raise SportsdetError(f"{path}: is a folder; give a file name such as {path / 'report.json'}")
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise SportsdetError(
            f"{path}: cannot write here ({exc.strerror or exc}); choose another path"
        ) from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, ensure_ascii=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        raise
    return path
