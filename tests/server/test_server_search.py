"""Search by text and by example over a real indexed collection: GeoJSON, bbox with its CRS, errors."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import rasterio
from rasterio.warp import transform_bounds
from server_testutil import SMALL, TINY
from shapely.geometry import box, shape

from server.errors import InvalidRequest, ModelMismatch, NotFound
from server.search import SearchRequest, TextEmbedder, search
from server.store import Store


@pytest.fixture(scope="module")
def embedder(model):
    return TextEmbedder(model, size=8)


def run(indexed, model, embedder, **body):
    return search(Store(indexed), model, embedder, SearchRequest.from_json(body))


def test_text_search_returns_ranked_geojson(indexed, model, embedder):
    fc = run(indexed, model, embedder, text="an island in the sea", k=5)
    assert fc["type"] == "FeatureCollection" and fc["model"] == model.identity
    feats = fc["features"]
    assert [f["properties"]["rank"] for f in feats] == [1, 2, 3, 4, 5]
    scores = [f["properties"]["score"] for f in feats]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
    bounds = {}
    for path in (SMALL, TINY):
        with rasterio.open(path) as ds:
            bounds[str(path)] = box(*transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21))
    for f in feats:
        p = f["properties"]
        assert set(p) >= {"rank", "score", "tile_id", "collection", "raster", "window", "crs"}
        assert p["collection"] == "base" and p["crs"] in ("EPSG:32620", "EPSG:26913")
        assert f["geometry"]["type"] == "Polygon"
        assert bounds[p["raster"]].buffer(1e-9).contains(shape(f["geometry"]))


def test_bbox_filters_in_any_crs(indexed, model, embedder):
    with rasterio.open(TINY) as ds:
        utm = tuple(ds.bounds)
        lonlat = transform_bounds(ds.crs, "EPSG:4326", *utm)
        mercator = transform_bounds(ds.crs, "EPSG:3857", *utm)
        crs = ds.crs.to_string()
    for bbox, bbox_crs in ((lonlat, "EPSG:4326"), (mercator, "EPSG:3857"), (utm, crs)):
        fc = run(indexed, model, embedder, text="cars in a parking lot", k=20, bbox=list(bbox), bbox_crs=bbox_crs)
        assert {f["properties"]["raster"] for f in fc["features"]} == {str(TINY)}
        assert len(fc["features"]) == 6
    far = run(indexed, model, embedder, text="a river", bbox={"bounds": [10, 10, 11, 11], "crs": "EPSG:4326"})
    assert far["features"] == []


def test_min_score_and_search_by_example(indexed, model, embedder):
    top = run(indexed, model, embedder, text="clouds over the ocean", k=22)["features"]
    cut = top[2]["properties"]["score"]
    kept = run(indexed, model, embedder, text="clouds over the ocean", k=22, min_score=cut)["features"]
    assert all(f["properties"]["score"] >= cut for f in kept) and 3 <= len(kept) < 22
    tile = top[-1]["properties"]["tile_id"]
    similar = run(indexed, model, embedder, tile_id=tile, collection="base", k=3)["features"]
    assert similar[0]["properties"]["tile_id"] == tile
    assert similar[0]["properties"]["score"] == pytest.approx(1.0, abs=1e-4)


def test_repeated_queries_hit_the_text_cache(model):
    cache = TextEmbedder(model, size=2)
    a = cache("a  river ")
    b = cache("a river")
    assert a is b and cache.hits == 1 and cache.misses == 1
    cache("b"), cache("c")
    assert "a river" not in cache._cache  # least recently used left first


@pytest.mark.parametrize("body,match", [
    ({"text": ""}, "text '' is empty"),
    ({"text": "   "}, "is empty"),
    ({}, "exactly one of 'text'"),
    ({"text": "x", "tile_id": 3}, "exactly one of 'text'"),
    ({"text": "x", "k": 0}, "k=0 must be an integer from 1"),
    ({"text": "x", "top": 3}, r"unknown search field\(s\) \['top'\]"),
    ({"text": "x", "bbox": [1, 2, 3]}, "bbox=.* must be"),
    ({"text": "x", "bbox": [1, 3, 2, 0]}, "must have bottom < top"),
    ({"text": "x", "min_score": 2}, "min_score=2"),
    ({"text": "x", "collections": "base"}, "must be a non-empty list"),
    ([1, 2], "must be a JSON object"),
])
def test_bad_requests_are_refused_with_the_reason(body, match):
    with pytest.raises(InvalidRequest, match=match):
        SearchRequest.from_json(body)


def test_unknown_collection_crs_and_model_are_refused(indexed, model, embedder):
    with pytest.raises(NotFound, match="no collection named 'nope'"):
        run(indexed, model, embedder, text="a river", collections=["nope"])
    with pytest.raises(InvalidRequest, match="bbox_crs 'EPSG:99999'"):
        run(indexed, model, embedder, text="a river", bbox=[0, 0, 1, 1], bbox_crs="EPSG:99999")
    with pytest.raises(InvalidRequest, match="must have left < right"):
        run(indexed, model, embedder, text="a river", bbox=[700000, 0, 600000, 10], bbox_crs="EPSG:32620")
    with pytest.raises(NotFound, match="tile 999 is not in collection 'base'"):
        run(indexed, model, embedder, tile_id=999, collection="base")
    other = SimpleNamespace(identity="some-other-model:w=0:a=0", name="other", dim=model.dim)
    with pytest.raises(ModelMismatch, match="built with model 'harma-lite.*'some-other-model:w=0:a=0'"):
        search(Store(indexed), other, embedder, SearchRequest(text="a river", collections=("base",)))
