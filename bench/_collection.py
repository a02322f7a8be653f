"""Synthetic collections for the search benchmark: clustered unit vectors, a footprint grid, exact top-k."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import hnswlib
import numpy as np

GRID_DEG = 0.01  # footprint side of one synthetic tile, in degrees
GRID_ORIGIN = (10.0, 40.0)  # lon, lat of the grid's south-west corner
SYNTHETIC_RASTER = "/synthetic/grid.tif"


def unit_vectors(n: int, dim: int, seed: int, dist: str = "clustered", centers: np.ndarray | None = None
                 ) -> np.ndarray:
    """n float32 unit rows. 'clustered': around random centres (like embeddings of similar scenes);
    'uniform': uniform on the sphere (the hardest case for a graph index)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    if dist == "clustered":
        if centers is None:
            raise ValueError("clustered vectors need the cluster centres")
        pick = rng.integers(0, len(centers), n)
        x = 0.6 * centers[pick] + 0.8 * x  # same-cluster cosine ~0.36, across clusters ~0
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    elif dist != "uniform":
        raise ValueError(f"dist={dist!r} must be 'clustered' or 'uniform'")
    return np.ascontiguousarray(x, dtype=np.float32)


def cluster_centres(n: int, dim: int, seed: int = 12345) -> np.ndarray:
    """About one centre per 200 vectors (at least 16), unit rows."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((max(16, n // 200), dim)).astype(np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def dataset(n: int, dim: int, n_queries: int, dist: str) -> tuple[np.ndarray, np.ndarray]:
    """(vectors, held-out queries) from the same distribution."""
    centres = cluster_centres(n, dim) if dist == "clustered" else None
    return (unit_vectors(n, dim, 1, dist, centres), unit_vectors(n_queries, dim, 2, dist, centres))


def build_index(vectors: np.ndarray, m: int, ef_construction: int, threads: int, first_label: int = 1
                ) -> tuple[hnswlib.Index, float]:
    """An hnswlib cosine index over vectors with labels first_label.. (tile ids start at 1); returns it and
    seconds."""
    index = hnswlib.Index(space="cosine", dim=vectors.shape[1])
    index.init_index(max_elements=len(vectors), M=m, ef_construction=ef_construction)
    index.set_num_threads(threads)
    t0 = time.perf_counter()
    index.add_items(vectors, np.arange(first_label, first_label + len(vectors), dtype=np.int64))
    return index, time.perf_counter() - t0


def exact_topk(vectors: np.ndarray, queries: np.ndarray, k: int, chunk: int = 200_000) -> np.ndarray:
    """Exact top-k labels (1-based, as in the index) by cosine, scanning vectors in chunks."""
    best_s = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), 0), dtype=np.int64)
    for s in range(0, len(vectors), chunk):
        sims = queries @ vectors[s:s + chunk].T
        part = np.argpartition(-sims, min(k, sims.shape[1] - 1), axis=1)[:, :k]
        best_s = np.concatenate([best_s, np.take_along_axis(sims, part, 1)], axis=1)
        best_i = np.concatenate([best_i, part + s + 1], axis=1)
        keep = np.argsort(-best_s, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
    return best_i


def recall_at_k(index: hnswlib.Index, queries: np.ndarray, truth: np.ndarray, k: int, ef: int
                ) -> tuple[float, float]:
    """(recall@k against exact search, mean milliseconds per single-query call) at search width ef."""
    index.set_ef(max(ef, k))
    index.set_num_threads(1)
    t0 = time.perf_counter()
    found = [index.knn_query(q[None], k=k)[0][0] for q in queries]
    ms = (time.perf_counter() - t0) / len(queries) * 1e3
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth))
    return hits / (k * len(queries)), ms


def exact_ms(vectors: np.ndarray, queries: np.ndarray, k: int, n: int = 20) -> float:
    """Mean milliseconds of one exact (numpy) top-k query over all vectors: the brute-force baseline."""
    t0 = time.perf_counter()
    for q in queries[:n]:
        s = vectors @ q
        np.argpartition(-s, k)[:k]
    return (time.perf_counter() - t0) / min(n, len(queries)) * 1e3


def grid_side(n: int) -> int:
    """Columns of the square footprint grid holding n tiles."""
    return math.ceil(math.sqrt(n))


def grid_bbox(n: int, fraction: float) -> list[float]:
    """A lon/lat box over about `fraction` of the grid's tiles, in its middle."""
    side = grid_side(n) * GRID_DEG
    half = side * math.sqrt(fraction) / 2
    cx, cy = GRID_ORIGIN[0] + side / 2, GRID_ORIGIN[1] + side / 2
    return [cx - half, cy - half, cx + half, cy + half]


def _records(start: int, stop: int, side: int) -> list[Any]:
    from shapely.geometry import box

    from server.store.records import TileRecord

    out = []
    for i in range(start, stop):
        r, c = divmod(i, side)
        left, bottom = GRID_ORIGIN[0] + c * GRID_DEG, GRID_ORIGIN[1] + r * GRID_DEG
        bounds = (left, bottom, left + GRID_DEG, bottom + GRID_DEG)
        out.append(TileRecord(SYNTHETIC_RASTER, (c * 256, r * 256, 256, 256), "EPSG:4326", bounds, box(*bounds)))
    return out


@dataclass
class Built:
    """A collection written to disk: its folder and the seconds each part took."""

    folder: Path
    rows_s: float
    save_s: float


def write_collection(root: Path, name: str, identity: str, model_name: str, index: hnswlib.Index | list[hnswlib.Index],
                     n: int, chunk: int = 20_000) -> Built:
    """A collection in the store's on-disk layout: Store.create, tile rows via its TileTable, index.bin.

    Labels of `index` must be 1..n: on a fresh table the AUTOINCREMENT ids are exactly those. A list of
    indexes is a sharded collection: shard j holds the j-th equal id range and is saved as the store does
    (index.bin, index-001.bin, ...), with the manifest's shard size to match.
    """
    from server.store.index_shard import next_shard_path
    from server.store.store import Store

    shards = index if isinstance(index, list) else [index]
    size = {"shard_tiles": max(s.element_count for s in shards)} if len(shards) > 1 else {}
    store = Store(root)
    col = store.create(name, SimpleNamespace(identity=identity, name=model_name, dim=shards[0].dim), **size)
    side = grid_side(n)
    t0 = time.perf_counter()
    for s in range(0, n, chunk):
        ids = col.table.insert_tiles(_records(s, min(n, s + chunk), side))
        if ids[0] != s + 1 or ids[-1] != min(n, s + chunk):
            raise RuntimeError(f"tile ids {ids[0]}..{ids[-1]} do not match index labels {s + 1}..")
    rows_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    path = col.folder / "index.bin"
    for shard in shards:
        shard.save_index(str(path))
        path = next_shard_path(path)
    save_s = time.perf_counter() - t0
    col.table.set_raster(SYNTHETIC_RASTER, 0, 0, "complete", {"synthetic": True}, tiles=n)
    col.table.set_extent()
    return Built(col.folder, rows_s, save_s)


def folder_bytes(folder: Path) -> dict[str, int]:
    """Bytes of each file of a collection folder, and their total."""
    sizes = {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file()}
    return {**sizes, "total": sum(sizes.values())}
