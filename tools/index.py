#!/usr/bin/env python3
"""Index GeoTIFFs (files or folders, recursively) into a collection: resumable, with a progress bar."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as `python tools/index.py` from a checkout


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the indexer."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--store", required=True, help="store folder (one sub-folder per collection)")
    ap.add_argument("collection", help="collection name (created when new)")
    ap.add_argument("paths", nargs="+", help="GeoTIFF files or folders (searched recursively for .tif/.tiff)")
    ap.add_argument("--tile-size", type=int, help="tile side in pixels (new collections; default 256)")
    ap.add_argument("--overlap", type=int, help="overlap between tiles in pixels (default 0)")
    ap.add_argument("--tile-size-m", type=float, help="tile side in metres instead of pixels")
    ap.add_argument("--overlap-m", type=float, help="overlap in metres (with --tile-size-m)")
    ap.add_argument("--bands", type=int, nargs="+", help="1 or 3 band numbers to use as RGB, e.g. 4 3 2")
    ap.add_argument("--pixel-coords", action="store_true", default=None,
                    help="accept rasters without a CRS, keeping pixel coordinates only")
    ap.add_argument("--model", default="harma-lite", help="model name, run folder or checkpoint")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--checkpoint-every", type=int, default=2048, help="save the index every N tiles")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)

    from harma_core import HarmaError, create_model
    from server.cli import run_index

    params = {"tile_size": args.tile_size, "overlap": args.overlap, "tile_size_m": args.tile_size_m,
              "overlap_m": args.overlap_m, "bands": args.bands, "pixel_coords": args.pixel_coords}
    try:
        model = create_model(args.model, device=args.device)
        report = run_index(args.store, args.collection, args.paths, model,
                           {k: v for k, v in params.items() if v is not None}, batch_size=args.batch_size,
                           checkpoint_every=args.checkpoint_every, quiet=args.quiet)
    except HarmaError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    return 1 if report.skipped and not (report.rasters or report.unchanged) else 0


if __name__ == "__main__":
    sys.exit(main())
