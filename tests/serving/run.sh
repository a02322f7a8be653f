#!/usr/bin/env bash
# The serving install for real: a fresh .venv-serve with `pip install -e .` (no extras, so no torch) and pytest,
# then tests/serving against a `python -m server` started from it. Prints the install's size and time.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
start=$(date +%s)
rm -rf .venv-serve
"$PY" -m venv .venv-serve
.venv-serve/bin/python -m pip install -q --upgrade pip
.venv-serve/bin/python -m pip install -q -e . "pytest>=8"
echo "serving install: $(( $(date +%s) - start )) s, $(du -sm .venv-serve | cut -f1) MB (.venv-serve, pytest included)"
# confcutdir: tests/conftest.py imports torch, which this environment must not have
exec .venv-serve/bin/python -m pytest -q -p no:cacheprovider --confcutdir tests/serving tests/serving "$@"
