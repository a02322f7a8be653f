"""Search by text and by example over a real indexed collection: GeoJSON, bbox with its CRS, errors."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import rasterio
from rasterio.warp import transform_bounds
from server_testutil import SMALL, TINY
from shapely.geometry import MultiPolygon, Polygon, box, shape

from server.errors import InvalidRequest, ModelMismatch, NotFound
from server.search.search import SearchRequest, TextEmbedder, _candidates, bbox_lonlat, search
from server.store import gpkg
from server.store.records import TileRecord
from server.store.store import Store
from server.store.tiletable import TileTable


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
        assert set(p) >= {"rank", "score", "cosine", "relevance", "tile_id", "collection", "raster", "window", "crs"}
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


def test_min_cosine_and_search_by_example(indexed, model, embedder):
    top = run(indexed, model, embedder, text="clouds over the ocean", k=22, dedupe=False, ranking="cosine")[
        "features"]
    cut = top[2]["properties"]["cosine"]
    kept = run(indexed, model, embedder, text="clouds over the ocean", k=22, dedupe=False,
               min_cosine=cut)["features"]
    assert all(f["properties"]["cosine"] >= cut for f in kept) and 3 <= len(kept) < 22
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
    ({"text": "x", "min_cosine": -2}, "min_cosine=-2"),
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


def _reference_candidates(table: TileTable, area) -> list[int]:
    """What an area must select: every live footprint decoded one by one and tested exactly."""
    rows = table.rows(table.live_ids())
    return sorted(i for i, r in rows.items() if r["geom"] is not None and r["geom"].intersects(area))


def _area_records() -> list[TileRecord]:
    def rec(raster: str, i: int, footprint) -> TileRecord:
        bounds = footprint.bounds if footprint is not None and not footprint.is_empty else (0, 0, 1, 1)
        return TileRecord(raster, (i, 0, 8, 8), "EPSG:4326", bounds, footprint)

    out = [rec("grid", i, box(10 + 0.1 * (i % 20), 40 + 0.1 * (i // 20), 10.1 + 0.1 * (i % 20),
                              40.1 + 0.1 * (i // 20))) for i in range(400)]
    for i in range(60):  # diamonds: envelope corners reach where the footprint does not
        cx, cy, h = 10.05 + 0.07 * (i % 30), 40.3 + 0.9 * (i // 30), 0.06
        out.append(rec("diamonds", i, Polygon([(cx, cy - h), (cx + h, cy), (cx, cy + h), (cx - h, cy)])))
    out.append(rec("antimeridian", 0, MultiPolygon([box(179.9, 0.0, 180.0, 0.1), box(-180.0, 0.0, -179.9, 0.1)])))
    out += [rec("none", 0, None), rec("empty", 0, Polygon())]
    out += [rec("gone", i, box(10.5, 40.5, 10.6, 40.6)) for i in range(3)]
    return out


def test_area_candidates_match_an_exact_test_of_every_footprint(tmp_path):
    table = TileTable(tmp_path / "tiles.gpkg")
    table.create()
    table.insert_tiles(_area_records())
    table.mark_raster_tiles_deleted("gone")
    col = SimpleNamespace(table=table)
    areas = [bbox_lonlat((10.33, 40.27, 11.05, 41.5), "EPSG:4326"),
             bbox_lonlat((10.5, 40.5, 10.6, 40.6), "EPSG:4326"),  # edges on tile edges: touching counts
             bbox_lonlat((9.0, 39.0, 13.0, 43.0), "EPSG:4326"),  # everything inside: no exact test needed
             bbox_lonlat((179.95, -1.0, -179.95, 1.0), "EPSG:4326"),  # across the antimeridian
             Polygon([(10.2, 40.2), (11.4, 40.9), (10.6, 41.6)])]  # not a box: every tile tested exactly
    expected = [_reference_candidates(table, a) for a in areas]
    assert all(expected) and len(expected[2]) == 460 and len(expected[3]) == 1
    assert [_candidates(col, a) for a in areas] == expected
    with table.connect() as conn:  # a collection from before the envelope R*Tree: same answers without it
        conn.execute("DROP TABLE rtree_tiles_lonlat")
    old = SimpleNamespace(table=TileTable(tmp_path / "tiles.gpkg"))
    assert [_candidates(old, a) for a in areas] == expected
    new_ids = old.table.insert_tiles([TileRecord("late", (0, 0, 8, 8), "EPSG:4326", (10.4, 40.4, 10.45, 40.45),
                                                 box(10.4, 40.4, 10.45, 40.45))])  # first write rebuilds it
    with old.table.connect() as conn:
        assert conn.execute("SELECT count(*) FROM rtree_tiles_lonlat").fetchone()[0] == 460 + 1 + 3 + 1
    assert _candidates(old, areas[0]) == sorted(expected[0] + new_ids)


def test_geometries_decode_in_one_call_like_one_by_one():
    geoms = [box(0, 0, 1, 1), None, Polygon(), MultiPolygon([box(2, 2, 3, 3), box(5, 5, 6, 6)])]
    blobs = [gpkg.encode_geometry(g, 4326) for g in geoms]
    many = gpkg.decode_geometries(blobs)
    assert len(many) == 4 and many[1] is None
    for one, blob in zip(many, blobs):
        ref = gpkg.decode_geometry(blob)
        assert (one is None and ref is None) or one.equals_exact(ref, 0) or (one.is_empty and ref.is_empty)
    with pytest.raises(ValueError, match="'GP' magic"):
        gpkg.decode_geometries([b"XX\x00\x01"])
