"""What tools/index.py and tools/search.py do, as library functions: index with a progress bar, search, export."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from server.errors import InvalidRequest, NotFound
from server.indexing.pipeline import IndexReport, Progress, index_rasters
from server.indexing.target import open_or_create
from server.search.search import SearchRequest, TextEmbedder, search
from server.store.paths import find_rasters
from server.store.store import Collection, Store


def format_report(report: IndexReport, col: Collection) -> str:
    """Human summary of an indexing run."""
    s = col.summary()
    lines = [f"collection {col.name}: {s['tiles']} tiles from {s['rasters']} rasters, "
             f"{s['bytes'] / max(s['tiles'], 1):.0f} bytes/tile on disk",
             f"this run: {report.rasters} rasters indexed, {report.unchanged} unchanged (skipped), "
             f"{report.tiles} tiles embedded, {report.nodata_tiles} nodata tiles skipped, "
             f"{report.tiles_per_s:.1f} tiles/s over {report.seconds:.1f} s"]
    if report.skipped:
        lines.append(f"skipped {len(report.skipped)} raster(s):")
        lines += [f"  {s['raster']}: {s['reason']}" for s in report.skipped]
    if report.cancelled:
        lines.append("cancelled; run the same command again to resume")
    return "\n".join(lines)


def run_index(store_dir: str, name: str, paths: list[str], model: Any, params: dict[str, Any],
              batch_size: int = 32, checkpoint_every: int = 2048, quiet: bool = False,
              out: TextIO = sys.stdout, index_shard_tiles: int | None = None,
              source: str | None = None) -> IndexReport:
    """Index files and folders into a collection with a tqdm bar, then print the summary; a new collection
    records `source`, where its model loads from."""
    files = find_rasters(paths)
    if not files:
        raise NotFound(f"no .tif/.tiff files found in {paths}")
    store = Store(store_dir, checkpoint_every=checkpoint_every)
    col = open_or_create(store, name, model, params, index_shard_tiles, source=source)
    bar = tqdm(total=0, unit="tile", disable=quiet, dynamic_ncols=True)

    def on_progress(p: Progress) -> None:
        if bar.total != p.total:
            bar.total = p.total
            bar.refresh()
        bar.update(p.done - bar.n)

    try:
        report = index_rasters(col, model, files, batch_size=batch_size, progress=on_progress)
    finally:
        bar.close()
    print(format_report(report, col), file=out)
    return report


def write_hits(fc: dict[str, Any], path: str) -> None:
    """Write hits as GeoJSON (.geojson/.json) or GeoPackage (.gpkg)."""
    suffix = Path(path).suffix.lower()
    if suffix in (".geojson", ".json"):
        Path(path).write_text(json.dumps(fc), encoding="utf-8")
        return
    if suffix != ".gpkg":
        raise InvalidRequest(f"cannot write {path}: use a .geojson or .gpkg file name")
    gpd = geopandas()

    features = []
    for f in fc["features"]:
        props = {k: json.dumps(v) if isinstance(v, list) else v for k, v in f["properties"].items()}
        features.append({"type": "Feature", "geometry": f["geometry"], "properties": props})
    if not features:
        raise InvalidRequest(f"no hits to write to {path}")
    gdf = gpd.GeoDataFrame.from_features(features, crs="EPSG:4326")
    gdf.to_file(path, layer="hits", driver="GPKG")


def format_hits(fc: dict[str, Any]) -> str:
    """A plain table of hits."""
    if not fc["features"]:
        return "no hits"
    head = []
    if fc.get("no_match"):
        text = fc.get("query", {}).get("text")
        head = [f"no tile looks like {text!r}: {fc.get('no_match_reason') or 'every hit is an unlikely match'}; "
                "the closest tiles follow"]
    lines = [*head, f"{'rank':>4}  {'score':>7}  {'cosine':>7}  {'relev.':>6}  {'tile':>6}  window (col,row,w,h)   raster"]
    for f in fc["features"]:
        p = f["properties"]
        cosine = p.get("cosine", p["score"])
        relevance = "-" if p.get("relevance") is None else f"{p['relevance']:.2f}"
        lines.append(f"{p['rank']:>4}  {p['score']:7.4f}  {cosine:7.4f}  {relevance:>6}  {p['tile_id']:>6}  "
                     f"{str(tuple(p['window'])):<22} {p['raster']}")
    return "\n".join(lines)


def check_collections(store_dir: str, names: list[str]) -> None:
    """Fail fast, before a model is loaded, when the store or a collection does not exist or is broken."""
    store = Store(store_dir, create=False)
    for name in names:
        store.get(name)


def check_index_target(store_dir: str, name: str) -> None:
    """Fail fast, before a model is loaded, when the store is read-only or the collection is broken."""
    store = Store(store_dir)
    store.require_writable()
    if name in store.names():
        store.get(name)


def run_search(store_dir: str, collections: list[str], text: str, model: Any, k: int = 10,
               min_score: float | None = None, bbox: list[float] | None = None, bbox_crs: str = "EPSG:4326",
               as_json: bool = False, out_path: str | None = None, out: TextIO = sys.stdout) -> dict[str, Any]:
    """Search collections for a text and print the hits (as one JSON line last when as_json)."""
    store = Store(store_dir, create=False)
    body: dict[str, Any] = {"text": text, "k": k, "collections": collections}
    if min_score is not None:  # --min-score stays a cosine threshold (the API's min_score is relevance)
        body["min_cosine"] = min_score
    if bbox is not None:
        body.update(bbox=bbox, bbox_crs=bbox_crs)
    fc = search(store, model, TextEmbedder(model), SearchRequest.from_json(body))
    if out_path:
        write_hits(fc, out_path)
    print(format_hits(fc), file=out)
    if out_path:
        print(f"wrote {len(fc['features'])} hits to {out_path}", file=out)
    if as_json:
        print(json.dumps(fc), file=out)
    return fc


def geopandas() -> Any:
    """geopandas, for .gpkg files written by the tools; the serving install leaves it out ([export] extra)."""
    try:
        import geopandas as gpd
    except ImportError:
        raise InvalidRequest("writing a .gpkg needs geopandas: pip install 'harma-search[export]', or write "
                             ".geojson instead") from None
    return gpd
