"""tools/mosaic.py: real UCM scenes stitched into a georeferenced GeoTIFF with one labelled polygon per cell."""

from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.windows import Window
from rasterio.windows import bounds as window_bounds
from shapely.geometry import box

from tools.mosaic import MosaicError, build_mosaic, grid_columns, main


def test_mosaic_cells_hold_their_scene_and_polygon(shared_data, tmp_path):
    ucm = shared_data / "captions" / "ucm_captions"
    m = build_mosaic(ucm, "val", tmp_path / "m", classes=["beach", "forest", "runway"], per_class=2)
    assert (m.n_cells, m.rows, m.cols) == (6, 2, 3)
    cells = gpd.read_file(m.gpkg, layer="cells")
    assert list(cells["label"]) == ["beach", "forest", "runway"] * 2  # interleaved round-robin
    with rasterio.open(m.tif) as ds:
        assert ds.crs.to_epsg() == 32615 and ds.res == (0.3, 0.3)
        assert cells.crs == ds.crs
        for row in cells.itertuples():
            win = Window(row.col * 256, row.row * 256, 256, 256)
            assert row.geometry.equals_exact(box(*window_bounds(win, ds.transform)), 1e-6)
            pixels = ds.read(window=win).transpose(1, 2, 0)
            with Image.open(ucm / "images" / row.image) as im:
                src = np.asarray(im.convert("RGB").resize((256, 256)))
            assert np.abs(pixels.astype(int) - src).mean() < 1.0  # deflate is lossless; resize rounding only
            caps = json.loads(row.captions)
            assert len(caps) == 5 and all(isinstance(c, str) and c for c in caps)
        # no empty cell here; the mask is all valid
        assert ds.dataset_mask().min() == 255


def test_grid_is_full_when_the_count_allows():
    assert [grid_columns(n) for n in (210, 1680, 63, 7, 1)] == [15, 42, 9, 3, 1]


def test_mosaic_masks_empty_cells_and_refuses_unknown_classes(shared_data, tmp_path, capsys):
    ucm = shared_data / "captions" / "ucm_captions"
    m = build_mosaic(ucm, "val", tmp_path / "m", limit=5, cols=3)
    assert (m.rows, m.cols) == (2, 3) and len(m.classes) == 5
    with rasterio.open(m.tif) as ds:
        mask = ds.dataset_mask()
    assert mask[:256, :].min() == 255 and mask[256:, 512:].max() == 0  # the 6th cell is no data
    with pytest.raises(MosaicError, match="not in the dataset"):
        build_mosaic(ucm, "val", tmp_path / "x", classes=["volcano"])
    assert main([str(ucm), "--split", "nosuch", "--out", str(tmp_path / "y")]) == 2
    assert "nosuch" in capsys.readouterr().err
    assert not list(tmp_path.glob("x*")) and not list(tmp_path.glob("y*"))
