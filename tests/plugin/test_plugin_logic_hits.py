"""Plain tests of GeoJSON -> result rows, score classes and raster path helpers (no QGIS needed)."""
from pathlib import Path

import pytest
from harma_search.logic.errors import InputError, ServerResponseError
from harma_search.logic.hits import RESULT_FIELDS, filter_min_score, parse_hits, rerank
from harma_search.logic.sources import path_from_source, rasters_in_folder, unique_paths
from harma_search.logic.styles import RAMP, score_classes

GEOTIFF = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "geotiff"
RING = [[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]]


def feature(rank, score, tile_id):
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [RING]},
            "properties": {"rank": rank, "score": score, "tile_id": tile_id, "raster": "/d/x.tif",
                           "collection": "c", "window": [0, 0, 1, 1], "crs": "EPSG:4326"}}


def test_hits_parse_into_typed_rows_sorted_by_rank():
    body = {"type": "FeatureCollection", "features": [feature(2, 0.3, 5), feature(1, 0.4, 9)]}
    hits = parse_hits(body, "roads")
    assert [h.rank for h in hits] == [1, 2]
    assert hits[0].values() == [1, 0.4, None, 0.4, 9, "/d/x.tif", "c", "roads"]  # no cosine sent: the score
    assert len(hits[0].values()) == len(RESULT_FIELDS)
    assert hits[0].wkt() == "POLYGON ((0.0 0.0, 1.0 0.0, 1.0 1.0, 0.0 1.0, 0.0 0.0))"
    assert hits[0].row_text() == "#1  0.400  tile 9  x.tif"


def test_min_score_compares_the_cosine_when_the_server_ranked_by_a_corrected_score():
    ranked = feature(1, 0.05, 7)  # querybank ranking: score = cosine - offset, cosine kept beside it
    ranked["properties"]["cosine"] = 0.31
    hits = parse_hits({"type": "FeatureCollection", "features": [ranked]}, "q")
    assert hits[0].cosine == 0.31 and hits[0].score == 0.05
    assert filter_min_score(hits, 0.3) == hits and filter_min_score(hits, 0.32) == []


@pytest.mark.parametrize("body, fragment", [
    ({"type": "Feature"}, "not a GeoJSON FeatureCollection"),
    ({"type": "FeatureCollection", "features": [{"properties": {"rank": 1}, "geometry": None}]}, "score"),
    ({"type": "FeatureCollection", "features": [dict(feature(1, 0.1, 1), geometry={"type": "Point"})]},
     "not a GeoJSON Polygon"),
])
def test_malformed_hits_raise_with_the_bad_part(body, fragment):
    with pytest.raises(ServerResponseError, match=fragment):
        parse_hits(body, "q")


def test_min_score_filter_and_rerank():
    hits = parse_hits({"type": "FeatureCollection", "features": [feature(1, 0.5, 1), feature(2, 0.1, 2)]}, "q")
    kept = filter_min_score(hits, 0.2)
    assert [h.tile_id for h in kept] == [1]
    assert filter_min_score(hits, None) == hits
    assert [(h.rank, h.tile_id) for h in rerank(hits[1:])] == [(1, 2)]


def test_score_classes_cover_all_scores_light_to_dark():
    scores = [0.10, 0.15, 0.22, 0.30, 0.31, 0.40]
    classes = score_classes(scores)
    assert len(classes) == 5
    assert classes[0].lower == 0.10 and classes[-1].upper == 0.40
    assert classes[0].color == RAMP[0] and classes[-1].color == RAMP[-1]
    assert all(any(c.lower <= s <= c.upper for c in classes) for s in scores)
    assert [c.lower for c in classes] == sorted(c.lower for c in classes)
    assert len(score_classes([0.2, 0.2])) == 1 and len(score_classes([0.1, 0.2])) == 2
    assert score_classes([])[0].label == "any score"
    with pytest.raises(ValueError, match="count=0"):
        score_classes(scores, 0)


def test_raster_paths_from_layer_sources_and_folders():
    tif = GEOTIFF / "landsat8_grenada_rgb.tif"
    assert path_from_source(f"{tif}|option:x") == str(tif.resolve())
    assert path_from_source("/vsicurl/http://x/y.tif") is None
    assert path_from_source("/no/such/file.tif") is None
    found = rasters_in_folder(str(GEOTIFF))
    assert str(tif.resolve()) in found and all(p.endswith(".tif") for p in found)
    with pytest.raises(InputError, match="does not exist"):
        rasters_in_folder(str(GEOTIFF / "missing"))
    with pytest.raises(InputError, match="no .tif"):
        rasters_in_folder(str(Path(__file__).parent))
    assert unique_paths(["a", "b", "a"]) == ("a", "b")
