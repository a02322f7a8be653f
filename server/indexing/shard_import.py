"""Build or extend a collection from GeoParquet shards: idempotent, resumable, refusing foreign shards."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from server.errors import InvalidRequest, NotFound
from server.indexing.shard_check import ShardChecker
from server.indexing.shards import ShardMeta, check_compatible, read_meta, read_tiles
from server.store.collection import Collection
from server.store.records import TilingParams
from server.store.store import Store


@dataclass
class ImportReport:
    """What one import did."""

    rasters: int = 0  # rasters whose tiles this run added
    unchanged: int = 0  # rasters already imported from the same shards (skipped)
    tiles: int = 0
    nodata_tiles: int = 0
    incomplete: list[str] = field(default_factory=list)  # rasters with missing parts (not imported)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def find_shards(paths: Sequence[str | Path]) -> list[Path]:
    """Shard files from files and folders (non-recursive *.parquet), sorted within each folder."""
    out: list[Path] = []
    for given in paths:
        p = Path(given).expanduser().resolve()
        if p.is_dir():
            out.extend(sorted(f for f in p.glob("*.parquet") if not f.name.startswith(".")))
        elif p.is_file():
            out.append(p)
        else:
            raise NotFound(f"{given} does not exist; give shard files (.parquet) or folders holding them")
    return list(dict.fromkeys(out))


def _group(shards: list[Path]) -> dict[str, list[tuple[Path, ShardMeta]]]:
    """Shards by raster, parts in order; one set per raster (the most recent file version wins)."""
    sets: dict[tuple[str, int, int, int], list[tuple[Path, ShardMeta]]] = {}
    for path in shards:
        m = read_meta(path)
        sets.setdefault((m.raster["path"], m.raster["size"], m.raster["mtime_ns"], m.parts), []).append((path, m))
    by_raster: dict[str, list[tuple[Path, ShardMeta]]] = {}
    for (raster, _, mtime, _), parts in sorted(sets.items(), key=lambda kv: kv[0][2]):
        if raster not in by_raster or mtime >= by_raster[raster][0][1].raster["mtime_ns"]:
            by_raster[raster] = sorted(parts, key=lambda pm: pm[1].part)
    return by_raster


def _collection(store: Store, name: str, first: tuple[Path, ShardMeta], index_shard_tiles: int | None) -> Collection:
    """The target collection, created from the first shard's model and tiling when new."""
    path, meta = first
    if name in store.names():
        return store.get(name)  # each shard is checked against its model and tiling next
    model = SimpleNamespace(identity=meta.model["identity"], name=meta.model["name"], dim=int(meta.model["dim"]))
    extra = {} if index_shard_tiles is None else {"shard_tiles": index_shard_tiles}
    return store.create(name, model, TilingParams.recorded(meta.tiling), **extra)


def _check_all(store: Store, name: str, first: tuple[Path, ShardMeta],
               groups: dict[str, list[tuple[Path, ShardMeta]]]) -> None:
    """Refuse the import, before any write, when a shard is of another model or tiling than the collection (or,
    for a new collection, than the first shard), or holds rows a collection must not take (shard_check)."""
    if name in store.names():
        col = store.get(name)
        identity, params, dim = col.identity, col.params, int(col.manifest["model"]["dim"])
    else:
        meta = first[1]
        identity, params, dim = meta.model["identity"], TilingParams.recorded(meta.tiling), int(meta.model["dim"])
    checker = ShardChecker(dim)
    for parts in groups.values():
        for path, meta in parts:
            check_compatible(meta, path, identity, params)
        if [m.part for _, m in parts] != list(range(parts[0][1].parts)):
            continue  # incomplete: reported, not imported
        for path, meta in parts:
            checker.check(path, meta)


def import_shards(store: Store, name: str, shards: Sequence[Path], order: Sequence[str] | None = None,
                  progress: Callable[[int], None] | None = None,
                  index_shard_tiles: int | None = None) -> ImportReport:
    """Add the shards' tiles to collection `name`, rasters in `order` (default: by path), parts in order.

    Rasters already complete with the same size and mtime are skipped; a raster imported part-way resumes
    from the windows it lacks. Every shard is read and checked first (model, tiling, dimension, finite unit
    vectors, unique tile ids and windows): a bad one refuses the whole import before anything is written.
    """
    if not shards:
        raise InvalidRequest("no shards to import; give .parquet shard files or folders holding them")
    groups = _group(list(shards))
    first = next(iter(groups.values()))[0]
    _check_all(store, name, first, groups)  # every shard read and checked: nothing is written on a bad one
    col = _collection(store, name, first, index_shard_tiles)
    rasters = [r for r in (order or []) if r in groups] + sorted(set(groups) - set(order or []))
    report = ImportReport()
    with col.writing(col.identity):
        for raster in rasters:
            parts = groups[raster]
            info = parts[0][1].info
            if [m.part for _, m in parts] != list(range(parts[0][1].parts)):
                report.incomplete.append(raster)
                continue
            if col.is_unchanged(raster, info.size, info.mtime_ns):
                report.unchanged += 1
                continue
            done = col.begin_raster(info)
            nodata = 0
            for path, meta in parts:
                records, _, vectors = read_tiles(path)
                keep = [i for i, r in enumerate(records) if r.window not in done]
                col.add_tiles([records[i] for i in keep], vectors[keep])
                report.tiles += len(keep)
                nodata += meta.nodata
                if progress:
                    progress(meta.planned)
            col.finish_raster(info, nodata)
            report.nodata_tiles += nodata
            report.rasters += 1
    return report
