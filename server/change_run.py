"""Change between two dates: read both scenes on one ground-aligned grid, embed every cell covered by both, score
the pairs (server.search.change) and write the cells (GeoPackage / GeoJSON) and a GeoTIFF heatmap.

A cell is covered by a date when at least `min_cover` (default 0.5) of its pixels are valid in that date's
warped read. Besides the embedding scores each cell carries two pixel baselines over the pixels valid in both
dates (stretched 8-bit RGB): pixel_diff, the mean absolute difference per band, and cva, the mean length of
the per-pixel RGB change vector.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine
from rasterio.windows import Window
from shapely.geometry import box, mapping

from harma_core import embed_images
from harma_core.views import check_views
from server.errors import InvalidRequest, RasterError, reject_unknown
from server.indexing.aligned import (
    AlignedGrid,
    cell_id,
    footprint,
    inspect_scene,
    make_grid,
    opened,
    read_cell,
    read_side,
    scene_footprint,
)
from server.indexing.dates import RasterDate, scene_date
from server.indexing.tiling import footprint_lonlat
from server.search.change import DIRECTIONS, change_scores

MAX_CELLS = 50_000  # cells of one run; more is a region at too fine a grid
BATCH = 32


@dataclass(frozen=True)
class ChangeRequest:
    """What to compare and how: the files of each date, the grid, an optional text query and direction."""

    before: tuple[str, ...]
    after: tuple[str, ...]
    tile_size: int | None = None
    tile_size_m: float | None = None
    crs: str | None = None
    text: str | None = None
    direction: str = "appear"
    before_date: str | None = None
    after_date: str | None = None
    min_cover: float = 0.5
    views: int = 1
    k: int | None = None

    def __post_init__(self) -> None:
        if self.tile_size is not None and self.tile_size_m is not None:
            raise InvalidRequest("give tile_size (pixels) or tile_size_m (metres), not both")
        if self.tile_size is not None and not 16 <= self.tile_size <= 8192:
            raise InvalidRequest(f"tile_size={self.tile_size} must be 16 to 8192 pixels")
        if self.tile_size_m is not None and not 0 < self.tile_size_m <= 100_000:
            raise InvalidRequest(f"tile_size_m={self.tile_size_m} must be in (0, 100000] metres")
        if self.direction not in DIRECTIONS:
            raise InvalidRequest(f"direction={self.direction!r} must be one of {list(DIRECTIONS)}")
        if self.text is not None and not self.text.strip():
            raise InvalidRequest("text is empty; give what to look for, e.g. \"buildings\", or leave it out")
        if not 0 < self.min_cover <= 1:
            raise InvalidRequest(f"min_cover={self.min_cover} must be in (0, 1]")
        if self.k is not None and self.k < 1:
            raise InvalidRequest(f"k={self.k} must be at least 1")
        try:
            check_views(self.views)
        except ValueError as e:
            raise InvalidRequest(str(e)) from None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChangeRequest:
        """Build from JSON-like values; unknown keys and wrong types fail with InvalidRequest."""
        reject_unknown(d, {f.name for f in fields(cls)}, "change parameter")
        d = {k: v for k, v in d.items() if v is not None}
        try:
            for key in ("before", "after"):
                v = d.get(key)
                d[key] = tuple([v] if isinstance(v, str) else v or ())
                if not d[key] or not all(isinstance(p, str) for p in d[key]):
                    raise InvalidRequest(f"{key} must be a raster path or a list of them")
            for key in ("tile_size", "views", "k"):
                if key in d:
                    if isinstance(d[key], bool) or int(d[key]) != d[key]:
                        raise ValueError(f"{key}={d[key]!r} is not a whole number")
                    d[key] = int(d[key])
            for key in ("tile_size_m", "min_cover"):
                if key in d:
                    d[key] = float(d[key])
        except (TypeError, ValueError) as e:
            raise InvalidRequest(f"bad change parameter ({e}); e.g. {{\"before\": \"/data/a.tif\", "
                                 "\"after\": \"/data/b.tif\", \"tile_size_m\": 300}") from e
        return cls(**d)


@dataclass
class ChangeResult:
    """The grid, both dates and one row per cell covered by both (scores as arrays aligned with `cells`)."""

    grid: AlignedGrid
    before_date: RasterDate
    after_date: RasterDate
    request: ChangeRequest
    cells: list[tuple[int, int]] = field(default_factory=list)
    columns: dict[str, np.ndarray] = field(default_factory=dict)

    def order(self) -> np.ndarray:
        """Cell indices from most to least change (ties by cell id, so the order is stable)."""
        return np.lexsort((np.arange(len(self.cells)), -self.columns["change"]))


def _pixel_baselines(a: np.ndarray, va: np.ndarray, b: np.ndarray, vb: np.ndarray) -> tuple[float, float]:
    """(mean absolute band difference, mean change-vector length) over the pixels valid in both reads."""
    both = va & vb
    if not both.any():
        return 0.0, 0.0
    d = b[both].astype(np.float64) - a[both].astype(np.float64)
    return float(np.abs(d).mean()), float(np.linalg.norm(d, axis=1).mean())


def run_change(model: Any, req: ChangeRequest, embed_text: Callable[[str], np.ndarray] | None = None
               ) -> ChangeResult:
    """Compare two scenes cell by cell; raises RasterError when they share no covered cell."""
    before, after = inspect_scene(req.before), inspect_scene(req.after)
    grid = make_grid(before[0], tile_size=req.tile_size, tile_size_m=req.tile_size_m, crs=req.crs)
    overlap = scene_footprint(before, grid.crs).intersection(scene_footprint(after, grid.crs))
    if overlap.area <= 0:
        raise RasterError(f"{req.before[0]} and {req.after[0]} do not overlap on the ground; give two rasters "
                          "of the same place")
    cells = grid.cells_over(overlap)
    if len(cells) > MAX_CELLS:
        raise InvalidRequest(f"{len(cells)} cells of {grid.cell:g} units is more than {MAX_CELLS}; give a larger "
                             "tile size")
    side = read_side(grid, [before, after], int(getattr(model, "image_size", 224)))
    outlines = ([footprint(r, grid.crs) for r in before], [footprint(r, grid.crs) for r in after])
    result = ChangeResult(grid, scene_date(list(req.before), req.before_date),
                          scene_date(list(req.after), req.after_date), req)
    vecs: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
    stats: dict[str, list[float]] = {"cover_before": [], "cover_after": [], "pixel_diff": [], "cva": []}
    with opened(before) as ds_b, opened(after) as ds_a:
        for start in range(0, len(cells), BATCH):
            pix_b, pix_a = [], []
            for ix, iy in cells[start:start + BATCH]:
                b, vb = read_cell(ds_b, before, outlines[0], grid, ix, iy, side)
                a, va = read_cell(ds_a, after, outlines[1], grid, ix, iy, side)
                if vb.mean() < req.min_cover or va.mean() < req.min_cover:
                    continue
                result.cells.append((ix, iy))
                pix_b.append(b)
                pix_a.append(a)
                diff, cva = _pixel_baselines(b, vb, a, va)
                for key, value in zip(stats, (vb.mean(), va.mean(), diff, cva)):
                    stats[key].append(float(value))
            if pix_b:
                vecs[0].append(embed_images(model, pix_b, batch_size=BATCH, views=req.views))
                vecs[1].append(embed_images(model, pix_a, batch_size=BATCH, views=req.views))
    if not result.cells:
        raise RasterError(f"no cell is at least {req.min_cover:.0%} covered by both dates; the rasters overlap "
                          "too little (or only in nodata) for this tile size: give a smaller one")
    query = None
    if req.text:
        query = embed_text(req.text) if embed_text else _plain_text(model, req.text)
    scores = change_scores(np.concatenate(vecs[0]), np.concatenate(vecs[1]), query, req.direction)
    result.columns = {**scores, **{k: np.asarray(v) for k, v in stats.items()}}
    return result


def _plain_text(model: Any, text: str) -> np.ndarray:
    """The unit vector of a text as typed."""
    from harma_core import embed_texts

    return embed_texts(model, [text])[0]


def _cell_square(grid: AlignedGrid, ix: int, iy: int) -> Any:
    return box(*grid.bounds(ix, iy))


def _lonlat(grid: AlignedGrid, ix: int, iy: int) -> Any:
    """The cell's footprint in EPSG:4326 (edges densified)."""
    left, bottom, right, top = grid.bounds(ix, iy)
    transform = Affine(right - left, 0.0, left, 0.0, bottom - top, top)
    return footprint_lonlat(grid.crs, transform, Window(0, 0, 1, 1))


def _properties(result: ChangeResult, i: int, rank: int) -> dict[str, Any]:
    ix, iy = result.cells[i]
    props: dict[str, Any] = {"rank": rank, "cell": cell_id(ix, iy), "ix": ix, "iy": iy}
    props.update({k: round(float(v[i]), 6) for k, v in result.columns.items()})
    props.update(date_before=result.before_date.value, date_before_source=result.before_date.source,
                 date_after=result.after_date.value, date_after_source=result.after_date.source)
    return props


def describe(result: ChangeResult) -> dict[str, Any]:
    """The run's grid, dates, query and definitions (recorded with the cells)."""
    req = result.request
    return {"grid": result.grid.to_dict(), "cells": len(result.cells),
            "before": {"files": list(req.before), "date": result.before_date.value,
                       "date_source": result.before_date.source},
            "after": {"files": list(req.after), "date": result.after_date.value,
                      "date_source": result.after_date.source},
            "text": req.text, "direction": req.direction if req.text else None, "min_cover": req.min_cover,
            "views": req.views,
            "change": ("robust z-score over this area's cells of " +
                       ("the query cosine's rise (after - before)" if req.text and req.direction == "appear"
                        else "the query cosine's fall (before - after)" if req.text
                        else "1 - cos(before, after)") + "; higher = more change")}


def to_geojson(result: ChangeResult, k: int | None = None) -> dict[str, Any]:
    """The cells as a GeoJSON FeatureCollection in EPSG:4326, most change first (the top k when given)."""
    order = result.order()[:k] if k else result.order()
    features = [{"type": "Feature", "id": cell_id(*result.cells[i]),
                 "geometry": mapping(_lonlat(result.grid, *result.cells[i])),
                 "properties": _properties(result, int(i), rank)} for rank, i in enumerate(order, 1)]
    return {"type": "FeatureCollection", "features": features, "change_run": describe(result)}


def write_cells(result: ChangeResult, path: str) -> None:
    """Every cell to .geojson (EPSG:4326, run description as a foreign member) or .gpkg (layer 'cells' as
    exact squares in the grid CRS, and layer 'run' with the overlap's hull and the description)."""
    suffix = Path(path).suffix.lower()
    if suffix in (".geojson", ".json"):
        Path(path).write_text(json.dumps(to_geojson(result), allow_nan=False), encoding="utf-8")
        return
    if suffix != ".gpkg":
        raise InvalidRequest(f"cannot write {path}: use a .gpkg or .geojson file name")
    from server.cli import geopandas

    gpd = geopandas()

    order = result.order()
    rows = [_properties(result, int(i), rank) for rank, i in enumerate(order, 1)]
    squares = [_cell_square(result.grid, *result.cells[i]) for i in order]
    gpd.GeoDataFrame(rows, geometry=squares, crs=result.grid.crs).to_file(path, layer="cells", driver="GPKG")
    run = {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in describe(result).items()}
    hull = gpd.GeoSeries(squares, crs=result.grid.crs).union_all().convex_hull
    gpd.GeoDataFrame([run], geometry=[hull], crs=result.grid.crs).to_file(path, layer="run", driver="GPKG")


def write_heatmap(result: ChangeResult, path: str, column: str = "change") -> None:
    """A float32 GeoTIFF in the grid CRS, one pixel per cell, holding `column` (NaN where no cell)."""
    import rasterio

    if column not in result.columns:
        raise InvalidRequest(f"no column {column!r}; one of {sorted(result.columns)}")
    ixs = [c[0] for c in result.cells]
    iys = [c[1] for c in result.cells]
    x0, y1 = min(ixs), max(iys)
    width, height = max(ixs) - x0 + 1, y1 - min(iys) + 1
    data = np.full((height, width), np.nan, dtype=np.float32)
    for (ix, iy), v in zip(result.cells, result.columns[column]):
        data[y1 - iy, ix - x0] = v
    s = result.grid.cell
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 1, "dtype": "float32",
               "crs": result.grid.crs, "transform": Affine(s, 0.0, x0 * s, 0.0, -s, (y1 + 1) * s),
               "nodata": math.nan}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
        dst.set_band_description(1, column)
        dst.update_tags(**{k: json.dumps(v) for k, v in describe(result).items()})


def format_summary(result: ChangeResult, out: str, heatmap: str | None = None, top: int = 5) -> str:
    """A few lines for the terminal: cells, grid, dates, the most changed cells and the files written."""
    run = describe(result)
    lines = [f"{run['cells']} cells of {result.grid.cell:g} units in {result.grid.crs} covered by both dates "
             f"(before {run['before']['date'] or '?'} [{run['before']['date_source']}], after "
             f"{run['after']['date'] or '?'} [{run['after']['date_source']}])", f"change = {run['change']}"]
    for i in result.order()[:top]:
        lines.append(f"  cell {cell_id(*result.cells[i])}: change {result.columns['change'][i]:.2f}, "
                     f"distance {result.columns['distance'][i]:.3f}")
    lines.append(f"wrote {out}" + (f" and {heatmap}" if heatmap else ""))
    return "\n".join(lines)
