"""Pure tiling on a raster's own pixel grid: windows, bounds, WGS84 footprints; pixels via raster_pixels.

Bounds are always (left, bottom, right, top) in the CRS they are stated with; windows are integer
(col_off, row_off, width, height) on the raster grid.
"""

from __future__ import annotations

import functools
import math
import os

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.errors import CRSError, RasterioIOError
from rasterio.warp import transform as warp_transform
from rasterio.warp import transform_geom
from rasterio.windows import Window
from shapely.affinity import translate
from shapely.geometry import MultiPolygon, Polygon, box, mapping, shape
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

from harma_core.errors import DataError
from harma_core.grid import (  # noqa: F401  (the grid lives in harma_core; names re-exported for server callers)
    TILE_RESAMPLING,
    aligned_stride,
    axis_offsets,
    bounds_window,
    grid_windows,
    metres_per_pixel,
    read_window,
    window_bounds,
)
from harma_core.raster_pixels import choose_bands as _choose_bands
from harma_core.raster_pixels import stretch_limits
from server.errors import RasterError
from server.store.records import (
    MAX_SIDE,
    MIN_SIDE,
    RasterInfo,
    TileRecord,
    TilingParams,
)

WGS84 = CRS.from_epsg(4326)


def _perimeter(window: Window, per_edge: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-edge coordinates around a window, `per_edge` points per side, closed ring order."""
    c0, r0 = float(window.col_off), float(window.row_off)
    c1, r1 = c0 + float(window.width), r0 + float(window.height)
    t = np.linspace(0.0, 1.0, per_edge, endpoint=False)
    cols = np.concatenate([c0 + (c1 - c0) * t, np.full(per_edge, c1), c1 - (c1 - c0) * t, np.full(per_edge, c0)])
    rows = np.concatenate([np.full(per_edge, r0), r0 + (r1 - r0) * t, np.full(per_edge, r1), r1 - (r1 - r0) * t])
    return cols, rows


def antimeridian_safe(lons: np.ndarray, lats: np.ndarray) -> BaseGeometry:
    """Polygon from a lon/lat ring, split into a MultiPolygon where it crosses the antimeridian (RFC 7946)."""
    lons = np.degrees(np.unwrap(np.radians(lons)))  # remove 360-degree jumps between neighbours
    if lons.min() >= 180.0:
        lons = lons - 360.0
    elif lons.max() <= -180.0:
        lons = lons + 360.0
    poly = orient(Polygon(np.column_stack([lons, lats])).buffer(0), 1.0)
    if -180.0 <= lons.min() and lons.max() <= 180.0:
        return poly
    world = box(-180.0, -90.0, 180.0, 90.0)
    shift = -360.0 if lons.max() > 180.0 else 360.0
    outside = box(180.0, -90.0, 540.0, 90.0) if shift < 0 else box(-540.0, -90.0, -180.0, 90.0)
    parts = [poly.intersection(world), translate(poly.intersection(outside), xoff=shift)]
    polys = [orient(p, 1.0) for g in parts for p in getattr(g, "geoms", [g])
             if isinstance(p, Polygon) and not p.is_empty]
    return MultiPolygon(polys)


@functools.lru_cache(maxsize=256)
def _pole_pixels(crs: str, transform: tuple[float, ...]) -> tuple[tuple[float, float, float], ...]:
    """(lat, col, row) of each pole that has a finite position on this raster's grid."""
    out = []
    for lat in (90.0, -90.0):
        try:
            (x,), (y,) = warp_transform(WGS84, CRS.from_user_input(crs), [0.0], [lat])
        except (CRSError, ValueError):
            continue
        if math.isfinite(x) and math.isfinite(y):
            col, row = ~Affine(*transform[:6]) @ (x, y)
            out.append((lat, float(col), float(row)))
    return tuple(out)


def _holds_pole(crs: str, transform: Affine, window: Window) -> bool:
    """True when a pole's projected point lies inside the window (edges included)."""
    c0, r0 = float(window.col_off), float(window.row_off)
    return any(c0 <= c <= c0 + float(window.width) and r0 <= r <= r0 + float(window.height)
               for _, c, r in _pole_pixels(crs, tuple(transform)[:6]))


def footprint_lonlat(crs: CRS | str, transform: Affine, window: Window, per_edge: int = 8) -> BaseGeometry:
    """WGS84 footprint of a window, reprojected with densified edges; antimeridian-safe, and reaching the
    pole (lat +-90, all longitudes) when the window contains one, which GDAL's antimeridian cutting handles."""
    cols, rows = _perimeter(window, per_edge)
    xs, ys = transform @ (cols, rows)
    src = CRS.from_user_input(crs)
    if src != WGS84 and _holds_pole(src.to_string(), transform, window):
        ring = Polygon(np.column_stack([xs, ys]))
        geom = shape(transform_geom(src, WGS84, mapping(ring), antimeridian_cutting=True))
        polys = [orient(p, 1.0) for p in getattr(geom, "geoms", [geom])]
        return polys[0] if len(polys) == 1 else MultiPolygon(polys)
    if src == WGS84:
        lons, lats = np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
    else:
        lo, la = warp_transform(src, WGS84, list(xs), list(ys))
        lons, lats = np.asarray(lo, dtype=float), np.asarray(la, dtype=float)
    if not (np.isfinite(lons).all() and np.isfinite(lats).all()):
        raise RasterError(f"window {tuple(window.flatten())} cannot be projected from {src} to EPSG:4326; "
                          "check the raster's CRS")
    return antimeridian_safe(lons, lats)


def choose_bands(colorinterp: tuple[ColorInterp, ...], count: int,
                 requested: tuple[int, ...] | None = None) -> tuple[int, int, int]:
    """Bands to show as RGB (see harma_core.raster_pixels.choose_bands); bad band numbers raise RasterError."""
    try:
        return _choose_bands(colorinterp, count, requested)
    except DataError as e:
        raise RasterError(str(e)) from e


def _metres_to_pixels(ds: rasterio.DatasetReader, metres: float, what: str) -> int:
    """Convert a length in metres to pixels through the transform; refuse more than MAX_SIDE pixels."""
    if ds.crs is None:
        raise RasterError(f"{ds.name} has no CRS, so a tile size in metres cannot be converted; use pixels")
    per_px = metres_per_pixel(ds)
    px = max(1, round(metres / per_px))
    if px > MAX_SIDE:
        raise RasterError(f"{what}={metres} is {px} pixels of {per_px:.3g} m in {ds.name}; tiles may be at most "
                          f"{MAX_SIDE} pixels ({MAX_SIDE * per_px:.0f} m here): give a smaller {what}")
    return px


def tile_pixels(ds: rasterio.DatasetReader, params: TilingParams) -> tuple[int, int]:
    """(tile, overlap) in pixels for this raster: explicit metres, explicit pixels, or the automatic rule.

    Automatic: round(auto_tile_m / ground pixel size) clamped into auto_tile_px; a raster without a CRS
    (pixel_coords) has no ground size and gets 256 pixels.
    """
    if params.tile_size_m:
        tile = _metres_to_pixels(ds, params.tile_size_m, "tile_size_m")
    elif params.tile_size:
        tile = params.tile_size
    elif ds.crs is None:
        tile = 256
    else:
        lo, hi = params.auto_tile_px
        tile = min(max(round(params.auto_tile_m / metres_per_pixel(ds)), lo), hi)
    overlap = _metres_to_pixels(ds, params.overlap_m, "overlap_m") if params.overlap_m else params.overlap
    tile = max(tile, MIN_SIDE)
    return tile, min(overlap, tile - 1)


def inspect_raster(path: str, params: TilingParams) -> RasterInfo:
    """Open a raster once and work out everything tiling needs; refuse unusable ones with a clear reason."""
    try:
        stat = os.stat(path)
        ds = rasterio.open(path)
    except (RasterioIOError, OSError) as e:
        raise RasterError(f"cannot read {path} as a raster ({e}); is it a valid GeoTIFF?") from e
    with ds:
        if ds.width < MIN_SIDE or ds.height < MIN_SIDE:
            raise RasterError(f"{path} is {ds.width}x{ds.height} pixels; rasters smaller than "
                              f"{MIN_SIDE}x{MIN_SIDE} cannot be tiled")
        if ds.crs is None and not params.pixel_coords:
            raise RasterError(f"{path} has no CRS, so its tiles cannot be placed on a map; assign one "
                              "(e.g. gdal_edit.py -a_srs EPSG:32633 FILE) or index with pixel_coords=true "
                              "to keep pixel coordinates only")
        tile, overlap = tile_pixels(ds, params)
        block = tuple(ds.block_shapes[0]) if ds.profile.get("tiled") else None
        stride = aligned_stride(tile - overlap, block[1] if block else None)
        bands = choose_bands(ds.colorinterp, ds.count, params.bands)
        try:
            stretch = stretch_limits(ds, bands, params.percentiles)
        except DataError as e:
            raise RasterError(str(e)) from e
        return RasterInfo(
            path=path, size=stat.st_size, mtime_ns=stat.st_mtime_ns, width=ds.width, height=ds.height,
            count=ds.count, dtype=ds.dtypes[0], crs=ds.crs.to_string() if ds.crs else None,
            transform=tuple(ds.transform)[:6], nodata=ds.nodata, bands=bands, stretch=stretch,
            block=block, tile=tile, stride=stride)  # type: ignore[arg-type]


def plan_windows(info: RasterInfo) -> list[Window]:
    """Every tile window of a raster, edge tiles included."""
    return grid_windows(info.width, info.height, info.tile, info.stride)


def tile_record(info: RasterInfo, window: Window) -> TileRecord:
    """Metadata of one tile: bounds in the raster CRS (pixel units without one) and WGS84 footprint."""
    win = (int(window.col_off), int(window.row_off), int(window.width), int(window.height))
    if info.crs is None:
        return TileRecord(info.path, win, None, window_bounds(Affine.identity(), window), None)
    return TileRecord(info.path, win, info.crs, window_bounds(info.affine, window),
                      footprint_lonlat(info.crs, info.affine, window))


def read_tile(ds: rasterio.DatasetReader, info: RasterInfo, window: Window, out_side: int | None = None
              ) -> np.ndarray | None:
    """Read a tile as HxWx3 uint8 (decimated to out_side, via overviews where present); None if all nodata."""
    return read_window(ds, info.bands, info.stretch, window, out_side)
