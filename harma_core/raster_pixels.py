"""Raster pixels as RGB: which bands to show, one percentile stretch per raster, masked reads -> HxWx3 uint8.

Validity is per band, as GDAL's nodata is: a band value is invalid when masked (nodata, dataset mask) or, for
float data, not finite. Invalid values are 0 in the output and never enter that band's percentiles; a read
with no valid value at all converts to None.

Stretch rule (per raster, from a decimated read): 16-bit and float data always get the 2-98 % percentile
stretch per band. 8-bit data gets the same stretch only when its histogram is narrow: the widest band's
p98 - p2 spread is under NARROW_SPREAD_8BIT (64) levels. Measured on the shared GeoTIFFs (widest / narrowest
band spread): Grenada Landsat 8 30/26 (previews averaged 34/255: stretched), NAIP 128/94, Peru Landsat
218/72, Colorado aerial 189/138, Bahamas Landsat 7 249/242 (all left as stored). Palette rasters are
expanded through their colour table (as GDAL's `-expand rgb`) and never stretched.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from harma_core.errors import DataError

STRETCH_PERCENTILES = (2.0, 98.0)
NARROW_SPREAD_8BIT = 64.0  # 8-bit rasters whose widest band spans fewer levels (p2..p98) are stretched
SAMPLE_SIDE = 1024  # long side of the decimated read the percentiles come from

Stretch = tuple[tuple[float, float], ...]  # per output band (low, high), mapped to 0 and 255


def choose_bands(colorinterp: Sequence[ColorInterp], count: int,
                 requested: Sequence[int] | None = None) -> tuple[int, int, int]:
    """1-based bands to show as RGB: the requested ones (1 band is repeated), else red/green/blue by colour
    interpretation, else the first three, else band 1 thrice."""
    if requested:
        requested = tuple(int(b) for b in requested)
        if len(requested) not in (1, 3):
            raise DataError(f"bands={list(requested)} must be 1 or 3 band numbers counted from 1, e.g. [4, 3, 2]")
        bad = [b for b in requested if not 1 <= b <= count]
        if bad:
            raise DataError(f"bands {bad} do not exist; this raster has bands 1..{count}")
        return (requested * 3)[:3]  # type: ignore[return-value]
    ci = list(colorinterp)
    rgb = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    if all(c in ci for c in rgb):
        return (ci.index(rgb[0]) + 1, ci.index(rgb[1]) + 1, ci.index(rgb[2]) + 1)
    if count >= 3:
        return (1, 2, 3)
    return (1, 1, 1)


def invalid_values(arr: np.ma.MaskedArray) -> np.ndarray:
    """(bands, H, W) True where a band's value is masked (nodata) or, for float data, not finite."""
    invalid = np.array(np.ma.getmaskarray(arr), dtype=bool)
    data = np.ma.getdata(arr)
    if np.issubdtype(data.dtype, np.floating):
        invalid |= ~np.isfinite(data)
    return invalid


def percentile_stretch(sample: np.ma.MaskedArray, percentiles: tuple[float, float] = STRETCH_PERCENTILES,
                       fallback: tuple[float, float] = (0.0, 1.0)) -> Stretch | None:
    """Per-band (low, high) at the given percentiles of that band's valid values (fallback for a band with
    none); None when no value of any band is valid."""
    invalid = invalid_values(sample)
    if invalid.all():
        return None
    out = []
    for band, bad in zip(np.ma.getdata(sample), invalid):
        values = band[~bad].astype(np.float64)
        if not values.size:
            out.append((float(fallback[0]), float(fallback[1])))
            continue
        lo, hi = np.percentile(values, percentiles)
        out.append((float(lo), float(hi) if hi > lo else float(lo) + 1.0))  # flat bands must not divide by 0
    return tuple(out)


def palette_colours(src: rasterio.io.DatasetReader, bands: Sequence[int]) -> np.ndarray | None:
    """(N, 3) uint8 lookup table of the colour table when the chosen bands are one palette band, else None."""
    band = bands[0]
    if any(b != band for b in bands) or src.colorinterp[band - 1] != ColorInterp.palette:
        return None
    try:
        cmap = src.colormap(band)
    except ValueError:  # palette interpretation without a table: show the indices as grey
        return None
    lut = np.zeros((max(cmap) + 1, 3), np.uint8)
    for index, rgba in cmap.items():
        lut[index] = rgba[:3]
    return lut


def _expand_palette(indices: np.ma.MaskedArray, lut: np.ndarray, count: int) -> np.ma.MaskedArray:
    """(1, H, W) masked palette indices -> (count, H, W) masked colours (indices beyond the table are black)."""
    idx = np.ma.getdata(indices)[0].astype(np.int64)
    rgb = np.where((idx < len(lut))[..., None], lut[np.clip(idx, 0, len(lut) - 1)], 0).transpose(2, 0, 1)
    mask = np.broadcast_to(np.ma.getmaskarray(indices)[:1], (3, *idx.shape))
    return np.ma.MaskedArray(rgb.astype(np.uint8), mask=mask)[:count]


def _read_bands(src: rasterio.io.DatasetReader, bands: Sequence[int], out_shape: tuple[int, int],
                resampling: Resampling, window: Window | None = None) -> np.ma.MaskedArray:
    """Masked read of bands (repeats allowed; each distinct band is read once), shape (len(bands), H, W).

    A palette band is read with nearest resampling (indices must not be blended) and expanded to its colours.
    """
    lut = palette_colours(src, bands)
    if lut is not None:
        indices = src.read([bands[0]], window=window, out_shape=(1, *out_shape), masked=True,
                           resampling=Resampling.nearest)
        return _expand_palette(indices, lut, len(bands))
    unique = sorted(set(bands))
    data = src.read(unique, window=window, out_shape=(len(unique), *out_shape), masked=True,
                    resampling=resampling)
    return data[[unique.index(b) for b in bands]]


def stretch_limits(src: rasterio.io.DatasetReader, bands: Sequence[int],
                   percentiles: tuple[float, float] = STRETCH_PERCENTILES,
                   sample_side: int = SAMPLE_SIDE) -> Stretch | None:
    """A raster's stretch, computed once from a decimated read: None when pixels are shown as stored (palette,
    and 8-bit data with a wide histogram; see the module docstring), else per-band percentiles.

    Raises DataError when the file cannot be read or, read in full, has no valid pixel. Sparse data the
    decimated read misses entirely falls back to the data type's range.
    """
    scale = min(1.0, sample_side / max(src.width, src.height))
    shape = (max(1, round(src.height * scale)), max(1, round(src.width * scale)))
    try:
        sample = _read_bands(src, bands, shape, Resampling.nearest)
    except RasterioIOError as e:
        raise DataError(f"cannot read pixels of {src.name} ({e}); the file may be truncated or corrupt") from e
    dtype = np.dtype(src.dtypes[bands[0] - 1])
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    type_range = (float(info.min), float(info.max)) if info else (0.0, 1.0)
    stretch = percentile_stretch(sample, percentiles, fallback=type_range)
    if stretch is None and scale == 1.0:
        raise DataError(f"{src.name} has no valid pixels (all are nodata={src.nodata} or masked); "
                        "check its nodata value (gdalinfo FILE) or use another raster")
    if palette_colours(src, bands) is not None:
        return None  # colours from the table are shown as they are
    if dtype == np.uint8:
        narrow = stretch is not None and max(hi - lo for lo, hi in stretch) < NARROW_SPREAD_8BIT
        return stretch if narrow else None
    return stretch or tuple(type_range for _ in bands)  # sparse data the decimated read missed


def to_uint8(arr: np.ma.MaskedArray, stretch: Sequence[Sequence[float]] | None) -> np.ndarray | None:
    """(bands, H, W) masked read -> (H, W, bands) uint8, linearly stretched (rounded) when a stretch is given,
    invalid values 0; None when no value is valid."""
    invalid = invalid_values(arr)
    if invalid.all():
        return None
    data = np.ma.getdata(arr)
    if stretch is None:
        out = data.astype(np.uint8, copy=True)
    else:
        limits = np.asarray(stretch, dtype=np.float64).reshape(-1, 2)
        lo, hi = limits[:, :1, None], limits[:, 1:, None]
        scaled = (data.astype(np.float64) - lo) / (hi - lo) * 255.0
        out = np.clip(np.nan_to_num(scaled, nan=0.0), 0, 255).round().astype(np.uint8)
    out[invalid] = 0
    return np.ascontiguousarray(out.transpose(1, 2, 0))


def read_rgb(src: rasterio.io.DatasetReader, bands: Sequence[int], window: Window, out_shape: tuple[int, int],
             stretch: Sequence[Sequence[float]] | None,
             resampling: Resampling = Resampling.nearest) -> np.ndarray | None:
    """A window of the chosen bands resampled to out_shape (H, W) as HxWx3 uint8; None if it is all invalid."""
    return to_uint8(_read_bands(src, bands, out_shape, resampling, window), stretch)
