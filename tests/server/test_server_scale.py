"""Automatic, ground-sized tiles through the real CLI path: the rule in the manifest, the size per raster."""

from __future__ import annotations

import io

import pytest
from server_testutil import PAN, TINY

from server.cli import run_index
from server.errors import Conflict
from server.store.store import Store


def test_auto_tiling_is_recorded_and_re_adding_is_a_no_op(tmp_path, model):
    store = tmp_path / "store"
    out = io.StringIO()
    report = run_index(str(store), "auto", [str(PAN), str(TINY)], model, {}, quiet=True, out=out)
    # 0.5 m pan: 300 m = 600 px, 2 x 2 tiles; 0.15 m aerial (57 x 35 m): one tile of the whole raster
    assert report.rasters == 2 and report.tiles == 4 + 1, out.getvalue()
    col = Store(store).get("auto")
    tiling = col.manifest["tiling"]
    assert tiling["tile_size"] is None and tiling["tile_size_m"] is None
    assert tiling["auto_tile_m"] == 300.0 and tiling["auto_tile_px"] == [64, 2048]
    assert col.table.raster(str(PAN)).info["tile"] == 600
    assert col.table.raster(str(TINY)).info["tile"] == 2002
    assert {w[2:] for w in col.table.windows_of(str(PAN))} == {(600, 600)}
    assert col.table.windows_of(str(TINY)) == {(0, 0, 383, 232)}
    again = run_index(str(store), "auto", [str(PAN), str(TINY)], model, {}, quiet=True, out=io.StringIO())
    assert again.unchanged == 2 and again.tiles == 0
    with pytest.raises(Conflict, match="exists with tiling"):
        run_index(str(store), "auto", [str(PAN)], model, {"tile_size": 256}, quiet=True, out=io.StringIO())
    explicit = run_index(str(store), "fixed", [str(PAN)], model, {"tile_size": 256}, quiet=True, out=io.StringIO())
    assert explicit.tiles == 16 and Store(store).get("fixed").manifest["tiling"]["tile_size"] == 256
