"""Server and store faults without mounts: a second server, a dead lock holder, clients racing a job, a kill,
bad bodies and paths, and the GDAL block cache."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import pytest
from faults_testutil import call, live_app, wait_job
from server_testutil import GEOTIFF_DIR, PAN, REPO, SMALL


def test_a_second_server_on_the_same_store_is_refused_at_startup(fresh, model):
    with live_app(fresh, model):
        done = subprocess.run([sys.executable, "-m", "server", "--store", str(fresh), "--port", "0"],
                              cwd=REPO, capture_output=True, text=True, timeout=600)
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"store in use by PID {os.getpid()}" in done.stderr, done.stderr
    with live_app(fresh, model) as base:  # released on close: the next server starts
        assert call(base, "GET", "/health")[0] == 200


def test_a_killed_lock_holder_leaves_no_stale_lock(fresh, model):
    from server.app import create_app
    from server.errors import StoreInUse

    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from server.store.storelock import StoreLock; "
                               "lock = StoreLock(sys.argv[1]); lock.acquire(); print('locked', flush=True); time.sleep(600)",
                               str(fresh)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreInUse, match=f"store in use by PID {holder.pid}"):
            create_app({"STORE": str(fresh), "LOADED_MODEL": model})
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
        holder.stdout.close()
    with live_app(fresh, model) as base:
        assert call(base, "GET", "/health")[0] == 200


def test_searches_from_many_clients_during_indexing_all_succeed(fresh, model):
    texts = ["a river", "houses and cars", "a forest", "a road"]
    with live_app(fresh, model, ALLOWED_ROOTS=[str(GEOTIFF_DIR)], CHECKPOINT_EVERY=8) as base:
        for t in texts:  # embedded once here, so the clients race the store, not the text encoder
            assert call(base, "POST", "/search", {"text": t})[0] == 200
        status, job = call(base, "POST", "/collections/base/rasters", {"paths": [str(PAN)]})
        assert status == 202, job
        failures: list[object] = []
        counts = [0] * 4

        def client(n: int) -> None:
            for i in range(60):
                body = {"text": texts[(n + i) % 4], "k": 8} if i % 3 else {"tile_id": 1 + i % 22, "k": 8,
                                                                           "collection": "base"}
                status, fc = call(base, "POST", "/search", body)
                ids = [f["properties"]["tile_id"] for f in fc.get("features", [])]
                if status != 200 or not 1 <= len(ids) <= 8 or len(set(ids)) != len(ids):
                    failures.append((status, fc))
                counts[n] += 1
                if call(base, "GET", f"/jobs/{job['job_id']}")[1]["state"] != "running" and i > 10:
                    return

        threads = [threading.Thread(target=client, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
        job = wait_job(base, job["job_id"])
        assert job["state"] == "done" and not failures, (job, failures[:3])
        assert sum(counts) >= 40
        status, summary = call(base, "GET", "/collections/base")
        assert summary["tiles"] == 22 + job["result"]["tiles"]


def test_listing_after_a_kill_counts_only_tiles_with_saved_vectors(tmp_path, model):
    store = tmp_path / "store"
    cmd = [sys.executable, "tools/index.py", "--store", str(store), "killed", str(SMALL), "--tile-size", "128",
           "--batch-size", "2", "--checkpoint-every", "1000000", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    gpkg = store / "killed" / "tiles.gpkg"
    deadline = time.monotonic() + 300

    def rows() -> int:
        try:
            with sqlite3.connect(gpkg, timeout=5) as conn:
                return conn.execute("SELECT count(*) FROM tiles").fetchone()[0]
        except sqlite3.Error:
            return 0

    try:
        while rows() < 4:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stdout.close()
    assert not (store / "killed" / "index.bin").exists()  # killed before its first save: no vector is kept
    with live_app(store, model) as base:
        listing = {c["name"]: c for c in call(base, "GET", "/collections")[1]["collections"]}
        assert listing["killed"]["tiles"] == 0, listing
        assert call(base, "POST", "/search", {"text": "a river"})[1]["features"] == []


def test_a_deeply_nested_body_is_a_400(fresh, model):
    with live_app(fresh, model) as base:
        status, err = call(base, "POST", "/search", raw=b"[" * 100_000 + b"]" * 100_000)
        assert status == 400 and "nest" in err["detail"], err
        status, err = call(base, "POST", "/search", raw=b'{"text": ' + b"[" * 5000 + b"]" * 5000 + b"}")
        assert status == 400, err


def test_search_cli_with_a_mistyped_store_creates_nothing(tmp_path):
    typo = tmp_path / "stroe"
    done = subprocess.run([sys.executable, "tools/search.py", "--store", str(typo), "base", "a river"],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2 and not typo.exists(), done.stderr
    assert done.stderr.strip().splitlines() == [f"error: store folder {typo} does not exist; check --store"]


def test_the_server_limits_the_gdal_block_cache(fresh, model):
    from rasterio.env import get_gdal_config, set_gdal_config

    previous = get_gdal_config("GDAL_CACHEMAX")
    try:
        with live_app(fresh, model):
            assert get_gdal_config("GDAL_CACHEMAX") == 64 * 2**20
        with live_app(fresh, model, GDAL_CACHE_MB=16):
            assert get_gdal_config("GDAL_CACHEMAX") == 16 * 2**20
    finally:
        set_gdal_config("GDAL_CACHEMAX", previous)
