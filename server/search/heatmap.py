"""Tiles onto their raster's stride grid: one cell per stride of the raster's own pixel grid, each cell holding
the value of the best-scoring tile that covers its centre (overlapping tiles: the max), nothing where no tile.

A collection's tiles are windows on each raster's pixel grid, started every `stride` pixels (plus a last tile
flush with the edge). The grid has ceil(width / stride) x ceil(height / stride) cells; cell (i, j) spans
pixels [j*stride, (j+1)*stride) x [i*stride, (i+1)*stride), clipped to the raster, and a tile covers it when
the clipped cell's centre lies in the tile's window. The georeference comes from the stored tile bounds
(north-up grids; a raster whose tiles do not line up on one is skipped with the reason).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine

from server.store.store import Collection

GRID_TOLERANCE = 0.01  # pixels: how far a tile's corner may sit from the grid derived from all tiles
CACHED_COLLECTIONS = 8  # collections whose layouts are kept in memory (about 40 MB per million tiles)
_cache: dict[str, tuple[tuple[int, int], list[RasterLayout], list[dict[str, str]]]] = {}
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class RasterLayout:
    """One raster's tiles on its stride grid: the grid's georeference and size, and (tile, cell) pairs."""

    raster: str
    crs: str | None
    transform: Affine  # of the stride grid: one pixel per cell
    width: int
    height: int
    stride: int
    ids: np.ndarray  # tile ids, sorted
    pair_tile: np.ndarray  # index into ids, one per (tile, cell it covers)
    pair_cell: np.ndarray  # flat cell index row * width + col


def _stride(info: dict[str, Any], offsets: np.ndarray, tile: int) -> int:
    """The stride recorded for the raster, else the smallest step between tile offsets, else the tile side."""
    if isinstance(info.get("stride"), int) and info["stride"] > 0:
        return int(info["stride"])
    steps = np.diff(np.unique(offsets))
    return int(steps.min()) if len(steps) else max(int(tile), 1)


def _pixel_grid(windows: np.ndarray, bounds: np.ndarray) -> Affine | None:
    """The raster's pixel-to-CRS transform from its tiles' windows and bounds; None when they do not share one
    north-up grid (rotated rasters)."""
    w, h = windows[:, 2].astype(np.float64), windows[:, 3].astype(np.float64)
    a = np.median((bounds[:, 2] - bounds[:, 0]) / w)
    e = np.median((bounds[:, 1] - bounds[:, 3]) / h)  # negative for north-up; +1 in pixel coordinates
    c = bounds[:, 0] - a * windows[:, 0]
    f = bounds[:, 3] - e * windows[:, 1]
    c0, f0 = float(np.median(c)), float(np.median(f))
    if not (a and e) or np.abs(c - c0).max() > GRID_TOLERANCE * abs(a) or np.abs(f - f0).max() > GRID_TOLERANCE * abs(e):
        return None
    return Affine(float(a), 0.0, c0, 0.0, float(e), f0)


def _covered(centres: np.ndarray, start: np.ndarray, size: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First cell and number of cells along one axis whose centre lies in [start, start + size)."""
    first = np.searchsorted(centres, start, side="left")
    last = np.searchsorted(centres, start + size, side="left")
    return first, last - first


def _centres(size: int, stride: int, cells: int) -> np.ndarray:
    lo = np.arange(cells, dtype=np.float64) * stride
    return (lo + np.minimum(lo + stride, size)) / 2


def layout(col: Collection, raster: str, info: dict[str, Any] | None) -> RasterLayout | str:
    """The raster's stride grid and which cells each of its tiles covers; a reason string when it has none."""
    ids, windows, bounds = col.table.raster_windows(raster)
    if not len(ids):
        return "no searchable tiles"
    info = info or {}
    transform = _pixel_grid(windows, bounds)
    if transform is None:
        return "its tiles do not lie on one north-up pixel grid (a rotated raster); heatmaps need north-up rasters"
    stride = _stride(info, windows[:, 0], int(windows[:, 2].max()))
    width = int(info.get("width") or (windows[:, 0] + windows[:, 2]).max())
    height = int(info.get("height") or (windows[:, 1] + windows[:, 3]).max())
    gw, gh = math.ceil(width / stride), math.ceil(height / stride)
    c_first, c_n = _covered(_centres(width, stride, gw), windows[:, 0], windows[:, 2])
    r_first, r_n = _covered(_centres(height, stride, gh), windows[:, 1], windows[:, 3])
    tiles, cells = [np.zeros(0, dtype=np.int64)], [np.zeros(0, dtype=np.int64)]
    for di in range(int(r_n.max())):
        for dj in range(int(c_n.max())):
            ok = (di < r_n) & (dj < c_n)
            tiles.append(np.flatnonzero(ok))
            cells.append((r_first[ok] + di) * gw + c_first[ok] + dj)
    grid = transform @ Affine.scale(stride)
    return RasterLayout(raster, info.get("crs") if "crs" in info else None, grid, gw, gh, stride, ids,
                        np.concatenate(tiles), np.concatenate(cells))


def layouts(col: Collection) -> tuple[list[RasterLayout], list[dict[str, str]]]:
    """Layouts of every raster of a collection with live tiles, and the rasters skipped with their reason; kept
    in memory until the collection's tile table changes (a write changes the file's size or mtime)."""
    st = col.table.path.stat()
    key, stamp = str(col.table.path), (st.st_mtime_ns, st.st_size)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1], hit[2]
    lays, skipped = _read_layouts(col)
    with _cache_lock:
        _cache[key] = (stamp, lays, skipped)
        while len(_cache) > CACHED_COLLECTIONS:
            _cache.pop(next(iter(_cache)))
    return lays, skipped


def _read_layouts(col: Collection) -> tuple[list[RasterLayout], list[dict[str, str]]]:
    out, skipped = [], []
    for row in col.rasters():
        if row.state == "deleted":
            continue
        got = layout(col, row.path, row.info)
        if isinstance(got, str):
            if got != "no searchable tiles":
                skipped.append({"collection": col.name, "raster": row.path, "reason": got})
            continue
        if got.crs is None:  # rasters indexed before the crs was recorded: the tiles carry it
            crs = col.table.rows([int(got.ids[0])]).get(int(got.ids[0]), {}).get("crs")
            got = RasterLayout(got.raster, crs, got.transform, got.width, got.height, got.stride, got.ids,
                               got.pair_tile, got.pair_cell)
        out.append(got)
    return out, skipped


def aligned(lay: RasterLayout, ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """`values` (aligned with sorted `ids`) re-aligned with the layout's tiles; NaN where a tile has none."""
    out = np.full(len(lay.ids), np.nan, dtype=np.float64)
    if not len(ids):
        return out
    pos = np.minimum(np.searchsorted(ids, lay.ids), len(ids) - 1)
    hit = ids[pos] == lay.ids
    out[hit] = np.asarray(values, dtype=np.float64)[pos[hit]]
    return out


def winners(lay: RasterLayout, key: np.ndarray) -> np.ndarray:
    """(height, width) index of the tile with the highest `key` (aligned with lay.ids; NaN = no score) covering
    each cell, -1 where none; ties go to the lower tile id."""
    ok = ~np.isnan(key[lay.pair_tile])
    tiles, cells = lay.pair_tile[ok], lay.pair_cell[ok]
    order = np.lexsort((-tiles, key[tiles], cells))  # by cell, then key, the lower id last among equals
    cells, tiles = cells[order], tiles[order]
    last = np.r_[cells[1:] != cells[:-1], True] if len(cells) else np.zeros(0, dtype=bool)
    out = np.full(lay.width * lay.height, -1, dtype=np.int64)
    out[cells[last]] = tiles[last]
    return out.reshape(lay.height, lay.width)


def paint(win: np.ndarray, values: np.ndarray, fill: float = np.nan, dtype: Any = np.float32) -> np.ndarray:
    """A grid of `values[winner]` (values aligned with the layout's tiles), `fill` where no tile."""
    out = np.full(win.shape, fill, dtype=dtype)
    has = win >= 0
    out[has] = np.asarray(values)[win[has]]
    return out
