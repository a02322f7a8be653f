"""Tile reading off the encoder's process: chunks of windows read by a pool of worker processes.

Each worker keeps its rasterio handles open between chunks (one per raster, keyed by path, size and mtime,
so a changed file is reopened), reads and decimates the tiles and computes their records (footprints
included), all outside the encoding process and its GIL. Results come back in submission order with a
bounded read-ahead, so batches and tile ids are exactly those of a serial read. With 0 workers the same
chunks are read inline (small jobs, where starting workers would cost more than it saves).
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import rasterio
from rasterio.windows import Window

from server.indexing.tiling import read_tile, tile_record
from server.store.records import RasterInfo, TileRecord

log = logging.getLogger(__name__)
MAX_HANDLES = 8  # open rasters per worker; the least recently used is closed first
INLINE_BELOW = 256  # jobs with fewer tiles are read inline: a pool would cost more than it saves


@dataclass
class Chunk:
    """Consecutive windows of one raster; `last` marks the raster's final chunk."""

    info: RasterInfo
    windows: list[Window]
    last: bool


@dataclass
class ChunkResult:
    """Tiles read in window order, windows that were all nodata, and the failure that ended the chunk."""

    tiles: list[tuple[TileRecord, np.ndarray]] = field(default_factory=list)
    nodata: int = 0
    error: str | None = None


_HANDLES: OrderedDict[tuple[str, int, int], rasterio.DatasetReader] = OrderedDict()


def _dataset(info: RasterInfo, handles: OrderedDict) -> rasterio.DatasetReader:
    key = (info.path, info.size, info.mtime_ns)
    ds = handles.pop(key, None) or rasterio.open(info.path)
    handles[key] = ds
    while len(handles) > MAX_HANDLES:
        handles.popitem(last=False)[1].close()
    return ds


def read_chunk(info: RasterInfo, windows: list[Window], out_side: int | None,
               handles: OrderedDict | None = None) -> ChunkResult:
    """Read one chunk (in a worker: with that worker's open handles); stops at the first failing window."""
    out = ChunkResult()
    if not windows:
        return out
    try:
        ds = _dataset(info, _HANDLES if handles is None else handles)
        for window in windows:
            tile = read_tile(ds, info, window, out_side)
            if tile is None:
                out.nodata += 1
            else:
                out.tiles.append((tile_record(info, window), tile))
    except Exception as e:  # one bad raster must not end the whole run
        log.warning("reading %s failed", info.path, exc_info=True)
        out.error = (f"reading failed part-way ({type(e).__name__}: {e}); tiles read before the failure are "
                     "kept, re-add the raster to retry")
    return out


def chunks(plans: Iterable[tuple[RasterInfo, list[Window]]], size: int) -> Iterator[Chunk]:
    """Cut each raster's windows into chunks of `size`; a raster with no windows left still gets its last one."""
    for info, windows in plans:
        if not windows:
            yield Chunk(info, [], True)
        for start in range(0, len(windows), size):
            yield Chunk(info, windows[start:start + size], start + size >= len(windows))


def default_workers(total_tiles: int) -> int:
    """$HARMA_READ_WORKERS, else none for small jobs, else one per core but one (at most 4)."""
    env = os.environ.get("HARMA_READ_WORKERS")
    if env is not None:
        return max(0, int(env))
    if total_tiles < INLINE_BELOW:
        return 0
    return min(4, max(1, (os.cpu_count() or 1) - 1))


PARENT_POLL_S = 0.5  # how often a worker checks that the indexing process still lives


def _alive(pid: int) -> bool:
    """True while process `pid` runs. On Windows os.kill(pid, 0) would terminate it: ask the kernel instead."""
    if os.name == "nt":
        import ctypes

        kernel = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        try:
            ok = kernel.GetExitCodeProcess(handle, ctypes.byref(code))
        finally:
            kernel.CloseHandle(handle)
        return bool(ok) and code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def watch_parent(main_pid: int) -> None:
    """Pool initializer: end this worker when the indexing process is gone. A SIGKILLed parent runs no atexit
    and the workers' queue never reaches EOF (they hold its ends too), so they watch: the forkserver that forked
    them exits with the parent, which re-parents them; a polling thread sees either and exits."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            if os.getppid() != parent or not _alive(main_pid):
                os._exit(0)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


_POOL: dict[str, ProcessPoolExecutor | int] = {}
_POOL_LOCK = threading.Lock()


def _executor(workers: int) -> ProcessPoolExecutor:
    """The process-wide pool (kept between indexing runs: workers and their imports are paid once)."""
    with _POOL_LOCK:
        pool = _POOL.get("pool")
        if isinstance(pool, ProcessPoolExecutor) and _POOL.get("workers") == workers:
            return pool
        if isinstance(pool, ProcessPoolExecutor):
            pool.shutdown(wait=False, cancel_futures=True)
        # forkserver: workers fork from a clean server, never from this process's ORT threads; Windows and
        # macOS builds without it spawn fresh interpreters instead
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        ctx = multiprocessing.get_context(method)
        if method == "forkserver":
            ctx.set_forkserver_preload(["server.indexing.tile_reader"])
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=watch_parent,
                                   initargs=(os.getpid(),))
        _POOL.update(pool=pool, workers=workers)
        return pool


def _drop(broken: ProcessPoolExecutor) -> None:
    with _POOL_LOCK:
        if _POOL.get("pool") is broken:
            _POOL.clear()
    broken.shutdown(wait=False, cancel_futures=True)


@atexit.register
def shutdown() -> None:
    """Stop the worker processes (also at interpreter exit)."""
    with _POOL_LOCK:
        pool = _POOL.pop("pool", None)
        _POOL.clear()
    if isinstance(pool, ProcessPoolExecutor):
        pool.shutdown(wait=True, cancel_futures=True)


def read_chunks(todo: Iterable[Chunk], out_side: int | None, workers: int,
                stop: threading.Event) -> Iterator[tuple[Chunk, ChunkResult]]:
    """Each chunk with its result, in order; up to 2 chunks per worker are read ahead."""
    if workers <= 0:
        handles: OrderedDict = OrderedDict()
        try:
            for chunk in todo:
                if stop.is_set():
                    return
                yield chunk, read_chunk(chunk.info, chunk.windows, out_side, handles)
        finally:
            for ds in handles.values():
                ds.close()
        return
    pool = _executor(workers)
    pending: deque[tuple[Chunk, Future]] = deque()
    source = iter(todo)
    try:
        while True:
            while len(pending) < 2 * workers and not stop.is_set():
                chunk = next(source, None)
                if chunk is None:
                    break
                pending.append((chunk, pool.submit(read_chunk, chunk.info, chunk.windows, out_side)))
            if not pending or stop.is_set():
                return
            chunk, fut = pending.popleft()
            try:
                result = fut.result()
            except Exception as e:  # a worker died (e.g. killed): the pool is rebuilt on next use
                _drop(pool)
                result = ChunkResult(error=f"the tile reader process failed ({type(e).__name__}: {e}); "
                                           "re-add the raster to retry")
                yield chunk, result
                for rest in (c for c, _ in pending):  # their futures died with the pool
                    yield rest, ChunkResult(error=result.error)
                pending.clear()
                yield from read_chunks(source, out_side, 0, stop)  # the other rasters: read inline
                return
            yield chunk, result
    finally:
        for _, fut in pending:
            fut.cancel()
