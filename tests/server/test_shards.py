"""GeoParquet shards from the local engine (--shards): same collection as the plain local engine, readable by
independent readers, imported idempotently and resumably, foreign shards refused."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyarrow.parquet as pq
import pytest
import shapely
from shards_testutil import assert_same_collection, index_cli, tiles_of

from server.cli import run_index
from server.indexing.shard_import import find_shards, import_shards
from server.indexing.shard_run import run_sharded
from server.store.store import Store

RASTERS = ("aerial_colorado_0p15m_rgb.tif", "landsat8_grenada_rgb.tif", "spacenet_atlanta_pan_0p5m.tif")  # path order


@pytest.fixture(scope="module")
def built(model: Any, shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, Path]:
    """One store: 'loc' from the plain local engine, 'sh' from the local engine through shards."""
    root = tmp_path_factory.mktemp("shards")
    paths = [str(shared_data / "geotiff" / r) for r in RASTERS]
    run_index(str(root), "loc", paths, model, {}, batch_size=16, quiet=True, out=io.StringIO())
    out = io.StringIO()
    r = run_sharded(str(root), "sh", paths, model, {}, engine="local", shards_dir=str(root / "shards"),
                    batch_size=16, quiet=True, out=out)
    assert r.shards_written == 3 and r.imported and r.imported.rasters == 3, out.getvalue()
    assert "tiles/s" in out.getvalue().splitlines()[-1]
    return Store(root), root / "shards"


def test_local_shards_build_the_same_collection(built: tuple[Store, Path], model: Any) -> None:
    store, _ = built
    assert len(store.get("sh")) == len(store.get("loc")) > 50
    assert_same_collection(store, "loc", "sh", model)


def test_shards_are_geoparquet_1_1(built: tuple[Store, Path], model: Any) -> None:
    store, shard_dir = built
    path = next(shard_dir.glob("landsat8*.parquet"))
    schema = pq.read_schema(path)
    geo = json.loads(schema.metadata[b"geo"])
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
    col = geo["columns"]["geometry"]
    assert col["encoding"] == "WKB" and col["crs"]["id"] == {"authority": "EPSG", "code": 4326}
    assert col["covering"] == {"bbox": {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}}
    assert set(col["geometry_types"]) <= {"Polygon", "MultiPolygon"}
    harma = json.loads(schema.metadata[b"harma"])
    assert harma["model"]["identity"] == model.identity and harma["tiling"] == store.get("sh").params.to_dict()
    emb = schema.field("embedding").type
    assert emb.list_size == model.dim and str(emb.value_type) == "float"

    table = pq.read_table(path)  # reader 1: pyarrow
    assert table.num_rows == len(set(table.column("tile_id").to_pylist())) > 0
    vecs = table.column("embedding").combine_chunks().flatten().to_numpy().reshape(table.num_rows, -1)
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)
    xmin, ymin, xmax, ymax = col["bbox"]
    bbox = table.column("bbox").to_pylist()
    assert min(b["xmin"] for b in bbox) == xmin and max(b["ymax"] for b in bbox) == ymax

    gdf = gpd.read_parquet(path)  # reader 2: geopandas interprets the geo metadata
    assert gdf.crs.to_epsg() == 4326 and len(gdf) == table.num_rows
    ours = {(t[0], t[1]): t[2] for t in tiles_of(store, "sh").values()}
    for _, row in gdf.iterrows():
        w = row["window"]
        geom = ours[(row["raster"], (w["col_off"], w["row_off"], w["width"], w["height"]))]
        assert np.array_equal(shapely.get_coordinates(row.geometry), shapely.get_coordinates(geom))  # the GPKG's is Multi

    import fastparquet  # reader 3: an independent Parquet implementation (no Arrow)

    pf = fastparquet.ParquetFile(str(path))
    df = pf.to_pandas(columns=["tile_id", "geometry"])
    assert df["tile_id"].tolist() == table.column("tile_id").to_pylist()
    assert shapely.from_wkb(df["geometry"].iloc[0]).equals(gdf.geometry.iloc[0])
    assert json.loads(pf.key_value_metadata["geo"])["version"] == "1.1.0"


def _gdal_has_parquet() -> bool:
    if not shutil.which("ogrinfo"):
        return False
    p = subprocess.run(["ogrinfo", "--formats"], capture_output=True, text=True)
    return "Parquet" in p.stdout


@pytest.mark.skipif(not _gdal_has_parquet(), reason="this GDAL (ogrinfo) is built without the Parquet driver; "
                    "Debian 12's gdal-bin 3.6 has none: use GDAL >= 3.8 built with Arrow")
def test_shards_open_in_ogrinfo(built: tuple[Store, Path]) -> None:
    _, shard_dir = built
    path = next(shard_dir.glob("landsat8*.parquet"))
    p = subprocess.run(["ogrinfo", "-so", "-al", str(path)], capture_output=True, text=True, check=True)
    assert "Geometry: Polygon" in p.stdout or "Multi Polygon" in p.stdout, p.stdout
    assert "WGS 84" in p.stdout and "Feature Count: " in p.stdout


def test_import_is_idempotent_and_resumable(built: tuple[Store, Path], model: Any) -> None:
    store, shard_dir = built
    shards = find_shards([shard_dir])
    first = [s for s in shards if s.name.startswith("landsat8")]
    r1 = import_shards(store, "imp", first)  # an import stopped after the first raster
    assert (r1.rasters, r1.unchanged) == (1, 0)
    r2 = import_shards(store, "imp", shards)  # resumed: only the other two are added
    assert (r2.rasters, r2.unchanged, r2.tiles) == (2, 1, len(store.get("loc")) - r1.tiles)
    r3 = import_shards(store, "imp", shards)  # again: nothing to do
    assert (r3.rasters, r3.unchanged, r3.tiles) == (0, 3, 0)
    assert sorted(t[:2] for t in tiles_of(store, "imp").values()) == sorted(t[:2] for t in tiles_of(store, "loc").values())


def _rewrite(src: Path, dst: Path, **changes: Any) -> None:
    """Copy a shard with some of its harma metadata changed (as a shard from another run would be)."""
    table = pq.read_table(src)
    md = dict(table.schema.metadata)
    harma = json.loads(md[b"harma"])
    for key, value in changes.items():
        harma[key] = {**harma[key], **value}
    md[b"harma"] = json.dumps(harma).encode()
    pq.write_table(table.replace_schema_metadata(md), dst)


def test_shard_of_another_model_or_tiling_is_refused(built: tuple[Store, Path], tmp_path: Path) -> None:
    store, shard_dir = built
    src = next(shard_dir.glob("spacenet*.parquet"))
    before = len(store.get("sh"))
    other = tmp_path / "other"
    other.mkdir()
    _rewrite(src, other / "m.parquet", model={"identity": "open_clip:ViT-B-32:w=0000"}, raster={"path": "/x.tif"})
    p = index_cli("import-shards", "--store", str(store.root), "sh", str(other / "m.parquet"), check=False)
    assert p.returncode == 2 and "open_clip:ViT-B-32:w=0000" in p.stderr and "was made with model" in p.stderr
    _rewrite(src, other / "t.parquet", tiling={"overlap": 8}, raster={"path": "/y.tif"})
    p = index_cli("import-shards", "--store", str(store.root), "sh", str(other / "t.parquet"), check=False)
    assert p.returncode == 2 and "was cut with tiling" in p.stderr, p.stderr
    assert len(Store(store.root).get("sh")) == before  # nothing was added


def test_import_shards_cli_builds_a_new_collection(built: tuple[Store, Path], model: Any) -> None:
    store, shard_dir = built
    p = index_cli("import-shards", "--store", str(store.root), "cli", str(shard_dir))
    assert "3 rasters" in p.stdout
    fresh = Store(store.root)
    assert fresh.get("cli").identity == model.identity
    assert_same_collection(fresh, "loc", "cli", model)
