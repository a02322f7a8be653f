"""The collection an indexing run writes into: opened, or created with the run's tiling (CLI and engines)."""

from __future__ import annotations

from typing import Any

from server.errors import Conflict
from server.store.records import TilingParams
from server.store.store import Collection, Store


def open_or_create(store: Store, name: str, model: Any, params: dict[str, Any],
                   index_shard_tiles: int | None = None, source: str | None = None) -> Collection:
    """The named collection, created with `params` (and index shards of `index_shard_tiles` tiles, the model's
    `source` recorded) when new; given params must match an existing one."""
    if name not in store.names():
        return store.create(name, model, TilingParams.from_dict(params), source=source,
                            **({} if index_shard_tiles is None else {"shard_tiles": index_shard_tiles}))
    col = store.get(name)
    if index_shard_tiles is not None and index_shard_tiles != col.shard_tiles:
        raise Conflict(f"collection {name!r} exists with index shards of {col.shard_tiles} tiles; drop "
                       "--index-shard-tiles or index into a new collection")
    wanted = TilingParams.from_dict({**col.params.to_dict(), **params})
    if wanted != col.params:
        raise Conflict(f"collection {name!r} exists with tiling {col.params.to_dict()}; drop the tiling options "
                       "or index into a new collection")
    return col
