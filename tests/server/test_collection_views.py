"""Collections embed each tile as the mean of its views (harma_core.views); older ones keep one view."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from server_testutil import SMALL, write_raster

from harma_core.views import DEFAULT_VIEWS
from server.errors import Conflict, InvalidRequest
from server.indexing.pipeline import index_rasters
from server.indexing.target import open_or_create
from server.store.records import TilingParams
from server.store.store import Store


def _square_and_turned(tmp_path: Path) -> tuple[Path, Path]:
    """A 256 px square of the real Grenada Landsat scene, and the same pixels turned a quarter (north to west)."""
    with rasterio.open(SMALL) as src:
        data = src.read(window=((0, 256), (0, 256)))
    return (write_raster(tmp_path / "square.tif", data),
            write_raster(tmp_path / "turned.tif", np.ascontiguousarray(np.rot90(data, 1, axes=(1, 2)))))


def _tile_vectors(col: Any, raster: Path) -> dict[tuple[int, int], np.ndarray]:
    """The stored unit vector of each tile of a raster, by its window's (col_off, row_off)."""
    with col.table.connect() as conn:
        rows = conn.execute("SELECT fid, col_off, row_off FROM tiles WHERE raster = ? AND deleted = 0",
                            (str(raster),)).fetchall()
    return {(x, y): col.vector(tid) for tid, x, y in rows}


def test_a_turned_raster_gets_the_same_tile_vectors(model: Any, tmp_path: Path) -> None:
    square, turned = _square_and_turned(tmp_path)
    store = Store(tmp_path / "store")
    col = store.create("views", model, TilingParams(tile_size=128))
    assert col.params.views == DEFAULT_VIEWS == 8
    assert json.loads((col.folder / "manifest.json").read_text())["tiling"]["views"] == 8
    index_rasters(col, model, [str(square), str(turned)], batch_size=4)
    a, b = _tile_vectors(col, square), _tile_vectors(col, turned)
    assert len(a) == len(b) == 4
    # rot90 (counter-clockwise) moves the tile at (x, y) of the square to (y, 128 - x) of the turned raster
    for (x, y), v in a.items():
        assert float(v @ b[(y, 128 - x)]) > 0.9999, (x, y)
    one = store.create("one", model, TilingParams(tile_size=128, views=1))
    index_rasters(one, model, [str(square), str(turned)], batch_size=4)
    a1, b1 = _tile_vectors(one, square), _tile_vectors(one, turned)
    assert min(float(v @ b1[(y, 128 - x)]) for (x, y), v in a1.items()) < 0.999, "one view moves with the turn"


def test_a_collection_made_before_views_keeps_one_view(model: Any, tmp_path: Path) -> None:
    square, turned = _square_and_turned(tmp_path)
    store = Store(tmp_path / "store")
    col = store.create("old", model, TilingParams(tile_size=128, views=1))
    index_rasters(col, model, [str(square)], batch_size=4)
    path = col.folder / "manifest.json"
    manifest = json.loads(path.read_text())
    del manifest["tiling"]["views"]  # what a collection written by an earlier version holds
    path.write_text(json.dumps(manifest))
    reopened = Store(tmp_path / "store").get("old")
    assert reopened.params.views == 1
    index_rasters(reopened, model, [str(turned)], batch_size=4)  # appends embed the way the old tiles were
    a, b = _tile_vectors(reopened, square), _tile_vectors(reopened, turned)
    assert min(float(v @ b[(y, 128 - x)]) for (x, y), v in a.items()) < 0.999
    assert open_or_create(Store(tmp_path / "store"), "old", model, {"tile_size": 128}).params.views == 1
    with pytest.raises(Conflict, match="exists with tiling"):
        open_or_create(Store(tmp_path / "store"), "old", model, {"tile_size": 128, "views": 8})
    # the same rule for GeoParquet shards written before views: their metadata has no "views"
    assert TilingParams.recorded({"tile_size": 128}).views == 1
    assert TilingParams.from_dict({"tile_size": 128}).views == DEFAULT_VIEWS
    with pytest.raises(InvalidRequest, match="views=3 is not supported; use one of 1, 2, 4, 8"):
        TilingParams.from_dict({"views": 3})
