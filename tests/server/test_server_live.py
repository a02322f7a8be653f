"""A live `python -m server` on a free loopback port, driven over real HTTP, and the CLI scripts."""

from __future__ import annotations

import json
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import geopandas as gpd
import pytest
from server_testutil import GEOTIFF_DIR, REPO, SMALL, call

from server.cli import check_collections
from server.errors import NotFound

CONTRACT = REPO / ".." / "shared" / "checks" / "server_contract.py"




@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """(base URL, process, output lines) of a server started with --port 0 (it prints the port it got)."""
    store = tmp_path_factory.mktemp("live_store")
    proc = subprocess.Popen([sys.executable, "-m", "server", "--store", str(store), "--host", "127.0.0.1",
                             "--port", "0", "--allowed-root", str(GEOTIFF_DIR), "--batch-size", "8"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    base = None
    deadline = time.monotonic() + 300
    while base is None:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            assert proc.poll() is None, "server exited:\n" + "".join(seen)
            assert time.monotonic() < deadline, "server did not start in 300 s:\n" + "".join(seen)
            continue
        seen.append(line)
        m = re.search(r"serving on (http://127\.0\.0\.1:\d+/api/v1)", line)
        base = m.group(1) if m else None
    yield base, proc
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def test_live_server_indexes_and_searches(live):
    base, _ = live
    status, health = call(base, "GET", "/health")
    assert status == 200 and health["model"].startswith("harma-lite")
    assert call(base, "POST", "/collections", {"name": "grenada", "tile_size": 256})[0] == 201
    status, job = call(base, "POST", "/collections/grenada/rasters", {"paths": [str(SMALL)]})
    assert status == 202
    for _ in range(600):
        status, st = call(base, "GET", f"/jobs/{job['job_id']}")
        if st["state"] in ("done", "failed", "cancelled"):
            break
        time.sleep(0.5)
    assert st["state"] == "done" and st["done"] == st["total"] == 4, st
    status, fc = call(base, "POST", "/search", {"text": "an island in the sea", "k": 3})
    assert status == 200 and len(fc["features"]) == 3
    assert {f["properties"]["raster"] for f in fc["features"]} == {str(SMALL)}
    status, err = call(base, "POST", "/collections/grenada/rasters", {"paths": ["/etc/passwd"]})
    assert status == 403 and "outside the allowed roots" in err["detail"]


def test_shared_contract_check_passes(live):
    base, _ = live
    out = subprocess.run([sys.executable, str(CONTRACT), "--url", base.removesuffix("/api/v1"), str(SMALL)],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1].startswith("ok: 1 rasters indexed")


def test_server_stops_cleanly_on_sigterm(live):
    _, proc = live
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0


def test_server_refuses_a_public_address_without_token(tmp_path):
    out = subprocess.run([sys.executable, "-m", "server", "--store", str(tmp_path), "--host", "0.0.0.0"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "give --token" in out.stderr


def test_search_cli_prints_hits_and_geojson_last(indexed, tmp_path):
    out_file = tmp_path / "hits.gpkg"
    done = subprocess.run([sys.executable, "tools/search.py", "--store", str(indexed), "base", "houses and cars",
                           "--k", "4", "--json", "--out", str(out_file)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    fc = json.loads(lines[-1])
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 4
    header = next(ln for ln in lines if ln.split()[:1] == ["rank"])  # after "no tile looks like ..." if no match
    assert header.split()[:5] == ["rank", "score", "cosine", "relev.", "tile"]
    hits = gpd.read_file(out_file, layer="hits")
    assert hits.crs.to_epsg() == 4326 and list(hits["rank"]) == [1, 2, 3, 4]
    with pytest.raises(NotFound, match="no collection named 'nope'"):  # checked before the model loads
        check_collections(str(indexed), ["base", "nope"])
