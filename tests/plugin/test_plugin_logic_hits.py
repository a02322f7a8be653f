"""Plain tests of GeoJSON -> result rows, score classes and raster path helpers (no QGIS needed)."""
from pathlib import Path

import pytest
from harma_search.logic.errors import InputError, ServerResponseError
from harma_search.logic.hits import RESULT_FIELDS, filter_min_score, parse_hits, rerank
from harma_search.logic.sources import path_from_source, rasters_in_folder, unique_paths
from harma_search.logic.styles import RELEVANCE_CLASSES, relevance_word

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
    assert hits[0].values() == [1, "unrated", None, 0.4, 0.4, 9, "/d/x.tif", "c", "roads"]  # no cosine: the score
    assert len(hits[0].values()) == len(RESULT_FIELDS)
    assert hits[0].wkt() == "POLYGON ((0.0 0.0, 1.0 0.0, 1.0 1.0, 0.0 1.0, 0.0 0.0))"
    assert hits[0].row_text() == "#1  unrated  tile 9  x.tif"  # no relevance reported: no number shown


def test_rows_say_the_relevance_in_words_and_never_show_the_cosine():
    rated = feature(1, 0.31, 9)
    rated["properties"].update(relevance=0.83, cosine=0.27)
    hit = parse_hits({"type": "FeatureCollection", "features": [rated]}, "q")[0]
    assert hit.row_text() == "#1  strong 0.83  tile 9  x.tif" and hit.match == "strong"
    assert [relevance_word(r) for r in (0.5, 0.49, 0.2, 0.19, None)] == ["strong", "possible", "possible", "weak",
                                                                         "unrated"]
    assert [c.word for c in RELEVANCE_CLASSES] == ["strong", "possible", "weak", "unrated"]


def test_a_missing_no_match_reads_as_false():
    from harma_search.logic.hits import parse_answer

    body = {"type": "FeatureCollection", "features": [feature(1, 0.4, 9)]}
    assert parse_answer(body, "q").no_match is False
    answer = parse_answer(dict(body, no_match=True, no_match_reason="best is 0.1"), "q")
    assert answer.no_match and answer.no_match_reason == "best is 0.1"


def test_min_score_compares_the_cosine_when_the_server_ranked_by_a_corrected_score():
    ranked = feature(1, 0.05, 7)  # querybank ranking: score = cosine - offset, cosine kept beside it
    ranked["properties"]["cosine"] = 0.31
    hits = parse_hits({"type": "FeatureCollection", "features": [ranked]}, "q")
    assert hits[0].cosine == 0.31 and hits[0].score == 0.05
    assert filter_min_score(hits, 0.3, on_relevance=False) == hits
    assert filter_min_score(hits, 0.32, on_relevance=False) == []


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
