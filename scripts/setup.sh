#!/usr/bin/env bash
# Create .venv and install vbmkit with its test tools. torch is installed explicitly first so
# that the CPU build (torch==2.13.0, on disk on the development and CI machines) is used and no
# multi-GB CUDA build is pulled. Set VBMKIT_TORCH to choose another torch requirement.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.vbmkit-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q "${VBMKIT_TORCH:-torch==2.13.0}"
  .venv/bin/python -m pip install -q -e ".[dev]"
  touch "$stamp"
fi
