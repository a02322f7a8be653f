"""One collection folder: hnswlib index shards, a GeoPackage tile table and a manifest, saved together.

Crash safety rests on one ordering: tile rows are committed before their vectors enter the index, and each
index shard reaches disk only by atomic rename of a file that was fsynced and verified (layout, exact length,
labels and sample vectors against the index in memory). So the saved shards' labels are always rows;
on the next write session rows without a vector are dropped (and recomputed), a raster is marked complete only
after the index holding its tiles is saved. A write that fails (disk full, read-only) keeps the saved index,
puts the in-memory index back to it and says how many tiles are kept.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import shutil
import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from server.errors import CollectionBroken, ModelMismatch, NotFound, storage_fault, write_failure
from server.store.collection_files import FIX, FORMAT_VERSION, FolderListing, check_table, read_manifest
from server.store.hnswfile import IndexFileError
from server.store.index_shard import (
    DEFAULT_SHARD_TILES,
    INDEX_EF_CONSTRUCTION,
    INDEX_M,
    INITIAL_CAPACITY,
    SEARCH_EF,
    IndexShard,
    next_shard_path,
    shard_paths,
)
from server.store.records import RasterInfo, TileRecord, TilingParams
from server.store.rwlock import RWLock
from server.store.storelock import exclusive
from server.store.tiletable import RasterRow, TileTable

__all__ = ["BRUTE_FORCE_MAX", "DEFAULT_SHARD_TILES", "EXACT_CHUNK", "INDEX_EF_CONSTRUCTION", "INDEX_M",
           "INITIAL_CAPACITY", "SEARCH_EF", "Collection"]
BRUTE_FORCE_MAX = 50_000  # below this many candidates an exact scan beats a filtered graph walk
EXACT_CHUNK = 65_536  # rows gathered at a time by an exact scan, bounding its memory
# hnswlib releases the GIL while it searches: shards of one query run side by side on these threads
_FAN_OUT = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="shard-search")
class Collection:
    """One collection folder: owns its index shards, tile table and manifest, saved together."""

    def __init__(self, folder: Path, checkpoint_every: int = 2048) -> None:
        self.folder = folder
        self.manifest: dict[str, Any] = read_manifest(folder)
        self.table = TileTable(folder / "tiles.gpkg")
        check_table(self.table, folder.name)
        self.lock = RWLock()
        self.checkpoint_every = checkpoint_every
        self.shard_tiles = int(self.manifest.get("index", {}).get("shard_tiles", DEFAULT_SHARD_TILES))
        self._shards: list[IndexShard] = []  # by id range; only the last takes appends
        self._unsaved = 0
        self._writing = False
        self._listing = FolderListing(folder, shard_paths)
        with self.lock.write():
            self._load()

    # -- identity ----------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """Collection name (its folder name)."""
        return self.folder.name

    @property
    def identity(self) -> str:
        """Identity of the model the collection was built with."""
        return str(self.manifest["model"]["identity"])

    @property
    def source(self) -> str | None:
        """Where the collection's model loads from (a model name or folder), None in manifests made before."""
        source = self.manifest["model"].get("source")
        return source if isinstance(source, str) and source else None

    @property
    def params(self) -> TilingParams:
        """Tiling parameters recorded at creation (collections made before test-time views have views=1)."""
        return TilingParams.recorded(self.manifest["tiling"])

    def check_model(self, identity: str) -> None:
        """Refuse a model other than the one the collection was built with, naming both."""
        if identity != self.identity:
            raise ModelMismatch(
                f"collection {self.name!r} was built with model {self.identity!r} but the model in use is "
                f"{identity!r}; use that model, or re-index: add its rasters to a new collection with this model")

    # -- loading -----------------------------------------------------------------------------------------
    def _stat(self) -> tuple[Any, ...]:
        out = []
        for path in self._listing.get():
            with contextlib.suppress(FileNotFoundError):
                st = path.stat()
                out.append((path.name, (st.st_mtime_ns, st.st_size)))
        return tuple(out)

    def _load(self) -> None:
        """(Re)read the index shards from disk, each checked before hnswlib sees it, and hide labels whose rows
        are gone or deleted. Hold the write lock. A damaged file raises CollectionBroken and drops file views."""
        dim = int(self.manifest["model"]["dim"])
        live = self.table.live_ids()
        try:
            shards = [IndexShard.load(path, dim, live) for path in shard_paths(self.folder)]
        except (IndexFileError, RuntimeError) as e:
            for shard in self._shards:
                shard.vectors = None  # the mapped file may have shrunk under us: never touch it again
            fix = FIX.get(getattr(e, "kind", ""), FIX["truncated"])
            raise CollectionBroken(self.name, str(e), fix) from None
        while len(shards) > 1 and shards[-1].stat is None:  # index.bin alone may be missing (nothing saved)
            shards.pop()
        self._shards = shards
        self._unsaved = 0

    def _saved_stat(self) -> tuple[Any, ...]:
        """_stat() of the files as this process last loaded or saved them."""
        return tuple((s.path.name, s.stat) for s in self._shards if s.stat is not None)

    @property
    def _kept(self) -> int:
        """Live tiles in the saved shards: what a failed write keeps."""
        return sum(s.kept for s in self._shards)

    def refresh(self) -> None:
        """Reload when another process has saved a newer index (a CLI indexing next to a running server)."""
        if not self._writing and self._stat() != self._saved_stat():
            with self.lock.write():
                if self._stat() != self._saved_stat():
                    self._load()

    # -- writing -----------------------------------------------------------------------------------------
    @contextmanager
    def writing(self, identity: str) -> Iterator[Collection]:
        """Exclusive write session across processes: reconcile on entry, save on exit. A failed write (disk full,
        read-only) leaves the saved index and rows as they were and raises StoreWriteFailed/StoreNotWritable."""
        self.check_model(identity)
        with exclusive(self.folder / ".write.lock", f"collection {self.name!r} is being written by another job "
                                                    "or process; wait for it to finish or cancel it"):
            try:
                with self.lock.write():
                    self._load()
                self._reconcile()
                self._writing = True
                try:
                    yield self
                finally:
                    self._end_session()
            except Exception as e:
                kind = storage_fault(e)
                if kind is None:
                    raise
                raise write_failure(kind, e, self.folder, len(self)) from e
            finally:
                self._writing = False

    def _reconcile(self) -> None:
        """Drop rows whose vectors never reached a saved index (their rasters go back to 'indexing')."""
        orphans = self.table.live_ids() - self._live()
        if orphans:
            self.table.delete_rows(orphans)

    def _end_session(self) -> None:
        """Save; if that fails, go back to the saved index and try to drop the rows it lacks."""
        try:
            self.checkpoint()
        except BaseException:
            with self.lock.write():
                self._load()
            with contextlib.suppress(sqlite3.Error, OSError):  # still full: done at the next session's start
                self._reconcile()
            raise

    def _require_writing(self) -> None:
        if not self._writing:
            raise RuntimeError("open a write session with Collection.writing() first")

    def checkpoint(self) -> None:
        """Save changed shards atomically: temporary file, fsync, verify, rename; then the layer extent. A failed
        or short write (hnswlib does not report one) raises and leaves that shard's file as it was."""
        with self.lock.read():
            for shard in self._shards:
                if not shard.dirty and shard.stat is not None:
                    continue
                try:
                    shard.save_verified()
                except (OSError, RuntimeError, IndexFileError) as e:
                    kind = storage_fault(e) or self._low_space_fault(shard)
                    raise write_failure(kind, e, self.folder, self._kept) from e
            self._unsaved = 0
        try:
            self.table.set_extent()
        except sqlite3.Error as e:
            kind = storage_fault(e)
            if kind is None:
                raise
            raise write_failure(kind, e, self.folder, self._kept) from e

    def _low_space_fault(self, shard: IndexShard) -> str:
        """'full' when the disk has less room than the shard needs (a short write), else 'io'."""
        need = max(shard.path.stat().st_size if shard.path.exists() else 0, 1 << 20)
        return "full" if shutil.disk_usage(self.folder).free < need else "io"

    def is_unchanged(self, path: str, size: int, mtime_ns: int) -> bool:
        """True when the raster is fully indexed with this size and mtime (re-adding it is a no-op)."""
        row = self.table.raster(path)
        return bool(row and row.state == "complete" and row.size == size and row.mtime_ns == mtime_ns)

    def begin_raster(self, info: RasterInfo) -> set[tuple[int, int, int, int]]:
        """Register a raster for indexing; returns windows already indexed (resuming), dropping stale tiles."""
        self._require_writing()
        row = self.table.raster(info.path)
        if row and row.state != "deleted" and (row.size, row.mtime_ns) != (info.size, info.mtime_ns):
            self._hide(self.table.mark_raster_tiles_deleted(info.path))
        info_json = {"bands": list(info.bands), "stretch": info.stretch, "crs": info.crs, "dtype": info.dtype,
                     "tile": info.tile, "stride": info.stride, "width": info.width, "height": info.height}
        self.table.set_raster(info.path, info.size, info.mtime_ns, "indexing", info_json)
        return self.table.windows_of(info.path)

    def add_tiles(self, records: list[TileRecord], vectors: np.ndarray) -> list[int]:
        """Append tiles with their vectors: rows first, then the index (see the module docstring)."""
        self._require_writing()
        if len(records) != len(vectors):
            raise ValueError(f"{len(records)} records but {len(vectors)} vectors")
        if not records:
            return []
        ids = self.table.insert_tiles(records)
        with self.lock.write():
            start = 0
            while start < len(ids):
                shard = self._shards[-1]
                if shard.count >= self.shard_tiles:  # sealed: the next id range starts a new shard
                    shard = IndexShard(next_shard_path(shard.path), shard.dim)
                    self._shards.append(shard)
                n = min(self.shard_tiles - shard.count, len(ids) - start)
                shard.add(vectors[start:start + n], ids[start:start + n])
                start += n
            self._unsaved += len(ids)
        if self._unsaved >= self.checkpoint_every:
            self.checkpoint()
        return ids

    def finish_raster(self, info: RasterInfo, skipped: int) -> None:
        """Mark a raster complete, after its tiles' index is safely on disk."""
        self._require_writing()
        self.checkpoint()
        n = len(self.table.windows_of(info.path))
        self.table.set_raster(info.path, info.size, info.mtime_ns, "complete", None, tiles=n, skipped=skipped)

    def remove_raster(self, path: str) -> int:
        """Mark a raster's tiles deleted; returns how many."""
        self._require_writing()
        row = self.table.raster(path)
        if row is None or row.state == "deleted":
            raise NotFound(f"raster {path!r} is not in collection {self.name!r}")
        ids = self.table.mark_raster_tiles_deleted(path)
        self._hide(ids)
        self.table.set_raster(path, row.size, row.mtime_ns, "deleted", None)
        self.checkpoint()
        return len(ids)

    def _hide(self, ids: list[int]) -> None:
        with self.lock.write():
            for shard in self._shards:
                shard.hide(ids)

    # -- reading -----------------------------------------------------------------------------------------
    def _live(self) -> set[int]:
        return set().union(*(s.labels for s in self._shards))

    def _owner(self, tile_id: int) -> IndexShard | None:
        return next((s for s in self._shards if tile_id in s.labels), None)

    def __len__(self) -> int:
        return sum(len(s.labels) for s in self._shards)

    @property
    def shard_count(self) -> int:
        """Index shards the collection holds."""
        return len(self._shards)

    def vector(self, tile_id: int) -> np.ndarray:
        """The stored (unit) vector of a tile."""
        with self.lock.read():
            if self._owner(tile_id) is None:
                raise NotFound(f"tile {tile_id} is not in collection {self.name!r}")
            return self._gather([tile_id])[0]

    def ids(self) -> list[int]:
        """Sorted ids of the searchable tiles."""
        with self.lock.read():
            return sorted(self._live())

    def vectors(self, ids: list[int]) -> np.ndarray:
        """Stored (unit) vectors of searchable tiles, (len(ids), dim) float32."""
        with self.lock.read():
            missing = [i for i in ids if self._owner(i) is None]
            if missing:
                raise NotFound(f"tile(s) {missing[:5]} not in collection {self.name!r}")
            return self._gather(list(ids))

    def query(self, vector: np.ndarray, k: int, candidates: list[int] | None = None) -> list[tuple[int, float]]:
        """Top-k (tile id, cosine score), best first, optionally among candidate ids only; every shard answers
        and the best k of their answers are merged."""
        q = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        with self.lock.read():
            if candidates is None:
                if len(self._shards) == 1:
                    return self._knn(self._shards[0], q, k, None)
                return self._merge(list(_FAN_OUT.map(lambda s: self._knn(s, q, k, None), self._shards)), k)
            per_shard = [[c for c in candidates if c in s.labels] for s in self._shards]
            if sum(map(len, per_shard)) <= BRUTE_FORCE_MAX:
                return self._exact(q, k, [c for part in per_shard for c in part])
            pairs = [(s, set(part).__contains__) for s, part in zip(self._shards, per_shard) if part]
            return self._merge(list(_FAN_OUT.map(lambda p: self._knn(p[0], q, k, p[1]), pairs)), k)

    @staticmethod
    def _merge(parts: list[list[tuple[int, float]]], k: int) -> list[tuple[int, float]]:
        if len(parts) == 1:
            return parts[0][:k]
        return heapq.nlargest(k, (hit for part in parts for hit in part), key=lambda hit: hit[1])

    def _knn(self, shard: IndexShard, q: np.ndarray, k: int, filt: Any) -> list[tuple[int, float]]:
        found = shard.knn(q, k, filt)
        if found is None:  # graph too thinned by deletions for ef: an exact scan of the shard instead
            labels = sorted(shard.labels) if filt is None else sorted(i for i in shard.labels if filt(i))
            return self._exact(q, k, labels)
        return found

    def _gather(self, ids: list[int]) -> np.ndarray:
        """Stored vectors of live labels, (len(ids), dim) float32, each from the shard that owns it."""
        labels = np.asarray(ids, dtype=np.int64)
        out = np.empty((len(labels), int(self.manifest["model"]["dim"])), dtype=np.float32)
        todo = np.ones(len(labels), dtype=bool)
        for shard in self._shards:
            shard.gather_into(labels, out, todo)
        if todo.any():
            raise NotFound(f"tile(s) {labels[todo][:5].tolist()} not in collection {self.name!r}")
        return out

    def _exact(self, q: np.ndarray, k: int, ids: list[int]) -> list[tuple[int, float]]:
        if not ids or k <= 0:
            return []
        scores = np.concatenate([self._gather(ids[s:s + EXACT_CHUNK]) @ q[0]
                                 for s in range(0, len(ids), EXACT_CHUNK)])
        scores = scores / max(float(np.linalg.norm(q[0])), 1e-12)
        top = np.argsort(-scores, kind="stable")[:k]
        return [(int(ids[i]), float(scores[i])) for i in top]

    def rasters(self) -> list[RasterRow]:
        """Rasters of the collection."""
        return self.table.rasters()

    def summary(self) -> dict[str, Any]:
        """JSON-ready description: name, model, tiling, counts, bytes on disk. `tiles` counts the tiles that
        have both a row and a vector (rows of a killed job that never got a saved vector are not counted)."""
        counts = self.table.counts()
        size = sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file() and not p.name.endswith(".lock"))
        return {"name": self.name, "state": "ok", "model": self.manifest["model"], "tiling": self.manifest["tiling"],
                "created_at": self.manifest["created_at"], "format_version": FORMAT_VERSION,
                "tiles": len(self), "rasters": counts["rasters"],
                "rasters_partial": counts["rasters_partial"], "bytes": size,
                "index_shards": len(self._shards), "shard_tiles": self.shard_tiles}

