"""Search by text, by example tile or by relevance feedback over one or more collections, answered as GeoJSON
in EPSG:4326: candidates from the index (inside an area if given), thresholds, near-duplicates folded."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from server.errors import InvalidRequest
from server.search import answer, feedback
from server.search.area import MIN_INSIDE, bbox_lonlat, candidates, geometry_lonlat
from server.search.calibrated import calibration_for, no_match, probability
from server.search.dedupe import suppress
from server.search.groups import ModelFor, ModelGroup, example_group, group_by_model, one_model
from server.search.hubness import Reranker, bank_for, can_rerank
from server.search.relevance import Relevance
from server.search.search_request import MAX_ALL, MAX_K, SearchRequest
from server.search.text_embedder import TextEmbedder
from server.store.store import Collection, Store

__all__ = ["MAX_K", "SearchRequest", "TextEmbedder", "bbox_lonlat", "search"]
_candidates = candidates  # the name earlier tests and benches use

OVERFETCH = 4  # candidates fetched per wanted hit when near-duplicates are folded
RERANK_POOL = 200  # fewest cosine candidates per collection that the querybank correction re-ranks
MAX_FETCH = 40_000  # most candidates one collection gives one search, however many are folded
_ranking: dict[str, tuple[Relevance, Reranker | None]] = {}
_ranking_lock = threading.Lock()


def ranking_for(model: Any) -> tuple[Relevance, Reranker | None]:
    """The process-wide relevance calibrations and querybank re-ranker of a model (bank loaded once)."""
    identity = str(getattr(model, "identity", ""))
    with _ranking_lock:
        if identity not in _ranking:
            bank = bank_for(model)
            rel = Relevance(bank, calibration_for(model, bank))
            _ranking[identity] = (rel, Reranker(bank) if can_rerank(bank) else None)
        return _ranking[identity]


@dataclass
class _Query:
    """What the collection is scored against: a vector, and how its cosines become relevance."""

    vector: np.ndarray
    kind: str  # "text" | "example" | "feedback"
    gate: float | None = None
    classifier: feedback.Classifier | None = None
    expanded: bool = False  # a text vector moved toward its nearest bank captions' training images
    text: str | None = None


def _owner(store: Store, req: SearchRequest, names: list[str]) -> Collection:
    """The collection the request's example tiles belong to."""
    owner = req.collection or (names[0] if len(names) == 1 else None)
    if owner is None:
        what = "tile_id" if req.tile_id is not None else "positive/negative tiles"
        raise InvalidRequest(f"searching by {what} needs 'collection' naming the tiles' collection")
    return store.get(owner)


def _query(store: Store, model: Any, embed_text: TextEmbedder, req: SearchRequest, names: list[str],
           rel: Relevance) -> _Query:
    """The query of a one-model search (server.search.exact): the example tiles must be of `model`."""
    owner = None
    if req.text is None or req.feedback:
        owner = _owner(store, req, names)
        owner.check_model(model.identity)
    return _query_of(owner, embed_text, req, rel)


def _query_of(owner: Collection | None, embed_text: TextEmbedder, req: SearchRequest, rel: Relevance) -> _Query:
    """What the collections are scored against: the text's vector, the example tile's, or a feedback direction."""
    if not req.feedback:
        if req.text is not None:
            plain, vec = embed_text.pair(req.text)
            sims = rel.bank_cosines(vec)  # one bank-size product for the gate and the expansion
            # how caption-like the words as typed are (templates would lend gibberish a caption's shape)
            gate = rel.text_gate(plain, sims if plain is vec else None)
            if req.expand and rel.bank is not None and rel.bank.expands:
                return _Query(rel.bank.expand(vec, sims), "text", gate=gate, expanded=True, text=req.text)
            return _Query(vec, "text", gate=gate, text=req.text)
        assert owner is not None
        return _Query(owner.vector(int(req.tile_id)), "example")  # type: ignore[arg-type]
    source = owner
    assert source is not None
    pos = source.vectors(list(req.positive)) if req.positive else np.zeros((0, source.manifest["model"]["dim"]))
    neg = source.vectors(list(req.negative)) if req.negative else pos[:0]
    if req.text is not None:
        pos = np.vstack([pos, embed_text(req.text)[None, :]])
    marked = set(req.positive) | set(req.negative)
    ids = [i for i in source.ids() if i not in marked]
    pick = np.unique(np.linspace(0, len(ids) - 1, min(len(ids), feedback.BACKGROUND)).astype(int)) if ids else []
    background = source.vectors([ids[i] for i in pick]) if len(pick) else pos[:0]
    clf = feedback.fit(pos, neg, background)
    return _Query(clf.direction, "feedback", classifier=clf)


def _relevance_of(rel: Relevance, q: _Query, col: Collection, cos: np.ndarray) -> np.ndarray | None:
    if q.kind == "feedback":
        assert q.classifier is not None
        return q.classifier.probability(cos)
    if q.kind == "text":
        return rel.of_text(col, cos, q.gate, q.expanded)
    return rel.of_example(col, cos)


def _calibrated(rel: Relevance, q: _Query, reranker: Reranker | None) -> bool:
    """True when this query's relevance is the model's calibrated P(match): a text query, a calibration, and
    the offsets it was fitted on."""
    return q.kind == "text" and rel.calibration is not None and reranker is not None


def _hits(cols: list[Collection], q: _Query, req: SearchRequest, rel: Relevance, rerank: Reranker | None,
          area_ids: dict[str, list[int] | None], fetch: int, reranker: Reranker | None = None
          ) -> tuple[list[tuple], bool]:
    """Candidates of every collection passing the thresholds as (rank key, cosine, relevance, corrected,
    tile id, collection), best first; and whether every collection gave fewer than `fetch` (nothing more).
    With a calibrated model a text query ranks by relevance (ties by the corrected score); `reranker` gives
    the corrected score relevance is read from even when the ranking is the plain cosine."""
    calibrated = _calibrated(rel, q, reranker)
    out: list[tuple] = []
    exhausted = True
    for col in cols:
        found = col.query(q.vector, fetch, area_ids[col.name])
        exhausted &= len(found) < fetch
        if not found:
            continue
        ids = [t for t, _ in found]
        cos = np.round(np.array([s for _, s in found], dtype=np.float64), 6)
        source = rerank if rerank is not None else reranker if calibrated else None
        corr = np.round(source.corrected(col, ids, cos), 6) if source is not None else None
        if calibrated:
            assert corr is not None and rel.calibration is not None and q.text is not None
            relv = probability(rel.calibration, corr, q.text, q.gate)
        else:
            relv = _relevance_of(rel, q, col, cos)
        if relv is not None:
            relv = np.round(relv, 4)
        elif req.min_score is not None:
            raise InvalidRequest("min_score filters on relevance, which needs the query bank shipped with a "
                                 "model; this model has none: filter on the cosine with min_cosine instead")
        for i, tile_id in enumerate(ids):
            r = None if relv is None else float(relv[i])
            # compare the values as reported, so a threshold copied from a result keeps that result
            if req.min_cosine is not None and cos[i] < req.min_cosine:
                continue
            if req.min_score is not None and r is not None and r < req.min_score:
                continue
            c = None if corr is None else float(corr[i])
            if calibrated and rerank is not None and r is not None:
                key = r
            else:
                key = c if rerank is not None and c is not None else \
                    r if q.kind == "feedback" and r is not None else float(cos[i])
            out.append((key, float(cos[i]), r, c, tile_id, col))
    # ties of the key (a flat stretch of the calibration) keep the order of the finer score
    out.sort(key=lambda h: (-h[0], -(h[3] if h[3] is not None else h[1]), h[5].name, h[4]))
    return out, exhausted


def _select(cols: list[Collection], hits: list[tuple], req: SearchRequest, want: int
            ) -> tuple[list[tuple], dict[str, dict[int, dict[str, Any]]], list[int], list[int] | None]:
    """(live hits, their rows, indices of the hits kept, near-duplicates folded into each). Rows are read in
    rank order a window at a time (one table lookup per collection and window), only as deep as folding
    near-duplicates needs to keep `want` hits; `near_duplicates` counts those within the windows read."""
    rows: dict[str, dict[int, dict[str, Any]]] = {c.name: {} for c in cols}
    done, window = 0, want * OVERFETCH if req.dedupe else want
    while True:
        window = min(window, len(hits))
        for col in cols:
            rows[col.name].update(col.table.rows([h[4] for h in hits[done:window] if h[5] is col]))
        done = window
        live = [h for h in hits[:window] if h[4] in rows[h[5].name]]  # rows deleted since the index read
        if req.dedupe:
            kept, folded = suppress([rows[h[5].name][h[4]]["geom"] for h in live], req.dedupe_iou, want)
        else:
            kept, folded = list(range(len(live)))[:want], None
        if len(kept) >= want or window >= len(hits):
            return live, rows, kept, folded
        window *= OVERFETCH


def _reranker(req: SearchRequest, q: _Query, rerank: Reranker | None) -> Reranker | None:
    """The querybank re-ranker when it applies: text queries, a bank that gives offsets, not turned off."""
    if req.ranking == "cosine" or q.kind != "text":
        if req.ranking == "querybank" and q.kind != "text":
            raise InvalidRequest("ranking 'querybank' corrects text queries; searches by example or feedback "
                                 "rank by their own score: leave ranking at 'auto'")
        return None
    if rerank is None and req.ranking == "querybank":
        raise InvalidRequest("ranking 'querybank' needs the query bank shipped with the model, and this model "
                             "has none; use 'auto' or 'cosine'")
    return rerank


@dataclass
class _Plan:
    """One model's part of a search: its collections, query vector, relevance and re-rankers."""

    group: ModelGroup
    rel: Relevance
    reranker: Reranker | None  # gives the corrected score calibrated relevance is read from
    q: _Query
    rerank: Reranker | None  # ranks by the corrected score (None: ranking 'cosine', or not a text query)

    @property
    def calibrated(self) -> bool:
        """True when this model's relevance is its calibrated P(match)."""
        return _calibrated(self.rel, self.q, self.reranker)

    @property
    def by(self) -> str:
        """What this model's hits are ranked by."""
        return "feedback" if self.q.kind == "feedback" else "relevance" if self.calibrated and \
            self.rerank is not None else "querybank" if self.rerank is not None else "cosine"

    def scoring(self) -> dict[str, Any]:
        """How this model's hits were scored."""
        cal = self.rel.calibration
        return answer.scoring(self.by, self.q.kind, self.calibrated, cal.no_match_below if cal else None,
                              self.q.gate, self.q.expanded, self.rerank.bank.beta if self.rerank else None,
                              self.q.classifier)


def _plans(store: Store, model: Any, embed_text: TextEmbedder, req: SearchRequest, cols: list[Collection],
           skipped: list[dict[str, str]], model_for: ModelFor, relevance: Relevance | None,
           reranker: Reranker | None) -> list[_Plan]:
    """A plan per model of the searched collections (the example's model only for a search by example tiles)."""
    named = bool(req.collections)
    owner = _owner(store, req, [c.name for c in cols]) if req.text is None or req.feedback else None
    groups = [example_group(cols, owner, model_for, named, skipped)] if owner is not None else \
        group_by_model(cols, model_for, named, skipped) or [ModelGroup(model, embed_text)]
    plans = []
    for g in groups:
        if relevance is not None and g.identity == model.identity:  # the caller's own calibrations
            rel = relevance
            rr = reranker if reranker is not None or not can_rerank(rel.bank) else Reranker(rel.bank)  # type: ignore[arg-type]
        else:
            rel, rr = ranking_for(g.model)
        q = _query_of(owner, g.embed_text, req, rel)
        if len(groups) > 1 and req.min_score is not None and q.kind == "text" and q.gate is None:
            why = f"model {g.identity!r} ships no query bank: its hits have no relevance for min_score to filter"
            if named:
                raise InvalidRequest(f"{why} (collections {[c.name for c in g.cols]}); leave them out, or filter "
                                     "on the cosine with min_cosine instead")
            skipped += [{"collection": c.name, "model": g.identity, "reason": why} for c in g.cols]
            continue
        plans.append(_Plan(g, rel, rr, q, _reranker(req, q, rr)))
    if not plans:
        raise InvalidRequest("min_score filters on relevance, which needs a model's query bank, and none of the "
                             "searched models ships one: filter on the cosine with min_cosine instead")
    return plans


def _merged(plans: list[_Plan], req: SearchRequest, area_ids: dict[str, list[int] | None], fetch: int
            ) -> tuple[list[tuple], bool, str | None]:
    """Hits of every model, best first, and whether all collections are exhausted; with several models they
    rank by calibrated relevance when every model has it, else by cosine (returned as the merge key)."""
    hits: list[tuple] = []
    exhausted = True
    for p in plans:
        found, done = _hits(p.group.cols, p.q, req, p.rel, p.rerank, area_ids, fetch, p.reranker)
        hits += found
        exhausted &= done
    if len(plans) < 2:
        return hits, exhausted, None
    by = "relevance" if all(p.by == "relevance" for p in plans) else "cosine"
    if by == "cosine":
        hits = [(h[1], *h[1:]) for h in hits]
    hits.sort(key=lambda h: (-h[0], -(h[3] if h[3] is not None else h[1]), h[5].name, h[4]))
    return hits, exhausted, by


def search(store: Store, model: Any, embed_text: TextEmbedder, req: SearchRequest,
           relevance: Relevance | None = None, reranker: Reranker | None = None,
           model_for: ModelFor | None = None) -> dict[str, Any]:
    """Run a search; returns a GeoJSON FeatureCollection (EPSG:4326) of hits, best first. Each collection is
    searched with the model it was built with (`model_for`; default: `model` alone, other models refused).
    Without explicit calibrations and re-ranker, the process-wide ones of each model (its query bank) are used."""
    cols, skipped = store.searchable(list(req.collections) if req.collections else None)
    plans = _plans(store, model, embed_text, req, cols, skipped, model_for or one_model(model, embed_text),
                   relevance, reranker)
    cols = [c for p in plans for c in p.group.cols]
    names = [c.name for c in cols]
    area = None
    if req.bbox:
        area = bbox_lonlat(req.bbox, req.bbox_crs)
    elif req.geometry is not None:
        area = geometry_lonlat(req.geometry, req.geometry_crs)
    area_ids = {c.name: candidates(c, area, MIN_INSIDE) if area is not None else None for c in cols}
    want = MAX_ALL if req.all else req.k
    fetch = want * OVERFETCH if req.dedupe and not req.all else want
    if any(p.rerank is not None for p in plans):
        fetch = max(fetch, RERANK_POOL)
    while True:
        hits, exhausted, merged_by = _merged(plans, req, area_ids, fetch)
        hits, rows, kept, folded = _select(cols, hits, req, want)
        if len(kept) >= want or exhausted or fetch >= MAX_FETCH:
            break
        fetch = min(fetch * OVERFETCH, MAX_FETCH)
    features = [answer.feature(n + 1, hits[i], rows[hits[i][5].name][hits[i][4]],
                               None if folded is None else folded[n]) for n, i in enumerate(kept)]
    if req.text is not None and not req.feedback:
        query: dict[str, Any] = {"text": req.text}
    elif req.feedback:
        query = {"text": req.text, "positive": list(req.positive), "negative": list(req.negative),
                 "collection": req.collection}
    else:
        query = {"tile_id": req.tile_id, "collection": req.collection}
    main = next((p for p in plans if p.group.identity == model.identity), plans[0])
    scoring = main.scoring()
    if merged_by is not None:
        scoring.update(ranked_by=merged_by, score=answer.MERGED[merged_by], merged_by=merged_by,
                       per_model=[{"model": p.group.identity, "collections": [c.name for c in p.group.cols],
                                   **p.scoring()} for p in plans])
    out = {"type": "FeatureCollection", "features": features, "model": main.group.identity,
           "models": [{"identity": p.group.identity, "name": p.group.model.name,
                       "collections": [c.name for c in p.group.cols]} for p in plans],
           "skipped_collections": skipped, "query": answer.query_json(req, query, names, area),
           "scoring": scoring, "no_match": False, "no_match_reason": None}
    best = next((p for p in plans if features and p.group.identity == features[0]["properties"]["model"]), main)
    if best.q.kind == "text" and best.q.text is not None:
        cal = best.rel.calibration
        threshold = cal.no_match_below if best.calibrated and cal is not None else 0.0
        out["no_match"], out["no_match_reason"] = no_match(features, threshold, best.q.gate, req.min_score,
                                                           best.q.text)
    if req.all:
        out["truncated"] = len(features) >= MAX_ALL and not exhausted
    return out
