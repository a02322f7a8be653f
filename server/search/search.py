"""Search by text, by example tile or by relevance feedback over one or more collections, answered as GeoJSON
in EPSG:4326: candidates from the index (inside an area if given), thresholds, near-duplicates folded."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
from shapely.geometry import MultiPolygon, mapping
from shapely.geometry.base import BaseGeometry

from harma_core.prompts import embed_query_pair
from server.errors import InvalidRequest
from server.search import feedback
from server.search.area import MIN_INSIDE, bbox_lonlat, candidates, geometry_lonlat
from server.search.calibrated import calibration_for, no_match, probability
from server.search.dedupe import suppress
from server.search.hubness import Reranker, bank_for, can_rerank
from server.search.relevance import Relevance
from server.search.search_request import MAX_ALL, MAX_K, SearchRequest
from server.store.store import Collection, Store

__all__ = ["MAX_K", "SearchRequest", "TextEmbedder", "bbox_lonlat", "search"]
_candidates = candidates  # the name earlier tests and benches use

OVERFETCH = 4  # candidates fetched per wanted hit when near-duplicates are folded
RERANK_POOL = 200  # fewest cosine candidates per collection that the querybank correction re-ranks
MAX_FETCH = 40_000  # most candidates one collection gives one search, however many are folded
_ranking: dict[str, tuple[Relevance, Reranker | None]] = {}
_ranking_lock = threading.Lock()


class TextEmbedder:
    """Text -> (plain, search) unit vectors with an LRU cache, so repeated queries skip the text encoder.

    The search vector of a keyword query is its template ensemble (harma_core.prompts); the plain vector is
    the words as typed, what the relevance gate reads. For longer queries the two are the same array.
    """

    def __init__(self, model: Any, size: int = 512) -> None:
        self.model = model
        self.size = size
        self._cache: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __call__(self, text: str) -> np.ndarray:
        """The search vector of one non-empty text."""
        return self.pair(text)[1]

    def pair(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """(plain, search) vectors of one non-empty text."""
        key = " ".join(text.split())
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                self.hits += 1
                return self._cache[key]
        pair = embed_query_pair(self.model, key)  # one encoder call for the words and their phrasings
        for vec in pair:
            vec.setflags(write=False)
        with self._lock:
            self.misses += 1
            self._cache[key] = pair
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return pair


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


def _geojson_geometry(geom: BaseGeometry | None) -> dict[str, Any] | None:
    """A single-part footprint is written as a Polygon; only antimeridian-split ones stay multi."""
    if geom is None:
        return None
    if isinstance(geom, MultiPolygon) and len(geom.geoms) == 1:
        geom = geom.geoms[0]
    return dict(mapping(geom))


def _owner(store: Store, req: SearchRequest, names: list[str], model: Any) -> Collection:
    """The collection the request's example tiles belong to."""
    owner = req.collection or (names[0] if len(names) == 1 else None)
    if owner is None:
        what = "tile_id" if req.tile_id is not None else "positive/negative tiles"
        raise InvalidRequest(f"searching by {what} needs 'collection' naming the tiles' collection")
    source = store.get(owner)
    source.check_model(model.identity)
    return source


def _query(store: Store, model: Any, embed_text: TextEmbedder, req: SearchRequest, names: list[str],
           rel: Relevance) -> _Query:
    if not req.feedback:
        if req.text is not None:
            plain, vec = embed_text.pair(req.text)
            sims = rel.bank_cosines(vec)  # one bank-size product for the gate and the expansion
            # how caption-like the words as typed are (templates would lend gibberish a caption's shape)
            gate = rel.text_gate(plain, sims if plain is vec else None)
            if req.expand and rel.bank is not None and rel.bank.expands:
                return _Query(rel.bank.expand(vec, sims), "text", gate=gate, expanded=True, text=req.text)
            return _Query(vec, "text", gate=gate, text=req.text)
        return _Query(_owner(store, req, names, model).vector(int(req.tile_id)), "example")  # type: ignore[arg-type]
    source = _owner(store, req, names, model)
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


def _feature(rank: int, hit: tuple, row: dict[str, Any], folded: int | None) -> dict[str, Any]:
    key, cos, relv, corr, tile_id, col = hit
    props = {"rank": rank, "score": key, "cosine": cos, "relevance": relv, "tile_id": tile_id, "collection": col.name,
             "raster": row["raster"], "window": [row["col_off"], row["row_off"], row["width"], row["height"]],
             "crs": row["crs"], "bounds": [row["minx"], row["miny"], row["maxx"], row["maxy"]]}
    if folded is not None:
        props["near_duplicates"] = folded
    return {"type": "Feature", "id": f"{col.name}:{tile_id}", "geometry": _geojson_geometry(row["geom"]),
            "properties": props}


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


def search(store: Store, model: Any, embed_text: TextEmbedder, req: SearchRequest,
           relevance: Relevance | None = None, reranker: Reranker | None = None) -> dict[str, Any]:
    """Run a search; returns a GeoJSON FeatureCollection (EPSG:4326) of hits, best first. Without explicit
    calibrations and re-ranker, the process-wide ones of the model (from its shipped query bank) are used."""
    cols, broken = store.searchable(list(req.collections) if req.collections else None)
    names = [c.name for c in cols]
    other_model = []
    if not req.collections:  # searching "everything" means everything this model can search
        other_model = [c.name for c in cols if c.identity != model.identity]
        cols = [c for c in cols if c.identity == model.identity]
        names = [c.name for c in cols]
    for col in cols:  # store.searchable() has already refreshed them from disk
        col.check_model(model.identity)
    if relevance is None:
        relevance, reranker = ranking_for(model)
    elif reranker is None and can_rerank(relevance.bank):
        reranker = Reranker(relevance.bank)  # type: ignore[arg-type]
    rel = relevance
    q = _query(store, model, embed_text, req, names, rel)
    rerank = _reranker(req, q, reranker)
    area = None
    if req.bbox:
        area = bbox_lonlat(req.bbox, req.bbox_crs)
    elif req.geometry is not None:
        area = geometry_lonlat(req.geometry, req.geometry_crs)
    area_ids = {c.name: candidates(c, area, MIN_INSIDE) if area is not None else None for c in cols}
    want = MAX_ALL if req.all else req.k
    fetch = want * OVERFETCH if req.dedupe and not req.all else want
    if rerank is not None:
        fetch = max(fetch, RERANK_POOL)
    while True:
        hits, exhausted = _hits(cols, q, req, rel, rerank, area_ids, fetch, reranker)
        hits, rows, kept, folded = _select(cols, hits, req, want)
        if len(kept) >= want or exhausted or fetch >= MAX_FETCH:
            break
        fetch = min(fetch * OVERFETCH, MAX_FETCH)
    features = []
    for n, i in enumerate(kept):
        features.append(_feature(n + 1, hits[i], rows[hits[i][5].name][hits[i][4]],
                                 None if folded is None else folded[n]))
    if req.text is not None and not req.feedback:
        query: dict[str, Any] = {"text": req.text}
    elif req.feedback:
        query = {"text": req.text, "positive": list(req.positive), "negative": list(req.negative),
                 "collection": req.collection}
    else:
        query = {"tile_id": req.tile_id, "collection": req.collection}
    area_json: dict[str, Any] = {"bbox": list(req.bbox) if req.bbox else None,
                                 "bbox_crs": req.bbox_crs if req.bbox else None}
    if req.geometry is not None:
        area_json.update(geometry=_geojson_geometry(area), geometry_crs="EPSG:4326")
    if area is not None:
        area_json["area_rule"] = f"tiles with at least {MIN_INSIDE:.0%} of their area inside"
        area_json["min_inside"] = MIN_INSIDE
    calibrated = _calibrated(rel, q, reranker)
    by = "feedback" if q.kind == "feedback" else "relevance" if calibrated and rerank is not None else \
        "querybank" if rerank is not None else "cosine"
    scoring: dict[str, Any] = {
        "ranked_by": by,
        "score": {"cosine": "cosine with the query vector", "feedback": "classifier probability",
                  "querybank": "cosine minus the tile's querybank offset (QB-Norm)",
                  "relevance": "relevance (ties broken by the querybank-corrected cosine)"}[by],
        "cosine": "cosine with the query vector" if q.kind != "feedback" else
                  "cosine with the feedback classifier's direction",
        "relevance": {"text": "share of real captions whose best hit here scores lower, times the text gate",
                      "example": "share of sampled tiles whose nearest other tile is less similar",
                      "feedback": "classifier probability"}[q.kind],
        "calibrated": calibrated}
    if calibrated:
        assert rel.calibration is not None
        scoring["relevance"] = ("probability that the tile shows what was asked (calibrated on val from the "
                                "querybank-corrected cosine, calibration.json), times the text gate")
        scoring["no_match_below"] = rel.calibration.no_match_below
    if q.kind == "text":
        scoring["text_gate"] = None if q.gate is None else round(q.gate, 4)
        scoring["expanded"] = q.expanded
    if rerank is not None:
        scoring["beta"] = rerank.bank.beta
    if q.classifier is not None:
        scoring["classifier"] = {"scale": round(q.classifier.scale, 4), "bias": round(q.classifier.bias, 4)}
    out = {"type": "FeatureCollection", "features": features, "model": model.identity,
           "skipped_collections": [{"collection": n, "reason": "built with another model"} for n in other_model]
           + broken,
           "query": {**query, "k": req.k, "collections": names, **area_json, "min_score": req.min_score,
                     "min_cosine": req.min_cosine, "dedupe": req.dedupe,
                     "dedupe_iou": req.dedupe_iou if req.dedupe else None, "expand": req.expand, "all": req.all},
           "scoring": scoring, "no_match": False, "no_match_reason": None}
    if q.kind == "text" and q.text is not None:
        threshold = rel.calibration.no_match_below if calibrated and rel.calibration is not None else 0.0
        out["no_match"], out["no_match_reason"] = no_match(features, threshold, q.gate, req.min_score, q.text)
    if req.all:
        out["truncated"] = len(features) >= MAX_ALL and not exhausted
    return out
