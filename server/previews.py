"""Tile previews: an 8-bit PNG as the encoder saw it, and a georeferenced GeoTIFF crop of the source data."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from PIL import Image
from rasterio.io import MemoryFile
from rasterio.windows import Window

from harma_core.grid import read_window
from server.errors import NotFound, RasterError
from server.store.paths import check_raster_files
from server.store.store import Collection

MAX_PREVIEW_SIDE = 1024


def _locate(col: Collection, tile_id: int, roots: Sequence[Path]) -> tuple[dict[str, Any], dict[str, Any], Window]:
    """The tile row, its raster's stored info and its window; NotFound when any is gone, PathNotAllowed when the
    file now makes GDAL read outside the allowed roots and its own folder (e.g. replaced by a VRT)."""
    row = col.table.rows([tile_id]).get(tile_id)
    if row is None:
        raise NotFound(f"tile {tile_id} is not in collection {col.name!r}")
    raster = col.table.raster(row["raster"])
    if raster is None or not raster.info:
        raise NotFound(f"raster {row['raster']!r} of tile {tile_id} is not registered in {col.name!r}")
    if not os.path.exists(row["raster"]):
        raise NotFound(f"raster {row['raster']} of tile {tile_id} no longer exists at that path; "
                       "move it back or re-index it")
    check_raster_files(row["raster"], [*roots, Path(row["raster"]).resolve().parent])
    return row, raster.info, Window(row["col_off"], row["row_off"], row["width"], row["height"])


def tile_png(col: Collection, tile_id: int, max_side: int = 512, roots: Sequence[Path] = ()) -> bytes:
    """PNG of a tile with the bands and stretch used for indexing, at most max_side pixels on a side."""
    max_side = max(16, min(int(max_side), MAX_PREVIEW_SIDE))
    row, info, window = _locate(col, tile_id, roots)
    stretch = tuple(tuple(s) for s in info["stretch"]) if info.get("stretch") else None
    try:
        with rasterio.open(row["raster"]) as ds:  # the encoder's read: same bands, stretch, palette, resampling
            rgb = read_window(ds, info["bands"], stretch, window, max_side)
    except rasterio.errors.RasterioIOError as e:
        raise RasterError(f"cannot read {row['raster']} for tile {tile_id}: {e}") from e
    if rgb is None:  # all nodata (the file changed since indexing): black, at the size of the read
        scale = min(1.0, max_side / max(int(window.height), int(window.width)))
        rgb = np.zeros((max(1, round(window.height * scale)), max(1, round(window.width * scale)), 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def tile_geotiff(col: Collection, tile_id: int, roots: Sequence[Path] = ()) -> bytes:
    """A GeoTIFF crop of every band of the tile's window, in the raster's CRS, dtype and nodata."""
    row, _, window = _locate(col, tile_id, roots)
    try:
        with rasterio.open(row["raster"]) as ds:
            data = ds.read(window=window)
            profile = {"driver": "GTiff", "width": int(window.width), "height": int(window.height),
                       "count": ds.count, "dtype": ds.dtypes[0], "crs": ds.crs, "nodata": ds.nodata,
                       "transform": ds.transform @ Affine.translation(window.col_off, window.row_off), "compress": "deflate"}
            colorinterp = ds.colorinterp
    except rasterio.errors.RasterioIOError as e:
        raise RasterError(f"cannot read {row['raster']} for tile {tile_id}: {e}") from e
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(data)
            dst.colorinterp = colorinterp
            dst.update_tags(harma_collection=col.name, harma_tile_id=str(tile_id), source=row["raster"])
        return mem.read()
