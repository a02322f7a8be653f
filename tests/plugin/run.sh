#!/usr/bin/env bash
# Runs the QGIS plugin tests in a real headless QGIS (Debian's qgis + python3-qgis for /usr/bin/python3).
# Usage: tests/plugin/run.sh [pytest args] [test paths]   (default path: tests/plugin; any working directory)
# Needs the project venv .venv (the tests start its `python -m server`) and apt: qgis python3-qgis qgis-providers.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
if [ ! -x .venv-qgis/bin/python ]; then
    /usr/bin/python3 -m venv --system-site-packages .venv-qgis
fi
.venv-qgis/bin/python -m pip install --quiet --disable-pip-version-check pytest "pytest-qgis==5.0.2"
export QT_QPA_PLATFORM=offscreen
has_path=no
for arg in "$@"; do [ -e "${arg%%::*}" ] && has_path=yes; done
[ "$has_path" = yes ] || set -- "$@" tests/plugin
# confcutdir: the project-wide tests/conftest.py imports torch, which QGIS's Python must never need.
exec .venv-qgis/bin/python -m pytest -p no:cacheprovider --qgis_disable_gui --confcutdir tests/plugin "$@"
