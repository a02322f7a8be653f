"""Heatmaps and zero-shot maps, from request to files: every tile's score (server.search.exact) or best class
(server.search.landcover) painted on each raster's stride grid (server.search.heatmap) and written by
server.maps_files. Used by tools/heatmap.py, tools/map.py and the HTTP API (server.maps_api)."""

from __future__ import annotations

import hashlib
import re
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from server.errors import InvalidRequest, NotFound
from server.maps_files import (
    FIRST_CLASS,
    NODATA_CLASS,
    UNKNOWN_CLASS,
    class_shapes,
    dissolve,
    legend,
    per_raster_paths,
    polygons_crs,
    to_geojson_features,
    write_classes,
    write_heat,
    write_polygons,
)
from server.search.exact import Scored, score_tiles
from server.search.heatmap import RasterLayout, aligned, layouts, paint, winners
from server.search.landcover import ClassMap, ClassSet, classify
from server.search.search_request import SearchRequest
from server.store.store import Collection, Store

ANSWERS = ("geojson", "heatmap")
CACHE_KEEP_S = 24 * 3600  # cached heatmap and map files older than this are removed when new ones are written
CACHE_MAX_FILES = 512
ID_RE = re.compile(r"^[0-9a-f]{32}$")


def answer_as(body: Any) -> str:
    """Take the search body's "as" (geojson: hits, the default; heatmap: every tile's score as GeoTIFFs)."""
    if not isinstance(body, dict) or "as" not in body:
        return "geojson"
    kind = body.pop("as")
    if kind not in ANSWERS:
        raise InvalidRequest(f"as={kind!r} must be 'geojson' (the top hits, default) or 'heatmap' (every tile's "
                             "score as one GeoTIFF per raster)")
    return str(kind)


def _layouts(cols: list[Collection]) -> tuple[list[tuple[str, RasterLayout]], list[dict[str, str]]]:
    out, skipped = [], []
    for col in cols:
        lays, skip = layouts(col)
        out += [(col.name, lay) for lay in lays]
        skipped += skip
    return out, skipped


def _stats(grid: np.ndarray) -> dict[str, float | None]:
    ok = grid[~np.isnan(grid)]
    return {"min": round(float(ok.min()), 6), "max": round(float(ok.max()), 6)} if len(ok) else \
        {"min": None, "max": None}


def _describe(name: str, lay: RasterLayout, path: Path) -> dict[str, Any]:
    left, top = lay.transform.c, lay.transform.f
    right, bottom = lay.transform @ (lay.width, lay.height)
    return {"collection": name, "raster": lay.raster, "path": str(path), "crs": lay.crs,
            "bounds": [min(left, right), min(top, bottom), max(left, right), max(top, bottom)],
            "width": lay.width, "height": lay.height, "stride_px": lay.stride,
            "cell_size": [abs(lay.transform.a), abs(lay.transform.e)]}


def write_heatmaps(scored: Scored, out: str | Path | None = None, folder: Path | None = None
                   ) -> list[dict[str, Any]]:
    """One GeoTIFF per raster of the scored collections: named after OUT (OUT itself for one raster), or new
    names in `folder`; their descriptions. Rasters without a scored tile (outside the area, below the
    thresholds) get none."""
    by_col = {cs.collection.name: cs for cs in scored.collections}
    lays, skipped = _layouts([cs.collection for cs in scored.collections])
    scored.skipped += skipped
    todo = []
    for name, lay in lays:
        cs = by_col[name]
        score = aligned(lay, cs.ids, cs.score)
        if not np.isnan(score).all():
            todo.append((name, lay, score))
    if not todo:
        raise NotFound("no tile to paint: the collections hold no searchable tile in the area and above the "
                       "thresholds given")
    paths = per_raster_paths(out, [(n, lay) for n, lay, _ in todo]) if out is not None else \
        [(folder or Path()) / f"{unique_stem()}.tif" for _ in todo]
    tags = {"query": scored.query, "scoring": scored.scoring, "model": scored.model}
    result = []
    for (name, lay, score), path in zip(todo, paths):
        win = winners(lay, score)
        heat = paint(win, score)
        write_heat(path, lay, heat, paint(win, aligned(lay, by_col[name].ids, by_col[name].cosine)),
                   {**tags, "collection": name, "raster": lay.raster})
        result.append({**_describe(name, lay, path), "tiles": int(np.count_nonzero(~np.isnan(score))),
                       **_stats(heat)})
    return result


@dataclass
class MapRequest:
    """A zero-shot map: classes (or a preset), the collections, and the unknown thresholds."""

    classes: ClassSet
    collections: list[str] | None = None
    min_relevance: float | None = None
    min_cosine: float | None = None
    expand: bool = True

    @classmethod
    def from_json(cls, body: Any) -> MapRequest:
        """Validate a JSON body {classes | preset, collections?, min_relevance?, min_cosine?, expand?}."""
        known = {"classes", "preset", "collections", "min_relevance", "min_cosine", "expand"}
        if not isinstance(body, dict):
            raise InvalidRequest("give a JSON object such as {\"preset\": \"ucm21\", \"collections\": [\"demo\"]}")
        unknown = set(body) - known
        if unknown:
            raise InvalidRequest(f"unknown map field(s) {sorted(unknown)}; known: {sorted(known)}")
        cols = body.get("collections")
        if cols is not None and (not isinstance(cols, list) or not cols or not all(isinstance(c, str) for c in cols)):
            raise InvalidRequest(f"collections={cols!r} must be a non-empty list of collection names")
        bounds = {"min_relevance": (0.0, 1.0), "min_cosine": (-1.0, 1.0)}
        for key, (lo, hi) in bounds.items():
            v = body.get(key)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi):
                raise InvalidRequest(f"{key}={v!r} must be a number from {lo:g} to {hi:g}; tiles whose best class "
                                     "scores below it are 'unknown'")
        expand = body.get("expand", True)
        if not isinstance(expand, bool):
            raise InvalidRequest(f"expand={expand!r} must be true or false")
        return cls(ClassSet.parse(body.get("classes"), body.get("preset")), cols, body.get("min_relevance"),
                   body.get("min_cosine"), expand)


@dataclass
class MapResult:
    """A class map: per-raster class grids, the classification and the class polygons."""

    cmap: ClassMap
    grids: list[tuple[str, RasterLayout, np.ndarray]]
    rows: list[dict[str, Any]]
    crs: str | None
    skipped: list[dict[str, str]]


def run_map(store: Store, model: Any, embed_text: Any, req: MapRequest) -> MapResult:
    """Classify every tile and paint the classes on each raster's stride grid; dissolve them per class."""
    cmap = classify(store, model, embed_text, req.classes, req.collections, req.min_relevance, req.min_cosine,
                    req.expand)
    by_col = {cc.collection.name: cc for cc in cmap.collections}
    lays, skipped = _layouts([cc.collection for cc in cmap.collections])
    grids = []
    for name, lay in lays:
        cc = by_col[name]
        key = aligned(lay, cc.ids, cc.relevance)
        if np.isnan(key).all():
            continue
        value = aligned(lay, cc.ids, np.where(cc.best < 0, UNKNOWN_CLASS, cc.best + FIRST_CLASS))
        win = winners(lay, key)
        grids.append((name, lay, paint(win, np.nan_to_num(value, nan=NODATA_CLASS), NODATA_CLASS, np.uint8)))
    if not grids:
        raise NotFound("no tile to map: the collections hold no searchable tile")
    crs = polygons_crs([(n, lay) for n, lay, _ in grids])
    rows = dissolve(((lay.crs, class_shapes(lay, g)) for _, lay, g in grids), crs, req.classes)
    tiles = np.bincount(np.concatenate([np.where(cc.best < 0, UNKNOWN_CLASS, cc.best + FIRST_CLASS)
                                        for cc in cmap.collections]).astype(np.int64),
                        minlength=FIRST_CLASS + len(req.classes.labels))
    for r in rows:
        r["tiles"] = int(tiles[r["value"]])
    return MapResult(cmap, grids, rows, crs, cmap.skipped + skipped)


def describe_map(result: MapResult) -> dict[str, Any]:
    """The map's classes, thresholds and scoring (written into its files and answers)."""
    cm = result.cmap
    return {"classes": list(cm.classes.labels), "prompts": list(cm.classes.prompts),
            "min_relevance": cm.min_relevance, "min_cosine": cm.min_cosine, "scoring": cm.scoring,
            "collections": [cc.collection.name for cc in cm.collections],
            "tiles": int(sum(len(cc.ids) for cc in cm.collections)),
            "unknown_tiles": int(sum(int((cc.best < 0).sum()) for cc in cm.collections))}


def write_map_rasters(result: MapResult, paths: list[Path]) -> list[dict[str, Any]]:
    """Each raster's class GeoTIFF (+ .qml, .legend.json) to its path; their descriptions."""
    tags = describe_map(result)
    out = []
    for (name, lay, grid), path in zip(result.grids, paths):
        write_classes(path, lay, grid, result.cmap.classes, {**tags, "collection": name, "raster": lay.raster})
        out.append(_describe(name, lay, path))
    return out


def map_files(result: MapResult, out: str | Path, polygons: str | Path | None = None) -> list[Path]:
    """Write the class GeoTIFF(s) after OUT (one per raster) and the polygons; the GeoTIFF paths."""
    paths = per_raster_paths(out, [(n, lay) for n, lay, _ in result.grids])
    write_map_rasters(result, paths)
    if polygons:
        write_polygons(result.rows, result.crs, polygons)
    return paths


def map_geojson(result: MapResult, rasters: list[dict[str, Any]]) -> dict[str, Any]:
    """The class polygons as GeoJSON (EPSG:4326) with the legend, the rasters' files and the run."""
    return {"type": "FeatureCollection", "features": to_geojson_features(result.rows, result.crs),
            "legend": legend(result.cmap.classes), "rasters": rasters, "map": describe_map(result),
            "skipped": result.skipped}


def cache_dir(store: Store, kind: str) -> Path:
    """The store's cache folder for generated files of one kind (a temporary folder on a read-only store)."""
    base = store.root / ".cache" if store.writable else \
        Path(tempfile.gettempdir()) / f"harma-cache-{hashlib.sha1(str(store.root).encode()).hexdigest()[:12]}"
    folder = base / kind
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    files = sorted(folder.iterdir(), key=lambda p: p.stat().st_mtime if p.exists() else 0)
    for i, p in enumerate(files):
        try:
            if now - p.stat().st_mtime > CACHE_KEEP_S or i < len(files) - CACHE_MAX_FILES:
                p.unlink()
        except OSError:  # removed meanwhile
            continue
    return folder


def cached_file(store: Store, kind: str, name: str, suffixes: tuple[str, ...]) -> Path:
    """A file of the cache by its name (<32 hex>.<one of suffixes>), or NotFound."""
    stem, _, suffix = name.partition(".")
    path = cache_dir(store, kind) / name
    if not ID_RE.match(stem) or suffix not in suffixes or not path.is_file():
        raise NotFound(f"{kind} file {name!r} is not (or no longer) there; run the request again for new files")
    return path


def unique_stem() -> str:
    """A new file id."""
    return uuid.uuid4().hex


def scored_for(store: Store, model: Any, embed_text: Any, body: dict[str, Any]) -> Scored:
    """Every tile's score for a search body (without its "as")."""
    return score_tiles(store, model, embed_text, SearchRequest.from_json(body))




def heatmap_answer(store: Store, model: Any, embed_text: Any, body: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A search body answered as heatmaps: one cached GeoTIFF per raster, each with its URL under `prefix`."""
    scored = scored_for(store, model, embed_text, body)
    files = write_heatmaps(scored, folder=cache_dir(store, "heatmaps"))
    for f in files:
        f["url"] = f"{prefix}/heatmaps/{Path(f.pop('path')).name}"
    return {"type": "heatmaps", "heatmaps": files, "query": scored.query, "scoring": scored.scoring,
            "bands": {"1": "score (what search ranks by)", "2": "cosine"}, "nodata": "NaN (no tile)",
            "model": scored.model, "skipped": scored.skipped}


def map_answer(store: Store, model: Any, embed_text: Any, body: Any, prefix: str) -> dict[str, Any]:
    """A map body answered as GeoJSON class polygons, with a cached class GeoTIFF (+ .qml, .legend.json) per
    raster under `prefix`."""
    result = run_map(store, model, embed_text, MapRequest.from_json(body))
    folder = cache_dir(store, "maps")
    rasters = write_map_rasters(result, [folder / f"{unique_stem()}.tif" for _ in result.grids])
    for r in rasters:
        stem = Path(r.pop("path")).stem
        r.update(url=f"{prefix}/maps/{stem}.tif", qml=f"{prefix}/maps/{stem}.qml",
                 legend=f"{prefix}/maps/{stem}.legend.json")
    return map_geojson(result, rasters)
