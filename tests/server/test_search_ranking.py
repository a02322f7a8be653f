"""What the user sees in the hit list, on real rasters: near-duplicate edge tiles folded into one place,
relevance that tells real queries from nonsense, and any-polygon areas returning k hits inside them."""

from __future__ import annotations

import itertools
import math

import pytest
import rasterio
from ranking_testutil import BAHAMAS, RASTERS, caption_bank, geo_store
from rasterio.warp import transform_geom
from shapely.geometry import Point, mapping, shape

from server.errors import InvalidRequest
from server.search.relevance import Relevance
from server.search.search import SearchRequest, TextEmbedder, search
from server.store.store import Store

REAL = ["farmland with a lake", "a river", "an island in the sea", "a forest", "green fields"]  # all in RASTERS
NONSENSE = ["qwxz zzkq 12345", "xkcd blorp vrrm", "asdf jkl", "!!!???", "lorem ipsum dolor"]


@pytest.fixture(scope="module")
def geo(model, tmp_path_factory):
    return geo_store(model, tmp_path_factory.mktemp("geo"))


@pytest.fixture(scope="module")
def relevance(model):
    return Relevance(caption_bank(model))


@pytest.fixture(scope="module")
def embedder(model):
    return TextEmbedder(model, size=64)


def run(root, model, embedder, relevance, **body):
    return search(Store(root), model, embedder, SearchRequest.from_json(body), relevance)


def iou(a, b) -> float:
    a, b = shape(a["geometry"]), shape(b["geometry"])
    return a.intersection(b).area / a.union(b).area


def test_overlapping_edge_tiles_collapse_to_one_place(geo, model, embedder, relevance):
    bahamas = [f for f in run(geo, model, embedder, relevance, text="an island in the sea", k=34, dedupe=False,
                              collections=["geo"])["features"] if f["properties"]["raster"] == str(BAHAMAS)]
    right = [f for f in bahamas if f["properties"]["window"][0] == 791 - 256]  # flush with the right edge
    assert right, "the Bahamas raster has edge tiles flush with its right edge"
    tile = right[0]["properties"]["tile_id"]
    plain = run(geo, model, embedder, relevance, tile_id=tile, k=5, dedupe=False)["features"]
    assert iou(plain[0], plain[1]) > 0.8, "without dedupe its overlapping neighbour is the second hit"
    folded = run(geo, model, embedder, relevance, tile_id=tile, k=5)["features"]
    assert len(folded) == 5 and folded[0]["properties"]["tile_id"] == tile
    assert folded[0]["properties"]["near_duplicates"] >= 1
    assert all(iou(a, b) <= 0.5 for a, b in itertools.combinations(folded, 2))
    assert plain[1]["properties"]["tile_id"] not in {f["properties"]["tile_id"] for f in folded}
    loose = run(geo, model, embedder, relevance, tile_id=tile, k=5, dedupe_iou=0.95)["features"]
    assert loose[1]["properties"]["tile_id"] == plain[1]["properties"]["tile_id"]  # 91 % < 95 %: kept


def test_k_hits_are_k_places_for_text_queries(geo, model, embedder, relevance):
    for text in ("an island in the sea", "green fields"):
        fc = run(geo, model, embedder, relevance, text=text, k=20)
        feats = fc["features"]
        assert len(feats) == 20 and fc["query"]["dedupe"] is True and fc["query"]["dedupe_iou"] == 0.5
        assert all(iou(a, b) <= 0.5 for a, b in itertools.combinations(feats, 2))
        assert [f["properties"]["rank"] for f in feats] == list(range(1, 21))
        assert [f["properties"]["score"] for f in feats] == sorted((f["properties"]["score"] for f in feats),
                                                                   reverse=True)


def test_relevance_separates_real_queries_from_nonsense(geo, model, embedder, relevance):
    def best(text):
        return run(geo, model, embedder, relevance, text=text, k=1)["features"][0]["properties"]

    real, junk = [best(t) for t in REAL], [best(t) for t in NONSENSE]
    # the cosine leaves no usable margin between them on this collection (the complaint: with the v1
    # adapter nonsense scored above real queries; with v2 the gap is 0.016) ...
    assert min(p["cosine"] for p in real) - max(p["cosine"] for p in junk) < 0.05
    # ... the relevance does, clearly
    assert max(p["relevance"] for p in junk) < 0.1
    assert min(p["relevance"] for p in real) > 0.3
    assert all(0.0 <= p["relevance"] <= 1.0 for p in real + junk)


def test_min_score_works_on_relevance(geo, model, embedder, relevance):
    assert run(geo, model, embedder, relevance, text="qwxz zzkq 12345", k=10, min_score=0.2)["features"] == []
    feats = run(geo, model, embedder, relevance, text="a forest", k=10, min_score=0.2)["features"]
    assert feats and all(f["properties"]["relevance"] >= 0.2 for f in feats)
    everything = run(geo, model, embedder, relevance, text="a forest", k=34, dedupe=False)["features"]
    cut = everything[3]["properties"]["relevance"]
    kept = run(geo, model, embedder, relevance, text="a forest", k=34, dedupe=False, min_score=cut)["features"]
    assert [f["id"] for f in kept] == [f["id"] for f in everything if f["properties"]["relevance"] >= cut]


def test_search_by_example_has_relevance_too(geo, model, embedder, relevance):
    tile = Store(geo).get("geo").ids()[5]
    feats = run(geo, model, embedder, relevance, tile_id=tile, k=5)["features"]
    assert feats[0]["properties"]["relevance"] == 1.0
    rel = [f["properties"]["relevance"] for f in feats]
    assert rel == sorted(rel, reverse=True) and all(0 <= r <= 1 for r in rel)


def _polygon_utm(path, fraction: float = 0.6) -> tuple[dict, str]:
    """A 12-sided polygon (not a box) in the raster's own CRS, centred on the raster."""
    with rasterio.open(path) as ds:
        left, bottom, right, top = ds.bounds
        crs = ds.crs.to_string()
    c = Point((left + right) / 2, (bottom + top) / 2)
    r = fraction * min(right - left, top - bottom) / 2
    ring = [(c.x + r * math.cos(a), c.y + r * math.sin(a)) for a in (2 * math.pi * i / 12 for i in range(12))]
    return {"type": "Polygon", "coordinates": [ring + [ring[0]]]}, crs


@pytest.mark.parametrize("raster", [RASTERS[1], BAHAMAS])
def test_polygon_area_returns_k_hits_inside_it(geo, model, embedder, relevance, raster):
    poly, crs = _polygon_utm(raster)
    area = shape(transform_geom(crs, "EPSG:4326", poly))
    for body in ({"geometry": poly, "geometry_crs": crs}, {"geometry": {**poly, "crs": crs}},
                 {"geometry": transform_geom(crs, "EPSG:4326", poly)}):
        fc = run(geo, model, embedder, relevance, text="green fields", k=4, dedupe=False, **body)
        feats = fc["features"]
        col = Store(geo).get("geo")  # issue 27: only tiles with >= 50 % of their area inside are ranked
        rows = col.table.rows(col.table.live_ids())
        mostly = [i for i, r in rows.items() if r["geom"].intersection(area).area >= 0.5 * r["geom"].area]
        assert mostly and len(feats) == min(4, len(mostly)), "k hits, not the top-k of the whole collection filtered"
        assert {f["properties"]["tile_id"] for f in feats} <= set(mostly)
        assert {f["properties"]["raster"] for f in feats} == {str(raster)}
        assert shape(fc["query"]["geometry"]).buffer(1e-6).contains(area.buffer(-1e-6))


@pytest.mark.parametrize("body,match", [
    ({"text": "x", "bbox": [float("nan"), 0, 1, 1]}, "NaN and Infinity are not allowed"),
    ({"text": "x", "bbox": [0, 0, float("inf"), 1]}, "NaN and Infinity are not allowed"),
    ({"text": "x", "tile_id": 2**63}, "exactly one of"),
    ({"tile_id": 2**63}, r"beyond the largest tile id \(2\^63 - 1\)"),
    ({"tile_id": 2**70}, "beyond the largest tile id"),
    ({"positive": [2**64]}, "beyond the largest tile id"),
    ({"text": "x", "min_score": -0.2}, "for a threshold on the cosine score use min_cosine"),
    ({"text": "x", "dedupe": "yes"}, "dedupe='yes' must be true or false"),
    ({"text": "x", "dedupe_iou": 0}, "to keep overlapping hits send"),
    ({"text": "x", "dedupe_iou": 1.5}, "dedupe_iou=1.5 must be a number from 0 to 1"),
    ({"text": "x", "bbox": [0, 0, 1, 1], "geometry": {"type": "Polygon", "coordinates": []}}, "not both"),
    ({"text": "x", "all": True}, "give min_score"),
    ({"text": "x", "ranking": "best"}, "ranking='best'"),
])
def test_bad_ranking_and_area_fields_are_refused(body, match):
    with pytest.raises(InvalidRequest, match=match):
        SearchRequest.from_json(body)


def test_projected_coordinates_sent_as_degrees_get_a_hint(geo, model, embedder, relevance):
    with rasterio.open(BAHAMAS) as ds:
        utm = list(ds.bounds)
    with pytest.raises(InvalidRequest, match="these look like projected coordinates .* pass their crs"):
        run(geo, model, embedder, relevance, text="a river", bbox=utm)
    poly, _ = _polygon_utm(BAHAMAS)
    with pytest.raises(InvalidRequest, match="these look like projected coordinates"):
        run(geo, model, embedder, relevance, text="a river", geometry=poly)
    bad = {"type": "Polygon", "coordinates": [[[0, 0], [1, float("nan")], [1, 1], [0, 0]]]}
    with pytest.raises(InvalidRequest, match="two finite numbers"):
        run(geo, model, embedder, relevance, text="a river", geometry=bad)
    with pytest.raises(InvalidRequest, match="GeoJSON Polygon or MultiPolygon"):
        run(geo, model, embedder, relevance, text="a river", geometry=mapping(Point(0, 0)))
    with pytest.raises(InvalidRequest, match="encloses no area"):
        run(geo, model, embedder, relevance, text="a river",
            geometry={"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [0, 0]]]})
