"""harma_core.raster_pixels on the real GeoTIFFs: band choice, per-raster stretch and masked reads to uint8."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.enums import ColorInterp as C
from rasterio.enums import Resampling
from rasterio.windows import Window

from harma_core.errors import DataError
from harma_core.raster_pixels import (
    choose_bands,
    percentile_stretch,
    read_rgb,
    stretch_limits,
    to_uint8,
)

GEOTIFF = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "geotiff"
NAIP = GEOTIFF / "naip_north_dakota_2020_rgbn.tif"  # 4 bands uint8, no colour interpretation
PAN = GEOTIFF / "spacenet_atlanta_pan_0p5m.tif"  # 900x900, 1 band uint16, nodata 0
BAHAMAS = GEOTIFF / "landsat7_bahamas_rgb.tif"  # uint8 RGB, nodata 0 outside the tilted scene


def test_band_choice_rules() -> None:
    assert choose_bands((C.blue, C.green, C.red), 3) == (3, 2, 1)  # colour interpretation wins
    assert choose_bands((C.gray, C.undefined, C.undefined), 3) == (1, 2, 3)
    assert choose_bands((C.gray,), 1) == (1, 1, 1)
    assert choose_bands((C.gray,) * 4, 4, [4, 3, 2]) == (4, 3, 2)
    assert choose_bands((C.gray,) * 4, 4, (2,)) == (2, 2, 2)
    with pytest.raises(DataError, match=r"bands \[0, 5\] do not exist; this raster has bands 1..4"):
        choose_bands((C.gray,) * 4, 4, (0, 5, 1))
    with pytest.raises(DataError, match=r"bands=\[1, 2\] must be 1 or 3"):
        choose_bands((C.gray,) * 4, 4, (1, 2))


def test_naip_shows_bands_1_to_3_unstretched() -> None:
    with rasterio.open(NAIP) as src:
        bands = choose_bands(src.colorinterp, src.count)
        assert bands == (1, 2, 3)  # the first three, not NIR
        assert stretch_limits(src, bands) is None  # uint8 is shown as stored
        win = Window(400, 300, 64, 48)
        rgb = read_rgb(src, bands, win, (48, 64), None)
        raw = src.read(window=win)
    assert rgb is not None and rgb.dtype == np.uint8 and rgb.shape == (48, 64, 3)
    assert np.array_equal(rgb, raw[:3].transpose(1, 2, 0))
    assert not np.array_equal(rgb, raw[1:].transpose(1, 2, 0))


def test_uint16_pan_is_stretched_and_repeated() -> None:
    with rasterio.open(PAN) as src:
        bands = choose_bands(src.colorinterp, src.count)
        assert bands == (1, 1, 1)
        stretch = stretch_limits(src, bands)
        raw = src.read(1, masked=True)
        win = Window(100, 200, 96, 80)
        rgb = read_rgb(src, bands, win, (80, 96), stretch)
    lo, hi = np.percentile(raw.compressed().astype(np.float64), (2, 98))
    assert stretch == ((lo, hi),) * 3  # 900 px fits the sample side: exact full-raster percentiles
    assert rgb is not None and rgb.shape == (80, 96, 3) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])
    part = raw.filled(0)[200:280, 100:196].astype(np.float64)
    expect = np.clip((part - lo) / (hi - lo) * 255.0, 0, 255).round().astype(np.uint8)
    assert np.array_equal(rgb[..., 0], expect)
    assert int(rgb.max()) - int(rgb.min()) > 100


def test_pan_decimated_read_keeps_the_stretch() -> None:
    with rasterio.open(PAN) as src:
        stretch = stretch_limits(src, (1, 1, 1), sample_side=300)  # percentiles from a 300x300 sample
        full = stretch_limits(src, (1, 1, 1))
        rgb = read_rgb(src, (1, 1, 1), Window(0, 0, 900, 900), (224, 224), stretch, Resampling.average)
    assert stretch[0] == pytest.approx(full[0], rel=0.05)
    assert rgb is not None and rgb.shape == (224, 224, 3) and 40 < rgb.mean() < 215


def test_all_masked_window_is_none_and_partly_masked_pixels_keep_valid_bands() -> None:
    with rasterio.open(BAHAMAS) as src:
        corner = Window(0, 0, 32, 32)  # outside the tilted scene: nodata in every band
        assert not src.read_masks(window=corner).any()
        assert read_rgb(src, (1, 2, 3), corner, (32, 32), None) is None
        assert to_uint8(src.read(window=corner, masked=True), ((0.0, 255.0),) * 3) is None
        # (27, 285): red is 0 (= nodata) while green and blue are real values; only red is dropped
        win = Window(280, 20, 16, 16)
        arr = src.read(window=win, masked=True)
        rgb = read_rgb(src, (1, 2, 3), win, (16, 16), None)
    mask = np.ma.getmaskarray(arr)
    assert mask[0, 7, 5] and not mask[1:, 7, 5].any()
    assert rgb is not None
    assert np.array_equal(rgb, arr.filled(0).transpose(1, 2, 0))
    assert rgb[7, 5, 0] == 0 and rgb[7, 5, 1:].all()


def test_float_nan_and_flat_bands(tmp_path: Path) -> None:
    data = np.linspace(0.0, 1.0, 3 * 32 * 32, dtype=np.float32).reshape(3, 32, 32)
    data[:, :, 16:] = np.nan
    data[2] = np.where(np.isnan(data[2]), np.nan, 0.5)  # a flat band must not divide by zero
    path = tmp_path / "float.tif"
    with rasterio.open(path, "w", driver="GTiff", width=32, height=32, count=3, dtype="float32",
                       crs="EPSG:32633", transform=Affine(10.0, 0, 500_000.0, 0, -10.0, 5_000_000.0)) as dst:
        dst.write(data)
    with rasterio.open(path) as src:
        stretch = stretch_limits(src, (1, 2, 3))
        left = read_rgb(src, (1, 2, 3), Window(0, 0, 16, 32), (32, 16), stretch)
        right = read_rgb(src, (1, 2, 3), Window(16, 0, 16, 32), (32, 16), stretch)
    assert stretch is not None and stretch[2] == (0.5, 1.5)
    assert all(np.isfinite(v) for pair in stretch for v in pair) and stretch[0][0] < stretch[0][1]
    assert right is None  # NaN everywhere
    assert left is not None and left[..., 0].max() == 255 and left[..., 0].min() == 0
    assert (left[..., 2] == 0).all()  # 0.5 is the flat band's low end


def test_all_nodata_raster_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.tif"
    with rasterio.open(path, "w", driver="GTiff", width=20, height=20, count=1, dtype="uint16", nodata=0,
                       crs="EPSG:32633", transform=Affine(10.0, 0, 500_000.0, 0, -10.0, 5_000_000.0)) as dst:
        dst.write(np.zeros((1, 20, 20), np.uint16))
    with rasterio.open(path) as src, pytest.raises(DataError, match=r"has no valid pixels .*nodata=0\.0"):
        stretch_limits(src, (1, 1, 1))
    sample = np.ma.masked_equal(np.zeros((3, 4, 4), np.uint16), 0)
    assert percentile_stretch(sample) is None


GRENADA = GEOTIFF / "landsat8_grenada_rgb.tif"  # uint8 RGB with a narrow histogram (p2..p98 about 25..59)


def test_dark_narrow_8bit_raster_gets_the_percentile_stretch() -> None:
    with rasterio.open(GRENADA) as src:
        stretch = stretch_limits(src, (1, 2, 3))
        raw = src.read(masked=True)
        rgb = read_rgb(src, (1, 2, 3), Window(0, 0, src.width, src.height), (src.height, src.width), stretch)
    expect = tuple(tuple(np.percentile(b.compressed().astype(np.float64), (2, 98))) for b in raw)
    assert stretch == expect  # 500 px fits the sample side: exact full-raster percentiles, per band
    assert raw.std() < 10 and rgb.std() > 4 * raw.std()  # contrast: std 8.1 as stored, 46 stretched
    assert rgb.mean() > raw.mean() + 10 and rgb.min() == 0 and rgb.max() == 255


@pytest.mark.parametrize("name", ["naip_north_dakota_2020_rgbn.tif", "landsat_pucallpa_peru_2020.tif",
                                  "aerial_colorado_0p15m_rgb.tif", "landsat7_bahamas_rgb.tif"])
def test_ordinary_8bit_rasters_are_shown_as_stored(name: str) -> None:
    with rasterio.open(GEOTIFF / name) as src:
        bands = choose_bands(src.colorinterp, src.count)
        assert stretch_limits(src, bands) is None
        win = Window(src.width // 2 - 32, src.height // 2 - 32, 64, 64)  # inside Bahamas' tilted scene too
        assert np.array_equal(read_rgb(src, bands, win, (64, 64), None),
                              src.read(list(bands), window=win, masked=True).filled(0).transpose(1, 2, 0))
