"""Change between dates on real rasters: ground-aligned cells, dates, the CLI's outputs and its refusals, and
POST /api/v1/change on a live server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from maps_testutil import live_server
from server_testutil import REPO, call, noise, write_raster
from shapely.geometry import box

from server.indexing.aligned import (
    default_crs,
    inspect_scene,
    make_grid,
    opened,
    read_cell,
    scene_footprint,
)
from server.indexing.dates import raster_date, scene_date
from server.search.change import change_scores, robust_z

DATA = (REPO / ".." / "shared" / "data" / "multidate").resolve()
PRE = sorted(str(p) for p in (DATA / "joplin_tornado_2011" / "pre").glob("*.tif"))
POST = sorted(str(p) for p in (DATA / "joplin_tornado_2011" / "post").glob("*.tif"))
NAIP = {p.stem[-8:-4]: str(p) for p in (DATA / "naip_north_dakota_2009-2020").glob("*.tif")}
TOOL = REPO / "tools" / "change.py"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def test_dates_come_from_the_given_value_tags_or_file_name(tmp_path: Path) -> None:
    got = raster_date(NAIP["2009"])
    assert (got.value, got.source) == ("2009-08-18", "file name")
    assert raster_date(PRE[0]).source == "unknown"  # "tile_1361-10160": no year 1900-2099 stands alone
    assert raster_date(PRE[0], "2011-05-24").source == "given"
    tagged = write_raster(tmp_path / "scene_1999.tif", noise(3, 32, 32))
    with rasterio.open(tagged, "r+") as ds:
        ds.update_tags(TIFFTAG_DATETIME="2016:07:04 10:30:00")
    got = raster_date(str(tagged))
    assert (got.value, got.source) == ("2016-07-04", "tiff tag TIFFTAG_DATETIME")
    assert scene_date([PRE[0], NAIP["2010"]]).value == "2010-06-29"


def test_scores_are_the_documented_definitions() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(50, 8))
    b = a + rng.normal(scale=0.3, size=a.shape)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    q = a[0]
    s = change_scores(a, b)
    assert np.allclose(s["distance"], 1 - (a * b).sum(1))
    assert np.allclose(s["change"], robust_z(s["distance"])) and abs(np.median(s["change"])) < 1e-9
    gone = change_scores(a, b, q, "disappear")
    assert np.allclose(gone["rise"], b @ q - a @ q)
    assert np.argmax(gone["change"]) == np.argmin(gone["rise"])
    assert np.all(robust_z(np.ones(5)) == 0)


def test_cells_of_joplin_line_up_across_two_crs() -> None:
    """Pre is EPSG:26915 at 0.6 m, post EPSG:4326 at 6e-6 deg: both read onto the same squares."""
    pre, post = inspect_scene(PRE), inspect_scene(POST)
    assert default_crs(post[0]).to_epsg() == 32615  # a geographic first raster gets its UTM zone
    grid = make_grid(pre[0], tile_size=250)  # 250 px of 0.6 m
    assert grid.crs == "EPSG:26915" and grid.cell == pytest.approx(150.0)
    area = scene_footprint(pre, grid.crs).intersection(scene_footprint(post, grid.crs))
    cells = grid.cells_over(area)
    inner = [c for c in cells if area.contains(box(*grid.bounds(*c)))]
    assert len(inner) >= 20
    outlines = ([box(*scene_footprint([r], grid.crs).bounds) for r in pre],
                [box(*scene_footprint([r], grid.crs).bounds) for r in post])
    with opened(pre) as dp, opened(post) as dq:
        for ix, iy in inner[:6]:
            a, va = read_cell(dp, pre, outlines[0], grid, ix, iy, 64)
            b, vb = read_cell(dq, post, outlines[1], grid, ix, iy, 64)
            assert va.all() and vb.all() and a.shape == b.shape == (64, 64, 3)
            # the same ground: the two dates' cell images correlate far more than shifted neighbours do
            g1, g2 = a.mean(2).ravel(), b.mean(2).ravel()
            assert np.corrcoef(g1, g2)[0, 1] > np.corrcoef(g1, np.roll(b.mean(2), 16, axis=1).ravel())[0, 1]


@pytest.mark.slow
def test_cli_writes_every_joplin_cell_covered_by_both_dates(tmp_path: Path) -> None:
    out, heat = tmp_path / "cells.gpkg", tmp_path / "change.tif"
    pre_dir, post_dir = str(Path(PRE[0]).parent), str(Path(POST[0]).parent)
    r = _cli(pre_dir, post_dir, "--tile-size-m", "150", "--after-date", "2011-05-24", "--out", str(out),
             "--heatmap", str(heat))
    assert r.returncode == 0, r.stderr
    cells = gpd.read_file(out, layer="cells")
    assert cells.crs.to_epsg() == 26915 and len(cells) == len(set(cells["cell"]))
    assert np.isfinite(cells["change"]).all() and (cells["cover_before"] >= 0.5).all()
    assert set(cells["date_after"]) == {"2011-05-24"} and set(cells["date_after_source"]) == {"given"}
    assert set(cells["date_before_source"]) == {"unknown"}
    pre, post = inspect_scene(PRE), inspect_scene(POST)
    grid = make_grid(pre[0], tile_size_m=150)
    area = scene_footprint(pre, grid.crs).intersection(scene_footprint(post, grid.crs))
    inside = {f"{ix}_{iy}" for ix, iy in grid.cells_over(area) if area.contains(box(*grid.bounds(ix, iy)))}
    assert inside <= set(cells["cell"])  # every cell fully covered by both dates is written
    for row in cells.itertuples():  # each polygon is the exact square of its id
        ix, iy = map(int, row.cell.split("_"))
        assert row.geometry.equals_exact(box(*grid.bounds(ix, iy)), 1e-6)
    with rasterio.open(heat) as ds:
        data = ds.read(1)
        for row in cells.itertuples():
            r_, c_ = ds.index(row.geometry.centroid.x, row.geometry.centroid.y)
            assert data[r_, c_] == pytest.approx(row.change, abs=1e-4)
        assert np.isfinite(data).sum() == len(cells)


@pytest.mark.slow
def test_cli_naip_cells_keep_their_footprint_between_runs_and_text_ranks_the_fall(tmp_path: Path) -> None:
    one, two = tmp_path / "a.geojson", tmp_path / "b.gpkg"
    r = _cli(NAIP["2009"], NAIP["2010"], "--tile-size", "80", "--out", str(one))
    assert r.returncode == 0, r.stderr
    r = _cli(NAIP["2010"], NAIP["2020"], "--tile-size", "80", "--text", "water", "--direction", "disappear",
             "--out", str(two))
    assert r.returncode == 0, r.stderr
    a = gpd.read_file(one).set_index("cell")
    b = gpd.read_file(two, layer="cells").to_crs(4326).set_index("cell")
    assert a.crs.to_epsg() == 4326 and {str(v)[:10] for v in a["date_before"]} == {"2009-08-18"}
    assert {str(v)[:10] for v in b["date_after"]} == {"2020-08-31"} and set(b["date_after_source"]) == {"file name"}
    shared = a.index.intersection(b.index)
    assert len(shared) >= 0.9 * len(a)  # the NAIP grids differ by up to 3 m; the cells do not
    for cell in shared:
        assert a.geometry[cell].symmetric_difference(b.geometry[cell]).area < 1e-3 * a.geometry[cell].area
    assert {"query_before", "query_after", "rise"} <= set(b.columns)
    assert np.allclose(b["change"], robust_z(-(b["query_after"] - b["query_before"]).to_numpy()), atol=1e-3)
    assert list(b.sort_values("rank")["change"]) == sorted(b["change"], reverse=True)


@pytest.mark.parametrize("case", ["no overlap", "no crs", "missing"])
def test_cli_refuses_bad_input_in_one_line(case: str, tmp_path: Path) -> None:
    if case == "no overlap":
        args = [PRE[0], NAIP["2010"]]
    elif case == "no crs":
        args = [str(write_raster(tmp_path / "nocrs.tif", noise(3, 64, 64), crs=None)), NAIP["2010"]]
    else:
        args = [str(tmp_path / "gone.tif"), NAIP["2010"]]
    r = _cli(*args, "--out", str(tmp_path / "x.gpkg"))
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert {"no overlap": "do not overlap", "no crs": "has no CRS", "missing": "does not exist"}[case] in lines[0]
    assert not (tmp_path / "x.gpkg").exists()


@pytest.fixture(scope="module")
def change_server(tmp_path_factory: pytest.TempPathFactory):
    """A live `python -m server` whose allowed root is the multi-date data."""
    with live_server(tmp_path_factory.mktemp("change_store"), DATA) as base:
        yield base


@pytest.mark.slow
def test_live_change_answers_geojson_most_change_first(change_server: str, tmp_path: Path) -> None:
    body = {"before": str(Path(PRE[0]).parent), "after": [str(p) for p in POST], "tile_size_m": 300,
            "after_date": "2011-05-24", "text": "buildings", "direction": "disappear", "k": 4}
    status, fc = call(change_server, "POST", "/change", body)
    assert status == 200, fc
    assert fc["type"] == "FeatureCollection" and len(fc["features"]) == 4
    props = [f["properties"] for f in fc["features"]]
    assert [p["rank"] for p in props] == [1, 2, 3, 4]
    assert [p["change"] for p in props] == sorted((p["change"] for p in props), reverse=True)
    assert props[0]["date_after"] == "2011-05-24" and "query_after" in props[0]
    lon, lat = fc["features"][0]["geometry"]["coordinates"][0][0]
    assert -94.51 < lon < -94.47 and 37.06 < lat < 37.08
    assert fc["change_run"]["grid"]["crs"] == "EPSG:26915"
    outside = write_raster(tmp_path / "elsewhere.tif", noise(3, 32, 32))
    status, err = call(change_server, "POST", "/change", {**body, "after": str(outside)})
    assert status == 403 and "allowed roots" in err["detail"]
    status, err = call(change_server, "POST", "/change", {**body, "direction": "sideways"})
    assert status == 400 and "direction" in err["detail"]
