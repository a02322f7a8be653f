"""Indexing pipeline with the real model: progress, skip reasons, cancel + resume, SIGKILL + resume."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import numpy as np
from server_testutil import REPO, SMALL, TINY, noise, tile_set

from server.indexing.pipeline import index_rasters
from server.store.paths import find_rasters
from server.store.records import TilingParams
from server.store.store import Store


def test_folder_with_bad_rasters_reports_each_reason(tmp_path, make_raster, model):
    folder = tmp_path / "scenes"
    (folder / "nested").mkdir(parents=True)
    make_raster("scenes/good.tif", noise(3, 48, 48))
    make_raster("scenes/nested/GOOD2.TIFF", noise(1, 40, 40, dtype="uint16", seed=1))
    make_raster("scenes/nocrs.tif", noise(3, 48, 48), crs=None)
    make_raster("scenes/empty.tif", np.zeros((3, 48, 48), np.uint8), nodata=0)
    make_raster("scenes/dot.tif", noise(3, 1, 1))
    (folder / "corrupt.tif").write_bytes(SMALL.read_bytes()[:3000])
    (folder / "notes.txt").write_text("not a raster")
    files = find_rasters([folder])
    assert [os.path.basename(f) for f in files] == ["corrupt.tif", "dot.tif", "empty.tif", "good.tif",
                                                    "GOOD2.TIFF", "nocrs.tif"]
    col = Store(tmp_path / "store").create("mixed", model, TilingParams(tile_size=32))
    seen = []
    report = index_rasters(col, model, files, batch_size=4, progress=lambda p: seen.append((p.done, p.total)))
    reasons = {os.path.basename(s["raster"]): s["reason"] for s in report.skipped}
    assert set(reasons) == {"corrupt.tif", "dot.tif", "empty.tif", "nocrs.tif"}
    assert "cannot read" in reasons["corrupt.tif"]
    assert "1x1 pixels" in reasons["dot.tif"]
    assert "no valid pixels" in reasons["empty.tif"]
    assert "has no CRS" in reasons["nocrs.tif"]
    assert report.rasters == 2 and report.tiles == 4 + 4
    dones = [d for d, _ in seen]
    assert dones == sorted(dones) and seen[-1] == (8, 8)
    assert len(tile_set(col)) == 8


def test_cancel_then_resume_gives_the_uninterrupted_tile_set(tmp_path, model, indexed):
    reference = tile_set(Store(indexed).get("base"))
    col = Store(tmp_path).create("base", model, TilingParams(tile_size=128))
    cancel = threading.Event()

    def on_progress(p):
        if p.done >= 4:
            cancel.set()

    first = index_rasters(col, model, [str(SMALL), str(TINY)], batch_size=4, progress=on_progress, cancel=cancel)
    assert first.cancelled and 4 <= first.tiles < 22
    partial = tile_set(Store(tmp_path).get("base"))
    assert partial < reference
    second = index_rasters(col, model, [str(SMALL), str(TINY)], batch_size=4)
    assert not second.cancelled and first.tiles + second.tiles == 22
    assert tile_set(col) == reference


def _rows(gpkg) -> int:
    try:
        with sqlite3.connect(gpkg, timeout=5) as conn:
            return conn.execute("SELECT count(*) FROM tiles").fetchone()[0]
    except sqlite3.Error:  # not created yet
        return 0


def test_sigkill_mid_way_then_resume_gives_the_uninterrupted_tile_set(tmp_path, indexed):
    reference = tile_set(Store(indexed).get("base"))  # the same rasters and tiling, indexed without a break
    store = tmp_path / "store"
    cmd = [sys.executable, "tools/index.py", "--store", str(store), "killed", str(SMALL), str(TINY),
           "--tile-size", "128", "--batch-size", "2", "--checkpoint-every", "4", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    gpkg, index = store / "killed" / "tiles.gpkg", store / "killed" / "index.bin"
    deadline = time.monotonic() + 300
    try:
        while not (index.exists() and _rows(gpkg) >= 6):
            assert proc.poll() is None, f"indexer ended before it could be killed:\n{proc.stdout.read()}"
            assert time.monotonic() < deadline, "indexer made no progress in 300 s"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    killed = Store(store).get("killed")
    assert 6 <= _rows(gpkg) < 22 and killed.table.counts()["rasters"] < 2  # really killed mid-way
    shard, = killed._shards  # vectors read through the file view match the saved index
    labels = sorted(shard.labels)
    assert shard.vectors is not None and len(shard.vectors) == shard.index.element_count
    assert np.allclose(killed._gather(labels), np.asarray(shard.index.get_items(labels), dtype=np.float32), atol=1e-6)

    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "collection killed: 22 tiles from 2 rasters" in done.stdout
    resumed = Store(store).get("killed")
    assert tile_set(resumed) == reference
    assert len(resumed) == 22 and resumed.table.counts() == {"tiles": 22, "rasters": 2, "rasters_partial": 0}
