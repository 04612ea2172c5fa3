"""bench/RESULTS.md is shared: each benchmark owns one marked section and rewrites only that."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

RESULTS_MD = Path(__file__).resolve().parent / "RESULTS.md"


def write_section(section: str, start: str, end: str, path: Path = RESULTS_MD) -> None:
    """Replace the text between `start` and `end` (markers included in `section`), or append it.

    The file is re-read right before writing, because other benchmarks may have rewritten their
    own sections meanwhile, and replaced atomically so a crash never leaves half a file.
    """
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text.rstrip("\n") + "\n")
    tmp.replace(path)


def write_results(payload: dict[str, Any], json_path: Path, section: str, start: str, end: str) -> None:
    """Raw numbers to `json_path`, the readable table to this benchmark's RESULTS.md section."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    write_section(section, start, end)
