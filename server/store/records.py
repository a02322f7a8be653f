"""What the store keeps about tiling: a collection's tiling parameters, a raster's info and a tile's record."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from affine import Affine
from shapely.geometry.base import BaseGeometry

from harma_core.raster_pixels import STRETCH_PERCENTILES
from harma_core.views import DEFAULT_VIEWS, check_views
from server.errors import InvalidRequest, reject_unknown

MIN_SIDE = 16  # pixels; smaller rasters carry too little to embed meaningfully
MAX_SIDE = 8192  # pixels; a larger tile is a whole scene, not a place, and costs a huge read
MAX_TILE_M = 100_000.0  # metres; beyond this a tile is a region, far from any training scene
AUTO_TILE_M = 300.0  # ground side of an automatic tile: between UCM's ~75 m and RSICD's few-km scenes
AUTO_TILE_PX = (64, 2048)  # automatic tiles are clamped into this many pixels (upsampled <= 3.5x to 224)


@dataclass(frozen=True)
class TilingParams:
    """How a collection cuts rasters into tiles; recorded in its manifest.

    Tile size: `tile_size_m` (metres) if given, else `tile_size` (pixels) if given, else automatic: a tile
    spans `auto_tile_m` metres of ground (the training scenes span ~75 m, UCM, to a few km, RSICD), its side
    clamped into `auto_tile_px` pixels, and every tile is resampled to the model input when it is read. The
    rule is recorded here and each raster's resulting tile and stride in its stored info, so re-adding a
    raster tiles it the same way even if the defaults change.
    `views`: each tile is embedded as the mean over that many of its rotations and mirrorings
    (harma_core.views); a collection recorded without it was embedded with 1 (Collection.params).
    """

    tile_size: int | None = None
    overlap: int = 0
    tile_size_m: float | None = None
    overlap_m: float | None = None
    bands: tuple[int, ...] | None = None
    pixel_coords: bool = False
    percentiles: tuple[float, float] = STRETCH_PERCENTILES
    auto_tile_m: float = AUTO_TILE_M
    auto_tile_px: tuple[int, int] = AUTO_TILE_PX
    views: int = DEFAULT_VIEWS

    def __post_init__(self) -> None:
        lo_px, hi_px = self.auto_tile_px
        if not MIN_SIDE <= lo_px <= hi_px <= MAX_SIDE:
            raise InvalidRequest(f"auto_tile_px={list(self.auto_tile_px)} must be {MIN_SIDE} <= min <= max <= "
                                 f"{MAX_SIDE} pixels")
        if not 0 < self.auto_tile_m <= MAX_TILE_M:
            raise InvalidRequest(f"auto_tile_m={self.auto_tile_m} must be in (0, {MAX_TILE_M:.0f}] metres")
        if self.tile_size is not None and not MIN_SIDE <= self.tile_size <= MAX_SIDE:
            size = "small" if self.tile_size < MIN_SIDE else "large"
            raise InvalidRequest(f"tile_size={self.tile_size} is too {size}; use {MIN_SIDE} to {MAX_SIDE} pixels")
        if self.tile_size is not None and not 0 <= self.overlap < self.tile_size:
            raise InvalidRequest(f"overlap={self.overlap} must be >= 0 and < tile_size={self.tile_size}")
        if self.tile_size is None and self.tile_size_m is None and not 0 <= self.overlap < lo_px:
            raise InvalidRequest(f"overlap={self.overlap} must be >= 0 and < {lo_px} (the smallest automatic tile); "
                                 "give tile_size or tile_size_m for larger overlaps")
        if self.tile_size_m is not None and not 0 < self.tile_size_m <= MAX_TILE_M:  # also refuses NaN
            raise InvalidRequest(f"tile_size_m={self.tile_size_m} must be in (0, {MAX_TILE_M:.0f}] metres")
        if self.overlap_m is not None and not (self.tile_size_m is not None
                                               and 0 <= self.overlap_m < self.tile_size_m):
            raise InvalidRequest(f"overlap_m={self.overlap_m} needs tile_size_m and must be in [0, tile_size_m)")
        if self.bands is not None and (len(self.bands) not in (1, 3) or min(self.bands) < 1):
            raise InvalidRequest(f"bands={self.bands} must be 1 or 3 band numbers counted from 1, e.g. [4, 3, 2]")
        try:
            check_views(self.views)
        except ValueError as e:
            raise InvalidRequest(str(e)) from None
        lo, hi = self.percentiles
        if not 0 <= lo < hi <= 100:
            raise InvalidRequest(f"percentiles={self.percentiles} must satisfy 0 <= low < high <= 100")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        d = asdict(self)
        d["bands"] = list(self.bands) if self.bands else None
        d["percentiles"] = list(self.percentiles)
        d["auto_tile_px"] = list(self.auto_tile_px)
        return d

    @classmethod
    def recorded(cls, d: dict[str, Any]) -> TilingParams:
        """Parameters as stored in a manifest or shard: one written before views embedded tiles with 1 view."""
        return cls.from_dict({"views": 1, **d})

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TilingParams:
        """Build from a dict; unknown keys fail."""
        reject_unknown(d, {f.name for f in fields(cls)}, "tiling parameter")
        d = {k: v for k, v in d.items() if v is not None}
        try:
            if "bands" in d:
                d["bands"] = tuple(_as_int(b, "bands") for b in d["bands"])
            if "percentiles" in d:
                d["percentiles"] = tuple(float(p) for p in d["percentiles"])
            if "auto_tile_px" in d:
                lo, hi = d["auto_tile_px"]
                d["auto_tile_px"] = (_as_int(lo, "auto_tile_px"), _as_int(hi, "auto_tile_px"))
            for key in ("tile_size", "overlap", "views"):
                if key in d:
                    d[key] = _as_int(d[key], key)
            for key in ("tile_size_m", "overlap_m", "auto_tile_m"):
                if key in d:
                    d[key] = float(d[key])
        except (TypeError, ValueError) as e:
            raise InvalidRequest(f"bad tiling parameter ({e}); e.g. tile_size=256, overlap=0, bands=[4, 3, 2]") from e
        if "pixel_coords" in d and not isinstance(d["pixel_coords"], bool):
            raise InvalidRequest(f"pixel_coords={d['pixel_coords']!r} must be true or false")
        return cls(**{k: v for k, v in d.items() if v is not None})


def _as_int(value: Any, key: str) -> int:
    """An integer given as int or integral float; anything else raises ValueError naming the key."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ValueError(f"{key}={value!r} must be a whole number")
    return int(value)


@dataclass(frozen=True)
class RasterInfo:
    """What tiling needs to know about one raster, computed once when it is opened."""

    path: str
    size: int
    mtime_ns: int
    width: int
    height: int
    count: int
    dtype: str
    crs: str | None
    transform: tuple[float, ...]
    nodata: float | None
    bands: tuple[int, int, int]
    stretch: tuple[tuple[float, float], ...] | None
    block: tuple[int, int] | None
    tile: int
    stride: int

    @property
    def affine(self) -> Affine:
        """The pixel-to-CRS transform."""
        return Affine(*self.transform[:6])


@dataclass(frozen=True)
class TileRecord:
    """One tile: where it is, on which grid, and its footprint in EPSG:4326 (None in pixel mode)."""

    raster: str
    window: tuple[int, int, int, int]
    crs: str | None
    bounds: tuple[float, float, float, float]
    footprint: BaseGeometry | None
