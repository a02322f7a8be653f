"""Search by text or by example tile over one or more collections, answered as GeoJSON in EPSG:4326."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import shapely
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.warp import transform_bounds
from shapely.geometry import MultiPolygon, box, mapping
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from harma_core import embed_texts
from server import gpkg
from server.errors import InvalidRequest
from server.store import Store

MAX_K = 1000


class TextEmbedder:
    """Text -> unit vector with an LRU cache, so repeated queries skip the text encoder."""

    def __init__(self, model: Any, size: int = 512) -> None:
        self.model = model
        self.size = size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __call__(self, text: str) -> np.ndarray:
        """The embedding of one non-empty text."""
        key = " ".join(text.split())
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                self.hits += 1
                return self._cache[key]
        vec = embed_texts(self.model, [key])[0]
        vec.setflags(write=False)
        with self._lock:
            self.misses += 1
            self._cache[key] = vec
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return vec


@dataclass(frozen=True)
class SearchRequest:
    """A validated search: text or (tile_id within collection), k, collections, bbox with its CRS, min score."""

    text: str | None = None
    tile_id: int | None = None
    collection: str | None = None
    k: int = 10
    collections: tuple[str, ...] | None = None
    bbox: tuple[float, float, float, float] | None = None
    bbox_crs: str = "EPSG:4326"
    min_score: float | None = None

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
        if (text is None) == (tile_id is None):
            raise InvalidRequest("give exactly one of 'text' (a description) or 'tile_id' (search by example)")
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise InvalidRequest(f"text {text!r} is empty; describe what to find, e.g. 'a river'")
        if text is not None and len(text) > 1000:
            raise InvalidRequest(f"text is {len(text)} characters long; keep queries under 1000")
        if tile_id is not None and (isinstance(tile_id, bool) or not isinstance(tile_id, int) or tile_id < 1):
            raise InvalidRequest(f"tile_id {tile_id!r} must be a positive integer from an earlier hit")
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
            if (not isinstance(bbox, list) or len(bbox) != 4
                    or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox)):
                raise InvalidRequest(f"bbox={bbox!r} must be [left, bottom, right, top] in bbox_crs")
            bbox = tuple(float(v) for v in bbox)
            if bbox[1] >= bbox[3]:
                raise InvalidRequest(f"bbox {list(bbox)} must have bottom < top ([left, bottom, right, top])")
        min_score = body.get("min_score")
        if min_score is not None and (isinstance(min_score, bool) or not isinstance(min_score, (int, float))
                                      or not -1.0 <= min_score <= 1.0):
            raise InvalidRequest(f"min_score={min_score!r} must be a number from -1 to 1 (cosine similarity)")
        collection = body.get("collection")
        if collection is not None and not isinstance(collection, str):
            raise InvalidRequest(f"collection={collection!r} must be a collection name")
        return cls(text=text, tile_id=tile_id, collection=collection, k=k,
                   collections=tuple(cols) if cols else None, bbox=bbox, bbox_crs=str(bbox_crs),
                   min_score=None if min_score is None else float(min_score))


def bbox_lonlat(bbox: tuple[float, float, float, float], crs: str) -> BaseGeometry:
    """A search area in EPSG:4326; a box crossing the antimeridian (left > right in degrees) becomes two."""
    left, bottom, right, top = bbox
    try:
        src = CRS.from_user_input(crs)
    except CRSError as e:
        raise InvalidRequest(f"bbox_crs {crs!r} is not a CRS I know; use e.g. 'EPSG:4326' or 'EPSG:3857'") from e
    if bottom >= top or (left >= right and not src.is_geographic):
        raise InvalidRequest(f"bbox {list(bbox)} must have left < right and bottom < top")
    if src.is_geographic and src.to_epsg() == 4326:
        west, south, east, north = left, bottom, right, top
    else:
        west, south, east, north = transform_bounds(src, "EPSG:4326", left, bottom, right, top, densify_pts=21)
    south, north = max(south, -90.0), min(north, 90.0)
    if west > east:
        return unary_union([box(west, south, 180.0, north), box(-180.0, south, east, north)])
    return box(west, south, east, north)


def _geojson_geometry(geom: BaseGeometry | None) -> dict[str, Any] | None:
    """A single-part footprint is written as a Polygon; only antimeridian-split ones stay multi."""
    if geom is None:
        return None
    if isinstance(geom, MultiPolygon) and len(geom.geoms) == 1:
        geom = geom.geoms[0]
    return dict(mapping(geom))


def _candidates(col: Any, area: BaseGeometry) -> list[int]:
    """Live tile ids whose footprint intersects the area: envelope filter in SQL; a tile whose envelope lies
    inside a rectangular part of the area is in, the rest get one vectorised exact test."""
    keep: list[np.ndarray] = []
    for part in getattr(area, "geoms", [area]):
        west, south, east, north = part.bounds
        ids, env, blobs = col.table.footprints_in_lonlat_box(west, south, east, north)
        inside = np.zeros(len(ids), dtype=bool)
        if part.equals(box(west, south, east, north)):
            inside = (env[:, 0] >= west) & (env[:, 1] >= south) & (env[:, 2] <= east) & (env[:, 3] <= north)
        edge = np.flatnonzero(~inside)
        hit = shapely.intersects(gpkg.decode_geometries([blobs[i] for i in edge]), area) if len(edge) else []
        keep += [ids[inside], ids[edge[hit]]]
    return np.unique(np.concatenate(keep)).tolist() if keep else []


def search(store: Store, model: Any, embed_text: TextEmbedder, req: SearchRequest) -> dict[str, Any]:
    """Run a search; returns a GeoJSON FeatureCollection (EPSG:4326) of hits ranked by cosine score."""
    names = list(req.collections) if req.collections else store.names()
    cols = [store.get(n) for n in names]
    other_model = []
    if not req.collections:  # searching "everything" means everything this model can search
        other_model = [c.name for c in cols if c.identity != model.identity]
        cols = [c for c in cols if c.identity == model.identity]
        names = [c.name for c in cols]
    for col in cols:
        col.check_model(model.identity)
        col.refresh()
    if req.text is not None:
        vector = embed_text(req.text)
    else:
        owner = req.collection or (names[0] if len(names) == 1 else None)
        if owner is None:
            raise InvalidRequest("searching by tile_id needs 'collection' naming the tile's collection")
        source = store.get(owner)
        source.check_model(model.identity)
        vector = source.vector(int(req.tile_id))  # type: ignore[arg-type]
    area = bbox_lonlat(req.bbox, req.bbox_crs) if req.bbox else None
    hits: list[tuple[float, int, Any]] = []
    for col in cols:
        candidates = _candidates(col, area) if area is not None else None
        for tile_id, score in col.query(vector, req.k, candidates):
            # compare the score as reported (6 decimals), so a score copied from a result keeps that result
            if req.min_score is None or round(float(score), 6) >= req.min_score:
                hits.append((score, tile_id, col))
    hits.sort(key=lambda h: (-h[0], h[2].name, h[1]))
    features = []
    by_col: dict[str, dict[int, dict[str, Any]]] = {}
    for score, tile_id, col in hits:
        if len(features) >= req.k:
            break
        if col.name not in by_col:  # one table lookup per collection, not per hit
            by_col[col.name] = col.table.rows([t for _, t, c in hits if c is col])
        rows = by_col[col.name]
        row = rows.get(tile_id)
        if row is None:  # deleted between the index read and now
            continue
        features.append({
            "type": "Feature", "id": f"{col.name}:{tile_id}",
            "geometry": _geojson_geometry(row["geom"]),
            "properties": {"rank": len(features) + 1, "score": round(float(score), 6), "tile_id": tile_id,
                           "collection": col.name, "raster": row["raster"],
                           "window": [row["col_off"], row["row_off"], row["width"], row["height"]],
                           "crs": row["crs"], "bounds": [row["minx"], row["miny"], row["maxx"], row["maxy"]]},
        })
    query = {"text": req.text} if req.text is not None else {"tile_id": req.tile_id, "collection": req.collection}
    return {"type": "FeatureCollection", "features": features, "model": model.identity,
            "skipped_collections": [{"collection": n, "reason": "built with another model"} for n in other_model],
            "query": {**query, "k": req.k, "collections": names, "bbox": list(req.bbox) if req.bbox else None,
                      "bbox_crs": req.bbox_crs if req.bbox else None, "min_score": req.min_score}}
