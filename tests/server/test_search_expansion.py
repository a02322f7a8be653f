"""Text queries expanded through the shipped query bank's training images, on real rasters: what is scored,
how it is reported, that it can be turned off, and that nonsense stays nonsense."""

from __future__ import annotations

import numpy as np
import pytest
from ranking_testutil import geo_store

from server.errors import InvalidRequest
from server.search.hubness import bank_for
from server.search.relevance import Relevance
from server.search.search import SearchRequest, TextEmbedder, search
from server.store.store import Store


@pytest.fixture(scope="module")
def geo(model, tmp_path_factory):
    return geo_store(model, tmp_path_factory.mktemp("geo_x"))


@pytest.fixture(scope="module")
def bank(model):
    found = bank_for(model)
    assert found is not None and found.expands, "harma-lite ships a bank with training images"
    return found


def run(root, model, bank, **body):
    return search(Store(root), model, TextEmbedder(model, size=8), SearchRequest.from_json(body), Relevance(bank))


def test_text_queries_are_expanded_by_default_and_can_be_turned_off(geo, model, bank):
    raw = TextEmbedder(model, size=8)("farmland with a lake")
    col = Store(geo).get("geo")
    for expand, vector in ((True, bank.expand(raw)), (False, raw)):
        body = {"text": "farmland with a lake", "k": 34, "dedupe": False, "ranking": "cosine"}
        fc = run(geo, model, bank, **body, **({} if expand else {"expand": False}))
        assert fc["scoring"]["expanded"] is expand and fc["query"]["expand"] is expand
        feats = fc["features"]
        cos = col.vectors([f["properties"]["tile_id"] for f in feats]) @ vector
        np.testing.assert_allclose([f["properties"]["cosine"] for f in feats], cos, atol=1e-5)
        assert np.all(np.diff(cos) <= 1e-6), "ranked by the cosine of the vector actually searched"
    assert not np.allclose(bank.expand(raw), raw)


def test_expanded_nonsense_stays_irrelevant(geo, model, bank):
    def best(text: str) -> dict:
        return run(geo, model, bank, text=text, k=1)["features"][0]["properties"]

    assert all(best(t)["relevance"] < 0.1 for t in ("qwxz zzkq 12345", "xkcd blorp vrrm", "asdf jkl"))
    assert all(best(t)["relevance"] > 0.3 for t in ("a river", "an island in the sea", "green fields"))


def test_expand_must_be_a_boolean(geo, model, bank):
    with pytest.raises(InvalidRequest, match="expand='yes' must be true or false"):
        run(geo, model, bank, text="a river", expand="yes")


def test_keyword_queries_search_their_phrasings_and_gate_on_the_words(geo, model, bank):
    from harma_core.prompts import embed_queries

    embedder = TextEmbedder(model, size=8)
    plain, vec = embedder.pair("forest")
    np.testing.assert_allclose(vec, embed_queries(model, ["forest"])[0], atol=1e-6)
    assert embedder.pair("farmland with a lake")[0] is embedder.pair("farmland with a lake")[1]
    fc = run(geo, model, bank, text="forest", k=20, dedupe=False, ranking="cosine")
    col = Store(geo).get("geo")
    cos = col.vectors([f["properties"]["tile_id"] for f in fc["features"]]) @ bank.expand(vec)
    np.testing.assert_allclose([f["properties"]["cosine"] for f in fc["features"]], cos, atol=1e-5)
    rel = Relevance(bank)
    assert fc["features"][0]["properties"]["relevance"] > 0.3
    assert rel.text_gate(plain) > rel.text_gate(embedder.pair("qwxz zzkq")[0]), "the gate reads the typed words"
