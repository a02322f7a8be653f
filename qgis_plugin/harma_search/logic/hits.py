"""Search hits: the server's GeoJSON FeatureCollection turned into typed rows for a results layer."""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from .errors import ServerResponseError
from .styles import relevance_word

# (name, type) of the results layer's fields; types are QGIS memory-provider type names.
RESULT_FIELDS: tuple[tuple[str, str], ...] = (
    ("rank", "integer"),
    ("match", "string"),
    ("relevance", "double"),
    ("score", "double"),
    ("cosine", "double"),
    ("tile_id", "integer"),
    ("raster", "string"),
    ("collection", "string"),
    ("query", "string"),
)

Ring = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Hit:
    """One matching tile: rank, score, identity and its footprint rings in EPSG:4326."""

    rank: int
    score: float
    tile_id: int
    raster: str
    collection: str
    query: str
    rings: tuple[Ring, ...]
    relevance: float | None = None  # the server's calibrated 0..1 relevance, when it reports one
    cosine: float | None = None  # the raw cosine; `score` is what the server ranked by (it may be corrected)

    @property
    def match(self) -> str:
        """The relevance in words: strong, possible, weak (or unrated)."""
        return relevance_word(self.relevance)

    def values(self) -> list[Any]:
        """Attribute values in RESULT_FIELDS order."""
        return [self.rank, self.match, self.relevance, self.score, self.cosine, self.tile_id, self.raster,
                self.collection, self.query]

    def wkt(self) -> str:
        """The footprint as a WKT POLYGON."""
        parts = ", ".join("(" + ", ".join(f"{x!r} {y!r}" for x, y in ring) + ")" for ring in self.rings)
        return f"POLYGON ({parts})"

    def row_text(self) -> str:
        """One line for the dock's result list."""
        name = self.raster.replace("\\", "/").rsplit("/", 1)[-1]
        relevance = "" if self.relevance is None else f" {self.relevance:.2f}"
        return f"#{self.rank}  {self.match}{relevance}  tile {self.tile_id}  {name}"


@dataclass(frozen=True)
class SearchAnswer:
    """A /search answer: its hits and whether the server says none of them is likely a match."""

    hits: list[Hit]
    no_match: bool = False
    no_match_reason: str = ""


def _rings(geometry: Any) -> tuple[Ring, ...]:
    if not isinstance(geometry, dict) or geometry.get("type") != "Polygon":
        raise ServerResponseError(f"hit geometry {str(geometry)[:80]!r} is not a GeoJSON Polygon")
    rings = []
    for ring in geometry.get("coordinates") or ():
        points = tuple((float(p[0]), float(p[1])) for p in ring)
        if len(points) < 4 or not all(math.isfinite(v) for p in points for v in p):
            raise ServerResponseError(f"hit footprint ring {str(ring)[:80]!r} is not a closed finite ring")
        rings.append(points)
    if not rings:
        raise ServerResponseError("hit footprint has no rings")
    return tuple(rings)


def parse_hits(body: Any, query: str) -> list[Hit]:
    """Parse a /search FeatureCollection into hits sorted by rank; query labels every hit."""
    if not isinstance(body, dict) or body.get("type") != "FeatureCollection":
        raise ServerResponseError(f"/search answered {str(body)[:120]!r}, not a GeoJSON FeatureCollection")
    hits = []
    for position, feature in enumerate(body.get("features") or (), start=1):
        props = feature.get("properties") or {}
        try:
            hits.append(Hit(
                rank=int(props.get("rank", position)),
                score=float(props["score"]),
                tile_id=int(props["tile_id"]),
                raster=str(props.get("raster", "")),
                collection=str(props.get("collection", "")),
                query=query,
                rings=_rings(feature.get("geometry")),
                relevance=None if props.get("relevance") is None else float(props["relevance"]),
                cosine=float(props["cosine"]) if props.get("cosine") is not None else float(props["score"]),
            ))
        except (KeyError, TypeError, ValueError) as exc:
            raise ServerResponseError(f"search hit {str(props)[:120]!r} lacks a usable {exc}") from exc
    return sorted(hits, key=lambda h: h.rank)


def parse_answer(body: Any, query: str) -> SearchAnswer:
    """Parse a /search answer; a server that sends no `no_match` is taken to have found matches."""
    hits = parse_hits(body, query)
    no_match = body.get("no_match") is True
    return SearchAnswer(hits, no_match, str(body.get("no_match_reason") or "") if no_match else "")


def threshold_value(hit: Hit, on_relevance: bool = True) -> float:
    """What a minimum compares: the relevance (falling back to the score when none is reported) or the cosine
    (what the server's `min_cosine` filters on, whichever score it ranked by)."""
    if on_relevance:
        return hit.relevance if hit.relevance is not None else hit.score
    return hit.cosine if hit.cosine is not None else hit.score


def filter_min_score(hits: list[Hit], min_score: float | None, on_relevance: bool = True) -> list[Hit]:
    """Hits at or above min_score (all when it is None); the server filters too, this guards old ones."""
    if min_score is None:
        return list(hits)
    return [h for h in hits if threshold_value(h, on_relevance) >= min_score]


def rerank(hits: list[Hit]) -> list[Hit]:
    """Renumber ranks 1..n in the given order (after hits were dropped by an area filter)."""
    return [replace(h, rank=i) for i, h in enumerate(hits, 1)]
