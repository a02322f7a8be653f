"""Read-only, memory-mapped view of the vectors inside a saved hnswlib index file, gathered by label.

`hnswlib.Index.get_items` copies one vector at a time (~65 µs each). The saved index.bin holds the same
(normalised) float32 rows at a fixed stride, so a read-only memory map of that file gathers hundreds of them in
well under a millisecond, with no second copy in RAM and nothing new to write or keep crash-safe: the view is of
the very file the index was loaded from or saved to. Its pages are the kernel's clean, reclaimable file cache;
those that searches touch count in the process's RSS as RssFile (not RssAnon). The layout is
hnswlib 0.8's `HierarchicalNSW::saveIndex`; it is checked against the live index (header, labels, sample
vectors), and on any doubt there is no view and callers fall back to `get_items`.

Two builds of the library write two flavours of that layout: hnswlib 0.8 (PyPI sdist only) writes it as is;
chroma-hnswlib 0.7.5/0.7.6 (wheels for Windows, macOS and Linux; module `hnswlib`) writes the same bytes plus one
float32 norm per element right after the level-0 block. Both are read here, and `loadable` hands the library
a copy in its own flavour when a file was written by the other build, so collections move between them unchanged
(the norms of unit vectors are 1).
"""

from __future__ import annotations

import contextlib
import functools
import mmap
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

# offsetLevel0, max_elements, cur_element_count, size_data_per_element, label_offset, offsetData (size_t),
# maxlevel (int), enterpoint_node (uint32), maxM, maxM0, M (size_t), mult (double), ef_construction (size_t)
_HEADER = struct.Struct("<QQQQQQiIQQQdQ")
_LINKS = struct.Struct("<I")
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
        if os.name == "nt":  # a mapped file cannot be replaced on Windows: saves would fail; gather with get_items
            return None
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
                expect = expect / max(float(np.linalg.norm(expect)), 1e-12)  # chroma-hnswlib: v * |v| given back
            except RuntimeError:  # a deleted label: get_items refuses it
                continue
            if not np.allclose(vectors[pos], expect, rtol=1e-5, atol=1e-6):
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


def _links_end(buf: mmap.mmap, pos: int, count: int, links: int, size: int) -> int:
    """Where the per-element link lists starting at `pos` end (size + 1 when they run past the file, -1 when one
    is not whole links): each element is a uint32 byte count, then its link lists."""
    for _ in range(count if pos <= size else 0):
        if pos + 4 > size:
            return size + 1
        (n,) = _LINKS.unpack_from(buf, pos)
        if n % links:
            return -1
        pos += 4 + n
    return pos


_NORMS: dict[tuple[int, int], bool] = {}  # (inode, size) -> flavour, as check_file found it


def has_norms(path: Path) -> bool:
    """True when the index file carries chroma-hnswlib's block of per-element norms (check_file it first)."""
    st = path.stat()
    key = (st.st_ino, st.st_size)
    if key not in _NORMS:
        with open(path, "rb") as f:
            check_file(f.fileno(), _dim_of(f), name=path.name)
    return _NORMS[key]


def _dim_of(f: Any) -> int:
    _, _, _, _, label_off, data_off, *_ = _HEADER.unpack_from(f.read(_HEADER.size), 0)
    f.seek(0)
    return (label_off - data_off) // 4


@functools.cache
def library_writes_norms() -> bool:
    """Whether the installed `hnswlib` module (hnswlib or chroma-hnswlib) saves the norms block."""
    import hnswlib

    with tempfile.TemporaryDirectory() as tmp:
        index = hnswlib.Index(space="cosine", dim=4)
        index.init_index(max_elements=2, M=4, ef_construction=8)
        index.add_items(np.eye(4, dtype=np.float32)[:2], np.arange(2))
        index.save_index(str(Path(tmp) / "probe.bin"))
        return has_norms(Path(tmp) / "probe.bin")


@contextlib.contextmanager
def loadable(path: Path) -> Iterator[Path]:
    """`path`, or a temporary copy in the installed library's flavour when the file is of the other one."""
    norms = has_norms(path)
    if norms == library_writes_norms():
        yield path
        return
    with open(path, "rb") as f:
        _, _, count, per_row, *_ = _HEADER.unpack_from(f.read(_HEADER.size), 0)
    start = _HEADER.size + count * per_row
    with tempfile.TemporaryDirectory(prefix="harma-index-") as tmp:
        copy = Path(tmp) / path.name
        with open(path, "rb") as src, open(copy, "wb") as dst:
            dst.write(src.read(start))
            if norms:
                src.seek(4 * count, os.SEEK_CUR)  # drop the norms
            else:
                dst.write(np.ones(count, dtype="<f4").tobytes())  # unit vectors: every norm is 1
            shutil.copyfileobj(src, dst)
        yield copy


class IndexFileError(ValueError):
    """A saved index file that is truncated, damaged or of another dimension; `kind` says which."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # truncated | layout | dimension


def check_file(fd: int, dim: int, name: str = "index.bin") -> int:
    """Check the file open at fd against hnswlib 0.8's layout for `dim`-dimensional vectors, down to its exact
    length (the walk hnswlib's own loader does), before hnswlib reads it: hnswlib trusts the header, and a wrong
    dimension corrupts its heap. Returns the number of elements."""
    size = os.fstat(fd).st_size
    if size < _HEADER.size:
        raise IndexFileError("truncated", f"{name} is truncated: {size} bytes, less than its {_HEADER.size}-byte header")
    with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as buf:
        (off0, max_elements, count, per_row, label_off, data_off, max_level, enter, max_m, max_m0, m, _, _
         ) = _HEADER.unpack_from(buf, 0)
        if (off0 != 0 or not 2 <= m <= 4096 or max_m != m or max_m0 != 2 * m or data_off != max_m0 * 4 + 4
                or label_off <= data_off or (label_off - data_off) % 4 or per_row != label_off + 8
                or count > max_elements or (count and (enter >= count or not 0 <= max_level < 256))):
            raise IndexFileError("layout", f"{name} is not an hnswlib index as this server writes them (damaged, "
                                           "or written by another program)")
        if label_off - data_off != dim * 4:
            raise IndexFileError("dimension", f"{name} holds {(label_off - data_off) // 4}-dimensional vectors but "
                                              f"manifest.json says {dim}")
        start, links = _HEADER.size + count * per_row, max_m * 4 + 4
        pos = _links_end(buf, start, count, links, size)
        if pos != size and _links_end(buf, start + 4 * count, count, links, size) == size:
            pos, norms = size, True  # chroma-hnswlib's flavour
        else:
            norms = False
        if pos < 0:
            raise IndexFileError("layout", f"{name} is damaged: a link list whose length is not whole links")
    if pos > size:
        raise IndexFileError("truncated", f"{name} is truncated: {size} bytes, too few for the {count} vectors "
                                          "its header announces")
    if pos != size:
        raise IndexFileError("layout", f"{name} is {size} bytes but its {count} vectors and links take {pos}")
    _NORMS[(os.fstat(fd).st_ino, size)] = norms
    return int(count)
