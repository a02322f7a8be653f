"""What a collection folder must hold, checked before anything trusts it: manifest fields, the tile table's
tables; the fix to suggest for each kind of damage; folder listings kept while the folder is unchanged."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from server.errors import CollectionBroken, InvalidRequest
from server.store.records import TilingParams
from server.store.tiletable import TileTable

FORMAT_VERSION = 1
MAX_DIM = 65_536
REINDEX = "delete the collection and index its rasters again"
FIX = {"manifest.json": f"restore manifest.json from a backup, or {REINDEX}",
       "tiles.gpkg": f"restore tiles.gpkg from a backup, or {REINDEX}",
       "truncated": "delete index.bin (or restore it from a backup) and index the same rasters again: tiles "
                    "without a saved vector are recomputed",
       "dimension": "manifest.json and index.bin come from different collections or models: restore the "
                    f"matching pair from a backup, or {REINDEX}"}


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (a no-op where directories cannot be opened, as on Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_manifest(folder: Path) -> dict[str, Any]:
    """The collection's manifest, checked field by field; CollectionBroken naming what is wrong."""
    def broken(reason: str) -> CollectionBroken:
        return CollectionBroken(folder.name, f"manifest.json {reason}", FIX["manifest.json"])

    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise broken(f"is unreadable ({e})") from None
    if not isinstance(manifest, dict):
        raise broken("is not a JSON object")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise CollectionBroken(folder.name, f"manifest.json has format version {manifest.get('format_version')!r}; "
                               f"this server reads version {FORMAT_VERSION}", "re-index its rasters into a new "
                               "collection")
    model = manifest.get("model")
    if (not isinstance(model, dict) or not isinstance(model.get("identity"), str)
            or not isinstance(model.get("name"), str) or isinstance(model.get("dim"), bool)
            or not isinstance(model.get("dim"), int) or not 1 <= model["dim"] <= MAX_DIM):
        raise broken("has no valid 'model' (identity, name and a dimension from 1 to 65536)")
    try:
        TilingParams.from_dict(manifest.get("tiling"))
    except (InvalidRequest, TypeError, AttributeError) as e:
        raise broken(f"has invalid 'tiling' ({e})") from None
    if not isinstance(manifest.get("created_at"), str):
        raise broken("has no 'created_at'")
    index = manifest.get("index", {})
    shard_tiles = index.get("shard_tiles", 1) if isinstance(index, dict) else None
    if isinstance(shard_tiles, bool) or not isinstance(shard_tiles, int) or shard_tiles < 1:
        raise broken("has an invalid 'index' (an object whose 'shard_tiles', if given, is a whole number >= 1)")
    return manifest


def check_table(table: TileTable, name: str) -> None:
    """tiles.gpkg exists and is an SQLite file with our tables, else CollectionBroken."""
    def broken(reason: str) -> CollectionBroken:
        return CollectionBroken(name, f"tiles.gpkg {reason}", FIX["tiles.gpkg"])

    if not table.path.is_file():
        raise broken("is missing")
    try:
        with table.connect() as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.OperationalError:
        raise  # locked, busy, I/O: a state of the moment, not of the file
    except sqlite3.DatabaseError as e:
        raise broken(f"is not a readable GeoPackage ({e})") from None
    if not {"tiles", "rasters"} <= tables:
        raise broken(f"lacks the tables 'tiles' and 'rasters' (has {sorted(tables) or 'none'})")


class FolderListing:
    """What a folder listing gave, listed again only when the folder changed: a save or create renames a file
    into it, which moves the folder's mtime, so an unchanged folder needs one stat, not a listing."""

    RECENT_NS = 100_000_000  # a folder changed this recently may change again within its clock tick: list again

    def __init__(self, folder: Path, list_fn: Callable[[Path], list[Any]]) -> None:
        self.folder, self._list_fn = folder, list_fn
        self._key: tuple[int, int] | None = None
        self._items: list[Any] = []

    def get(self) -> list[Any]:
        """The listing, from memory while the folder's (mtime, inode) is what it was when last listed."""
        st = self.folder.stat()
        key = (st.st_mtime_ns, st.st_ino)
        if key != self._key:
            self._items = self._list_fn(self.folder)
            self._key = key if time.time_ns() - st.st_mtime_ns > self.RECENT_NS else None
        return list(self._items)
