#!/usr/bin/env python3
"""Indexing tiles/s end to end (server pipeline + store) against the encoder alone on the same tile batches.

Both run in this process on the real rasters of ../shared/data/geotiff, interleaved round by round so that
machine-load drift hits both alike. The breakdown (reading, tile records, store writes, each alone) shows
where the gap goes. Run `python bench/indexing.py [--quick]`; the last stdout line is JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import GEOTIFF_DIR, emit, machine, median, peak_rss_mb, quiet_logs, table

from harma_core.views import DEFAULT_VIEWS, VIEWS

GOAL_RATIO = 0.9


@dataclass
class Batches:
    """Tiles pre-read and batched as the pipeline batches them (batch_size at a time, across rasters)."""

    pixels: list[list[np.ndarray]]
    records: list[list[Any]]
    read_s: float
    records_s: float

    @property
    def tiles(self) -> int:
        """Number of tiles."""
        return sum(len(b) for b in self.pixels)


def rasters() -> list[str]:
    """The shared GeoTIFFs, resolved, in name order."""
    paths = sorted(str(p.resolve()) for p in GEOTIFF_DIR.glob("*.tif"))
    if not paths:
        raise SystemExit(f"error: no GeoTIFFs in {GEOTIFF_DIR.resolve()}; the shared data folder is missing")
    return paths


def preread(paths: list[str], params: Any, side: int, batch_size: int) -> Batches:
    """Read every tile with the server's tiling functions, timing pixels and tile records apart."""
    import rasterio

    from server.indexing.tiling import inspect_raster, plan_windows, read_tile, tile_record

    pixels: list[np.ndarray] = []
    records: list[Any] = []
    read_s = records_s = 0.0
    for path in paths:
        t0 = time.perf_counter()
        info = inspect_raster(path, params)
        px, windows = [], []
        with rasterio.open(path) as ds:
            for w in plan_windows(info):
                tile = read_tile(ds, info, w, side)
                if tile is not None:
                    px.append(tile)
                    windows.append(w)
        t1 = time.perf_counter()
        records += [tile_record(info, w) for w in windows]
        records_s += time.perf_counter() - t1
        read_s += t1 - t0
        pixels += px
    cut = range(0, len(pixels), batch_size)  # full batches spanning rasters, in reading order, as the pipeline
    return Batches([pixels[s:s + batch_size] for s in cut], [records[s:s + batch_size] for s in cut],
                   read_s, records_s)


def encoder_only(model: Any, batches: Batches, batch_size: int, views: int = 1) -> float:
    """Seconds to embed every pre-read batch, each tile as `views` views (the encoder's share of indexing)."""
    from harma_core import embed_images

    t0 = time.perf_counter()
    for px in batches.pixels:
        embed_images(model, px, batch_size=batch_size, views=views)
    return time.perf_counter() - t0


def end_to_end(model: Any, paths: list[str], params: Any, batch_size: int, root: Path,
               workers: int | None = None) -> tuple[float, int]:
    """Seconds and tiles of a fresh index_rasters run into a new collection (planning and saves included)."""
    from server.indexing.pipeline import index_rasters
    from server.store.store import Store

    store = Store(root / f"store-{time.monotonic_ns()}")
    col = store.create("bench", model, params)
    t0 = time.perf_counter()
    report = index_rasters(col, model, paths, batch_size=batch_size, read_workers=workers)
    secs = time.perf_counter() - t0
    if report.skipped:
        raise RuntimeError(f"rasters skipped during indexing: {report.skipped}")
    return secs, report.tiles


def store_only(model: Any, batches: Batches, params: Any, root: Path) -> float:
    """Seconds to write the pre-read records with ready vectors through the store (rows, index, saves)."""
    from server.store.store import Store

    rng = np.random.default_rng(0)
    vecs = [rng.standard_normal((len(r), model.dim)).astype(np.float32) for r in batches.records]
    store = Store(root / f"store-only-{time.monotonic_ns()}")
    col = store.create("bench", model, params)
    t0 = time.perf_counter()
    with col.writing(model.identity):
        for rec, v in zip(batches.records, vecs):
            col.add_tiles(rec, v / np.linalg.norm(v, axis=1, keepdims=True))
    return time.perf_counter() - t0


def inspect_only(paths: list[str], params: Any) -> float:
    """Seconds to inspect every raster (open, tile size, stretch sampling): the per-raster fixed cost."""
    from server.indexing.tiling import inspect_raster

    t0 = time.perf_counter()
    for path in paths:
        inspect_raster(path, params)
    return time.perf_counter() - t0


def _workers(value: str) -> int | None:
    return None if value == "auto" else int(value)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Interleave encoder-only and end-to-end rounds; return medians, breakdown and ratio."""
    from harma_core.onnx_runtime import load_model, runtime_of
    from server.indexing.tile_reader import default_workers
    from server.store.records import TilingParams

    model = load_model(args.model, device=args.device, runtime=args.runtime)
    params = TilingParams(tile_size=args.tile_size, overlap=args.overlap, views=args.views)
    paths = rasters()
    batches = preread(paths, params, model.image_size, args.batch_size)
    n = batches.tiles
    threads = args.threads or [torch.get_num_threads()]
    # (torch threads, read workers) pairs; ORT's threads are fixed per session, so onnx runs vary workers only
    cases = [(t, w) for t in threads for w in args.read_workers]
    key = {c: (str(c[0]) if len(args.read_workers) == 1 else f"{c[0]}t/{c[1]}w") for c in cases}
    enc_s: dict[tuple, list[float]] = {c: [] for c in cases}
    e2e_s: dict[tuple, list[float]] = {c: [] for c in cases}
    with tempfile.TemporaryDirectory(prefix="harma-bench-index-") as tmp:
        root = Path(tmp)
        encoder_only(model, batches, args.batch_size, params.views)  # warm-up: kernels and allocator see these shapes
        end_to_end(model, paths, params, args.batch_size, root, _workers(args.read_workers[0]))  # pool start-up
        for _ in range(args.rounds):
            for t, w in cases:  # settings interleaved too, so drift hits each alike
                torch.set_num_threads(t)
                enc_s[(t, w)].append(encoder_only(model, batches, args.batch_size, params.views))
                secs, tiles = end_to_end(model, paths, params, args.batch_size, root, _workers(w))
                if tiles != n:
                    raise RuntimeError(f"pipeline embedded {tiles} tiles but the pre-read found {n}")
                e2e_s[(t, w)].append(secs)
        torch.set_num_threads(threads[0])
        store_s = store_only(model, batches, params, root)
        inspect_s = inspect_only(paths, params)
    per = {key[c]: {"end_to_end_tiles_per_s": n / median(e2e_s[c]), "encoder_only_tiles_per_s": n / median(enc_s[c]),
                    "ratio": median(enc_s[c]) / median(e2e_s[c]), "end_to_end_seconds": e2e_s[c],
                    "encoder_only_seconds": enc_s[c], "torch_threads": c[0],
                    "read_workers": default_workers(n) if c[1] == "auto" else int(c[1])} for c in cases}
    head = per[key[cases[0]]]
    return {"bench": "indexing", "quick": args.quick, "model": model.identity, "device": str(model.device),
            "runtime": runtime_of(model), "read_workers": head["read_workers"],
            "inspect_only_s_per_raster": inspect_s / len(paths),
            "rasters": len(paths), "tiles": n, "tile_size": args.tile_size, "overlap": args.overlap, "views": params.views,
            "batch_size": args.batch_size, "rounds": args.rounds, "torch_threads": threads[0],
            **{k: head[k] for k in ("end_to_end_tiles_per_s", "encoder_only_tiles_per_s", "ratio")},
            "goal_ratio": GOAL_RATIO, "by_threads": per,
            "read_only_tiles_per_s": n / batches.read_s, "records_only_tiles_per_s": n / batches.records_s,
            "store_only_tiles_per_s": n / store_s, "peak_rss_mb": peak_rss_mb()}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="64 px tiles (674 tiles: steady state), one round")
    ap.add_argument("--tile-size", type=int, help="tile side in pixels (quick and full 64)")
    ap.add_argument("--overlap", type=int, help="overlap in pixels (default 0)")
    ap.add_argument("--batch-size", type=int, default=32, help="pipeline and encoder batch (default 32)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds (quick 1, full 2)")
    ap.add_argument("--threads", type=int, nargs="+",
                    help="torch thread counts to compare, interleaved (default: torch's, i.e. the cores)")
    ap.add_argument("--read-workers", nargs="+", default=["auto"],
                    help="tile-reading processes to compare, interleaved: auto (the default rule) or N, 0 = a "
                         "reader thread only (the first is the headline)")
    ap.add_argument("--views", type=int, default=DEFAULT_VIEWS, choices=VIEWS,
                    help="test-time views per tile, pipeline and encoder alike (harma_core.views)")
    ap.add_argument("--model", default="harma-lite")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--runtime", default="auto", choices=("auto", "torch", "onnx"),
                    help="auto: ONNX Runtime on CPU, torch on CUDA")
    args = ap.parse_args(argv)
    args.tile_size = args.tile_size or 64
    args.overlap = args.overlap if args.overlap is not None else 0
    args.rounds = args.rounds or (1 if args.quick else 2)
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the indexing benchmark and print a table, then the JSON line."""
    quiet_logs()
    args = parse_args(argv)
    result = {"machine": machine(), **run(args)}
    result["machine"]["loadavg_end"] = list(os.getloadavg())
    rows = [{"path": k.replace("_tiles_per_s", ""), "tiles/s": result[k]}
            for k in ("end_to_end_tiles_per_s", "encoder_only_tiles_per_s", "read_only_tiles_per_s",
                      "records_only_tiles_per_s", "store_only_tiles_per_s")]
    print(table(rows, title=f"indexing {result['tiles']} tiles of {result['rasters']} rasters "
                f"({args.tile_size} px, overlap {args.overlap}, batch {args.batch_size}, {args.rounds} round(s))"))
    if len(result["by_threads"]) > 1:
        print("\n" + table([{"case": t, **{k: v[k] for k in ("end_to_end_tiles_per_s", "encoder_only_tiles_per_s",
                                                            "ratio")}} for t, v in result["by_threads"].items()],
                           title="by torch threads / read workers"))
    print(f"\nratio end-to-end / encoder-only = {result['ratio']:.3f} (goal >= {GOAL_RATIO})")
    emit(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
