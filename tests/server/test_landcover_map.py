"""Zero-shot maps on a real UCM val mosaic (3 classes x 4 scenes, tile = cell): tools/map.py and POST /api/v1/map
on a live server; the classified GeoTIFF, its colour table, style and legend, the dissolved polygons, accuracy
against the mosaic's labels next to the majority class, and refusals of bad input."""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from maps_testutil import fetch, live_server, ok, tool
from rasterio.io import MemoryFile
from server_testutil import REPO, call
from shapely.geometry import shape

from server.search.landcover import UCM21

UCM = (REPO / ".." / "shared" / "data" / "captions" / "ucm_captions").resolve()
CLASSES = ("beach", "forest", "parkinglot")


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(mosaic folder, store) of UCM val scenes of three classes, indexed one tile per cell."""
    root = tmp_path_factory.mktemp("ucm_map")
    ok(tool("mosaic", str(UCM), "--split", "val", "--classes", *CLASSES, "--per-class", "4",
            "--out", str(root / "m3")))
    ok(tool("index", "--store", str(root / "store"), "m3", str(root / "m3.tif"), "--tile-size", "256",
            "--views", "1", "--quiet"))
    return root, root / "store"


def _accuracy(class_tif: Path, cells: Path, labels: list[str]) -> tuple[float, float, int]:
    """(accuracy over all cells, share of cells of the majority class, unknown cells) of a class map on the
    mosaic's cells (one class pixel per cell)."""
    truth = gpd.read_file(cells)
    with rasterio.open(class_tif) as ds:
        grid = ds.read(1)
    got = [grid[r, c] for r, c in zip(truth["row"], truth["col"])]
    names = {2 + i: name for i, name in enumerate(labels)}
    pred = [names.get(int(v), "unknown") for v in got]
    acc = float(np.mean([p == t for p, t in zip(pred, truth["label"])]))
    majority = truth["label"].value_counts().iloc[0] / len(truth)
    return acc, float(majority), sum(p == "unknown" for p in pred)


def test_ucm_preset_is_the_dataset_classes() -> None:
    assert [label for label, _ in UCM21] == (UCM / "classes.txt").read_text().split()
    assert all(prompt.replace(" ", "") == label for label, prompt in UCM21)


def test_cli_map_beats_the_majority_class_and_writes_a_styled_map(mosaic: tuple[Path, Path], tmp_path: Path) -> None:
    root, store = mosaic
    out, polys = tmp_path / "m3map.tif", tmp_path / "m3map.gpkg"
    classes = ["beach", "forest", "parkinglot=parking lot"]
    printed = ok(tool("map", "--store", str(store), "m3", "--classes", *classes, "--min-relevance", "0",
                      "--out", str(out), "--polygons", str(polys)))
    assert "12 tiles, 3 classes by calibrated relevance" in printed and "0 unknown" in printed
    acc, majority, unknown = _accuracy(out, root / "m3.gpkg", list(CLASSES))
    assert unknown == 0 and acc > majority, (acc, majority)
    with rasterio.open(out) as ds, rasterio.open(root / "m3.tif") as src:
        assert ds.dtypes == ("uint8",) and ds.nodata == 0 and ds.crs == src.crs
        assert (ds.width, ds.height) == (4, 3) and ds.transform.a == pytest.approx(256 * src.transform.a)
        cmap = ds.colormap(1)
        legend = json.loads(ds.tags()["legend"])
        assert [e["label"] for e in legend] == ["unknown", *CLASSES]
        for e in legend:
            assert "#{:02x}{:02x}{:02x}".format(*cmap[e["value"]][:3]) == e["color"]
        grid = ds.read(1)
    assert "parkinglot" in out.with_suffix(".qml").read_text() and 'type="paletted"' in out.with_suffix(".qml").read_text()
    assert json.loads(out.with_suffix(".legend.json").read_text()) == legend
    frame = gpd.read_file(polys, layer="classes")
    cell_area = (256 * 0.3) ** 2
    for _, row in frame.iterrows():  # one dissolved (multi)polygon per class, exactly its cells
        assert row["geometry"].area == pytest.approx(cell_area * int((grid == row["value"]).sum()))
        assert row["tiles"] == int((grid == row["value"]).sum())
    # the default threshold (the calibration's no-match 0.5) can only turn tiles unknown, never change a class
    strict = tmp_path / "strict.tif"
    ok(tool("map", "--store", str(store), "m3", "--classes", *classes, "--out", str(strict)))
    with rasterio.open(strict) as ds:
        kept = ds.read(1)
    assert np.all((kept == grid) | (kept == 1))


def test_live_map_answers_class_polygons_and_files(mosaic: tuple[Path, Path]) -> None:
    root, store = mosaic
    with live_server(store, root) as base:
        status, fc = call(base, "POST", "/map", {"preset": "ucm21", "collections": ["m3"]})
        assert status == 200, fc
        assert fc["type"] == "FeatureCollection" and len(fc["legend"]) == 22
        assert fc["map"]["tiles"] == 12 and fc["map"]["min_relevance"] == 0.5
        assert sum(f["properties"]["tiles"] for f in fc["features"]) == 12
        point = shape(fc["features"][0]["geometry"]).representative_point()
        assert -94 < point.x < -92 and 36 < point.y < 37  # the mosaic's UTM 15N origin, in EPSG:4326
        raster = fc["rasters"][0]
        code, data, _ = fetch(base, raster["url"])
        assert code == 200
        with MemoryFile(data) as mem, mem.open() as ds:
            assert ds.read(1).shape == (3, 4) and len(json.loads(ds.tags()["legend"])) == 22
        code, qml, _ = fetch(base, raster["qml"])
        assert code == 200 and b"tenniscourt" in qml
        for body, field in (({"preset": "ucm99"}, "preset"), ({"classes": ["forest"]}, "classes"),
                            ({"classes": ["a", "b"], "min_relevance": 2}, "min_relevance"),
                            ({"classes": ["a", "unknown"]}, "unknown"), ({"preset": "ucm21", "k": 3}, "k")):
            status, err = call(base, "POST", "/map", body)
            assert status == 400 and field in err["detail"], (body, err)


def test_cli_refuses_bad_input_in_one_line(mosaic: tuple[Path, Path], tmp_path: Path) -> None:
    _, store = mosaic
    for args, word in ((["--preset", "nope"], "preset"), (["--classes", "a"], "classes"),
                       (["--preset", "ucm21", "--min-relevance", "1.5"], "min_relevance")):
        bad = tool("map", "--store", str(store), "m3", *args, "--out", str(tmp_path / "x.tif"))
        assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and word in bad.stderr, bad.stderr
    bad = tool("map", "--store", str(store), "m3", "--preset", "ucm21", "--out", str(tmp_path / "x.png"))
    assert bad.returncode == 2 and ".tif" in bad.stderr
