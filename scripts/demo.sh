#!/usr/bin/env bash
# The main job on the offline default model: set up, index the shared GeoTIFFs, search them by text.
set -euo pipefail
cd "$(dirname "$0")/.."
SERVING_ONLY=1 bash scripts/setup.sh  # serving needs no torch: minutes faster on a fresh machine
DATA=${1:-../shared/data/geotiff}
QUERY=${2:-"a river winding through green forest"}
.venv/bin/python tools/index.py --store stores/demo demo "$DATA"
.venv/bin/python tools/search.py --store stores/demo demo "$QUERY" --k 5
