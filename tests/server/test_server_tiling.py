"""Tiling on the real GeoTIFFs and on generated edge cases: windows, bounds, footprints, bands, stretch."""

from __future__ import annotations

import bad_rasters
import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.warp import transform as rio_transform
from rasterio.warp import transform_bounds
from rasterio.windows import Window
from rasterio.windows import bounds as rio_bounds
from server_testutil import GEOTIFFS, PAN, SMALL, noise
from shapely.geometry import MultiPolygon, Point, Polygon, box

from server.errors import InvalidRequest, RasterError
from server.indexing.tiling import (
    axis_offsets,
    bounds_window,
    choose_bands,
    grid_windows,
    inspect_raster,
    plan_windows,
    read_tile,
    tile_record,
    window_bounds,
)
from server.store.records import TilingParams

# rasterio.windows.bounds, used here as the reference, still multiplies affines with `*`
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")


def test_shared_rasters_are_there():
    assert len(GEOTIFFS) >= 6, f"expected the shared GeoTIFFs, found {GEOTIFFS}"


@pytest.mark.parametrize("size,tile,stride", [(500, 256, 256), (438, 64, 48), (256, 256, 256), (100, 256, 256),
                                              (1000, 300, 299)])
def test_axis_offsets_cover_every_pixel_and_end_flush(size, tile, stride):
    offsets = axis_offsets(size, tile, stride)
    covered = np.zeros(size, bool)
    for o in offsets:
        covered[o:o + tile] = True
    assert covered.all()
    assert offsets[0] == 0 and offsets == sorted(set(offsets))
    assert offsets[-1] + min(tile, size) == size  # edge tile included, flush with the edge
    assert all(b - a <= stride for a, b in zip(offsets, offsets[1:]))


def test_grid_windows_are_inside_the_grid():
    wins = grid_windows(438, 500, 256, 256)
    assert [(w.col_off, w.row_off) for w in wins] == [(0, 0), (182, 0), (0, 244), (182, 244)]
    assert all(w.width == 256 and w.height == 256 for w in wins)
    small = grid_windows(100, 40, 256, 256)
    assert [(w.col_off, w.row_off, w.width, w.height) for w in small] == [(0, 0, 100, 40)]


@pytest.mark.parametrize("path", GEOTIFFS, ids=lambda p: p.name)
def test_bounds_window_round_trip(path):
    with rasterio.open(path) as ds:
        for w in grid_windows(ds.width, ds.height, 128, 100):
            b = window_bounds(ds.transform, w)
            assert b == pytest.approx(rio_bounds(w, ds.transform))
            assert b[0] < b[2] and b[1] < b[3]
            back = bounds_window(ds.transform, b)
            assert (back.col_off, back.row_off, back.width, back.height) == (w.col_off, w.row_off, w.width,
                                                                             w.height)


@pytest.mark.parametrize("path", GEOTIFFS, ids=lambda p: p.name)
def test_footprints_match_rasterio_transform(path):
    info = inspect_raster(str(path), TilingParams(tile_size=256))
    with rasterio.open(path) as ds:
        whole = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21)
        for w in plan_windows(info):
            rec = tile_record(info, w)
            assert rec.crs == ds.crs.to_string()
            assert rec.bounds == pytest.approx(rio_bounds(w, ds.transform))
            fp = rec.footprint
            assert isinstance(fp, Polygon) and fp.is_valid and fp.exterior.is_ccw
            # each corner of the window, placed by rasterio's own transform, is a vertex of the footprint
            corners = [(w.row_off, w.col_off), (w.row_off, w.col_off + w.width),
                       (w.row_off + w.height, w.col_off + w.width), (w.row_off + w.height, w.col_off)]
            xs, ys = zip(*(ds.xy(r, c, offset="ul") for r, c in corners))
            lons, lats = rio_transform(ds.crs, "EPSG:4326", xs, ys)
            for lon, lat in zip(lons, lats):
                assert fp.exterior.distance(Point(lon, lat)) < 1e-9
            # the tile's envelope agrees with rasterio's densified bounds and lies inside the raster's
            assert fp.bounds == pytest.approx(
                transform_bounds(ds.crs, "EPSG:4326", *rio_bounds(w, ds.transform), densify_pts=21), abs=1e-7)
            west, south, east, north = fp.bounds
            assert whole[0] - 1e-6 <= west and east <= whole[2] + 1e-6
            assert whole[1] - 1e-6 <= south and north <= whole[3] + 1e-6


def test_footprint_split_at_antimeridian(make_raster):
    # UTM zone 60N, x from 700 km to 1000 km: crosses 180 degrees east
    path = make_raster("fiji.tif", noise(3, 300, 300), crs="EPSG:32660",
                       transform=Affine(1000.0, 0, 700_000.0, 0, -1000.0, 1_100_000.0))
    info = inspect_raster(str(path), TilingParams(tile_size=300))
    fp = tile_record(info, plan_windows(info)[0]).footprint
    assert isinstance(fp, MultiPolygon) and len(fp.geoms) == 2
    west, _, east, _ = fp.bounds
    assert west == pytest.approx(-180.0) and east == pytest.approx(180.0)
    assert all(g.is_valid and g.exterior.is_ccw for g in fp.geoms)


def test_geographic_raster_beyond_180_is_wrapped(make_raster):
    path = make_raster("pacific.tif", noise(3, 64, 64), crs="EPSG:4326",
                       transform=Affine(0.5, 0, 170.0, 0, -0.5, 10.0))  # 170E .. 202E
    info = inspect_raster(str(path), TilingParams(tile_size=64))
    fp = tile_record(info, plan_windows(info)[0]).footprint
    assert isinstance(fp, MultiPolygon)
    assert fp.area == pytest.approx(32.0 * 32.0)
    assert -180.0 <= fp.bounds[0] and fp.bounds[2] <= 180.0


def test_band_choice():
    from rasterio.enums import ColorInterp as C

    assert choose_bands((C.blue, C.green, C.red), 3) == (3, 2, 1)
    assert choose_bands((C.gray, C.undefined, C.undefined, C.undefined), 4) == (1, 2, 3)
    assert choose_bands((C.gray,), 1) == (1, 1, 1)
    assert choose_bands((C.gray,) * 4, 4, (4, 3, 2)) == (4, 3, 2)
    assert choose_bands((C.gray,) * 4, 4, (4,)) == (4, 4, 4)
    with pytest.raises(RasterError, match=r"bands \[5\] do not exist; this raster has bands 1..4"):
        choose_bands((C.gray,) * 4, 4, (5, 3, 2))


def test_uint16_pan_is_stretched_by_percentiles():
    info = inspect_raster(str(PAN), TilingParams())
    assert info.bands == (1, 1, 1) and info.dtype == "uint16"
    with rasterio.open(PAN) as ds:
        band = ds.read(1, masked=True)
        lo, hi = np.percentile(band.compressed(), (2, 98))
        assert info.stretch[0] == pytest.approx((lo, hi), rel=0.05)
        tile = read_tile(ds, info, Window(0, 0, 256, 256), 224)
    assert tile.dtype == np.uint8 and tile.shape == (224, 224, 3)
    assert tile.min() == 0 and tile.max() == 255 and 40 < tile.mean() < 215
    assert (tile[..., 0] == tile[..., 1]).all()  # single band repeated


def test_tile_size_in_metres():
    info = inspect_raster(str(SMALL), TilingParams(tile_size_m=3840.0, overlap_m=960.0))  # 60 m pixels
    assert info.tile == 64
    assert info.stride == 32  # 48 px rounded down to the file's 32 px blocks so reads start on blocks


def test_params_validation_and_round_trip():
    p = TilingParams(tile_size=128, overlap=16, bands=(4, 3, 2))
    assert TilingParams.from_dict(p.to_dict()) == p
    with pytest.raises(InvalidRequest, match="overlap=300"):
        TilingParams(tile_size=256, overlap=300)
    with pytest.raises(InvalidRequest, match=r"unknown tiling parameter\(s\) \['tilesize'\]"):
        TilingParams.from_dict({"tilesize": 3})


def test_nodata_tiles_are_skipped(make_raster):
    data = noise(3, 128, 128)
    data[:, :, 64:] = 0
    path = make_raster("half.tif", data, nodata=0)
    info = inspect_raster(str(path), TilingParams(tile_size=64))
    with rasterio.open(path) as ds:
        tiles = [read_tile(ds, info, w) for w in plan_windows(info)]
    assert [t is None for t in tiles] == [False, True, False, True]


def test_no_crs_is_refused_unless_pixel_coordinates(make_raster):
    path = make_raster("nocrs.tif", noise(3, 64, 64), crs=None)
    with pytest.raises(RasterError, match="has no CRS.*pixel_coords=true"):
        inspect_raster(str(path), TilingParams(tile_size=32))
    info = inspect_raster(str(path), TilingParams(tile_size=32, pixel_coords=True))
    rec = tile_record(info, plan_windows(info)[3])
    assert rec.crs is None and rec.footprint is None
    assert rec.bounds == (32.0, 64.0, 64.0, 32.0)  # pixel units, rasterio's (left, bottom, right, top)


def test_corrupt_file_is_refused(tmp_path):
    good = SMALL.read_bytes()
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(good[:4000])
    garbage = tmp_path / "garbage.tif"
    garbage.write_bytes(b"this is not a tiff" * 100)
    for path in (truncated, garbage):
        with pytest.raises(RasterError, match="cannot read"):
            inspect_raster(str(path), TilingParams())


def test_all_nodata_is_refused(make_raster):
    path = make_raster("empty.tif", np.zeros((3, 64, 64), np.uint8), nodata=0)
    with pytest.raises(RasterError, match="has no valid pixels"):
        inspect_raster(str(path), TilingParams(tile_size=32))


def test_one_pixel_raster_is_refused(make_raster):
    path = make_raster("dot.tif", noise(3, 1, 1))
    with pytest.raises(RasterError, match="is 1x1 pixels; rasters smaller than 16x16"):
        inspect_raster(str(path), TilingParams())


def test_float_raster_with_nan_is_stretched_on_finite_pixels(make_raster):
    data = np.linspace(0.0, 1.0, 3 * 64 * 64, dtype=np.float32).reshape(3, 64, 64)
    data[:, :, 32:] = np.nan
    path = make_raster("float.tif", data)
    info = inspect_raster(str(path), TilingParams(tile_size=32))
    assert all(np.isfinite(lo) and np.isfinite(hi) and lo < hi for lo, hi in info.stretch)
    with rasterio.open(path) as ds:
        tiles = [read_tile(ds, info, w) for w in plan_windows(info)]
    assert [t is None for t in tiles] == [False, True, False, True]
    assert tiles[0].dtype == np.uint8 and tiles[0].max() > 0


def test_tile_size_in_metres_on_a_geographic_raster():
    peru = next(p for p in GEOTIFFS if "pucallpa" in p.name)  # EPSG:4326, ~0.000808 degrees, 8.4 S
    info = inspect_raster(str(peru), TilingParams(tile_size_m=5000.0))
    assert 54 <= info.tile <= 58  # 5 km / (0.000808 deg * 111.3 km * cos 8.4 deg)


@pytest.mark.parametrize("south", [False, True], ids=["north_3413", "south_3031"])
def test_tiles_containing_a_pole_reach_it(tmp_path, south):
    path = bad_rasters.polar(tmp_path, south=south)  # 96 km square centred on the pole, 1 km pixels
    info = inspect_raster(str(path), TilingParams(tile_size=64))  # 4 overlapping tiles, each holds the pole
    pole = Point(0.0, -90.0 if south else 90.0)
    near_pole = box(-180.0, -90.0, 180.0, -89.9) if south else box(-180.0, 89.9, 180.0, 90.0)
    for w in plan_windows(info):
        fp = tile_record(info, w).footprint
        assert fp.is_valid and fp.bounds[0] == pytest.approx(-180.0) and fp.bounds[2] == pytest.approx(180.0)
        assert (fp.bounds[1] if south else fp.bounds[3]) == pytest.approx(pole.y)
        assert fp.intersects(near_pole) and fp.distance(pole) < 1e-9
        # the far edge of the tile stays where rasterio puts it: 16 km from the pole at its nearest
        with rasterio.open(path) as ds:
            x, y = ds.xy(w.row_off + w.height // 2, w.col_off + w.width, offset="ul")
            lo, la = rio_transform(ds.crs, "EPSG:4326", [x], [y])
        assert fp.exterior.distance(Point(lo[0], la[0])) < 1e-6
    # a tile beside the pole (not containing it) is an ordinary polygon away from the pole
    side = inspect_raster(str(path), TilingParams(tile_size=32))
    corner = tile_record(side, plan_windows(side)[0]).footprint
    assert corner.distance(pole) > 0.1 and not corner.intersects(near_pole)


def test_palette_raster_is_expanded_through_its_colour_table(tmp_path):
    path = bad_rasters.palette(tmp_path)  # four 64 px blocks of indices 0..3
    info = inspect_raster(str(path), TilingParams(tile_size=64))
    with rasterio.open(path) as ds:
        tiles = [read_tile(ds, info, w) for w in plan_windows(info)]
        preview = read_tile(ds, info, Window(32, 32, 64, 64), 32)  # decimated across all four colours
    for tile, index in zip(tiles, (0, 1, 2, 3)):
        assert tile.shape == (64, 64, 3) and (tile == bad_rasters.PALETTE[index][:3]).all()
    colours = {tuple(int(v) for v in px) for px in preview.reshape(-1, 3)}
    assert colours == {c[:3] for c in bad_rasters.PALETTE.values()}  # nearest: no blended indices


@pytest.mark.parametrize("params,message", [
    ({"tile_size": 10**9}, r"tile_size=1000000000 is too large; use 16 to 8192 pixels"),
    ({"tile_size": 8}, r"tile_size=8 is too small; use 16 to 8192 pixels"),
    ({"tile_size": 256, "overlap": 10**9}, r"overlap=1000000000 must be >= 0 and < tile_size=256"),
    ({"tile_size_m": 1e12}, r"tile_size_m=1000000000000.0 must be in \(0, 100000\] metres"),
    ({"tile_size_m": float("nan")}, r"tile_size_m=nan must be in \(0, 100000\] metres"),
    ({"tile_size_m": 500.0, "overlap_m": 1e9}, r"overlap_m=1000000000.0 needs tile_size_m"),
])
def test_absurd_tile_sizes_are_refused_with_the_range(params, message):
    with pytest.raises(InvalidRequest, match=message):
        TilingParams.from_dict(params)


def test_tile_size_in_metres_beyond_the_pixel_limit_is_refused(make_raster):
    path = make_raster("fine.tif", noise(3, 64, 64), transform=Affine(0.01, 0, 500_000.0, 0, -0.01, 5e6))
    with pytest.raises(RasterError, match=r"tile_size_m=100000.0 is 10000000 pixels of 0.01 m .*at most 8192"):
        inspect_raster(str(path), TilingParams(tile_size_m=100_000.0))


@pytest.mark.parametrize("name,res_m,tile", [
    ("aerial_colorado_0p15m_rgb.tif", 0.1498, 2002),  # 300 m / 0.149816 m
    ("spacenet_atlanta_pan_0p5m.tif", 0.5, 600),
    ("naip_north_dakota_2020_rgbn.tif", 5.0, 64),  # 60 px would be too coarse: clamped to 64 px (320 m)
    ("landsat8_grenada_rgb.tif", 60.0, 64),  # 3.8 km, the coarse end of the training scenes
    ("landsat7_bahamas_rgb.tif", 300.0, 64),
])
def test_auto_tile_size_follows_ground_resolution(name, res_m, tile):
    info = inspect_raster(str(GEOTIFFS[0].parent / name), TilingParams())
    assert abs(info.affine.a) == pytest.approx(res_m, rel=1e-3)
    assert info.tile == tile and info.stride <= tile


def test_auto_tiling_is_recorded_as_a_rule_and_explicit_sizes_win():
    auto = TilingParams()
    d = auto.to_dict()
    assert d["tile_size"] is None and d["auto_tile_m"] == 300.0 and d["auto_tile_px"] == [64, 2048]
    assert TilingParams.from_dict(d) == auto == TilingParams.from_dict({})
    assert inspect_raster(str(PAN), TilingParams(tile_size=256)).tile == 256
    assert inspect_raster(str(PAN), TilingParams(tile_size_m=64.0)).tile == 128
    assert inspect_raster(str(PAN), TilingParams(auto_tile_m=150.0)).tile == 300
    with pytest.raises(InvalidRequest, match=r"overlap=64 must be >= 0 and < 64 \(the smallest automatic tile"):
        TilingParams(overlap=64)
    with pytest.raises(InvalidRequest, match=r"auto_tile_px=\[64, 10000\] must be 16 <= min <= max <= 8192"):
        TilingParams.from_dict({"auto_tile_px": [64, 10000]})


def test_auto_tiling_without_a_crs_keeps_256_pixels(make_raster):
    path = make_raster("nocrs.tif", noise(3, 300, 300), crs=None)
    assert inspect_raster(str(path), TilingParams(pixel_coords=True)).tile == 256


def test_auto_tiling_on_a_rotated_grid(make_raster):
    # rotated 90 degrees: the x pixel vector is (0, -1 m), so transform.a is 0
    path = make_raster("rotated.tif", noise(3, 400, 400), transform=Affine(0.0, 1.0, 500_000.0, -1.0, 0.0, 5e6))
    assert inspect_raster(str(path), TilingParams()).tile == 300
    assert inspect_raster(str(path), TilingParams(tile_size_m=100.0)).tile == 100
