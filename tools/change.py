#!/usr/bin/env python3
"""Change between two dates: every ground-aligned cell covered by both rasters, with its polygon, a `change`
score (higher = more change), both dates, and optionally a GeoTIFF heatmap.

BEFORE and AFTER are GeoTIFF files, or folders whose .tif files make one mosaic per date.
Example: python tools/change.py pre/ post/ --tile-size-m 100 --text buildings --direction disappear
         --out cells.gpkg --heatmap change.tif
"""

from __future__ import annotations

import argparse
import sys

import _bootstrap


@_bootstrap.tool()
def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the comparison."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("before", help="raster (or folder of rasters) of the earlier date")
    ap.add_argument("after", help="raster (or folder of rasters) of the later date")
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--tile-size", type=int, help="cell side in pixels of the first BEFORE raster")
    size.add_argument("--tile-size-m", type=float, help="cell side in metres (default 300)")
    ap.add_argument("--crs", help="grid CRS (default: BEFORE's CRS, or its UTM zone when geographic)")
    ap.add_argument("--text", help="rank by this query's rise or fall instead of overall change, e.g. buildings")
    ap.add_argument("--direction", default="appear", choices=("appear", "disappear"),
                    help="with --text: where it appeared (default) or disappeared")
    ap.add_argument("--before-date", help="date of BEFORE (YYYY-MM-DD); default from metadata or file name")
    ap.add_argument("--after-date", help="date of AFTER (YYYY-MM-DD); default from metadata or file name")
    ap.add_argument("--min-cover", type=float, default=0.5,
                    help="share of a cell's pixels each date must cover (default 0.5)")
    ap.add_argument("--views", type=int, default=1, help="embed each cell over 1, 2, 4 or 8 turns (default 1)")
    ap.add_argument("--out", required=True, help="cells to write: .gpkg or .geojson")
    ap.add_argument("--heatmap", help="also write the change score as a GeoTIFF, one pixel per cell")
    ap.add_argument("--model", default="harma-lite", help="model name, run folder or checkpoint")
    ap.add_argument("--runtime", default="auto", choices=("auto", "torch", "onnx"),
                    help="what runs the model: auto (ONNX Runtime on CPU, torch on CUDA), torch or onnx")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = ap.parse_args(argv)

    from server.change_run import ChangeRequest, format_summary, run_change, write_cells, write_heatmap
    from server.errors import InvalidRequest, NotFound
    from server.store.paths import find_rasters

    if not args.out.lower().endswith((".gpkg", ".geojson", ".json")):
        raise InvalidRequest(f"--out {args.out}: use a .gpkg or .geojson file name")
    scenes = {}
    for key in ("before", "after"):
        scenes[key] = tuple(find_rasters([getattr(args, key)]))
        if not scenes[key]:
            raise NotFound(f"{getattr(args, key)} holds no .tif/.tiff file; give a GeoTIFF or a folder of them")
    req = ChangeRequest(before=scenes["before"], after=scenes["after"],
                        tile_size=args.tile_size, tile_size_m=args.tile_size_m, crs=args.crs, text=args.text,
                        direction=args.direction, before_date=args.before_date, after_date=args.after_date,
                        min_cover=args.min_cover, views=args.views)
    from harma_core.serving import load_model
    from server.indexing.aligned import inspect_scene

    inspect_scene(req.before)  # refuse unusable rasters before the model loads
    inspect_scene(req.after)
    result = run_change(load_model(args.model, device=args.device, runtime=args.runtime), req)
    write_cells(result, args.out)
    if args.heatmap:
        write_heatmap(result, args.heatmap)
    print(format_summary(result, args.out, args.heatmap))
    return 0


if __name__ == "__main__":
    sys.exit(main())
