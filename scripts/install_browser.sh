#!/usr/bin/env bash
# What tests/test_report_browser.py needs: Debian's Chromium (as root) and Playwright for Python.
# Playwright only drives the system browser (executable_path=/usr/bin/chromium); never run
# `playwright install`, which would download a browser. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "chromium is missing; as root run: apt-get update && apt-get install -y chromium chromium-driver" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends chromium chromium-driver
fi
[ -x .venv/bin/python ] || { echo "no .venv yet: run scripts/setup.sh first" >&2; exit 1; }
.venv/bin/python -m pip install -q "playwright>=1.40"
echo "browser tests ready: $(chromium --version 2>/dev/null | head -1)"
