"""Embedding pipeline: a reader thread (fed by tile-reading processes) batches tiles while the caller's
thread encodes them."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from harma_core import embed_images
from server.errors import RasterError, ServerError
from server.indexing.tile_reader import chunks, default_workers, read_chunks
from server.indexing.tiling import inspect_raster, plan_windows
from server.store.records import RasterInfo, TileRecord
from server.store.store import Collection

log = logging.getLogger(__name__)
_QUEUE_BATCHES = 4  # batches read ahead; bounds memory while keeping the encoder fed


@dataclass
class Progress:
    """Tiles done/total, throughput and estimated time left; `raster` is the one being read."""

    done: int = 0
    total: int = 0
    tiles_per_s: float = 0.0
    eta_s: float | None = None
    raster: str | None = None


@dataclass
class IndexReport:
    """Outcome of one indexing run."""

    rasters: int = 0  # rasters fully indexed by this run
    unchanged: int = 0  # rasters already indexed with the same size and mtime (no-op)
    tiles: int = 0  # tiles embedded and stored by this run
    nodata_tiles: int = 0  # windows skipped because every pixel was nodata/masked
    skipped: list[dict[str, str]] = field(default_factory=list)  # {raster, reason}
    seconds: float = 0.0
    tiles_per_s: float = 0.0
    cancelled: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass
class _Plan:
    info: RasterInfo
    windows: list


class _Cancelled(Exception):
    pass


def _plan(collection: Collection, paths: Sequence[str], report: IndexReport) -> list[_Plan]:
    """Inspect each raster once, skip unchanged or unusable ones, and list the windows still to do."""
    plans = []
    params = collection.params
    for given in paths:
        path = os.path.realpath(given)  # one spelling per file, so re-adding is recognised
        try:
            st = os.stat(path)
            if collection.is_unchanged(path, st.st_size, st.st_mtime_ns):
                report.unchanged += 1
                continue
            info = inspect_raster(path, params)
        except (RasterError, OSError) as e:
            report.skipped.append({"raster": path, "reason": getattr(e, "detail", str(e))})
            continue
        done = collection.begin_raster(info)
        todo = [w for w in plan_windows(info)
                if (int(w.col_off), int(w.row_off), int(w.width), int(w.height)) not in done]
        plans.append(_Plan(info, todo))
    return plans


@dataclass
class _Batch:
    """Tiles to encode (possibly from several rasters) and the rasters whose last tiles they hold."""

    records: list[TileRecord] = field(default_factory=list)
    pixels: list[np.ndarray] = field(default_factory=list)
    nodata: dict[str, int] = field(default_factory=dict)
    ended: list[RasterInfo] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)


def _reader(plans: list[_Plan], batch_size: int, out_side: int | None, out: queue.Queue,
            stop: threading.Event, workers: int) -> None:
    """Read tiles (in worker processes when workers > 0) into full batches that may span rasters, in plan
    order; None marks the end of the stream. A raster whose read fails keeps the tiles read before."""

    def put(item: _Batch | None) -> None:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.2)
                return
            except queue.Full:
                continue
        raise _Cancelled

    batch = _Batch()
    failed: set[str] = set()
    try:
        todo = chunks(((p.info, p.windows) for p in plans), max(1, batch_size))
        for chunk, result in read_chunks(todo, out_side, workers, stop):
            info = chunk.info
            if info.path in failed:
                continue  # chunks read ahead after the failing one
            if result.nodata:
                batch.nodata[info.path] = batch.nodata.get(info.path, 0) + result.nodata
            for record, tile in result.tiles:
                batch.records.append(record)
                batch.pixels.append(tile)
                if len(batch.records) >= batch_size:
                    put(batch)
                    batch = _Batch()
            if result.error:
                failed.add(info.path)
                batch.errors.append((info.path, result.error))
            elif chunk.last:
                batch.ended.append(info)
            if sum(batch.nodata.values()) >= batch_size:  # so progress moves through long nodata stretches
                put(batch)
                batch = _Batch()
        if stop.is_set():
            raise _Cancelled
        put(batch)
        put(None)
    except _Cancelled:
        pass


def index_rasters(collection: Collection, model: Any, paths: Sequence[str], *, batch_size: int = 32,
                  progress: Callable[[Progress], None] | None = None,
                  cancel: threading.Event | None = None, read_workers: int | None = None) -> IndexReport:
    """Index raster files into a collection (resumable, incremental); returns what was done and skipped.

    `read_workers` tile-reading processes (default: server.indexing.tile_reader.default_workers, 0 = read in a thread).
    """
    if batch_size < 1:
        raise ServerError(f"batch_size={batch_size} must be at least 1")
    cancel = cancel or threading.Event()
    report = IndexReport()
    t0 = time.perf_counter()
    views = collection.params.views
    with collection.writing(model.identity):
        plans = _plan(collection, paths, report)
        prog = Progress(total=sum(len(p.windows) for p in plans))
        if progress:
            progress(prog)
        q: queue.Queue = queue.Queue(maxsize=_QUEUE_BATCHES)
        stop = threading.Event()
        reader = threading.Thread(target=_reader, name="tile-reader", daemon=True,
                                  args=(plans, batch_size, getattr(model, "image_size", None), q, stop,
                                        default_workers(prog.total) if read_workers is None else read_workers))
        reader.start()
        skipped_nodata: dict[str, int] = {}
        t_encode = time.perf_counter()
        try:
            while True:
                if cancel.is_set():
                    report.cancelled = True
                    break
                try:
                    batch = q.get(timeout=0.2)
                except queue.Empty:
                    if not reader.is_alive():
                        break
                    continue
                if batch is None:
                    break
                if batch.records:
                    prog.raster = batch.records[-1].raster
                    collection.add_tiles(batch.records, embed_images(model, batch.pixels, batch_size=batch_size,
                                                                     views=views))
                report.tiles += len(batch.records)
                for path, n in batch.nodata.items():
                    skipped_nodata[path] = skipped_nodata.get(path, 0) + n
                    report.nodata_tiles += n
                prog.done += len(batch.records) + sum(batch.nodata.values())
                elapsed = time.perf_counter() - t_encode
                prog.tiles_per_s = prog.done / elapsed if elapsed > 0 else 0.0
                prog.eta_s = (prog.total - prog.done) / prog.tiles_per_s if prog.tiles_per_s else None
                if progress:
                    progress(prog)
                for info in batch.ended:
                    collection.finish_raster(info, skipped_nodata.get(info.path, 0))
                    if collection.table.windows_of(info.path):
                        report.rasters += 1
                    else:
                        report.skipped.append({"raster": info.path,
                                               "reason": "every tile is nodata or masked; nothing to index"})
                report.skipped += [{"raster": path, "reason": reason} for path, reason in batch.errors]
        finally:
            stop.set()
            reader.join()
    report.seconds = time.perf_counter() - t0
    report.tiles_per_s = report.tiles / report.seconds if report.seconds > 0 else 0.0
    return report
