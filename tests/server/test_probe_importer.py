"""Issue 28, the shard importer: tampered real shards (repeated rows, NaN or wrong-length vectors, garbage metadata,
corrupt pages) are refused by `tools/index.py import-shards` with one line and exit 2, before anything is written."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from server_testutil import noise, write_raster
from shards_testutil import index_cli

from server.indexing.shard_run import run_sharded
from server.store.store import Store


@pytest.fixture(scope="module")
def shard(model: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real shard (16 tiles of 64 px, 1 view) written by the local engine."""
    root = tmp_path_factory.mktemp("probe_shards")
    raster = write_raster(root / "scene.tif", noise(3, 256, 256, seed=3))
    out = io.StringIO()
    r = run_sharded(str(root / "store"), "made", [str(raster)], model, {"tile_size": 64, "views": 1},
                    engine="local", shards_dir=str(root / "shards"), batch_size=16, quiet=True, out=out)
    assert r.shards_written == 1, out.getvalue()
    (path,) = sorted((root / "shards").glob("*.parquet"))
    assert pq.read_metadata(path).num_rows == 16
    return path


def _rewrite(src: Path, dst: Path, table: pa.Table) -> Path:
    """Write `table` with the metadata of `src` (a shard), as a tampered copy."""
    meta = pq.read_schema(src).metadata
    pq.write_table(table.replace_schema_metadata(meta), dst)
    return dst


def _with_vectors(src: Path, dst: Path, vectors: np.ndarray) -> Path:
    table = pq.read_table(src)
    dim = vectors.shape[1]
    emb = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1).astype(np.float32)), dim)
    i = table.schema.get_field_index("embedding")
    return _rewrite(src, dst, table.set_column(i, pa.field("embedding", emb.type), emb))


def _vectors(src: Path) -> np.ndarray:
    table = pq.read_table(src)
    return table.column("embedding").combine_chunks().flatten().to_numpy().reshape(table.num_rows, -1).copy()


def _refused(store: Path, name: str, shard: Path, *words: str) -> str:
    """Run import-shards; assert one 'error:' line naming `words`, exit 2, no traceback; return that line."""
    p = index_cli("import-shards", "--store", str(store), name, str(shard), check=False)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr[-2000:]
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def test_repeated_rows_are_refused_not_doubled(shard: Path, tmp_path: Path) -> None:
    table = pq.read_table(shard)
    dup = _rewrite(shard, tmp_path / "dup.parquet", pa.concat_tables([table, table.slice(0, 5)]))
    _refused(tmp_path / "store", "dup", dup, "repeats")
    assert "dup" not in Store(tmp_path / "store").names(), "nothing is written for a refused import"


def test_repeats_across_two_shard_files_are_refused(shard: Path, tmp_path: Path) -> None:
    """The same windows in two parts of one raster would also be imported twice."""
    meta = json.loads(pq.read_schema(shard).metadata[b"harma"])
    table = pq.read_table(shard)
    parts = tmp_path / "parts"
    parts.mkdir()
    for part in (0, 1):
        m = {**meta, "part": part, "parts": 2}
        md = {**pq.read_schema(shard).metadata, b"harma": json.dumps(m).encode()}
        pq.write_table(table.replace_schema_metadata(md), parts / f"p{part}.parquet")
    _refused(tmp_path / "store", "twice", parts, "repeats")
    assert "twice" not in Store(tmp_path / "store").names()


def test_nan_vectors_are_refused_before_a_collection_is_made(shard: Path, tmp_path: Path) -> None:
    vecs = _vectors(shard)
    vecs[3] = np.nan
    bad = _with_vectors(shard, tmp_path / "nan.parquet", vecs)
    line = _refused(tmp_path / "store", "fresh", bad, "NaN", "row 3")
    assert "check the disk" not in line
    assert "fresh" not in Store(tmp_path / "store").names()


def test_nan_vectors_leave_an_existing_collection_as_it_was(shard: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    good = shutil.copy(shard, tmp_path / "good.parquet")
    assert index_cli("import-shards", "--store", str(store), "col", str(good)).returncode == 0
    assert len(Store(store).get("col")) == 16
    vecs = _vectors(shard)
    vecs[0, 0] = np.inf
    other = tmp_path / "other"
    other.mkdir()
    meta = json.loads(pq.read_schema(shard).metadata[b"harma"])
    meta["raster"] = {**meta["raster"], "path": meta["raster"]["path"] + ".copy.tif"}
    bad = _with_vectors(shard, other / "inf.parquet", vecs)
    table = pq.read_table(bad)
    table = table.set_column(1, "raster", pa.array([meta["raster"]["path"]] * table.num_rows))
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata, b"harma": json.dumps(meta).encode()}),
                   bad)
    _refused(store, "col", bad, "NaN or Infinity")
    col = Store(store).get("col")
    assert len(col) == 16 and len(col.rasters()) == 1


def test_wrong_length_vectors_are_refused(shard: Path, tmp_path: Path) -> None:
    vecs = _vectors(shard)
    bad = _with_vectors(shard, tmp_path / "short.parquet", vecs[:, :-1])
    _refused(tmp_path / "store", "short", bad, f"length {vecs.shape[1] - 1}")
    assert "short" not in Store(tmp_path / "store").names()


def test_not_unit_vectors_are_refused(shard: Path, tmp_path: Path) -> None:
    bad = _with_vectors(shard, tmp_path / "big.parquet", _vectors(shard) * 3)
    _refused(tmp_path / "store", "big", bad, "unit length")


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", json.dumps({"format": "harma-shard", "version": 1}).encode()])
def test_garbage_metadata_is_one_line(shard: Path, tmp_path: Path, raw: bytes) -> None:
    table = pq.read_table(shard)
    md = {**table.schema.metadata, b"harma": raw}
    bad = tmp_path / "garbage.parquet"
    pq.write_table(table.replace_schema_metadata(md), bad)
    _refused(tmp_path / "store", "garbage", bad, "garbage.parquet")


def test_bad_metadata_values_are_one_line(shard: Path, tmp_path: Path) -> None:
    meta = json.loads(pq.read_schema(shard).metadata[b"harma"])
    meta["part"], meta["parts"] = "zero", 1
    table = pq.read_table(shard)
    bad = tmp_path / "values.parquet"
    pq.write_table(table.replace_schema_metadata({**table.schema.metadata, b"harma": json.dumps(meta).encode()}), bad)
    _refused(tmp_path / "store", "values", bad, "not a valid shard description")


def test_corrupt_pages_are_one_line(shard: Path, tmp_path: Path) -> None:
    bad = Path(shutil.copy(shard, tmp_path / "corrupt.parquet"))
    data = bytearray(bad.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little") + 8
    rng = np.random.default_rng(0)
    for start in range(4, len(data) - footer - 64, 97):
        data[start:start + 32] = rng.integers(0, 256, 32, dtype=np.uint8).tobytes()
    bad.write_bytes(bytes(data))
    _refused(tmp_path / "store", "corrupt", bad, "corrupt.parquet")
    assert "corrupt" not in Store(tmp_path / "store").names()


def test_a_sound_shard_still_imports_once(shard: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    for _ in range(2):
        p = index_cli("import-shards", "--store", str(store), "ok", str(shard))
        assert p.returncode == 0, p.stderr
    col = Store(store).get("ok")
    assert len(col) == 16 and len(col.table.live_ids()) == 16
