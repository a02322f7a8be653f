"""Issue 27, finding 4: an area search ranks only tiles mostly inside the area (>= 50 % of a tile's area), over
real HTTP with a real polygon on a real Landsat scene, and says so in the answer's `query`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from faults_testutil import live_app
from server_testutil import SMALL, call
from shapely.geometry import Polygon, box, mapping, shape


@pytest.fixture(scope="module")
def grenada(model: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[int, Any]]:
    """(base URL of the live app, tile id -> footprint) for Grenada at 64 px tiles, 1 view."""
    from server.indexing.pipeline import index_rasters
    from server.store.records import TilingParams
    from server.store.store import Store

    root: Path = tmp_path_factory.mktemp("area")
    col = Store(root).create("grenada", model, TilingParams(tile_size=64, views=1))
    index_rasters(col, model, [str(SMALL)], batch_size=16)
    rows = col.table.rows(col.table.live_ids())
    feet = {i: r["geom"] for i, r in rows.items()}
    with live_app(root, model) as url:
        yield url, feet


def _inside(feature: dict[str, Any], area: Any) -> float:
    geom = shape(feature["geometry"])
    return geom.intersection(area).area / geom.area


def _area_over(feet: dict[int, Any]) -> tuple[Polygon, int, int]:
    """A polygon holding one whole tile and 30 % of its east neighbour, a triangle-free real shape; the ids."""
    ids = sorted(feet, key=lambda i: (-feet[i].centroid.y, feet[i].centroid.x))
    a = ids[len(ids) // 2]
    west, south, east, north = feet[a].bounds
    b = min((i for i in feet if feet[i].centroid.x > east and abs(feet[i].centroid.y - feet[a].centroid.y) <
             (north - south) / 2), key=lambda i: feet[i].centroid.x)
    width = feet[b].bounds[2] - feet[b].bounds[0]
    eps = (north - south) * 0.01
    area = Polygon([(west - eps, south - eps), (east + 0.3 * width, south - eps), (east + 0.3 * width, north + eps),
                    ((west + east) / 2, north + 2 * eps), (west - eps, north + eps)])
    return area, a, b


def test_polygon_search_ranks_only_tiles_mostly_inside(grenada):
    base, feet = grenada
    area, whole, partly = _area_over(feet)
    assert 0.25 < feet[partly].intersection(area).area / feet[partly].area < 0.35
    status, fc = call(base, "POST", "/search", {"text": "forest", "k": 20, "geometry": mapping(area),
                                                "dedupe": False})
    assert status == 200, fc
    got = {f["properties"]["tile_id"] for f in fc["features"]}
    assert whole in got and partly not in got, got
    assert all(_inside(f, area) >= 0.5 for f in fc["features"])
    assert fc["query"]["min_inside"] == 0.5 and "50%" in fc["query"]["area_rule"]


def test_bbox_search_ranks_only_tiles_mostly_inside(grenada):
    base, feet = grenada
    area, whole, partly = _area_over(feet)
    bounds = area.bounds
    status, fc = call(base, "POST", "/search", {"text": "the sea", "k": 20, "bbox": list(bounds), "dedupe": False})
    assert status == 200, fc
    rect = box(*bounds)
    got = {f["properties"]["tile_id"] for f in fc["features"]}
    assert whole in got and partly not in got
    assert fc["features"] and all(_inside(f, rect) >= 0.5 for f in fc["features"])
