"""Index rasters through GeoParquet shards: plan -> (local or Ray) executor -> shards -> import.

A rerun after a crash skips rasters complete in the collection and chunks whose shard is already written.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from server.errors import InvalidRequest, NotFound
from server.indexing.shard_import import ImportReport, import_shards
from server.indexing.shard_plan import (
    Encoder,
    ShardCollector,
    config_tag,
    pending,
    plan_chunks,
    run_in_process,
)
from server.indexing.target import open_or_create
from server.store.paths import find_rasters
from server.store.records import RasterInfo, TilingParams
from server.store.store import Store

DEFAULT_SHARD_TILES = 16_384  # ~20-40 MB shards at 256-512 dims: few files, cheap to redo after a crash


@dataclass
class ShardRunReport:
    """Outcome of a shard run: what was embedded, what was imported."""

    engine: str
    shards_dir: str
    shards_written: int = 0
    shards_reused: int = 0
    tiles: int = 0
    nodata_tiles: int = 0
    duplicates_dropped: int = 0
    seconds: float = 0.0
    tiles_per_s: float = 0.0
    first_batch_s: float = 0.0  # start-up: planning to first embedded batch (Ray: actor start, model loads)
    steady_tiles_per_s: float = 0.0  # after the first batch
    skipped: list[dict[str, str]] = field(default_factory=list)
    imported: ImportReport | None = None


def _inspect_local(paths: list[str], params: TilingParams) -> list[tuple[str, RasterInfo | None, str | None]]:
    from server.indexing.ray_engine import _inspect  # the same wrapper the Ray tasks run

    return [(p, *_inspect(p, params)) for p in paths]


def format_shard_report(r: ShardRunReport, name: str) -> str:
    """Human summary; the last line carries 'N tiles/s' as the command-line contract asks."""
    imp = r.imported or ImportReport()
    lines = [f"shards in {r.shards_dir}: {r.shards_written} written, {r.shards_reused} reused from an earlier run",
             f"imported into {name}: {imp.rasters} rasters, {imp.tiles} tiles ({imp.unchanged} rasters unchanged)"]
    lines += [f"  skipped {s['raster']}: {s['reason']}" for s in r.skipped]
    lines.append(f"engine {r.engine}: {r.tiles} tiles embedded, {r.nodata_tiles} nodata tiles skipped, "
                 f"{r.first_batch_s:.1f} s to the first batch then {r.steady_tiles_per_s:.1f} tiles/s; "
                 f"{r.tiles_per_s:.1f} tiles/s over {r.seconds:.1f} s")
    return "\n".join(lines)


def run_sharded(store_dir: str, name: str, paths: list[str], model: Any, params: dict[str, Any], *,
                engine: str = "local", shards_dir: str | None = None, ray_address: str | None = None,
                model_spec: str | None = None, device: str = "auto", batch_size: int = 32,
                shard_tiles: int = DEFAULT_SHARD_TILES, actors: int | None = None,
                runtime: str = "auto", quiet: bool = False,
                out: TextIO = sys.stdout, index_shard_tiles: int | None = None) -> ShardRunReport:
    """Embed rasters into shards with the chosen engine, then import them; `model` gives identity/dim.

    The local engine embeds with `model` itself; Ray's encoder actors load `model_spec` with `runtime`."""
    if engine not in ("local", "ray"):
        raise InvalidRequest(f"engine={engine!r}; use 'local' or 'ray'")
    files = [os.path.realpath(f) for f in find_rasters(paths)]
    if not files:
        raise NotFound(f"no .tif/.tiff files found in {paths}")
    if engine == "ray":  # before the collection exists: a cluster that cannot be reached leaves nothing behind
        from server.indexing import ray_engine
        ray_engine.connect(ray_address)
    store = Store(store_dir)
    col = open_or_create(store, name, model, params, index_shard_tiles)
    col.check_model(model.identity)
    out_dir = Path(shards_dir).expanduser().resolve() if shards_dir else col.folder / "shards"
    report = ShardRunReport(engine=engine, shards_dir=str(out_dir))
    todo_files = [f for f in files if not col.is_unchanged(f, os.stat(f).st_size, os.stat(f).st_mtime_ns)]
    if engine == "ray":
        inspected = ray_engine.inspect_all(todo_files, col.params)
    else:
        inspected = _inspect_local(todo_files, col.params)
    report.skipped = [{"raster": p, "reason": err} for p, _, err in inspected if err]
    chunks = plan_chunks([i for _, i, _ in inspected if i is not None], shard_tiles,
                         config_tag(model.identity, col.params))
    todo = pending(chunks, out_dir, model.identity, col.params)
    report.shards_reused = len(chunks) - len(todo)
    meta = {"identity": model.identity, "name": model.name, "dim": int(model.dim)}
    bar = tqdm(total=sum(len(chunks[c].windows) for c in todo), unit="tile", disable=quiet, dynamic_ncols=True)
    collector = ShardCollector(chunks, todo, out_dir, meta, col.params)
    t0 = time.perf_counter()
    first: list[tuple[float, int]] = []  # (time, windows) of the first batch

    def on_rows(n: int) -> None:
        if not first:
            first.append((time.perf_counter(), n))
        bar.update(n)

    try:
        if engine == "ray":
            ray_engine.run_or_explain(chunks, todo, collector, model_spec or model.name, device=device,
                                      batch_size=batch_size, out_side=getattr(model, "image_size", None),
                                      progress=on_rows, actors=actors, runtime=runtime, views=col.params.views,
                                      shards_dir=out_dir)
        else:
            run_in_process(chunks, todo, Encoder(model, batch_size=batch_size, views=col.params.views), collector, progress=on_rows)
    finally:
        bar.close()
    report.seconds = time.perf_counter() - t0
    report.shards_written, report.tiles, report.nodata_tiles = len(todo), collector.tiles, collector.nodata
    report.duplicates_dropped = collector.duplicates
    windows = report.tiles + report.nodata_tiles
    report.tiles_per_s = report.tiles / report.seconds if report.seconds > 0 else 0.0  # as the local engine counts
    if first and windows:
        report.first_batch_s = first[0][0] - t0
        after = report.seconds - report.first_batch_s
        steady_windows = (windows - first[0][1]) / after if after > 0 else 0.0
        report.steady_tiles_per_s = steady_windows * report.tiles / windows
    if chunks:
        report.imported = import_shards(store, name, [out_dir / c.shard_name for c in chunks], order=files)
    else:
        report.imported = ImportReport(unchanged=len(files) - len(todo_files))
    print(format_shard_report(report, name), file=out)
    return report
