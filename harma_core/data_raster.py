"""Captioned tiles cut from a GeoTIFF around labelled polygons (GeoPackage, GeoJSON or Shapefile)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window
from shapely.geometry import box

from harma_core.data import SPLIT_COLUMN, Item, ReadReport, _filter_split, _finish
from harma_core.errors import DataError
from harma_core.raster_pixels import Stretch, choose_bands, read_rgb, stretch_limits


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


def read_tile(src: rasterio.io.DatasetReader, window: Window, bands: tuple[int, ...], limits: Stretch | None,
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
    rgb = read_rgb(src, bands, Window(ic0, ir0, ic1 - ic0, ir1 - ir0), (dr1 - dr0, dc1 - dc0), limits,
                   Resampling.average if scale < 1 else Resampling.nearest)
    if rgb is None:
        return "tile is all nodata"
    tile = np.zeros((out_side, out_side, 3), dtype=np.uint8)
    tile[dr0:dr1, dc0:dc1] = rgb
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
        bands = choose_bands(src.colorinterp, src.count)
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
