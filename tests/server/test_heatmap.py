"""Heatmaps on real rasters: every tile's exact score on each raster's stride grid, through tools/heatmap.py and
POST /api/v1/search {"as": "heatmap"} on a live server; cells equal a plain re-computation from search's own
scores, overlapping tiles give the max, files georeference like their rasters."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from maps_testutil import fetch, live_server, ok, tool
from rasterio.io import MemoryFile
from server_testutil import GEOTIFF_DIR, SMALL, TINY, call

TEXT = "a river through forest"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Collection 'two': two real rasters at 128 px tiles overlapping by 64 px (stride 64), 1 view."""
    root = tmp_path_factory.mktemp("heat_store")
    ok(tool("index", "--store", str(root), "two", str(SMALL), str(TINY), "--tile-size", "128", "--overlap", "64",
            "--views", "1", "--quiet"))
    return root


@pytest.fixture(scope="module")
def server(store: Path):
    with live_server(store, GEOTIFF_DIR) as base:
        yield base


def _all_hits(base: str, body: dict) -> list[dict]:
    status, fc = call(base, "POST", "/search", {**body, "collections": ["two"], "all": True, "min_cosine": -1,
                                               "dedupe": False})
    assert status == 200, fc
    return [f["properties"] for f in fc["features"]]


def _expected(hits: list[dict], raster: str, width: int, height: int, stride: int, field: str) -> np.ndarray:
    """Cell values re-computed one cell at a time: the max `field` of the tiles covering the cell's centre."""
    gw, gh = math.ceil(width / stride), math.ceil(height / stride)
    out = np.full((gh, gw), np.nan)
    for i in range(gh):
        cy = (i * stride + min((i + 1) * stride, height)) / 2
        for j in range(gw):
            cx = (j * stride + min((j + 1) * stride, width)) / 2
            vals = [h[field] for h in hits if h["raster"] == raster and h["window"][0] <= cx < h["window"][0]
                    + h["window"][2] and h["window"][1] <= cy < h["window"][1] + h["window"][3]]
            if vals:
                out[i, j] = max(vals)
    return out


def test_cli_heatmap_cells_are_the_max_score_of_the_tiles_covering_them(store: Path, server: str,
                                                                       tmp_path: Path) -> None:
    out = tmp_path / "river.tif"
    text = ok(tool("heatmap", "--store", str(store), "two", TEXT, "--out", str(out)))
    assert "scored by relevance" in text
    hits = _all_hits(server, {"text": TEXT})
    for n, src in enumerate((SMALL, TINY), 1):
        path = tmp_path / f"river_{n}_{src.stem}.tif"
        with rasterio.open(src) as ras, rasterio.open(path) as heat:
            stride = 64
            assert (heat.width, heat.height) == (math.ceil(ras.width / stride), math.ceil(ras.height / stride))
            assert heat.crs == ras.crs and heat.transform.almost_equals(ras.transform @ Affine.scale(stride))
            assert heat.descriptions == ("score", "cosine") and heat.count == 2
            score, cosine = heat.read(1), heat.read(2)
            tags = json.loads(heat.tags()["scoring"])
            assert tags["ranked_by"] == "relevance"
            want = _expected(hits, str(src), ras.width, ras.height, stride, "score")
        assert np.array_equal(np.isnan(score), np.isnan(want)) and not np.isnan(score).all()
        assert np.allclose(score[~np.isnan(want)], want[~np.isnan(want)], atol=1e-4)
        # cosine band: the cosine of the tile chosen for the cell, so within the covering tiles' cosines
        assert np.nanmax(cosine) <= max(h["cosine"] for h in hits) + 1e-5


def test_live_search_answers_heatmaps_for_text_example_and_feedback(store: Path, server: str) -> None:
    status, ans = call(server, "POST", "/search", {"text": TEXT, "collections": ["two"], "as": "heatmap"})
    assert status == 200, ans
    assert ans["type"] == "heatmaps" and len(ans["heatmaps"]) == 2 and ans["scoring"]["ranked_by"] == "relevance"
    first = ans["heatmaps"][0]
    code, data, kind = fetch(server, first["url"])
    assert code == 200 and "tiff" in kind
    with MemoryFile(data) as mem, mem.open() as ds:
        assert (ds.width, ds.height) == (first["width"], first["height"]) and str(ds.crs) == first["crs"]
        assert np.nanmax(ds.read(1)) == pytest.approx(first["max"], abs=1e-5)
    tile = _all_hits(server, {"text": TEXT})[0]
    by_example = {"tile_id": tile["tile_id"], "collection": "two", "as": "heatmap", "collections": ["two"]}
    status, ans = call(server, "POST", "/search", by_example)
    assert status == 200 and ans["scoring"]["ranked_by"] == "cosine"
    same = next(h for h in ans["heatmaps"] if h["raster"] == tile["raster"])
    assert same["max"] == pytest.approx(1.0, abs=1e-4)  # the example tile itself
    hits = _all_hits(server, {"tile_id": tile["tile_id"], "collection": "two"})
    feedback = {"positive": [h["tile_id"] for h in hits[:3]], "negative": [hits[-1]["tile_id"]],
                "collection": "two", "as": "heatmap"}
    status, ans = call(server, "POST", "/search", feedback)
    assert status == 200 and ans["scoring"]["ranked_by"] == "feedback", ans
    assert all(0 <= h["min"] <= h["max"] <= 1 for h in ans["heatmaps"])


def test_bad_requests_name_the_field(server: str, store: Path, tmp_path: Path) -> None:
    status, err = call(server, "POST", "/search", {"text": TEXT, "as": "png"})
    assert status == 400 and "as=" in err["detail"] and "heatmap" in err["detail"]
    code, body, _ = fetch(server, "/api/v1/heatmaps/0123456789abcdef0123456789abcdef.tif")
    assert code == 404 and "run the request again" in json.loads(body)["detail"]
    code, _, _ = fetch(server, "/api/v1/heatmaps/..%2Fmanifest.json")
    assert code == 404
    bad = tool("heatmap", "--store", str(store), "two", TEXT, "--out", str(tmp_path / "x.png"))
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and ".tif" in bad.stderr
    bad = tool("heatmap", "--store", str(store), "nope", TEXT, "--out", str(tmp_path / "x.tif"))
    assert bad.returncode == 2 and "nope" in bad.stderr
