"""One hnswlib index file of a collection: its live labels, the saved file's vector view, an atomic verified save.

A collection holds one or more shards (`index.bin`, then `index-001.bin`, `index-002.bin`, ...). Tile ids grow
with insertion and only the newest shard takes appends, so each shard owns a contiguous id range and every
tile lives in exactly one shard. Each file reaches disk only by the rename of a fsynced, verified temporary
file, so a shard on disk is always a whole index whose labels are rows of the tile table.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np

from server.store.collection_files import fsync_dir
from server.store.hnswfile import IndexFileError, VectorFile, check_file, loadable

INDEX_M = 16
INDEX_EF_CONSTRUCTION = 200
SEARCH_EF = 128
INITIAL_CAPACITY = 1024
DEFAULT_SHARD_TILES = 2_500_000  # ~2.75 GB of RAM at 256 dimensions; a checkpoint rewrites only changed shards
FIRST = "index.bin"
_NEXT = re.compile(r"^index-(\d{3,})\.bin$")


def shard_paths(folder: Path) -> list[Path]:
    """The collection's shard files in order: index.bin (even if not yet written), then index-NNN.bin."""
    extra = sorted((int(m.group(1)), p) for p in folder.glob("index-*.bin") if (m := _NEXT.match(p.name)))
    return [folder / FIRST, *(p for _, p in extra)]


def next_shard_path(last: Path) -> Path:
    """File of the shard after the one at `last` (numbers only grow, even when a file is missing)."""
    m = _NEXT.match(last.name)
    return last.with_name(f"index-{int(m.group(1)) + 1 if m else 1:03d}.bin")


class IndexShard:
    """An hnswlib index (cosine) and what is known of it; callers hold the collection's lock."""

    def __init__(self, path: Path, dim: int, index: hnswlib.Index | None = None) -> None:
        """An empty shard, or one around an index just loaded from `path`."""
        self.path, self.dim = path, dim
        if index is None:
            index = hnswlib.Index(space="cosine", dim=dim)
            index.init_index(max_elements=INITIAL_CAPACITY, M=INDEX_M, ef_construction=INDEX_EF_CONSTRUCTION)
        self.index = index
        self.labels: set[int] = set()  # live labels in the in-memory index
        self.vectors: VectorFile | None = None  # view of the saved file's vectors, if it checks out
        self.stat: tuple[int, int] | None = None  # (mtime_ns, size) of the file loaded or saved
        self.kept = 0  # live labels in the saved file
        self.dirty = False
        self._tune()

    def _tune(self) -> None:
        self.index.set_ef(SEARCH_EF)  # ef is not saved with the index
        self.index.set_num_threads(1)

    @classmethod
    def load(cls, path: Path, dim: int, live: set[int]) -> IndexShard:
        """The shard saved at `path` (an empty one if there is no file), checked before hnswlib reads it;
        labels without a live row are marked deleted. Raises IndexFileError or RuntimeError when damaged."""
        try:
            fd = os.open(path, os.O_RDONLY)  # pins the file that the vector view must match
        except FileNotFoundError:
            return cls(path, dim)
        try:
            st = os.fstat(fd)
            check_file(fd, dim, name=path.name)
            index = hnswlib.Index(space="cosine", dim=dim)
            with loadable(path) as readable:  # written by the other hnswlib build: its flavour converted
                index.load_index(str(readable), max_elements=0)
            shard = cls(path, dim, index)
            ids = shard.index.get_ids_list()
            if os.stat(path).st_ino == st.st_ino:  # else a writer replaced it mid-load: no view this time
                shard.vectors = VectorFile.open(fd, shard.index, np.asarray(ids, dtype=np.int64))
        finally:
            os.close(fd)
        shard.stat = (st.st_mtime_ns, st.st_size)
        labels = set(ids)
        for label in labels - live:
            with contextlib.suppress(RuntimeError):  # already deleted in the saved file
                shard.index.mark_deleted(label)
        shard.labels = labels & live
        shard.kept = len(shard.labels)
        return shard

    @property
    def count(self) -> int:
        """Elements in the index, deleted ones included (what fills a shard)."""
        return int(self.index.element_count)

    def save_verified(self) -> None:
        """Write to a temporary file and rename it over the shard's file only once it reads back whole."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.index.save_index(str(tmp))
            with open(tmp, "r+b") as f:
                os.fsync(f.fileno())
                count = check_file(f.fileno(), self.dim, name="the saved index")
                # changes take the collection's write lock: the file just saved is exactly the index in memory
                ids = np.asarray(self.index.get_ids_list(), dtype=np.int64)
                view = VectorFile.open(f.fileno(), self.index, ids) if count else None
                if count != self.index.element_count or (count and view is None and os.name != "nt"):
                    raise IndexFileError("layout", "the saved index does not read back as the index in memory")
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        fsync_dir(self.path.parent)
        st = self.path.stat()
        self.stat, self.vectors, self.kept, self.dirty = (st.st_mtime_ns, st.st_size), view, len(self.labels), False

    def add(self, vectors: np.ndarray, ids: list[int]) -> None:
        """Insert vectors under their tile ids."""
        needed = self.index.get_current_count() + len(ids)
        capacity = self.index.get_max_elements()
        if needed > capacity:  # geometric growth keeps resizes rare
            self.index.resize_index(max(needed, capacity * 2))
        self.index.add_items(np.asarray(vectors, dtype=np.float32), np.asarray(ids, dtype=np.int64))
        self.labels.update(ids)
        self.dirty = True

    def hide(self, ids: list[int]) -> None:
        """Mark those of `ids` that live here deleted."""
        for i in ids:
            if i in self.labels:
                self.index.mark_deleted(i)
                self.labels.discard(i)
                self.dirty = True

    def knn(self, q: np.ndarray, k: int, filt: Any = None) -> list[tuple[int, float]] | None:
        """Top-k (id, cosine) by the graph, or None when the graph is too thinned by deletions for ef."""
        k = min(k, len(self.labels))
        if k <= 0:
            return []
        if self.index.ef < k:
            self.index.set_ef(k)
        try:
            labels, dists = self.index.knn_query(q, k=k, filter=filt)
        except RuntimeError:
            return None
        return [(int(label), float(1.0 - d)) for label, d in zip(labels[0], dists[0])]

    def gather_into(self, labels: np.ndarray, out: np.ndarray, todo: np.ndarray) -> None:
        """Fill rows of `out` whose label (in `labels`, flagged in `todo`) lives here; clear their flags.
        From the saved file's view where it has them, else from the index (slow, one by one)."""
        idx = np.flatnonzero(todo)
        if self.vectors is not None and len(idx):
            pos = self.vectors.positions(labels[idx])
            hit = pos >= 0
            out[idx[hit]] = self.vectors.vectors[pos[hit]]
            todo[idx[hit]] = False
            idx = idx[~hit]
        mine = [int(i) for i in idx if int(labels[i]) in self.labels]
        if mine:
            items = np.asarray(self.index.get_items([int(labels[i]) for i in mine]), dtype=np.float32)
            items = items.reshape(len(mine), -1)
            # the stored (unit) vector: chroma-hnswlib hands back v * |v| of what was added, hnswlib 0.8 v itself
            out[mine] = items / np.maximum(np.linalg.norm(items, axis=1, keepdims=True), 1e-12)
            todo[mine] = False
