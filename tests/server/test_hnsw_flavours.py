"""Collections saved by PyPI's hnswlib 0.8 open unchanged under chroma-hnswlib (the wheel-shipping build), and
back: the two builds' index files differ only by a block of per-element norms (server/store/hnswfile.py)."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from server.search.search import SearchRequest, TextEmbedder, search
from server.store.hnswfile import IndexFileError, check_file, has_norms, library_writes_norms, loadable
from server.store.store import Store

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "hnswlib08_store"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture()
def old_store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    shutil.copytree(FIXTURE, root)
    return root


def test_a_collection_saved_by_hnswlib_08_opens_and_searches_unchanged(old_store: Path, model: Any) -> None:
    index = old_store / "old" / "index.bin"
    before = _sha(index)
    assert not has_norms(index), "the fixture is hnswlib 0.8's flavour"
    store = Store(old_store)
    col = store.get("old")
    assert len(col) == 6
    out = search(store, model, TextEmbedder(model), SearchRequest.from_json({"text": "houses and roads", "k": 6}))
    assert len(out["features"]) == 6 and not out["skipped_collections"]
    vectors = col.vectors([f["properties"]["tile_id"] for f in out["features"]])
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert _sha(index) == before, "opening and searching must not rewrite the file"


def test_appending_to_an_old_collection_saves_in_the_installed_flavour(old_store: Path, model: Any) -> None:
    from server_testutil import SMALL

    from server.indexing.pipeline import index_rasters

    col = Store(old_store).get("old")
    index_rasters(col, model, [str(SMALL)], batch_size=8, read_workers=0)
    index = old_store / "old" / "index.bin"
    assert has_norms(index) == library_writes_norms()
    again = Store(old_store).get("old")
    assert len(again) == len(col) > 6


def test_both_flavours_check_and_convert(old_store: Path, tmp_path: Path) -> None:
    index = old_store / "old" / "index.bin"
    other = tmp_path / "other.bin"
    with open(index, "rb") as f:
        raw = f.read()
    count, per_row = int.from_bytes(raw[16:24], "little"), int.from_bytes(raw[24:32], "little")
    start = 96 + count * per_row
    other.write_bytes(raw[:start] + np.ones(count, dtype="<f4").tobytes() + raw[start:])  # chroma's flavour
    fd = os.open(other, os.O_RDONLY)
    try:
        assert check_file(fd, 256) == count
    finally:
        os.close(fd)
    assert has_norms(other) and not has_norms(index)
    for path in (index, other):
        with loadable(path) as readable:
            assert has_norms(readable) == library_writes_norms()
    (tmp_path / "cut.bin").write_bytes(other.read_bytes()[:-3])
    fd = os.open(tmp_path / "cut.bin", os.O_RDONLY)
    try:
        with pytest.raises(IndexFileError):
            check_file(fd, 256)
    finally:
        os.close(fd)
