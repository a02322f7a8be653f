"""Bad rasters through the real pipeline, store, search and previews: poles, palettes, dark 8-bit, nodata."""

from __future__ import annotations

import io

import bad_rasters
import numpy as np
import rasterio
from PIL import Image
from rasterio.windows import Window
from server_testutil import SMALL

from server.indexing.pipeline import Progress, index_rasters
from server.indexing.tiling import inspect_raster, read_tile
from server.previews import tile_png
from server.search.search import SearchRequest, TextEmbedder, search
from server.store.records import TilingParams
from server.store.store import Store


def test_area_search_at_the_north_pole_finds_the_tiles_that_contain_it(tmp_path, model):
    path = str(bad_rasters.polar(tmp_path))
    col = Store(tmp_path / "store").create("arctic", model, TilingParams(tile_size=48))  # 4 quadrants
    assert index_rasters(col, model, [path], batch_size=4).tiles == 4
    req = SearchRequest.from_json({"text": "sea ice", "k": 10, "bbox": [-180.0, 89.95, 180.0, 90.0]})
    hits = search(Store(tmp_path / "store"), model, TextEmbedder(model), req)["features"]
    assert len(hits) == 4  # every quadrant has the pole at a corner, so every one reaches the polar cap


def _png(col, tile_id: int, side: int) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(tile_png(col, tile_id, side))).convert("RGB"))


def test_previews_show_what_the_encoder_saw_for_palette_and_dark_8bit(tmp_path, model):
    palette = str(bad_rasters.palette(tmp_path))
    col = Store(tmp_path / "store").create("mixed", model, TilingParams(tile_size=128))
    report = index_rasters(col, model, [palette, str(SMALL)], batch_size=8)
    assert report.rasters == 2 and report.tiles == 1 + 16, report
    side = model.image_size
    rows = col.table.rows(col.table.live_ids())
    contrast = []
    for tile_id, row in rows.items():
        info = inspect_raster(row["raster"], col.params)
        window = Window(row["col_off"], row["row_off"], row["width"], row["height"])
        with rasterio.open(row["raster"]) as ds:
            seen = read_tile(ds, info, window, side)  # what the pipeline handed to the encoder
        shown = _png(col, tile_id, side)
        assert shown.shape == seen.shape and np.array_equal(shown, seen), row["raster"]
        if row["raster"] == str(SMALL):
            contrast.append(shown.std())
        else:
            colours = {tuple(int(v) for v in px) for px in shown.reshape(-1, 3)}
            assert colours == {c[:3] for c in bad_rasters.PALETTE.values()}
    assert np.mean(contrast) > 25  # Grenada stretched: its stored pixels have a std of 8


def test_progress_advances_through_nodata_tiles(tmp_path, model):
    path = str(bad_rasters.mostly_nodata(tmp_path))  # 1024 px, valid only in the last 64 rows
    col = Store(tmp_path / "store").create("sparse", model, TilingParams(tile_size=64))
    seen: list[tuple[Progress, int]] = []
    report = index_rasters(col, model, [path], batch_size=4,
                           progress=lambda p: seen.append((Progress(**vars(p)), len(col))))
    assert report.tiles == 2 and report.nodata_tiles == 254, report
    assert seen[0][0].total == 256 and seen[-1][0].done == 256
    before_any_tile = [p.done for p, stored in seen if stored == 0]
    assert len(set(before_any_tile) - {0}) >= 50, before_any_tile[:20]  # moves in steps of <= 4 windows...
    assert all(b - a <= 4 for a, b in zip(before_any_tile, before_any_tile[1:]))  # ...never one jump
