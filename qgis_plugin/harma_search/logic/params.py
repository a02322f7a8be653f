"""Parameter dataclasses the dock and the Processing algorithms hand to the server calls."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

from .errors import InputError

MAX_K = 1000
WGS84 = "EPSG:4326"
Bbox = tuple[float, float, float, float]


class Scope(str, Enum):
    """Which part of the collection a search covers."""

    WHOLE = "whole"
    EXTENT = "extent"
    DRAWN = "drawn"
    SELECTION = "selection"


def check_bbox(bbox: Bbox) -> Bbox:
    """Return bbox as floats (left, bottom, right, top) or raise InputError naming the bad value."""
    if len(bbox) != 4:
        raise InputError(f"bbox must have 4 numbers (left, bottom, right, top), got {bbox!r}")
    left, bottom, right, top = (float(v) for v in bbox)
    if not all(math.isfinite(v) for v in (left, bottom, right, top)):
        raise InputError(f"bbox {bbox!r} has a non-finite value; zoom to a finite extent")
    if left >= right or bottom >= top:
        raise InputError(f"bbox {bbox!r} is empty: left must be < right and bottom < top")
    return (left, bottom, right, top)


@dataclass(frozen=True)
class SearchParams:
    """One search: by text or by an example tile, over a collection, optionally within an area."""

    collection: str
    query: str = ""
    tile_id: int | None = None
    k: int = 10
    scope: Scope = Scope.WHOLE
    bbox: Bbox | None = None
    bbox_crs: str = WGS84
    min_score: float | None = None  # on the 0-1 relevance (the server's min_score)
    # WKT (EPSG:4326) of the area; hits not mostly (>= 50 %) inside it are dropped by the plugin too.
    area_wkt: str | None = None
    # The same polygons as GeoJSON text: the server searches inside them, so k hits come back when there are k.
    area_geojson: str | None = None

    def __post_init__(self) -> None:
        if not self.collection.strip():
            raise InputError("No collection chosen: pick one in the collection list or index rasters first")
        has_text = bool(self.query.strip())
        if not has_text and self.tile_id is None:
            raise InputError("Type what to look for in Query (e.g. 'a river next to farmland'), "
                             "or select a result and press Find similar")
        if has_text and self.tile_id is not None:
            raise InputError("Search by text or by an example tile, not both: clear Query to find similar tiles")
        if self.tile_id is not None and (isinstance(self.tile_id, bool) or int(self.tile_id) < 1):
            raise InputError(f"tile id {self.tile_id!r} must be a positive integer from an earlier result")
        if not 1 <= int(self.k) <= MAX_K:
            raise InputError(f"k={self.k} is out of range: use 1 to {MAX_K}")
        if self.scope is not Scope.WHOLE and self.bbox is None:
            raise InputError(f"Scope '{self.scope.value}' needs an area: set the map extent, draw a polygon "
                             "or select polygons")
        if self.bbox is not None:
            object.__setattr__(self, "bbox", check_bbox(self.bbox))
        if self.min_score is not None and not 0.0 <= self.min_score <= 1.0:
            raise InputError(f"min relevance {self.min_score} is out of range: relevance lies in [0, 1]")

    @property
    def label(self) -> str:
        """Short text naming this search (used for the layer name and the query field)."""
        return self.query.strip() if self.query.strip() else f"like tile {self.tile_id}"


@dataclass(frozen=True)
class IndexParams:
    """One indexing request: raster files to add to a collection (created if missing)."""

    collection: str
    paths: tuple[str, ...] = field(default_factory=tuple)
    tile_size: int | None = None
    overlap: int | None = None

    def __post_init__(self) -> None:
        if not self.collection.strip():
            raise InputError("No collection name given: type a name for the collection to index into")
        if not self.paths:
            raise InputError("No rasters to index: tick raster layers or choose a folder with GeoTIFFs")
        if self.tile_size is not None and self.tile_size < 16:
            raise InputError(f"tile size {self.tile_size} px is too small: use at least 16")
        if self.overlap is not None and self.overlap < 0:
            raise InputError(f"overlap {self.overlap} must not be negative")
        object.__setattr__(self, "paths", tuple(self.paths))
