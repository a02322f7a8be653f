"""Read-only, memory-mapped view of the vectors inside a saved hnswlib index file, gathered by label.

`hnswlib.Index.get_items` copies one vector at a time (~65 µs each). The saved index.bin holds the same
(normalised) float32 rows at a fixed stride, so a read-only memory map of that file gathers hundreds of them in
well under a millisecond, with no second copy in RAM and nothing new to write or keep crash-safe: the view is of
the very file the index was loaded from or saved to. Its pages are the kernel's clean, reclaimable file cache;
those that searches touch count in the process's RSS as RssFile (not RssAnon). The layout is
hnswlib 0.8's `HierarchicalNSW::saveIndex`; it is checked against the live index (header, labels, sample
vectors), and on any doubt there is no view and callers fall back to `get_items`.
"""

from __future__ import annotations

import mmap
import os
import struct
from typing import Any

import numpy as np

# offsetLevel0, max_elements, cur_element_count, size_data_per_element, label_offset, offsetData (size_t),
# maxlevel (int), enterpoint_node (uint32), maxM, maxM0, M (size_t), mult (double), ef_construction (size_t)
_HEADER = struct.Struct("<QQQQQQiIQQQdQ")
_SAMPLES = 16  # vectors compared with get_items when a view is opened
_CHUNK = 1 << 16  # rows whose labels are read before their pages are released


class VectorFile:
    """Rows of a saved index by label; labels absent from the file map to position -1."""

    def __init__(self, buf: mmap.mmap, vectors: np.ndarray, labels: np.ndarray) -> None:
        self._buf = buf  # keeps the mapping alive as long as the view
        self.vectors = vectors  # (count, dim) float32 view, strided over the file
        self._order = np.argsort(labels, kind="stable")
        self._sorted = labels[self._order]

    def __len__(self) -> int:
        return len(self._sorted)

    @classmethod
    def open(cls, fd: int, index: Any, ids: np.ndarray) -> VectorFile | None:
        """A view of the index file open at fd, or None when it does not match `index` (loaded from or saved
        to that file; `ids` is its `get_ids_list()`) exactly."""
        size = os.fstat(fd).st_size
        if size < _HEADER.size:
            return None
        try:
            buf = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return None
        (off0, _, count, per_row, label_off, data_off, _, _, _, max_m0, m, _, _) = _HEADER.unpack_from(buf, 0)
        dim = int(index.dim)
        if (count == 0 or off0 != 0 or count != index.element_count or count != len(ids) or m != index.M
                or data_off != max_m0 * 4 + 4 or label_off != data_off + dim * 4 or per_row != label_off + 8
                or size < _HEADER.size + count * (per_row + 4)):
            return None
        vectors = np.ndarray((count, dim), dtype="<f4", buffer=buf, offset=_HEADER.size + data_off,
                             strides=(per_row, 4))
        strided = np.ndarray((count,), dtype="<u8", buffer=buf, offset=_HEADER.size + label_off,
                             strides=(per_row,))
        labels = np.empty(count, dtype=np.int64)
        for start in range(0, count, _CHUNK):
            stop = min(count, start + _CHUNK)
            labels[start:stop] = strided[start:stop]
            if hasattr(mmap, "MADV_DONTNEED"):  # reading labels touches every page: keep them out of our RSS
                low = (_HEADER.size + start * per_row) // mmap.PAGESIZE * mmap.PAGESIZE
                buf.madvise(mmap.MADV_DONTNEED, low, _HEADER.size + stop * per_row - low)
        view = cls(buf, vectors, labels)
        if not np.array_equal(view._sorted, np.sort(np.asarray(ids, dtype=np.int64))):
            return None
        for pos in np.unique(np.linspace(0, count - 1, min(count, _SAMPLES)).astype(np.int64)):
            try:
                expect = np.asarray(index.get_items([int(labels[pos])]), dtype=np.float32)[0]
            except RuntimeError:  # a deleted label: get_items refuses it
                continue
            if not np.array_equal(vectors[pos], expect):
                return None
        return view

    def positions(self, labels: np.ndarray) -> np.ndarray:
        """Row of each label in the file, -1 where the label is not in it."""
        i = np.minimum(np.searchsorted(self._sorted, labels), len(self._sorted) - 1)
        return np.where(self._sorted[i] == labels, self._order[i], -1)

    def row(self, label: int) -> np.ndarray | None:
        """A copy of one label's vector, None when the label is not in the file."""
        pos = int(self.positions(np.array([label], dtype=np.int64))[0])
        return np.array(self.vectors[pos]) if pos >= 0 else None
