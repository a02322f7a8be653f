"""Issue 28, the allowed roots: a VRT (named .tif) under a root that reads a raster outside it, and GDAL's virtual
paths, are refused by indexing, tile previews and /train, over real HTTP on the real app."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from faults_testutil import live_app, wait_job
from server_testutil import call, noise, write_raster

from server.errors import InvalidRequest, PathNotAllowed
from server.store.paths import check_raster_files, find_rasters

SECRET = 201  # the pixel value of the raster outside the roots


def vrt(sources: list[str], size: int = 128) -> str:
    """A 3-band VRT reading band b of each source (one source for all three when one is given)."""
    bands = "".join(
        f'<VRTRasterBand dataType="Byte" band="{b}"><SimpleSource><SourceFilename relativeToVRT="0">'
        f'{sources[(b - 1) % len(sources)]}</SourceFilename><SourceBand>{b}</SourceBand></SimpleSource>'
        "</VRTRasterBand>" for b in (1, 2, 3))
    return (f'<VRTDataset rasterXSize="{size}" rasterYSize="{size}"><SRS>EPSG:32633</SRS>'
            f"<GeoTransform>500000,10,0,5000000,0,-10</GeoTransform>{bands}</VRTDataset>")


@pytest.fixture()
def roots(tmp_path: Path) -> tuple[Path, Path]:
    """(allowed root holding good.tif, outside folder holding secret.tif)."""
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    write_raster(allowed / "good.tif", noise(3, 128, 128, seed=1))
    write_raster(outside / "secret.tif", np.full((3, 128, 128), SECRET, np.uint8))
    return allowed, outside


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_a_vrt_reaching_outside_is_not_indexed(roots: tuple[Path, Path], tmp_path: Path, model: Any) -> None:
    allowed, outside = roots
    (allowed / "evil.tif").write_text(vrt([str(outside / "secret.tif")]))
    (allowed / "inner.vrt").write_text(vrt([str(outside / "secret.tif")]))
    (allowed / "nested.tif").write_text(vrt([str(allowed / "inner.vrt")]))
    with live_app(tmp_path / "store", model, ALLOWED_ROOTS=[str(allowed)]) as base:
        assert call(base, "POST", "/collections", {"name": "c", "tile_size": 128, "views": 1})[0] == 201
        for name in ("evil.tif", "nested.tif"):
            status, err = call(base, "POST", "/collections/c/rasters", {"paths": [str(allowed / name)]})
            assert status == 403 and "outside the allowed roots" in err["detail"], err
            assert "secret.tif" in err["detail"]
        status, err = call(base, "POST", "/collections/c/rasters", {"paths": [str(allowed)]})  # a folder holding them
        assert status == 403, err
        assert call(base, "GET", "/collections/c")[1]["tiles"] == 0


def test_a_vrt_inside_the_roots_still_indexes(roots: tuple[Path, Path], tmp_path: Path, model: Any) -> None:
    allowed, _ = roots
    (allowed / "mosaic.tif").write_text(vrt([str(allowed / "good.tif")]))
    check_raster_files(allowed / "mosaic.tif", [allowed])
    with live_app(tmp_path / "store", model, ALLOWED_ROOTS=[str(allowed)]) as base:
        assert call(base, "POST", "/collections", {"name": "c", "tile_size": 128, "views": 1})[0] == 201
        status, job = call(base, "POST", "/collections/c/rasters", {"paths": [str(allowed / "mosaic.tif")]})
        assert status == 202, job
        assert wait_job(base, job["job_id"])["state"] == "done"


@pytest.mark.parametrize("path", ["/vsicurl/http://127.0.0.1:9/a.tif", "/vsizip/{root}/a.zip/a.tif",
                                  "vrt://{root}/good.tif?bands=1", "/VSIMEM/x.tif"])
def test_gdal_virtual_paths_are_refused(roots: tuple[Path, Path], tmp_path: Path, model: Any, path: str) -> None:
    allowed, _ = roots
    with live_app(tmp_path / "store", model, ALLOWED_ROOTS=[str(allowed)]) as base:
        assert call(base, "POST", "/collections", {"name": "c", "tile_size": 128})[0] == 201
        status, err = call(base, "POST", "/collections/c/rasters", {"paths": [path.format(root=allowed)]})
        assert status == 400 and "virtual path" in err["detail"], err


def test_previews_refuse_a_raster_swapped_for_an_escaping_vrt(roots: tuple[Path, Path], tmp_path: Path,
                                                             model: Any) -> None:
    allowed, outside = roots
    with live_app(tmp_path / "store", model, ALLOWED_ROOTS=[str(allowed)]) as base:
        assert call(base, "POST", "/collections", {"name": "c", "tile_size": 128, "views": 1})[0] == 201
        status, job = call(base, "POST", "/collections/c/rasters", {"paths": [str(allowed / "good.tif")]})
        assert status == 202 and wait_job(base, job["job_id"])["state"] == "done"
        hit = call(base, "POST", "/search", {"text": "a field", "k": 1})[1]["features"][0]["properties"]
        url = f"{base}/tiles/c/{hit['tile_id']}"
        assert _get(url + ".tif")[0] == 200
        (allowed / "good.tif").write_text(vrt([str(outside / "secret.tif")]))
        for ext in (".tif", ".png"):
            status, data = _get(url + ext)
            assert status == 403 and b"outside the allowed roots" in data, (status, data[:300])


def test_train_refuses_an_escaping_vrt_raster(roots: tuple[Path, Path], tmp_path: Path, model: Any) -> None:
    allowed, outside = roots
    (allowed / "evil.tif").write_text(vrt([str(outside / "secret.tif")]))
    with live_app(tmp_path / "store", model, ALLOWED_ROOTS=[str(allowed)]) as base:
        status, err = call(base, "POST", "/train", {"raster": [str(allowed / "evil.tif")],
                                                    "labels": str(allowed / "l.gpkg"), "label_field": "x"})
        assert status == 403 and "outside the allowed roots" in err["detail"], err


def test_virtual_paths_are_refused_by_the_cli_and_inside_a_vrt(roots: tuple[Path, Path]) -> None:
    allowed, _ = roots
    with pytest.raises(InvalidRequest, match="virtual path"):
        find_rasters(["/vsicurl/https://example.com/a.tif"])
    (allowed / "remote.tif").write_text(vrt(["/vsicurl/http://127.0.0.1:9/a.tif"]))
    with pytest.raises(PathNotAllowed, match="virtual path or URL"):
        check_raster_files(allowed / "remote.tif", [allowed])
