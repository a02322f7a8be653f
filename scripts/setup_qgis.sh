#!/usr/bin/env bash
# Installs QGIS 3.22 LTR for /usr/bin/python3 from Debian when it is missing (needs root; idempotent).
set -euo pipefail
if /usr/bin/python3 -c "import qgis.core" 2>/dev/null; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends qgis python3-qgis qgis-providers > /dev/null
/usr/bin/python3 -c "import qgis.core; print('setup: QGIS', qgis.core.Qgis.QGIS_VERSION)"
