#!/usr/bin/env python3
"""Stitch the scenes of a caption dataset into one georeferenced GeoTIFF, one scene per grid cell, plus a
GeoPackage with one polygon per cell (cell, row, col, image, label, captions as a JSON list, split).

Made for real-data tests and benches of the product path (index the mosaic, search class names, map hits
back to cells). Classes are interleaved round-robin so every part of the mosaic holds every class.

Example: python tools/mosaic.py ../shared/data/captions/ucm_captions --split val --out /tmp/ucm_val
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

try:
    import _bootstrap
except ImportError:  # imported as tools.mosaic
    from tools import _bootstrap

DEFAULT_CRS = "EPSG:32615"         # UTM zone 15N: a real projected CRS in metres
DEFAULT_ORIGIN = (500_000.0, 4_000_000.0)  # top-left corner of the mosaic in DEFAULT_CRS
DEFAULT_PIXEL = 0.3                # metres; UC Merced scenes are 1 foot per pixel
LABEL_KEY = "landuse_class"
LAYER = "cells"


class MosaicError(ValueError):
    """A dataset that cannot be stitched (missing split file, no scene left after filtering)."""


@dataclass(frozen=True)
class Mosaic:
    """What was written: the two files, the grid and its georeference."""

    tif: Path
    gpkg: Path
    n_cells: int
    rows: int
    cols: int
    cell: int
    crs: str
    pixel_size: float
    classes: tuple[str, ...]


def _label_of(entry: dict, key: str) -> str:
    """The class of a dataset entry: its `key` field, else the image file name without digits."""
    label = entry.get(key)
    if isinstance(label, str) and label.strip():
        return label.strip()
    stem = Path(str(entry.get("image", ""))).stem.rstrip("0123456789_- ")
    if not stem:
        raise MosaicError(f"entry {entry.get('image')!r} has no {key!r} field and its file name holds no class")
    return stem


def read_scenes(dataset: str | Path, split: str, label_key: str = LABEL_KEY) -> list[dict]:
    """Entries {image (absolute path), name, label, captions} of `<name>_<split>.json` in a dataset folder."""
    folder = Path(dataset)
    files = sorted(folder.glob(f"*_{split}.json"))
    if len(files) != 1:
        found = ", ".join(p.name for p in files) or "none"
        raise MosaicError(f"{folder}: expected one '*_{split}.json' HarMA file for split {split!r}, found {found}")
    data = json.loads(files[0].read_text(encoding="utf-8"))
    scenes = []
    for entry in data:
        image = folder / "images" / entry["image"]
        if not image.is_file():
            raise MosaicError(f"{files[0].name}: image {image} not found")
        scenes.append({"image": str(image), "name": entry["image"], "label": _label_of(entry, label_key),
                       "captions": [c.strip() for c in entry.get("caption", []) if c.strip()]})
    return scenes


def select_scenes(scenes: Sequence[dict], limit: int | None = None, classes: Sequence[str] | None = None,
                  per_class: int | None = None) -> list[dict]:
    """Keep the given classes (all by default), at most per_class each, interleaved round-robin by class,
    then the first `limit` of that order (so a limit keeps classes balanced)."""
    by_class: dict[str, list[dict]] = {}
    for s in scenes:
        by_class.setdefault(s["label"], []).append(s)
    wanted = list(classes) if classes else sorted(by_class)
    missing = [c for c in wanted if c not in by_class]
    if missing:
        raise MosaicError(f"classes {missing} are not in the dataset; classes: {', '.join(sorted(by_class))}")
    queues = [by_class[c][:per_class] if per_class else by_class[c] for c in wanted]
    order = [q[i] for i in range(max(len(q) for q in queues)) for q in queues if i < len(q)]
    order = order[:limit] if limit else order
    if not order:
        raise MosaicError("no scenes left to stitch; raise limit/per_class or choose other classes")
    return order


def _cell_pixels(path: str, cell: int) -> np.ndarray:
    """(3, cell, cell) uint8 pixels of a scene, resized when it is not cell x cell (a few UCM scenes)."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if im.size != (cell, cell):
            im = im.resize((cell, cell), Image.Resampling.BILINEAR)
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)


def grid_columns(n: int) -> int:
    """Cells per row: a divisor of n near its square root (a full grid, no empty cell), else a square grid."""
    side = math.ceil(math.sqrt(n))
    return next((c for c in range(side, 2 * side + 1) if n % c == 0), side)


def write_mosaic(scenes: Sequence[dict], out: str | Path, split: str = "", cell: int = 256,
                 crs: str = DEFAULT_CRS, origin: tuple[float, float] = DEFAULT_ORIGIN,
                 pixel_size: float = DEFAULT_PIXEL, cols: int | None = None) -> Mosaic:
    """Write OUT.tif and OUT.gpkg (each to a temporary name, then renamed: never half-written)."""
    import geopandas as gpd
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window
    from rasterio.windows import bounds as window_bounds
    from shapely.geometry import box

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    n = len(scenes)
    cols = cols or grid_columns(n)
    rows = math.ceil(n / cols)
    transform = from_origin(origin[0], origin[1], pixel_size, pixel_size)
    tif, gpkg = out.with_suffix(".tif"), out.with_suffix(".gpkg")
    tmp_tif, tmp_gpkg = tif.with_name(f".{tif.name}.tmp"), gpkg.with_name(f".{gpkg.name}.tmp.gpkg")
    profile = {"driver": "GTiff", "width": cols * cell, "height": rows * cell, "count": 3, "dtype": "uint8",
               "crs": crs, "transform": transform, "tiled": True, "blockxsize": cell, "blockysize": cell,
               "compress": "deflate", "photometric": "RGB", "interleave": "pixel"}
    records = []
    try:
        # The internal mask marks empty cells of the last row as no data, so indexing skips them.
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(tmp_tif, "w", **profile) as dst:
            empty = np.zeros((cell, cell), dtype=np.uint8)
            for k in range(rows * cols):
                r, c = divmod(k, cols)
                win = Window(c * cell, r * cell, cell, cell)
                if k >= n:
                    dst.write_mask(empty, window=win)
                    continue
                s = scenes[k]
                dst.write(_cell_pixels(s["image"], cell), window=win)
                dst.write_mask(empty + 255, window=win)
                records.append({"cell": k, "row": r, "col": c, "image": s["name"], "label": s["label"],
                                "captions": json.dumps(s["captions"]), "split": split,
                                "geometry": box(*window_bounds(win, transform))})
        gpd.GeoDataFrame(records, geometry="geometry", crs=crs).to_file(tmp_gpkg, layer=LAYER, driver="GPKG")
        os.replace(tmp_tif, tif)
        os.replace(tmp_gpkg, gpkg)
    finally:
        tmp_tif.unlink(missing_ok=True)
        tmp_gpkg.unlink(missing_ok=True)
    return Mosaic(tif, gpkg, n, rows, cols, cell, crs, pixel_size, tuple(sorted({s["label"] for s in scenes})))


def build_mosaic(dataset: str | Path, split: str, out: str | Path, limit: int | None = None,
                 classes: Sequence[str] | None = None, per_class: int | None = None, **grid) -> Mosaic:
    """Read one split of a HarMA dataset folder, select scenes, and write OUT.tif + OUT.gpkg."""
    scenes = select_scenes(read_scenes(dataset, split), limit=limit, classes=classes, per_class=per_class)
    return write_mosaic(scenes, out, split=split, **grid)


@_bootstrap.tool(errors=(MosaicError, OSError))
def main(argv: list[str] | None = None) -> int:
    """Parse arguments, build the mosaic, print its two paths."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dataset", help="dataset folder with <name>_<split>.json and images/")
    ap.add_argument("--split", default="val", help="dataset split (default val)")
    ap.add_argument("--out", required=True, help="output path without suffix: writes OUT.tif and OUT.gpkg")
    ap.add_argument("--limit", type=int, help="at most this many scenes (classes stay balanced)")
    ap.add_argument("--per-class", type=int, help="at most this many scenes per class")
    ap.add_argument("--classes", nargs="+", help="only these classes")
    ap.add_argument("--cell", type=int, default=256, help="cell side in pixels (default 256)")
    ap.add_argument("--cols", type=int, help="cells per row (default: a square grid)")
    ap.add_argument("--crs", default=DEFAULT_CRS, help=f"CRS of the mosaic (default {DEFAULT_CRS})")
    ap.add_argument("--pixel-size", type=float, default=DEFAULT_PIXEL, help="metres per pixel (default 0.3)")
    a = ap.parse_args(argv)
    m = build_mosaic(a.dataset, a.split, a.out, limit=a.limit, classes=a.classes, per_class=a.per_class,
                     cell=a.cell, cols=a.cols, crs=a.crs, pixel_size=a.pixel_size)
    print(f"{m.n_cells} scenes of {len(m.classes)} classes in a {m.rows}x{m.cols} grid ({m.crs})")
    print(m.tif)
    print(m.gpkg)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
