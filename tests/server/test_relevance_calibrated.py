"""Issue 27, finding 1: relevance is a calibrated P(match) over real HTTP on real Landsat scenes, the same for a
tile whatever else its collection holds; hits rank and filter by it; an absent concept answers no_match."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from faults_testutil import live_app
from server_testutil import GEOTIFF_DIR, call

PUCALLPA = GEOTIFF_DIR / "landsat_pucallpa_peru_2020.tif"  # river through rainforest, a town; no sea
GRENADA = GEOTIFF_DIR / "landsat8_grenada_rgb.tif"  # an island: open sea, forest, coast


@pytest.fixture(scope="module")
def landsat(model: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with 'pucallpa' and 'both' (Pucallpa and Grenada), default tile size (about 300 m, 64 px), 1 view."""
    from server.indexing.pipeline import index_rasters
    from server.store.records import TilingParams
    from server.store.store import Store

    root = tmp_path_factory.mktemp("landsat")
    store = Store(root)
    for name, rasters in (("pucallpa", [PUCALLPA]), ("both", [PUCALLPA, GRENADA])):
        index_rasters(store.create(name, model, TilingParams(views=1)), model, [str(r) for r in rasters],
                      batch_size=16)
    return root


@pytest.fixture(scope="module")
def base(landsat: Path, model: Any):
    """The real app over HTTP on the Landsat store."""
    with live_app(landsat, model) as url:
        yield url


def _search(base: str, **body: Any) -> dict[str, Any]:
    status, fc = call(base, "POST", "/search", body)
    assert status == 200, fc
    return fc


def test_absent_concept_answers_no_match_with_a_reason(base):
    fc = _search(base, text="parking lot with cars", collections=["pucallpa"], k=5)
    assert fc["scoring"]["calibrated"] is True
    assert fc["no_match"] is True and "parking lot with cars" in fc["no_match_reason"]
    assert fc["features"][0]["properties"]["relevance"] < fc["scoring"]["no_match_below"]


def test_present_concept_scores_above_the_threshold_where_it_is_and_below_where_it_is_not(base):
    sea = _search(base, text="ocean", collections=["both"], k=3)
    inland = _search(base, text="ocean", collections=["pucallpa"], k=3)
    assert sea["no_match"] is False and inland["no_match"] is True, (sea["features"][0], inland["features"][0])
    assert sea["features"][0]["properties"]["relevance"] > inland["features"][0]["properties"]["relevance"]


def test_relevance_of_a_tile_does_not_depend_on_the_rest_of_its_collection(base):
    alone = _search(base, text="a river", collections=["pucallpa"], k=20, dedupe=False)
    mixed = _search(base, text="a river", collections=["both"], k=200, dedupe=False)
    by_place = {(f["properties"]["raster"], tuple(f["properties"]["window"])): f["properties"]["relevance"]
                for f in mixed["features"]}
    for f in alone["features"]:
        p = f["properties"]
        assert by_place[(p["raster"], tuple(p["window"]))] == pytest.approx(p["relevance"], abs=1e-4)


def test_hits_rank_and_filter_by_relevance_and_keep_the_cosine(base):
    fc = _search(base, text="dense forest", collections=["both"], k=10)
    props = [f["properties"] for f in fc["features"]]
    assert fc["scoring"]["ranked_by"] == "relevance"
    assert [p["score"] for p in props] == [p["relevance"] for p in props]
    assert [p["relevance"] for p in props] == sorted((p["relevance"] for p in props), reverse=True)
    assert all(-1.0 <= p["cosine"] <= 1.0 and p["cosine"] != p["relevance"] for p in props)
    cut = props[2]["relevance"]
    kept = _search(base, text="dense forest", collections=["both"], k=10, min_score=cut)
    assert [f["id"] for f in kept["features"]] == [f["id"] for f in fc["features"] if
                                                   f["properties"]["relevance"] >= cut]


def test_gibberish_answers_no_match_at_relevance_zero(base):
    fc = _search(base, text="qwxz zzkq 12345", k=5)
    assert fc["no_match"] is True and fc["scoring"]["text_gate"] == 0
    assert all(f["properties"]["relevance"] == 0 for f in fc["features"])


def test_a_min_score_no_hit_reaches_says_so(base):
    fc = _search(base, text="houses", collections=["both"], min_score=0.99)
    assert fc["features"] == [] and fc["no_match"] is True and "min_score" in fc["no_match_reason"]
