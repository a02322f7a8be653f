"""A collection is opened once and kept: repeated searches list no folder until a folder changes."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from server.search.search import SearchRequest, TextEmbedder, search
from server.store.collection_files import FolderListing
from server.store.store import Store


@pytest.fixture()
def listings(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every folder that FolderListing lists from now on."""
    seen: list[Path] = []
    original = FolderListing.get

    def counting(self: FolderListing) -> list[Any]:
        before = self._key
        out = original(self)
        if self._key != before or self._key is None:
            seen.append(self.folder)
        return out

    monkeypatch.setattr(FolderListing, "get", counting)
    return seen


def _age(folder: Path) -> None:
    """Backdate a folder's mtime past FolderListing's recent-change window, as time passing would."""
    old = time.time() - 5
    os.utime(folder, (old, old))


def test_searches_list_no_folder_until_one_changes(fresh: Path, model: Any, listings: list[Path]) -> None:
    store = Store(fresh)
    embed = TextEmbedder(model)
    search(store, model, embed, SearchRequest.from_json({"text": "a road", "k": 3}))  # writes query-bank offsets
    _age(fresh)
    _age(fresh / "base")
    first = search(store, model, embed, SearchRequest.from_json({"text": "a road", "k": 3}))
    listed = len(listings)
    assert listed >= 1
    col = store.get("base")
    for _ in range(5):
        again = search(store, model, embed, SearchRequest.from_json({"text": "a road", "k": 3}))
        assert store.get("base") is col  # opened once and kept
    assert len(listings) == listed, f"searches listed {listings[listed:]}"
    assert [f["id"] for f in again["features"]] == [f["id"] for f in first["features"]]

    shutil.copytree(fresh / "base", fresh / "copy")  # another process adds a collection: the store folder changes
    out = search(store, model, embed, SearchRequest.from_json({"text": "a road", "k": 3}))
    assert fresh in listings[listed:]
    assert set(out["query"]["collections"]) == {"base", "copy"}
