"""Change between two dates (POST /api/v1/change): parameters, the answer's cells as typed rows, class breaks
for the `change` ramp, and the cells laid out as a one-pixel-per-cell grid for a heatmap."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError, ServerResponseError

DIRECTIONS = ("appear", "disappear")
DEFAULT_TILE_M = 300.0
MAX_TILE_M = 100_000.0
TOP_CELLS = 10  # cells of most change outlined and labelled on the map
NODATA = -9999.0  # heatmap pixels with no cell (`change` is a z-score, never this low)

# (name, type) of the change layer's fields; types are QGIS memory-provider type names.
CHANGE_FIELDS: tuple[tuple[str, str], ...] = (
    ("rank", "integer"), ("cell", "string"), ("ix", "integer"), ("iy", "integer"), ("change", "double"),
    ("distance", "double"), ("percentile", "double"), ("pixel_diff", "double"), ("cva", "double"),
    ("cover_before", "double"), ("cover_after", "double"), ("date_before", "string"),
    ("date_before_source", "string"), ("date_after", "string"), ("date_after_source", "string"),
)


def _stem(path: str) -> str:
    return Path(path.replace("\\", "/")).stem


@dataclass(frozen=True)
class ChangeParams:
    """What to compare: the files of each date (several make a mosaic), the cell size, an optional text."""

    before: tuple[str, ...]
    after: tuple[str, ...]
    tile_size_m: float = DEFAULT_TILE_M
    text: str = ""
    direction: str = "appear"

    def __post_init__(self) -> None:
        for name, paths in (("before", self.before), ("after", self.after)):
            if not paths or not all(isinstance(p, str) and p.strip() for p in paths):
                raise InputError(f"Choose the {name} raster (a layer of a local GeoTIFF, or a file)")
        if set(self.before) == set(self.after):
            raise InputError("The before and after rasters are the same: choose two dates of one place")
        if not 0 < float(self.tile_size_m) <= MAX_TILE_M or not math.isfinite(float(self.tile_size_m)):
            raise InputError(f"Tile size {self.tile_size_m} m must be above 0 and at most {MAX_TILE_M:g} m")
        if self.direction not in DIRECTIONS:
            raise InputError(f"Direction {self.direction!r} must be one of {', '.join(DIRECTIONS)}")

    @property
    def label(self) -> str:
        """A short name: the first file of each date, and the text with its direction."""
        what = f" · {self.text.strip()} {self.direction}s" if self.text.strip() else ""
        return f"{_stem(self.before[0])} → {_stem(self.after[0])}{what}"

    def body(self) -> dict[str, Any]:
        """The JSON body of POST /change (every cell; the layer ranks and emphasises the top ones)."""
        body: dict[str, Any] = {"before": list(self.before), "after": list(self.after),
                                "tile_size_m": float(self.tile_size_m)}
        if self.text.strip():
            body.update(text=self.text.strip(), direction=self.direction)
        return body


@dataclass(frozen=True)
class ChangeCell:
    """One cell covered by both dates: its attributes (CHANGE_FIELDS order) and footprint in EPSG:4326."""

    values: tuple[Any, ...]
    wkt: str

    def value(self, name: str) -> Any:
        """The attribute called name."""
        return self.values[[n for n, _ in CHANGE_FIELDS].index(name)]


@dataclass(frozen=True)
class ChangeAnswer:
    """The cells (most change first), the grid they lie on and the run's description."""

    cells: list[ChangeCell]
    grid_crs: str
    cell_size: float
    run: dict[str, Any] = field(default_factory=dict)

    @property
    def dates(self) -> tuple[str, str]:
        """(before, after) dates as the server read them ('?' when unknown)."""
        return (str((self.run.get("before") or {}).get("date") or "?"),
                str((self.run.get("after") or {}).get("date") or "?"))


def polygon_wkt(geometry: dict[str, Any]) -> str:
    """A GeoJSON Polygon or MultiPolygon as WKT."""
    def rings(polygon: list) -> str:
        return "(" + ", ".join("(" + ", ".join(f"{float(x)!r} {float(y)!r}" for x, y, *_ in ring) + ")"
                               for ring in polygon) + ")"

    kind, coords = geometry.get("type"), geometry.get("coordinates")
    if kind == "Polygon":
        return "POLYGON " + rings(coords)
    if kind == "MultiPolygon":
        return "MULTIPOLYGON (" + ", ".join(rings(p) for p in coords) + ")"
    raise ServerResponseError(f"Expected a Polygon or MultiPolygon, got {kind!r}: is the server up to date?")


def _typed(value: Any, kind: str) -> Any:
    if value is None:
        return None
    return int(value) if kind == "integer" else float(value) if kind == "double" else str(value)


def parse_change(body: Any) -> ChangeAnswer:
    """The server's change GeoJSON as typed cells; raises ServerResponseError when it is something else."""
    if not isinstance(body, dict) or not isinstance(body.get("features"), list) or "change_run" not in body:
        raise ServerResponseError("The server's /change answer is not a change FeatureCollection: update the "
                                  "server (it needs POST /api/v1/change)")
    run = body["change_run"] or {}
    grid = run.get("grid") or {}
    cells = []
    try:
        for feature in body["features"]:
            props = feature["properties"]
            values = tuple(_typed(props.get(name), kind) for name, kind in CHANGE_FIELDS)
            cells.append(ChangeCell(values, polygon_wkt(feature["geometry"])))
        return ChangeAnswer(cells, str(grid["crs"]), float(grid["cell"]), run)
    except (KeyError, TypeError, ValueError) as exc:
        raise ServerResponseError(f"A change cell or the grid is malformed ({exc}): is the server up to date?") \
            from exc


def change_breaks(values: list[float], classes: int = 5) -> list[tuple[float, float]]:
    """Equal-interval (low, high) ranges over values for the graduated ramp (one range when all are equal)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return []
    low, high = min(finite), max(finite)
    if high - low < 1e-9:
        return [(low, high)]
    step = (high - low) / classes
    return [(low + i * step, high if i == classes - 1 else low + (i + 1) * step) for i in range(classes)]


@dataclass(frozen=True)
class HeatGrid:
    """The cells as a north-up raster in the grid CRS: one pixel per cell, NODATA where no cell."""

    left: float
    top: float
    cell: float
    width: int
    height: int
    pixels: dict[tuple[int, int], float]  # (row, col) -> change

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the grid CRS."""
        return (self.left, self.top - self.height * self.cell, self.left + self.width * self.cell, self.top)


def heat_grid(answer: ChangeAnswer, column: str = "change") -> HeatGrid:
    """Lay the cells out on their ground-aligned grid: cell (ix, iy) covers [ix*s, (ix+1)*s) x [iy*s, (iy+1)*s)."""
    if not answer.cells:
        raise InputError("No cell is covered by both dates: nothing to draw")
    ixs = [int(c.value("ix")) for c in answer.cells]
    iys = [int(c.value("iy")) for c in answer.cells]
    x0, y1, s = min(ixs), max(iys), answer.cell_size
    pixels = {(y1 - iy, ix - x0): float(c.value(column)) for c, ix, iy in zip(answer.cells, ixs, iys)}
    return HeatGrid(x0 * s, (y1 + 1) * s, s, max(ixs) - x0 + 1, y1 - min(iys) + 1, pixels)
