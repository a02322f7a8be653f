#!/usr/bin/env python3
"""Index GeoTIFFs (files or folders, recursively) into a collection: resumable, with a progress bar."""

from __future__ import annotations

import argparse
import sys

import _bootstrap


@_bootstrap.tool(interrupted="interrupted; run the same command again to resume")
def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the indexer."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--store", required=True, help="store folder (one sub-folder per collection)")
    ap.add_argument("collection", help="collection name (created when new)")
    ap.add_argument("paths", nargs="+", help="GeoTIFF files or folders (searched recursively for .tif/.tiff)")
    ap.add_argument("--tile-size", type=int,
                    help="tile side in pixels (new collections; default: about 300 m of ground, 64-2048 px)")
    ap.add_argument("--overlap", type=int, help="overlap between tiles in pixels (default 0)")
    ap.add_argument("--tile-size-m", type=float, help="tile side in metres instead of pixels")
    ap.add_argument("--overlap-m", type=float, help="overlap in metres (with --tile-size-m)")
    ap.add_argument("--bands", type=int, nargs="+", help="1 or 3 band numbers to use as RGB, e.g. 4 3 2")
    ap.add_argument("--pixel-coords", action="store_true", default=None,
                    help="accept rasters without a CRS, keeping pixel coordinates only")
    ap.add_argument("--views", type=int,
                    help="new collections: embed each tile as the mean over this many rotations/mirrorings "
                         "(1, 2, 4 or 8; default 8: best retrieval, 8x the encoding time; 1 = fastest)")
    ap.add_argument("--model", default="harma-lite", help="model name, run folder or checkpoint")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--runtime", default="auto", choices=("auto", "torch", "onnx"),
                    help="what runs the model: auto (ONNX Runtime on CPU, torch on CUDA), torch or onnx")
    ap.add_argument("--checkpoint-every", type=int, default=2048, help="save the index every N tiles")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.add_argument("--engine", choices=("local", "ray"), default="local",
                    help="local (this process) or ray (a Ray Data pipeline; writes GeoParquet shards, then imports)")
    ap.add_argument("--ray-address", help="Ray cluster to join: auto or HOST:PORT (default: start a local Ray)")
    ap.add_argument("--shards", action="store_true", help="write GeoParquet shards and build the collection from them")
    ap.add_argument("--shards-dir", help="folder of the shards (default STORE/COLLECTION/shards)")
    ap.add_argument("--shard-tiles", type=int, default=16384, help="tiles per shard file (sharded runs)")
    ap.add_argument("--index-shard-tiles", type=int, help="new collections: tiles per hnswlib index shard "
                    "(default 2,500,000); search queries every shard and merges")
    ap.add_argument("--actors", type=int, help="encoder actors (ray; default one per GPU, else one per CPU)")
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["import-shards"]:
        return _import_shards(argv[1:])
    args = ap.parse_args(argv)

    from harma_core.serving import load_model
    from server.cli import check_index_target, run_index
    from server.models import default_source

    params = {"tile_size": args.tile_size, "overlap": args.overlap, "tile_size_m": args.tile_size_m,
              "overlap_m": args.overlap_m, "bands": args.bands, "pixel_coords": args.pixel_coords,
              "views": args.views}
    check_index_target(args.store, args.collection)  # before the model loads
    if args.engine == "ray" and args.ray_address and args.ray_address != "auto":
        from server.indexing.ray_engine import check_reachable
        check_reachable(args.ray_address)  # seconds, not the minutes ray.init retries for
    ray = args.engine == "ray"  # Ray actors load their own models from --model and --runtime
    model = load_model(args.model, device="cpu" if ray else args.device, runtime="torch" if ray else args.runtime)
    if args.engine == "ray" or args.shards or args.shards_dir:
        from server.indexing.shard_run import run_sharded
        run_sharded(args.store, args.collection, args.paths, model,
                    {k: v for k, v in params.items() if v is not None}, engine=args.engine,
                    shards_dir=args.shards_dir, ray_address=args.ray_address, model_spec=args.model,
                    device=args.device, batch_size=args.batch_size, shard_tiles=args.shard_tiles,
                    actors=args.actors, runtime=args.runtime, quiet=args.quiet,
                    index_shard_tiles=args.index_shard_tiles)
        return 0
    report = run_index(args.store, args.collection, args.paths, model,
                       {k: v for k, v in params.items() if v is not None}, batch_size=args.batch_size,
                       checkpoint_every=args.checkpoint_every, quiet=args.quiet,
                       index_shard_tiles=args.index_shard_tiles, source=default_source(args.model))
    return 1 if report.skipped and not (report.rasters or report.unchanged) else 0


def _import_shards(argv: list[str]) -> int:
    """`index.py import-shards --store S COLLECTION SHARDS...`: build or extend a collection from shards."""
    ap = argparse.ArgumentParser(prog="index.py import-shards", description=_import_shards.__doc__)
    ap.add_argument("--store", required=True, help="store folder")
    ap.add_argument("collection", help="collection name (created from the shards' model and tiling when new)")
    ap.add_argument("shards", nargs="+", help="GeoParquet shard files or folders of them")
    ap.add_argument("--index-shard-tiles", type=int, help="new collections: tiles per hnswlib index shard")
    args = ap.parse_args(argv)

    from server.indexing.shard_import import find_shards, import_shards
    from server.store.store import Store

    r = import_shards(Store(args.store), args.collection, find_shards(args.shards),
                      index_shard_tiles=args.index_shard_tiles)
    print(f"imported into {args.collection}: {r.rasters} rasters, {r.tiles} tiles, {r.nodata_tiles} nodata "
          f"skipped, {r.unchanged} rasters already imported" + (f", incomplete: {r.incomplete}" if r.incomplete else ""))
    return 1 if r.incomplete else 0


if __name__ == "__main__":
    sys.exit(main())
