#!/usr/bin/env bash
# Sets up (if needed) and runs every test: lint, the wheels check, library + server tests, Ray, the plugin in a
# real QGIS, and a torch-free serving install over real HTTP.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup_qgis.sh
.venv/bin/ruff check .
.venv/bin/python scripts/check_wheels.py  # serving deps resolve from wheels on Windows, macOS, Linux, Py 3.10-3.12
.venv/bin/python -m pytest -q tests --ignore=tests/plugin --ignore=tests/ray --ignore=tests/serving "$@"
bash tests/ray/run.sh  # the Ray engine on a real two-node cluster (started and stopped by the script)
bash tests/plugin/run.sh
bash tests/serving/run.sh  # `pip install -e .` without extras (no torch) into .venv-serve, then a real server
