"""Collection store: a folder of collections (see server.store.collection), each opened once and shared.

A collection that fails to open is remembered as broken (with the reason and the fix) until one of its files
changes, and never stops the others from being listed or searched.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Protocol

from server.errors import CollectionBroken, Conflict, InvalidRequest, NotFound, storage_fault, write_failure
from server.store.collection import (
    BRUTE_FORCE_MAX,
    DEFAULT_SHARD_TILES,
    EXACT_CHUNK,
    INDEX_EF_CONSTRUCTION,
    INDEX_M,
    INITIAL_CAPACITY,
    SEARCH_EF,
    Collection,
)
from server.store.collection_files import FORMAT_VERSION, FolderListing, fsync_dir
from server.store.index_shard import shard_paths
from server.store.records import TilingParams
from server.store.storelock import exclusive
from server.store.tiletable import TileTable, utc_now

__all__ = ["BRUTE_FORCE_MAX", "DEFAULT_SHARD_TILES", "EXACT_CHUNK", "FORMAT_VERSION", "INDEX_EF_CONSTRUCTION", "INDEX_M",
           "INITIAL_CAPACITY", "SEARCH_EF", "Collection", "ModelLike", "Store", "write_json_atomic"]
log = logging.getLogger(__name__)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
LEFTOVER_RE = re.compile(r"^\.[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\.(creating|deleted)-[0-9a-f]{8}$")
CREATING_GRACE_S = 600  # a create takes milliseconds: older half-made folders belong to a dead process
_FILES = ("manifest.json", "tiles.gpkg")


class ModelLike(Protocol):
    """What the store needs to know about a model."""

    identity: str
    name: str
    dim: int


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON through a temporary file and a rename, so readers never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def _collection_names(root: Path) -> list[str]:
    """Folders of the store named like collections, sorted (Store.names checks each for a manifest)."""
    return sorted(p.name for p in root.iterdir() if NAME_RE.match(p.name))


class Store:
    """A folder of collections; hands out one shared Collection object per name."""

    def __init__(self, root: str | Path, checkpoint_every: int = 2048, create: bool = True) -> None:
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            if self.root.exists():
                raise InvalidRequest(f"store {self.root} is a file, not a folder; check --store")
            if not create:
                raise NotFound(f"store folder {self.root} does not exist; check --store")
            try:
                self.root.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise write_failure(storage_fault(e) or "io", e, self.root, None) from e
        self.checkpoint_every = checkpoint_every
        self._open: dict[str, Collection] = {}
        self._broken: dict[str, tuple[tuple[Any, ...], CollectionBroken]] = {}
        self._lock = threading.Lock()
        self._listing = FolderListing(self.root, _collection_names)
        if self.writable:
            self._clean_leftovers()

    @property
    def writable(self) -> bool:
        """False on a read-only filesystem (or a folder this process may not write)."""
        return os.access(self.root, os.W_OK)

    def require_writable(self) -> None:
        """Refuse a write up front on a read-only store, with what to do."""
        if not self.writable:
            raise write_failure("read-only", OSError("no write access"), self.root, None)

    def _clean_leftovers(self) -> None:
        """Remove folders of deletes and creates that a killed process left half done."""
        now = time.time()
        for p in self.root.iterdir():
            m = LEFTOVER_RE.match(p.name)
            try:
                if m and p.is_dir() and (m[1] == "deleted" or now - p.stat().st_mtime > CREATING_GRACE_S):
                    shutil.rmtree(p, ignore_errors=True)
            except OSError:  # gone meanwhile
                continue

    @staticmethod
    def _check_name(name: str) -> None:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise InvalidRequest(f"collection name {name!r} is not allowed; use 1-64 letters, digits, '_', '-' "
                                 "or '.', starting with a letter or digit")

    def names(self) -> list[str]:
        """Names of all collections (broken ones included); the store folder is listed only when it changed."""
        return [n for n in self._listing.get() if (self.root / n / "manifest.json").is_file()]

    def _folder(self, name: str) -> Path:
        """The folder of an existing collection; NotFound listing the known ones."""
        self._check_name(name)
        folder = self.root / name
        if not (folder / "manifest.json").is_file():
            raise NotFound(f"no collection named {name!r}; known collections: {self.names() or 'none'}")
        return folder

    def create(self, name: str, model: ModelLike, params: TilingParams | None = None,
               shard_tiles: int = DEFAULT_SHARD_TILES, source: str | None = None) -> Collection:
        """Create an empty collection for a model; the folder appears whole or not at all. Its index is split
        into shards of at most `shard_tiles` tiles; `source` (a model name or folder) is where the model loads
        from, recorded in the manifest so a server can load it again."""
        if isinstance(shard_tiles, bool) or not isinstance(shard_tiles, int) or shard_tiles < 1:
            raise InvalidRequest(f"shard_tiles {shard_tiles!r} must be a whole number of tiles, at least 1")
        self._check_name(name)
        self.require_writable()
        params = params or TilingParams()
        with self._lock:
            if (self.root / name).exists():
                raise Conflict(f"collection {name!r} already exists; pick another name or delete it first")
            tmp = self.root / f".{name}.creating-{uuid.uuid4().hex[:8]}"
            try:
                tmp.mkdir()
                manifest = {"format_version": FORMAT_VERSION, "name": name, "created_at": utc_now(),
                            "model": {"identity": model.identity, "name": model.name, "dim": int(model.dim),
                                      **({} if source is None else {"source": source})},
                            "tiling": params.to_dict(),
                            "index": {"library": "hnswlib", "space": "cosine", "M": INDEX_M,
                                      "ef_construction": INDEX_EF_CONSTRUCTION, "shard_tiles": shard_tiles}}
                TileTable(tmp / "tiles.gpkg").create()
                write_json_atomic(tmp / "manifest.json", manifest)
                os.rename(tmp, self.root / name)
            except Exception as e:
                shutil.rmtree(tmp, ignore_errors=True)
                kind = storage_fault(e)
                if kind is None:
                    raise
                raise write_failure(kind, e, self.root, None) from e
            fsync_dir(self.root)
        return self.get(name)

    def _stamp(self, folder: Path) -> tuple[Any, ...]:
        """What changes when any file of the collection changes."""
        out = []
        for path in [*(folder / f for f in _FILES), *shard_paths(folder)]:
            try:
                st = path.stat()
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                out.append(None)
        return tuple(out)

    def get(self, name: str) -> Collection:
        """The collection of that name; NotFound for unknown names, CollectionBroken for damaged ones."""
        folder = self._folder(name)
        with self._lock:
            if name in self._open:
                return self._open[name]
            stamp = self._stamp(folder)
            known = self._broken.get(name)
            if known and known[0] == stamp:  # unchanged since it failed: don't parse it again
                raise known[1]
            try:
                col = Collection(folder, self.checkpoint_every)
            except CollectionBroken as e:
                log.info("collection %s is broken: %s", name, e.reason)
                self._broken[name] = (stamp, e)
                raise
            self._broken.pop(name, None)
            self._open[name] = col
            return col

    def fresh(self, name: str) -> Collection:
        """get() and then refresh() from disk; a collection found damaged on reload is marked broken."""
        col = self.get(name)
        try:
            col.refresh()
        except CollectionBroken as e:
            with self._lock:
                if self._open.get(name) is col:
                    del self._open[name]
                self._broken[name] = (self._stamp(col.folder), e)
            raise
        return col

    def searchable(self, names: list[str] | None) -> tuple[list[Collection], list[dict[str, str]]]:
        """Collections to search, fresh from disk: the named ones (a broken one raises), or every one that
        opens, with {collection, reason} for those skipped as broken."""
        if names:
            return [self.fresh(n) for n in names], []
        cols, skipped = [], []
        for n in self.names():
            try:
                cols.append(self.fresh(n))
            except CollectionBroken as e:
                skipped.append({"collection": n, "reason": f"broken: {e.reason}"})
        return cols, skipped

    def describe(self, name: str) -> dict[str, Any]:
        """A collection's summary, or {name, state: 'broken', reason, fix} when it cannot be opened or read."""
        try:
            return self.fresh(name).summary()
        except CollectionBroken as e:
            return e.to_dict()
        except (OSError, sqlite3.Error) as e:  # damaged after it opened; not remembered, it may be of the moment
            log.warning("describing collection %s failed", name, exc_info=True)
            return CollectionBroken(name, f"reading tiles.gpkg failed ({type(e).__name__}: {e})",
                                    "restore tiles.gpkg from a backup, or delete the collection and index its "
                                    "rasters again").to_dict()

    def delete(self, name: str) -> None:
        """Delete a collection folder (broken ones too), unless a job is writing it."""
        folder = self._folder(name)
        self.require_writable()
        with exclusive(folder / ".write.lock", f"collection {name!r} is being written; cancel its job first"):
            with self._lock:
                trash = self.root / f".{name}.deleted-{uuid.uuid4().hex[:8]}"
                os.rename(folder, trash)
                self._open.pop(name, None)
                self._broken.pop(name, None)
        shutil.rmtree(trash, ignore_errors=True)
