"""Ground-aligned tiling: cells on a grid fixed in a projected CRS, read from any raster through a warp, so the
same cell has the same footprint in every raster and date.

The grid: cell (ix, iy) spans x in [ix * cell, (ix + 1) * cell) and y in [iy * cell, (iy + 1) * cell) in the
grid CRS (origin at the CRS's 0, 0, so cell corners lie at multiples of the cell size); its id is "ix_iy".
The CRS defaults to the first raster's, or the UTM zone of its centre when that one is geographic. A cell is
read from each raster of a scene (several files make one mosaic; the first valid pixel wins) by a masked,
decimated read of the source pixels around it and a bilinear reprojection onto the cell's own pixel grid;
pixels no raster covers are nodata. Bands and stretch as the tile reader's (harma_core.raster_pixels).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import CRSError, RasterioIOError
from rasterio.warp import reproject, transform_bounds
from rasterio.warp import transform as warp_transform
from rasterio.windows import Window
from rasterio.windows import from_bounds as window_from_bounds
from shapely.geometry import Polygon, box
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from harma_core.errors import DataError
from harma_core.grid import TILE_RESAMPLING, metres_per_pixel
from harma_core.raster_pixels import choose_bands, invalid_values, stretch_limits, to_uint8
from server.errors import NotFound, RasterError
from server.store.records import MIN_SIDE

Bounds = tuple[float, float, float, float]


@dataclass(frozen=True)
class SceneRaster:
    """One file of a scene: its bands, stretch, CRS, transform, size and ground pixel size in metres."""

    path: str
    bands: tuple[int, int, int]
    stretch: Any
    crs: str
    transform: tuple[float, ...]
    width: int
    height: int
    pixel_m: float


@dataclass(frozen=True)
class AlignedGrid:
    """A grid fixed in a projected CRS: square cells of `cell` CRS units with corners at multiples of it."""

    crs: str
    cell: float

    def bounds(self, ix: int, iy: int) -> Bounds:
        """(left, bottom, right, top) of cell (ix, iy) in the grid CRS."""
        s = self.cell
        return (ix * s, iy * s, (ix + 1) * s, (iy + 1) * s)

    def cells_over(self, area: BaseGeometry) -> list[tuple[int, int]]:
        """(ix, iy) of every cell whose square overlaps `area` (grid CRS) with positive area, rows north to south."""
        if area.is_empty:
            return []
        left, bottom, right, top = area.bounds
        s = self.cell
        xs = range(math.floor(left / s), math.ceil(right / s))
        ys = range(math.ceil(top / s) - 1, math.floor(bottom / s) - 1, -1)
        return [(ix, iy) for iy in ys for ix in xs if box(*self.bounds(ix, iy)).intersection(area).area > 0]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as recorded with the cells."""
        return {"kind": "ground-aligned", "crs": self.crs, "cell": self.cell, "origin": [0.0, 0.0],
                "cell_id": "ix_iy: cell covers [ix*cell, (ix+1)*cell) x [iy*cell, (iy+1)*cell) in crs"}


def cell_id(ix: int, iy: int) -> str:
    """The id of cell (ix, iy), the same in every raster read on the same grid."""
    return f"{ix}_{iy}"


def inspect_scene(paths: Sequence[str], bands: tuple[int, ...] | None = None) -> list[SceneRaster]:
    """Open each file of a scene once; refuse missing, unreadable and CRS-less rasters with a clear reason."""
    if not paths:
        raise NotFound("a scene needs at least one raster file")
    out = []
    for path in paths:
        try:
            ds = rasterio.open(path)
        except (RasterioIOError, OSError) as e:
            raise RasterError(f"cannot read {path} as a raster ({e}); is it a valid GeoTIFF?") from e
        with ds:
            if ds.crs is None:
                raise RasterError(f"{path} has no CRS, so its cells cannot be lined up with another date; assign "
                                  "one (e.g. gdal_edit.py -a_srs EPSG:32633 FILE)")
            try:
                chosen = choose_bands(ds.colorinterp, ds.count, bands)
                stretch = stretch_limits(ds, chosen)
            except DataError as e:
                raise RasterError(str(e)) from e
            out.append(SceneRaster(path, chosen, stretch, ds.crs.to_string(), tuple(ds.transform)[:6], ds.width,
                                   ds.height, metres_per_pixel(ds)))
    return out


def default_crs(raster: SceneRaster) -> CRS:
    """The raster's CRS when projected, else the UTM zone (WGS84) of its centre."""
    crs = CRS.from_user_input(raster.crs)
    if not crs.is_geographic:
        return crs
    x, y = Affine(*raster.transform) @ (raster.width / 2, raster.height / 2)
    (lon,), (lat,) = warp_transform(crs, CRS.from_epsg(4326), [x], [y])
    zone = min(60, int((lon + 180.0) // 6) + 1)
    return CRS.from_epsg((32600 if lat >= 0 else 32700) + zone)


def make_grid(first: SceneRaster, *, tile_size: int | None = None, tile_size_m: float | None = None,
              crs: str | None = None) -> AlignedGrid:
    """The grid for a run: cell from metres, or from pixels of the first raster (default 300 m)."""
    target = CRS.from_user_input(crs) if crs else default_crs(first)
    if target.is_geographic:
        raise RasterError(f"grid CRS {target} is geographic; give a projected CRS (metres), e.g. a UTM zone")
    metres = tile_size_m if tile_size_m else (tile_size * first.pixel_m if tile_size else 300.0)
    if not metres > 0 or not math.isfinite(metres):
        raise RasterError(f"cell size {metres} m must be a positive number")
    return AlignedGrid(target.to_string(), float(metres) / target.linear_units_factor[1])


def footprint(raster: SceneRaster, crs: str, per_edge: int = 16) -> Polygon:
    """The raster's outline in `crs`, edges densified so reprojection keeps its shape."""
    t = np.linspace(0.0, 1.0, per_edge, endpoint=False)
    w, h = raster.width, raster.height
    cols = np.concatenate([w * t, np.full(per_edge, w), w - w * t, np.zeros(per_edge)])
    rows = np.concatenate([np.zeros(per_edge), h * t, np.full(per_edge, h), h - h * t])
    xs, ys = Affine(*raster.transform) @ (cols, rows)
    try:
        px, py = warp_transform(CRS.from_user_input(raster.crs), CRS.from_user_input(crs), list(xs), list(ys))
    except (CRSError, ValueError) as e:
        raise RasterError(f"{raster.path} cannot be projected to {crs} ({e})") from e
    if not (np.isfinite(px).all() and np.isfinite(py).all()):
        raise RasterError(f"{raster.path} cannot be projected to {crs}; choose a grid CRS that covers it")
    return Polygon(np.column_stack([px, py])).buffer(0)


def scene_footprint(scene: Sequence[SceneRaster], crs: str) -> BaseGeometry:
    """The union of a scene's raster outlines in `crs`."""
    return unary_union([footprint(r, crs) for r in scene])


def read_side(grid: AlignedGrid, scenes: Sequence[Sequence[SceneRaster]], out_side: int) -> int:
    """Pixels per cell side for reads: the finest raster's native count, at most `out_side`, at least MIN_SIDE."""
    unit_m = CRS.from_user_input(grid.crs).linear_units_factor[1]
    finest = min(r.pixel_m for scene in scenes for r in scene)
    return int(min(max(round(grid.cell * unit_m / finest), MIN_SIDE), out_side))


@contextmanager
def opened(scene: Sequence[SceneRaster]) -> Iterator[list[rasterio.DatasetReader]]:
    """The scene's files, open for the duration of a run."""
    with ExitStack() as stack:
        yield [stack.enter_context(rasterio.open(r.path)) for r in scene]


def _source_window(ds: rasterio.DatasetReader, bounds: Bounds, crs: str) -> Window | None:
    """The source pixels around a cell (one pixel of margin), clipped to the raster; None when outside."""
    try:
        left, bottom, right, top = transform_bounds(crs, ds.crs, *bounds, densify_pts=21)
        w = window_from_bounds(left, bottom, right, top, transform=ds.transform)
    except (CRSError, ValueError):
        return None
    c0, r0 = max(math.floor(w.col_off) - 1, 0), max(math.floor(w.row_off) - 1, 0)
    c1 = min(math.ceil(w.col_off + w.width) + 1, ds.width)
    r1 = min(math.ceil(w.row_off + w.height) + 1, ds.height)
    return Window(c0, r0, c1 - c0, r1 - r0) if c1 > c0 and r1 > r0 else None


def _cell_transform(bounds: Bounds, side: int) -> Affine:
    """The transform of a side x side pixel grid over a cell's bounds."""
    left, bottom, right, top = bounds
    return Affine((right - left) / side, 0.0, left, 0.0, (bottom - top) / side, top)


def _warp_into(ds: rasterio.DatasetReader, raster: SceneRaster, bounds: Bounds, crs: str, side: int,
               out: np.ndarray) -> None:
    """Fill the NaN pixels of `out` (3, side, side) float32 with this raster's stretched RGB, warped."""
    win = _source_window(ds, bounds, crs)
    if win is None:
        return
    w, h = int(win.width), int(win.height)
    f = max(1.0, max(w, h) / (side + 2))  # decimate to about the cell's pixel count (GDAL's overviews help)
    ow, oh = max(1, math.ceil(w / f)), max(1, math.ceil(h / f))
    unique = sorted(set(raster.bands))
    arr = ds.read(unique, window=win, out_shape=(len(unique), oh, ow), masked=True, resampling=TILE_RESAMPLING)
    arr = arr[[unique.index(b) for b in raster.bands]]
    rgb = to_uint8(arr, raster.stretch)
    if rgb is None:
        return
    src = rgb.transpose(2, 0, 1).astype(np.float32)
    src[:, invalid_values(arr).any(axis=0)] = np.nan
    dst = np.full_like(out, np.nan)
    reproject(src, dst, src_transform=ds.window_transform(win) @ Affine.scale(w / ow, h / oh), src_crs=ds.crs,
              src_nodata=np.nan, dst_transform=_cell_transform(bounds, side), dst_crs=crs,
              dst_nodata=np.nan, resampling=Resampling.bilinear)
    empty = np.isnan(out)
    out[empty] = dst[empty]


def read_cell(datasets: Sequence[rasterio.DatasetReader], scene: Sequence[SceneRaster],
              outlines: Sequence[BaseGeometry], grid: AlignedGrid, ix: int, iy: int, side: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """A cell of a scene as (side x side x 3 uint8 with invalid pixels 0, side x side valid mask)."""
    bounds = grid.bounds(ix, iy)
    cell = box(*bounds)
    out = np.full((3, side, side), np.nan, dtype=np.float32)
    for ds, raster, outline in zip(datasets, scene, outlines):
        if outline.intersects(cell):
            _warp_into(ds, raster, bounds, grid.crs, side, out)
            if not np.isnan(out).any():
                break
    valid = np.isfinite(out).all(axis=0)
    rgb = np.where(valid, np.nan_to_num(out, nan=0.0), 0.0).clip(0, 255).round().astype(np.uint8)
    return np.ascontiguousarray(rgb.transpose(1, 2, 0)), valid
