"""Captioned training tiles from GeoTIFFs and labelled polygons (GeoPackage, GeoJSON or Shapefile).

Tiles are the windows indexing cuts (harma_core.grid, no overlap), so a model is trained on the tiles it
will later embed. Polygons are reprojected to each raster's CRS. A tile gets every label whose polygons
cover at least `min_cover` of its area (MIN_COVER = 0.3: a class filling a third of a tile is what a
searcher would call a hit; several labels may pass) and one caption per label from the template. Tiles no
label covers enough are skipped and counted.

Validation is spatial, never random tiles: a user's split column (train/val per polygon), or else held-out
blocks of BLOCK x BLOCK tiles (one block in VAL_EVERY, in a diagonal pattern over the grid), so neighbouring
tiles fall on the same side of the split except along block borders.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rasterio
from shapely import union_all
from shapely.geometry import box

from harma_core.errors import DataError
from harma_core.grid import (
    axis_offsets,
    block_stride,
    grid_windows,
    metres_per_pixel,
    read_window,
    window_bounds,
)
from harma_core.raster_pixels import choose_bands, stretch_limits
from harma_core.readers.items import Item, ReadReport

log = logging.getLogger("harma_core.readers")

MIN_COVER = 0.3
BLOCK = 4          # tiles per side of a held-out block (shrunk on small rasters, see _block_side)
VAL_EVERY = 5      # one block in five is validation: 20 %
MIN_BLOCKS = 10    # a raster is cut in blocks small enough that it has at least this many
DEFAULT_TEMPLATE = "an aerial image of {label}"
SPLITS = ("train", "val")


@dataclass(frozen=True)
class PolygonSource:
    """Rasters and the polygon labels to cut captioned tiles from them."""

    rasters: tuple[str, ...]
    labels: str
    label_field: str
    layer: str | None = None
    template: str = DEFAULT_TEMPLATE
    tile_size: int = 256
    tile_size_m: float | None = None
    split_field: str | None = None
    min_cover: float = MIN_COVER
    max_side: int = 256  # tiles larger than this are decimated when read (the model sees 224 px anyway)

    def __post_init__(self) -> None:
        try:
            valid = "{label}" in self.template and bool(self.template.format(label="x"))
        except (KeyError, IndexError, ValueError):
            valid = False
        if not valid:
            raise DataError(f"caption template {self.template!r} needs exactly one '{{label}}' placeholder and "
                            f"no other braces; use e.g. {DEFAULT_TEMPLATE!r}")
        if not self.rasters:
            raise DataError("no raster given; pass one or more GeoTIFFs with the labels")
        if self.tile_size < 16 or (self.tile_size_m is not None and not self.tile_size_m > 0):
            raise DataError(f"tile size {self.tile_size} px / {self.tile_size_m} m: give at least 16 pixels or a "
                            f"positive number of metres")
        if not 0 < self.min_cover <= 1:
            raise DataError(f"min_cover {self.min_cover} must lie in (0, 1]: the share of a tile a label covers")


def _read_labels(src: PolygonSource) -> Any:
    """The labelled polygons with non-empty labels (as str), or DataError naming the file and the fix."""
    import geopandas as gpd  # slow import, only needed here

    path = Path(src.labels)
    if not path.exists():
        raise DataError(f"labels file not found: {path}; expected a GeoPackage, GeoJSON or Shapefile")
    try:
        gdf = gpd.read_file(path, layer=src.layer) if src.layer else gpd.read_file(path)
    except Exception as exc:  # pyogrio raises many types for unreadable inputs
        raise DataError(f"cannot read labels {path}{f' layer {src.layer!r}' if src.layer else ''} ({exc}); "
                        f"expected a GeoPackage, GeoJSON or Shapefile with polygons and a label column") from exc
    columns = [c for c in gdf.columns if c != gdf.geometry.name]
    for name, what in ((src.label_field, "label"), (src.split_field, "split")):
        if name is not None and name not in gdf.columns:
            raise DataError(f"{path} has no {what} field {name!r}; fields: {', '.join(columns) or 'none'}")
    if gdf.crs is None:
        raise DataError(f"{path} has no CRS; set the layer's CRS (e.g. in QGIS: Layer Properties > Source) so "
                        f"its polygons can be placed on the rasters")
    labels = gdf[src.label_field].map(lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v))
                                      else str(v).strip())
    keep = (labels != "") & gdf.geometry.notna() & ~gdf.geometry.is_empty
    keep &= gdf.geometry.geom_type.isin(["Polygon", "MultiPolygon"])
    if not keep.any():
        raise DataError(f"{path}: no polygon has a value in label field {src.label_field!r} "
                        f"({len(gdf)} features); fill the field or choose another one")
    gdf = gdf[keep].copy()
    gdf["_label"] = labels[keep]
    if src.split_field is not None:
        gdf["_split"] = gdf[src.split_field].map(lambda v: str(v).strip().lower() if v is not None else "")
        bad = sorted(set(gdf["_split"]) - set(SPLITS))
        if bad:
            raise DataError(f"{path}: split field {src.split_field!r} holds {bad}; use only 'train' and 'val'")
    classes = sorted(set(gdf["_label"]))
    if len(classes) < 2:
        raise DataError(f"{path}: label field {src.label_field!r} has one class only ({classes[0]!r}); "
                        f"contrastive training needs at least two classes to tell apart")
    return gdf.reset_index(drop=True)


def _tile_side(ds: rasterio.DatasetReader, src: PolygonSource) -> int:
    """Tile side in pixels: --tile-size-m converted through the transform, else --tile-size."""
    if src.tile_size_m is None:
        return src.tile_size
    return max(16, round(src.tile_size_m / metres_per_pixel(ds)))


def _block_side(n_rows: int, n_cols: int) -> int:
    """BLOCK, halved until the raster has at least MIN_BLOCKS blocks (1 tile at the least)."""
    side = BLOCK
    while side > 1 and math.ceil(n_rows / side) * math.ceil(n_cols / side) < MIN_BLOCKS:
        side //= 2
    return side


def _block_split(raster_no: int, row: int, col: int, side: int) -> str:
    """Held-out blocks: one in VAL_EVERY on a diagonal pattern, shifted per raster."""
    return "val" if (2 * (row // side) + col // side + raster_no) % VAL_EVERY == 0 else "train"


def _cover(gdf: Any, tile: Any) -> tuple[dict[str, float], set[str]]:
    """Share of the tile covered by each label (its polygons unioned), and the split values involved."""
    hits = gdf.iloc[gdf.sindex.query(tile, predicate="intersects")]
    area = tile.area
    cover = {lab: union_all(grp.geometry.intersection(tile).values).area / area
             for lab, grp in hits.groupby("_label")}
    splits = set(hits["_split"]) if "_split" in hits.columns else set()
    return cover, splits


def read_polygon_tiles(src: PolygonSource) -> ReadReport:
    """Cut labelled tiles from every raster; items carry split 'train'/'val' and their labels."""
    gdf_all = _read_labels(src)
    items: list[Item] = []
    skipped: list[tuple[str, str]] = []
    overlapping = 0
    for raster_no, raster in enumerate(src.rasters):
        path = Path(raster)
        try:
            ds = rasterio.open(path)
        except rasterio.errors.RasterioIOError as exc:
            raise DataError(f"cannot open raster {path} ({exc}); expected a GeoTIFF") from exc
        with ds:
            if ds.crs is None:
                raise DataError(f"{path} has no CRS, so the polygons cannot be placed on it; georeference it "
                                f"first (e.g. gdal_edit.py -a_srs EPSG:32633 {path.name})")
            gdf = gdf_all.to_crs(ds.crs)
            extent = box(*ds.bounds)
            gdf = gdf[gdf.intersects(extent)]
            if gdf.empty:
                skipped.append((path.name, f"no polygon over the raster (raster bounds {tuple(ds.bounds)})"))
                continue
            overlapping += len(gdf)
            side = _tile_side(ds, src)
            stride = block_stride(ds, side)
            rows, cols = axis_offsets(ds.height, side, stride), axis_offsets(ds.width, side, stride)
            block = _block_side(len(rows), len(cols))
            bands = choose_bands(ds.colorinterp, ds.count)
            stretch = stretch_limits(ds, bands)
            for window in grid_windows(ds.width, ds.height, side, stride):
                win = tuple(int(v) for v in window.flatten())
                source = f"{path}:window {win}"  # the full path: feature caches are keyed by it
                cover, splits = _cover(gdf, box(*window_bounds(ds.transform, window)))
                labels = tuple(sorted((lab for lab, c in cover.items() if c >= src.min_cover),
                                      key=lambda lab: -cover[lab]))
                if not labels:
                    skipped.append((source, "unlabelled tile" if not cover else
                                    f"unlabelled tile: best cover {max(cover.values()):.2f} < {src.min_cover}"))
                    continue
                if src.split_field is not None:
                    if len(splits) != 1:
                        skipped.append((source, f"split conflict: polygons of splits {sorted(splits)} overlap"))
                        continue
                    split = splits.pop()
                else:
                    split = _block_split(raster_no, rows.index(win[1]), cols.index(win[0]), block)
                pixels = read_window(ds, bands, stretch, window, src.max_side)
                if pixels is None:
                    skipped.append((source, "tile is all nodata"))
                    continue
                captions = tuple(src.template.format(label=lab) for lab in labels)
                items.append(Item(pixels, captions, split, source, labels))
    _check_result(src, items, skipped, overlapping)
    return ReadReport(items=items, skipped=skipped)


def _check_result(src: PolygonSource, items: list[Item], skipped: list[tuple[str, str]], overlapping: int) -> None:
    """Refuse sources that cannot train: nothing over the rasters, no labelled tile, a split side empty."""
    names = ", ".join(Path(r).name for r in src.rasters)
    if overlapping == 0:
        raise DataError(f"no polygon of {src.labels} lies over {names}; check both are of the same area and "
                        f"that the labels' CRS is right ({'; '.join(r for _, r in skipped[:2])})")
    if not items:
        kinds = Counter(r.split(":")[0] for _, r in skipped)
        raise DataError(f"no tile of {names} is labelled: a label must cover at least {src.min_cover:.0%} of a "
                        f"{src.tile_size_m or src.tile_size}{' m' if src.tile_size_m else ' px'} tile "
                        f"({dict(kinds)}); use smaller tiles or larger polygons")
    per_split = Counter(it.split for it in items)
    for split in SPLITS:
        if not per_split[split]:
            how = (f"no polygon has {src.split_field}={split!r}" if src.split_field else
                   "the rasters are too small for held-out blocks; give a split field (train/val per polygon)")
            raise DataError(f"no {split} tile among {len(items)} labelled tiles: {how}")
    classes = Counter(lab for it in items for lab in it.labels)
    if len(classes) < 2:
        raise DataError(f"every labelled tile of {names} is {next(iter(classes))!r}: training needs tiles of at "
                        f"least two classes; add polygons of other classes over the rasters")
    log.info("%s: %d labelled tiles (%d train, %d val) of %d classes; %d tiles skipped", names, len(items),
             per_split["train"], per_split["val"], len(classes), len(skipped))
