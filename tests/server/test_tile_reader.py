"""Tile reading in worker processes gives the same tiles, ids and vectors as reading inline."""

from __future__ import annotations

import threading

import numpy as np
from server_testutil import SMALL, TINY

from server.indexing.pipeline import index_rasters
from server.indexing.tile_reader import chunks, read_chunks
from server.indexing.tiling import inspect_raster, plan_windows
from server.store.records import TilingParams
from server.store.store import Store


def _tiles(col) -> dict[int, tuple]:
    rows = col.table.rows(col.table.live_ids())
    return {i: (r["raster"], (r["col_off"], r["row_off"], r["width"], r["height"])) for i, r in rows.items()}


def test_worker_processes_give_the_inline_tiles_ids_and_vectors(tmp_path, model):
    params = TilingParams(tile_size=128)
    paths = [str(SMALL), str(TINY)]
    inline = Store(tmp_path / "a").create("c", model, params)
    pooled = Store(tmp_path / "b").create("c", model, params)
    r0 = index_rasters(inline, model, paths, batch_size=5, read_workers=0)
    r2 = index_rasters(pooled, model, paths, batch_size=5, read_workers=2)
    assert r0.tiles == r2.tiles == 22 and r0.rasters == r2.rasters == 2 and not r2.skipped
    assert _tiles(inline) == _tiles(pooled)
    for i in _tiles(inline):
        np.testing.assert_array_equal(inline.vector(i), pooled.vector(i))


def test_chunks_keep_window_order_and_mark_each_rasters_end(tmp_path):
    info = inspect_raster(str(SMALL), TilingParams(tile_size=128))
    windows = plan_windows(info)
    cut = list(chunks([(info, windows), (info, [])], 5))
    assert [w for c in cut[:-1] for w in c.windows] == windows
    assert [c.last for c in cut] == [False] * (len(cut) - 2) + [True, True] and cut[-1].windows == []
    pooled = list(read_chunks(iter(cut), 224, 2, threading.Event()))
    inline = list(read_chunks(iter(cut), 224, 0, threading.Event()))
    assert [c for c, _ in pooled] == cut
    for (_, a), (_, b) in zip(pooled, inline):
        assert a.error is None and a.nodata == b.nodata
        assert [r.window for r, _ in a.tiles] == [r.window for r, _ in b.tiles]
        for (_, pa), (_, pb) in zip(a.tiles, b.tiles):
            np.testing.assert_array_equal(pa, pb)


def test_a_raster_gone_before_reading_is_reported_and_the_rest_indexed(tmp_path, model):
    import shutil

    gone = tmp_path / "gone.tif"
    shutil.copy(TINY, gone)
    col = Store(tmp_path / "s").create("c", model, TilingParams(tile_size=128))
    info = inspect_raster(str(gone), TilingParams(tile_size=128))
    gone.unlink()
    results = list(read_chunks(chunks([(info, plan_windows(info))], 4), 224, 1, threading.Event()))
    assert results and all("reading failed part-way" in r.error for _, r in results[:1])
    report = index_rasters(col, model, [str(SMALL)], batch_size=8, read_workers=1)
    assert report.tiles == 16 and not report.skipped
