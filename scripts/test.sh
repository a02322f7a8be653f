#!/usr/bin/env bash
# Sets up (if needed) and runs every test: lint, library + server tests, then the plugin in a real QGIS.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/setup_qgis.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest -q tests --ignore=tests/plugin --ignore=tests/ray "$@"
bash tests/ray/run.sh  # the Ray engine on a real two-node cluster (started and stopped by the script)
bash tests/plugin/run.sh
