"""Captioned tiles cut from a GeoTIFF around labelled polygons (GeoPackage, GeoJSON or Shapefile)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, Resampling
from rasterio.windows import Window
from shapely.geometry import box

from harma_core.data import SPLIT_COLUMN, Item, ReadReport, _filter_split, _finish
from harma_core.errors import DataError

STRETCH_PERCENTILES = (2.0, 98.0)
_STATS_SIDE = 1024  # percentiles come from a decimated read at most this many pixels on a side


def rgb_band_indexes(src: rasterio.io.DatasetReader) -> list[int]:
    """1-based bands to show as RGB: by colour interpretation, else the first three, else band 1 thrice."""
    interp = list(src.colorinterp)
    wanted = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    if all(c in interp for c in wanted):
        return [interp.index(c) + 1 for c in wanted]
    if src.count >= 3:
        return [1, 2, 3]
    return [1, 1, 1]


def stretch_limits(src: rasterio.io.DatasetReader, bands: list[int]) -> np.ndarray | None:
    """Per-band (low, high) percentiles over valid pixels for non-uint8 rasters; None for uint8."""
    if all(src.dtypes[b - 1] == "uint8" for b in bands):
        return None
    scale = min(1.0, _STATS_SIDE / max(src.width, src.height))
    shape = (len(bands), max(1, round(src.height * scale)), max(1, round(src.width * scale)))
    data = src.read(bands, out_shape=shape, masked=True, resampling=Resampling.nearest)
    limits = np.zeros((len(bands), 2), dtype=np.float64)
    for i in range(len(bands)):
        values = np.ma.compressed(data[i]).astype(np.float64)
        values = values[np.isfinite(values)]
        if values.size:
            limits[i] = np.percentile(values, STRETCH_PERCENTILES)
    return limits


def to_uint8(data: np.ma.MaskedArray, limits: np.ndarray | None) -> np.ndarray:
    """(bands, h, w) masked pixels -> (h, w, bands) uint8; masked pixels become 0."""
    if limits is None:
        out = np.asarray(data.filled(0), dtype=np.uint8)
    else:
        lo = limits[:, 0].reshape(-1, 1, 1)
        span = np.maximum(limits[:, 1] - limits[:, 0], 1e-12).reshape(-1, 1, 1)
        scaled = (data.astype(np.float64).filled(np.nan) - lo) / span * 255.0
        out = np.nan_to_num(np.clip(scaled, 0, 255), nan=0.0).round().astype(np.uint8)
    return np.ascontiguousarray(out.transpose(1, 2, 0))


def tile_window(bounds: tuple[float, float, float, float], transform: Any, tile_size: int) -> Window:
    """Square pixel window centred on bounds (raster CRS), at least tile_size and covering the bounds."""
    left, bottom, right, top = bounds
    # Explicit affine maths: `*` is deprecated in affine 3 and `@` missing from older versions.
    ia, ib, ic, id_, ie, if_ = (~transform)[:6]
    corners = [(ia * x + ib * y + ic, id_ * x + ie * y + if_) for x in (left, right) for y in (bottom, top)]
    cols = [c for c, _ in corners]
    rows = [r for _, r in corners]
    side = max(tile_size, math.ceil(max(cols) - min(cols)), math.ceil(max(rows) - min(rows)))
    col_centre = (min(cols) + max(cols)) / 2
    row_centre = (min(rows) + max(rows)) / 2
    return Window(round(col_centre - side / 2), round(row_centre - side / 2), side, side)


def read_tile(src: rasterio.io.DatasetReader, window: Window, bands: list[int], limits: np.ndarray | None,
              max_side: int) -> np.ndarray | str:
    """HxWx3 uint8 pixels of a square window, zero-padded outside the raster, downsampled to max_side.

    Returns the reason instead when the window misses the raster or holds only nodata.
    """
    side = int(window.width)
    c0, r0 = int(window.col_off), int(window.row_off)
    ic0, ir0 = max(c0, 0), max(r0, 0)
    ic1, ir1 = min(c0 + side, src.width), min(r0 + side, src.height)
    if ic1 <= ic0 or ir1 <= ir0:
        return "polygon outside raster"
    scale = min(1.0, max_side / side)
    out_side = max(1, round(side * scale))
    dc0, dc1 = round((ic0 - c0) * scale), round((ic1 - c0) * scale)
    dr0, dr1 = round((ir0 - r0) * scale), round((ir1 - r0) * scale)
    if dc1 <= dc0 or dr1 <= dr0:
        return "polygon outside raster"
    unique = sorted(set(bands))
    data = src.read(unique, window=Window(ic0, ir0, ic1 - ic0, ir1 - ir0), masked=True,
                    out_shape=(len(unique), dr1 - dr0, dc1 - dc0),
                    resampling=Resampling.average if scale < 1 else Resampling.nearest)
    data = data[[unique.index(b) for b in bands]]
    if np.ma.getmaskarray(data).all():
        return "tile is all nodata"
    tile = np.zeros((out_side, out_side, 3), dtype=np.uint8)
    tile[dr0:dr1, dc0:dc1] = to_uint8(data, limits)
    return tile


def _read_labels(labels: Path, layer: str | None) -> Any:
    """The labelled features as a GeoDataFrame, or DataError naming the file."""
    import geopandas as gpd  # slow import, only needed here

    if not labels.exists():
        raise DataError(f"labels file not found: {labels}; expected a GeoPackage, GeoJSON or Shapefile")
    try:
        return gpd.read_file(labels, layer=layer) if layer else gpd.read_file(labels)
    except Exception as exc:  # pyogrio/fiona raise many types for unreadable inputs
        raise DataError(f"cannot read labels {labels} ({exc}); expected a GeoPackage, GeoJSON or "
                        f"Shapefile with polygons and a label column") from exc


def read_raster_labels(raster: str | Path, labels: str | Path, label_field: str,
                       template: str = "a satellite image of {label}", tile_size: int = 224,
                       split: str | None = None, layer: str | None = None,
                       max_side: int = 1024) -> ReadReport:
    """Cut a captioned tile around every labelled polygon of a GeoTIFF (polygons reprojected to its CRS)."""
    raster, labels = Path(raster), Path(labels)
    try:
        valid_template = "{label}" in template and bool(template.format(label="x"))
    except (KeyError, IndexError, ValueError):
        valid_template = False
    if not valid_template:
        raise DataError(f"caption template {template!r} needs exactly one '{{label}}' placeholder and no "
                        f"other braces; use e.g. 'a satellite image of {{label}}'")
    if tile_size < 1 or max_side < tile_size:
        raise DataError(f"tile_size {tile_size} must be >= 1 and <= max_side {max_side}")
    gdf = _read_labels(labels, layer)
    if label_field not in gdf.columns:
        cols = ", ".join(c for c in gdf.columns if c != gdf.geometry.name)
        raise DataError(f"{labels} has no column {label_field!r}; columns: {cols or 'none'}")
    if len(gdf) and gdf.crs is None:
        raise DataError(f"{labels} has no CRS; set the layer's CRS (e.g. in QGIS) so polygons can be placed")
    try:
        src = rasterio.open(raster)
    except rasterio.errors.RasterioIOError as exc:
        raise DataError(f"cannot open raster {raster} ({exc}); expected a GeoTIFF") from exc
    items: list[Item] = []
    skipped: list[tuple[str, str]] = []
    with src:
        if src.crs is None:
            raise DataError(f"{raster} has no CRS; georeference it (e.g. gdal_translate -a_srs) first")
        if len(gdf):
            gdf = gdf.to_crs(src.crs.to_wkt())
        extent = box(*src.bounds)
        bands = rgb_band_indexes(src)
        limits = stretch_limits(src, bands)
        has_split = SPLIT_COLUMN in gdf.columns
        for k, (geom, label) in enumerate(zip(gdf.geometry, gdf[label_field])):
            source = f"{labels.name}:feature {k + 1}"
            if geom is None or geom.is_empty:
                skipped.append((source, "no geometry"))
                continue
            text = "" if label is None or (isinstance(label, float) and math.isnan(label)) else str(label)
            if not text.strip():
                skipped.append((source, f"empty caption: label {label_field!r} is empty"))
                continue
            tile: np.ndarray | str = "polygon outside raster"
            if geom.intersects(extent):
                tile = read_tile(src, tile_window(geom.bounds, src.transform, tile_size), bands, limits,
                                 max_side)
            if isinstance(tile, str):
                bounds = tuple(round(b, 3) for b in geom.bounds)
                skipped.append((source, f"{tile}: bounds {bounds} (raster CRS) in {raster.name}"))
                continue
            row_split = gdf[SPLIT_COLUMN].iloc[k] if has_split else None
            row_split = row_split.strip() or None if isinstance(row_split, str) else None
            items.append(Item(tile, (template.format(label=text.strip()),), row_split, source))
    name = f"{raster} + {labels}"
    return _filter_split(name, _finish(name, items, skipped, len(gdf)), split)
