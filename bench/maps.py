#!/usr/bin/env python3
"""Heatmaps and zero-shot maps: the heatmap's time at 1M tiles, and the map's accuracy on the UCM val mosaic.

1. Heatmap: a collection of N tiles (default 1,000 x 1,000) on one synthetic 256,000 px square raster grid
   (EPSG:32615, tiles of 256 px, stride 256) with synthetic clustered unit vectors, built once under --root
   (its hnswlib graph is built with M=4, ef_construction=8: an exact heatmap reads the vectors, never the
   graph). Timed 3-5 runs after one warm-up: exact scoring of every tile for a real text query (cosine; and
   calibrated relevance, whose one-off per-tile querybank offsets the warm-up computes and is reported), the
   raster layout (read from tiles.gpkg; then kept in memory until the table changes), and the whole heatmap to
   a GeoTIFF (tools/heatmap.py's and the server's path; the server keeps the layout between requests).
2. Map: UCM val (210 scenes, 21 classes) stitched by tools/mosaic.py, indexed by tools/index.py one tile per
   cell (8 views), mapped by tools/map.py with the ucm21 preset; each cell's class read back from the GeoTIFF
   and compared with its label: accuracy, macro F1, coverage, next to chance and the majority class.
Run `python bench/maps.py [--quick]`; the last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from _collection import build_index, cluster_centres, unit_vectors
from _common import REPO, UCM_DIR, emit, machine, median, peak_rss_mb, quiet_logs, table

RASTER = "/synthetic/heatmap_grid.tif"
TILE, PIXEL, CRS = 256, 0.5, "EPSG:32615"
TEXT = "a river through forest"


def build(root: Path, side: int, model: Any) -> dict[str, float]:
    """The side x side tile collection 'grid' under root (kept between runs); seconds of each part."""
    from server.store.records import TileRecord, TilingParams
    from server.store.store import Store

    store, n = Store(root), side * side
    if "grid" in store.names() and len(store.get("grid")) == n:
        return {}
    if "grid" in store.names():
        store.delete("grid")
    col = store.create("grid", SimpleNamespace(identity=model.identity, name=model.name, dim=model.dim),
                       TilingParams(tile_size=TILE))
    t0 = time.perf_counter()
    for r in range(side):
        top = 4_000_000.0 - r * TILE * PIXEL
        recs = [TileRecord(RASTER, (c * TILE, r * TILE, TILE, TILE), CRS,
                           (500_000.0 + c * TILE * PIXEL, top - TILE * PIXEL, 500_000.0 + (c + 1) * TILE * PIXEL, top),
                           None) for c in range(side)]
        col.table.insert_tiles(recs)
    rows_s = time.perf_counter() - t0
    info = {"crs": CRS, "tile": TILE, "stride": TILE, "width": side * TILE, "height": side * TILE}
    col.table.set_raster(RASTER, 0, 0, "complete", info, tiles=n)
    vectors = unit_vectors(n, model.dim, 1, "clustered", cluster_centres(n, model.dim))
    index, index_s = build_index(vectors, 4, 8, os.cpu_count() or 1)
    index.save_index(str(col.folder / "index.bin"))
    return {"rows_s": rows_s, "index_s": index_s}


def heatmap_bench(args: argparse.Namespace, model: Any) -> list[dict[str, Any]]:
    """Timings of the heatmap phases at side x side tiles."""
    from server.maps_run import write_heatmaps
    from server.search.exact import score_tiles
    from server.search.heatmap import _read_layouts, layouts
    from server.search.search import SearchRequest, TextEmbedder
    from server.store.store import Store

    built = build(Path(args.root), args.side, model)
    store = Store(args.root)
    col = store.get("grid")
    embed = TextEmbedder(model)
    cosine = SearchRequest.from_json({"text": TEXT, "collections": ["grid"], "ranking": "cosine"})
    default = SearchRequest.from_json({"text": TEXT, "collections": ["grid"]})
    t0 = time.perf_counter()
    score_tiles(store, model, embed, default)  # computes and saves the querybank offsets once
    first = time.perf_counter() - t0
    out = Path(tempfile.mkdtemp()) / "heat.tif"
    cases = {"exact scores, cosine": lambda: score_tiles(store, model, embed, cosine),
             "exact scores, relevance": lambda: score_tiles(store, model, embed, default),
             "raster layout read from tiles.gpkg": lambda: _read_layouts(col),
             "raster layout, kept in memory": lambda: layouts(col),
             "heatmap GeoTIFF, relevance (all)": lambda: write_heatmaps(score_tiles(store, model, embed, default),
                                                                         out=out)}
    rows = []
    for name, fn in cases.items():
        fn()
        times = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        rows.append({"phase": name, "tiles": len(col), "median_s": median(times), "min_s": min(times),
                     "max_s": max(times), "runs": len(times)})
    rows.append({"phase": "first relevance run (offsets computed)", "tiles": len(col), "median_s": first,
                 "runs": 1})
    for k, v in built.items():
        rows.append({"phase": f"build once: {k}", "tiles": len(col), "median_s": v, "runs": 1})
    return rows


def _tool(name: str, *a: str) -> str:
    proc = subprocess.run([sys.executable, str(REPO / "tools" / f"{name}.py"), *a], capture_output=True, text=True,
                          timeout=3600, cwd=REPO)
    if proc.returncode:
        raise RuntimeError(f"tools/{name}.py failed:\n{proc.stderr[-2000:]}")
    return proc.stdout


def scores(pred: list[str], truth: list[str], classes: list[str]) -> dict[str, float]:
    """Accuracy (unknown counts as wrong), macro F1 over the true classes, coverage, accuracy where known."""
    p, t = np.asarray(pred), np.asarray(truth)
    f1 = []
    for c in classes:
        tp = float(np.sum((p == c) & (t == c)))
        prec, rec = tp / max(np.sum(p == c), 1), tp / max(np.sum(t == c), 1)
        f1.append(0.0 if tp == 0 else 2 * prec * rec / (prec + rec))
    known = p != "unknown"
    return {"accuracy": float(np.mean(p == t)), "macro_f1": float(np.mean(f1)), "coverage": float(known.mean()),
            "accuracy_known": float(np.mean(p[known] == t[known])) if known.any() else 0.0}


def map_bench(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Accuracy of tools/map.py on the UCM val mosaic against its labels, with chance and the majority class."""
    import geopandas as gpd
    import rasterio

    from server.search.landcover import UCM21

    work = Path(tempfile.mkdtemp(prefix="maps_bench_"))
    _tool("mosaic", str(UCM_DIR), "--split", "val", "--out", str(work / "ucm_val"),
          *(["--per-class", "3"] if args.quick else []))
    t0 = time.perf_counter()
    _tool("index", "--store", str(work / "store"), "ucm", str(work / "ucm_val.tif"), "--tile-size", "256", "--quiet",
          "--views", str(args.views))
    index_s = time.perf_counter() - t0
    truth = gpd.read_file(work / "ucm_val.gpkg")
    classes = [label for label, _ in UCM21]
    names = {2 + i: c for i, c in enumerate(classes)}
    runs = {"ucm21, unknown below P(match) 0.5 (default)": [],
            "ucm21, forced choice (--min-relevance 0)": ["--min-relevance", "0"],
            "ucm21, forced choice, no query expansion": ["--min-relevance", "0", "--no-expand"]}
    rows = []
    map_s = 0.0
    for label, extra in runs.items():
        out = work / f"map{len(rows)}.tif"
        t0 = time.perf_counter()
        _tool("map", "--store", str(work / "store"), "ucm", "--preset", "ucm21", "--out", str(out),
              "--polygons", str(out.with_suffix(".gpkg")), *extra)
        map_s = time.perf_counter() - t0
        with rasterio.open(out) as ds:
            grid = ds.read(1)
        pred = [names.get(int(grid[r, c]), "unknown") for r, c in zip(truth["row"], truth["col"])]
        rows.append({"method": label, **scores(pred, list(truth["label"]), classes)})
    counts = truth["label"].value_counts()
    majority = [counts.index[0]] * len(truth)
    rows.append({"method": f"majority class ({counts.index[0]})", **scores(majority, list(truth["label"]), classes)})
    rows.append({"method": "chance (uniform over 21)", "accuracy": 1 / len(classes), "macro_f1": 1 / len(classes),
                 "coverage": 1.0, "accuracy_known": 1 / len(classes)})
    return rows, {"scenes": len(truth), "views": args.views, "index_s": index_s, "map_cli_s": map_s}


def main() -> None:
    """Parse arguments, run both parts, print the tables and the JSON line."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--side", type=int, default=1000, help="tiles per side of the heatmap grid (default 1000: 1M)")
    ap.add_argument("--root", default=str(Path(tempfile.gettempdir()) / "harma_maps_bench"),
                    help="store of the heatmap collection, kept between runs")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per heatmap phase (default 3)")
    ap.add_argument("--views", type=int, default=8, help="views when indexing the UCM mosaic (default 8)")
    ap.add_argument("--quick", action="store_true", help="100 x 100 tiles and 3 scenes per class")
    ap.add_argument("--skip-heatmap", action="store_true")
    ap.add_argument("--skip-map", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.side = min(args.side, 100)
    quiet_logs()
    from harma_core.serving import load_model

    result: dict[str, Any] = {"machine": machine()}
    if not args.skip_heatmap:
        heat = heatmap_bench(args, load_model("harma-lite"))
        print(table(heat, ["phase", "tiles", "median_s", "min_s", "max_s", "runs"],
                    title=f"Heatmap over every tile ({args.side} x {args.side} grid, synthetic vectors)"))
        result["heatmap"] = heat
    if not args.skip_map:
        rows, info = map_bench(args)
        print(table(rows, ["method", "accuracy", "macro_f1", "coverage", "accuracy_known"],
                    title=f"Zero-shot map on the UCM val mosaic ({info['scenes']} cells, {info['views']} views, "
                          "harma-lite)"))
        print(f"indexing {info['index_s']:.1f} s, one tools/map.py run {info['map_cli_s']:.1f} s")
        result.update(map=rows, map_info=info)
    result["peak_rss_mb"] = peak_rss_mb()
    emit(result)


if __name__ == "__main__":
    main()
