"""Generate the awkward rasters the tests feed the tiler, indexer and store: `python bad_rasters.py OUT_DIR`.

Each function writes one small GeoTIFF into a folder and returns its path; the tests call them on tmp dirs.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from server_testutil import noise as _noise
from server_testutil import write_raster as _write

# index -> RGBA of the palette raster: water, forest, sand, roofs
PALETTE = {0: (30, 90, 200, 255), 1: (20, 140, 40, 255), 2: (230, 210, 150, 255), 3: (200, 40, 40, 255)}


def palette(folder: Path, name: str = "palette.tif") -> Path:
    """128x128 single-band uint8 with a colour table: four 64 px blocks of indices 0..3 (raw values look black)."""
    idx = np.zeros((128, 128), np.uint8)
    idx[:64, 64:], idx[64:, :64], idx[64:, 64:] = 1, 2, 3
    path = _write(folder / name, idx[None], photometric="palette")
    with rasterio.open(path, "r+") as dst:
        dst.write_colormap(1, PALETTE)
    return path


def polar(folder: Path, south: bool = False, name: str | None = None) -> Path:
    """96x96 km of 1 km pixels centred on the North (EPSG:3413) or South (EPSG:3031) Pole."""
    crs = "EPSG:3031" if south else "EPSG:3413"
    path = folder / (name or ("antarctic_3031.tif" if south else "arctic_3413.tif"))
    return _write(path, _noise(3, 96, 96, seed=3), crs=crs,
                  transform=Affine(1000.0, 0, -48_000.0, 0, -1000.0, 48_000.0))


def mostly_nodata(folder: Path, side: int = 1024, name: str = "mostly_nodata.tif") -> Path:
    """side x side uint8 RGB, nodata 0 everywhere except a 64 x 128 px strip in the bottom-right corner."""
    data = np.zeros((3, side, side), np.uint8)
    data[:, side - 64:, side - 128:] = _noise(3, 64, 128, seed=5)
    return _write(folder / name, data, nodata=0, tiled=True, blockxsize=256, blockysize=256, compress="deflate")


def all_nodata(folder: Path, name: str = "all_nodata.tif") -> Path:
    """64x64 uint8 RGB where every pixel is nodata."""
    return _write(folder / name, np.zeros((3, 64, 64), np.uint8), nodata=0)


def no_crs(folder: Path, name: str = "no_crs.tif") -> Path:
    """64x64 uint8 RGB without a CRS."""
    return _write(folder / name, _noise(3, 64, 64), crs=None)


def tiny(folder: Path, name: str = "tiny.tif") -> Path:
    """A 1x1 pixel raster."""
    return _write(folder / name, _noise(3, 1, 1))


def uint16(folder: Path, name: str = "uint16.tif") -> Path:
    """64x64 single-band uint16 with nodata 0."""
    return _write(folder / name, _noise(1, 64, 64, "uint16"), nodata=0)


def many_bands(folder: Path, name: str = "twelve_bands.tif") -> Path:
    """64x64 uint16 with 12 bands and no colour interpretation."""
    return _write(folder / name, _noise(12, 64, 64, "uint16"))


def truncated(folder: Path, name: str = "truncated.tif") -> Path:
    """The first 4000 bytes of a valid 256x256 GeoTIFF."""
    good = _write(folder / f"full_{name}", _noise(3, 256, 256))
    path = folder / name
    path.write_bytes(good.read_bytes()[:4000])
    good.unlink()
    return path


KINDS: dict[str, Callable[[Path], Path]] = {
    "palette": palette, "arctic": polar, "antarctic": lambda f: polar(f, south=True),
    "mostly_nodata": mostly_nodata, "all_nodata": all_nodata, "no_crs": no_crs, "tiny": tiny,
    "uint16": uint16, "many_bands": many_bands, "truncated": truncated,
}


def write_all(folder: Path) -> dict[str, Path]:
    """Write every kind into folder; returns kind -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    return {kind: make(folder) for kind, make in KINDS.items()}


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/server/bad_rasters.py OUT_DIR")
    for kind, p in write_all(Path(sys.argv[1])).items():
        print(f"{kind}\t{p}")
