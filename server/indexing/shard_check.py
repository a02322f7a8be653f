"""What an import checks of every shard before anything is written: rows that belong to the shard's raster, tile
ids and windows unique across all shards given, vectors finite, unit length and of the collection's dimension."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from server.errors import InvalidRequest
from server.indexing.shards import ShardMeta, read_tiles

UNIT_TOLERANCE = 1e-3  # encoders write L2-normalised float32 vectors; anything further off is not one of ours


class ShardChecker:
    """Reads each shard once and refuses it, naming the file and the row, when its contents would corrupt a
    collection; remembers tile ids and windows so repeats across shards are refused too."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self._keys: dict[str, Path] = {}
        self._windows: dict[tuple[str, tuple[int, int, int, int]], Path] = {}

    def check(self, path: Path, meta: ShardMeta) -> None:
        """Refuse the shard (InvalidRequest) unless every row is sound and new among the shards checked."""
        if int(meta.model["dim"]) != self.dim:
            raise InvalidRequest(f"shard {path} holds {meta.model['dim']}-dimensional vectors but the collection "
                                 f"uses {self.dim}; import it into a collection of its model")
        records, keys, vectors = read_tiles(path)
        if vectors.shape[1] != self.dim:
            raise InvalidRequest(f"shard {path}: its embedding column holds vectors of length {vectors.shape[1]}, "
                                 f"its metadata and the collection say {self.dim}; re-write the shard")
        bad = ~np.isfinite(vectors).all(axis=1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InvalidRequest(f"shard {path}: {int(bad.sum())} embedding(s) hold NaN or Infinity (first: row "
                                 f"{i}, tile {keys[i]!r}); re-embed those tiles, nothing was imported")
        norms = np.linalg.norm(vectors, axis=1)
        off = np.abs(norms - 1.0) > UNIT_TOLERANCE
        if off.any():
            i = int(np.flatnonzero(off)[0])
            raise InvalidRequest(f"shard {path}: {int(off.sum())} embedding(s) are not unit length (row {i} has "
                                 f"norm {norms[i]:.4g}); shards hold L2-normalised vectors, re-embed them")
        raster = meta.raster["path"]
        for i, (rec, key) in enumerate(zip(records, keys)):
            if not isinstance(key, str) or not key:
                raise InvalidRequest(f"shard {path}: row {i} has no tile_id; re-write the shard")
            if rec.raster != raster:
                raise InvalidRequest(f"shard {path}: row {i} is a tile of {rec.raster!r}, but the shard is of "
                                     f"{raster!r}; re-write the shard")
            if min(rec.window[2:]) < 1 or min(rec.window[:2]) < 0:
                raise InvalidRequest(f"shard {path}: row {i} has window {list(rec.window)}; re-write the shard")
            for seen, item, what in ((self._keys, key, f"tile id {key!r}"),
                                     (self._windows, (raster, rec.window), f"window {list(rec.window)}")):
                if item in seen:
                    where = "earlier in this shard" if seen[item] == path else f"in {seen[item]}"
                    raise InvalidRequest(f"shard {path}: {what} of row {i} repeats one {where}; a shard holds "
                                         "each tile once: remove the repeated rows or re-write the shard")
                seen[item] = path
        if len(keys) != meta.planned - meta.nodata:
            raise InvalidRequest(f"shard {path} holds {len(keys)} rows but its metadata plans {meta.planned} "
                                 f"windows with {meta.nodata} nodata; re-write the shard")
