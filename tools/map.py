#!/usr/bin/env python3
"""Zero-shot map: each tile's best class among text prompts (or a preset such as the 21 UC Merced land-use
classes), "unknown" when even the best is unlikely; a classified GeoTIFF per raster (colour table, .qml style
and .legend.json beside it) and the classes dissolved into polygons (.gpkg or .geojson).

A class is NAME or NAME=PROMPT (the words searched, e.g. water="a lake or river").
Example: python tools/map.py --store stores demo --preset ucm21 --out landuse.tif --polygons landuse.gpkg
         python tools/map.py --store stores demo --classes forest water="a lake or river" buildings --out m.tif
"""

from __future__ import annotations

import argparse
import sys

import _bootstrap


@_bootstrap.tool()
def main(argv: list[str] | None = None) -> int:
    """Parse arguments, classify every tile, write the map."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", required=True, help="store folder")
    ap.add_argument("collection", help="collection name; several as a comma-separated list")
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--classes", nargs="+", help="class names, or NAME=PROMPT")
    what.add_argument("--preset", help="a preset class list: ucm21 (the 21 UC Merced land-use classes)")
    ap.add_argument("--min-relevance", type=float,
                    help="unknown below this relevance of the best class (default: the model's no-match "
                         "threshold, 0.5 for harma-lite; 0 = never unknown)")
    ap.add_argument("--min-cosine", type=float, help="also unknown below this cosine of the best class")
    ap.add_argument("--no-expand", action="store_true", help="search the prompts without query expansion")
    ap.add_argument("--out", required=True, help="class GeoTIFF; with several rasters OUT_<n>_<raster>.tif")
    ap.add_argument("--polygons", help="also write the dissolved classes to a .gpkg or .geojson file")
    ap.add_argument("--model", default="harma-lite", help="model the collection was built with")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = ap.parse_args(argv)

    from server.errors import InvalidRequest
    from server.maps_run import MapRequest

    if not args.out.lower().endswith((".tif", ".tiff")):
        raise InvalidRequest(f"--out {args.out}: use a .tif file name")
    if args.polygons and not args.polygons.lower().endswith((".gpkg", ".geojson", ".json")):
        raise InvalidRequest(f"--polygons {args.polygons}: use a .gpkg or .geojson file name")
    names = [c for c in args.collection.split(",") if c]
    body = {"collections": names, "classes": args.classes, "preset": args.preset,
            "min_relevance": args.min_relevance, "min_cosine": args.min_cosine, "expand": not args.no_expand}
    req = MapRequest.from_json({k: v for k, v in body.items() if v is not None})  # fails before the model loads

    from harma_core.serving import load_model
    from server.cli import check_collections
    from server.maps_run import describe_map, map_files, run_map
    from server.search.search import TextEmbedder
    from server.store.store import Store

    check_collections(args.store, names)
    model = load_model(args.model, device=args.device)
    result = run_map(Store(args.store, create=False), model, TextEmbedder(model), req)
    paths = map_files(result, args.out, args.polygons)
    run = describe_map(result)
    print(f"{run['tiles']} tiles, {len(run['classes'])} classes by {run['scoring']['best_class_by']}; "
          f"{run['unknown_tiles']} unknown (min_relevance {run['min_relevance']}, min_cosine {run['min_cosine']})")
    for r in sorted(result.rows, key=lambda r: -r["tiles"]):
        print(f"  {r['label']:<20} {r['tiles']:>7} tiles  {r['color']}")
    print("wrote " + ", ".join(str(p) for p in paths) + (f" and {args.polygons}" if args.polygons else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
