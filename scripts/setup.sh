#!/usr/bin/env bash
# Creates .venv/ (idempotent). Default: everything (training, torch runtime, Ray, tests): `pip install -e .[dev,ray,train]`.
# SERVING_ONLY=1: only what indexing, search and the server need (ONNX Runtime, no torch; ~400 MB, not 7 GB).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# PyPI's hnswlib and chroma-hnswlib both install the module `hnswlib`: keep only the one the package names.
if .venv/bin/python -m pip show -q hnswlib >/dev/null 2>&1; then
  .venv/bin/python -m pip uninstall -q -y hnswlib
  .venv/bin/python -m pip install -q --force-reinstall --no-deps "chroma-hnswlib>=0.7.5,<0.8"
fi
if [ "${SERVING_ONLY:-0}" = 1 ]; then
  .venv/bin/python -m pip install -q -e .
  echo "setup: .venv ready for serving (no torch)"
  exit 0
fi
# A matching torch/torchvision pair; these versions are what CI installs (CPU works with this CUDA build).
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
.venv/bin/python -m pip install -q -e ".[dev,ray,train]"
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
