#!/usr/bin/env bash
# Set up hyperinverter in a virtual environment (.venv, or $VENV).
#   bash scripts/setup.sh          # the package and its command line
#   bash scripts/setup.sh --test   # ... plus the test dependencies
# torch: if the environment has none, a machine without an NVIDIA GPU gets the CPU build
# (torch==2.13.0; an unpinned torch pulls gigabytes of CUDA packages). With a GPU, install the torch
# build you want first (or set TORCH_SPEC), then run this script: an importable torch is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
extras=""
[ "${1:-}" = "--test" ] && extras="[test]"

if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip --disable-pip-version-check -q)

if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
  if [ -n "${TORCH_SPEC:-}" ]; then
    spec="$TORCH_SPEC"
  elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    spec="torch"
  else
    spec="torch==2.13.0"
  fi
  echo "== installing $spec"
  "${pip[@]}" install "$spec"
fi
echo "== installing hyperinverter$extras"
"${pip[@]}" install -e ".$extras"
"$VENV/bin/python" -c "import hyperinverter, torch; print('hyperinverter', hyperinverter.__version__, '| torch', torch.__version__, '| cuda', torch.cuda.is_available())"
