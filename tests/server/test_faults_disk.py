"""Real storage faults under the store: a small tmpfs filled before or during a job, a read-only bind mount."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from faults_testutil import call, fill, live_app, read_only_view, requires_mounts, tmpfs, wait_job
from server_testutil import GEOTIFF_DIR, PAN, REPO, SMALL, tile_set

from harma_core import HarmaError
from server.store.store import Store

pytestmark = requires_mounts
NAIP = GEOTIFF_DIR / "naip_north_dakota_2020_rgbn.tif"
GRENADA = [-61.9, 11.9, -61.5, 12.3]  # a lon/lat box around SMALL only: its hits must not change
DISK_FULL = re.compile(r"^disk full: (\d+) tiles kept, free space and rerun")


def _state(base: str) -> tuple[int, list[tuple[int, float]], list[tuple[int, float]]]:
    """Tiles listed, hits of a text search and of a bbox search (tile id, score)."""
    status, listing = call(base, "GET", "/collections")
    assert status == 200, listing
    tiles = {c["name"]: c for c in listing["collections"]}["base"]["tiles"]
    hits = []
    for body in ({"text": "a river", "k": 5}, {"text": "a river", "k": 5, "bbox": GRENADA}):
        status, fc = call(base, "POST", "/search", body)
        assert status == 200, fc
        hits.append([(f["properties"]["tile_id"], f["properties"]["score"]) for f in fc["features"]])
    return tiles, hits[0], hits[1]


def _rerun_completes(store, model, paths) -> dict:
    with live_app(store, model, ALLOWED_ROOTS=[str(GEOTIFF_DIR)]) as base:
        status, job = call(base, "POST", "/collections/base/rasters", {"paths": [str(p) for p in paths]})
        assert status == 202, job
        job = wait_job(base, job["job_id"])
        assert job["state"] == "done" and not job["errors"], job
        status, summary = call(base, "GET", "/collections/base")
    by_path = {r["path"]: r for r in summary["raster_list"]}
    for p in paths:  # every window of the raster is accounted for: a tile or a skipped nodata window
        row = by_path[str(p)]
        assert row["state"] == "complete" and row["tiles"] > 0, row
    assert summary["tiles"] == len(tile_set(Store(store).get("base")))
    return summary


def test_a_job_on_a_full_disk_fails_clearly_and_loses_nothing(tmp_path, indexed, model):
    with tmpfs(tmp_path / "fs", "4m") as fs:
        store = fs / "store"
        shutil.copytree(indexed, store)
        saved = (store / "base" / "index.bin").read_bytes()
        with live_app(store, model, ALLOWED_ROOTS=[str(GEOTIFF_DIR)]) as base:
            before = _state(base)
            filler = fill(fs)
            status, job = call(base, "POST", "/collections/base/rasters", {"paths": [str(PAN)]})
            assert status == 202, job
            job = wait_job(base, job["job_id"])
            assert job["state"] == "failed", job
            assert DISK_FULL.match(job["errors"][-1]) and DISK_FULL.match(job["errors"][-1])[1] == "22", job
            assert _state(base) == before
        done = subprocess.run([sys.executable, "tools/index.py", "--store", str(store), "base", str(PAN), "--quiet"],
                              cwd=REPO, capture_output=True, text=True, timeout=600)
        lines = done.stderr.strip().splitlines()  # the CLI says the same in one line
        assert done.returncode == 2 and len(lines) == 1 and DISK_FULL.match(lines[0][7:]), done.stderr
        assert (store / "base" / "index.bin").read_bytes() == saved
        assert len(tile_set(Store(store).get("base"))) == 22
        filler.unlink()
        after = _rerun_completes(store, model, [PAN])
        assert after["tiles"] > 22 and after["rasters"] == 3


def test_a_disk_filling_during_a_job_keeps_every_saved_tile_and_a_rerun_resumes(tmp_path, indexed, model):
    with tmpfs(tmp_path / "fs", "6m") as fs:
        store = fs / "store"
        shutil.copytree(indexed, store)
        col = Store(store).get("base")
        old = {i: col.vector(i) for i in col.table.live_ids()}
        with live_app(store, model, ALLOWED_ROOTS=[str(GEOTIFF_DIR)], CHECKPOINT_EVERY=8) as base:
            tiles, _, grenada = _state(base)
            status, job = call(base, "POST", "/collections/base/rasters", {"paths": [str(PAN), str(NAIP)]})
            assert status == 202, job
            deadline = time.monotonic() + 600
            while call(base, "GET", f"/jobs/{job['job_id']}")[1]["done"] < 16:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            filler = fill(fs)  # the disk fills up while tiles are being added and saved
            job = wait_job(base, job["job_id"])
            assert job["state"] == "failed", job
            m = DISK_FULL.match(job["errors"][-1])
            assert m, job
            kept = int(m[1])
            assert kept >= 22
            after_tiles, _, after_grenada = _state(base)
            assert after_tiles == kept and after_grenada == grenada
        reopened = Store(store).get("base")
        assert len(tile_set(reopened)) == kept
        for i, vec in old.items():  # what was committed before the job is untouched
            assert np.array_equal(reopened.vector(i), vec)
        filler.unlink()
        after = _rerun_completes(store, model, [PAN, NAIP])
        assert after["tiles"] >= kept and after["rasters"] == 4


def test_a_short_index_write_never_replaces_the_saved_index(tmp_path, indexed, model):
    with tmpfs(tmp_path / "fs", "2m") as fs:
        store = fs / "store"
        shutil.copytree(indexed, store)
        col = Store(store).get("base")
        index = store / "base" / "index.bin"
        saved = index.read_bytes()
        with col.writing(model.identity):
            filler = fill(fs, keep=len(saved) // 3)  # room for a third of the index file
            with pytest.raises(HarmaError, match="^disk full: 22 tiles kept"):
                col.checkpoint()
            assert index.read_bytes() == saved and not (store / "base" / "index.bin.tmp").exists()
            filler.unlink()
        assert len(tile_set(Store(store).get("base"))) == 22


def test_a_create_on_a_full_disk_leaves_no_half_made_folder(tmp_path, indexed, model):
    with tmpfs(tmp_path / "fs", "2m") as fs:
        store = fs / "store"
        shutil.copytree(indexed, store)
        stale = store / ".old.creating-0123abcd"  # left by a process killed mid-create an hour ago
        stale.mkdir()
        os.utime(stale, (time.time() - 3600,) * 2)
        with live_app(store, model) as base:
            assert not stale.exists()
            filler = fill(fs)
            status, err = call(base, "POST", "/collections", {"name": "fresh", "tile_size": 128})
            assert status == 507 and err["detail"].startswith("disk full"), err
            assert not [p.name for p in store.iterdir() if ".creating-" in p.name]
            filler.unlink()
            status, made = call(base, "POST", "/collections", {"name": "fresh", "tile_size": 128})
            assert status == 201, made


def test_a_read_only_store_serves_searches_and_refuses_writes_clearly(tmp_path, indexed, model):
    src = tmp_path / "src"
    shutil.copytree(indexed, src)
    with read_only_view(src, tmp_path / "ro") as ro:
        with live_app(ro, model, ALLOWED_ROOTS=[str(GEOTIFF_DIR)]) as base:
            tiles, hits, _ = _state(base)
            assert tiles == 22 and len(hits) == 5
            status, err = call(base, "POST", "/collections", {"name": "new"})
            assert status == 403 and "read-only" in err["detail"], err
            status, err = call(base, "POST", "/collections/base/rasters", {"paths": [str(PAN)]})
            assert status == 403 and "read-only" in err["detail"], err
        done = subprocess.run([sys.executable, "tools/index.py", "--store", str(ro), "base", str(SMALL), "--quiet"],
                              cwd=REPO, capture_output=True, text=True, timeout=600)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1 and "read-only" in lines[0], done.stderr
