"""Exact scores of every tile for one search request (text, example or feedback): the number search ranks by,
computed for all tiles of the searched collections instead of the index's top-k (heatmaps, zero-shot maps).

Vectors are read from the collection in chunks of EXACT_CHUNK rows (the saved index's memory-mapped view), so
memory stays bounded at any collection size. The query, its re-ranker and its relevance are the ones
`server.search.search` builds, so a tile's score here equals its `score` in a search answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from server.search.area import MIN_INSIDE, bbox_lonlat, candidates, geometry_lonlat
from server.search.calibrated import probability
from server.search.hubness import Reranker, can_rerank
from server.search.relevance import Relevance
from server.search.search import _calibrated, _query, _relevance_of, _reranker, ranking_for
from server.search.search_request import SearchRequest
from server.store.store import EXACT_CHUNK, Collection, Store

SCORE_MEANING = {"relevance": "relevance: calibrated probability that the tile shows what was asked",
                 "querybank": "cosine minus the tile's querybank offset (QB-Norm)",
                 "feedback": "feedback classifier probability", "cosine": "cosine with the query vector"}


def cosines(col: Collection, queries: np.ndarray, ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(sorted tile ids, (n, q) float32 cosines) of every searchable tile (or of `ids`) with each query row."""
    q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    ids = np.asarray(col.ids() if ids is None else sorted(ids), dtype=np.int64)
    out = np.empty((len(ids), len(q)), dtype=np.float32)
    for s in range(0, len(ids), EXACT_CHUNK):
        out[s:s + EXACT_CHUNK] = col.vectors(ids[s:s + EXACT_CHUNK].tolist()) @ q.T
    return ids, out


@dataclass
class CollectionScores:
    """One collection's scored tiles: ids (sorted) and aligned arrays."""

    collection: Collection
    ids: np.ndarray
    score: np.ndarray  # what search ranks by
    cosine: np.ndarray
    relevance: np.ndarray | None


@dataclass
class Scored:
    """Every tile's score for one request, per collection, with what the score means."""

    collections: list[CollectionScores]
    scoring: dict[str, Any]
    query: dict[str, Any]
    model: str
    skipped: list[dict[str, Any]] = field(default_factory=list)


def searched(store: Store, model: Any, names: list[str] | None) -> tuple[list[Collection], list[dict[str, Any]]]:
    """The collections a request searches (all of this model when none are named) and those skipped, as search
    picks them."""
    cols, skipped = store.searchable(names)
    if not names:
        skipped = [{"collection": c.name, "reason": "built with another model"} for c in cols
                   if c.identity != model.identity] + skipped
        cols = [c for c in cols if c.identity == model.identity]
    for col in cols:
        col.check_model(model.identity)
    return cols, skipped


def _area_ids(col: Collection, req: SearchRequest) -> np.ndarray | None:
    if req.bbox:
        return np.asarray(candidates(col, bbox_lonlat(req.bbox, req.bbox_crs), MIN_INSIDE), dtype=np.int64)
    if req.geometry is not None:
        return np.asarray(candidates(col, geometry_lonlat(req.geometry, req.geometry_crs), MIN_INSIDE),
                          dtype=np.int64)
    return None


def score_tiles(store: Store, model: Any, embed_text: Any, req: SearchRequest,
                relevance: Relevance | None = None, reranker: Reranker | None = None) -> Scored:
    """Score every tile of the searched collections (inside the request's area, passing its thresholds) exactly
    as search scores its hits; k, dedupe and all do not apply."""
    cols, skipped = searched(store, model, list(req.collections) if req.collections else None)
    if relevance is None:
        relevance, reranker = ranking_for(model)
    elif reranker is None and can_rerank(relevance.bank):
        reranker = Reranker(relevance.bank)  # type: ignore[arg-type]
    rel = relevance
    q = _query(store, model, embed_text, req, [c.name for c in cols], rel)
    rerank = _reranker(req, q, reranker)
    calibrated = _calibrated(rel, q, reranker)
    out = []
    for col in cols:
        ids, cos2 = cosines(col, q.vector, _area_ids(col, req))
        cos = np.round(cos2[:, 0].astype(np.float64), 6)
        source = rerank if rerank is not None else reranker if calibrated else None
        corr = np.round(source.corrected(col, ids, cos), 6) if source is not None and len(ids) else None
        if calibrated:
            assert corr is not None and rel.calibration is not None and q.text is not None
            relv: np.ndarray | None = probability(rel.calibration, corr, q.text, q.gate)
        else:
            relv = _relevance_of(rel, q, col, cos) if len(ids) else np.zeros(0)
        relv = None if relv is None else np.round(relv, 4)
        if calibrated and rerank is not None and relv is not None:
            key = relv
        elif rerank is not None and corr is not None:
            key = corr
        elif q.kind == "feedback" and relv is not None:
            key = relv
        else:
            key = cos
        keep = np.ones(len(ids), dtype=bool)
        if req.min_cosine is not None:
            keep &= cos >= req.min_cosine
        if req.min_score is not None and relv is not None:
            keep &= relv >= req.min_score
        out.append(CollectionScores(col, ids[keep], key[keep], cos[keep], None if relv is None else relv[keep]))
    by = "feedback" if q.kind == "feedback" else "relevance" if calibrated and rerank is not None else \
        "querybank" if rerank is not None else "cosine"
    query: dict[str, Any] = {"text": req.text, "tile_id": req.tile_id, "positive": list(req.positive),
                             "negative": list(req.negative), "collection": req.collection,
                             "collections": [c.name for c in cols], "min_score": req.min_score,
                             "min_cosine": req.min_cosine, "expand": req.expand}
    scoring = {"ranked_by": by, "score": SCORE_MEANING[by], "calibrated": calibrated,
               "text_gate": None if q.gate is None else round(q.gate, 4), "expanded": q.expanded}
    return Scored(out, scoring, query, str(model.identity), skipped)
