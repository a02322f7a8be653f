"""Real-imagery bench with ground truth from the imagery itself: P@10 of concept queries at the default tiling,
and for concepts absent from a collection, the share of answers that say no_match.

Ground truth per tile (a tile is relevant when >= 30 % of its pixels are the concept):
- water: NDWI = (green - NIR) / (green + NIR) > 0 (McFeeters), on the NIR rasters (NAIP North Dakota R,G,B,NIR;
  Landsat Pucallpa SWIR1,NIR,Red,Green, a display stretch, so thresholds are approximate);
- vegetation: NDVI = (NIR - red) / (NIR + red) > 0.4 on the same rasters;
- buildings: the Microsoft footprints of Joplin (2020) rasterised on the pre-tornado tiles (2011).
A concept is absent from a collection when none of its tiles is relevant; "the sea" is absent from the three
inland scenes by geography. Run: python bench/real_imagery.py [--views 8] [--naip-dates 20120731 20200831]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import _common
import numpy as np
import rasterio
from rasterio.features import rasterize
from rasterio.warp import transform_geom

MULTI = (_common.SHARED / "multidate").resolve()
NAIP = MULTI / "naip_north_dakota_2009-2020"
PUCALLPA = MULTI / "landsat_pucallpa_peru_1985-2020" / "2020.tif"
JOPLIN = MULTI / "joplin_tornado_2011"
RELEVANT = 0.30
# (green, NIR, red) band numbers of each NIR raster kind
BANDS = {"naip": (2, 4, 1), "pucallpa": (4, 2, 3)}
QUERIES = {"water": ["ponds and lakes", "a river"], "vegetation": ["dense forest"],
           "buildings": ["houses"], "sea": ["the sea"]}


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return np.where(a + b > 0, (a - b) / np.maximum(a + b, 1e-9), 0.0)


def index_masks(path: Path, kind: str) -> dict[str, np.ndarray]:
    """Whole-raster boolean masks of water and vegetation (nodata pixels are neither)."""
    green_b, nir_b, red_b = BANDS[kind]
    with rasterio.open(path) as src:
        green, nir, red = (src.read(b) for b in (green_b, nir_b, red_b))
        valid = src.read_masks(1) > 0
    return {"water": (_ratio(green, nir) > 0) & valid, "vegetation": (_ratio(nir, red) > 0.4) & valid}


def footprint_mask(path: Path) -> dict[str, np.ndarray]:
    """Buildings of the Joplin footprints on one pre-tornado tile."""
    feats = json.loads((JOPLIN / "joplin.geojson").read_text())["features"]
    with rasterio.open(path) as src:
        shapes = [transform_geom("EPSG:4326", src.crs, f["geometry"]) for f in feats]
        mask = rasterize(((s, 1) for s in shapes), out_shape=(src.height, src.width), transform=src.transform,
                         fill=0, dtype="uint8").astype(bool)
    return {"buildings": mask}


def tile_truth(rows: dict[int, dict[str, Any]], masks: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[int, bool]]:
    """Per concept, tile id -> relevant (>= 30 % of the tile's pixels), for rasters that have that mask."""
    out: dict[str, dict[int, bool]] = {}
    for tid, r in rows.items():
        for concept, mask in masks.get(r["raster"], {}).items():
            win = mask[r["row_off"]:r["row_off"] + r["height"], r["col_off"]:r["col_off"] + r["width"]]
            out.setdefault(concept, {})[tid] = bool(win.size and win.mean() >= RELEVANT)
    return out


def run(store_root: Path, views: int, naip_dates: list[str]) -> list[dict[str, Any]]:
    """Index each scene as its own collection (default tiling), ask the concept queries, score them."""
    from harma_core.serving import load_model
    from server.indexing.pipeline import index_rasters
    from server.search.search import SearchRequest, TextEmbedder, search
    from server.store.records import TilingParams
    from server.store.store import Store

    model = load_model("harma-lite", device="cpu")
    embed = TextEmbedder(model)
    store = Store(store_root)
    scenes: dict[str, tuple[list[Path], dict[str, dict[str, np.ndarray]]]] = {}
    for d in naip_dates:
        p = next(NAIP.glob(f"*_{d}.tif"))
        scenes[f"naip_{d}"] = ([p], {str(p): index_masks(p, "naip")})
    scenes["pucallpa_2020"] = ([PUCALLPA], {str(PUCALLPA): index_masks(PUCALLPA, "pucallpa")})
    pre = sorted((JOPLIN / "pre").glob("*.tif"))
    scenes["joplin_pre"] = (pre, {str(p): footprint_mask(p) for p in pre})
    rows_out = []
    for name, (paths, masks) in scenes.items():
        col = store.create(name, model, TilingParams(views=views))
        index_rasters(col, model, [str(p) for p in paths], batch_size=32)
        truth = tile_truth(col.table.rows(col.table.live_ids()), masks)
        if name != "joplin_pre":  # inland scenes: no sea by geography
            truth["sea"] = {t: False for t in col.table.live_ids()}
        for concept, rel in truth.items():
            for text in QUERIES[concept]:
                fc = search(store, model, embed, SearchRequest.from_json({"text": text, "k": 10,
                                                                          "collections": [name]}))
                hits = [f["properties"]["tile_id"] for f in fc["features"]]
                n_rel = sum(rel.values())
                rows_out.append({
                    "collection": name, "query": text, "concept": concept, "tiles": len(rel),
                    "relevant": n_rel, "present": n_rel > 0,
                    "P@10": round(sum(rel.get(h, False) for h in hits) / max(len(hits), 1), 3) if n_rel else None,
                    "best_relevance": fc["features"][0]["properties"]["relevance"] if hits else None,
                    "no_match": fc["no_match"]})
    return rows_out


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean P@10 where the concept is present, and the share of no_match answers where present / absent."""
    present = [r for r in rows if r["present"]]
    absent = [r for r in rows if not r["present"]]
    return {"mean_P@10_present": round(float(np.mean([r["P@10"] for r in present])), 3) if present else None,
            "no_match_when_present": round(float(np.mean([r["no_match"] for r in present])), 3) if present else None,
            "no_match_when_absent": round(float(np.mean([r["no_match"] for r in absent])), 3) if absent else None,
            "answers_present": len(present), "answers_absent": len(absent)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--naip-dates", nargs="+", default=["20120731", "20200831"])
    ap.add_argument("--store", help="store folder to build in (default: a temporary one)")
    a = ap.parse_args(argv)
    _common.quiet_logs()
    with tempfile.TemporaryDirectory() as tmp:
        rows = run(Path(a.store) if a.store else Path(tmp), a.views, a.naip_dates)
    print(_common.table(rows, title=f"real imagery, default tiling, {a.views} views, {_common.cpu_model()}"))
    result = {"bench": "real_imagery", "views": a.views, "rows": rows, "summary": summary(rows),
              "cpu": _common.cpu_model()}
    print(json.dumps(result["summary"]))
    _common.emit(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
