"""Hubness-aware ranking on a real collection with a real query bank (train captions embedded by the model):
offsets computed once per tile and kept beside the index, candidates re-ranked by cos - offset."""

from __future__ import annotations

import random

import numpy as np
import pytest
from ranking_testutil import CAPTIONS
from server_testutil import GEOTIFF_DIR

from harma_core.data import flatten_captions, load_dataset
from harma_core.querybank import QueryBank
from server.errors import InvalidRequest
from server.indexing.pipeline import index_rasters
from server.search.hubness import ENV, SIDECAR, Reranker, bank_for
from server.search.relevance import Relevance
from server.search.search import SearchRequest, TextEmbedder, search
from server.store.store import Store


@pytest.fixture(scope="module")
def bank(model):
    captions, _ = flatten_captions(load_dataset(CAPTIONS / "ucm_captions", "train").items)
    return QueryBank.build(model, random.Random(0).sample(sorted(set(captions)), 600), beta=20.0)


@pytest.fixture(scope="module")
def embedder(model):
    return TextEmbedder(model, size=16)


def run(root, model, embedder, bank, reranker=None, **body):
    return search(Store(root), model, embedder, SearchRequest.from_json(body), Relevance(bank), reranker)


def test_text_hits_are_reranked_by_the_corrected_score(fresh, model, embedder, bank):
    fc = run(fresh, model, embedder, bank, text="an island in the sea", k=22, dedupe=False)
    assert fc["scoring"]["ranked_by"] == "querybank" and fc["scoring"]["beta"] == 20.0
    feats = fc["features"]
    col = Store(fresh).get("base")
    ids = [f["properties"]["tile_id"] for f in feats]
    offsets = bank.offsets(col.vectors(ids))
    for f, off in zip(feats, offsets):
        p = f["properties"]
        assert p["score"] == pytest.approx(p["cosine"] - off, abs=2e-6)  # ranked by it; the cosine stays
    corrected = [f["properties"]["score"] for f in feats]
    assert corrected == sorted(corrected, reverse=True)
    # 22 tiles fit in one re-rank pool: the top 5 are the exact corrected top 5 of the whole collection
    every = col.ids()
    exact = bank.corrected(col.vectors(every) @ embedder("an island in the sea"), bank.offsets(col.vectors(every)))
    top5 = [every[i] for i in np.argsort(-exact, kind="stable")[:5]]
    assert run(fresh, model, embedder, bank, text="an island in the sea", k=5, dedupe=False)["features"][0][
        "properties"]["tile_id"] == top5[0]
    assert [f["properties"]["tile_id"] for f in feats[:5]] == top5
    plain = run(fresh, model, embedder, bank, text="an island in the sea", k=22, dedupe=False, ranking="cosine")
    assert plain["scoring"]["ranked_by"] == "cosine"
    assert all(f["properties"]["score"] == f["properties"]["cosine"] for f in plain["features"])
    scores = [f["properties"]["score"] for f in plain["features"]]
    assert scores == sorted(scores, reverse=True) and sorted(ids) == sorted(f["properties"]["tile_id"]
                                                                             for f in plain["features"])


def test_offsets_are_kept_beside_the_index_and_extended_for_new_tiles(fresh, model, embedder, bank):
    first = Reranker(bank)
    run(fresh, model, embedder, bank, reranker=first, text="a river", k=3)
    col = Store(fresh).get("base")
    assert (col.folder / SIDECAR).is_file() and first.offsets(col).computed == 22
    again = Reranker(bank)  # another process: the offsets come from the file
    run(fresh, model, embedder, bank, reranker=again, text="a river", k=3)
    assert again.offsets(col).computed == 0
    with np.load(col.folder / SIDECAR) as f:
        assert str(f["digest"]) == bank.digest and len(f["labels"]) == 22
    index_rasters(col, model, [str(GEOTIFF_DIR / "landsat7_bahamas_rgb.tif")], batch_size=8)
    n_new = len(col) - 22
    assert n_new > 0
    run(fresh, model, embedder, bank, reranker=again, text="a river", k=3)
    assert again.offsets(col).computed == n_new, "only the new raster's tiles get offsets"
    other = Reranker(bank.with_beta(10.0))  # another bank digest: every offset is stale
    fc = run(fresh, model, embedder, bank, reranker=other, text="a river", k=3)
    assert other.offsets(col).computed == len(col) and fc["scoring"]["beta"] == 10.0


def test_querybank_ranking_applies_to_text_only(fresh, model, embedder, bank):
    with pytest.raises(InvalidRequest, match="corrects text queries"):
        run(fresh, model, embedder, bank, tile_id=Store(fresh).get("base").ids()[0], ranking="querybank")
    fc = run(fresh, model, embedder, bank, tile_id=Store(fresh).get("base").ids()[0], k=3)
    assert fc["scoring"]["ranked_by"] == "cosine"
    with pytest.raises(InvalidRequest, match="needs the query bank shipped with the model"):
        search(Store(fresh), model, embedder, SearchRequest.from_json({"text": "a river", "ranking": "querybank"}),
               Relevance(None))


def test_the_bank_can_be_chosen_by_environment(model, bank, tmp_path, monkeypatch, caplog):
    bank.save(tmp_path)
    monkeypatch.setenv(ENV, str(tmp_path / "querybank.safetensors"))
    assert bank_for(model).digest == bank.digest
    monkeypatch.setenv(ENV, "none")
    assert bank_for(model) is None
    QueryBank(bank.embeddings, "another-model:w=0:a=0", 20.0).save(tmp_path)
    monkeypatch.setenv(ENV, str(tmp_path))
    assert bank_for(model) is None and "was built by another-model" in caplog.text
