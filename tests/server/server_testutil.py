"""Helpers of the server tests: paths of the real GeoTIFFs and generated edge-case rasters."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine

REPO = Path(__file__).resolve().parents[2]
GEOTIFF_DIR = (REPO / ".." / "shared" / "data" / "geotiff").resolve()
GEOTIFFS = sorted(GEOTIFF_DIR.glob("*.tif"))
SMALL = GEOTIFF_DIR / "landsat8_grenada_rgb.tif"  # 438x500, 3-band uint8, EPSG:32620, tiled 32x32
TINY = GEOTIFF_DIR / "aerial_colorado_0p15m_rgb.tif"  # 383x232, 3-band uint8, EPSG:26913
PAN = GEOTIFF_DIR / "spacenet_atlanta_pan_0p5m.tif"  # 900x900, 1-band uint16, nodata 0


def write_raster(path: Path, data: np.ndarray, crs: str | None = "EPSG:32633",
                 transform: Affine | None = None, nodata: float | None = None, **options: object) -> Path:
    """Write a (bands, H, W) array as a GeoTIFF; crs=None leaves it without a CRS; options go to rasterio."""
    count, height, width = data.shape
    profile = {"driver": "GTiff", "width": width, "height": height, "count": count, "dtype": data.dtype.name,
               "transform": transform or Affine(10.0, 0, 500_000.0, 0, -10.0, 5_000_000.0), **options}
    if crs is not None:
        profile["crs"] = crs
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def noise(bands: int, height: int, width: int, dtype: str = "uint8", seed: int = 0) -> np.ndarray:
    """Deterministic random pixels in a dtype's range (never 0, so never nodata=0)."""
    rng = np.random.default_rng(seed)
    high = 255 if dtype == "uint8" else 4000
    return rng.integers(1, high, size=(bands, height, width)).astype(dtype)


def tile_set(col) -> set[tuple[str, tuple[int, int, int, int]]]:
    """(raster, window) of every live tile; also checks that index and table hold the same tiles."""
    ids = col.table.live_ids()
    rows = col.table.rows(ids)
    assert len(col) == len(ids), f"index holds {len(col)} live vectors, table {len(ids)} live rows"
    for i in ids:  # every row has its vector
        col.vector(i)
    labels = sorted(ids)
    if labels:  # the memory-mapped vectors agree with the index they were loaded or saved with
        for shard in col._shards:
            mine = sorted(shard.labels)
            if mine:
                # chroma-hnswlib's get_items gives back v * |v| of the unit vector it stores
                got = np.asarray(shard.index.get_items(mine), dtype=np.float32)
                assert np.allclose(col._gather(mine), got / np.linalg.norm(got, axis=1, keepdims=True), atol=1e-6)
    tiles = [(r["raster"], (r["col_off"], r["row_off"], r["width"], r["height"])) for r in rows.values()]
    assert len(tiles) == len(set(tiles)), "duplicate tiles"
    return set(tiles)


def call(base: str, method: str, path: str, body: Any = None, raw: bytes | None = None,
         timeout: float = 300) -> tuple[int, Any]:
    """(status, JSON) of one real HTTP request."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
