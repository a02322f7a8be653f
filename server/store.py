"""Collection store: one folder per collection with an hnswlib index, a GeoPackage tile table and a manifest.

Crash safety rests on one ordering: tile rows are committed before their vectors enter the index, and the
index reaches disk only by atomic rename. So the saved index's labels are always a subset of the rows; on
the next write session rows without a vector are dropped (and recomputed), a raster is marked complete only
after the index holding its tiles is saved.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import hnswlib
import numpy as np

from server.errors import Conflict, InvalidRequest, ModelMismatch, NotFound, ServerError
from server.hnswfile import VectorFile
from server.rwlock import RWLock
from server.tiletable import RasterRow, TileTable, utc_now
from server.tiling import RasterInfo, TileRecord, TilingParams

FORMAT_VERSION = 1
INDEX_M = 16
INDEX_EF_CONSTRUCTION = 200
SEARCH_EF = 128
INITIAL_CAPACITY = 1024
BRUTE_FORCE_MAX = 50_000  # below this many candidates an exact scan beats a filtered graph walk
EXACT_CHUNK = 65_536  # rows gathered at a time by an exact scan, bounding its memory
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ModelLike(Protocol):
    """What the store needs to know about a model."""

    identity: str
    name: str
    dim: int


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write JSON through a temporary file and a rename, so readers never see half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class Collection:
    """One collection folder: owns its index, tile table and manifest, saved together."""

    def __init__(self, folder: Path, checkpoint_every: int = 2048) -> None:
        self.folder = folder
        self.manifest: dict[str, Any] = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        if self.manifest.get("format_version") != FORMAT_VERSION:
            raise ServerError(f"collection {folder} has format version {self.manifest.get('format_version')}; "
                              f"this server reads version {FORMAT_VERSION}. Re-index it into a new collection")
        self.table = TileTable(folder / "tiles.gpkg")
        self.lock = RWLock()
        self.checkpoint_every = checkpoint_every
        self._index: hnswlib.Index | None = None
        self._index_stat: tuple[int, int] | None = None
        self._labels: set[int] = set()  # live labels present in the in-memory index
        self._vectors: VectorFile | None = None  # fast view of the saved index's vectors, if it checks out
        self._unsaved = 0
        self._writing = False
        with self.lock.write():
            self._load()

    # -- identity ----------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        """Collection name (its folder name)."""
        return str(self.manifest["name"])

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
                f"{identity!r}; use that model, or index the rasters into a new collection")

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
        """(Re)read the index from disk and hide labels whose rows are gone or deleted. Hold the write lock."""
        index = hnswlib.Index(space="cosine", dim=int(self.manifest["model"]["dim"]))
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
                index.load_index(str(path), max_elements=0)
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

    def refresh(self) -> None:
        """Reload when another process has saved a newer index (a CLI indexing next to a running server)."""
        if not self._writing and self._stat() != self._index_stat:
            with self.lock.write():
                if self._stat() != self._index_stat:
                    self._load()

    # -- writing -----------------------------------------------------------------------------------------
    @contextmanager
    def writing(self, identity: str) -> Iterator[Collection]:
        """Exclusive write session across processes: reconcile on entry, save on exit."""
        self.check_model(identity)
        lock_file = open(self.folder / ".write.lock", "a+")  # noqa: SIM115 - held for the session
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            lock_file.close()
            raise Conflict(f"collection {self.name!r} is being written by another job or process; "
                           "wait for it to finish or cancel it") from e
        try:
            with self.lock.write():
                self._load()
                orphans = self.table.live_ids() - self._labels
                if orphans:  # rows whose vectors never reached a saved index: drop, they are recomputed
                    self.table.delete_rows(orphans)
            self._writing = True
            yield self
        finally:
            try:
                self.checkpoint()
            finally:
                self._writing = False
                fcntl.flock(lock_file, fcntl.LOCK_UN)
                lock_file.close()

    def _require_writing(self) -> None:
        if not self._writing:
            raise RuntimeError("open a write session with Collection.writing() first")

    def checkpoint(self) -> None:
        """Save the index atomically (temporary file, fsync, rename) and the layer extent."""
        assert self._index is not None
        with self.lock.read():
            tmp = self.folder / "index.bin.tmp"
            self._index.save_index(str(tmp))
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
                os.replace(tmp, self._index_path())
                _fsync_dir(self.folder)
                self._index_stat = self._stat()
                self._unsaved = 0
                # changes to the index take the write lock: the file just saved is exactly the index in memory
                ids = np.asarray(self._index.get_ids_list(), dtype=np.int64)
                self._vectors = VectorFile.open(f.fileno(), self._index, ids)
        self.table.set_extent()

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
        """JSON-ready description: name, model, tiling, counts, bytes on disk."""
        counts = self.table.counts()
        size = sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file() and not p.name.endswith(".lock"))
        return {"name": self.name, "model": self.manifest["model"], "tiling": self.manifest["tiling"],
                "created_at": self.manifest["created_at"], "format_version": FORMAT_VERSION,
                "tiles": counts["tiles"], "rasters": counts["rasters"],
                "rasters_partial": counts["rasters_partial"], "bytes": size}


class Store:
    """A folder of collections; hands out one shared Collection object per name."""

    def __init__(self, root: str | Path, checkpoint_every: int = 2048) -> None:
        self.root = Path(root).expanduser().resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.checkpoint_every = checkpoint_every
        self._open: dict[str, Collection] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _check_name(name: str) -> None:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise InvalidRequest(f"collection name {name!r} is not allowed; use 1-64 letters, digits, '_', '-' "
                                 "or '.', starting with a letter or digit")

    def names(self) -> list[str]:
        """Names of all collections."""
        return sorted(p.name for p in self.root.iterdir() if (p / "manifest.json").is_file()
                      and NAME_RE.match(p.name))

    def create(self, name: str, model: ModelLike, params: TilingParams | None = None) -> Collection:
        """Create an empty collection for a model; the folder appears whole or not at all."""
        self._check_name(name)
        params = params or TilingParams()
        with self._lock:
            if (self.root / name).exists():
                raise Conflict(f"collection {name!r} already exists; pick another name or delete it first")
            tmp = self.root / f".{name}.creating-{uuid.uuid4().hex[:8]}"
            tmp.mkdir()
            manifest = {"format_version": FORMAT_VERSION, "name": name, "created_at": utc_now(),
                        "model": {"identity": model.identity, "name": model.name, "dim": int(model.dim)},
                        "tiling": params.to_dict(),
                        "index": {"library": "hnswlib", "space": "cosine", "M": INDEX_M,
                                  "ef_construction": INDEX_EF_CONSTRUCTION}}
            TileTable(tmp / "tiles.gpkg").create()
            write_json_atomic(tmp / "manifest.json", manifest)
            os.rename(tmp, self.root / name)
            _fsync_dir(self.root)
        return self.get(name)

    def get(self, name: str) -> Collection:
        """The collection of that name; unknown names raise NotFound listing the known ones."""
        self._check_name(name)
        with self._lock:
            if name not in self._open:
                folder = self.root / name
                if not (folder / "manifest.json").is_file():
                    raise NotFound(f"no collection named {name!r}; known collections: {self.names() or 'none'}")
                self._open[name] = Collection(folder, self.checkpoint_every)
            return self._open[name]

    def delete(self, name: str) -> None:
        """Delete a collection folder, unless a job is writing it."""
        col = self.get(name)
        with open(col.folder / ".write.lock", "a+") as lock_file:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as e:
                raise Conflict(f"collection {name!r} is being written; cancel its job first") from e
            with self._lock:
                trash = self.root / f".{name}.deleted-{uuid.uuid4().hex[:8]}"
                os.rename(col.folder, trash)
                self._open.pop(name, None)
        shutil.rmtree(trash, ignore_errors=True)
