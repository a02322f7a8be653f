"""Plain tests of request building and response parsing (no QGIS needed)."""
import json

import pytest
from harma_search.logic import api
from harma_search.logic.errors import InputError, ServerResponseError
from harma_search.logic.params import Scope, SearchParams
from harma_search.logic.status import format_duration, parse_collections, parse_health, parse_job


def test_base_url_is_normalised_and_checked():
    assert api.normalise_base_url(" http://127.0.0.1:8765/api/v1/ ") == "http://127.0.0.1:8765"
    assert api.health().url("http://h:1/") == "http://h:1/api/v1/health"
    with pytest.raises(InputError, match="ftp://x"):
        api.normalise_base_url("ftp://x")
    with pytest.raises(InputError, match="not an http"):
        api.normalise_base_url("localhost:8000")


def test_text_search_body_matches_the_server_contract():
    params = SearchParams(collection="my col", query=" roads ", k=5, scope=Scope.EXTENT,
                          bbox=(-61.8, 11.9, -61.5, 12.3), min_score=0.2)
    req = api.search(params)
    assert (req.method, req.path) == ("POST", "/search")
    assert json.loads(req.payload()) == {"text": "roads", "k": 5, "collections": ["my col"],
                                         "bbox": [-61.8, 11.9, -61.5, 12.3], "bbox_crs": "EPSG:4326",
                                         "min_score": 0.2}


def test_example_search_names_the_tile_and_its_collection():
    body = api.search(SearchParams(collection="c", tile_id=12, k=3)).body
    assert body == {"tile_id": 12, "collection": "c", "k": 3, "collections": ["c"]}


def test_paths_quote_names():
    assert api.add_rasters("a/b c", ["/x.tif"]).path == "/collections/a%2Fb%20c/rasters"
    assert api.tile_raster("c", 4).path == "/tiles/c/4.tif"
    assert (api.cancel_job("j1").method, api.cancel_job("j1").path) == ("DELETE", "/jobs/j1")
    assert api.create_collection("c", 128, 0).body == {"name": "c", "tile_size": 128, "overlap": 0}
    assert api.create_collection("c").body == {"name": "c"}
    assert api.health().payload() == b""


def test_error_body_becomes_a_readable_message():
    err = api.error_from_response(404, b'{"error": "not_found", "detail": "no collection x"}', "http://h/api")
    assert err.status == 404 and err.error == "not_found"
    assert "404" in str(err) and "no collection x" in str(err)
    plain = api.error_from_response(502, b"Bad gateway", "http://h/api")
    assert "Bad gateway" in str(plain)
    assert "token" in str(api.error_from_response(401, b"{}", "u"))


def test_non_json_body_is_a_server_response_error():
    with pytest.raises(ServerResponseError, match="did not answer with JSON"):
        api.decode_json(b"<html>", "http://h/api/v1/health")
    assert api.decode_json(b"", "u") is None


def test_health_and_collections_parse_both_shapes():
    status = parse_health({"status": "ok", "version": "0.1", "model": {"identity": "harma-lite:w=1"},
                           "device": "cpu", "collections": [{"name": "a"}, "b"]})
    assert status.collections == ("a", "b") and status.model == "harma-lite:w=1"
    assert "2 collections" in status.describe() and "cpu" in status.describe()
    assert parse_collections({"collections": [{"name": "x", "tiles": 3}]}) == ("x",)
    with pytest.raises(ServerResponseError, match="not a HarMA Search health report"):
        parse_health({"hello": 1})


def test_job_status_progress_and_description():
    job = parse_job({"job_id": "j", "state": "running", "done": 10, "total": 40, "tiles_per_s": 2.5,
                     "eta_s": 12, "errors": []}, "j")
    assert job.percent == 25.0 and not job.finished
    assert job.describe() == "running: 10/40 tiles · 2.5 tiles/s · ETA 0:12"
    done = parse_job({"state": "done", "done": 40, "total": 40, "eta_s": None}, "j")
    assert done.finished and done.percent == 100.0 and "ETA" not in done.describe()
    with pytest.raises(ServerResponseError, match="not a job status"):
        parse_job([], "j")


def test_durations_format():
    assert [format_duration(v) for v in (None, -1, 5, 65, 3725)] == ["?", "?", "0:05", "1:05", "1:02:05"]


def test_polygon_areas_go_to_the_server_as_geojson():
    from harma_search.logic.params import Scope, SearchParams

    area = '{"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}'
    params = SearchParams("c", "x", scope=Scope.SELECTION, bbox=(0, 0, 1, 1), area_wkt="POLYGON ((0 0, 1 0, 1 1, 0 0))",
                          area_geojson=area)
    body = api.search(params).body
    assert body["geometry"]["type"] == "Polygon" and body["geometry_crs"] == "EPSG:4326" and "bbox" not in body
