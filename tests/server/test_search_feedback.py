"""Relevance feedback and request validation through the real Flask app over real rasters: tiles marked good
and bad rank the collection by a classifier; find-all returns every tile above a probability; bad numbers are
400s that say what to send."""

from __future__ import annotations

import json

import numpy as np
import pytest
from ranking_testutil import BAHAMAS, NAIP, geo_store

from server.app import create_app
from server.search.feedback import fit


@pytest.fixture(scope="module")
def client(model, tmp_path_factory):
    root = geo_store(model, tmp_path_factory.mktemp("geo_http"))
    app = create_app({"STORE": str(root), "ALLOWED_ROOTS": [], "LOADED_MODEL": model, "BATCH_SIZE": 8})
    yield app.test_client()
    app.extensions["harma"].jobs.shutdown()


def post(client, body, raw: str | None = None):
    data = raw if raw is not None else json.dumps(body)
    resp = client.post("/api/v1/search", data=data, content_type="application/json")
    return resp.status_code, resp.get_json()


def tiles_of(client, text: str, raster) -> list[int]:
    status, fc = post(client, {"text": text, "k": 34, "dedupe": False})
    assert status == 200, fc
    return [f["properties"]["tile_id"] for f in fc["features"] if f["properties"]["raster"] == str(raster)]


def test_feedback_ranks_by_what_was_marked(client):
    sea, farm = tiles_of(client, "an island in the sea", BAHAMAS), tiles_of(client, "an island in the sea", NAIP)
    assert len(sea) == 12 and len(farm) == 12
    body = {"positive": sea[:3], "negative": farm[:3], "k": 8, "dedupe": False}
    status, fc = post(client, body)
    assert status == 200, fc
    feats = fc["features"]
    assert len(feats) == 8 and fc["scoring"]["relevance"] == "classifier probability"
    assert {f["properties"]["raster"] for f in feats} == {str(BAHAMAS)}, "marked good: the Bahamas scene"
    probs = [f["properties"]["relevance"] for f in feats]
    assert probs == sorted(probs, reverse=True) and probs[0] > 0.5
    assert fc["query"]["positive"] == sea[:3] and fc["query"]["negative"] == farm[:3]
    # the same marks the other way round rank the farmland first
    status, flipped = post(client, {"positive": farm[:3], "negative": sea[:3], "k": 8, "dedupe": False})
    assert {f["properties"]["raster"] for f in flipped["features"]} == {str(NAIP)}
    # text plus negatives only: the query is the positive example
    status, fc = post(client, {"text": "farmland", "negative": sea[:3], "k": 5})
    assert status == 200 and fc["features"] and fc["query"]["text"] == "farmland"
    assert not {f["properties"]["tile_id"] for f in fc["features"]} & set(sea[:3])


def test_find_all_returns_every_tile_above_the_threshold(client):
    sea, farm = tiles_of(client, "an island in the sea", BAHAMAS), tiles_of(client, "an island in the sea", NAIP)
    body = {"positive": sea[:3], "negative": farm[:3], "all": True, "min_score": 0.5, "dedupe": False}
    status, fc = post(client, body)
    assert status == 200 and fc["truncated"] is False
    found = {f["properties"]["tile_id"]: f["properties"]["relevance"] for f in fc["features"]}
    assert set(sea[:3]) <= set(found) and not set(farm[:3]) & set(found)
    assert all(p >= 0.5 for p in found.values())
    status, every = post(client, {**body, "min_score": 0.0})
    assert len(every["features"]) == 34, "a zero threshold is the whole collection"
    probs = {f["properties"]["tile_id"]: f["properties"]["relevance"] for f in every["features"]}
    assert {t for t, p in probs.items() if p >= 0.5} == set(found)


def test_classifier_probability_is_monotone_in_its_cosine():
    rng = np.random.default_rng(0)
    pos = rng.normal(1.0, 0.3, (5, 8))
    neg = rng.normal(-1.0, 0.3, (5, 8))
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    clf = fit(unit(pos), unit(neg), np.zeros((0, 8)))
    cos = unit(np.vstack([pos, neg])) @ clf.direction
    p = clf.probability(cos)
    assert (p[:5] > 0.5).all() and (p[5:] < 0.5).all()
    assert clf.probability(np.array([clf.cosine_at(0.7)]))[0] == pytest.approx(0.7)


@pytest.mark.parametrize("raw,match", [
    ('{"text": "a river", "bbox": [NaN, 0, 1, 1]}', "NaN and Infinity are not allowed"),
    ('{"text": "a river", "bbox": [0, 0, Infinity, 1]}', "NaN and Infinity are not allowed"),
    ('{"text": "a river", "min_cosine": NaN}', "NaN and Infinity are not allowed"),
    ('{"tile_id": 9223372036854775808, "collection": "geo"}', "beyond the largest tile id"),
    ('{"positive": [1, 99999999999999999999999], "collection": "geo"}', "beyond the largest tile id"),
    ('{"text": "a river", "bbox": [-8500000, 2500000, -8400000, 2600000]}', "look like projected coordinates"),
    ('{"positive": [1], "negative": [1], "collection": "geo"}', "both positive and negative"),
    ('{"negative": [1], "collection": "geo"}', "at least one 'positive' tile or 'text'"),
    ('{"positive": [1], "tile_id": 2, "collection": "geo"}', "put the example tile in 'positive'"),
])
def test_bad_numbers_are_400_with_the_fix(client, raw, match):
    status, body = post(client, None, raw=raw)
    assert status == 400, body
    assert match in body["detail"]


def test_feedback_on_a_missing_tile_names_it(client):
    status, body = post(client, {"positive": [999999], "collection": "geo"})
    assert status == 404 and "999999" in body["detail"]
