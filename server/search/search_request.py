"""A search request as JSON arrives: every field checked, each refusal naming the field and the fix."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any

from server.errors import InvalidRequest

MAX_K = 1000
MAX_ALL = 10_000  # most hits a "find all" answer holds; it says `truncated` when there were more
MAX_EXAMPLES = 1000  # most positive + negative tiles one feedback request may mark
MAX_TILE_ID = 2**63 - 1  # tile ids are SQLite / hnswlib 64-bit labels
DEFAULT_IOU = 0.5


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v: Any, name: str) -> float:
    """A finite number, or a 400 saying NaN/Infinity are not positions or scores."""
    if not _number(v):
        raise InvalidRequest(f"{name}={v!r} must be a number")
    if not math.isfinite(v):
        raise InvalidRequest(f"{name} holds {v!r}; NaN and Infinity are not allowed, send finite numbers")
    return float(v)


def tile_id_of(v: Any, name: str) -> int:
    """A tile id as hits give them: a positive integer that fits 64 bits."""
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise InvalidRequest(f"{name} {v!r} must be a positive integer tile id from an earlier hit")
    if v > MAX_TILE_ID:
        raise InvalidRequest(f"{name} {v} is beyond the largest tile id (2^63 - 1); use a tile_id from a hit")
    return v


def _ids(body: dict[str, Any], key: str) -> tuple[int, ...]:
    raw = body.get(key)
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidRequest(f"{key}={raw!r} must be a list of tile ids, e.g. [12, 40]")
    return tuple(dict.fromkeys(tile_id_of(v, f"{key} tile id") for v in raw))


def _flag(body: dict[str, Any], key: str, default: bool) -> bool:
    v = body.get(key, default)
    if not isinstance(v, bool):
        raise InvalidRequest(f"{key}={v!r} must be true or false")
    return v


def _unit(body: dict[str, Any], key: str, what: str, low: float = 0.0) -> float | None:
    v = body.get(key)
    if v is None:
        return None
    v = _finite(v, key)
    if not low <= v <= 1.0:
        raise InvalidRequest(f"{key}={v!r} must be a number from {low:g} to 1 ({what})")
    return v


@dataclass(frozen=True)
class SearchRequest:
    """A validated search: text, a tile (tile_id within collection) or feedback (positive/negative tiles,
    with or without text); k; collections; an area (bbox or GeoJSON geometry, with its CRS); thresholds on
    relevance (min_score, 0..1) or cosine (min_cosine); near-duplicate suppression; find-all mode."""

    text: str | None = None
    tile_id: int | None = None
    collection: str | None = None
    positive: tuple[int, ...] = ()
    negative: tuple[int, ...] = ()
    k: int = 10
    collections: tuple[str, ...] | None = None
    bbox: tuple[float, float, float, float] | None = None
    bbox_crs: str = "EPSG:4326"
    geometry: dict[str, Any] | None = None
    geometry_crs: str = "EPSG:4326"
    min_score: float | None = None
    min_cosine: float | None = None
    dedupe: bool = True
    dedupe_iou: float = DEFAULT_IOU
    expand: bool = True  # text queries move toward their nearest bank captions' training images
    all: bool = False
    ranking: str = "auto"

    @property
    def feedback(self) -> bool:
        """True when tiles were marked good or bad (relevance feedback)."""
        return bool(self.positive or self.negative)

    @classmethod
    def from_json(cls, body: Any) -> SearchRequest:
        """Validate a JSON body; unknown keys and wrong types fail with the key named."""
        if not isinstance(body, dict):
            raise InvalidRequest("the search body must be a JSON object such as {\"text\": \"a river\", \"k\": 10}")
        known = {f.name for f in fields(cls)}
        unknown = set(body) - known
        if unknown:
            raise InvalidRequest(f"unknown search field(s) {sorted(unknown)}; known: {sorted(known)}")
        text, tile_id = body.get("text"), body.get("tile_id")
        positive, negative = _ids(body, "positive"), _ids(body, "negative")
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise InvalidRequest(f"text {text!r} is empty; describe what to find, e.g. 'a river'")
        if text is not None and len(text) > 1000:
            raise InvalidRequest(f"text is {len(text)} characters long; keep queries under 1000")
        if positive or negative:
            if tile_id is not None:
                raise InvalidRequest("with positive/negative tiles, put the example tile in 'positive', not tile_id")
            if not positive and text is None:
                raise InvalidRequest("feedback needs something to look for: at least one 'positive' tile or 'text'")
            if set(positive) & set(negative):
                raise InvalidRequest(f"tiles {sorted(set(positive) & set(negative))} are both positive and negative")
            if len(positive) + len(negative) > MAX_EXAMPLES:
                raise InvalidRequest(f"{len(positive) + len(negative)} marked tiles; mark at most {MAX_EXAMPLES}")
        elif (text is None) == (tile_id is None):
            raise InvalidRequest("give exactly one of 'text' (a description) or 'tile_id' (search by example), "
                                 "or 'positive'/'negative' tile ids (relevance feedback)")
        if tile_id is not None:
            tile_id_of(tile_id, "tile_id")
        k = body.get("k", 10)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= MAX_K:
            raise InvalidRequest(f"k={k!r} must be an integer from 1 to {MAX_K}")
        cols = body.get("collections")
        if cols is not None and (not isinstance(cols, list) or not cols or
                                 not all(isinstance(c, str) for c in cols)):
            raise InvalidRequest(f"collections={cols!r} must be a non-empty list of collection names")
        bbox, bbox_crs = body.get("bbox"), body.get("bbox_crs", "EPSG:4326")
        if isinstance(bbox, dict):  # {"bounds": [...], "crs": "..."}
            bbox, bbox_crs = bbox.get("bounds"), bbox.get("crs", bbox_crs)
        if bbox is not None:
            if not isinstance(bbox, list) or len(bbox) != 4 or not all(_number(v) for v in bbox):
                raise InvalidRequest(f"bbox={bbox!r} must be [left, bottom, right, top] in bbox_crs")
            bbox = tuple(_finite(v, "bbox") for v in bbox)
            if bbox[1] >= bbox[3]:
                raise InvalidRequest(f"bbox {list(bbox)} must have bottom < top ([left, bottom, right, top])")
        geometry, geometry_crs = body.get("geometry"), body.get("geometry_crs", "EPSG:4326")
        if isinstance(geometry, dict) and "crs" in geometry and geometry.get("type") != "Feature":
            geometry = dict(geometry)
            geometry_crs = geometry.pop("crs")
        if geometry is not None and bbox is not None:
            raise InvalidRequest("give either 'bbox' or 'geometry' as the search area, not both")
        if geometry is not None and not isinstance(geometry, dict):
            raise InvalidRequest("geometry must be a GeoJSON Polygon or MultiPolygon object")
        if not isinstance(bbox_crs, str) or not isinstance(geometry_crs, str):
            raise InvalidRequest("a crs must be a string such as 'EPSG:4326'")
        min_score = body.get("min_score")
        if min_score is not None and _number(min_score) and min_score < 0:
            raise InvalidRequest(f"min_score={min_score!r}: min_score is the relevance (0 to 1) of each hit; "
                                 "for a threshold on the cosine score use min_cosine (-1 to 1)")
        min_score = _unit(body, "min_score", "relevance; 0.5 = as good as a typical real query's best hit")
        min_cosine = _unit(body, "min_cosine", "cosine similarity", low=-1.0)
        iou = _unit(body, "dedupe_iou", "footprint overlap above which two hits are one place")
        if iou is not None and iou <= 0:
            raise InvalidRequest("dedupe_iou must be above 0; to keep overlapping hits send \"dedupe\": false")
        find_all = _flag(body, "all", False)
        if find_all and min_score is None and min_cosine is None:
            raise InvalidRequest("\"all\": true returns every tile above a threshold; give min_score (relevance "
                                 "0 to 1) or min_cosine too")
        ranking = body.get("ranking", "auto")
        if ranking not in ("auto", "cosine", "querybank"):
            raise InvalidRequest(f"ranking={ranking!r} must be 'auto' (querybank-corrected where the model ships "
                                 "a query bank), 'cosine' or 'querybank'")
        collection = body.get("collection")
        if collection is not None and not isinstance(collection, str):
            raise InvalidRequest(f"collection={collection!r} must be a collection name")
        return cls(text=text, tile_id=tile_id, collection=collection, positive=positive, negative=negative, k=k,
                   collections=tuple(cols) if cols else None, bbox=bbox, bbox_crs=str(bbox_crs),
                   geometry=geometry, geometry_crs=geometry_crs, min_score=min_score, min_cosine=min_cosine,
                   dedupe=_flag(body, "dedupe", True), dedupe_iou=DEFAULT_IOU if iou is None else iou,
                   expand=_flag(body, "expand", True),
                   all=find_all, ranking=ranking)
