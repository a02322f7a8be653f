"""One collection folder: an hnswlib index, a GeoPackage tile table and a manifest, saved together.

Crash safety rests on one ordering: tile rows are committed before their vectors enter the index, and the
index reaches disk only by atomic rename of a file that was fsynced and verified (layout, exact length, labels
and sample vectors against the index in memory). So the saved index's labels are always a subset of the rows;
on the next write session rows without a vector are dropped (and recomputed), a raster is marked complete only
after the index holding its tiles is saved. A write that fails (disk full, read-only) keeps the saved index,
puts the in-memory index back to it and says how many tiles are kept.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np

from server.collection_files import FIX, FORMAT_VERSION, check_table, fsync_dir, read_manifest
from server.errors import CollectionBroken, ModelMismatch, NotFound, storage_fault, write_failure
from server.hnswfile import IndexFileError, VectorFile, check_file
from server.rwlock import RWLock
from server.storelock import exclusive
from server.tiletable import RasterRow, TileTable
from server.tiling import RasterInfo, TileRecord, TilingParams

INDEX_M = 16
INDEX_EF_CONSTRUCTION = 200
SEARCH_EF = 128
INITIAL_CAPACITY = 1024
BRUTE_FORCE_MAX = 50_000  # below this many candidates an exact scan beats a filtered graph walk
EXACT_CHUNK = 65_536  # rows gathered at a time by an exact scan, bounding its memory
class Collection:
    """One collection folder: owns its index, tile table and manifest, saved together."""

    def __init__(self, folder: Path, checkpoint_every: int = 2048) -> None:
        self.folder = folder
        self.manifest: dict[str, Any] = read_manifest(folder)
        self.table = TileTable(folder / "tiles.gpkg")
        check_table(self.table, folder.name)
        self.lock = RWLock()
        self.checkpoint_every = checkpoint_every
        self._index: hnswlib.Index | None = None
        self._index_stat: tuple[int, int] | None = None
        self._labels: set[int] = set()  # live labels present in the in-memory index
        self._vectors: VectorFile | None = None  # fast view of the saved index's vectors, if it checks out
        self._unsaved = 0
        self._kept = 0  # live tiles in the saved index: what a failed write keeps
        self._writing = False
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
    def params(self) -> TilingParams:
        """Tiling parameters recorded at creation."""
        return TilingParams.from_dict(self.manifest["tiling"])

    def check_model(self, identity: str) -> None:
        """Refuse a model other than the one the collection was built with, naming both."""
        if identity != self.identity:
            raise ModelMismatch(
                f"collection {self.name!r} was built with model {self.identity!r} but the model in use is "
                f"{identity!r}; use that model, or re-index: add its rasters to a new collection with this model")

    # -- loading -----------------------------------------------------------------------------------------
    def _index_path(self) -> Path:
        return self.folder / "index.bin"

    def _stat(self) -> tuple[int, int] | None:
        try:
            st = self._index_path().stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _load(self) -> None:
        """(Re)read the index from disk, checked before hnswlib sees it, and hide labels whose rows are gone or
        deleted. Hold the write lock. A damaged file raises CollectionBroken and drops the file view."""
        dim = int(self.manifest["model"]["dim"])
        index = hnswlib.Index(space="cosine", dim=dim)
        path, stat, vectors = self._index_path(), None, None
        try:
            fd = os.open(path, os.O_RDONLY)  # pins the file that the vector view must match
        except FileNotFoundError:
            index.init_index(max_elements=INITIAL_CAPACITY, M=INDEX_M, ef_construction=INDEX_EF_CONSTRUCTION)
            ids = []
        else:
            try:
                st = os.fstat(fd)
                stat = (st.st_mtime_ns, st.st_size)
                try:
                    check_file(fd, dim)
                    index.load_index(str(path), max_elements=0)
                except (IndexFileError, RuntimeError) as e:
                    self._vectors = None  # the mapped file may have shrunk under us: never touch it again
                    fix = FIX.get(getattr(e, "kind", ""), FIX["truncated"])
                    raise CollectionBroken(self.name, str(e), fix) from None
                ids = index.get_ids_list()
                if os.stat(path).st_ino == st.st_ino:  # else a writer replaced it mid-load: no view this time
                    vectors = VectorFile.open(fd, index, np.asarray(ids, dtype=np.int64))
            finally:
                os.close(fd)
        index.set_ef(SEARCH_EF)  # ef is not saved with the index
        index.set_num_threads(1)
        live = self.table.live_ids()
        labels = set(ids)
        for label in labels - live:
            try:
                index.mark_deleted(label)
            except RuntimeError:  # already deleted in the saved file
                pass
        self._index, self._index_stat, self._labels = index, stat, labels & live
        self._vectors = vectors
        self._unsaved = 0
        self._kept = len(self._labels)

    def refresh(self) -> None:
        """Reload when another process has saved a newer index (a CLI indexing next to a running server)."""
        if not self._writing and self._stat() != self._index_stat:
            with self.lock.write():
                if self._stat() != self._index_stat:
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
        orphans = self.table.live_ids() - self._labels
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
        """Save the index atomically: temporary file, fsync, verify, rename; then the layer extent. A failed or
        short write (hnswlib does not report one) raises and leaves index.bin as it was."""
        assert self._index is not None
        tmp = self.folder / "index.bin.tmp"
        with self.lock.read():
            try:
                self._save_verified(tmp)
            except (OSError, RuntimeError, IndexFileError) as e:
                kind = storage_fault(e) or self._low_space_fault()
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise write_failure(kind, e, self.folder, self._kept) from e
        try:
            self.table.set_extent()
        except sqlite3.Error as e:
            kind = storage_fault(e)
            if kind is None:
                raise
            raise write_failure(kind, e, self.folder, self._kept) from e

    def _save_verified(self, tmp: Path) -> None:
        """Write the index to tmp and rename it over index.bin only once it reads back whole. Hold a lock."""
        assert self._index is not None
        self._index.save_index(str(tmp))
        with open(tmp, "r+b") as f:
            os.fsync(f.fileno())
            count = check_file(f.fileno(), int(self.manifest["model"]["dim"]), name="the saved index")
            # changes to the index take the write lock: the file just saved is exactly the index in memory
            ids = np.asarray(self._index.get_ids_list(), dtype=np.int64)
            view = VectorFile.open(f.fileno(), self._index, ids) if count else None
            if count != self._index.element_count or (count and view is None):
                raise IndexFileError("layout", "the saved index does not read back as the index in memory")
        os.replace(tmp, self._index_path())
        fsync_dir(self.folder)
        self._index_stat = self._stat()
        self._unsaved = 0
        self._vectors = view
        self._kept = len(self._labels)

    def _low_space_fault(self) -> str:
        """'full' when the disk has less room than the index needs (a short write), else 'io'."""
        need = max(self._index_path().stat().st_size if self._index_path().exists() else 0, 1 << 20)
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
            assert self._index is not None
            needed = self._index.get_current_count() + len(ids)
            capacity = self._index.get_max_elements()
            if needed > capacity:  # geometric growth keeps resizes rare
                self._index.resize_index(max(needed, capacity * 2))
            self._index.add_items(np.asarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))
            self._labels.update(ids)
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
            assert self._index is not None
            for i in ids:
                if i in self._labels:
                    self._index.mark_deleted(i)
                    self._labels.discard(i)

    # -- reading -----------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._labels)

    def vector(self, tile_id: int) -> np.ndarray:
        """The stored (unit) vector of a tile."""
        with self.lock.read():
            if tile_id not in self._labels:
                raise NotFound(f"tile {tile_id} is not in collection {self.name!r}")
            row = self._vectors.row(tile_id) if self._vectors is not None else None
            return row if row is not None else self._gather([tile_id])[0]

    def ids(self) -> list[int]:
        """Sorted ids of the searchable tiles."""
        with self.lock.read():
            return sorted(self._labels)

    def vectors(self, ids: list[int]) -> np.ndarray:
        """Stored (unit) vectors of searchable tiles, (len(ids), dim) float32."""
        with self.lock.read():
            missing = [i for i in ids if i not in self._labels]
            if missing:
                raise NotFound(f"tile(s) {missing[:5]} not in collection {self.name!r}")
            return self._gather(list(ids))

    def query(self, vector: np.ndarray, k: int, candidates: list[int] | None = None) -> list[tuple[int, float]]:
        """Top-k (tile id, cosine score), best first, optionally among candidate ids only."""
        q = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        with self.lock.read():
            assert self._index is not None
            if candidates is not None:
                cands = [c for c in candidates if c in self._labels]
                if len(cands) <= BRUTE_FORCE_MAX:
                    return self._exact(q, k, cands)
                cset = set(cands)
                return self._knn(q, min(k, len(cands)), lambda label: label in cset)
            return self._knn(q, min(k, len(self._labels)), None)

    def _knn(self, q: np.ndarray, k: int, filt: Any) -> list[tuple[int, float]]:
        assert self._index is not None
        if k <= 0:
            return []
        if self._index.ef < k:
            self._index.set_ef(k)
        try:
            labels, dists = self._index.knn_query(q, k=k, filter=filt)
        except RuntimeError:  # graph too thinned by deletions for ef: fall back to an exact scan
            return self._exact(q, k, sorted(self._labels))
        return [(int(label), float(1.0 - d)) for label, d in zip(labels[0], dists[0])]

    def _gather(self, ids: list[int]) -> np.ndarray:
        """Stored vectors of live labels, (len(ids), dim) float32: from the saved file's view where it has them,
        from the index (slow, one by one) for those added since the last save."""
        assert self._index is not None
        view = self._vectors
        if view is None:
            return np.asarray(self._index.get_items(ids), dtype=np.float32).reshape(len(ids), -1)
        labels = np.asarray(ids, dtype=np.int64)
        pos = view.positions(labels)
        out = view.vectors[np.maximum(pos, 0)]
        missing = np.flatnonzero(pos < 0)
        if len(missing):
            out[missing] = np.asarray(self._index.get_items(labels[missing].tolist()), dtype=np.float32)
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
                "rasters_partial": counts["rasters_partial"], "bytes": size}

