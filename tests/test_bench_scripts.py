"""The benchmark scripts still start with the current package: each answers --help (an import or
a name a refactor moved fails here, not weeks later in the middle of an hour-long measurement)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
SCRIPTS = sorted(path for path in BENCH.glob("*.py") if path.name != "results_file.py")  # a helper module


def test_every_script_is_checked() -> None:
    assert len(SCRIPTS) >= 18 and (BENCH / "results_file.py").is_file()


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_a_bench_script_answers_help(script: Path) -> None:
    command = [sys.executable, str(script), "--help"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage:" in done.stdout
