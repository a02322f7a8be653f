"""Search areas: a bbox or any GeoJSON polygon with its CRS, turned into EPSG:4326, and the tiles inside."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import shapely
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.warp import transform_bounds, transform_geom
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from server.errors import InvalidRequest
from server.store import gpkg

MAX_VERTICES = 100_000
MIN_INSIDE = 0.5  # a search area ranks only tiles with at least this share of their area inside it
_AREA_TYPES = ("Polygon", "MultiPolygon")


def parse_crs(crs: Any, what: str) -> CRS:
    """A CRS from user input, or a 400 naming the field and a fix."""
    try:
        return CRS.from_user_input(crs)
    except (CRSError, TypeError, ValueError) as e:
        raise InvalidRequest(f"{what} {crs!r} is not a CRS I know; use e.g. 'EPSG:4326' or 'EPSG:3857'") from e


def _check_lonlat(xs: list[float], ys: list[float], what: str, crs: CRS) -> None:
    """Degrees beyond the globe are almost always projected metres sent without their CRS: say so."""
    if not crs.is_geographic:
        return
    if any(abs(x) > 360 for x in xs) or any(abs(y) > 90 for y in ys):
        raise InvalidRequest(
            f"{what} has coordinates beyond longitude/latitude range (e.g. x={max(xs, key=abs):g}, "
            f"y={max(ys, key=abs):g}) for {crs.to_string()}; these look like projected coordinates "
            "(metres, e.g. UTM): pass their crs, e.g. \"crs\": \"EPSG:32633\"")


def bbox_lonlat(bbox: tuple[float, float, float, float], crs: str) -> BaseGeometry:
    """A search area in EPSG:4326; a box crossing the antimeridian (left > right in degrees) becomes two."""
    left, bottom, right, top = bbox
    src = parse_crs(crs, "bbox_crs")
    if bottom >= top or (left >= right and not src.is_geographic):
        raise InvalidRequest(f"bbox {list(bbox)} must have left < right and bottom < top")
    _check_lonlat([left, right], [bottom, top], f"bbox {list(bbox)}", src)
    if src.is_geographic and src.to_epsg() == 4326:
        west, south, east, north = left, bottom, right, top
    else:
        west, south, east, north = transform_bounds(src, "EPSG:4326", left, bottom, right, top, densify_pts=21)
    south, north = max(south, -90.0), min(north, 90.0)
    if west > east:
        return unary_union([box(west, south, 180.0, north), box(-180.0, south, east, north)])
    return box(west, south, east, north)


def _coords(geom: dict[str, Any]) -> tuple[list[float], list[float]]:
    """All vertex coordinates of a GeoJSON polygon, each checked to be a finite number."""
    rings = [geom["coordinates"]] if geom["type"] == "Polygon" else geom["coordinates"]
    xs: list[float] = []
    ys: list[float] = []
    try:
        for poly in rings:
            for ring in poly:
                for pt in ring:
                    x, y = pt[0], pt[1]
                    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                               for v in (x, y)):
                        raise InvalidRequest(f"geometry vertex {pt!r} must be two finite numbers [x, y]")
                    xs.append(float(x))
                    ys.append(float(y))
    except (TypeError, IndexError, KeyError) as e:
        raise InvalidRequest("geometry coordinates must be nested lists of [x, y] positions as in GeoJSON") from e
    if len(xs) > MAX_VERTICES:
        raise InvalidRequest(f"geometry has {len(xs)} vertices; simplify it to at most {MAX_VERTICES}")
    return xs, ys


def geometry_lonlat(geom: Any, crs: str = "EPSG:4326") -> BaseGeometry:
    """A GeoJSON Polygon/MultiPolygon (a Feature's geometry also works) in `crs`, as a valid EPSG:4326 area;
    reprojection cuts it at the antimeridian."""
    if isinstance(geom, dict) and geom.get("type") == "Feature":
        geom = geom.get("geometry")
    if not isinstance(geom, dict) or geom.get("type") not in _AREA_TYPES or "coordinates" not in geom:
        raise InvalidRequest("geometry must be a GeoJSON Polygon or MultiPolygon, e.g. {\"type\": \"Polygon\", "
                             "\"coordinates\": [[[x, y], ...]]}, with its CRS in 'geometry_crs'")
    src = parse_crs(crs, "geometry_crs")
    xs, ys = _coords(geom)
    _check_lonlat(xs, ys, "geometry", src)
    if not (src.is_geographic and src.to_epsg() == 4326):
        geom = transform_geom(src, "EPSG:4326", geom, antimeridian_cutting=True)
    try:
        area = shape(geom)
    except (ValueError, TypeError, shapely.errors.GEOSException) as e:
        raise InvalidRequest(f"geometry is not a valid polygon: {e}") from e
    if not area.is_valid:
        area = shapely.make_valid(area)
    area = shapely.intersection(area, box(-180.0, -90.0, 180.0, 90.0))
    if area.is_empty or area.area <= 0:
        raise InvalidRequest("geometry encloses no area (fewer than 3 distinct vertices, or outside the globe)")
    return area


def candidates(col: Any, area: BaseGeometry, min_inside: float = 0.0) -> list[int]:
    """Live tile ids whose footprint intersects the area (min_inside 0) or has at least that share of its
    area inside it: envelope filter in SQL; a tile whose envelope lies inside a rectangular part of the area is
    in, the rest get one vectorised exact test. Shares are of areas in degrees, exact enough for a tile.
    When no tile is that much inside (an area smaller than a tile), the tiles that touch it count."""
    keep: list[np.ndarray] = []
    touching: list[np.ndarray] = []
    for part in getattr(area, "geoms", [area]):
        west, south, east, north = part.bounds
        ids, env, blobs = col.table.footprints_in_lonlat_box(west, south, east, north)
        inside = np.zeros(len(ids), dtype=bool)
        if part.equals(box(west, south, east, north)):
            inside = (env[:, 0] >= west) & (env[:, 1] >= south) & (env[:, 2] <= east) & (env[:, 3] <= north)
        edge = np.flatnonzero(~inside)
        hit = np.zeros(0, dtype=bool)
        if len(edge):
            geoms = gpkg.decode_geometries([blobs[i] for i in edge])
            hit = shapely.intersects(geoms, area)
            touching.append(ids[edge[hit]])
            if min_inside > 0:
                whole = shapely.area(geoms)
                shared = shapely.area(shapely.intersection(geoms, area))
                hit &= shared >= min_inside * np.maximum(whole, 1e-300)
        keep += [ids[inside], ids[edge[hit]]]
    found = np.unique(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)
    if not len(found) and touching:  # a small area inside tiles: the tiles that cover it, not nothing
        found = np.unique(np.concatenate(touching))
    return found.tolist()
