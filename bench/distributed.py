#!/usr/bin/env python3
"""Indexing tiles/s: the local engine against the Ray engine on 1 and 2 local nodes, same rasters, one run.

Every case is `tools/index.py` as a user runs it, into a fresh store, and reports the rate the tool prints
(the local engine: tiles over the whole run; Ray: tiles over the execution stage, actor start-up and model
loads included). Ray clusters are real: `ray start --head` (+ `ray start --address` for a second node), in a
private network namespace so traffic stays on loopback. Run as root: `python bench/distributed.py [--quick]`;
the last stdout line is JSON. Goals: Ray on one node >= 0.8 of local; two nodes >= 1.6 of one, compared on
the steady rate (after the first batch: the local engine loads its model before it starts timing, Ray actors
load theirs inside the run; that start-up is reported apart).
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import GEOTIFF_DIR, REPO, emit, machine, table

RAY = str(Path(sys.executable).with_name("ray"))
RATE = re.compile(r"([\d.]+) tiles/s over ([\d.]+) s")
STEADY = re.compile(r"([\d.]+) s to the first batch then ([\d.]+) tiles/s")
PORT = 6390


def _index(store: Path, name: str, paths: list[str], extra: list[str]) -> dict[str, float]:
    """Run the indexer; returns its printed rate and seconds, and the wall time of the whole command."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, str(REPO / "tools" / "index.py"), "--store", str(store), name, *paths,
                        "--quiet", *extra], capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"index.py {extra} failed:\n{p.stdout}\n{p.stderr[-3000:]}")
    m = RATE.findall(p.stdout)[-1]
    tiles = int(re.findall(r"(\d+) tiles embedded", p.stdout)[-1])
    steady = STEADY.findall(p.stdout)  # Ray: start-up (actors, model loads) apart from the steady rate
    first_s, steady_rate = (float(steady[-1][0]), float(steady[-1][1])) if steady else (0.0, float(m[0]))
    return {"tiles": tiles, "tiles_per_s": float(m[0]), "steady_tiles_per_s": steady_rate, "startup_s": first_s,
            "engine_s": float(m[1]), "command_s": wall}


def _cluster(nodes: int, cpus: int) -> None:
    """Start a local cluster of `nodes` nodes with `cpus` CPUs each."""
    common = ["--num-cpus", str(cpus), "--node-ip-address", "127.0.0.1"]
    subprocess.run([RAY, "start", "--head", "--port", str(PORT), "--include-dashboard", "false",
                    "--disable-usage-stats", *common], check=True, capture_output=True)
    for _ in range(nodes - 1):
        subprocess.run([RAY, "start", "--address", f"127.0.0.1:{PORT}", *common], check=True, capture_output=True)


def _stop() -> None:
    subprocess.run([RAY, "stop", "--force"], capture_output=True)


def main() -> int:
    """Run every case once, in a private network namespace."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="three rasters instead of all six")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--tile-size", type=int, default=64, help="pixels; small tiles give enough work to amortise "
                    "Ray's start-up on the small shared rasters (64 px: ~840 windows from all six)")
    args = ap.parse_args()
    if os.environ.get("HARMA_BENCH_NS") != "1":  # re-run inside unshare -n with loopback up
        return subprocess.call(["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
                                "env", "HARMA_BENCH_NS=1", sys.executable, *sys.argv])
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_USAGE_STATS_ENABLED="0")
    rasters = sorted(str(p) for p in GEOTIFF_DIR.resolve().glob("*.tif"))
    if args.quick:
        rasters = rasters[:3]
    common = ["--batch-size", str(args.batch_size), "--tile-size", str(args.tile_size)]
    cases: list[tuple[str, int, int, list[str]]] = [
        ("local engine (torch 2 threads)", 0, 0, []),
        ("ray 1 node x 2 CPU (2 actors)", 1, 2, ["--engine", "ray"]),
        ("ray 1 node x 1 CPU (1 actor)", 1, 1, ["--engine", "ray"]),
        ("ray 2 nodes x 1 CPU (2 actors)", 2, 1, ["--engine", "ray"]),
    ]
    rows: list[dict[str, Any]] = []
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="harma-bench-dist-"))
    try:
        for i, (label, nodes, cpus, extra) in enumerate(cases):
            if nodes:
                _cluster(nodes, cpus)
                extra = [*extra, "--ray-address", f"127.0.0.1:{PORT}"]
            try:
                r = _index(work / f"s{i}", "c", rasters, [*common, *extra])
            finally:
                if nodes:
                    _stop()
            rows.append({"case": label, **r})
            print(f"{label}: {r['tiles_per_s']:.2f} tiles/s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    local, one2, one1, two = (r["steady_tiles_per_s"] for r in rows)
    print(table(rows, title=f"{rows[0]['tiles']} tiles from {len(rasters)} rasters, batch {args.batch_size}"))
    result = {"machine": machine(), "loadavg_before": load_before, "cases": rows,
              "ray_1node_vs_local": round(one2 / local, 3), "ray_2nodes_vs_1node_1cpu": round(two / one1, 3),
              "ray_2nodes_vs_1node_2cpu": round(two / one2, 3)}
    print(f"ray 1 node (2 CPU) / local: {result['ray_1node_vs_local']} (goal >= 0.8); "
          f"2 nodes / 1 node of 1 CPU: {result['ray_2nodes_vs_1node_1cpu']} (goal >= 1.6 where cores allow)")
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
