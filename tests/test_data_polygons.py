"""Labelled tiles from real GeoTIFFs and polygons: indexing's grid, reprojection, cover threshold, splits, errors."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from rasterio.windows import Window
from shapely.geometry import box

from harma_core.errors import DataError
from harma_core.readers import PolygonSource, read_polygon_tiles
from server.indexing.tiling import inspect_raster, read_tile
from server.store.records import TilingParams
from tools.mosaic import build_mosaic

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
NAIP = DATA / "geotiff" / "naip_north_dakota_2020_rgbn.tif"  # 934x723, EPSG:26914, 5 m, 4 bands, 512 blocks
UCM = DATA / "captions" / "ucm_captions"


def _pixel_box(ds: rasterio.DatasetReader, row0: int, col0: int, row1: int, col1: int):
    """A box in the raster's CRS covering pixel rows [row0, row1) and columns [col0, col1)."""
    return box(*rasterio.windows.bounds(Window(col0, row0, col1 - col0, row1 - row0), ds.transform))


def _labels(path: Path, ds: rasterio.DatasetReader, rows: list[tuple], crs: str = "EPSG:4326", **cols) -> Path:
    """Write (label, row0, col0, row1, col1) polygons, reprojected to `crs`, as a GeoPackage/Shapefile."""
    geoms = [_pixel_box(ds, *r[1:]) for r in rows]
    gdf = gpd.GeoDataFrame({"cls": [r[0] for r in rows], **cols}, geometry=geoms, crs=ds.crs).to_crs(crs)
    gdf.to_file(path)
    return path


def test_tiles_are_indexing_windows_labelled_by_cover(tmp_path: Path) -> None:
    with rasterio.open(NAIP) as ds:
        rows = [("farm", 320, 320, 448, 448), ("town", 320, 416, 384, 576), ("lake", 384, 448, 448, 460),
                ("farm", 0, 0, 64, 128), ("town", 64, 0, 128, 64)]
        labels = _labels(tmp_path / "l.gpkg", ds, rows, split=["train"] * 3 + ["val"] * 2)
    report = read_polygon_tiles(PolygonSource(rasters=(str(NAIP),), labels=str(labels), label_field="cls",
                                              tile_size=64, split_field="split"))
    got = {it.source.split("window ")[1]: it for it in report.items}
    assert {k: (v.labels, v.split) for k, v in got.items()} == {
        "(0, 0, 64, 64)": (("farm",), "val"), "(64, 0, 64, 64)": (("farm",), "val"),
        "(0, 64, 64, 64)": (("town",), "val"),
        "(320, 320, 64, 64)": (("farm",), "train"), "(384, 320, 64, 64)": (("farm", "town"), "train"),
        "(448, 320, 64, 64)": (("town",), "train"), "(512, 320, 64, 64)": (("town",), "train"),
        "(320, 384, 64, 64)": (("farm",), "train"), "(384, 384, 64, 64)": (("farm",), "train"),
    }
    assert got["(384, 320, 64, 64)"].captions == ("an aerial image of farm", "an aerial image of town")
    lake = [r for s, r in report.skipped if s.endswith("(448, 384, 64, 64)")]
    assert lake and "best cover 0.19 < 0.3" in lake[0]  # 12 of 64 columns: under the threshold
    # the pixels are exactly what indexing reads for the same window (same grid, bands 1-3, same read)
    info = inspect_raster(str(NAIP), TilingParams(tile_size=64))
    with rasterio.open(NAIP) as ds:
        for key in ("(384, 320, 64, 64)", "(0, 64, 64, 64)"):
            win = Window(*(int(v) for v in key.strip("()").split(", ")))
            assert np.array_equal(got[key].image, read_tile(ds, info, win, 256))


def test_labels_in_the_raster_crs_or_4326_give_the_same_tiles(tmp_path: Path) -> None:
    with rasterio.open(NAIP) as ds:
        rows = [("farm", 320, 320, 448, 448), ("town", 0, 0, 64, 128)]
        a = _labels(tmp_path / "a.geojson", ds, rows, split=["train", "val"])
        b = _labels(tmp_path / "b.shp", ds, rows, crs=str(ds.crs), split=["train", "val"])
    ra, rb = (read_polygon_tiles(PolygonSource((str(NAIP),), str(p), "cls", tile_size=64, split_field="split"))
              for p in (a, b))
    assert [(i.source, i.labels) for i in ra.items] == [(i.source, i.labels) for i in rb.items]
    assert len(ra.items) == 6


def test_held_out_blocks_on_a_ucm_mosaic(tmp_path: Path) -> None:
    m = build_mosaic(UCM, "train", tmp_path / "m", per_class=4)  # 84 scenes, 7 x 12 cells of 256 px
    cells = gpd.read_file(m.gpkg)
    for size in ({"tile_size": 256}, {"tile_size_m": 76.8}):  # 256 px of 0.3 m
        report = read_polygon_tiles(PolygonSource((str(m.tif),), str(m.gpkg), "label", **size))
        assert len(report.items) == 84 and report.skipped == []
        by_cell = {}
        for it in report.items:
            col, row = (int(v) for v in it.source.split("window (")[1].split(", ")[:2])
            by_cell[(row // 256, col // 256)] = it
        for c in cells.itertuples():
            assert by_cell[(c.row, c.col)].labels == (c.label,)
        # blocks of 2 x 2 cells (7 x 12 tiles give fewer than 10 blocks of 4): each block on one side
        blocks: dict[tuple[int, int], set[str]] = {}
        for (r, c), it in by_cell.items():
            blocks.setdefault((r // 2, c // 2), set()).add(it.split)
        assert all(len(s) == 1 for s in blocks.values())
        n_val = Counter(it.split for it in report.items)["val"]
        assert 0.1 <= n_val / 84 <= 0.35


def test_bad_inputs_name_the_problem(tmp_path: Path) -> None:
    def read(labels, field="cls", **kw):
        return read_polygon_tiles(PolygonSource((str(kw.pop("raster", NAIP)),), str(labels), field, tile_size=64,
                                                **kw))

    with rasterio.open(NAIP) as ds:
        good = _labels(tmp_path / "good.gpkg", ds, [("farm", 320, 320, 448, 448), ("town", 320, 576, 384, 704)])
        one = _labels(tmp_path / "one.gpkg", ds, [("farm", 320, 320, 448, 448), ("farm", 0, 0, 64, 128)])
        empty = _labels(tmp_path / "empty.gpkg", ds, [("", 320, 320, 448, 448), (None, 0, 0, 64, 128)])
        tiny = _labels(tmp_path / "tiny.gpkg", ds, [("a", 320, 320, 330, 330), ("b", 0, 0, 5, 5)])
        splits = _labels(tmp_path / "s.gpkg", ds, [("a", 320, 320, 448, 448), ("b", 0, 0, 64, 128)],
                         part=["train", "test"])
        profile = {**ds.profile, "crs": None, "width": 128, "height": 128, "tiled": False}
        profile.pop("blockxsize"), profile.pop("blockysize")
        pixels = ds.read(window=Window(0, 0, 128, 128))
    no_crs_raster = tmp_path / "nocrs.tif"
    with rasterio.open(no_crs_raster, "w", **profile) as dst:
        dst.write(pixels)
    far = tmp_path / "far.gpkg"
    gpd.GeoDataFrame({"cls": ["a", "b"]}, geometry=[box(10, 10, 11, 11), box(12, 12, 13, 13)],
                     crs="EPSG:4326").to_file(far)
    no_crs = tmp_path / "nocrs.shp"  # a Shapefile without .prj has no CRS
    with pytest.warns(UserWarning, match="crs"):
        gpd.GeoDataFrame({"cls": ["a", "b"]}, geometry=[box(0, 0, 1, 1)] * 2).to_file(no_crs)

    cases = [
        (lambda: read(tmp_path / "none.gpkg"), "labels file not found"),
        (lambda: read(no_crs), "has no CRS; set the layer's CRS"),
        (lambda: read(good, "landuse"), "no label field 'landuse'; fields: cls"),
        (lambda: read(empty), "no polygon has a value in label field 'cls'"),
        (lambda: read(one), "one class only \\('farm'\\)"),
        (lambda: read(good, raster=no_crs_raster), "nocrs.tif has no CRS"),
        (lambda: read(far), "no polygon of .* lies over naip"),
        (lambda: read(tiny), "no tile of .* is labelled: a label must cover at least 30%"),
        (lambda: read(splits, split_field="part"), "holds \\['test'\\]; use only 'train' and 'val'"),
        (lambda: read(good), "no val tile .* give a split field"),  # both polygons fall in train blocks
        (lambda: read(good, template="a photo of {name}"), "placeholder"),
    ]
    for call, message in cases:
        with pytest.raises(DataError, match=message):
            call()
            pytest.fail(f"no error for {message!r}")
