#!/usr/bin/env bash
# Ray engine tests on a real two-node Ray cluster on this machine (head + one worker node, 1 CPU each).
# Runs inside a private network namespace (unshare -n) so cluster traffic stays on loopback; both nodes are
# stopped at the end whatever happens. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ "${HARMA_RAY_NS:-}" != 1 ]; then
  exec unshare -n env HARMA_RAY_NS=1 bash "$0" "$@"
fi
ip link set lo up
export RAY_AUTH_MODE=token RAY_USAGE_STATS_ENABLED=0 RAY_DATA_DISABLE_PROGRESS_BARS=1
RAY_AUTH_TOKEN=$(.venv/bin/python -c "import secrets; print(secrets.token_hex(32))")
export RAY_AUTH_TOKEN  # one token for both nodes and the test drivers, kept out of ~/.ray
export RAY_TMPDIR="${RAY_TMPDIR:-/tmp/harma-ray}"
RAY=.venv/bin/ray
# Ray refuses a port that any cluster on the machine uses (it reads other processes' command lines, across
# network namespaces): a random one lets this run beside another cluster
PORT=$((20000 + RANDOM % 20000))
trap '$RAY stop --force >/dev/null 2>&1 || true; rm -rf "$RAY_TMPDIR"' EXIT
$RAY start --head --num-cpus 1 --node-ip-address 127.0.0.1 --port $PORT --include-dashboard false \
  --temp-dir "$RAY_TMPDIR" --disable-usage-stats >/dev/null
$RAY start --address 127.0.0.1:$PORT --num-cpus 1 --node-ip-address 127.0.0.1 >/dev/null
export HARMA_RAY_ADDRESS=127.0.0.1:$PORT
.venv/bin/python -m pytest -q tests/ray "$@"
