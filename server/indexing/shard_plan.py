"""The shard-writing plan shared by both engines: rasters -> chunks (one shard each) -> read blocks -> tile rows
-> embeddings -> shards. The stage functions are plain Python so Ray Data (server/indexing/ray_engine.py) and the
in-process loop below run exactly the same code; only the executor differs.

Rows travel between stages as plain columns (bytes, ints, floats), never as open datasets or tensors, so
a stage can run in any process: rasterio is opened inside `read_block`, the model inside `Encoder`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import shapely
from rasterio.windows import Window

from harma_core import embed_images
from server.errors import InvalidRequest, ModelMismatch, ServerError
from server.indexing.shards import ShardMeta, raster_info_from_dict, read_meta, write_shard
from server.indexing.tiling import plan_windows, read_tile, tile_record
from server.store.records import RasterInfo, TileRecord, TilingParams

log = logging.getLogger(__name__)
READ_BLOCK = 32  # windows per read task: small enough to spread, big enough to amortise opening the file
_BOUNDS = ("left", "bottom", "right", "top")


def raster_key(path: str) -> str:
    """Short stable name of a raster for shard file names and tile ids."""
    return f"{Path(path).stem[:40]}-{hashlib.sha1(path.encode()).hexdigest()[:10]}"


def config_tag(identity: str, params: TilingParams) -> str:
    """Short hash of model identity and tiling: shards of other models or tilings never share a file name."""
    return hashlib.sha1(json.dumps([identity, params.to_dict()], sort_keys=True).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class Chunk:
    """A run of consecutive windows of one raster's plan, written as one shard."""

    info: RasterInfo
    part: int
    parts: int
    first: int  # position of windows[0] in the raster's window plan
    windows: tuple[tuple[int, int, int, int], ...]
    tag: str  # config_tag of the run

    @property
    def shard_name(self) -> str:
        """File name of this chunk's shard."""
        return f"{raster_key(self.info.path)}-{self.tag}-p{self.part:05d}of{self.parts:05d}.parquet"

    def blocks(self, chunk_id: int, size: int = READ_BLOCK) -> Iterator[dict[str, Any]]:
        """Read-stage input rows: the raster description travels as JSON, never an open file."""
        info = json.dumps(asdict(self.info))
        for s in range(0, len(self.windows), size):
            yield {"chunk": chunk_id, "info": info, "first": self.first + s,
                   "windows": json.dumps(self.windows[s:s + size])}


def plan_chunks(infos: Iterable[RasterInfo], shard_tiles: int, tag: str) -> list[Chunk]:
    """Cut every raster's window plan (the local engine's, in its order) into chunks of <= shard_tiles."""
    if shard_tiles < 1:
        raise InvalidRequest(f"shard_tiles={shard_tiles} must be at least 1")
    chunks = []
    for info in infos:
        wins = [(int(w.col_off), int(w.row_off), int(w.width), int(w.height)) for w in plan_windows(info)]
        parts = max(1, -(-len(wins) // shard_tiles))
        for p in range(parts):
            chunks.append(Chunk(info, p, parts, p * shard_tiles, tuple(wins[p * shard_tiles:(p + 1) * shard_tiles]),
                                tag))
    return chunks


def shard_meta(chunk: Chunk, model: dict[str, Any], params: TilingParams, nodata: int) -> ShardMeta:
    """The metadata a chunk's shard carries."""
    return ShardMeta(model=model, tiling=params.to_dict(), raster=asdict(chunk.info), part=chunk.part,
                     parts=chunk.parts, planned=len(chunk.windows), nodata=nodata)


def pending(chunks: list[Chunk], out_dir: Path, identity: str, params: TilingParams) -> list[int]:
    """Indexes of chunks without a valid shard yet (a shard of an older version of the raster is redone)."""
    todo = []
    for i, c in enumerate(chunks):
        path = out_dir / c.shard_name
        if path.exists():
            try:
                m = read_meta(path)
                if (m.model["identity"], TilingParams.recorded(m.tiling), m.info) == (identity, params, c.info):
                    continue
            except ServerError as e:
                log.warning("redoing shard %s: %s", path, e)
        todo.append(i)
    return todo


def read_block(row: dict[str, Any], out_side: int | None) -> list[dict[str, Any]]:
    """Read stage: the tiles of one read block as rows (pixels as bytes, footprint as WKB; nodata flagged)."""
    info = raster_info_from_dict(json.loads(row["info"]))
    out = []
    with rasterio.open(info.path) as ds:
        for i, win in enumerate(json.loads(row["windows"])):
            window = Window(*win)
            tile = read_tile(ds, info, window, out_side)
            rec = tile_record(info, window)
            out.append({
                "chunk": int(row["chunk"]), "index": int(row["first"]) + i, "nodata": tile is None,
                "h": 0 if tile is None else tile.shape[0], "w": 0 if tile is None else tile.shape[1],
                "pixels": b"" if tile is None else np.ascontiguousarray(tile, dtype=np.uint8).tobytes(),
                "footprint": b"" if rec.footprint is None else shapely.to_wkb(rec.footprint),
                **dict(zip(_BOUNDS, rec.bounds))})
    return out


class Encoder:
    """Encoder stage: a callable class (one model per actor) turning tile rows into embedding rows."""

    def __init__(self, model: str | Any, device: str = "auto", batch_size: int = 32, runtime: str = "torch",
                 threads: int | None = None, views: int = 1) -> None:
        if isinstance(model, str):  # in an actor: the same loader as tools/index.py (torch or ONNX Runtime)
            from harma_core.serving import load_model
            model = load_model(model, device=device, runtime=runtime, threads=threads)
        self.model = model
        self.batch_size, self.views = batch_size, views

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Embed the non-nodata rows; the pixels column is replaced by `embedding` (float32 bytes)."""
        keep = [i for i in range(len(batch["index"])) if not batch["nodata"][i]]
        images = [np.frombuffer(batch["pixels"][i], dtype=np.uint8).reshape(int(batch["h"][i]), int(batch["w"][i]), 3)
                  for i in keep]
        vecs = embed_images(self.model, images, batch_size=self.batch_size, views=self.views) if images else None
        emb = np.full(len(batch["index"]), b"", dtype=object)
        for j, i in enumerate(keep):
            emb[i] = vecs[j].tobytes()  # type: ignore[index]
        out = {k: v for k, v in batch.items() if k not in ("pixels", "h", "w")}
        out["embedding"] = emb
        out["identity"] = np.full(len(emb), self.model.identity, dtype=object)
        return out


class ShardCollector:
    """Driver side: gathers embedded rows per chunk (a retried task's rows count once) and writes each chunk's
    shard as soon as all its windows are in."""

    def __init__(self, chunks: list[Chunk], todo: list[int], out_dir: Path, model: dict[str, Any],
                 params: TilingParams, on_shard: Callable[[Path], None] | None = None) -> None:
        self.chunks, self.out_dir, self.model, self.params = chunks, out_dir, model, params
        self.rows: dict[int, dict[int, tuple[TileRecord | None, bytes]]] = {i: {} for i in todo}
        self.on_shard = on_shard
        self.tiles = self.nodata = self.duplicates = 0

    def add(self, batch: dict[str, Any]) -> int:
        """Take one batch of encoder output; returns how many new windows it completed."""
        new = 0
        if len(batch["index"]) and batch["identity"][0] != self.model["identity"]:
            raise ModelMismatch(f"an encoder worker loaded model {batch['identity'][0]!r} but this run is for "
                                f"{self.model['identity']!r}; install the same model files on every node")
        for j in range(len(batch["index"])):
            cid, idx = int(batch["chunk"][j]), int(batch["index"][j])
            rows = self.rows.get(cid)
            if rows is None or idx in rows:  # a retried task's row, or one of a chunk already written
                self.duplicates += 1
                continue
            chunk = self.chunks[cid]
            win = chunk.windows[idx - chunk.first]
            if batch["nodata"][j]:
                rows[idx] = (None, b"")
            else:
                wkb = batch["footprint"][j]
                rows[idx] = (TileRecord(chunk.info.path, win, chunk.info.crs,
                                        tuple(float(batch[k][j]) for k in _BOUNDS),  # type: ignore[arg-type]
                                        shapely.from_wkb(wkb) if len(wkb) else None), batch["embedding"][j])
            new += 1
            if len(rows) == len(chunk.windows):
                self._write(cid)
        return new

    def _write(self, cid: int) -> None:
        chunk, rows = self.chunks[cid], self.rows.pop(cid)
        order = sorted(rows)
        tiles = [(i, rows[i]) for i in order if rows[i][0] is not None]
        dim = int(self.model["dim"])
        vecs = np.frombuffer(b"".join(v for _, (_, v) in tiles), dtype=np.float32).reshape(len(tiles), dim)
        key = raster_key(chunk.info.path)
        nodata = len(order) - len(tiles)
        path = self.out_dir / chunk.shard_name
        write_shard(path, [r for _, (r, _) in tiles], [f"{key}:{i}" for i, _ in tiles],  # type: ignore[misc]
                    vecs, shard_meta(chunk, self.model, self.params, nodata))
        self.tiles += len(tiles)
        self.nodata += nodata
        if self.on_shard:
            self.on_shard(path)

    def check_done(self) -> None:
        """Fail, naming the chunks, if any planned window never arrived (the run can be resumed)."""
        if self.rows:
            names = [self.chunks[c].shard_name for c in sorted(self.rows)][:5]
            raise ServerError(f"{len(self.rows)} shard(s) incomplete ({', '.join(names)}); run the same command "
                              "again to resume")


def run_in_process(chunks: list[Chunk], todo: list[int], encoder: Encoder, collector: ShardCollector,
                   progress: Callable[[int], None] | None = None) -> None:
    """The local executor: the same read and encode stages, one after the other in this process."""
    out_side = getattr(encoder.model, "image_size", None)
    buffer: list[dict[str, Any]] = []

    def flush() -> None:
        batch = {k: np.array([r[k] for r in buffer], dtype=object) for k in buffer[0]}
        n = collector.add(encoder(batch))
        buffer.clear()
        if progress:
            progress(n)

    for cid in todo:
        for block in chunks[cid].blocks(cid):
            buffer.extend(read_block(block, out_side))
            if len(buffer) >= encoder.batch_size:
                flush()
    if buffer:
        flush()
    collector.check_done()
