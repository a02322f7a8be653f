"""Tile windows on a raster's own pixel grid, and their pixels: the one planning both indexing (server.indexing.tiling)
and training from labelled polygons (harma_core.readers.polygons) cut tiles with.

Bounds are always (left, bottom, right, top) in the CRS they are stated with; windows are integer
(col_off, row_off, width, height) on the raster grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.windows import Window
from rasterio.windows import from_bounds as rio_from_bounds

from harma_core.raster_pixels import read_rgb

TILE_RESAMPLING = Resampling.bilinear  # tiles are read for the encoder (and previews) with this


def axis_offsets(size: int, tile: int, stride: int) -> list[int]:
    """Tile starts along one axis: every stride, plus a last tile flush with the edge so edges are covered."""
    if size <= tile:
        return [0]
    offsets = list(range(0, size - tile, stride))
    offsets.append(size - tile)
    return offsets


def aligned_stride(stride: int, block: int | None) -> int:
    """Round a stride down to a multiple of the file's block size so reads start on block boundaries."""
    if block and stride > block and stride % block:
        return stride // block * block
    return stride


def grid_windows(width: int, height: int, tile: int, stride: int) -> list[Window]:
    """All tile windows of a width x height grid in row-major order (the file's natural read order)."""
    tw, th = min(tile, width), min(tile, height)
    return [Window(c, r, tw, th) for r in axis_offsets(height, tile, stride)
            for c in axis_offsets(width, tile, stride)]


def window_bounds(transform: Affine, window: Window) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of a window in the transform's CRS (rasterio's convention)."""
    c0, r0 = float(window.col_off), float(window.row_off)
    left, bottom = transform @ (c0, r0 + float(window.height))
    right, top = transform @ (c0 + float(window.width), r0)
    return (float(left), float(bottom), float(right), float(top))


def bounds_window(transform: Affine, bounds: tuple[float, float, float, float]) -> Window:
    """The integer window covering bounds (left, bottom, right, top), offsets and sizes rounded to nearest."""
    w = rio_from_bounds(*bounds, transform=transform)
    c0, r0 = round(w.col_off), round(w.row_off)
    c1, r1 = round(w.col_off + w.width), round(w.row_off + w.height)
    return Window(c0, r0, c1 - c0, r1 - r0)


def metres_per_pixel(ds: rasterio.DatasetReader) -> float:
    """Ground size of one pixel (x direction) in metres, at the raster's centre latitude when geographic.

    The raster must have a CRS (callers refuse CRS-less rasters first, with their own message).
    """
    res = math.hypot(ds.transform.a, ds.transform.d)  # the x pixel vector's length, rotated grids too
    if ds.crs.is_geographic:
        _, lat = ds.xy(ds.height // 2, ds.width // 2)
        return res * 111_320.0 * max(math.cos(math.radians(lat)), 1e-6)
    return res * ds.crs.linear_units_factor[1]


def block_stride(ds: rasterio.DatasetReader, stride: int) -> int:
    """The stride rounded down to the file's block width when the file is tiled (block-aligned reads)."""
    block = tuple(ds.block_shapes[0]) if ds.profile.get("tiled") else None
    return aligned_stride(stride, block[1] if block else None)


def read_window(ds: rasterio.DatasetReader, bands: Sequence[int], stretch: Sequence[Sequence[float]] | None,
                window: Window, out_side: int | None = None) -> np.ndarray | None:
    """A tile as HxWx3 uint8 (decimated to out_side, via overviews where present); None if all nodata."""
    h, w = int(window.height), int(window.width)
    if out_side and max(h, w) > out_side:
        s = out_side / max(h, w)
        h, w = max(1, round(h * s)), max(1, round(w * s))
    return read_rgb(ds, bands, window, (h, w), stretch, TILE_RESAMPLING)
