"""Sharded collections: several hnswlib shards per collection answer exactly as one index does."""

from __future__ import annotations

import json

import numpy as np
import pytest
from faults_testutil import live_app
from server_testutil import SMALL, TINY, call, tile_set

from server.indexing.pipeline import index_rasters
from server.store.records import TilingParams
from server.store.store import Store

SHARD = 5  # 22 tiles of the two rasters: shards of 5, 5, 5, 5, 2


@pytest.fixture(scope="module")
def sharded(model, tmp_path_factory):
    """The `indexed` store's rasters again, in a collection whose index is split every 5 tiles."""
    root = tmp_path_factory.mktemp("sharded")
    col = Store(root).create("split", model, TilingParams(tile_size=128), shard_tiles=SHARD)
    report = index_rasters(col, model, [str(SMALL), str(TINY)], batch_size=8)
    assert report.tiles == 22
    return root


def _by_window(col) -> dict[tuple[str, tuple[int, ...]], int]:
    rows = col.table.rows(col.ids())
    return {(r["raster"], (r["col_off"], r["row_off"], r["width"], r["height"])): i for i, r in rows.items()}


def test_shards_on_disk_and_the_same_tiles_and_vectors_as_one_index(sharded, indexed):
    names = sorted(p.name for p in (sharded / "split").glob("index*.bin"))
    assert names == ["index-001.bin", "index-002.bin", "index-003.bin", "index-004.bin", "index.bin"]
    manifest = json.loads((sharded / "split" / "manifest.json").read_text())
    assert manifest["index"]["shard_tiles"] == SHARD
    split, one = Store(sharded).get("split"), Store(indexed).get("base")
    assert split.shard_count == 5 and one.shard_count == 1
    assert [len(s.labels) for s in split._shards] == [5, 5, 5, 5, 2]
    assert tile_set(split) == tile_set(one)
    a, b = _by_window(split), _by_window(one)
    assert np.allclose(split.vectors([a[w] for w in a]), one.vectors([b[w] for w in a]), atol=1e-6)
    assert split.summary()["index_shards"] == 5 and split.summary()["tiles"] == 22


def test_merged_top_k_equals_one_index_for_text_example_and_area(sharded, indexed, model):
    from harma_core import embed_texts

    split, one = Store(sharded).get("split"), Store(indexed).get("base")
    a, b = _by_window(split), _by_window(one)
    to_window = {i: w for w, i in a.items()}
    queries = list(embed_texts(model, ["a river", "houses and roads", "a green field"]))
    queries += [split.vector(a[w]) for w in list(a)[:4]]  # by example, across shards
    for q in queries:
        got = [to_window[i] for i, _ in split.query(q, k=10)]
        expect = [w for w in (dict((i, w) for w, i in b.items())[i] for i, _ in one.query(q, k=10))]
        assert got == expect
    for q in queries[:3]:  # an area: candidates spread over every shard, exact path
        area = [a[w] for w in a if w[0] == str(SMALL)]
        got = [to_window[i] for i, _ in split.query(q, k=4, candidates=area)]
        expect_ids = [b[w] for w in a if w[0] == str(SMALL)]
        want = [dict((i, w) for w, i in b.items())[i] for i, _ in one.query(q, k=4, candidates=expect_ids)]
        assert got == want and len(got) == 4
    for shard in split._shards:  # the graph path of every shard, with a filter
        keep = sorted(shard.labels)[:2]
        found = split._merge([split._knn(s, queries[0].reshape(1, -1), 10, set(keep).__contains__)
                              for s in split._shards], 10)
        assert sorted(i for i, _ in found) == keep


def test_over_http_search_spans_shards(sharded, model):
    with live_app(sharded, model) as base:
        status, fc = call(base, "POST", "/search", {"text": "a river", "k": 12, "dedupe": False})
        assert status == 200, fc
        ids = [f["properties"]["tile_id"] for f in fc["features"]]
        assert len(ids) == 12 == len(set(ids))
        col = Store(sharded).get("split")
        owners = {next(n for n, s in enumerate(col._shards) if i in s.labels) for i in ids}
        assert len(owners) >= 3  # the answer really merges several shards
        scores = [f["properties"]["score"] for f in fc["features"]]
        assert scores == sorted(scores, reverse=True)
        status, fc = call(base, "POST", "/search", {"tile_id": ids[-1], "collection": "split", "k": 3})
        assert status == 200 and fc["features"][0]["properties"]["tile_id"] == ids[-1], fc


def test_removal_append_and_a_lost_shard(sharded, tmp_path, model):
    import shutil

    root = tmp_path / "store"
    shutil.copytree(sharded, root)
    col = Store(root).get("split")
    with col.writing(model.identity):
        removed = col.remove_raster(str(TINY))
    assert removed > 0 and len(col) == 22 - removed
    again = Store(root).get("split")
    assert len(again) == 22 - removed and tile_set(again) == tile_set(col)
    assert not any(w[0] == str(TINY) for w in _by_window(again))
    # re-adding appends to the newest shard until it is full, then opens the next
    report = index_rasters(again, model, [str(TINY)], batch_size=8)
    assert report.tiles == removed
    counts = [s.count for s in again._shards]
    assert all(c == SHARD for c in counts[:-1]) and 0 < counts[-1] <= SHARD
    assert sum(counts) == 22 + removed  # deleted tiles keep their places in the older shards
    assert len(Store(root).get("split")) == 22
    # a shard file lost (deleted by hand): the collection still opens, its tiles count as not indexed,
    # and indexing the same rasters again recomputes exactly them
    (root / "split" / "index-001.bin").unlink()
    hurt = Store(root).get("split")
    assert len(hurt) == 22 - SHARD
    report = index_rasters(hurt, model, [str(SMALL), str(TINY)], batch_size=8)
    assert report.tiles == SHARD
    healed = Store(root).get("split")
    assert len(healed) == 22 and tile_set(healed) == tile_set(Store(sharded).get("split"))


def test_a_bad_shard_size_is_refused(tmp_path, model):
    from server.errors import InvalidRequest

    for bad in (0, -3, 2.5, True):
        with pytest.raises(InvalidRequest, match="shard_tiles"):
            Store(tmp_path).create("x", model, shard_tiles=bad)


def test_cli_sets_the_shard_size_of_a_new_collection_and_refuses_another(tmp_path):
    import subprocess
    import sys

    from server_testutil import REPO

    def index(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "tools/index.py", "--store", str(tmp_path), "cli", str(SMALL),
                               str(TINY), "--tile-size", "128", "--quiet", *extra],
                              cwd=REPO, capture_output=True, text=True, timeout=600)

    done = index("--index-shard-tiles", "8")
    assert done.returncode == 0, done.stderr
    col = Store(tmp_path).get("cli")
    assert col.shard_count == 3 and len(col) == 22 and col.shard_tiles == 8
    refused = index("--index-shard-tiles", "4")
    assert refused.returncode == 2 and "index shards of 8 tiles" in refused.stderr, refused.stderr
