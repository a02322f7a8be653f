"""Collection store: manifest, GeoPackage, round trip, self-recall, growth, removal, reconcile, locks."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading

import numpy as np
import pyogrio
import pytest
import rasterio
from server_testutil import SMALL, TINY, tile_set
from shapely.geometry import box

from server.errors import Conflict, InvalidRequest, ModelMismatch, NotFound
from server.indexing.pipeline import index_rasters
from server.store.records import TileRecord, TilingParams
from server.store.store import INITIAL_CAPACITY, Store


def test_create_writes_manifest_and_geopackage(tmp_path, model):
    store = Store(tmp_path)
    col = store.create("coast", model, TilingParams(tile_size=128, overlap=16))
    manifest = json.loads((tmp_path / "coast" / "manifest.json").read_text())
    assert manifest["format_version"] == 1
    assert manifest["model"] == {"identity": model.identity, "name": "harma-lite", "dim": model.dim}
    assert manifest["tiling"]["tile_size"] == 128 and manifest["tiling"]["overlap"] == 16
    assert manifest["index"]["space"] == "cosine"
    assert store.names() == ["coast"] and len(col) == 0
    with sqlite3.connect(tmp_path / "coast" / "tiles.gpkg") as conn:  # what GIS software checks first
        assert conn.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 10300
    layers = dict(pyogrio.list_layers(tmp_path / "coast" / "tiles.gpkg"))
    assert layers["tiles"] == "MultiPolygon" and set(layers) == {"tiles", "rasters"}  # not the envelope R*Tree
    with pytest.raises(Conflict, match="'coast' already exists"):
        store.create("coast", model)
    for bad in ("../up", "a/b", "", ".hidden", "x" * 65):
        with pytest.raises(InvalidRequest, match="is not allowed"):
            store.create(bad, model)
    with pytest.raises(NotFound, match=r"no collection named 'nope'; known collections: \['coast'\]"):
        store.get("nope")
    store.delete("coast")
    assert store.names() == [] and not (tmp_path / "coast").exists()


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # rasterio.windows.bounds, the reference
def test_round_trip_self_recall_and_geopackage(indexed):
    col = Store(indexed).get("base")  # a fresh load from disk
    assert tile_set(col) and len(col) == 22
    for tile_id in col.table.live_ids():
        (best, score), *_ = col.query(col.vector(tile_id), k=3)
        assert best == tile_id and score == pytest.approx(1.0, abs=1e-4)
    gdf = pyogrio.read_dataframe(indexed / "base" / "tiles.gpkg", layer="tiles")
    assert gdf.crs.to_epsg() == 4326 and len(gdf) == 22
    assert set(gdf["raster"]) == {str(SMALL), str(TINY)}
    with rasterio.open(SMALL) as ds:
        row = gdf[gdf["raster"] == str(SMALL)].iloc[0]
        from rasterio.warp import transform_bounds
        from rasterio.windows import Window, bounds

        w = Window(row.col_off, row.row_off, row.width, row.height)
        expect = transform_bounds(ds.crs, "EPSG:4326", *bounds(w, ds.transform), densify_pts=21)
    assert row.geometry.bounds == pytest.approx(expect, abs=1e-7)
    rasters = pyogrio.read_dataframe(indexed / "base" / "tiles.gpkg", layer="rasters")
    assert sorted(rasters["state"]) == ["complete", "complete"]


def test_k_is_clamped_and_ef_kept_at_least_k(fresh):
    col = Store(fresh).get("base")
    hits = col.query(col.vector(1), k=500)
    assert len(hits) == 22
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    assert col._shards[0].index.ef >= 22


def _records(n: int) -> list[TileRecord]:
    return [TileRecord(str(SMALL), (i, 0, 16, 16), "EPSG:32620", (0.0, 0.0, 1.0, 1.0), box(0, 0, 1, 1))
            for i in range(n)]


def test_capacity_grows_while_searches_run(tmp_path, model, indexed):
    base = Store(indexed).get("base")
    seeds = np.stack([base.vector(i) for i in sorted(base.table.live_ids())])
    rng = np.random.default_rng(0)
    n = INITIAL_CAPACITY + 300
    vectors = seeds[rng.integers(0, len(seeds), n)] + rng.normal(0, 0.05, (n, seeds.shape[1])).astype(np.float32)
    col = Store(tmp_path).create("big", model)
    errors: list[BaseException] = []
    stop = threading.Event()

    def searcher() -> None:
        while not stop.is_set():
            try:
                hits = col.query(seeds[0], k=5)
                assert len(hits) <= 5 and all(-1.0 <= s <= 1.0001 for _, s in hits)
            except BaseException as e:  # surfaced below
                errors.append(e)
                return

    t = threading.Thread(target=searcher)
    t.start()
    try:
        with col.writing(model.identity):
            records = _records(n)
            for start in range(0, n, 100):
                col.add_tiles(records[start:start + 100], vectors[start:start + 100])
    finally:
        stop.set()
        t.join()
    assert not errors, errors
    assert col._shards[0].index.get_max_elements() == 2 * INITIAL_CAPACITY
    again = Store(tmp_path).get("big")
    assert len(again) == n
    for i in rng.integers(0, n, 20):
        tile_id = int(i) + 1
        assert again.query(again.vector(tile_id), k=1)[0][0] == tile_id


def test_remove_readd_and_modified_raster(fresh, tmp_path, model):
    store = Store(fresh)
    col = store.get("base")
    before = tile_set(col)
    tiny_tiles = {t for t in before if t[0] == str(TINY)}
    with col.writing(model.identity):
        assert col.remove_raster(str(TINY)) == len(tiny_tiles) == 6
    assert tile_set(col) == before - tiny_tiles
    assert all(r["raster"] != str(TINY) for r in col.table.rows(i for i, _ in col.query(col.vector(1), k=50)).values())
    assert tile_set(Store(fresh).get("base")) == before - tiny_tiles  # removal survives a reload

    report = index_rasters(col, model, [str(TINY)], batch_size=8)
    assert report.rasters == 1 and report.tiles == 6 and tile_set(col) == before
    ids = col.table.live_ids()
    report = index_rasters(col, model, [str(TINY), str(SMALL)], batch_size=8)
    assert report.unchanged == 2 and report.tiles == 0 and col.table.live_ids() == ids  # no-op

    copy = tmp_path / "copy.tif"
    shutil.copyfile(TINY, copy)
    assert index_rasters(col, model, [str(copy)], batch_size=8).tiles == 6
    old_ids = {i for i, r in col.table.rows(col.table.live_ids()).items() if r["raster"] == str(copy)}
    os.utime(copy, ns=(1_000_000_000, 1_000_000_000))  # same bytes, new mtime: indexed again
    assert index_rasters(col, model, [str(copy)], batch_size=8).tiles == 6
    new_ids = {i for i, r in col.table.rows(col.table.live_ids()).items() if r["raster"] == str(copy)}
    assert len(new_ids) == 6 and not new_ids & old_ids
    assert len(tile_set(col)) == 28


def test_reconcile_drops_rows_whose_vectors_were_lost(fresh, model):
    col = Store(fresh).get("base")
    col.table.insert_tiles(_records(3))  # as if killed after the rows committed, before the index was saved
    reopened = Store(fresh).get("base")
    assert len(reopened.table.live_ids()) == 25 and len(reopened) == 22  # readers never see orphans
    with reopened.writing(model.identity):
        pass
    assert len(reopened.table.live_ids()) == 22
    tile_set(reopened)


def test_other_model_identity_is_refused(indexed, model):
    col = Store(indexed).get("base")
    with pytest.raises(ModelMismatch) as e:
        col.check_model("open-clip-vit-b-32:w=0:a=none")
    assert model.identity in e.value.detail and "open-clip-vit-b-32:w=0:a=none" in e.value.detail
    with pytest.raises(ModelMismatch):
        with col.writing("another:w=1:a=none"):
            pass


def test_one_writer_at_a_time(fresh, model):
    a, b = Store(fresh).get("base"), Store(fresh).get("base")  # as if two processes
    with a.writing(model.identity):
        with pytest.raises(Conflict, match="being written by another job or process"):
            with b.writing(model.identity):
                pass
    with b.writing(model.identity):
        pass


def test_vectors_are_read_from_the_saved_file_and_unsaved_ones_still_found(fresh, model):
    col = Store(fresh, checkpoint_every=10**6).get("base")
    view = col._shards[0].vectors
    assert view is not None and len(view) == 22  # the fast path is really in use
    ids = sorted(col.table.live_ids())
    expect = np.asarray(col._shards[0].index.get_items(ids), dtype=np.float32)
    assert np.allclose(col._gather(ids), expect, atol=1e-6)  # get_items: v * |v| under chroma-hnswlib
    assert np.allclose(col.vector(ids[3]), expect[3], atol=1e-6)
    rng = np.random.default_rng(1)
    new = rng.normal(size=(5, model.dim)).astype(np.float32)
    with col.writing(model.identity):
        added = col.add_tiles(_records(5), new)
        assert (col._shards[0].vectors.positions(np.array(added)) == -1).all()  # not saved yet: read from the index
        unit = new / np.linalg.norm(new, axis=1, keepdims=True)
        mixed = [ids[0], added[0], ids[5], added[4]]
        assert np.allclose(col._gather(mixed), np.stack([expect[0], unit[0], expect[5], unit[4]]), atol=1e-6)
        assert np.allclose(col.vector(added[2]), unit[2], atol=1e-6)
        (best, score), *_ = col.query(unit[1], k=1, candidates=[added[1], ids[0]])
        assert best == added[1] and score == pytest.approx(1.0, abs=1e-5)
        col.checkpoint()
        assert len(col._shards[0].vectors) == 27 and (col._shards[0].vectors.positions(np.array(added)) >= 0).all()
        saved = np.asarray(col._shards[0].index.get_items(ids + added), dtype=np.float32)
        assert np.allclose(col._gather(ids + added), saved / np.linalg.norm(saved, axis=1, keepdims=True), atol=1e-6)
        col.remove_raster(str(TINY))
    again = Store(fresh).get("base")
    assert len(again._shards[0].vectors) == 27 and len(again) == 27 - 6
    tile_set(again)
    with pytest.raises(NotFound):
        again.vector(next(i for i in ids if i not in again.ids()))


def test_a_file_that_does_not_match_gives_no_view_and_search_still_works(fresh, monkeypatch):
    from server.store import hnswfile
    from server.store.hnswfile import VectorFile

    col = Store(fresh).get("base")
    index_bin = fresh / "base" / "index.bin"
    data = bytearray(index_bin.read_bytes())
    (fresh / "bad.bin").write_bytes(data[:200])  # truncated
    first = 96 + int.from_bytes(data[40:48], "little")  # header, then offsetData: the first stored vector
    flipped = bytearray(data)
    flipped[first:first + 4] = np.float32(0.5).tobytes()
    (fresh / "flipped.bin").write_bytes(bytes(flipped))  # a layout that parses but holds other vectors
    data[32:40] = (12345).to_bytes(8, "little")  # label_offset
    (fresh / "odd.bin").write_bytes(bytes(data))
    ids = np.asarray(col._shards[0].index.get_ids_list(), dtype=np.int64)
    for name in ("bad.bin", "flipped.bin", "odd.bin"):
        fd = os.open(fresh / name, os.O_RDONLY)
        try:
            assert VectorFile.open(fd, col._shards[0].index, ids) is None
        finally:
            os.close(fd)
    fd = os.open(index_bin, os.O_RDONLY)
    try:
        assert VectorFile.open(fd, col._shards[0].index, ids[:-1]) is None  # labels differ from the loaded index
        monkeypatch.setattr(hnswfile, "_SAMPLES", 22)
        assert VectorFile.open(fd, col._shards[0].index, ids) is not None
    finally:
        os.close(fd)
    monkeypatch.setattr(VectorFile, "open", classmethod(lambda cls, *a: None))
    slow = Store(fresh).get("base")
    assert slow._shards[0].vectors is None
    assert tile_set(slow) == tile_set(col)
    for tile_id in sorted(slow.table.live_ids())[:5]:
        assert slow.query(slow.vector(tile_id), k=1, candidates=slow.ids())[0][0] == tile_id
